"""A learned fusion (logistic regression over per-signal features), leave-one-benchmark-out.

Issue #12 lists a small learned ranker among the candidates for the default. This measures one
on the question-only shape, where three benchmark groups exist: for each group left out, a
logistic regression (scikit-learn, already installed with sentence-transformers) is fit on the
candidates of the other groups' question-only benchmarks, relevant or not, each query weighing
the same; the held-out benchmarks are ranked by its score. The with-replies shape has one group
(LiveQA-Med), so it cannot be held out and is not fit. Candidates and raw scores are
fit_fusion.py's pools (build/pools), the same the grid is scored on.

Features of a candidate, per signal the shape fuses (bm25_question, dense_question): its z-score
and min-max value over the query's candidates (what the product's fusions use), its reciprocal
rank (RRF's, k = 60); whether BM25 has evidence (the cosine scores every candidate); and the raw cosine (comparable across
queries). Writes benchmarks/results/suite/learned-fusion.json and .md.

    python -m benchmarks.learned_fusion --suite build/suite --indexes build/suite-index
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from benchmarks.fit_fusion import DEPTH, RESULTS, Pools, load_pools, measures, pool_parser
from benchmarks.suite import BENCHMARKS
from search.bench import read_qrels
from search.fusion import SIGNALS, Fusion, normalized, proposed, reciprocal_rank

FUSED = ("bm25_question", "dense_question")  # the question-only default's signals
ZSCORE, MINMAX = Fusion(normalization="zscore"), Fusion()
REGULARISATION = (0.01, 1.0, 100.0)  # inverse strengths tried; each reported, none chosen on held-out data


def features(scores: dict[str, np.ndarray]) -> np.ndarray:
    """One row of features per candidate (module docstring)."""
    columns = []
    for signal in FUSED:
        values = scores[signal]
        columns += [normalized(values, ZSCORE), normalized(values, MINMAX), reciprocal_rank(values, 60)]
    columns.append((~np.isnan(scores["bm25_question"])).astype(np.float64))  # the cosine scores every candidate
    columns.append(np.nan_to_num(scores["dense_question"], nan=0.0))
    return np.column_stack(columns)


class Examples:
    """A benchmark's candidates as features, labels and per-query groups."""

    def __init__(self, pools: Pools, qrels: dict[str, dict[str, int]], threshold: int) -> None:
        self.queries = []
        for qid, ids, scores in zip(pools.qids, pools.ids, pools.scores):
            keep = proposed({s: scores[s] for s in FUSED}, DEPTH)
            grades = qrels.get(qid, {})
            labels = np.array([grades.get(ids[i], 0) >= threshold for i in keep], dtype=np.int8)
            self.queries.append((qid, [ids[i] for i in keep], features({s: scores[s][keep] for s in SIGNALS}), labels))

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, labels and weights (1 / candidates of the query: each query counts once)."""
        used = [q for q in self.queries if q[3].any()]  # a query with no relevant candidate teaches nothing
        x = np.concatenate([q[2] for q in used])
        y = np.concatenate([q[3] for q in used])
        w = np.concatenate([np.full(len(q[3]), 1.0 / len(q[3])) for q in used])
        return x, y, w

    def run(self, model: LogisticRegression, scaler: StandardScaler) -> dict[str, list[tuple[str, float]]]:
        run = {}
        for qid, ids, x, _ in self.queries:
            score = model.decision_function(scaler.transform(x)) if len(ids) else np.zeros(0)
            order = np.argsort(-score, kind="stable")[:100]
            run[qid] = [(ids[i], float(score[i])) for i in order]
        return run


def fit(training: list[Examples], c: float) -> tuple[LogisticRegression, StandardScaler]:
    parts = [e.stacked() for e in training]
    x, y, w = (np.concatenate(p) for p in zip(*parts))
    scaler = StandardScaler().fit(x, sample_weight=w)
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y, sample_weight=w)
    return model, scaler


def main() -> None:
    args = pool_parser(__doc__).parse_args()

    grid = json.loads((RESULTS / "fusion-lobo.json").read_text())["figures"]  # fit_fusion.py's, same pools
    examples, qrels = {}, {}
    for b in BENCHMARKS:
        pools = load_pools(b, args.suite, args.indexes, args.pools)
        if not pools.has_replies:
            qrels[b.name] = read_qrels(args.suite / b.corpus / "qrels.txt")
            examples[b.name] = Examples(pools, qrels[b.name], b.threshold)
    report: dict = {"features": "per signal of " + ", ".join(FUSED) + ": z-score, min-max, reciprocal rank; BM25 has evidence; raw cosine",
                    "held_out": {}}
    for b in BENCHMARKS:
        if b.name not in examples:
            continue
        training = [examples[o.name] for o in BENCHMARKS if o.name in examples and o.group != b.group]
        row = {"default": grid["default"][b.name], "best_single": max(
            (grid[s][b.name] | {"signal": s} for s in SIGNALS), key=lambda f: f["nDCG@10"])}
        for c in REGULARISATION:
            model, scaler = fit(training, c)
            figures = measures(examples[b.name].run(model, scaler), qrels[b.name], b, args.suite)
            row[f"logistic C={c:g}"] = figures | {"coefficients": model.coef_[0].round(3).tolist()}
        row["trained_on"] = sorted({o.name for o in BENCHMARKS if o.name in examples and o.group != b.group})
        report["held_out"][b.name] = row
        print(b.name, {k: (round(v["nDCG@10"], 3), round(v["MRR@10"], 3)) for k, v in row.items() if isinstance(v, dict)}, flush=True)
    (RESULTS / "learned-fusion.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "learned-fusion.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def markdown(report: dict) -> str:
    names = ["default", "best_single", *(f"logistic C={c:g}" for c in REGULARISATION)]
    lines = ["# A learned fusion, leave-one-benchmark-out (question-only shape)", "",
             f"Features: {report['features']}. Each benchmark is ranked by a logistic regression fit on the "
             "other groups' question-only benchmarks (`benchmarks/learned_fusion.py`); `default` is the shipped "
             "fusion, whose held-out choice is the same setting (`fusion-lobo.md`). nDCG@10 / MRR@10.", "",
             "| held out | trained on | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for bench, row in report["held_out"].items():
        cells = []
        for name in names:
            f = row[name]
            label = f" ({f['signal']})" if name == "best_single" else ""
            cells.append(f"{f['nDCG@10']:.3f} / {f['MRR@10']:.3f}{label}")
        lines.append(f"| {bench} | {', '.join(row['trained_on'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
