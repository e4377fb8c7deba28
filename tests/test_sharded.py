"""Sharded indexes (index/sharded.py): the same answers as one index, updates routed to shards,
statistics drift and its refresh, damaged or missing shards, a writer killed between shards and
the top level, and builds on a local Ray runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.liveqa import QRELS
from benchmarks.medquad import load_medquad
from index import BuildConfig, build_index, generations, sharded, update_index
from index.consultation import Consultation
from index.embed import Encoder
from index.passages import MAX_PASSAGES
from index.errors import IndexFormatError, ParseError, SimqaError
from index.readers import read_sources
from search import Searcher
from search.cli import main
from search.fusion import Fusion
from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.skipif(not QRELS.is_file(), reason="../shared/datasets is not beside the project")

QUERIES = ["what causes headaches and nausea", "genetic testing for children", "treatment of high blood pressure",
           "is this rash contagious", "symptoms of thyroid cancer", "how is diabetes inherited"]


# Builds and updates here share one embedding cache: each text is embedded once in this module.
CACHE = Path(tempfile.mkdtemp(prefix="simqa-sharded-")) / "embeddings.sqlite"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    """fp32, as conftest's, with the module's cache."""
    return Encoder(precision="fp32", cache=CACHE)


@pytest.fixture(scope="module")
def corpus() -> list[Consultation]:
    """159 MedQuAD consultations, and a repost of the first under another id (a duplicate that
    similar() must leave out whichever shard holds it)."""
    consultations = load_medquad()[::300]
    return consultations + [replace(consultations[0], id="repost-of-first")]


def config(**changes) -> BuildConfig:
    return BuildConfig(**{"progress": False, "max_passages": 2, "vector_index": "flat", "precision": "fp32", "cache": CACHE, **changes})


@pytest.fixture(scope="module")
def single(tmp_path_factory, corpus, encoder) -> Path:
    directory = tmp_path_factory.mktemp("single") / "index"
    build_index(corpus, directory, config(), encoder=encoder)
    return directory


def build_sharded(directory: Path, corpus, encoder, shards: int, **changes) -> Path:
    build_index(corpus, directory, config(shards=shards, **changes), encoder=encoder)
    return directory


def answers(searcher: Searcher, ids: list[str]) -> list:
    """Every kind of answer: search in each mode, filtered, batched; similar, single and batched."""
    out = []
    for mode in ("hybrid", "bm25", "dense"):
        out += [[(h.id, h.score) for h in searcher.search(q, mode=mode)] for q in QUERIES]
    out += [[(h.id, h.score) for h in searcher.search(q, department="Neurology")] for q in QUERIES[:2]]
    out += [[(h.id, h.score) for h in hits] for hits in searcher.search_many(QUERIES)]
    out += [[(h.id, h.score) for h in searcher.similar(i, k=10)] for i in ids]
    out += [[(h.id, h.score) for h in hits] for hits in searcher.similar_many(ids, k=10)]
    return out


def assert_same(left: list, right: list) -> None:
    for a, b in zip(left, right, strict=True):
        assert [i for i, _ in a] == [i for i, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


@pytest.mark.parametrize("shards", [2, 3])
def test_a_sharded_index_answers_as_the_single_index(tmp_path, corpus, single, encoder, shards):
    directory = build_sharded(tmp_path / "sharded", corpus, encoder, shards)
    one, many = Searcher.open(single), Searcher.open(directory)
    assert len(many.shards) == shards and all(len(s.store) for s in many.shards)
    assert sorted(many.ids()) == sorted(one.ids()) and len(many) == len(one)
    ids = [c.id for c in corpus[:25]]
    assert_same(answers(one, ids), answers(many, ids))
    assert "repost-of-first" not in [h.id for h in many.similar(corpus[0].id, k=20)]
    assert many.get(corpus[5].id) == one.get(corpus[5].id) and corpus[5].id in many and "nope" not in many
    for shard, number in zip(many.shards, range(shards)):  # each holds the ids its hash names
        assert {sharded.shard_of(i, shards) for i in shard.store.ids} == {number}
    explained = many.search(QUERIES[0], explain=True)[0]
    assert explained.score == pytest.approx(sum(p["contribution"] for p in explained.explain.values()))


def test_shards_asked_for_too_little_are_asked_again_and_answer_as_one_index(tmp_path, corpus, single, encoder, monkeypatch):
    """A shard proposes its expected part of the collection's top plus SHARD_SIGMAS deviations;
    one that may hold more (here every one: asked for less than its expected part) is asked
    again for the whole top, so the answers stay those of one index."""
    import search.shard as shard

    assert shard.shard_limit(100, 1) == 100 and shard.shard_limit(100, 4) == 43 and shard.shard_limit(300, 4) == 105
    assert shard.shard_limit(10, 50) == 2 and shard.shard_limit(5, 2) == 5  # never more than the whole top
    directory = build_sharded(tmp_path / "sharded", corpus, encoder, 3)
    monkeypatch.setattr(shard, "SHARD_SIGMAS", -3)
    short = []
    original = shard.Proposals.short
    monkeypatch.setattr(shard.Proposals, "short", staticmethod(lambda proposals: short.append(original(proposals)) or short[-1]))
    ids = [c.id for c in corpus[:10]]
    assert_same(answers(Searcher.open(single), ids), answers(Searcher.open(directory), ids))
    assert any(short)  # the searcher asked short shards again (a shard with fewer matches than asked is not short)


def test_bm25_rows_tied_at_the_collection_threshold_do_not_make_a_shard_short(tmp_path, corpus, encoder, monkeypatch):
    """A shard proposes every BM25 row tied with its last, so one whose lowest proposal equals
    the collection's threshold holds no more of its top: 120 reposts of one question tie on its
    words, each shard holds more of them than it is asked for, none is asked again, and the answers are one index's."""
    import search.shard as shard

    tied = [replace(corpus[i % len(corpus)], id=f"tied-{i}", title="Vertigo", question_title="",
                    question="What are the symptoms of vertigo?") for i in range(120)]
    collection = corpus + tied
    build_index(collection, tmp_path / "one", config(), encoder=encoder)
    directory = build_sharded(tmp_path / "sharded", collection, encoder, 3)
    monkeypatch.setattr(shard, "SHARD_SIGMAS", 0)  # a shard of 3 is asked for 34 of the top 100
    short = []
    original = shard.Proposals.short
    monkeypatch.setattr(shard.Proposals, "short", staticmethod(lambda proposals: short.append(original(proposals)) or short[-1]))
    one, many = Searcher.open(tmp_path / "one"), Searcher.open(directory)
    words = Fusion(weights={"bm25_question": 1.0})  # the question's words alone: the reposts' replies differ
    for distinct in (True, False):
        expected = [(h.id, h.score) for h in one.search("vertigo symptoms", fusion=words, distinct=distinct)]
        assert_same([expected], [[(h.id, h.score) for h in many.search("vertigo symptoms", fusion=words, distinct=distinct)]])
    assert short and not any(short)


