"""Index lifecycle: updates equal a full build, one writer at a time, kill -9 at any moment,
integrity checks, and a server that follows new generations without errors."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import httpx
import pytest

from benchmarks.load import running_server
from index import BuildConfig, build_index, generations, read_sources, update_index
from index.consultation import Consultation
from index.embed import Encoder
from index.errors import IndexFormatError, SimqaError
from search import Searcher
from tests.conftest import ROOT, SEED_000, SEED_003, SEEDS, other_weights

EXTRA = [
    Consultation(id="knee", title="Knee pain after running", question="My knee hurts after long runs, mostly on stairs.",
                 doctor="Ana Lee", department="Orthopedics", reply="Rest, ice, and see a physiotherapist if it persists."),
    Consultation(id="rash", title="Itchy rash on arms", question="I have an itchy red rash on both arms since last week.",
                 doctor="Bo Chen", department="Dermatology", reply="It may be contact dermatitis; avoid new soaps."),
    Consultation(id="tremor", title="Hand tremor when tired", question="My hands shake when I am tired or nervous.",
                 doctor="Lin Zijing", department="Neurology", reply="A physiological tremor is common; sleep more."),
]
QUERIES = ["knee hurts on stairs", "itchy rash", "hands shake when nervous", "muscle twitching neck"]


def write_jsonl(path, consultations: list[Consultation]):
    path.write_text("".join(json.dumps({k: v for k, v in c.to_dict().items() if k != "source"}) + "\n"
                            for c in consultations), encoding="utf-8")
    return path


def config() -> BuildConfig:
    return BuildConfig(progress=False, vector_index="flat", precision="fp32")


def rankings(directory) -> list:
    searcher = Searcher.open(directory)
    out = []
    for text in QUERIES:
        for mode in ("hybrid", "bm25", "dense"):
            out.append([(h.id, round(h.score, 5)) for h in searcher.search(text, k=6, mode=mode)])
    for consultation_id in (SEED_000, "knee"):
        if consultation_id in searcher:
            out.append([(h.id, round(h.score, 5)) for h in searcher.similar(consultation_id, k=4)])
    return out


def assert_same_rankings(left, right) -> None:
    """The same hits in the same order, scores equal to 1e-4: an update embeds its few new texts
    on ONNX Runtime, a build on torch (the same vectors within 1e-5, tests/test_embed.py)."""
    a, b = rankings(left), rankings(right)
    assert [[i for i, _ in hits] for hits in a] == [[i for i, _ in hits] for hits in b]
    assert all(abs(x - y) < 1e-4 for hits_a, hits_b in zip(a, b) for (_, x), (_, y) in zip(hits_a, hits_b))


def test_updates_equal_a_fresh_build_and_embed_only_what_changed(tmp_path, encoder, monkeypatch):
    seeds = read_sources([SEEDS]).consultations
    build_index(seeds, tmp_path / "live", config(), encoder=encoder)

    encoded: list[str] = []
    original = Encoder._encode
    monkeypatch.setattr(Encoder, "_encode", lambda self, texts, bar=None: encoded.extend(texts) or original(self, texts, bar))
    update_index(tmp_path / "live", upserts=EXTRA[:2], config=config())
    assert sorted(encoded) == sorted([c.question_text() for c in EXTRA[:2]] + [c.reply_text() for c in EXTRA[:2]])
    encoded.clear()
    changed = Consultation(**{**EXTRA[0].to_dict(), "reply": "Rest and ice; see a physiotherapist."})
    update_index(tmp_path / "live", upserts=[changed, EXTRA[2]], deletes=[SEED_003], config=config())
    assert sorted(encoded) == sorted([changed.reply_text(), EXTRA[2].question_text(), EXTRA[2].reply_text()])
    encoded.clear()
    update_index(tmp_path / "live", deletes=["rash"], config=config())
    assert encoded == []  # a delete embeds nothing

    final = [c for c in seeds if c.id != SEED_003] + [changed, EXTRA[2]]
    assert Searcher.open(tmp_path / "live").ids() == [c.id for c in final]
    build_index(final, tmp_path / "fresh", config(), encoder=encoder)
    assert_same_rankings(tmp_path / "live", tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "live").iterdir()) == [".lock", "CURRENT", "gen-00000003", "gen-00000004"]


def test_an_update_embeds_its_new_texts_without_loading_torch(tmp_path, encoder):
    """Where the index's vectors are fp32, an update's new texts run on ONNX Runtime, as queries
    do: `simqa add` of a consultation does not import torch (4-8 s) for two texts, and an update
    that embeds nothing opens no ONNX Runtime session either."""
    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    assert Encoder(backend="onnx").backend == "onnx"  # the export, made once per model and machine
    script = ("import sys, json; from index import BuildConfig, update_index; from index.consultation import Consultation; "
              "m = update_index(sys.argv[1], upserts=[Consultation(**json.loads(sys.argv[2]))], "
              "config=BuildConfig(progress=False, vector_index='flat', precision='fp32')); "
              "print(m.counts['consultations'], 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "idx"), json.dumps(EXTRA[0].to_dict())], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["10", "False", "False"]
    assert Searcher.open(tmp_path / "idx").search("knee hurts on stairs", k=1)[0].id == "knee"
    # nothing new to embed (a delete): not even an ONNX Runtime session is opened (0.3 s, 170 MB)
    script = ("import sys; from index import BuildConfig, update_index; "
              "m = update_index(sys.argv[1], deletes=['knee'], config=BuildConfig(progress=False, vector_index='flat', precision='fp32')); "
              "print(m.counts['consultations'], 'onnxruntime' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "idx")], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["9", "False", "False"]


def test_updates_keep_the_vector_index_kind_chosen_at_build(tmp_path, encoder):
    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", BuildConfig(progress=False, vector_index="hnsw"),
                encoder=encoder)
    manifest = update_index(tmp_path / "idx", upserts=EXTRA[:1], config=config())
    assert manifest.parameters["vector_index"]["question"]["kind"] == "hnsw"  # not "auto"'s flat at this size
    assert manifest.parameters["vector_index_choice"] == "hnsw"


def test_an_update_that_appends_grows_the_graphs_and_answers_as_a_fresh_build(tmp_path, encoder):
    seeds = read_sources([SEEDS]).consultations
    hnsw = replace(config(), vector_index="hnsw")
    build_index(seeds, tmp_path / "live", hnsw, encoder=encoder)
    grown = update_index(tmp_path / "live", upserts=EXTRA, config=hnsw)
    assert [grown.parameters["vector_index"][name]["appended"] for name in ("question", "reply")] == [3, 3]
    build_index(seeds + EXTRA, tmp_path / "fresh", hnsw, encoder=encoder)
    assert "appended" not in Searcher.open(tmp_path / "fresh").manifest.parameters["vector_index"]["question"]
    assert_same_rankings(tmp_path / "live", tmp_path / "fresh")
    rebuilt = update_index(tmp_path / "live", deletes=[SEED_003], config=hnsw)  # rows after it move: new graphs
    assert "appended" not in rebuilt.parameters["vector_index"]["question"]
    build_index([c for c in seeds + EXTRA if c.id != SEED_003], tmp_path / "again", hnsw, encoder=encoder)
    assert_same_rankings(tmp_path / "live", tmp_path / "again")


def test_the_store_reads_more_rows_than_sqlite_takes_parameters_in_batches(seeds_index):
    """An update reads every row: at 1M consultations that was over SQLite's 250,000 parameters a statement."""
    import sqlite3

    from index.segment import Segment

    unlimited, store = (Segment.open_store(generations.current(seeds_index)) for _ in range(2))
    store.db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 2)
    rows = list(range(len(store)))[::-1]
    assert (store.get(rows), store.snippets(rows)) == (unlimited.get(rows), unlimited.snippets(rows)) and len(rows) > 2


