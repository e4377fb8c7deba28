"""FAISS indexes over unit vectors (inner product = cosine), written with FAISS's own files.

Exact search (IndexFlatIP) up to HNSW_MIN vectors, HNSW above: exact search is a few ms at
MedQuAD's size on 2 cores and needs no tuning. The kind and its parameters go into the manifest.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

HNSW_MIN = 250_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, 128


def choose_kind(n_vectors: int, kind: str = "auto") -> str:
    """'flat' or 'hnsw' for an index of n vectors ('auto' picks by HNSW_MIN)."""
    if kind == "auto":
        return "hnsw" if n_vectors >= HNSW_MIN else "flat"
    if kind not in ("flat", "hnsw"):
        raise ValueError(f"vector index kind must be auto, flat or hnsw, not {kind!r}")
    return kind


def build(vectors: np.ndarray, kind: str) -> faiss.Index:
    """An index holding the vectors in row order (FAISS ids = row numbers)."""
    dimension = vectors.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def parameters(kind: str) -> dict:
    """What the manifest records of an index kind."""
    if kind == "hnsw":
        return {"kind": "hnsw", "M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH}
    return {"kind": "flat", "metric": "inner_product"}


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def search(index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) for one query vector; `allowed` is a boolean mask over rows."""
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    params, bitmap = None, None
    if allowed is not None:
        bitmap = np.packbits(allowed, bitorder="little")  # kept alive here while FAISS reads it
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(bitmap))
    scores, rows = index.search(query.reshape(1, -1).astype(np.float32, copy=False), k, params=params)
    keep = rows[0] >= 0
    return scores[0][keep], rows[0][keep]
