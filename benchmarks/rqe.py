"""RQE clinical questions (AMIA 2016 training pairs) as a question-to-question benchmark.

Each pair holds a clinician's original question (CHQ) and either its doctor-written short form
(value="true") or a random other short question (value="false"). Queries: the distinct original
questions with a true short form whose text differs from theirs; relevant: those short forms.
Corpus: every distinct short question (true and random ones, keyed by normalised text) plus
MedQuAD's questions, none with a reply. The false pairs give, per query, random negatives to
check that the true short form ranks above them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from benchmarks.medquad import SHARED
from index.consultation import normalize_space

RQE = SHARED / "rqe_train" / "RQE_Train_8588_AMIA2016.xml"


@dataclass
class RqeQuery:
    """One original question: its text, its true short forms and its random negatives (by key)."""

    qid: str
    text: str
    relevant: set[str] = field(default_factory=set)
    negatives: set[str] = field(default_factory=set)


def key(text: str) -> str:
    """Texts that differ only in white space or case are one short question."""
    return normalize_space(text).casefold()


def load_rqe() -> tuple[list[RqeQuery], dict[str, str], dict[str, int]]:
    """(queries, short-question id -> text, counts of what was dropped and kept)."""
    shorts: dict[str, str] = {}  # key -> id
    texts: dict[str, str] = {}  # id -> text
    by_original: dict[str, RqeQuery] = {}
    counts = {"pairs": 0, "identical_true_pairs": 0, "empty": 0}
    for pair in ET.parse(RQE).getroot().iter("pair"):
        counts["pairs"] += 1
        original = normalize_space(pair.findtext("chq") or "")
        short = normalize_space(pair.findtext("faq") or "")
        if not original or not short:
            counts["empty"] += 1
            continue
        if key(short) not in shorts:
            shorts[key(short)] = f"rqe-short-{len(shorts) + 1}"
            texts[shorts[key(short)]] = short
        query = by_original.setdefault(key(original), RqeQuery(f"rqe-{len(by_original) + 1}", original))
        if pair.get("value") == "true":
            if key(short) == key(original):
                counts["identical_true_pairs"] += 1
            else:
                query.relevant.add(shorts[key(short)])
        else:
            query.negatives.add(shorts[key(short)])
    queries = [q for q in by_original.values() if q.relevant]
    counts.update(originals=len(by_original), queries=len(queries), short_questions=len(texts))
    return queries, texts, counts


def negatives_above(run: dict[str, list[tuple[str, float]]], negatives: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    """Share of (query, random negative) pairs whose negative ranks above the query's best true
    short form in the run (a document missing from the run ranks below every listed one)."""
    above = total = 0
    for qid, docs in negatives.items():
        ranks = {doc: i for i, (doc, _) in enumerate(run.get(qid, []))}
        best = min((ranks.get(d, len(ranks)) for d in qrels.get(qid, {})), default=len(ranks))
        for negative in docs:
            total += 1
            above += ranks.get(negative, len(ranks) + 1) < best
    return above / total if total else 0.0
