"""`make bench-adapt`: `simqa adapt` on MedQuAD, the indexes rebuilt with the adapted model, and the
relevance tables beside the base model's, in one run, for each seed.

The benchmarks are those of benchmarks/suite.py (`--benchmarks`; by default the two LiveQA-Med
settings over MedQuAD; `all` adds the other shapes, question-only ones among them, each of whose
corpora is embedded again with every adapted model). The base model's indexes are the ones
`make bench-relevance` builds.

MedQuAD's consultations are the only training data: the LiveQA-Med questions, their summaries
and the judgments are read only to score the finished indexes (tests/test_adapt.py checks that no
LiveQA question is among the training pairs). Each step is a `simqa` command, timed as a user
would see it. Writes benchmarks/results/adapt/results.md and .json (and each run's tables).

    python -m benchmarks.adapt --suite build/suite --base-index build/medquad-index --base-suite-index build/suite-index \\
        --cache benchmarks/cache/embeddings.sqlite --seeds 0 1 --max-minutes 30 [--benchmarks all]
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
from benchmarks.suite import BY_NAME, Benchmark
from search import Searcher
from search.bench import panel_recovery

DEFAULT_BENCHMARKS = ("liveqa-original", "liveqa-summary")
SHOWN = ("default", "bm25", "dense_question", "dense_reply")


def simqa(*args: str) -> float:
    """Run a simqa command; its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=ROOT, check=True)
    return time.perf_counter() - start


def tables(indexes: dict[str, Path], benchmarks: list[Benchmark], suite: Path, out: Path) -> dict[str, dict]:
    """The relevance results of each benchmark, on the index of its corpus."""
    found = {}
    for b in benchmarks:
        folder = suite / b.corpus
        simqa("bench", "relevance", "--index", str(indexes[b.corpus]), "--queries", str(folder / b.queries),
              "--qrels", str(folder / "qrels.txt"), "--threshold", str(b.threshold), "--title", f"{b.name} ({b.shape})",
              "--out", str(out / b.name))
        found[b.name] = json.loads((out / b.name / "results.json").read_text())["results"]
    return found


def seed_panels(model: Path | None, work: Path) -> int:
    """Seed panel links `simqa similar` recovers on the seeds indexed with this model (None: the base)."""
    index = work / f"seeds-{model.name if model else 'base'}"
    simqa("index", str(ROOT / "seeds"), "--index", str(index), "--quiet", *(["--model", str(model)] if model else []))
    return sum(found for _, found, _ in panel_recovery(Searcher.open(index)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", type=Path, default=Path("build/suite"), help="what benchmarks.suite wrote")
    parser.add_argument("--base-index", type=Path, default=Path("build/medquad-index"), help="MedQuAD with the base model")
    parser.add_argument("--base-suite-index", type=Path, default=Path("build/suite-index"), help="the other corpora with the base model")
    parser.add_argument("--benchmarks", nargs="+", default=list(DEFAULT_BENCHMARKS), help="names from benchmarks/suite.py, or all")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/embeddings.sqlite"))
    parser.add_argument("--work", type=Path, default=Path("build/adapt"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-minutes", type=float, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "adapt")
    args = parser.parse_args()
    names = [b.name for b in BY_NAME.values() if not b.panel] if args.benchmarks == ["all"] else args.benchmarks
    benchmarks = [BY_NAME[name] for name in names]
    corpora = list(dict.fromkeys(b.corpus for b in benchmarks))
    training = args.suite / "medquad" / "corpus.jsonl"  # MedQuAD's consultations: the only training data
    started = time.perf_counter()
    base = {c: args.base_index if c == "medquad" else args.base_suite_index / c for c in corpora}
    runs = {"base": {"tables": tables(base, benchmarks, args.suite, args.out / "base"), "seed_panels": seed_panels(None, args.work)}}
    for seed in args.seeds:
        model = args.work / f"model-seed{seed}"
        adapt_seconds = simqa("adapt", str(training), "--out", str(model), "--seed", str(seed), "--max-minutes", f"{args.max_minutes:g}")
        indexes, index_seconds = {}, 0.0
        for corpus in corpora:
            indexes[corpus] = args.work / f"index-seed{seed}-{corpus}"
            index_seconds += simqa("index", str(args.suite / corpus / "corpus.jsonl"), "--index", str(indexes[corpus]), "--model", str(model),
                                   "--cache", str(args.cache), "--quiet")
        runs[f"seed {seed}"] = {"adapt_seconds": round(adapt_seconds, 1), "index_seconds": round(index_seconds, 1),
                                "card": json.loads((model / "adapt.json").read_text()),
                                "tables": tables(indexes, benchmarks, args.suite, args.out / f"seed{seed}"),
                                "seed_panels": seed_panels(model, args.work)}
        _write(args, runs, benchmarks, time.perf_counter() - started)  # each seed's figures as soon as they exist
    print((args.out / "results.md").read_text())


def _write(args: argparse.Namespace, runs: dict, benchmarks: list[Benchmark], seconds: float) -> None:
    result = {"command": "python -m benchmarks.adapt " + " ".join(sys.argv[1:]), "cpu": cpu(), "seconds": round(seconds, 1), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    names = list(runs)
    lines = [f"# `simqa adapt` on MedQuAD: relevance beside the base model\n\n`{result['command']}`\n\nCPU: {result['cpu']}; "
             f"end to end {seconds / 60:.1f} min so far.\n"]
    for b in benchmarks:
        lines += [f"\n## {b.name} ({b.shape}): nDCG@10 / MRR@10 / AvgScore\n", "| method | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        for method in SHOWN:
            if method not in runs["base"]["tables"][b.name]:
                continue  # dense_reply on a question-only corpus
            cells = ["{nDCG@10:.3f} / {MRR@10:.3f} / {AvgScore:.2f}".format(**runs[n]["tables"][b.name][method]) for n in names]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("\nSeed panel links recovered (of 8): " + ", ".join(f"{n} {runs[n]['seed_panels']}" for n in names) + ".")
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
