"""BM25 over one text field, on bm25s's sparse matrices.

bm25s computes every (term, document) score at index time, so a query is a sum of a few sparse
columns with no Python loop over documents. We use its "robertson" variant with k1=1.5, b=0.75:
the formula of rank-bm25's BM25Okapi, our reference, once scaled by (k1 + 1), which bm25s leaves
out. One difference, tested and documented: a term in more than half the documents scores 0 here,
where BM25Okapi gives it a small positive floor.
"""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np

K1, B, METHOD = 1.5, 0.75, "robertson"


class FieldBM25:
    """A BM25 index over one field of every consultation (rows in store order)."""

    def __init__(self, model: bm25s.BM25, n_docs: int) -> None:
        self.model = model
        self.n_docs = n_docs

    @classmethod
    def build(cls, token_lists: list[list[str]], progress: bool = False) -> "FieldBM25":
        """Index one token list per document."""
        model = bm25s.BM25(k1=K1, b=B, method=METHOD)
        # bm25s needs one token somewhere to build a vocabulary; "" never matches a query token.
        model.index(token_lists if any(token_lists) else [[""]] * len(token_lists), show_progress=progress)
        return cls(model, len(token_lists))

    def save(self, directory: Path) -> None:
        self.model.save(str(directory))

    @classmethod
    def load(cls, directory: Path, n_docs: int) -> "FieldBM25":
        """Load with memory-mapped arrays (no pickle: bm25s stores .npy and JSON)."""
        return cls(bm25s.BM25.load(str(directory), mmap=True), n_docs)

    @property
    def vocabulary_size(self) -> int:
        return len(self.model.vocab_dict)

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every document for the query tokens (repeated tokens count again)."""
        ids = self.model.get_tokens_ids([t for t in tokens if t])
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float32) * np.float32(K1 + 1)