def test_bm25_scores_do_not_depend_on_the_shard_or_the_number_of_shards(tmp_path, corpus, single, encoder):
    one = Searcher.open(single)
    three = Searcher.open(build_sharded(tmp_path / "three", corpus, encoder, 3))
    for query in QUERIES:
        ids, scores = one.candidates(query, signals=("bm25",))
        expected = dict(zip(ids, scores["bm25"]))
        ids, scores = three.candidates(query, signals=("bm25",))
        assert expected and dict(zip(ids, scores["bm25"])) == pytest.approx(expected, rel=1e-5)


def test_a_question_only_collection_ranks_as_one_index(tmp_path, corpus, encoder):
    questions = [replace(c, reply="", more_info="") for c in corpus]
    build_index(questions, tmp_path / "one", config(), encoder=encoder)
    build_sharded(tmp_path / "three", questions, encoder, 3)
    one, many = Searcher.open(tmp_path / "one"), Searcher.open(tmp_path / "three")
    assert not many.has_replies  # the question-only fusion, chosen for the whole collection
    ids = [c.id for c in corpus[:10]]
    assert_same(answers(one, ids), answers(many, ids))


def test_updates_route_to_shards_and_refresh_the_statistics_when_they_drift(tmp_path, corpus, encoder):
    directory = build_sharded(tmp_path / "sharded", corpus[:-40], encoder, 3)
    before = {e["directory"]: e["generation"] for e in json_manifest(directory)["parameters"]["shards"]}
    added = corpus[-40:-37]  # 3 more than 120: under REFRESH_AT, the statistics are kept
    touched = {sharded.shard_of(c.id, 3) for c in added}
    manifest = update_index(directory, upserts=added, config=config())
    assert manifest.parameters["stats_changed"] == 3
    after = {e["directory"]: e["generation"] for e in manifest.parameters["shards"]}
    assert {n for n in range(3) if after[f"shard-{n:03d}"] != before[f"shard-{n:03d}"]} == touched
    searcher = Searcher.open(directory)
    assert all(c.id in searcher for c in added) and len(searcher) == len(corpus) - 40 + 3

    manifest = update_index(directory, upserts=corpus[-37:], deletes=[corpus[0].id], config=config())  # now over REFRESH_AT
    assert manifest.parameters["stats_changed"] == 0
    final = [c for c in corpus[1:]]
    build_index(final, tmp_path / "fresh", config(), encoder=encoder)
    ids = [c.id for c in final[:10]]
    assert_same(answers(Searcher.open(tmp_path / "fresh"), ids), answers(Searcher.open(directory), ids))

    update_index(directory, deletes=[corpus[1].id], config=config())
    assert json_manifest(directory)["parameters"]["stats_changed"] == 1
    assert main(["refresh-stats", "--index", str(directory), "--quiet"]) == 0
    assert json_manifest(directory)["parameters"]["stats_changed"] == 0
    for number in range(3):  # the statistics changed, not the vectors: every shard kept its vector indexes
        kept = json_manifest(directory / f"shard-{number:03d}")["parameters"]["vector_index"]
        assert kept["question"]["appended"] == kept["reply"]["appended"] == 0
    with pytest.raises(SimqaError, match="unknown consultation id"):
        update_index(directory, deletes=["nope"])
    with pytest.raises(SimqaError, match="is a shard of the sharded index"):
        update_index(directory / "shard-000", deletes=[corpus[2].id])


