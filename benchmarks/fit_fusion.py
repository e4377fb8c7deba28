"""Choose the default fusion across every benchmark shape, with leave-one-benchmark-out figures.

Every query's candidates are gathered once per benchmark with all four signals scored
(Searcher.candidates, or similar_candidates for the panel benchmark; cached under build/pools),
so each setting of the grid is scored offline through the product's own `fuse`. The grid spans
the normalisation (min-max, z-score, or RRF), the weight of BM25 over questions and the weight of
the reply passages, both relative to the question vector's weight 1.

The default has two parts (search/fusion.py): one for indexes with replies, one for indexes of
questions alone; each part is chosen on the benchmarks of its shape. Criterion: the setting
whose worst margin over the benchmark's best single signal (the smaller of the nDCG@10 and the
MRR@10 margins) is largest: a default must not lose to one of its own signals anywhere.
Leave-one-benchmark-out: benchmarks sharing queries and judgments form a group
(benchmarks/suite.py); for each group, the choice is made on the other groups and scored on the
one left out. Writes benchmarks/results/suite/fusion-lobo.json and .md (or in `--out`).

    python -m benchmarks.fit_fusion --suite build/suite --indexes build/suite-index
    # another model's indexes (benchmarks/adapt.py), some benchmarks only:
    python -m benchmarks.fit_fusion --indexes DIR --pools DIR --benchmarks liveqa-original rqe --out DIR
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.rqe import negatives_above
from benchmarks.suite import BENCHMARKS, BY_NAME, Benchmark
from search.bench import METHODS, evaluate, read_qrels, read_queries
from search.fusion import MODES, SIGNALS, Fusion, fuse, proposed
from search.searcher import Searcher

RESULTS = Path(__file__).resolve().parent / "results" / "suite"
BM25_WEIGHTS = (0.1, 0.25, 0.5, 0.75, 1.0)
REPLY_WEIGHTS = (0.5, 1.0)
DEPTH = 100
SHALLOWER = (75, 50, 30)  # depths the default is also scored at (shallower())


def index_of(benchmark: Benchmark, indexes: Path) -> Path:
    return indexes / benchmark.corpus


def grid() -> dict[str, Fusion]:
    """Every setting tried, by a readable name (on indexes without replies the reply weight is moot)."""
    out = {}
    for bm25, reply in itertools.product(BM25_WEIGHTS, REPLY_WEIGHTS):
        weights = {"bm25_question": bm25, "dense_question": 1.0, "dense_reply": reply}
        for method, normalization in (("weighted", "minmax"), ("weighted", "zscore"), ("rrf", "minmax")):
            name = f"{normalization if method == 'weighted' else 'rrf'} bm25_question {bm25:g}, dense_reply {reply:g}"
            out[name] = Fusion(weights=weights, method=method, normalization=normalization)
    return out


def shallower() -> dict[str, Fusion]:
    """The default with fewer candidates per signal (a speed lever: a smaller top to find and
    rescore), scored beside it; never chosen (not in the grid)."""
    default = MODES["hybrid"]
    return {f"default, depth {depth}": replace(default, depth=depth, question_only=replace(default.question_only, depth=depth))
            for depth in SHALLOWER}


class Pools:
    """One benchmark's queries with their candidates and every signal's raw score."""

    def __init__(self, qids: list[str], ids: list[list[str]], scores: list[dict[str, np.ndarray]]) -> None:
        self.qids, self.ids, self.scores = qids, ids, scores
        self.has_replies = any((~np.isnan(sc["dense_reply"])).any() for sc in scores)

    @classmethod
    def gather(cls, searcher: Searcher, queries: dict[str, str], panel: bool) -> "Pools":
        """Candidates of search(text), or of similar(qid) for a panel benchmark."""
        found = [searcher.similar_candidates(qid, DEPTH) if panel else searcher.candidates(text, DEPTH) for qid, text in queries.items()]
        return cls(list(queries), [f[0] for f in found], [f[1] for f in found])

    def save(self, path: Path) -> None:
        offsets = np.cumsum([0] + [len(i) for i in self.ids])
        np.savez(path.with_suffix(".npz"), offsets=offsets,
                 **{s: np.concatenate([sc[s] for sc in self.scores]) if self.scores else np.zeros(0) for s in SIGNALS})
        path.with_suffix(".json").write_text(json.dumps({"qids": self.qids, "ids": [i for ids in self.ids for i in ids]}))

    @classmethod
    def load(cls, path: Path) -> "Pools":
        with np.load(path.with_suffix(".npz")) as npz:
            arrays = {name: npz[name] for name in npz.files}  # each read once: NpzFile reads on every access
        meta = json.loads(path.with_suffix(".json").read_text())
        o = arrays["offsets"]
        spans = list(zip(o[:-1], o[1:]))
        return cls(meta["qids"], [meta["ids"][a:b] for a, b in spans],
                   [{s: arrays[s][a:b] for s in SIGNALS} for a, b in spans])

    def run(self, fusion: Fusion) -> dict[str, list[tuple[str, float]]]:
        """What search() would return (top 100) under this fusion."""
        fusion = fusion.for_index(self.has_replies)
        run = {}
        for qid, ids, scores in zip(self.qids, self.ids, self.scores):
            keep = proposed({s: scores[s] for s in fusion.active}, fusion.depth)
            fused = fuse({s: scores[s][keep] for s in fusion.active}, fusion)
            order = np.argsort(-fused, kind="stable")[:100]
            run[qid] = [(ids[keep[i]], float(fused[i])) for i in order]
        return run


def load_pools(benchmark: Benchmark, suite: Path, indexes: Path, cache: Path) -> Pools:
    path = cache / benchmark.name
    if path.with_suffix(".npz").is_file():
        return Pools.load(path)
    queries = read_queries(suite / benchmark.corpus / benchmark.queries)
    pools = Pools.gather(Searcher.open(index_of(benchmark, indexes)), queries, benchmark.panel)
    cache.mkdir(parents=True, exist_ok=True)
    pools.save(path)
    return pools


def measures(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]], benchmark: Benchmark, suite: Path) -> dict[str, float]:
    """The harness's measures, and where the benchmark has random negatives (RQE), the share
    ranked above the true short form."""
    figures = evaluate(run, qrels, benchmark.threshold)
    negatives = suite / benchmark.corpus / "negatives.json"
    if negatives.is_file():
        figures["negatives_above"] = negatives_above(run, json.loads(negatives.read_text()), qrels)
    return figures


def objective(figures: dict[str, float]) -> float:
    return (figures["nDCG@10"] + figures["MRR@10"]) / 2


def pool_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a script scored on the pools (this one, learned_fusion.py, prf.py)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--suite", type=Path, default=Path("build/suite"))
    parser.add_argument("--indexes", type=Path, default=Path("build/suite-index"))
    parser.add_argument("--pools", type=Path, default=Path("build/pools"))
    return parser


def main() -> None:
    parser = pool_parser(__doc__)
    parser.add_argument("--txtai", type=Path, help="txtai_peer.py's results, for the summary table")
    parser.add_argument("--benchmarks", nargs="+", choices=list(BY_NAME), help="these benchmarks only (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where fusion-lobo.json and .md go")
    args = parser.parse_args()
    benchmarks = [BY_NAME[name] for name in args.benchmarks] if args.benchmarks else list(BENCHMARKS)

    settings = {"default": MODES["hybrid"], "minmax": METHODS["minmax"], **{s: Fusion(weights={s: 1.0}) for s in SIGNALS},
                **shallower(), **grid()}
    figures: dict[str, dict[str, dict[str, float]]] = {}  # setting -> benchmark -> measures
    pools_have_replies = {}
    for benchmark in benchmarks:
        pools = load_pools(benchmark, args.suite, args.indexes, args.pools)
        pools_have_replies[benchmark.name] = pools.has_replies
        qrels = read_qrels(args.suite / benchmark.corpus / "qrels.txt")
        for name, fusion in settings.items():
            figures.setdefault(name, {})[benchmark.name] = measures(pools.run(fusion), qrels, benchmark, args.suite)
        print(benchmark.name, "done", flush=True)

    shapes = {b.name: pools_have_replies[b.name] for b in benchmarks}
    report = {"settings": {n: describe(f) for n, f in settings.items()}, "figures": figures,
              "has_replies": shapes, "lobo": lobo(figures, shapes, list(grid()), benchmarks),
              "txtai": json.loads(args.txtai.read_text()) if args.txtai and args.txtai.is_file() else {}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fusion-lobo.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "fusion-lobo.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def margin(figures: dict[str, dict[str, dict[str, float]]], setting: str, benchmark: str) -> float:
    """How far a setting is ahead of the benchmark's best single signal: the smaller of its
    nDCG@10 and MRR@10 margins (negative: a signal alone does better)."""
    return min(figures[setting][benchmark][m] - max(figures[s][benchmark][m] for s in SIGNALS) for m in ("nDCG@10", "MRR@10"))


def lobo(figures: dict, shapes: dict[str, bool], candidates: list[str], benchmarks: list[Benchmark]) -> dict:
    """For each group left out and each shape, the setting with the best worst-case margin on
    the other groups' benchmarks of that shape (None where no other group has that shape)."""
    out = {}
    for group in sorted({b.group for b in benchmarks}):
        chosen = {}
        for replies in (True, False):
            training = [b.name for b in benchmarks if b.group != group and shapes[b.name] == replies]
            chosen["with_replies" if replies else "question_only"] = (
                max(candidates, key=lambda n: min(margin(figures, n, b) for b in training)) if training else None)
        held_out = {}
        for b in benchmarks:
            if b.group == group:
                setting = chosen["with_replies" if shapes[b.name] else "question_only"]
                held_out[b.name] = {"setting": setting, **(figures[setting][b.name] if setting else {})}
        out[group] = {"chosen": chosen, "held_out": held_out}
    return out


