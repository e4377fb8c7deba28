"""Smoke run of our benchmark: LiveQA-Med questions over a MedQuAD slice, through the harness."""

import pytest

from benchmarks.liveqa import QRELS, load_qrels, load_queries
from benchmarks.medquad import load_medquad
from index import BuildConfig, build_index
from search import Searcher
from search.bench import bench_relevance

pytestmark = pytest.mark.skipif(not QRELS.is_file(), reason="../shared/datasets is not beside the project")


@pytest.fixture(scope="module")
def medquad():
    return load_medquad()


def test_every_judged_answer_resolves_to_one_document(medquad):
    ids = [c.id for c in medquad]
    assert len(ids) == len(set(ids)) == 47441
    known = set(ids)
    qrels = load_qrels()
    assert len(qrels) == 2479 and all(doc in known for _, doc, _ in qrels)
    by_id = {c.id: c for c in medquad}
    judged = {doc for _, doc, _ in qrels}
    assert all(by_id[doc].reply for doc in judged)  # removed answers filled from the CSV
    assert by_id["ADAM_0003147_Sec1"].title == "Polycystic ovary syndrome"


def test_queries_both_settings():
    original, summary = load_queries("original"), load_queries("summary")
    assert len(original) == len(summary) == 104
    assert original["1"] == "Noonan syndrome. What are the references with noonan syndrome and polycystic renal disease"
    assert summary["1"] == "What is the relationship between Noonan syndrome and polycystic renal disease?"


def test_harness_on_a_slice(tmp_path, medquad, encoder):
    qrels: dict[str, dict[str, int]] = {}
    for qid, doc, grade in load_qrels():
        qrels.setdefault(qid, {})[doc] = grade
    qids = sorted(qrels, key=int)[:10]
    judged = {doc for q in qids for doc in qrels[q]}
    corpus = [c for c in medquad if c.id in judged] + medquad[::400]
    build_index(corpus, tmp_path / "index", BuildConfig(progress=False, max_passages=2), encoder=encoder)
    queries = {q: t for q, t in load_queries("original").items() if q in qids}
    methods = ["bm25", "dense_question", "dense_reply", "default"]
    results = bench_relevance(Searcher.open(tmp_path / "index"), queries, {q: qrels[q] for q in qids}, methods, tmp_path / "out")
    for name in methods:
        row = results[name]
        assert 0 < row["nDCG@10"] <= 1 and 0 < row["MRR@10"] <= 1 and 0 <= row["MAP@10"] <= row["MRR@10"]
        assert 0 <= row["AvgScore"] <= 3 and 0 <= row["P@1"] <= 1
        assert row["judged@10"] > 0.5  # the slice is mostly judged answers
        assert row["R@100"] > 0.5
    assert (tmp_path / "out" / "default.run").stat().st_size > 0
