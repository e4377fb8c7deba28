"""BM25 over one text field, on bm25s's sparse matrices.

bm25s computes every (term, document) score at index time, so a query is a sum of a few sparse
columns with no Python loop over documents. We use its "robertson" variant with k1=1.5, b=0.75:
the formula of rank-bm25's BM25Okapi, our reference, once scaled by (k1 + 1), which bm25s leaves
out. One difference, tested and documented: a term in more than half the documents scores 0 here,
where BM25Okapi gives it a small positive floor.

A shard of a larger collection is built with the collection's statistics (`CollectionStats`:
document count, average length and each term's document frequency over every shard), so a
document scores the same in whichever shard holds it, the problem Elasticsearch's
`dfs_query_then_fetch` solves at query time. bm25s bakes idf and the average length into its
score matrix at index time, so the statistics go in there, through `build_index_from_ids`, the
hook bm25s documents for building "in a different way".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import bm25s
import numpy as np
import scipy.sparse as sp
from bm25s.scoring import _build_idf_array, _select_idf_scorer
from bm25s.tokenization import Tokenized

from index.arrays import first_of_runs, sorted_unique
from index.sparse import columns_end_to_end

K1, B, METHOD = 1.5, 0.75, "robertson"
PICKED_ROWS = 8  # Scores.rows_from: reading a row by index costs about this many rows read in order
# Scores.matched: a query whose terms' columns hold fewer entries than this share of the rows
# keeps the sums of the rows they match only (the crossover measured at 47k and at 1M rows).
MATCHED_SHARE = 0.1
TOKENS_BLOCK_DOCS = 65_536  # documents whose tokens are numbered at once (_TokenIds.of)


@dataclass(frozen=True)
class CollectionStats:
    """What BM25 needs to know of the whole collection, over every shard of it. Additive: the
    statistics of a collection are the sum of its shards' (`sum`), so shards count in parallel."""

    documents: int
    total_length: int
    document_frequency: dict[str, int]

    @property
    def average_length(self) -> float:
        return self.total_length / self.documents if self.documents else 0.0

    @classmethod
    def of(cls, token_lists: Iterable[list[str]]) -> "CollectionStats":
        """The statistics of these documents (one token list each)."""
        documents, length, frequency = 0, 0, Counter()
        for tokens in token_lists:
            documents += 1
            length += len(tokens)
            frequency.update(set(tokens))
        return cls(documents, length, dict(frequency))

    @classmethod
    def sum(cls, parts: Iterable["CollectionStats"]) -> "CollectionStats":
        documents, length, frequency = 0, 0, Counter()
        for part in parts:
            documents += part.documents
            length += part.total_length
            frequency.update(part.document_frequency)
        return cls(documents, length, dict(frequency))

    def to_dict(self) -> dict:
        return {"documents": self.documents, "total_length": self.total_length,
                "document_frequency": dict(sorted(self.document_frequency.items()))}

    @classmethod
    def from_dict(cls, data: dict) -> "CollectionStats":
        return cls(int(data["documents"]), int(data["total_length"]), {str(t): int(n) for t, n in data["document_frequency"].items()})


class _CollectionBM25(bm25s.BM25):
    """bm25s whose idf and average length come from the collection, not from this shard, and
    whose score matrix is computed over every document at once (`_TokenIds`, `score_matrix`)."""

    def __init__(self, stats: CollectionStats, **options) -> None:
        super().__init__(**options)
        self._stats = stats

    def build_index_from_ids(self, unique_token_ids, corpus_token_ids: "_TokenIds", show_progress=True,
                             leave_progress=False) -> dict:
        self.nonoccurrence_array = None  # robertson has none (BM25L and BM25+ do)
        frequency = {i: self._stats.document_frequency.get(token, 0) for token, i in corpus_token_ids.vocab.items()}
        assert len(frequency) == len(unique_token_ids)  # the vocabulary bm25s read from the same corpus
        idf = _build_idf_array(frequency, self._stats.documents, _select_idf_scorer(self.idf_method), self.dtype)
        # (an average length of 0: a field empty everywhere, indexed as placeholder "" documents of length 1)
        matrix = score_matrix(corpus_token_ids, idf, self._stats.average_length or 1.0, self.k1, self.b)
        return {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, "num_docs": len(corpus_token_ids.lengths)}


