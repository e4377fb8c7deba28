"""Searcher: open an index directory once, answer free-text and similar-consultation queries.

A query gathers candidates from each active signal (BM25 over both fields, dense question,
dense reply passages), scores every candidate on every active signal exactly, fuses the signals
once (search/fusion.py) and returns the top k as hits with snippets. Fused scores are relative
to a query's candidates: shards of one collection must merge candidates with their raw
per-signal scores (`candidates`) and fuse once, not merge fused hits.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from index import generations, vectors
from index.consultation import Consultation
from index.embed import Encoder, model_fingerprint, resolve_model, threads
from index.errors import IndexFormatError, SimqaError
from index.manifest import Manifest
from index.segment import Segment
from index.text import tokenize
from search.fusion import DENSE, MODES, SIGNALS, Fusion, contributions, explain, fuse
from search.snippets import excerpt, matched_terms

# The model runs on ONNX Runtime for queries (index/onnx_runner.py); SIMQA_QUERY_BACKEND=torch
# keeps it on torch.
QUERY_BACKEND = os.environ.get("SIMQA_QUERY_BACKEND", "onnx")

# similar() leaves out the consultation's duplicates: the same question body (reposts), or
# question vectors this close (the same question reworded by a few characters).
DUPLICATE_COSINE = 0.98

# The reply-passage search looks this many times deeper than the per-signal depth: a reply has
# several passages, and the top passages of one reply would crowd out other replies.
PASSAGE_DEPTH = 3

# Longer queries are refused: a question is not a document (the HTTP API allows 2,000).
MAX_QUERY_CHARS = 10_000


@dataclass
class Hit:
    """One result: the consultation's id and panel fields, its fused score and each signal's."""

    id: str
    rank: int
    score: float
    scores: dict[str, float | None]
    title: str
    url: str
    doctor: str
    department: str
    question_excerpt: str
    reply_excerpt: str
    matched_terms: list[str]
    explain: dict[str, dict[str, float | None]] | None = None

    def to_dict(self) -> dict:
        """JSON-ready; `explain` only when it was asked for."""
        data = asdict(self)
        if self.explain is None:
            del data["explain"]
        return data


class Searcher:
    """The query side of one index directory. Thread-safe; load once per process."""

    def __init__(self, directory: Path, generation: Path, manifest: Manifest, model: str | None, encoder: Encoder | None) -> None:
        self.directory = directory
        self.generation = generation
        self.manifest = manifest
        self._model = model
        self._query_encoder = encoder
        self._lock = threading.Lock()
        files = Segment.open(generation)
        self.store = files.store
        self.bm25_question, self.bm25_reply = files.bm25_question, files.bm25_reply
        self.question_vectors, self.reply_vectors = files.question_vectors, files.reply_vectors
        self.reply_offsets = files.reply_offsets
        self.question_index, self.reply_index = files.question_index, files.reply_index
        self.departments = np.array([d.lower() for d in self.store.departments])
        # Fusions choose their weights by this (Fusion.for_index).
        self.has_replies = bool(manifest.counts.get("reply_passages", 0))
        # One query searches with one thread: 3.5 ms instead of 5.4 ms for exact search at 47k
        # (two threads cost more to start than they save); concurrency comes from requests.
        faiss.omp_set_num_threads(1)

    @classmethod
    def open(cls, directory: str | Path, model: str | None = None, encoder: Encoder | None = None) -> "Searcher":
        """Open the current generation of an index; `model` must be the model it was built with.

        Without `model`, the model recorded in the manifest is used (loaded on the first query
        that needs it); a loaded query `encoder` of that model is reused. Every file's size and
        checksum is checked. Raises IndexFormatError for a missing, damaged or mismatched index.
        """
        directory = Path(directory)
        generation = generations.current(directory)
        while True:
            try:
                manifest = Manifest.read(generation)
                manifest.verify(generation)
                name, path = resolve_model(model if model is not None else manifest.model)
                manifest.check_model(name, model_fingerprint(path))
                reuse = encoder if encoder is not None and encoder.fingerprint == manifest.model_fingerprint else None
                return cls(directory, generation, manifest, name, reuse)
            except (IndexFormatError, FileNotFoundError):
                # A writer may have published and pruned while we opened: try its generation.
                latest = generations.current(directory)
                if latest == generation:
                    raise
                generation = latest

    # -- public queries -------------------------------------------------------------------

    def search(
        self,
        text: str,
        k: int = 10,
        mode: str = "hybrid",
        department: str | None = None,
        fusion: Fusion | None = None,
        timings: dict[str, float] | None = None,
        explain: bool = False,
    ) -> list[Hit]:
        """The k consultations most relevant to a free-text question.

        `timings`, if given, receives the seconds spent per stage (for benchmarks); `explain`
        adds to each hit its per-signal raw and normalised scores and their contributions.
        """
        fusion = (fusion or _mode(mode)).for_index(self.has_replies)
        clock = _Clock(timings)
        query = self._text_query(text, fusion.active)
        clock.lap("embed")
        return self._answer(query, text, k, fusion, department, clock, explain=explain)

    def search_many(
        self,
        texts: list[str],
        k: int = 10,
        mode: str = "hybrid",
        department: str | None = None,
        fusion: Fusion | None = None,
        explain: bool = False,
    ) -> list[list[Hit]]:
        """search() for a batch of questions: their vectors are computed in one model call."""
        fusion = (fusion or _mode(mode)).for_index(self.has_replies)
        if any(not t.strip() or len(t) > MAX_QUERY_CHARS for t in texts):
            raise SimqaError(f"empty query, or one over {MAX_QUERY_CHARS:,} characters, in the batch")
        dense = DENSE & set(fusion.active)
        query_vectors = self.query_encoder().embed(texts) if dense and texts else [None] * len(texts)
        queries = [_Query(tokenize(t), v, v) for t, v in zip(texts, query_vectors)]
        return self._answer_many(queries, texts, k, fusion, department, explain)

    def similar(
        self, consultation_id: str, k: int = 4, department: str | None = None, fusion: Fusion | None = None, explain: bool = False
    ) -> list[Hit]:
        """The Similar Q&A panel of a stored consultation, from its stored vectors (no embedding).

        The consultation itself and its duplicates (same question) are left out.
        """
        fusion = (fusion or MODES["hybrid"]).for_index(self.has_replies)
        row = self._row(consultation_id)
        query = self._stored_query(row, self.store.get([row])[0])
        return self._answer(query, None, k, fusion, department, _Clock(None), explain=explain)

    def similar_many(self, consultation_ids: list[str], k: int = 4, fusion: Fusion | None = None) -> list[list[Hit]]:
        """similar() for many consultations (precomputed panels): one batched FAISS call per
        vector signal and one store read, instead of one of each per consultation."""
        fusion = (fusion or MODES["hybrid"]).for_index(self.has_replies)
        rows = [self._row(i) for i in consultation_ids]
        queries = [self._stored_query(r, c) for r, c in zip(rows, self.store.get(rows))]
        return self._answer_many(queries, [None] * len(queries), k, fusion, None, False)

    def candidates(self, text: str, depth: int = 100, signals: tuple[str, ...] = SIGNALS) -> tuple[list[str], dict[str, np.ndarray]]:
        """Ids of the union of each signal's top `depth`, and every signal's score of each.

        For analysis and tuning fusion offline; search() is this followed by fuse() and top-k.
        """
        rows, scores = self._candidates(self._text_query(text, set(signals)), set(signals), depth, None, _Clock(None))
        return [self.store.ids[r] for r in rows], scores

    def similar_candidates(
        self, consultation_id: str, depth: int = 100, signals: tuple[str, ...] = SIGNALS
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        """candidates() of similar(): the stored consultation as the query, it and its duplicates left out."""
        row = self._row(consultation_id)
        rows, scores = self._candidates(self._stored_query(row, self.store.get([row])[0]), set(signals), depth, None, _Clock(None))
        return [self.store.ids[r] for r in rows], scores

    def get(self, consultation_id: str) -> Consultation:
        """The stored consultation with this id."""
        return self.store.get([self._row(consultation_id)])[0]

    def ids(self) -> list[str]:
        return list(self.store.ids)

    def titles(self) -> list[tuple[str, str]]:
        """(id, title) of every consultation, in index order."""
        return [(c.id, c.title) for c in self.store.get(list(range(len(self.store))))]

    def embed(self, text: str) -> np.ndarray:
        """The query's unit vector."""
        return self.query_encoder().embed([text])[0]

    def query_encoder(self) -> Encoder:
        """The query encoder, loaded on first use, once."""
        with self._lock:
            if self._query_encoder is None:
                encoder = Encoder(self._model, backend=QUERY_BACKEND)
                self.manifest.check_dimension(encoder.dimension)
                self._query_encoder = encoder
        return self._query_encoder

    # -- ranking ----------------------------------------------------------------------------

    def _answer(
        self,
        query: _Query,
        text: str | None,
        k: int,
        fusion: Fusion,
        department: str | None,
        clock: _Clock,
        proposed: dict[str, np.ndarray] | None = None,
        explain: bool = False,
    ) -> list[Hit]:
        """Candidates, fusion, top k, hits: the path every query takes after its vectors."""
        rows, scores = self._candidates(query, fusion.active, max(fusion.depth, k), department, clock, proposed)
        top = _top(rows, scores, fusion, k, explain)
        clock.lap("fusion")
        hits = self._hits(*top, query=text)
        clock.lap("hits")
        return hits

    def _answer_many(
        self, queries: list[_Query], texts: list[str | None], k: int, fusion: Fusion, department: str | None, explain: bool
    ) -> list[list[Hit]]:
        """_answer for a batch: one FAISS call per vector signal, searching queries on every
        core, then the per-query work on a thread pool (numpy, FAISS and SQLite release the GIL)."""
        proposed: list[dict[str, np.ndarray]] = [{} for _ in queries]
        if queries and department is None:
            depth = max(fusion.depth, k) + (1 if queries[0].exclude is not None else 0)  # as _candidates
            workers = threads()
            faiss.omp_set_num_threads(workers)
            try:
                if "dense_question" in fusion.active:
                    _, found = self.question_index.search(np.stack([q.question_vector for q in queries]), depth)
                    for p, f in zip(proposed, found):
                        p["dense_question"] = f[f >= 0]
                if "dense_reply" in fusion.active:
                    _, found = self.reply_index.search(np.stack([q.reply_vector for q in queries]), depth * PASSAGE_DEPTH)
                    for p, f in zip(proposed, found):
                        p["dense_reply"] = self._reply_rows(f[f >= 0])
            finally:
                faiss.omp_set_num_threads(1)
        with ThreadPoolExecutor(max_workers=threads()) as pool:
            return list(pool.map(lambda q, t, p: self._answer(q, t, k, fusion, department, _Clock(None), p, explain),
                                 queries, texts, proposed))

    def _text_query(self, text: str, signals: set[str] | dict) -> _Query:
        if not text.strip():
            raise SimqaError("empty query")
        if len(text) > MAX_QUERY_CHARS:
            raise SimqaError(f"query of {len(text):,} characters; at most {MAX_QUERY_CHARS:,}")
        vector = self.embed(text) if DENSE & set(signals) else None
        return _Query(tokenize(text), vector, vector)

    def _stored_query(self, row: int, consultation: Consultation) -> _Query:
        """A query made of a stored consultation: its tokens, question vector, mean reply vector."""
        question_vector = np.asarray(self.question_vectors[row])
        start, end = self.reply_offsets[row], self.reply_offsets[row + 1]
        reply_vector = _unit(np.asarray(self.reply_vectors[start:end]).mean(axis=0)) if end > start else question_vector
        return _Query(tokenize(consultation.question_text()), question_vector, reply_vector, exclude=row)

    def _candidates(
        self,
        query: _Query,
        signals: set[str] | dict,
        depth: int,
        department: str | None,
        clock: _Clock,
        proposed: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rows proposed by each signal's top `depth`, and every signal's exact score for each.

        A signal with nothing to say about a row (no query term, no reply) scores NaN.
        `proposed` holds rows a vector signal already found (batched searches skip FAISS here).
        """
        proposed = proposed or {}
        allowed = None if department is None else self.departments == department.strip().lower()
        depth += 1 if query.exclude is not None else 0
        found: list[np.ndarray] = []
        full: dict[str, np.ndarray] = {}
        if "bm25" in signals or "bm25_question" in signals:
            question = self.bm25_question.scores(query.tokens)
            full["bm25_question"] = question
            full["bm25"] = question + self.bm25_reply.scores(query.tokens) if "bm25" in signals else question
        for signal in {"bm25", "bm25_question"} & set(signals):
            scores = full[signal]
            if allowed is not None:
                scores[~allowed] = 0.0
            top = np.argpartition(-scores, min(depth, len(scores) - 1))[:depth]
            found.append(top[scores[top] > 0])
        clock.lap("bm25")
        for signal in ("dense_question", "dense_reply"):
            if signal in proposed:
                found.append(proposed[signal])
            elif signal in signals:
                found.append(self._vector_rows(signal, query, depth, allowed))
        rows = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        clock.lap("vectors")

        if query.exclude is not None:
            row = query.exclude
            close = np.asarray(self.question_vectors[rows]) @ self.question_vectors[row] >= DUPLICATE_COSINE
            same = self.store.question_hashes[rows] == self.store.question_hashes[row]
            rows = rows[(rows != row) & ~close & ~same]

        scores: dict[str, np.ndarray] = {}
        for signal in SIGNALS:
            if signal not in signals:
                continue
            if signal in full:
                scores[signal] = np.where(full[signal][rows] > 0, full[signal][rows], np.nan)
            elif signal == "dense_question":
                scores[signal] = np.asarray(self.question_vectors[rows]) @ query.question_vector
            else:
                scores[signal] = self._reply_scores(rows, query.reply_vector)
        clock.lap("rescore")
        return rows, scores

    def _vector_rows(self, signal: str, query: _Query, depth: int, allowed: np.ndarray | None) -> np.ndarray:
        """Rows of the top `depth` of a vector signal (replies by their best passages)."""
        if signal == "dense_question":
            return vectors.search(self.question_index, self.question_vectors, query.question_vector, depth, allowed)[1]
        passage_allowed = None if allowed is None else np.repeat(allowed, np.diff(self.reply_offsets))
        passages = vectors.search(self.reply_index, self.reply_vectors, query.reply_vector, depth * PASSAGE_DEPTH, passage_allowed)[1]
        return self._reply_rows(passages)

    def _reply_rows(self, passages: np.ndarray) -> np.ndarray:
        """The row of each reply passage."""
        return np.searchsorted(self.reply_offsets, passages, side="right") - 1

    def _reply_scores(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Best passage cosine of each row's reply (NaN for a row without reply text)."""
        starts, ends = self.reply_offsets[rows], self.reply_offsets[rows + 1]
        lengths = ends - starts
        out = np.full(len(rows), np.nan)
        if not lengths.sum():
            return out
        group_starts = np.cumsum(lengths) - lengths
        index = np.arange(lengths.sum()) - np.repeat(group_starts, lengths) + np.repeat(starts, lengths)
        cosines = np.asarray(self.reply_vectors[index]) @ vector
        filled = lengths > 0
        out[filled] = np.maximum.reduceat(cosines, group_starts[filled])
        return out

    def _hits(
        self, rows: np.ndarray, fused: np.ndarray, scores: dict[str, np.ndarray], explanations: list | None, query: str | None
    ) -> list[Hit]:
        consultations = self.store.get(rows.tolist())
        excerpts = [(excerpt(c.question, truncated=c.excerpt), excerpt(c.reply or c.more_info, truncated=c.excerpt))
                    for c in consultations]
        # what a page can highlight: query words found in the texts the hit shows
        shown = [f"{c.title}\n{q}\n{r}" for c, (q, r) in zip(consultations, excerpts)]
        matched = matched_terms(query, shown) if query else [[] for _ in shown]
        return [
            Hit(
                id=c.id,
                rank=at + 1,
                score=float(fused[at]),
                scores={s: None if np.isnan(v[at]) else float(v[at]) for s, v in scores.items()},
                title=c.title,
                url=c.url,
                doctor=c.doctor,
                department=c.department,
                question_excerpt=question_excerpt,
                reply_excerpt=reply_excerpt,
                matched_terms=terms,
                explain=explanations[at] if explanations else None,
            )
            for at, (c, (question_excerpt, reply_excerpt), terms) in enumerate(zip(consultations, excerpts, matched))
        ]

    def _row(self, consultation_id: str) -> int:
        try:
            return self.store.rows[consultation_id]
        except KeyError:
            raise SimqaError(f"unknown consultation id {consultation_id!r}") from None


class _Clock:
    """Adds the seconds since the previous lap to a timings dict; does nothing without one."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


@dataclass
class _Query:
    """What the signals match: BM25 tokens, the vectors for questions and replies, a row to leave out."""

    tokens: list[str]
    question_vector: np.ndarray | None
    reply_vector: np.ndarray | None
    exclude: int | None = None


def _top(rows: np.ndarray, scores: dict[str, np.ndarray], fusion: Fusion, k: int, explained: bool):
    """The k best rows by fused score, with their fused and per-signal scores (and, if
    `explained`, each one's explanation)."""
    if not len(rows):
        return rows, np.zeros(0), scores, None
    fused = fuse(scores, fusion)
    order = np.argsort(-fused, kind="stable")[:k]
    parts = contributions(scores, fusion) if explained else {}
    explanations = [explain(scores, fusion, parts, at) for at in order] if explained else None
    return rows[order], fused[order], {s: v[order] for s, v in scores.items()}, explanations


def _mode(mode: str) -> Fusion:
    try:
        return MODES[mode]
    except KeyError:
        raise SimqaError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}") from None


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm else vector.astype(np.float32)