def test_shard_count_empty_shards_and_rebuilds(tmp_path, corpus, encoder):
    directory = build_sharded(tmp_path / "sharded", corpus, encoder, 2)
    generation = generations.current(directory)
    assert build_index(corpus, directory, config(), encoder=encoder).parameters["shards"]  # keeps its 2 shards
    assert generations.current(directory) == generation  # unchanged: nothing written
    with pytest.raises(SimqaError, match="has 2 shard"):
        build_index(corpus, directory, config(shards=3), encoder=encoder)
    with pytest.raises(SimqaError, match="empty; use fewer shards"):
        build_index(corpus[:2], tmp_path / "tiny", config(shards=8), encoder=encoder)
    assert not (tmp_path / "tiny").exists()


def json_manifest(directory: Path) -> dict:
    return json.loads((generations.current(directory) / "manifest.json").read_text())


def test_a_damaged_missing_or_foreign_shard_is_refused(tmp_path, corpus, encoder, capsys):
    directory = build_sharded(tmp_path / "sharded", corpus, encoder, 2)
    assert main(["verify", "--index", str(directory)]) == 0
    assert "shard-001" in capsys.readouterr().out
    shard = generations.current(directory / "shard-001")
    vectors = shard / "question.faiss"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="shard-001.*question.faiss: checksum differs"):
        Searcher.open(directory)
    assert main(["verify", "--index", str(directory)]) == 1
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "modules.json"):
        (other / name).write_text("{}")
    with pytest.raises(IndexFormatError, match="built with model"):
        Searcher.open(directory, model=str(other))
    shutil.rmtree(directory / "shard-001")
    with pytest.raises(IndexFormatError, match="shard-001.*missing; shard shard-001 of the index"):
        Searcher.open(directory)


KILL_AT_TOP = """
import os, sys
from pathlib import Path
from index import generations, update_index, BuildConfig
from index.consultation import Consultation
publish = generations.publish
def killed(directory, work):
    if not directory.name.startswith("shard-"):
        os._exit(9)  # as kill -9: the shards are published, the top level is not
    return publish(directory, work)
generations.publish = killed
update_index(sys.argv[1], upserts=[Consultation(id=f"new-{i}", title=f"New question {i}", question="Why does my ear ring?",
             reply="Tinnitus has many causes.") for i in range(6)], deletes=[sys.argv[2]],
             config=BuildConfig(progress=False, precision="fp32", max_passages=2, cache=Path(os.environ["SIMQA_CACHE"])))
"""


