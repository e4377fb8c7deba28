"""A shard: one generation of one index directory, answering candidates with raw scores.

Given a query whose tokens and vectors were computed once (`Query`), a shard gathers each active
signal's top candidates (BM25 over both fields, dense question, dense reply passages, all
filtered when asked: search/filters.py) and scores every candidate on every active signal exactly.
It fuses nothing: scores stay raw, so the caller can merge the candidates of several shards and
fuse once (search/searcher.py), as a coordinating node merges the raw answers of its shards.

It answers in two steps, so that a sharded index proposes exactly what one index would: `start`
(its searches begin at once, the rest when its answer is read) gives each signal's top `depth` units here (rows; reply passages for dense_reply) with their
scores; `Proposals.cut` keeps of those the units within the signal's top `depth` over every
shard; `candidates` scores what is left. Each shard then rescores only its part of the global
top, not its own top `depth` of every signal. A shard in another process answers both steps in
one call instead (`answer`, search/served.py), and the cut picks from what it scored.

A shard of N proposes fewer units than the collection's top holds (`shard_limit`): ids are
hashed to shards, so the collection's top L units fall about L/N to a shard, and a shard asked
for L/N plus SHARD_SIGMAS standard deviations of that count holds all of its part of the top but
once in tens of thousands of queries. When one does not (it proposed as many as it was asked and
the cut kept them all: `Proposals.short`), it is asked again for the whole L, so the candidates
are always those of one index. Each of N HNSW searches then looks at a smaller share, with a
smaller effort (index/vectors.py, ef_search).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index import vectors
from index.arrays import sorted_unique
from index.bm25 import Scores
from index.consultation import Consultation
from index.embed import threads
from index.errors import SimqaError
from index.filter_columns import FilterColumns
from index.segment import Segment
from index.snippets import Snippet
from index.text import tokenize
from index.vectors import inner_products
from search.filters import Filters
from search.fusion import DENSE, SIGNALS

# similar() leaves out the consultation's duplicates: the same question body (reposts), or
# question vectors this close (the same question reworded by a few characters).
DUPLICATE_COSINE = 0.98

# The reply-passage search looks this many times deeper than the per-signal depth: a reply has
# several passages, and the top passages of one reply would crowd out other replies.
PASSAGE_DEPTH = 3


# From this many rows, BM25's top rows are found through a sample's bound (_top_rows).
SAMPLED_TOP_MIN = 200_000

# FAISS scores in BLAS's rounding, which depends on how many vectors an index holds; its top
# `limit + FAISS_MARGIN` units are scored again exactly and cut to `limit` by those scores, so
# one index and its shards keep the same units. Exact scores come from index.vectors
# inner_products: a row's product is the same bits whatever rows come with it (BLAS's
# matrix-vector product rounds a row by where it falls in its blocks, so a row would score
# differently in a shard than in one index), read in place (no gather of the rows first).
FAISS_MARGIN = 8

# A shard of N proposes the collection limit / N plus this many standard deviations (shard_limit).
SHARD_SIGMAS = 4


@dataclass
class Query:
    """What the signals match: BM25 tokens, the vectors for questions and replies, and for a
    stored consultation its id and question hash (it and its duplicates are left out)."""

    tokens: list[str]
    question_vector: np.ndarray | None
    reply_vector: np.ndarray | None
    exclude: str | None = None
    exclude_hash: int | None = None


@dataclass
class Proposals:
    """What each signal proposes for a query in one shard: per signal the rows of its top units
    and those units' scores (`units[signal] = (rows, scores)`, a row once per unit), at most
    `limits[signal]` units (more for BM25 rows tied with the last); and the BM25 scores of every
    row, computed on the way, for scoring the candidates."""

    units: dict[str, tuple[np.ndarray, np.ndarray]]
    limits: dict[str, int]
    bm25: dict[str, Scores]
    scored: "Candidates | None" = None  # the candidates of every unit, from a shard that answers in one call (`Shard.answer`)
    asked: dict[str, int] = field(default_factory=dict)  # per signal, the units this shard was asked for (shard_limit); limits if empty

    def rows(self) -> np.ndarray:
        """The rows proposed, once each, in order."""
        found = [rows for rows, _ in self.units.values()]
        return sorted_unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    @staticmethod
    def cut(shards: list["Proposals"]) -> list["Proposals"]:
        """Each shard's proposals within its signals' top `limits` units over every shard: the
        units one index of all the shards' rows would have proposed."""
        out = [Proposals({}, p.limits, p.bm25, p.scored) for p in shards]
        for signal, threshold in _thresholds(shards).items():
            for cut, p in zip(out, shards):
                rows, unit_scores = p.units[signal]
                keep = unit_scores >= threshold
                cut.units[signal] = (rows[keep], unit_scores[keep])
        return out

    @staticmethod
    def short(shards: list["Proposals"]) -> list[int]:
        """The shards that may hold more of the collection's top than they were asked for: for
        some signal, they proposed all they were asked and the cut would keep every one."""
        thresholds = _thresholds(shards)
        return [number for number, p in enumerate(shards)
                if any(_short_of(p, signal, limit, thresholds[signal]) for signal, limit in p.limits.items())]


