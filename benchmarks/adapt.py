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
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from benchmarks.load import RESULTS, ROOT
from benchmarks.load_ray import cpu
from benchmarks.suite import BY_NAME, Benchmark
from index.adapt import BASE_WEIGHT, CARD, blend, validation_scores
from index.embed import resolve_model
from index.readers import read_sources
from search import Searcher
from search.bench import panel_recovery, per_query, read_qrels, read_run

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


def paired_change(base: Path, other: Path, qrels: Path, threshold: int) -> dict[str, float]:
    """The default's nDCG@10 in `other`'s run minus `base`'s, query by query, with a 95% bootstrap
    interval over the queries (scipy): a change whose interval holds 0 is within what this
    benchmark's queries can tell apart."""
    judged = read_qrels(qrels)
    before = per_query(read_run(base / "default.run"), judged, threshold)
    after = per_query(read_run(other / "default.run"), judged, threshold)
    change = np.array([after[q] - before[q] for q in before])
    interval = stats.bootstrap((change,), np.mean, method="percentile", n_resamples=10_000, rng=np.random.default_rng(0)).confidence_interval
    return {"change": round(float(change.mean()), 4), "low": round(float(interval.low), 4), "high": round(float(interval.high), 4)}


def blended(fine_tuned: Path, out: Path, base_weight: float, training: Path) -> float:
    """A model `simqa adapt --base-weight 0` wrote (or one from before the blend), blended with its
    base as `simqa adapt` publishes it, in `out` with its card updated (validation scored again);
    the seconds of its training (from its card) and of the blend. Judges a blend weight without
    training again."""
    import sentence_transformers as st

    start = time.perf_counter()
    card = json.loads((fine_tuned / CARD).read_text())
    if card.get("base_weight"):
        raise SystemExit(f"--blend-of: {fine_tuned} is a blend already (base weight {card['base_weight']})")
    model = st.SentenceTransformer(str(fine_tuned), device="cpu")
    blend(model, resolve_model(card["base"])[1], base_weight)
    model.save(str(out))
    card.update(base_weight=base_weight, validation_trained=card["validation_after"],
                validation_after=validation_scores(model, read_sources([training]).consultations, card["seed"]),
                blended_from=str(fine_tuned))
    (out / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card["seconds"] + time.perf_counter() - start


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
    parser.add_argument("--adapt-args", default="", metavar="OPTIONS",
                        help="more options for simqa adapt, e.g. '--hard-negatives --batch-size 32' (with a --work of their own)")
    parser.add_argument("--blend-of", type=Path, metavar="MODEL_DIR",
                        help="no training: blend this unblended adapted model with its base (--base-weight) and judge that, as its seed")
    parser.add_argument("--base-weight", type=float, default=BASE_WEIGHT, help="with --blend-of: the base's share")
    args = parser.parse_args()
    if args.blend_of:
        args.seeds = [json.loads((args.blend_of / CARD).read_text())["seed"]]
    names = [b.name for b in BY_NAME.values() if not b.panel] if args.benchmarks == ["all"] else args.benchmarks
    benchmarks = [BY_NAME[name] for name in names]
    corpora = list(dict.fromkeys(b.corpus for b in benchmarks))
    training = args.suite / "medquad" / "corpus.jsonl"  # MedQuAD's consultations: the only training data
    started = time.perf_counter()
    base = {c: args.base_index if c == "medquad" else args.base_suite_index / c for c in corpora}
    runs = {"base": {"tables": tables(base, benchmarks, args.suite, args.out / "base"), "seed_panels": seed_panels(None, args.work)}}
    for seed in args.seeds:
        if args.blend_of:
            model = args.work / f"model-seed{seed}-blend{args.base_weight:g}"
            adapt_seconds = blended(args.blend_of, model, args.base_weight, training)
        else:
            model = args.work / f"model-seed{seed}"
            adapt_seconds = simqa("adapt", str(training), "--out", str(model), "--seed", str(seed), "--max-minutes", f"{args.max_minutes:g}",
                                  *shlex.split(args.adapt_args))
        indexes, index_seconds = {}, 0.0
        for corpus in corpora:
            indexes[corpus] = args.work / f"index-seed{seed}-{corpus}"
            index_seconds += simqa("index", str(args.suite / corpus / "corpus.jsonl"), "--index", str(indexes[corpus]), "--model", str(model),
                                   "--cache", str(args.cache), "--quiet")
        runs[f"seed {seed}"] = {"adapt_seconds": round(adapt_seconds, 1), "index_seconds": round(index_seconds, 1),
                                "card": json.loads((model / "adapt.json").read_text()),
                                "tables": tables(indexes, benchmarks, args.suite, args.out / f"seed{seed}"),
                                "default_change": {b.name: paired_change(args.out / "base" / b.name, args.out / f"seed{seed}" / b.name,
                                                                         args.suite / b.corpus / "qrels.txt", b.threshold) for b in benchmarks},
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
    lines += ["\n## The default's nDCG@10, adapted minus base\n",
              "Query by query, with a 95% bootstrap interval over the queries (`paired_change`): an interval that holds 0 "
              "is a change these queries cannot tell from none.\n", "| benchmark | " + " | ".join(names[1:]) + " |",
              "|---|" + "---|" * len(names[1:])]
    for b in benchmarks:
        cells = ["{change:+.3f} [{low:+.3f}, {high:+.3f}]".format(**runs[n]["default_change"][b.name]) for n in names[1:]]
        lines.append(f"| {b.name} | " + " | ".join(cells) + " |")
    lines += ["\n## Runs\n", "| run | adapt min | index min | steps | stopped | pairs | base weight | validation MRR@10 before -> "
              "fine-tuned -> published |", "|---|---|---|---|---|---|---|---|"]
    for name in names[1:]:
        run, card = runs[name], runs[name]["card"]
        trained = card.get("validation_trained", card["validation_after"])  # cards from before the blend
        validation = ", ".join(f"{k} {card['validation_before'][k]:.3f} -> {trained[k]:.3f} -> {card['validation_after'][k]:.3f}"
                               for k in card["validation_after"])
        lines.append(f"| {name} | {run['adapt_seconds'] / 60:.1f} | {run['index_seconds'] / 60:.1f} | {card['steps']} of "
                     f"{card['planned_steps']} | {card['stopped']} | {sum(card['pairs'].values()):,} | {card.get('base_weight', 0):g} | "
                     f"{validation} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
