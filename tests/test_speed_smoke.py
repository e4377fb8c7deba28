"""Smoke run of the speed benchmark's scale section on a tiny synthetic corpus (no timing asserted)."""

import pytest

from benchmarks import speed
from benchmarks.liveqa import QRELS
from index.readers import read_sources
from tests.conftest import SEEDS

pytestmark = pytest.mark.skipif(not QRELS.is_file(), reason="../shared/datasets is not beside the project")


def test_scale_section_on_a_tiny_corpus(tmp_path, seeds_index, monkeypatch):
    monkeypatch.setattr(speed, "child", lambda phase, target, *rest: {
        "_queries": speed.phase_queries, "_recall": speed.phase_recall}[phase](target, *([False] if phase == "_queries" else [])))
    consultations = read_sources([SEEDS]).consultations
    result = speed.section_scale([300], consultations, seeds_index, work=tmp_path)["300"]
    queries = result["queries"]
    assert queries["documents"] == 300 and queries["index_mb"] > 0 and queries["peak_rss_mb"] > 0
    hybrid = queries["summary/hybrid"]
    assert hybrid["end_to_end"]["n"] == 104 and hybrid["end_to_end"]["p50"] > 0
    assert hybrid["end_to_end"]["p50"] <= hybrid["end_to_end"]["p95"] <= hybrid["end_to_end"]["p99"]
    assert all(hybrid[stage]["p50"] >= 0 for stage in speed.STAGES)
    assert queries["batch_queries_per_second"] > 0
    assert result["recall"]["recall_at_10"] == 1.0 and result["recall"]["kind"]["kind"] == "flat"
    assert set(result["build_stages"]) >= {"store", "bm25", "embed_questions", "embed_replies", "vector_index", "total"}


def tiny_index(directory, seeds_index, vector_index: str = "auto"):
    """300 synthetic consultations with vectors resampled from the seeds index's."""
    speed.build_index(speed.synthetic_corpus(300, read_sources([SEEDS]).consultations), directory,
                      speed.BuildConfig(progress=False, vector_index=vector_index),
                      encoder=speed.SyntheticEncoder.of(speed.Searcher.open(seeds_index)))
    return directory


def test_overlap_section_measures_every_way_on_a_tiny_corpus(tmp_path, seeds_index):
    tiny_index(tmp_path / "tiny", seeds_index)
    result = speed.section_overlap(tmp_path / "tiny", rounds=1, questions=20)
    for way in ("in turn", "side by side"):
        row = result[way]
        for measure in ("after_encoding", "search_but_encoding", "similar", "after_idle_search_but_encoding", "after_idle_similar"):
            assert row[measure]["n"] == result["queries"] and row[measure]["p50"] > 0, (way, measure)
        assert row["idle_pause_ms"] == speed.IDLE_PAUSE * 1e3
    assert "after an idle pause" in "\n".join(speed.overlap_report(result))


def test_vector_kinds_section_measures_each_kind_on_a_tiny_corpus(tmp_path, seeds_index):
    corpus = speed.synthetic_corpus(300, read_sources([SEEDS]).consultations)
    encoder = speed.SyntheticEncoder.of(speed.Searcher.open(seeds_index))
    result = speed.section_vector_kinds(corpus, rounds=1, questions=20, work=tmp_path, encoder=encoder)
    assert result["consultations"] == 300
    for kind in ("hnsw", "hnsw-sq8"):
        row = result[kind]
        assert row["after_encoding"]["n"] == row["after_idle_similar"]["n"] == 20 and row["vectors"] > 0
        assert 0 < row["recall_at_10"] <= 1 and row["faiss_mb"] > 0
    assert result["hnsw-sq8"]["faiss_mb"] < result["hnsw"]["faiss_mb"]  # a byte a dimension, half the links
    assert "| hnsw-sq8 |" in "\n".join(speed.vector_kinds_report(result))


def test_updates_section_grows_the_graphs_of_a_copy_on_a_tiny_corpus(tmp_path, seeds_index):
    tiny_index(tmp_path / "tiny", seeds_index, vector_index="hnsw")
    result = speed.section_updates(tmp_path / "tiny", 5, read_sources([SEEDS]).consultations, work=tmp_path)
    assert result["consultations"] == 305 and result["update"]["vector_index"]["question"]["appended"] == 5
    assert "appended" not in speed.Searcher.open(tmp_path / "updates-tiny-fresh").manifest.parameters["vector_index"]["question"]
    for run in (result["update"], result["fresh_build"]):
        assert run["seconds"] > 0 and run["stages"]["vector_index"] >= 0 and 0 < run["recall"] <= 1
    assert speed.Searcher.open(tmp_path / "tiny").ids()[-1] == "s299"  # the index itself is left as it was