def _short_of(p: Proposals, signal: str, limit: int, threshold: float) -> bool:
    """Whether a shard's unproposed units of a signal may score at or above the collection's
    threshold. BM25 ranks all of a shard's rows and proposes every row tied with its last, so
    the rows it left out score below its lowest: only a lowest above the threshold leaves room
    (MedQuAD's templated questions tie by the thousand on one common word: a lowest equal to the
    threshold had 71 of 208 LiveQA questions ask a shard of 4 again for nothing). A vector search returns a fixed
    number of units, so one tied with its last may lie beyond them: a lowest at the threshold counts."""
    asked = p.asked.get(signal, limit)
    scores = p.units[signal][1]
    if asked >= limit or len(scores) < asked:
        return False
    lowest = scores.min(initial=np.inf)
    return lowest >= threshold if signal in DENSE else lowest > threshold


def _thresholds(shards: list[Proposals]) -> dict[str, float]:
    """Per signal, the score of the collection's `limit`-th best unit among the shards' (-inf if fewer)."""
    out = {}
    for signal, limit in shards[0].limits.items():
        scores = np.concatenate([p.units[signal][1] for p in shards])
        out[signal] = np.partition(scores, len(scores) - limit)[len(scores) - limit] if len(scores) > limit else -np.inf
    return out


@dataclass
class Candidates:
    """A query's candidates: rows, and every active signal's raw score of each (NaN: the signal
    has nothing to say about the row)."""

    rows: np.ndarray
    scores: dict[str, np.ndarray]

    def among(self, rows: np.ndarray) -> "Candidates":
        """These candidates but those whose row is not in `rows`."""
        keep = np.isin(self.rows, rows)
        return Candidates(self.rows[keep], {signal: values[keep] for signal, values in self.scores.items()})

    @classmethod
    def merge(cls, parts: list["Candidates"], offsets: np.ndarray) -> "Candidates":
        """The candidates of a collection from its shards', shard i's rows shifted by offsets[i]."""
        return cls(np.concatenate([part.rows + offset for part, offset in zip(parts, offsets)]),
                   {signal: np.concatenate([part.scores[signal] for part in parts]) for signal in parts[0].scores})


