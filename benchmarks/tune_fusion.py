"""Choose the default fusion by 2-fold cross-validation on LiveQA-Med over MedQuAD.

Every query's candidates are gathered once with every signal scored (Searcher.candidates), so
each fusion setting of the grid is evaluated offline in milliseconds. Queries are split into two
folds by a seeded shuffle; the grid setting with the best mean nDCG@10 on one fold is scored on
the other, and the held-out figures of both folds are pooled. The shipped default (MODES["hybrid"])
is scored on the same held-out folds beside it: a fixed, explainable setting should do as well
as one tuned per fold. Writes benchmarks/results/fusion-cv.json.

    python -m benchmarks.tune_fusion --index build/medquad-index
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import numpy as np

from benchmarks.liveqa import load_qrels, load_queries
from search import Searcher
from search.bench import evaluate
from search.fusion import MODES, SIGNALS, Fusion, fuse

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
SEED = 2017


def grid() -> list[Fusion]:
    """Weighted and RRF fusions over every non-trivial weight vector of the grid."""
    out = []
    for weights in itertools.product(WEIGHTS, repeat=len(SIGNALS)):
        if sum(w > 0 for w in weights) < 2 or max(weights) != 1.0:
            continue  # single signals are reported separately; scale is irrelevant to ranking
        named = dict(zip(SIGNALS, weights))
        out.append(Fusion(weights=named, method="weighted"))
        for k in (10, 60):
            out.append(Fusion(weights=named, method="rrf", rrf_k=k))
    return out


def describe(fusion: Fusion) -> str:
    weights = ", ".join(f"{s} {w:g}" for s, w in fusion.weights.items() if w)
    return f"{fusion.method}{'' if fusion.method == 'weighted' else f' k={fusion.rrf_k}'}: {weights}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default="build/medquad-index")
    parser.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()

    searcher = Searcher.open(args.index)
    qrels: dict[str, dict[str, int]] = {}
    for qid, doc, grade in load_qrels():
        qrels.setdefault(qid, {})[doc] = grade
    settings = grid()
    report: dict = {"grid_size": len(settings), "settings": {}}
    for setting in ("original", "summary"):
        queries = {q: t for q, t in load_queries(setting).items() if q in qrels}
        pools = {q: searcher.candidates(t, depth=args.depth) for q, t in queries.items()}

        def run_of(fusion: Fusion, qids: list[str]) -> dict:
            run = {}
            for q in qids:
                ids, scores = pools[q]
                fused = fuse({s: scores[s] for s in fusion.active}, fusion)
                order = np.argsort(-fused, kind="stable")[:100]
                run[q] = [(ids[i], float(fused[i])) for i in order]
            return run

        qids = sorted(queries, key=int)
        random.Random(SEED).shuffle(qids)
        folds = [sorted(qids[::2], key=int), sorted(qids[1::2], key=int)]
        per_fold = []
        held_out_runs: dict = {}
        default_runs: dict = {}
        for train, test in ((folds[0], folds[1]), (folds[1], folds[0])):
            best = max(settings, key=lambda f: evaluate(run_of(f, train), qrels)["nDCG@10"])
            per_fold.append(describe(best))
            held_out_runs.update(run_of(best, test))
            default_runs.update(run_of(MODES["hybrid"], test))
        overall = max(settings, key=lambda f: evaluate(run_of(f, qids), qrels)["nDCG@10"])
        singles = {s: evaluate(run_of(Fusion(weights={s: 1.0}), qids), qrels) for s in SIGNALS}
        report["settings"][setting] = {
            "held_out": evaluate(held_out_runs, qrels),
            "chosen_per_fold": per_fold,
            "default": describe(MODES["hybrid"]),
            "default_same_folds": evaluate(default_runs, qrels),
            "best_on_all": describe(overall),
            "best_on_all_figures": evaluate(run_of(overall, qids), qrels),
            "single_signals": singles,
        }
        print(setting, json.dumps(report["settings"][setting], indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fusion-cv.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
