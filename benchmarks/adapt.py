"""`make bench-adapt`: `simqa adapt` on MedQuAD, the index rebuilt with the adapted model, and the
LiveQA-Med relevance tables beside the base model's, in one run, for each seed.

MedQuAD's consultations are the only training data: the LiveQA-Med questions, their summaries
and the judgments are read only to score the finished indexes (tests/test_adapt.py checks that no
LiveQA question is among the training pairs). Each step is a `simqa` command, timed as a user
would see it. Writes benchmarks/results/adapt/results.md and .json (and each run's tables).

    python -m benchmarks.adapt --corpus build/suite/medquad/corpus.jsonl --base-index build/medquad-index \\
        --cache benchmarks/cache/embeddings.sqlite --seeds 0 1 --max-minutes 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.load import RESULTS, ROOT
from benchmarks.load_ray import cpu

SETTINGS = {"original": "LiveQA-Med 2017 original questions over MedQuAD", "summary": "LiveQA-Med 2017 NLM summaries over MedQuAD"}
SHOWN = ("default", "bm25", "dense_question", "dense_reply")


def simqa(*args: str) -> float:
    """Run a simqa command; its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=ROOT, check=True)
    return time.perf_counter() - start


def tables(index: Path, suite: Path, out: Path) -> dict[str, dict]:
    """The relevance results of an index for both query settings."""
    found = {}
    for setting, title in SETTINGS.items():
        simqa("bench", "relevance", "--index", str(index), "--queries", str(suite / f"queries-{setting}.tsv"),
              "--qrels", str(suite / "qrels.txt"), "--title", title, "--out", str(out / setting))
        found[setting] = json.loads((out / setting / "results.json").read_text())["results"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("build/suite/medquad/corpus.jsonl"))
    parser.add_argument("--base-index", type=Path, default=Path("build/medquad-index"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/embeddings.sqlite"))
    parser.add_argument("--work", type=Path, default=Path("build/adapt"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-minutes", type=float, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "adapt")
    args = parser.parse_args()
    suite = args.corpus.parent
    started = time.perf_counter()
    runs = {"base": {"tables": tables(args.base_index, suite, args.out / "base")}}
    for seed in args.seeds:
        model, index = args.work / f"model-seed{seed}", args.work / f"index-seed{seed}"
        adapt_seconds = simqa("adapt", str(args.corpus), "--out", str(model), "--seed", str(seed), "--max-minutes", f"{args.max_minutes:g}")
        index_seconds = simqa("index", str(args.corpus), "--index", str(index), "--model", str(model), "--cache", str(args.cache), "--quiet")
        runs[f"seed {seed}"] = {"adapt_seconds": round(adapt_seconds, 1), "index_seconds": round(index_seconds, 1),
                                "card": json.loads((model / "adapt.json").read_text()),
                                "tables": tables(index, suite, args.out / f"seed{seed}")}
        _write(args, runs, time.perf_counter() - started)  # each seed's figures as soon as they exist
    print((args.out / "results.md").read_text())


def _write(args: argparse.Namespace, runs: dict, seconds: float) -> None:
    result = {"command": "python -m benchmarks.adapt " + " ".join(sys.argv[1:]), "cpu": cpu(), "seconds": round(seconds, 1), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    names = list(runs)
    lines = [f"# `simqa adapt` on MedQuAD: relevance beside the base model\n\n`{result['command']}`\n\nCPU: {result['cpu']}; "
             f"end to end {seconds / 60:.1f} min so far.\n"]
    for setting, title in SETTINGS.items():
        lines += [f"\n## {title}: nDCG@10 / AvgScore\n", "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for method in SHOWN:
            cells = [f"{runs[n]['tables'][setting][method]['nDCG@10']:.3f} / {runs[n]['tables'][setting][method]['AvgScore']:.2f}" for n in names]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["\n## Runs\n", "| run | adapt min | index min | steps | stopped | pairs | validation MRR@10 before -> after |",
              "|---|---|---|---|---|---|---|"]
    for name in names[1:]:
        run, card = runs[name], runs[name]["card"]
        validation = ", ".join(f"{k} {card['validation_before'][k]:.3f} -> {card['validation_after'][k]:.3f}" for k in card["validation_after"])
        lines.append(f"| {name} | {run['adapt_seconds'] / 60:.1f} | {run['index_seconds'] / 60:.1f} | {card['steps']} of "
                     f"{card['planned_steps']} | {card['stopped']} | {sum(card['pairs'].values()):,} | {validation} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