def describe(fusion: Fusion) -> str:
    weights = ", ".join(f"{s} {w:g}" for s, w in fusion.weights.items() if w)
    how = fusion.normalization if fusion.method == "weighted" else f"rrf k={fusion.rrf_k}"
    return f"{how}: {weights}"


def markdown(report: dict) -> str:
    benchmarks = [BY_NAME[name] for name in report["has_replies"]]  # those the report scored
    names = [b.name for b in benchmarks]
    figures = report["figures"]

    def cell(setting: str | None, bench: str) -> str:
        if setting is None:
            return "—"
        return f"{figures[setting][bench]['nDCG@10']:.3f} / {figures[setting][bench]['MRR@10']:.3f}"

    lines = ["# Fusion across benchmark shapes", "", "## Summary (nDCG@10 / MRR@10)", "",
             "minmax: the default's part for indexes with replies used on every index (the default before question-only "
             "indexes had their own part). Held out: the setting chosen on the other groups (below).", "",
             "| benchmark | shape | best single signal | txtai 9.14 hybrid, same vectors | minmax | default | held out |",
             "|---|---|---|---|---|---|---|"]
    for b in benchmarks:
        best = max(SIGNALS, key=lambda s: figures[s][b.name]["nDCG@10"])
        held = report["lobo"][b.group]["held_out"][b.name]["setting"]
        txtai = report["txtai"].get(b.name)
        peer = f"{txtai['nDCG@10']:.3f} / {txtai['MRR@10']:.3f}" if txtai else "—"
        shape = "with replies" if report["has_replies"][b.name] else "questions only"
        lines.append(f"| {b.name} | {shape} | {best} {cell(best, b.name)} | {peer} | {cell('minmax', b.name)} | "
                     f"**{cell('default', b.name)}** | {cell(held, b.name) if held else 'no other group of this shape'} |")
    if "negatives_above" in figures["default"].get("rqe", {}):
        shares = {n: figures[n]["rqe"]["negatives_above"] for n in ("default", "minmax", *SIGNALS)}
        if "rqe" in report["txtai"]:
            shares["txtai"] = report["txtai"]["rqe"]["negatives_above"]
        lines += ["", "RQE random negatives ranked above the true short form (share of false pairs): "
                  + ", ".join(f"{n} {v:.2%}" for n, v in shares.items()) + "."]
    lines += ["", "## Every setting", "", "nDCG@10 / MRR@10 of every setting on every benchmark.", "",
              "| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for setting in figures:
        lines.append(f"| {setting} | " + " | ".join(cell(setting, b) for b in names) + " |")
    lines += ["", "## Leave one benchmark group out", "",
              "Each shape's setting chosen on the other groups (best worst-case margin over the best single signal), "
              "scored on the group left out.", "",
              "| held out (group) | shape | chosen on the other groups | held out | best single signal | default |",
              "|---|---|---|---|---|---|"]
    for group, entry in report["lobo"].items():
        for bench, held in entry["held_out"].items():
            best = max(SIGNALS, key=lambda s: figures[s][bench]["nDCG@10"])
            shape = "with replies" if report["has_replies"][bench] else "questions only"
            lines.append(f"| {bench} ({group}) | {shape} | {held['setting'] or 'none: no other group has this shape'} | "
                         f"{cell(held['setting'], bench)} | {best} {cell(best, bench)} | {cell('default', bench)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
