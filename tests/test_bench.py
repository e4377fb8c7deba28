"""The relevance harness: readers, metrics by hand, and the report files on the seeds index."""

import json
import math

import pytest

from index.errors import ParseError
from search.bench import METHODS, avg_score, bench_relevance, evaluate, panel_recovery, per_query, read_qrels, read_queries, read_run
from tests.conftest import SEED_000, SEED_003


def test_read_queries_tsv_and_jsonl(tmp_path):
    (tmp_path / "q.tsv").write_text("1\tknee pain\n\n2\t  head   tremor \n")
    assert read_queries(tmp_path / "q.tsv") == {"1": "knee pain", "2": "head tremor"}
    (tmp_path / "q.jsonl").write_text('{"qid": 7, "text": "rash"}\n')
    assert read_queries(tmp_path / "q.jsonl") == {"7": "rash"}
    (tmp_path / "bad.tsv").write_text("1\tok\nno tab here\n")
    with pytest.raises(ParseError, match="bad.tsv:2: field 'line'"):
        read_queries(tmp_path / "bad.tsv")


def test_a_judged_query_without_results_counts_zero():
    """A method can find nothing for a query (dense_reply on an index without replies)."""
    qrels = {"1": {"a": 2}, "2": {"b": 2}}
    result = evaluate({"1": [("a", 1.0)], "2": []}, qrels, threshold=2)
    assert result["MRR@10"] == pytest.approx(0.5) and result["judged@10"] == pytest.approx(0.5)


def test_read_qrels(tmp_path):
    (tmp_path / "qrels").write_text("1 0 a 3\n1 0 b 1\n2 0 c 4\n")
    assert read_qrels(tmp_path / "qrels") == {"1": {"a": 3, "b": 1}, "2": {"c": 4}}
    (tmp_path / "bad").write_text("1 0 a 3\n1 0 b high\n")
    with pytest.raises(ParseError, match="bad:2"):
        read_qrels(tmp_path / "bad")


def test_metrics_by_hand():
    qrels = {"1": {"a": 4, "b": 1, "c": 2}, "2": {"d": 3}}
    run = {"1": [("b", 3.0), ("a", 2.0), ("x", 1.0)], "2": [("y", 2.0), ("z", 1.0)]}
    result = evaluate(run, qrels, threshold=2)
    # query 1: top result graded 1 -> 0; query 2: top result unjudged -> 0
    assert result["AvgScore"] == 0.0
    assert result["P@1"] == 0.0
    assert result["MRR@10"] == pytest.approx((1 / 2 + 0) / 2)  # first relevant (a) at rank 2
    assert result["judged@10"] == pytest.approx((2 / 3 + 0) / 2)
    assert result["R@100"] == pytest.approx((1 / 2 + 0) / 2)  # a found, c not; d not
    # gains grade - 1: a=3, b=0, c=1; query 1 ranks b, a: DCG 3/log2(3), ideal 3 + 1/log2(3)
    assert result["nDCG@10"] == pytest.approx((3 / math.log2(3)) / (3 + 1 / math.log2(3)) / 2)
    assert avg_score({"1": [("a", 1.0)], "2": [("d", 1.0)]}, qrels) == pytest.approx((3 + 2) / 2)


def test_per_query_values_average_to_the_evaluated_mean():
    qrels = {"1": {"a": 4, "b": 1, "c": 2}, "2": {"d": 3}, "3": {"e": 2}}
    run = {"1": [("b", 3.0), ("a", 2.0)], "2": [("d", 2.0)], "3": []}
    values = per_query(run, qrels, threshold=2, measure="MRR@10")
    assert values == {"1": 0.5, "2": 1.0, "3": 0.0}
    assert sum(values.values()) / 3 == pytest.approx(evaluate(run, qrels, threshold=2)["MRR@10"])


def test_report_files_on_the_seeds_index(tmp_path, searcher):
    queries = {"q1": "involuntary head tremor when nervous", "q2": "wrist twitches after lifting"}
    qrels = {"q1": {"x51ada141010324ba": 4, SEED_003: 2, SEED_000: 1}, "q2": {"xfb36333b9b8c8bd1": 4}}
    methods = ["bm25", "dense_question", "default"]
    results = bench_relevance(searcher, queries, qrels, methods, tmp_path, title="seeds")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{m}.run" for m in methods] + ["results.json", "results.md", "results.png"])
    for row in results.values():
        assert 0 <= row["AvgScore"] <= 3 and all(0 <= row[m] <= 1 for m in row if m != "AvgScore")
    assert results["default"]["P@1"] == 1.0  # both queries' best answer ranks first
    run = (tmp_path / "default.run").read_text().splitlines()
    assert run[0].split() [:4] == ["q1", "Q0", "x51ada141010324ba", "1"] and len(run) == 2 * 9
    assert json.loads((tmp_path / "results.json").read_text())["meta"]["judged_queries"] == 2
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "| default |" in (tmp_path / "results.md").read_text()
    assert [doc for doc, _ in read_run(tmp_path / "default.run")["q1"]] == [h.id for h in searcher.search(queries["q1"], k=100)]
    (tmp_path / "bad.run").write_text("q1 Q0 a 1 0.5\n")
    with pytest.raises(ParseError, match="bad.run:1"):
        read_run(tmp_path / "bad.run")


def test_panel_recovery_on_the_seeds(searcher):
    rows = dict((i, (found, total)) for i, found, total in panel_recovery(searcher))
    assert rows[SEED_000] == (4, 4)
    assert sum(f for f, _ in rows.values()) >= 5 and sum(t for _, t in rows.values()) == 8


def test_every_method_is_a_valid_fusion():
    assert {"bm25", "bm25_question", "dense_question", "dense_reply", "default"} <= set(METHODS)
