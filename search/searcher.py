"""Searcher: open an index directory once, answer free-text and similar-consultation queries.

A query is tokenized and embedded once; every shard (search/shard.py; one for an index that is
not sharded, index/sharded.py) answers candidates with every active signal's raw score; they are
merged, the signals fused once over the union (search/fusion.py), and only the top k become hits,
with snippets. Fused scores are relative to a query's candidates, so fusing per shard and merging
fused hits would rank differently: a sharded index ranks as one index of the same consultations.
Rows are global: shard i's rows come after those of the shards before it.
"""

from __future__ import annotations

import math
import os
import threading
from datetime import date
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index import generations, sharded
from index.arrays import sorted_unique
from index.consultation import Consultation, valid_unicode
from index.embed import Encoder, resolve_model, threads
from index.errors import IndexFormatError, SimqaError
from index.manifest import Manifest
from index.snippets import Snippet, matched_terms
from index.text import tokenize
from index.topics import StoredTopics
from index.vectors import inner_products
from search.fusion import DENSE, MODES, SIGNALS, Fusion, contributions, explain, fuse
from search.filters import Filters
from search.query_vectors import QUERY_VECTORS, QueryVectors
from search.shard import DUPLICATE_COSINE, Candidates, Clock, Proposals, Query, Shard
from search.topics import SIGNALS as TOPIC_SIGNALS, VOTERS, TopicFinder, TopicHit

# The model runs on ONNX Runtime for queries (index/onnx_runner.py); SIMQA_QUERY_BACKEND=torch
# keeps it on torch.
QUERY_BACKEND = os.environ.get("SIMQA_QUERY_BACKEND", "onnx")

# Makes a shard's answering side from its number, generation directory and manifest (Searcher.open).
ShardFactory = Callable[[int, Path, Manifest], Any] | None

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
        """JSON-ready; `explain` only when it was asked for. What dataclasses.asdict gives, its
        containers copied one level deep (their values are numbers and strings), without its
        deep copy of every value: 146 -> 6 µs for a response's ten hits."""
        data = {**vars(self), "scores": dict(self.scores), "matched_terms": list(self.matched_terms)}
        if self.explain is None:
            del data["explain"]
        else:
            data["explain"] = {signal: dict(parts) for signal, parts in self.explain.items()}
        return data