class Clock:
    """Adds the seconds since the previous lap to a timings dict; does nothing without one."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


# Runs a query's reply-passage searches beside its other stages (Shard._search); its
# threads search with one OpenMP thread each, as the callers' do.
_HELPER = ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="simqa-vectors",
                             initializer=lambda: faiss.omp_set_num_threads(1))


class _Search:
    """One FAISS search, run by a helper thread or by the caller, whichever comes to it first:
    a caller done with its own stages runs a search the helpers have not begun (they may be busy
    with other queries' or shards') instead of waiting for it."""

    def __init__(self, run: Callable[[], np.ndarray]) -> None:
        # `_done` is held until the search has run: a lock, not an Event, which is a Condition
        # and two locks built in Python for each of a query's searches.
        self._run, self._claim, self._done = run, threading.Lock(), threading.Lock()
        self._done.acquire()
        self._value: np.ndarray | None = None
        self._error: BaseException | None = None

    def __call__(self) -> None:
        if not self._claim.acquire(blocking=False):
            return
        try:
            self._value = self._run()
        except BaseException as error:  # raised again in the caller, by result()
            self._error = error
        finally:
            self._done.release()

    def result(self) -> np.ndarray:
        self()
        with self._done:  # waits for whichever thread runs it
            pass
        if self._error is not None:
            raise self._error
        return self._value


class Shard:
    """The candidates side of one generation. Thread-safe after construction."""

    def __init__(self, generation: Path) -> None:
        self.generation = generation
        files = Segment.open(generation)
        self.store = files.store
        self.bm25_question, self.bm25_reply = files.bm25_question, files.bm25_reply
        self.question_vectors, self.reply_vectors = files.question_vectors, files.reply_vectors
        self.reply_offsets = files.reply_offsets
        self.question_index, self.reply_index = files.question_index, files.reply_index
        # One query searches with one thread: 3.5 ms instead of 5.4 ms for exact search at 47k
        # (two threads cost more to start than they save); concurrency comes from requests.
        faiss.omp_set_num_threads(1)

    @cached_property
    def filters(self) -> FilterColumns:
        """The rows as filters see them (index/filter_columns.py), mapped on the first filtered query."""
        return self.store.filter_columns()

    def stored_query(self, row: int, consultation: Consultation | None = None) -> Query:
        """A query made of a stored consultation: its tokens, question vector, mean reply vector;
        the consultation itself and its duplicates are left out of its candidates. Pass the
        consultation if it was read already (batches read the store once)."""
        consultation = consultation or self.store.get([row])[0]
        question_vector = np.asarray(self.question_vectors[row])
        start, end = self.reply_offsets[row], self.reply_offsets[row + 1]
        reply_vector = _unit(np.asarray(self.reply_vectors[start:end]).mean(axis=0)) if end > start else question_vector
        return Query(tokenize(consultation.question_text()), question_vector, reply_vector, exclude=consultation.id,
                     exclude_hash=int(self.store.question_hashes[row]))

    def propose_many(self, queries: list[Query], signals: dict[str, float] | set[str], depth: int,
                     share: int = 1) -> list[dict[str, np.ndarray]]:
        """Each query's units (question rows, reply passages) from the vector signals, in one
        FAISS call per signal searching the queries on every core: `start(..., found=)` then
        skips FAISS. `share`: as start()'s."""
        found: list[dict[str, np.ndarray]] = [{} for _ in queries]
        if not queries:
            return found
        depth += 1 if queries[0].exclude is not None else 0  # as start()
        faiss.omp_set_num_threads(threads())
        try:
            for signal in DENSE & set(signals):
                index, attribute = (self.question_index, "question_vector") if signal == "dense_question" else (self.reply_index, "reply_vector")
                _, units = index.search(np.stack([getattr(q, attribute) for q in queries]),
                                        shard_limit(_limit(signal, depth), share) + FAISS_MARGIN,
                                        params=vectors.search_parameters(index, share))
                for f, u in zip(found, units):
                    f[signal] = u[u >= 0]
        finally:
            faiss.omp_set_num_threads(1)
        return found

    def start(
        self,
        query: Query,
        signals: set[str] | dict,
        depth: int,
        filters: Filters | None,
        found: dict[str, np.ndarray] | None = None,
        share: int = 1,
    ) -> Callable[[Clock | None], Proposals]:
        """Each active signal's top `depth` units among the rows the filters allow, as a shard of
        `share` proposes them (shard_limit); `found` holds the units of vector signals searched
        already (batches without filters). The vector searches start now; the rest runs when the
        returned function is called, so a sharded index starts every shard's searches first."""
        allowed = filters.mask(self.filters) if filters else None
        depth += 1 if query.exclude is not None else 0  # the query itself is among its own top
        limits = {signal: _limit(signal, depth) for signal in signals}
        asked = {signal: shard_limit(limit, share) for signal, limit in limits.items()}
        search_own, searched = self._search(query, DENSE & set(signals) - set(found or {}), asked, allowed,
                                            alongside=bool({"bm25", "bm25_question"} & set(signals)), share=share)

        def finish(clock: Clock | None = None) -> Proposals:
            clock = clock or Clock(None)
            search_own()
            clock.lap("vectors")
            units: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            bm25: dict[str, Scores] = {}
            if "bm25" in signals or "bm25_question" in signals:
                question = self.bm25_question.scored(query.tokens)
                if allowed is not None:
                    question.keep(allowed)
                bm25["bm25_question"] = question
            if "bm25" in signals:
                bm25["bm25"] = Scores(question.dense() + self.bm25_reply.scores(query.tokens), scale=1.0)
                if allowed is not None:
                    bm25["bm25"].keep(allowed)
            for signal in {"bm25", "bm25_question"} & set(signals):
                units[signal] = _top_rows(bm25[signal], asked[signal])
            clock.lap("bm25")
            vector_units = {**searched(), **(found or {})}
            for signal in DENSE & set(signals):
                ids = vector_units[signal]
                if signal == "dense_question":
                    rows, scores = _top_units(ids, inner_products(self.question_vectors, query.question_vector, ids), asked[signal])
                else:
                    passages, scores = _top_units(ids, inner_products(self.reply_vectors, query.reply_vector, ids), asked[signal])
                    rows = self.reply_rows(passages)
                units[signal] = (rows, scores)
            clock.lap("vectors")
            return Proposals(units, limits, bm25, asked=asked)
        return finish

    def _search(self, query: Query, signals: set[str], limits: dict[str, int], allowed: np.ndarray | None,
                alongside: bool, share: int = 1) -> tuple[Callable[[], None], Callable[[], dict[str, np.ndarray]]]:
        """Start FAISS's search for these vector signals: (run the caller's own searches, read
        every signal's units). With other work on this thread (BM25, `alongside`, or the other
        vector signal), the longest search, the reply passages', goes to a helper thread meanwhile
        (FAISS releases the GIL), so the stages take the longest part, not the sum; the caller
        runs it itself if no helper has begun it by then (`_Search`). The caller's own search
        comes before its BM25: a woken helper needs the GIL to begin, and gets it at once while
        the caller is inside FAISS, where during BM25 it waited 115-160 µs for it."""
        def search(signal: str) -> np.ndarray:
            if signal == "dense_question":
                index, vectors_, vector, mask = self.question_index, self.question_vectors, query.question_vector, allowed
            else:
                mask = None if allowed is None else np.repeat(allowed, np.diff(self.reply_offsets))
                index, vectors_, vector = self.reply_index, self.reply_vectors, query.reply_vector
            return vectors.search(index, vectors_, vector, limits[signal] + FAISS_MARGIN, mask, share)[1]

        ordered = sorted(signals, reverse=True)  # dense_reply first
        tasks = {signal: _Search(partial(search, signal)) for signal in ordered}
        handed = 1 if ordered and (alongside or len(ordered) == 2) else 0
        for signal in ordered[:handed]:
            _HELPER.submit(tasks[signal])
        own = [tasks[signal] for signal in ordered[handed:]]
        return lambda: [task() for task in own], lambda: {signal: tasks[signal].result() for signal in ordered}

    def candidates(self, query: Query, proposals: Proposals, clock: Clock | None = None) -> Candidates:
        """The proposed rows (but the query's own consultation and its duplicates) and every
        signal's exact score of each; NaN where a signal has nothing to say (no query term, no reply)."""
        clock = clock or Clock(None)
        rows = proposals.rows()
        if query.exclude is not None:
            close = inner_products(self.question_vectors, query.question_vector, rows) >= DUPLICATE_COSINE
            same = self.store.question_hashes[rows] == query.exclude_hash
            rows = rows[(rows != self.store.rows.get(query.exclude, -1)) & ~close & ~same]
        scores: dict[str, np.ndarray] = {}
        for signal in SIGNALS:
            if signal not in proposals.limits:
                continue
            if signal in proposals.bm25:
                values = proposals.bm25[signal][rows]
                scores[signal] = np.where(values > 0, values, np.nan)
            elif signal == "dense_question":
                scores[signal] = inner_products(self.question_vectors, query.question_vector, rows)
            else:
                scores[signal] = self.reply_scores(rows, query.reply_vector)
        clock.lap("rescore")
        return Candidates(rows, scores)

    def answer(self, query: Query, signals: set[str] | dict, depth: int, filters: Filters | None, share: int = 1) -> Proposals:
        """start()'s proposals and the candidates of every proposed unit, in one call: for a shard in another
        process (search/served.py), where a second round trip costs more than scoring the few rows
        the cut would drop. The BM25 arrays (a score per row) stay here; the candidates of what the
        cut keeps are then `scored.among(cut.rows())`, with the scores the two steps would give."""
        proposals = self.start(query, signals, depth, filters, share=share)()
        return Proposals(proposals.units, proposals.limits, {}, self.candidates(query, proposals), proposals.asked)

    # -- what the Searcher reads of a shard's rows (local rows) ----------------------------------

    def __len__(self) -> int:
        return len(self.store)

    def ask(self, method: str, *args) -> Callable[[], Any]:
        """`method(*args)`, to be read later: here it runs when read; a shard in another process
        (search/served.py) is sent the request at once, so that several work at the same time."""
        return lambda: getattr(self, method)(*args)

    def consultations(self, rows: np.ndarray) -> list[Consultation]:
        """The consultations at these rows, in their order."""
        return self.store.get([int(r) for r in rows])

    def snippets(self, rows: np.ndarray) -> list[Snippet]:
        """What hits show of the consultations at these rows, in their order."""
        return self.store.snippets([int(r) for r in rows])

    def get(self, consultation_id: str) -> Consultation:
        """The stored consultation with this id; SimqaError if the shard has none."""
        return self.store.get([self.row(consultation_id)])[0]

    def ids(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The ids of these rows (every row's without `rows`)."""
        return np.asarray(self.store.ids if rows is None else self.store.ids[rows])

    def has(self, consultation_id: str) -> bool:
        return consultation_id in self.store.rows

    def question_keys(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The question hashes and question vectors of these rows: what tells duplicates apart."""
        return np.asarray(self.store.question_hashes[rows]), np.asarray(self.question_vectors[rows])

    def stored_queries(self, consultation_ids: list[str]) -> list[Query]:
        """stored_query() of these consultations, reading the store once; SimqaError for an unknown id."""
        rows = [self.row(i) for i in consultation_ids]
        return [self.stored_query(row, c) for row, c in zip(rows, self.store.get(rows) if rows else [])]

    def health(self) -> dict:
        """What /healthz says of this shard."""
        return {"consultations": len(self), "generation": self.generation.name}

    def reply_rows(self, passages: np.ndarray) -> np.ndarray:
        """The row of each reply passage."""
        return np.searchsorted(self.reply_offsets, passages, side="right") - 1

    def reply_scores(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Best passage cosine of each row's reply (NaN for a row without reply text)."""
        starts = self.reply_offsets[rows]
        lengths = self.reply_offsets[rows + 1] - starts
        ends = np.cumsum(lengths)
        out = np.full(len(rows), np.nan)
        if not len(ends) or not ends[-1]:
            return out
        group_starts = ends - lengths
        # each row's passages in turn: passage j of a row is starts + j, its place in `cosines` group_starts + j
        cosines = inner_products(self.reply_vectors, vector, np.arange(ends[-1]) + np.repeat(starts - group_starts, lengths))
        filled = lengths > 0
        out[filled] = np.maximum.reduceat(cosines, group_starts[filled])
        return out

    def row(self, consultation_id: str) -> int:
        """The row of a consultation id; SimqaError if the index has none."""
        try:
            return self.store.rows[consultation_id]
        except KeyError:
            raise SimqaError(f"unknown consultation id {consultation_id!r}") from None


def shard_limit(limit: int, share: int) -> int:
    """How many of a signal's `limit` units a shard of `share` proposes (module docstring): the
    count of the collection's top that hashing sends to it, Binomial(limit, 1/share), at its mean
    plus SHARD_SIGMAS standard deviations."""
    if share <= 1:
        return limit
    mean = limit / share
    return min(limit, math.ceil(mean + SHARD_SIGMAS * math.sqrt(mean * (1 - 1 / share))))


def _limit(signal: str, depth: int) -> int:
    """How many units a signal proposes: rows, or for dense_reply PASSAGE_DEPTH times as many passages."""
    return depth * PASSAGE_DEPTH if signal == "dense_reply" else depth


def _top_units(ids: np.ndarray, values: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The `limit` best of these units by their values, and every unit tied with the last
    (which of a tie one index keeps must not be chance): ids and their values."""
    if len(ids) > limit:
        cut = np.partition(values, len(values) - limit)[len(values) - limit]
        keep = values >= cut
        ids, values = ids[keep], values[keep]
    return ids, values


def _top_rows(scores: Scores, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """_top_units of the rows with a positive score (`Scores`, whose rows from a bound may include
    a few below it): the rows in order and their scores. From SAMPLED_TOP_MIN rows, sums kept for
    every row are ranked only at or above a sampled bound (_sampled_bound); below, or when kept
    for the matched rows only, every matching row is."""
    bound = _sampled_bound(scores, limit) if scores.rows is None and len(scores) >= SAMPLED_TOP_MIN else 0.0
    if bound > 0:
        rows = scores.rows_from(bound)
        values = scores[rows]
    else:
        rows, values = scores.positive()
    positive = values > 0
    return _top_units(rows[positive], values[positive], limit)


def _sampled_bound(scores: Scores, limit: int) -> float:
    """A score the `limit`-th best is at or above (0.0: none found). At 1M rows a query's terms
    match a fifth of them, too many to partition; the `limit`-th best of an even sample of about
    sqrt(limit * rows) scores is such a bound: 0.87 ms instead of 1.73 at 1M synthetic rows, but
    74 µs instead of 50 at MedQuAD's 47k, hence SAMPLED_TOP_MIN."""
    step = max(1, int(np.sqrt(len(scores) / max(limit, 1))))
    sample = scores[::step]
    sample = sample[sample > 0]  # np.partition slows 25x on the zeros of the rows no term matched (0.70 ms, not 0.03)
    return np.partition(sample, len(sample) - limit)[len(sample) - limit] if step > 1 and len(sample) >= limit else 0.0


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm else vector.astype(np.float32)
