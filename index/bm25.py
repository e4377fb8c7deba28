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
from pathlib import Path

import bm25s
import numpy as np
import scipy.sparse as sp
from bm25s.scoring import _build_idf_array, _build_scores_and_indices_for_matrix, _calculate_doc_freqs, _select_idf_scorer

from index.sparse import columns_end_to_end

K1, B, METHOD = 1.5, 0.75, "robertson"
PICKED_ROWS = 8  # Scores.rows_from: reading a row by index costs about this many rows read in order


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
    """bm25s whose idf and average length come from the collection, not from this shard."""

    def __init__(self, stats: CollectionStats, vocabulary: dict[str, int], **options) -> None:
        super().__init__(**options)
        self._stats, self._vocabulary = stats, vocabulary

    def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False) -> dict:
        self.nonoccurrence_array = None  # robertson has none (BM25L and BM25+ do)
        # (an average length of 0: a field empty everywhere, indexed as placeholder "" documents of length 1)
        local_frequency = _calculate_doc_freqs(corpus_token_ids, unique_token_ids, show_progress=False)
        frequency = {i: self._stats.document_frequency.get(token, 0) for token, i in self._vocabulary.items()}
        idf = _build_idf_array(frequency, self._stats.documents, _select_idf_scorer(self.idf_method), self.dtype)
        scores, rows, columns = _build_scores_and_indices_for_matrix(
            corpus_token_ids, idf, self._stats.average_length or 1.0, local_frequency, self.k1, self.b, self.delta,
            None, method=self.method, dtype=self.dtype, int_dtype=self.int_dtype, show_progress=False)
        matrix = sp.csc_matrix((scores, (rows, columns)), shape=(len(corpus_token_ids), len(unique_token_ids)), dtype=self.dtype)
        return {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, "num_docs": len(corpus_token_ids)}


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
        stats = stats or CollectionStats.of(token_lists)
        # bm25s needs one token somewhere to build a vocabulary; "" never matches a query token.
        documents = token_lists if any(token_lists) else [[""]] * len(token_lists)
        vocabulary = {token: i for i, token in enumerate(dict.fromkeys(t for tokens in documents for t in tokens))}
        model = _CollectionBM25(stats, vocabulary, k1=K1, b=B, method=METHOD)
        model.index(([[vocabulary[t] for t in tokens] for tokens in documents], vocabulary), show_progress=progress)
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
        shard. Each document's terms are summed in query order, the same in any shard."""
        ids = self.model.get_tokens_ids([t for t in tokens if t])
        if not ids:
            return Scores(np.zeros(self.n_docs))
        matrix = self.model.scores
        rows, weights, ends = columns_end_to_end(matrix["indptr"], matrix["indices"], matrix["data"], ids)
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
    bits however it is read. Scores already float32 (two fields' added) come with scale 1."""

    def __init__(self, sums: np.ndarray, scale: float = K1 + 1, terms: Terms | None = None) -> None:
        self.sums, self.scale, self.terms = sums, scale, terms

    def __len__(self) -> int:
        return len(self.sums)

    def __getitem__(self, rows) -> np.ndarray:
        """The scores of these rows (an index array or a slice), float32."""
        return self._scaled(self.sums[rows])

    def dense(self) -> np.ndarray:
        """Every document's score, float32."""
        return self._scaled(self.sums)

    def rows_from(self, bound: float) -> np.ndarray:
        """The rows scoring `bound` (> 0) or more, and perhaps a few just below it: a bound on the
        float64 sums a little under the one that rounds to it (the caller ranks the rows' scores).
        Read from the rows of the query's rare terms where its `terms` say only those can reach
        it (`Terms.rows_reaching`) and they are few: picking rows here and there costs about
        what PICKED_ROWS times as many rows read in order do."""
        limit = bound / self.scale * (1 - 1e-6)
        candidates = self.terms.rows_reaching(limit) if self.terms is not None else None
        if candidates is None or PICKED_ROWS * len(candidates) >= len(self.sums):
            return np.flatnonzero(self.sums >= limit)
        return np.unique(candidates[self.sums[candidates] >= limit])

    def positive_rows(self) -> np.ndarray:
        """The rows that match some query term."""
        return np.flatnonzero(self.sums > 0)

    def _scaled(self, sums: np.ndarray) -> np.ndarray:
        # scaled in the sums' precision and rounded to float32 in one pass, into one new array:
        # the bits of scaling, then casting, 1.07 ms instead of 1.26 for every row at 1M
        return np.multiply(sums, self.scale, out=np.empty(np.shape(sums), dtype=np.float32), casting="same_kind")