class Searcher:
    """The query side of one index directory. Thread-safe; load once per process."""

    def __init__(self, directory: Path, generation: Path, manifest: Manifest, shards: list, model: str | None,
                 encoder: Encoder | None, query_vectors: int = QUERY_VECTORS) -> None:
        self.directory = directory
        self.generation = generation  # the top level's, for a sharded index
        self.manifest = manifest
        self._model = model
        self._query_encoder = encoder
        self._vectors = QueryVectors(query_vectors)  # recent texts' vectors (search/query_vectors.py)
        self._lock = threading.Lock()
        self.shards = shards  # Shard, or search/served.py's RemoteShard: the same methods
        self._offsets = np.cumsum([0] + [len(shard) for shard in self.shards])
        # Fusions choose their weights by this (Fusion.for_index), over the whole collection.
        self.has_replies = bool(manifest.counts.get("reply_passages", 0))
        self.topics = TopicFinder(StoredTopics.open(generation))  # the collection's, at the top level of a sharded index

    @classmethod
    def open(cls, directory: str | Path, model: str | None = None, encoder: Encoder | None = None,
             verify: bool = False, shard: ShardFactory = None, query_vectors: int = QUERY_VECTORS) -> "Searcher":
        """Open the current generation of an index; `model` must be the model it was built with.

        Without `model`, the model recorded in the manifest is used (loaded on the first query
        that needs it); a loaded query `encoder` of that model is reused. Every file's size is
        checked, and the SHA-256 of every file written to since the build (index/manifest.py);
        `verify` checks every file's SHA-256, as `simqa verify` does. Raises IndexFormatError
        for a missing, damaged or mismatched index. `shard(number, generation, manifest)` makes
        each shard's answering side (default: a Shard over the files here; search/served.py's
        proxies to Ray Serve deployments). The vectors of the last `query_vectors` query texts
        are kept (search/query_vectors.py; 0: none).
        """
        shard = shard or (lambda number, generation, manifest: Shard(generation))
        directory = Path(directory)
        generation = generations.current(directory)
        while True:
            try:
                manifest = Manifest.read(generation)
                manifest.verify(generation, full=verify)
                name, path = resolve_model(model if model is not None else manifest.model)
                fingerprint = manifest.check_model(name, path)
                parts = sharded.shard_generations(directory, manifest, verify) if sharded.is_sharded(manifest) else [(generation, manifest)]
                # (an index of the fingerprint's older form records another string for the same model)
                reuse = encoder if encoder is not None and encoder.fingerprint == fingerprint else None
                return cls(directory, generation, manifest, [shard(n, g, m) for n, (g, m) in enumerate(parts)], name, reuse,
                           query_vectors)
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
        doctor: str | None = None,
        since: str | date | None = None,
        until: str | date | None = None,
        source: str | None = None,
        distinct: bool = True,
    ) -> list[Hit]:
        """The k distinct consultations most relevant to a free-text question, among those the
        filters allow (search/filters.py; a hit that duplicates a better one is left out, unless
        `distinct` is False: for evaluations that judge every copy).

        `timings`, if given, receives the seconds spent per stage (for benchmarks); `explain`
        adds to each hit its per-signal raw and normalised scores and their contributions.
        """
        filters = Filters(department, doctor, since, until, source)
        fusion = (fusion or _mode(mode)).for_index(self.has_replies)
        clock = Clock(timings)
        query = self._text_query(text, fusion.active)
        clock.lap("embed")
        return self._answer(query, text, k, fusion, filters, clock, explain=explain, distinct=distinct)

    def search_many(
        self,
        texts: list[str],
        k: int = 10,
        mode: str = "hybrid",
        department: str | None = None,
        fusion: Fusion | None = None,
        explain: bool = False,
        doctor: str | None = None,
        since: str | date | None = None,
        until: str | date | None = None,
        source: str | None = None,
    ) -> list[list[Hit]]:
        """search() for a batch of questions: their vectors are computed in one model call."""
        filters = Filters(department, doctor, since, until, source)
        fusion = (fusion or _mode(mode)).for_index(self.has_replies)
        for text in texts:
            _check_query(text)
        dense = DENSE & set(fusion.active)
        query_vectors = self.query_encoder().embed(texts) if dense and texts else [None] * len(texts)
        queries = [Query(tokenize(t), v, v) for t, v in zip(texts, query_vectors)]
        return self._answer_many(queries, texts, k, fusion, filters, explain)

    def similar(
        self,
        consultation_id: str,
        k: int = 4,
        department: str | None = None,
        fusion: Fusion | None = None,
        explain: bool = False,
        doctor: str | None = None,
        since: str | date | None = None,
        until: str | date | None = None,
        source: str | None = None,
    ) -> list[Hit]:
        """The Similar Q&A panel of a stored consultation, from its stored vectors (no embedding):
        k distinct consultations the filters allow, the consultation itself and its duplicates
        (same question) left out.
        """
        filters = Filters(department, doctor, since, until, source)
        fusion = (fusion or MODES["hybrid"]).for_index(self.has_replies)
        return self._answer(self._stored_queries([consultation_id])[0], None, k, fusion, filters, Clock(None), explain=explain)

    def similar_many(self, consultation_ids: list[str], k: int = 4, fusion: Fusion | None = None) -> list[list[Hit]]:
        """similar() for many consultations (precomputed panels): one batched FAISS call per
        vector signal and one store read, instead of one of each per consultation."""
        fusion = (fusion or MODES["hybrid"]).for_index(self.has_replies)
        queries = self._stored_queries(consultation_ids)
        return self._answer_many(queries, [None] * len(queries), k, fusion, Filters(), False)

    def related_faq(self, text: str | None = None, consultation_id: str | None = None, k: int = 8,
                    signals: tuple[str, ...] = TOPIC_SIGNALS) -> list[TopicHit]:
        """The Related FAQ topics of a free-text question or of a stored consultation, best first
        (search/topics.py); an empty list for an index without topics. A stored consultation is
        matched by its question and stored vector, and its own Related FAQ entries vote first."""
        if (text is None) == (consultation_id is None):
            raise SimqaError("related_faq takes a text or a consultation id, not both or neither")
        if not len(self.topics):
            return []
        fusion = MODES["hybrid"].for_index(self.has_replies)
        if text is not None:
            # The query's vector only for the signals that use it: votes (the search) and dense.
            query = self._text_query(text, (set(fusion.active) if "votes" in signals else set()) |
                                     ({"dense_question"} if "dense" in signals else set()))
            voters = self._nearest(query, fusion, VOTERS) if "votes" in signals else []
        else:
            query = self._stored_queries([consultation_id])[0]
            own = self.get(consultation_id)
            text = own.question_text()
            voters = [own] + self._nearest(query, fusion, VOTERS - 1) if "votes" in signals else []
        scores = self.topics.signals(text, query.question_vector if "dense" in signals else None, voters)
        return self.topics.rank(scores, k, signals)

    def _nearest(self, query: Query, fusion: Fusion, k: int) -> list[Consultation]:
        """The k consultations Similar Q&A would list for a query, without building hits."""
        candidates = self._candidates(query, fusion.active, max(fusion.depth, k), None, Clock(None))
        return self._listed(self._top(candidates, fusion, k, False)[0], "consultations")

    def candidates(self, text: str, depth: int = 100, signals: tuple[str, ...] = SIGNALS) -> tuple[list[str], dict[str, np.ndarray]]:
        """Ids of the union of each signal's top `depth`, and every signal's score of each.

        For analysis and tuning fusion offline; search() is this followed by fuse() and top-k.
        """
        return self._candidate_ids(self._text_query(text, set(signals)), signals, depth)

    def similar_candidates(
        self, consultation_id: str, depth: int = 100, signals: tuple[str, ...] = SIGNALS
    ) -> tuple[list[str], dict[str, np.ndarray]]:
        """candidates() of similar(): the stored consultation as the query, it and its duplicates left out."""
        return self._candidate_ids(self._stored_queries([consultation_id])[0], signals, depth)

    def _candidate_ids(self, query: Query, signals: tuple[str, ...], depth: int) -> tuple[list[str], dict[str, np.ndarray]]:
        candidates = self._candidates(query, set(signals), depth, None, Clock(None))
        return list(self._id_array(candidates.rows)), candidates.scores

    def get(self, consultation_id: str) -> Consultation:
        """The stored consultation with this id."""
        return self.shards[self._owner(consultation_id)].get(consultation_id)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __contains__(self, consultation_id: str) -> bool:
        return self.shards[self._owner(consultation_id)].has(consultation_id)

    def ids(self) -> list[str]:
        """Every consultation's id, in index order."""
        return [i for shard in self.shards for i in shard.ids().tolist()]

    def consultations(self) -> list[Consultation]:
        """Every stored consultation, in index order (one read per shard)."""
        return [c for shard in self.shards for c in shard.consultations(np.arange(len(shard)))]

    def titles(self) -> list[tuple[str, str]]:
        """(id, title) of every consultation, in index order."""
        return [(c.id, c.title) for c in self.consultations()]

    def embed(self, text: str) -> np.ndarray:
        """The query's unit vector (read-only; kept for the next query of the same text)."""
        return self._vectors.get(text, lambda t: self.query_encoder().embed([t])[0])

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
        query: Query,
        text: str | None,
        k: int,
        fusion: Fusion,
        filters: Filters,
        clock: Clock,
        found: tuple | None = None,
        explain: bool = False,
        distinct: bool = True,
    ) -> list[Hit]:
        """Candidates, fusion, top k distinct, hits: the path every query takes after its vectors."""
        candidates = self._candidates(query, fusion.active, max(fusion.depth, k), filters, clock, found)
        top = self._top(candidates, fusion, k, explain, distinct)
        clock.lap("fusion")
        hits = self._hits(*top, query=text)
        clock.lap("hits")
        return hits

    def _answer_many(
        self, queries: list[Query], texts: list[str | None], k: int, fusion: Fusion, filters: Filters, explain: bool
    ) -> list[list[Hit]]:
        """_answer for a batch: one FAISS call per vector signal, searching queries on every
        core, then the per-query work on a thread pool (numpy, FAISS and SQLite release the GIL)."""
        depth = max(fusion.depth, k)
        if not filters:  # per query, each shard's vector units
            found = list(zip(*(shard.propose_many(queries, fusion.active, depth, len(self.shards)) for shard in self.shards)))
        else:
            found = [None] * len(queries)
        with ThreadPoolExecutor(max_workers=threads()) as pool:
            return list(pool.map(lambda q, t, f: self._answer(q, t, k, fusion, filters, Clock(None), f, explain),
                                 queries, texts, found))

    def _candidates(self, query: Query, signals, depth: int, filters: Filters | None, clock: Clock, found: tuple | None = None) -> Candidates:
        """Every shard's proposals, cut to the collection's top (search/shard.py), then the
        candidates of each, merged (one shard's as they are)."""
        if len(self.shards) == 1:
            proposals = self.shards[0].start(query, signals, depth, filters, found[0] if found else None)(clock)
            return self.shards[0].candidates(query, proposals, clock)
        share = len(self.shards)
        found = found or [None] * share
        started = [shard.start(query, signals, depth, filters, f, share) for shard, f in zip(self.shards, found)]
        # The last shard's first: the helper threads take the searches from the first shard's on.
        proposals = [finish(clock) for finish in reversed(started)][::-1]
        for number in Proposals.short(proposals):  # rare: asked again for the collection's whole top
            proposals[number] = self.shards[number].start(query, signals, depth, filters)(clock)
        # In turn, not on threads: at 2-12k rows a shard's numpy steps are too short to gain from
        # threads, which doubled the 4-shard MedQuAD query (benchmarks/README.md).
        parts = [shard.candidates(query, p, clock) for shard, p in zip(self.shards, Proposals.cut(proposals))]
        return Candidates.merge(parts, self._offsets[:-1])

    def _owner(self, consultation_id: str) -> int:
        """The shard that holds (or would hold) a consultation."""
        return 0 if len(self.shards) == 1 else sharded.shard_of(consultation_id, len(self.shards))

    def _stored_queries(self, consultation_ids: list[str]) -> list[Query]:
        """Queries of stored consultations, reading each shard's store once."""
        owners = [self._owner(i) for i in consultation_ids]
        queries: list[Query | None] = [None] * len(owners)
        for number in sorted(set(owners)):
            mine = [at for at, owner in enumerate(owners) if owner == number]
            for at, query in zip(mine, self.shards[number].stored_queries([consultation_ids[at] for at in mine])):
                queries[at] = query
        return queries

    def _by_shard(self, rows: np.ndarray, method: str) -> list[tuple[np.ndarray, Any]]:
        """`method(local rows)` of each shard holding some of these global rows, with the positions
        of those rows: every shard is asked before any answer is read (`ask`), so that shards in
        other processes (search/served.py) work at once."""
        if len(self.shards) == 1:  # rows are the shard's own: no routing (about 30 µs a call)
            return [(np.arange(len(rows)), self.shards[0].ask(method, rows)())]
        owners = np.searchsorted(self._offsets, rows, side="right") - 1
        asked = []
        for number in sorted_unique(owners):
            at = np.flatnonzero(owners == number)
            asked.append((at, self.shards[number].ask(method, rows[at] - self._offsets[number])))
        return [(at, answer()) for at, answer in asked]

    def _id_array(self, rows: np.ndarray) -> np.ndarray:
        """The ids of global rows, as an array."""
        out = np.empty(len(rows), dtype=object)
        for at, ids in self._by_shard(rows, "ids"):
            out[at] = ids
        return out.astype(str)

    def _listed(self, rows: np.ndarray, method: str) -> list:
        """A shard method's values (one per row: consultations, snippets) of global rows, in their
        order: one call per shard holding some."""
        out: list[Any] = [None] * len(rows)
        for at, values in self._by_shard(rows, method):
            for position, value in zip(at, values):
                out[position] = value
        return out

    def _text_query(self, text: str, signals: set[str] | dict) -> Query:
        _check_query(text)
        vector = self.embed(text) if DENSE & set(signals) else None
        return Query(tokenize(text), vector, vector)

    def _top(self, candidates: Candidates, fusion: Fusion, k: int, explained: bool, distinct: bool = True):
        """The k best (distinct) rows by fused score, with their fused and per-signal scores (and,
        if `explained`, each one's explanation). Equal scores are ordered by id, not by row, so
        the order does not depend on how the collection is laid out in shards."""
        rows, scores = candidates.rows, candidates.scores
        if not len(rows):
            return rows, np.zeros(0), scores, None
        fused = fuse(scores, fusion)
        order = np.argsort(-fused, kind="stable")
        picked = self._pick(rows[order], k, distinct)
        # Only ties among the rows looked at (those picked and the one after) can change the answer.
        looked = picked[-1] + 2 if len(picked) == k else len(order)
        if np.any(np.diff(fused[order[:looked]]) == 0):
            order = np.lexsort((self._id_array(rows), -fused))
            picked = self._pick(rows[order], k, distinct)
        order = order[picked]
        parts = contributions(scores, fusion) if explained else {}
        explanations = [explain(scores, fusion, parts, at) for at in order] if explained else None
        return rows[order], fused[order], {s: v[order] for s, v in scores.items()}, explanations

    def _pick(self, ranked: np.ndarray, k: int, distinct: bool) -> list[int]:
        """Positions of the first k of these rows (best first) that duplicate no row picked before
        them (unless not `distinct`): the same question body (case and spacing folded), or
        question vectors DUPLICATE_COSINE close; the rule by which similar() leaves out the
        query's own duplicates."""
        if not distinct:
            return list(range(min(k, len(ranked))))
        picked: list[int] = []
        hashes: set[int] = set()
        vectors = np.zeros((k, self.manifest.dimension), dtype=np.float32)
        # keys are read 2k rows at a time: a query's best hold few duplicates (fewer vectors read and
        # compared than at 4k: 5.63 -> 5.57 M instructions a query on MedQuAD), and the next rows
        # are read when they hold more
        for start in range(0, len(ranked), 2 * k):
            chunk_hashes, chunk_vectors = self._question_keys(ranked[start:start + 2 * k])
            # rows of this chunk too close to a picked one: a picked vector's cosines to the chunk, once
            near = np.zeros(len(chunk_hashes), dtype=bool)
            for vector in vectors[:len(picked)]:
                near |= inner_products(chunk_vectors, vector) >= DUPLICATE_COSINE
            for at, question_hash in enumerate(chunk_hashes.tolist()):
                if question_hash in hashes or near[at]:
                    continue
                vectors[len(picked)] = chunk_vectors[at]
                picked.append(start + at)
                hashes.add(question_hash)
                if len(picked) == k:
                    return picked
                near |= inner_products(chunk_vectors, chunk_vectors[at]) >= DUPLICATE_COSINE
        return picked

    def _question_keys(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The question hashes and question vectors of global rows."""
        hashes = np.zeros(len(rows), dtype=np.int64)
        vectors = np.zeros((len(rows), self.manifest.dimension), dtype=np.float32)
        for at, (shard_hashes, shard_vectors) in self._by_shard(rows, "question_keys"):
            hashes[at], vectors[at] = shard_hashes, shard_vectors
        return hashes, vectors

    def _hits(
        self, rows: np.ndarray, fused: np.ndarray, scores: dict[str, np.ndarray], explanations: list | None, query: str | None
    ) -> list[Hit]:
        snippets: list[Snippet] = self._listed(rows, "snippets")
        matched = matched_terms(query, snippets) if query else [[] for _ in snippets]
        # plain floats once per signal, not a numpy scalar per hit and signal; NaN (no evidence) is None
        values = {s: [None if math.isnan(x) else x for x in v.tolist()] for s, v in scores.items()}
        return [
            Hit(
                id=snippet.id,
                rank=at + 1,
                score=float(fused[at]),
                scores={s: v[at] for s, v in values.items()},
                title=snippet.title,
                url=snippet.url,
                doctor=snippet.doctor,
                department=snippet.department,
                question_excerpt=snippet.question_excerpt,
                reply_excerpt=snippet.reply_excerpt,
                matched_terms=terms,
                explain=explanations[at] if explanations else None,
            )
            for at, (snippet, terms) in enumerate(zip(snippets, matched))
        ]


def _check_query(text: str) -> None:
    """Refuse a query that is empty, too long or not valid Unicode (SimqaError says which)."""
    if not text.strip():
        raise SimqaError("empty query")
    if not valid_unicode(text):
        raise SimqaError("query is not valid Unicode (it holds a lone surrogate)")
    if len(text) > MAX_QUERY_CHARS:
        raise SimqaError(f"query of {len(text):,} characters; at most {MAX_QUERY_CHARS:,}")


def _mode(mode: str) -> Fusion:
    try:
        return MODES[mode]
    except KeyError:
        raise SimqaError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}") from None
