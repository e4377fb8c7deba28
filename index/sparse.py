"""Reading a few columns of a CSC matrix at once, as BM25 and Related FAQ's name matching do.

Gathering the columns end to end and summing them with one `np.bincount` costs a query a few
numpy calls, where a `scipy.sparse` column slice and sum, or one `np.add.at` per column, pays
fixed costs per column."""

from __future__ import annotations

import numpy as np


def columns_end_to_end(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, columns: list[int],
                       scales: list[float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, weights, ends) of these columns end to end, column i's ending at ends[i]; each
    column's weights times its scale, if given."""
    spans = [(indptr[c], indptr[c + 1]) for c in columns]  # a few columns: Python beats fancy indexing here
    rows = np.concatenate([indices[a:b] for a, b in spans])
    weights = np.concatenate([data[a:b] for a, b in spans])
    lengths = [b - a for a, b in spans]
    if scales is not None:
        weights = weights * np.repeat(scales, lengths)
    return rows, weights, np.cumsum(lengths)