@dataclass(frozen=True)
class _TokenIds:
    """Documents as term ids: every document's end to end (`ids`, int64), each one's length, and
    the vocabulary (term -> id, in order of first occurrence, as bm25s numbers them). What bm25s
    calls a tokenized corpus (`ids`, `vocab`), in arrays instead of a list of lists."""

    ids: np.ndarray
    lengths: np.ndarray
    vocab: dict[str, int]

    @classmethod
    def of(cls, documents: list[list[str]]) -> "_TokenIds":
        vocabulary: dict[str, int] = {}
        parts = []
        for start in range(0, len(documents), TOKENS_BLOCK_DOCS):  # a block's tokens, not every token, in a list
            tokens = list(chain.from_iterable(documents[start : start + TOKENS_BLOCK_DOCS]))
            new = [t for t in dict.fromkeys(tokens) if t not in vocabulary]
            vocabulary.update(zip(new, range(len(vocabulary), len(vocabulary) + len(new))))
            parts.append(np.fromiter(map(vocabulary.__getitem__, tokens), dtype=np.int64, count=len(tokens)))
        lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        return cls(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64), lengths, vocabulary)

    @cached_property
    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every distinct (document, term) pair, by document then term: documents, terms, counts."""
        n_terms = max(len(self.vocab), 1)
        docs = np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)
        pairs, counts = np.unique(docs * n_terms + self.ids, return_counts=True)
        return *np.divmod(pairs, n_terms), counts

    def stats(self) -> CollectionStats:
        """CollectionStats.of these documents, from their pairs (a term's document frequency is
        its number of pairs) instead of a Counter per document."""
        frequency = np.bincount(self.pairs[1], minlength=len(self.vocab))
        return CollectionStats(len(self.lengths), int(self.lengths.sum()), dict(zip(self.vocab, frequency.tolist())))


def score_matrix(documents: _TokenIds, idf: np.ndarray, average_length: float, k1: float, b: float) -> sp.csc_matrix:
    """bm25s's robertson score of every (document, term) pair, documents x terms, with the bits
    its per-document loop gives (`_build_scores_and_indices_for_matrix`), in whole-array steps:
    idf * tf / (k1 * ((1 - b) + b * length / average) + tf), the length part in float64 (Python
    floats there) rounded to float32 where it meets the float32 term frequencies. MedQuAD's two
    fields now build in 1.05 s instead of 2.76 (the loop counted each document's terms with a
    Counter); the same matrices, tested."""
    n_docs, n_terms = len(documents.lengths), len(idf)
    rows, columns, counts = documents.pairs
    length_part = (k1 * ((1 - b) + b * documents.lengths / average_length)).astype(np.float32)
    tf = counts.astype(np.float32)
    scores = idf[columns] * (tf / (length_part[rows] + tf))
    return sp.csc_matrix((scores, (rows.astype(np.int32), columns.astype(np.int32))), shape=(n_docs, n_terms), dtype=np.float32)


class FieldBM25:
    """A BM25 index over one field of every consultation (rows in store order)."""

    def __init__(self, model: bm25s.BM25, n_docs: int) -> None:
        self.model = model
        self.n_docs = n_docs

    @classmethod
    def build(cls, token_lists: list[list[str]], progress: bool = False, stats: CollectionStats | None = None) -> "FieldBM25":
        """Index one token list per document; with `stats`, as a shard of that collection.

        Without, the documents are their own collection, through the same arithmetic: an index
        and the shards of the same documents give bit-identical scores (and ties)."""
        placeholder = not any(token_lists)
        # bm25s needs one token somewhere to build a vocabulary; "" never matches a query token.
        documents = _TokenIds.of([[""]] * len(token_lists) if placeholder else token_lists)
        stats = stats or (CollectionStats.of(token_lists) if placeholder else documents.stats())
        model = _CollectionBM25(stats, k1=K1, b=B, method=METHOD)
        # bm25s hands a tokenized corpus's `ids` to build_index_from_ids as they are: ours, whole
        model.index(Tokenized(ids=documents, vocab=documents.vocab), show_progress=progress)
        return cls(model, len(token_lists))

    def save(self, directory: Path) -> None:
        self.model.save(str(directory))

    @classmethod
    def load(cls, directory: Path, n_docs: int) -> "FieldBM25":
        """Load with memory-mapped arrays (no pickle: bm25s stores .npy and JSON)."""
        model = bm25s.BM25.load(str(directory), mmap=True)
        # Plain arrays over the same maps: np.memmap's slicing costs ~4 µs a call, a few per query term.
        model.scores = {k: np.asarray(v) if isinstance(v, np.memmap) else v for k, v in model.scores.items()}
        return cls(model, n_docs)

    @property
    def vocabulary_size(self) -> int:
        return len(self.model.vocab_dict)

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every document for the query tokens (repeated tokens count again)."""
        return self.scored(tokens).dense()

    def scored(self, tokens: list[str]) -> "Scores":
        """The query's BM25 scores, rounded to float32 only where they are read (`Scores`).

        One bincount over the query terms' columns of bm25s's matrix, where bm25s itself makes
        one np.add.at call per term: 4x less fixed cost a query, which a sharded index pays per
        shard. Each document's terms are summed in query order, the same in any shard. When the
        columns hold few entries, only the rows they match are summed (`Scores.matched`)."""
        ids = self.model.get_tokens_ids([t for t in tokens if t])
        if not ids:
            return Scores(np.zeros(self.n_docs))
        matrix = self.model.scores
        rows, weights, ends = columns_end_to_end(matrix["indptr"], matrix["indices"], matrix["data"], ids)
        if len(rows) < MATCHED_SHARE * self.n_docs:
            return Scores.matched(rows, weights, self.n_docs)
        return Scores(np.bincount(rows, weights=weights, minlength=self.n_docs), terms=Terms(rows, weights, ends))


