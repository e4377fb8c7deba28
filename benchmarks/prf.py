"""Dense pseudo-relevance feedback (Rocchio on the query vector), measured on every benchmark.

"Not tried yet" in benchmarks/README.md, and a candidate for the LiveQA-Med-without-synonyms
target of issue #12: the curated synonyms carried the consumer's words for a focus, and the
questions the first ranking puts on top may carry them too. For each query the default fusion
ranks fit_fusion.py's candidates (build/pools); the mean question vector of its top `m` is added
to the query vector with weight `beta` (q' = unit(q + beta * unit(mean))), the vector signals of
the same candidates are scored again with q' (exact cosines from the index's own vectors), and
the default fusion ranks them once more. Candidates stay those of the first pass: this is a
rerank, the cost a product would pay.

Leave-one-benchmark-out as fit_fusion.py: for each group, (m, beta) is chosen on the other
groups (mean of nDCG@10 and MRR@10 over them) and scored on the group left out; the LiveQA-Med
group, which has the only benchmarks with replies, is therefore scored with a setting chosen on
question-only benchmarks alone. Writes benchmarks/results/suite/prf.json and .md.

    python -m benchmarks.prf --suite build/suite --indexes build/suite-index
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from benchmarks.fit_fusion import RESULTS, Pools, index_of, load_pools, measures, objective, pool_parser
from benchmarks.suite import BENCHMARKS
from index.vectors import inner_products
from search.bench import read_qrels, read_queries
from search.fusion import DENSE, MODES, fuse, proposed
from search.searcher import Searcher
from search.shard import Query

TOPS = (3, 5, 10)  # m: how many of the first ranking's top feed back
BETAS = (0.25, 0.5, 1.0)  # the feedback's weight against the query vector's 1


class Feedback:
    """One benchmark's pools with the query vectors and the candidates' vectors they rescore with."""

    def __init__(self, pools: Pools, searcher: Searcher, queries: dict[str, str], panel: bool) -> None:
        self.pools, self.fusion = pools, MODES["hybrid"].for_index(pools.has_replies)
        self.shard = searcher.shards[0]  # the suite's indexes are one shard each
        self.rows = [np.array([self.shard.row(i) for i in ids], dtype=np.int64) for ids in pools.ids]
        if panel:
            self.queries = searcher._stored_queries(pools.qids)
        else:
            vectors = searcher.query_encoder().embed([queries[q] for q in pools.qids])
            self.queries = [Query([], v, v) for v in vectors]
        for rows, query, scores in zip(self.rows[:20], self.queries, pools.scores):  # the pools' cosines are these vectors'
            assert np.allclose(inner_products(self.shard.question_vectors, query.question_vector, rows), scores["dense_question"], atol=1e-4)

    def run(self, top: int | None, beta: float) -> dict[str, list[tuple[str, float]]]:
        """The default's ranking after feedback from its own top `top` (None: no feedback)."""
        run = {}
        for qid, ids, rows, query, scores in zip(self.pools.qids, self.pools.ids, self.rows, self.queries, self.pools.scores):
            keep = proposed({s: scores[s] for s in self.fusion.active}, self.fusion.depth)
            kept = {s: scores[s][keep] for s in self.fusion.active}
            fused = fuse(kept, self.fusion)
            if top is not None and len(keep):
                first = keep[np.argsort(-fused, kind="stable")[:top]]
                kept = kept | self._rescored(rows[keep], rows[first], query, beta)
                fused = fuse(kept, self.fusion)
            order = np.argsort(-fused, kind="stable")[:100]
            run[qid] = [(ids[keep[i]], float(fused[i])) for i in order]
        return run

    def _rescored(self, rows: np.ndarray, feedback: np.ndarray, query: Query, beta: float) -> dict[str, np.ndarray]:
        shift = _unit(np.asarray(self.shard.question_vectors[feedback]).mean(axis=0))
        out = {}
        for signal in DENSE & set(self.fusion.active):
            if signal == "dense_question":
                out[signal] = inner_products(self.shard.question_vectors, _unit(query.question_vector + beta * shift), rows)
            else:
                out[signal] = self.shard.reply_scores(rows, _unit(query.reply_vector + beta * shift))
        return out


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def main() -> None:
    args = pool_parser(__doc__).parse_args()

    settings = {"default": (None, 0.0)} | {f"m={m} beta={b:g}": (m, b) for m, b in itertools.product(TOPS, BETAS)}
    figures: dict[str, dict[str, dict]] = {name: {} for name in settings}
    for b in BENCHMARKS:
        pools = load_pools(b, args.suite, args.indexes, args.pools)
        searcher = Searcher.open(index_of(b, args.indexes))
        feedback = Feedback(pools, searcher, read_queries(args.suite / b.corpus / b.queries), b.panel)
        qrels = read_qrels(args.suite / b.corpus / "qrels.txt")
        for name, (m, beta) in settings.items():
            figures[name][b.name] = measures(feedback.run(m, beta), qrels, b, args.suite)
        best = max(settings, key=lambda n: objective(figures[n][b.name]))
        print(b.name, "default", _pair(figures["default"][b.name]), "best", best, _pair(figures[best][b.name]), flush=True)
    held_out = {}
    for b in BENCHMARKS:
        others = [o.name for o in BENCHMARKS if o.group != b.group]
        chosen = max((n for n in settings if n != "default"),
                     key=lambda n: np.mean([objective(figures[n][o]) for o in others]))
        held_out[b.name] = {"chosen": chosen, "chosen_on": others, **figures[chosen][b.name]}
    report = {"settings": {n: {"top": m, "beta": beta} for n, (m, beta) in settings.items()},
              "figures": figures, "held_out": held_out}
    (RESULTS / "prf.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "prf.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def _pair(f: dict) -> str:
    return f"{f['nDCG@10']:.3f} / {f['MRR@10']:.3f}"


def markdown(report: dict) -> str:
    figures, names = report["figures"], list(report["settings"])
    benches = list(figures["default"])
    lines = ["# Dense pseudo-relevance feedback on the default's candidates", "",
             "nDCG@10 / MRR@10 (`benchmarks/prf.py`): q' = unit(q + beta * unit(mean of the top m question vectors)), "
             "the vector signals rescored with q', the default fusion again. Held out: the setting chosen on the "
             "other groups' benchmarks.", "",
             "| setting | " + " | ".join(benches) + " |", "|---|" + "---|" * len(benches)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(_pair(figures[name][b]) for b in benches) + " |")
    held = report["held_out"]
    lines.append("| **held out** | " + " | ".join(f"{_pair(held[b])} ({held[b]['chosen']})" for b in benches) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