def test_update_errors(tmp_path, encoder):
    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    with pytest.raises(SimqaError, match="unknown consultation id"):
        update_index(tmp_path / "idx", deletes=["nope"])
    with pytest.raises(IndexFormatError, match="not a simqa index"):
        update_index(tmp_path / "missing", upserts=EXTRA)


def test_an_update_refuses_a_model_directory_that_now_holds_other_weights(tmp_path, encoder):
    model = shutil.copytree(encoder.model_path, tmp_path / "model")
    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", replace(config(), model=str(model)))
    before = generations.current(tmp_path / "idx")
    other_weights(encoder, tmp_path / "adapted-again")
    shutil.rmtree(model)
    (tmp_path / "adapted-again").rename(model)  # the model saved over the one the index was built with
    with pytest.raises(IndexFormatError, match="built with model"):
        update_index(tmp_path / "idx", upserts=EXTRA[:1], config=config())
    assert generations.current(tmp_path / "idx") == before


def test_one_writer_at_a_time_and_readers_never_wait(tmp_path, encoder):
    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    with generations.writer_lock(tmp_path / "idx"):
        with pytest.raises(SimqaError, match="being written by another simqa process"):
            update_index(tmp_path / "idx", upserts=EXTRA)
        done = subprocess.run([sys.executable, "-m", "search.cli", "delete", SEED_003, "--index", str(tmp_path / "idx")],
                              check=False, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 1 and "being written by another simqa process" in done.stderr
        assert len(Searcher.open(tmp_path / "idx")) == 9  # a reader opens while the lock is held


def workspaces(index) -> set[str]:
    return {p.name for p in index.iterdir() if p.name.startswith(generations.BUILDING)}


def run_killed(args: list[str], index, delay: float) -> bool:
    """Start a writer, wait until its workspace appears, then kill -9 it `delay` seconds later.
    Waiting for the workspace (not a timer from start-up) makes the kill land inside the write on
    any machine speed. True when the kill interrupted a generation being written (its workspace is
    left behind)."""
    stale = workspaces(index)  # left by earlier kills; removed only when a writer publishes
    process = subprocess.Popen([sys.executable, "-m", "search.cli", *args, "--quiet"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not workspaces(index) - stale:
        time.sleep(0.001)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return bool(workspaces(index) - stale)


def check_after_kill(directory, counts: set[int]) -> int:
    searcher = Searcher.open(directory)
    assert len(searcher) in counts
    assert searcher.search("knee pain after running", k=3, mode="bm25") is not None
    assert len(searcher.similar(SEED_000, k=3)) == 3
    return len(searcher)


def timed_run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "search.cli", *args, "--quiet"], cwd=ROOT, check=True, capture_output=True)


def write_window(args: list[str], index) -> float:
    """How long an uninterrupted writer keeps its workspace (seconds): kill delays are drawn from
    this window, so that most kills interrupt a generation being written."""
    process = subprocess.Popen([sys.executable, "-m", "search.cli", *args, "--quiet"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[float] = []
    while process.poll() is None:
        if workspaces(index):
            seen.append(time.perf_counter())
        time.sleep(0.001)
    assert process.returncode == 0 and seen, "the writer never showed its workspace"
    return max(seen[-1] - seen[0], 0.01)


TRIALS = int(os.environ.get("SIMQA_KILL_TRIALS", "20"))


def test_kill_minus_9_during_builds_and_updates(tmp_path):
    """Each trial kills a writer at a random moment of its run; the index must open on the old or
    the new generation, answer, and take the next update."""
    rng = random.Random(9)
    index = tmp_path / "idx"
    extra = write_jsonl(tmp_path / "extra.jsonl", EXTRA)
    fewer = write_jsonl(tmp_path / "fewer.jsonl", EXTRA[:2])
    builds = [["index", str(SEEDS), str(source), "--index", str(index)] for source in (extra, fewer)]
    timed_run(builds[0])  # fills the embedding cache; later runs need no model
    window = write_window(builds[1], index)
    interrupted = 0
    for trial in range(TRIALS):
        # alternate the corpus, so that every killed build has a new generation to write
        interrupted += run_killed(builds[trial % 2], index, rng.uniform(0, window * 1.2))
        check_after_kill(index, {11, 12})
    timed_run(builds[0])
    delete = ["delete", "knee", "--index", str(index)]
    add = ["add", str(extra), "--index", str(index)]
    window = write_window(delete, index)
    timed_run(add)
    for _ in range(TRIALS):
        interrupted += run_killed(delete, index, rng.uniform(0, window * 1.2))
        if check_after_kill(index, {11, 12}) == 11:
            timed_run(add)  # the next update succeeds
    assert interrupted >= TRIALS // 2  # many kills landed while a generation was being written
    timed_run(delete)
    assert check_after_kill(index, {11}) == 11
    assert workspaces(index) == set()  # interrupted writers' workspaces are removed by the next writer


@pytest.mark.parametrize("name", ["consultations.sqlite", "reply_offsets.npy", "question.faiss", "reply.faiss",
                                  "bm25_question/data.csc.index.npy", "bm25_reply/vocab.index.json", "filters/codes.npy"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_files_are_named(tmp_path, encoder, name, damage, capsys):
    from search.cli import main

    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    path = generations.current(tmp_path / "idx") / name
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(data)
    with pytest.raises(IndexFormatError, match=name.split("/")[-1]):
        Searcher.open(tmp_path / "idx")
    assert main(["verify", "--index", str(tmp_path / "idx")]) == 1
    assert name.split("/")[-1] in capsys.readouterr().err


def test_opening_checksums_only_files_written_since_the_build(tmp_path, encoder, monkeypatch, capsys):
    """Open stats every file and reads none for its SHA-256 while none was written to; a flip
    that leaves the modification time as it was (the disk's, not a write's) needs the full check."""
    from index import manifest as manifest_module
    from search.cli import main

    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    path = generations.current(tmp_path / "idx") / "question.faiss"
    with monkeypatch.context() as patched:
        patched.setattr(manifest_module, "sha256_of", lambda p: pytest.fail(f"open read {p} for its checksum"))
        Searcher.open(tmp_path / "idx")
    stamp = path.stat().st_mtime_ns
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    os.utime(path, ns=(stamp, stamp))
    assert len(Searcher.open(tmp_path / "idx")) == 9  # not seen: the file looks untouched
    with pytest.raises(IndexFormatError, match="question.faiss: checksum differs"):
        Searcher.open(tmp_path / "idx", verify=True)
    assert main(["verify", "--index", str(tmp_path / "idx")]) == 1
    assert "question.faiss: checksum differs" in capsys.readouterr().err


def test_a_generation_with_the_vector_copies_older_builds_wrote_still_opens(tmp_path, encoder):
    """Generations written before the vectors lived in the FAISS indexes alone also hold
    question_vectors.npy and reply_vectors.npy: they open, verify and take updates."""
    import numpy as np

    from index.manifest import Manifest

    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    before = [h.id for h in Searcher.open(tmp_path / "idx").search("chest pain", k=5)]
    generation = generations.current(tmp_path / "idx")
    assert not (generation / "question_vectors.npy").exists() and not (generation / "reply_vectors.npy").exists()
    searcher = Searcher.open(tmp_path / "idx")
    shard = searcher.shards[0]
    np.save(generation / "question_vectors.npy", np.asarray(shard.question_vectors), allow_pickle=False)
    np.save(generation / "reply_vectors.npy", np.asarray(shard.reply_vectors), allow_pickle=False)
    Manifest.read(generation).write(generation)
    assert "question_vectors.npy" in Manifest.read(generation).files
    assert [h.id for h in Searcher.open(tmp_path / "idx", verify=True).search("chest pain", k=5)] == before
    update_index(tmp_path / "idx", upserts=EXTRA[:1], config=config())
    assert len(Searcher.open(tmp_path / "idx")) == len(searcher) + 1


def test_damaged_manifest_and_pointer(tmp_path, encoder):
    build_index(read_sources([SEEDS]).consultations, tmp_path / "idx", config(), encoder=encoder)
    generation = generations.current(tmp_path / "idx")
    (generation / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="manifest.json"):
        Searcher.open(tmp_path / "idx")
    (tmp_path / "idx" / "CURRENT").write_text("gen-00000099\n")
    with pytest.raises(IndexFormatError, match="CURRENT"):
        Searcher.open(tmp_path / "idx")


def test_server_follows_updates_without_errors(tmp_path, encoder):
    index = tmp_path / "idx"
    build_index(read_sources([SEEDS]).consultations, index, config(), encoder=encoder)
    extra = write_jsonl(tmp_path / "extra.jsonl", EXTRA)
    errors, answered, stop = [], [0], threading.Event()
    with running_server(index) as base:
        def load() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    for path, params in (("/api/search", {"q": "knee pain", "k": 5}), (f"/api/similar/{SEED_000}", {"k": 4})):
                        response = client.get(path, params=params)
                        if response.status_code != 200:
                            errors.append((path, response.status_code, response.text))
                        answered[0] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for args in (["add", str(extra)], ["delete", "rash"], ["add", str(extra)]):
            subprocess.run([sys.executable, "-m", "search.cli", *args, "--index", str(index), "--quiet"], cwd=ROOT, check=True,
                           capture_output=True)
            time.sleep(1.5)
        deadline = time.time() + 10
        while httpx.get(base + "/healthz").json()["generation"] != "gen-00000004" and time.time() < deadline:
            time.sleep(0.2)
        found = httpx.get(base + "/api/consultations/rash")
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and answered[0] > 20
    assert found.status_code == 200 and found.json()["title"] == "Itchy rash on arms"


def test_rebuilding_an_unchanged_corpus_writes_nothing(tmp_path, encoder):
    seeds = read_sources([SEEDS]).consultations
    first = build_index(seeds, tmp_path / "idx", config(), encoder=encoder)
    again = build_index(seeds, tmp_path / "idx", config())
    assert again.parameters["content_sha256"] == first.parameters["content_sha256"]
    assert generations.current(tmp_path / "idx").name == "gen-00000001"
    build_index(seeds[:-1], tmp_path / "idx", config(), encoder=encoder)
    assert generations.current(tmp_path / "idx").name == "gen-00000002"


def test_a_changed_vector_graph_setting_rebuilds_an_unchanged_corpus(tmp_path, encoder, monkeypatch):
    """The HNSW link count is part of what a generation is made from: a new release that changes
    it must not keep serving the old graph because the consultations did not change."""
    from index import vectors

    seeds = read_sources([SEEDS]).consultations
    first = build_index(seeds, tmp_path / "idx", config(), encoder=encoder)
    monkeypatch.setattr(vectors, "COMPRESSED_M", vectors.COMPRESSED_M * 2)
    again = build_index(seeds, tmp_path / "idx", config(), encoder=encoder)
    assert again.parameters["content_sha256"] != first.parameters["content_sha256"]
    assert generations.current(tmp_path / "idx").name == "gen-00000002"


def test_an_index_whose_path_holds_uri_characters_opens_and_answers(tmp_path, encoder):
    """The store opens by a file: URI (index/store.py), where an unquoted '?' or '#' would cut the path."""
    directory = tmp_path / "odd ?name#1%20"
    build_index(read_sources([SEEDS]).consultations, directory, config(), encoder=encoder)
    searcher = Searcher.open(directory, encoder=encoder)
    assert searcher.get(SEED_000).id == SEED_000
    assert searcher.search("neck muscles twitch", k=1, mode="bm25")[0].id


def test_an_update_copies_the_unchanged_rows_and_stores_what_a_fresh_build_stores(tmp_path, encoder):
    """An update copies its unchanged consultations' stored rows from the current generation
    (index/store.py, Kept) and writes the rest: row for row, the store a fresh build of the same
    consultations writes, after appends, a replacement, an identical upsert and a delete."""
    import sqlite3

    seeds = read_sources([SEEDS]).consultations
    build_index(seeds, tmp_path / "live", config(), encoder=encoder)
    others = [c for c in seeds if c.id != SEED_003]
    changed = replace(others[1], reply="Rest and fluids; see a doctor if it lasts a week.")
    update_index(tmp_path / "live", upserts=EXTRA[:2] + [changed, others[3]], deletes=[SEED_003], config=config())
    final = [changed if c.id == changed.id else c for c in others] + EXTRA[:2]
    build_index(final, tmp_path / "fresh", config(), encoder=encoder)

    def rows(directory):
        path = generations.current(directory) / "consultations.sqlite"
        with sqlite3.connect(path) as db:
            return db.execute("SELECT * FROM consultations ORDER BY row").fetchall()

    assert rows(tmp_path / "live") == rows(tmp_path / "fresh") and len(rows(tmp_path / "live")) == len(final)
    assert Searcher.open(tmp_path / "live").ids() == [c.id for c in final]