def test_a_writer_killed_between_the_shards_and_the_top_level_changes_nothing(tmp_path, corpus, encoder):
    directory = build_sharded(tmp_path / "sharded", corpus, encoder, 3)
    ids = [c.id for c in corpus[:10]]
    before = answers(Searcher.open(directory), ids)
    done = subprocess.run([sys.executable, "-c", KILL_AT_TOP, str(directory), corpus[0].id], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "SIMQA_CACHE": str(CACHE)})
    assert done.returncode == 9, done.stderr
    ahead = [s for s in sorted(directory.glob("shard-*"))
             if generations.current(s).name != next(e["generation"] for e in json_manifest(directory)["parameters"]["shards"]
                                                     if e["directory"] == s.name)]
    assert ahead  # the killed writer published shards the top level does not name
    assert_same(before, answers(Searcher.open(directory), ids))  # readers follow the top level: the old state
    update_index(directory, deletes=[corpus[1].id], config=config())  # the next writer rolls the shards back first
    searcher = Searcher.open(directory)
    assert corpus[0].id in searcher and corpus[1].id not in searcher and "new-0" not in searcher
    for shard in directory.glob("shard-*"):
        assert Searcher.open(shard)  # each shard is a complete index of its own


def test_ray_missing_gives_a_clear_error(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(SimqaError, match=r"pip install 'simqa\[ray\]'"):
        build_index(corpus, tmp_path / "idx", config(shards=2, ray="local"))
    assert not (tmp_path / "idx").exists()


def test_a_build_on_local_ray_equals_the_in_process_build(tmp_path, corpus, encoder):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    build_sharded(tmp_path / "here", corpus, encoder, 2)
    build_sharded(tmp_path / "ray", corpus, None, 2, ray="local", ray_actors=2, cache=tmp_path / "ray-cache.sqlite")
    ids = [c.id for c in corpus[:10]]
    assert_same(answers(Searcher.open(tmp_path / "here"), ids), answers(Searcher.open(tmp_path / "ray"), ids))
    for number in range(2):
        here, there = (json.loads((generations.current(d / f"shard-{number:03d}") / "manifest.json").read_text())
                       for d in (tmp_path / "here", tmp_path / "ray"))
        assert here["parameters"]["content_sha256"] == there["parameters"]["content_sha256"]
    build_index(corpus, tmp_path / "ray", config(ray="local", cache=tmp_path / "ray-cache.sqlite"))  # all cached: unchanged


def test_reading_on_local_ray_gives_what_reading_here_gives(tmp_path, corpus):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from index.ray_runner import RayRunner

    shutil.copytree(SEEDS, tmp_path / "pages")
    lines = [json.dumps({"id": c.id, "question": c.question, "reply": c.reply}) for c in corpus[:20]]
    (tmp_path / "pages" / "export.jsonl").write_text("\n".join(lines[:5] + ["{not json"] + lines[5:] + ['{"id": "x"}']) + "\n")
    ray = RayRunner("local")
    here, there = read_sources([tmp_path / "pages"], skip_bad=True), read_sources([tmp_path / "pages"], skip_bad=True, ray=ray)
    assert [c.to_dict() for c in there.consultations] == [c.to_dict() for c in here.consultations]
    assert len(here.consultations) > 20 and [str(e) for e in there.skipped] == [str(e) for e in here.skipped]
    assert [e.line for e in there.skipped] == [6, 22]
    with pytest.raises(ParseError, match=r"export\.jsonl:6: field 'line': not valid JSON"):
        read_sources([tmp_path / "pages"], ray=ray)


def embed_elsewhere(texts_file: Path, out: Path, encoder: Encoder, change=None) -> Path:
    """What a user's own pipeline does with `simqa texts`' file: embed, write Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(texts_file).to_pylist()
    rows = []
    for row in table:
        vectors = encoder.embed([row["question"], *row["passages"]])
        rows.append({"id": row["id"], "question_vector": vectors[0].tolist(), "passage_vectors": vectors[1:].tolist()})
    if change:
        rows = change(rows)
    out.mkdir(exist_ok=True)
    half = len(rows) // 2  # two files, as a distributed job writes
    for number, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part), out / f"part-{number}.parquet")
    return out


def test_precomputed_vectors_are_checked_and_need_no_embedding(tmp_path, corpus, single, encoder, monkeypatch):
    pytest.importorskip("pyarrow", reason="the parquet extra is not installed")
    sources = tmp_path / "corpus.jsonl"
    sources.write_text("".join(json.dumps({k: v for k, v in c.to_dict().items() if k != "source"}) + "\n" for c in corpus[:60]))
    assert main(["texts", str(sources), "--out", str(tmp_path / "texts.parquet"), "--quiet"]) == 0
    vectors = embed_elsewhere(tmp_path / "texts.parquet", tmp_path / "vectors", encoder)

    encoded: list[str] = []
    original = Encoder._encode
    monkeypatch.setattr(Encoder, "_encode", lambda self, texts, bar=None: encoded.extend(texts) or original(self, texts, bar))
    full = {"max_passages": MAX_PASSAGES}  # as `simqa texts` splits replies (the CLI's defaults)
    build_index(corpus[:60], tmp_path / "index", config(cache=None, vectors=vectors, shards=2, **full))
    assert len(encoded) <= 8  # the spot check alone
    build_index(corpus[:60], tmp_path / "same", config(**full), encoder=encoder)
    ids = [c.id for c in corpus[:5]]
    assert_same(answers(Searcher.open(tmp_path / "same"), ids), answers(Searcher.open(tmp_path / "index"), ids))

    def shorter(rows):
        rows[3]["passage_vectors"] = rows[3]["passage_vectors"][:-1] or [[0.0] * 384, [0.0] * 384]
        return rows

    wrong = embed_elsewhere(tmp_path / "texts.parquet", tmp_path / "wrong-count", encoder, shorter)
    with pytest.raises(SimqaError, match=rf"part-0.parquet: consultation {corpus[3].id!r} has \d+ passage vectors"):
        build_index(corpus[:60], tmp_path / "bad1", config(**full, vectors=wrong))
    other = embed_elsewhere(tmp_path / "texts.parquet", tmp_path / "other-model", encoder,
                            lambda rows: [{**r, "question_vector": list(np.roll(r["question_vector"], 7))} for r in rows])
    with pytest.raises(SimqaError, match="at cosine .* another model or from other texts"):
        build_index(corpus[:60], tmp_path / "bad2", config(**full, vectors=other))
    small = embed_elsewhere(tmp_path / "texts.parquet", tmp_path / "small", encoder,
                            lambda rows: [{**r, "question_vector": r["question_vector"][:100]} for r in rows])
    with pytest.raises(SimqaError, match="row 0 of question_vector has 100 dimensions; the model gives 384"):
        build_index(corpus[:60], tmp_path / "bad3", config(**full, vectors=small))
    assert not any((tmp_path / name).exists() for name in ("bad1", "bad2", "bad3"))


def test_a_compressed_index_ranks_close_to_the_exact_one_and_takes_updates(tmp_path, corpus, single, encoder):
    directory = tmp_path / "sq8"
    build_index(corpus, directory, config(vector_index="hnsw-sq8", shards=2), encoder=encoder)
    one, small = Searcher.open(single), Searcher.open(directory)
    for query in QUERIES:
        exact, compressed = [h.id for h in one.search(query)], [h.id for h in small.search(query)]
        assert compressed[0] == exact[0] and len(set(exact) & set(compressed)) >= 8
    update_index(directory, deletes=[corpus[3].id], config=config())
    assert corpus[3].id not in Searcher.open(directory) and len(Searcher.open(directory)) == len(corpus) - 1


def test_adding_what_a_sharded_index_holds_changes_nothing(tmp_path, corpus, encoder):
    directory = build_sharded(tmp_path / "sharded", corpus, encoder, 2)
    generation = generations.current(directory)
    manifest = update_index(directory, upserts=corpus[:5], config=config())
    assert generations.current(directory) == generation and manifest.parameters["stats_changed"] == 0