@dataclass(frozen=True)
class Terms:
    """A query's terms as a field's scores were summed from them: the rows and weights of every
    term's column end to end, term i's ending at ends[i]."""

    rows: np.ndarray
    weights: np.ndarray
    ends: np.ndarray

    def rows_reaching(self, bound: float) -> np.ndarray | None:
        """Every row whose sum can reach `bound`, with repeats (None: any row that matches).

        MaxScore's argument (Turtle and Flood, 1995): a row matching only terms whose largest
        weights add up to less than the bound cannot reach it, so only the rows of the other
        terms, the rare ones, need reading; at 1M rows those are a few thousand, where the
        common terms match a fifth of the collection."""
        starts = np.r_[0, self.ends[:-1]]
        maxima = np.array([self.weights[a:b].max(initial=0.0) for a, b in zip(starts, self.ends)], dtype=np.float64)
        order = np.argsort(maxima, kind="stable")
        reach = np.cumsum(maxima[order]) * (1 + 1e-9)  # a hair above: sums round differently
        needed = order[np.searchsorted(reach, bound, side="left"):]
        if len(needed) == len(order):
            return None
        parts = [self.rows[starts[i]:self.ends[i]] for i in needed]
        return np.concatenate(parts) if parts else self.rows[:0]


class Scores:
    """A query's BM25 score of every document, kept as sums (bincount's float64 ones for a field):
    a document's score is float32(sum * scale), scaled and rounded where it is read, so a query
    that needs its best documents and a few others' scores does not scale and round every
    document's (at 1M documents a pass over the scores costs about half a millisecond). The same
    bits however it is read. Scores already float32 (two fields' added) come with scale 1.

    The sums are kept for every row (`rows` None: `sums[row]`), or for the rows the query's terms
    match only (`rows` sorted, `sums` beside them; `matched`): a sum of every row is an array of
    8 MB at 1M rows, allocated, zeroed and scanned for each query, where its terms typically
    match a few percent of them (the default hybrid's BM25 stage 1.02 -> 0.75 ms p50 for LiveQA
    summaries at 1M synthetic rows, AMD EPYC with AVX2 only; `python -m benchmarks.speed bm25-top`)."""

    def __init__(self, sums: np.ndarray, scale: float = K1 + 1, terms: Terms | None = None,
                 rows: np.ndarray | None = None, n_rows: int | None = None) -> None:
        self.sums, self.scale, self.terms = sums, scale, terms
        self.rows, self.n_rows = rows, len(sums) if rows is None else n_rows

    @classmethod
    def matched(cls, rows: np.ndarray, weights: np.ndarray, n_rows: int) -> "Scores":
        """The sums of the rows among `rows` (the query terms' columns end to end), with the bits
        bincount gives: a stable sort keeps each row's weights in query order, and bincount adds
        them in that order, from 0."""
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        first = first_of_runs(ordered)
        return cls(np.bincount(np.cumsum(first) - 1, weights=weights[order]), rows=ordered[first], n_rows=n_rows)

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, rows) -> np.ndarray:
        """The scores of these rows (an index array; or a slice, of sums kept for every row), float32."""
        if self.rows is None:
            return self._scaled(self.sums[rows])
        rows = np.asarray(rows)
        at = np.searchsorted(self.rows, rows)
        found = at < len(self.rows)
        found[found] = self.rows[at[found]] == rows[found]
        sums = np.zeros(len(rows))
        sums[found] = self.sums[at[found]]
        return self._scaled(sums)

    def dense(self) -> np.ndarray:
        """Every document's score, float32."""
        if self.rows is None:
            return self._scaled(self.sums)
        out = np.zeros(self.n_rows)
        out[self.rows] = self.sums
        return self._scaled(out)

    def keep(self, allowed: np.ndarray) -> None:
        """Score 0 for every row not `allowed` (a boolean mask over rows): a filter."""
        if self.rows is None:
            self.sums[~allowed] = 0.0
        else:
            self.sums[~allowed[self.rows]] = 0.0

    def rows_from(self, bound: float) -> np.ndarray:
        """The rows scoring `bound` (> 0) or more, and perhaps a few just below it: a bound on the
        float64 sums a little under the one that rounds to it (the caller ranks the rows' scores).
        Read from the rows of the query's rare terms where its `terms` say only those can reach
        it (`Terms.rows_reaching`) and they are few: picking rows here and there costs about
        what PICKED_ROWS times as many rows read in order do."""
        limit = bound / self.scale * (1 - 1e-6)
        if self.rows is not None:
            return self.rows[self.sums >= limit]
        candidates = self.terms.rows_reaching(limit) if self.terms is not None else None
        if candidates is None or PICKED_ROWS * len(candidates) >= len(self.sums):
            return np.flatnonzero(self.sums >= limit)
        return sorted_unique(candidates[self.sums[candidates] >= limit])

    def positive(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows that match some query term, and their scores."""
        if self.rows is None:
            rows = np.flatnonzero(self.sums > 0)
            return rows, self._scaled(self.sums[rows])
        kept = self.sums > 0
        return self.rows[kept], self._scaled(self.sums[kept])

    def _scaled(self, sums: np.ndarray) -> np.ndarray:
        # scaled in the sums' precision and rounded to float32 in one pass, into one new array:
        # the bits of scaling, then casting, 1.07 ms instead of 1.26 for every row at 1M
        return np.multiply(sums, self.scale, out=np.empty(np.shape(sums), dtype=np.float32), casting="same_kind")
