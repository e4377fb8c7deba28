"""The benchmark suite: every collection shape the default fusion is fitted and judged on.

Each benchmark is a corpus (JSONL), queries (TSV) and qrels (TREC), written under one folder
by `python -m benchmarks.suite DIR`, and run with `simqa bench relevance` like any user's data.
Benchmarks that share queries and judgments form one group; leave-one-benchmark-out fitting
(benchmarks/fit_fusion.py) leaves a whole group out, so no judgment is seen twice.

- liveqa-original / liveqa-summary: LiveQA-Med 2017 questions over MedQuAD with its focus
  synonyms (question + answer documents), the main benchmark (benchmarks/liveqa.py).
- liveqa-nosyn: the same without MedQuAD's curated synonyms (`question_title` empty), as a site
  would have it; liveqa-qonly: also without replies, so a signal is absent.
- paraphrase: each original LiveQA question should find its own NLM summary among the
  summaries and MedQuAD's questions (question-only corpus, noisy text against a clean rewrite).
- rqe: clinicians' questions should find their doctor-written short form among RQE's short
  questions and MedQuAD's questions (benchmarks/rqe.py); rqe-panels stores the original
  questions too and asks similar() for each one's panel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.files import write_jsonl, write_qrels, write_queries
from benchmarks.liveqa import load_queries, write_files
from benchmarks.medquad import load_medquad
from benchmarks.rqe import load_rqe
from index.consultation import Consultation


@dataclass(frozen=True)
class Benchmark:
    name: str
    group: str  # benchmarks sharing queries and judgments
    corpus: str  # folder name of the corpus (several benchmarks share one index)
    queries: str  # file name under the benchmark's folder
    shape: str  # what the collection looks like, for tables
    threshold: int = 1  # lowest relevant grade (LiveQA-Med: 2-Related; the others are binary)
    panel: bool = False  # queries are stored consultations answered by similar(id), not search(text)


BENCHMARKS = (
    Benchmark("liveqa-original", "liveqa-med", "medquad", "queries-original.tsv", "question + answer, synonyms", 2),
    Benchmark("liveqa-summary", "liveqa-med", "medquad", "queries-summary.tsv", "question + answer, synonyms", 2),
    Benchmark("liveqa-nosyn", "liveqa-med", "medquad-nosyn", "queries-original.tsv", "question + answer", 2),
    Benchmark("liveqa-qonly", "liveqa-med", "medquad-qonly", "queries-original.tsv", "question only", 2),
    Benchmark("paraphrase", "paraphrase", "paraphrase", "queries.tsv", "question only"),
    Benchmark("rqe", "rqe", "rqe", "queries.tsv", "question only"),
    Benchmark("rqe-panels", "rqe", "rqe-panels", "queries.tsv", "question only, similar(id)", panel=True),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def questions_only(medquad: list[Consultation]) -> list[Consultation]:
    """MedQuAD's questions alone, as a question-only site would store them."""
    return [Consultation(id=c.id, question=c.question) for c in medquad]


def write_suite(out: Path) -> dict[str, int]:
    """Write every corpus, query file and qrels file under `out`; returns counts for the README."""
    counts: dict[str, int] = {}
    medquad = load_medquad()
    write_files(out / "medquad", medquad)
    write_files(out / "medquad-nosyn", [replace(c, question_title="") for c in medquad])
    write_files(out / "medquad-qonly", [replace(c, question_title="", reply="") for c in medquad])

    # Documents a benchmark judges go after MedQuAD's: rows break ties of equal scores, and an
    # early row would win them.
    questions = questions_only(medquad)
    (out / "paraphrase").mkdir(exist_ok=True)
    summaries = load_queries("summary")
    write_jsonl(out / "paraphrase" / "corpus.jsonl", questions + [Consultation(id=f"summary-{q}", question=t) for q, t in summaries.items()])
    write_queries(out / "paraphrase" / "queries.tsv", load_queries("original"))
    write_qrels(out / "paraphrase" / "qrels.txt", [(q, f"summary-{q}", 1) for q in summaries])

    rqe_queries, shorts, rqe_counts = load_rqe()
    counts.update({f"rqe_{k}": v for k, v in rqe_counts.items()})
    shorts_corpus = [Consultation(id=i, question=t) for i, t in shorts.items()]
    (out / "rqe").mkdir(exist_ok=True)
    write_jsonl(out / "rqe" / "corpus.jsonl", questions + shorts_corpus)
    write_queries(out / "rqe" / "queries.tsv", {q.qid: q.text for q in rqe_queries})
    write_qrels(out / "rqe" / "qrels.txt", [(q.qid, d, 1) for q in rqe_queries for d in sorted(q.relevant)])
    (out / "rqe" / "negatives.json").write_text(json.dumps({q.qid: sorted(q.negatives) for q in rqe_queries if q.negatives}), encoding="utf-8")
    # The panel path: the original questions stored beside their short forms, similar() on each.
    (out / "rqe-panels").mkdir(exist_ok=True)
    write_jsonl(out / "rqe-panels" / "corpus.jsonl", questions + shorts_corpus + [Consultation(id=q.qid, question=q.text) for q in rqe_queries])
    write_queries(out / "rqe-panels" / "queries.tsv", {q.qid: q.text for q in rqe_queries})
    write_qrels(out / "rqe-panels" / "qrels.txt", [(q.qid, d, 1) for q in rqe_queries for d in sorted(q.relevant)])
    counts["paraphrase_documents"] = len(summaries) + len(questions)
    counts["rqe_documents"] = len(shorts_corpus) + len(questions)
    return counts


if __name__ == "__main__":
    import sys

    print(json.dumps(write_suite(Path(sys.argv[1] if len(sys.argv) > 1 else "build/suite")), indent=1))
