"""What each choice behind the default is worth, on LiveQA-Med original questions over MedQuAD.

1. candidate depth per signal (default 100), with runs of 10 results so the depth, not the run
   length, decides (R@100 is left out there);
2. reply vectors: best of up to 8 passages vs the first passage only (an index built with
   max_passages=1; its vectors come from the embedding cache);
3. BM25 over question + answer: one concatenated field vs the sum of two fields (simqa's `bm25`
   signal), and simqa's tokenizer (stop words, Snowball stems) vs simpler tokens.
Writes benchmarks/results/ablations.md.

    python -m benchmarks.ablations --index build/medquad-index
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.liveqa import load_qrels, load_queries
from index import BuildConfig, build_index
from index.bm25 import FieldBM25
from index.embed_cache import default_cache_path
from index.text import tokenize
from search import MODES, Searcher
from search.bench import evaluate, run_method
from search.fusion import Fusion

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("AvgScore", "nDCG@10", "MAP@10", "MRR@10", "P@1", "R@100")


def row(name: str, figures: dict, columns: tuple[str, ...] = COLUMNS) -> str:
    return f"| {name} | " + " | ".join(f"{figures[c]:.3f}" for c in columns) + " |"


def header(columns: tuple[str, ...] = COLUMNS) -> list[str]:
    return ["| setting | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]


def bm25_run(texts: list[str], ids: list[str], queries: dict[str, str], tokens) -> dict:
    index = FieldBM25.build([tokens(t) for t in texts])
    run = {}
    for qid, text in queries.items():
        scores = index.scores(tokens(text))
        top = np.argsort(-scores, kind="stable")[:100]
        run[qid] = [(ids[i], float(scores[i])) for i in top if scores[i] > 0]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default="build/medquad-index")
    parser.add_argument("--cache", default=str(default_cache_path()))
    args = parser.parse_args()
    searcher = Searcher.open(args.index)
    queries = load_queries("original")
    qrels: dict[str, dict[str, int]] = {}
    for qid, doc, grade in load_qrels():
        qrels.setdefault(qid, {})[doc] = grade
    lines = ["# Ablations: LiveQA-Med 2017 original questions over MedQuAD", ""]

    at_10 = COLUMNS[:-1]
    lines += ["## 1. Candidate depth per signal (default fusion, runs of 10)", "", *header(at_10)]
    for depth in (10, 25, 50, 100, 200):
        fusion = replace(MODES["hybrid"], depth=depth)
        lines.append(row(f"depth {depth}", evaluate(run_method(searcher, queries, fusion, depth=10), qrels), at_10))

    lines += ["", "## 2. Reply vectors: best of up to 8 passages vs the first passage only", "", *header()]
    consultations = searcher.consultations()
    first_only = Path(args.index).with_name(Path(args.index).name + "-first-passage")
    build_index(consultations, first_only, BuildConfig(max_passages=1, precision="fp32", progress=False, cache=Path(args.cache)))
    first = Searcher.open(first_only)
    for name, s in (("best of 8 passages", searcher), ("first passage only", first)):
        lines.append(row(f"dense_reply, {name}", evaluate(run_method(s, queries, Fusion(weights={"dense_reply": 1.0})), qrels)))
        lines.append(row(f"default, {name}", evaluate(run_method(s, queries, MODES["hybrid"]), qrels)))

    lines += ["", "## 3. BM25 over question + answer: fields and tokens", "", *header()]
    lines.append(row("two fields summed (simqa `bm25`), simqa tokenizer",
                     evaluate(run_method(searcher, queries, Fusion(weights={"bm25": 1.0})), qrels)))
    texts = [c.question_text() + "\n" + c.reply_text() for c in consultations]
    ids = [c.id for c in consultations]
    simple = (
        ("simqa tokenizer", tokenize),
        ("lower-cased words, no stop words or stems", lambda t: re.findall(r"\w+", t.lower())),
        ("lower-cased whitespace split", lambda t: t.lower().split()),
    )
    for name, tokens in simple:
        lines.append(row(f"one concatenated field, {name}", evaluate(bm25_run(texts, ids, queries, tokens), qrels)))

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ablations.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
