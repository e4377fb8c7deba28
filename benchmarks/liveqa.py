"""TREC 2017 LiveQA medical test questions and their MedQuAD judgments, as benchmark files.

Queries: the original question (SUBJECT + ". " + MESSAGE), or the NLM summary. Qrels: the 2,479
judged MedQuAD answers, grade 1-Incorrect .. 4-Excellent, written as TREC qrels
(`qid 0 docid grade`) for `simqa bench relevance` (benchmarks/suite.py writes them).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.files import write_jsonl, write_qrels, write_queries
from benchmarks.medquad import SHARED, load_medquad
from index.consultation import Consultation

LIVEQA = SHARED / "liveqa_med_2017"
QUESTIONS = LIVEQA / "TestDataset" / "TREC-2017-LiveQA-Medical-Test-Questions-w-summaries.xml"
QRELS = LIVEQA / "All-qrels_LiveQAMed2017-TestQuestions_2479_Judged-Answers.txt"
SETTINGS = ("original", "summary")


def load_queries(setting: str = "original") -> dict[str, str]:
    """qid (the number of TQ<n>, as in the qrels) -> query text."""
    queries = {}
    for question in ET.parse(QUESTIONS).getroot().iter("NLM-QUESTION"):
        qid = question.get("qid").removeprefix("TQ")
        if setting == "original":
            subject = (question.findtext("Original-Question/SUBJECT") or "").strip()
            message = (question.findtext("Original-Question/MESSAGE") or "").strip()
            text = f"{subject}. {message}" if subject else message
        else:
            text = (question.findtext("NLM-Summary") or "").strip()
        queries[qid] = " ".join(text.split())
    return queries


def load_qrels() -> list[tuple[str, str, int]]:
    """(qid, docid, grade 1..4) for every judged answer."""
    qrels = []
    for line in QRELS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, grade, answer = line.split()
            qrels.append((qid, answer.removesuffix(".txt"), int(grade.split("-")[0])))
    return qrels


def write_files(out: Path, consultations: list[Consultation] | None = None) -> dict[str, Path]:
    """Write corpus JSONL (MedQuAD, or a variant of it), queries TSV per setting and TREC qrels
    under `out`; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"corpus": out / "corpus.jsonl", "qrels": out / "qrels.txt"}
    write_jsonl(paths["corpus"], load_medquad() if consultations is None else consultations)
    write_qrels(paths["qrels"], load_qrels())
    for setting in SETTINGS:
        paths[setting] = out / f"queries-{setting}.tsv"
        write_queries(paths[setting], load_queries(setting))
    return paths
