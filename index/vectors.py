"""FAISS indexes over unit vectors (inner product = cosine), written with FAISS's own files.

Exact search (IndexFlatIP) below HNSW_MIN vectors, HNSW from there on. Measured on MedQuAD's
47,441 question vectors, one query, one thread: exact search 3.5 ms (about 75 ns a vector), HNSW
(M=32, efSearch=128) 0.33 ms at recall@10 0.974 against exact (LiveQA query vectors), built in
4.8 s with efConstruction=100; efConstruction=200 gave 0.979 in 8.6 s. Recall at a fixed
efConstruction falls as the graph grows: at 1M synthetic vectors 100 gave 0.953, 200 gave
0.967 and 0.983 in two runs (benchmarks/README.md). So graphs up to BIG_GRAPH vectors use 100
(builds of a typical site's index take half the time), larger ones 200.
A shard of N searches its graph with its built efSearch / N (FAISS takes at least k): it is
asked for about 1/N of the collection's top (search/shard.py, shard_limit), and at N = 4 on
MedQuAD the union of the four shards' searches at ef = k finds as much of the exact top 100
questions (recall 0.957) as one index's search at 128 (0.956); at 128 each shard searched twice as
long for it (`ef_search`).
HNSW_MIN is where exact search passes about 1.5 ms. A filter that leaves at most HNSW_MIN rows
is searched exactly over those rows (HNSW walks a filtered graph poorly). The kind and its
parameters go into the manifest. A generation that keeps the previous one's rows in place and
appends others grows the previous indexes by them (`grow`) instead of building them again.

Exact rescoring reads each row's vector from the index's own storage (`stored`): flat and HNSW
indexes hold the float32 vectors already, in memory once read, so no second copy is written or
mapped. Mapping a copy cost a page fault per row first read: at 1M synthetic consultations the
rescoring stage took 1.38 ms p50 against 0.74 read from the index, and peak RSS 5.4 GB against
3.5 (AMD EPYC, one run, README "Speed").
"hnsw-sq8" (chosen, never automatic) is the compressed option: HNSW over 8-bit scalar-quantised
vectors (FAISS's IndexHNSWSQ, one byte a dimension instead of four), whose codes are decoded on
access (`QuantizedVectors`), with 16 links a node instead of 32 (as Elasticsearch's int8_hnsw
and Lucene default to) and a deeper search: once the vectors are a byte a dimension the links are
the larger part left. On MedQuAD a node takes 528 bytes against the default kind's 1,808 (656
with 32 links, 2.76x; benchmarks/results/scale-out/); at 1M synthetic question vectors 16 links
found recall@10 0.931 at efSearch 128 (32 links: 0.975) and 0.968 at efSearch 256, in
2.08 ms a search (one thread, AVX2; README, "Compressed vectors").
"""

from __future__ import annotations

import weakref
from pathlib import Path

import faiss
import numpy as np

HNSW_MIN = 20_000
HNSW_M, HNSW_EF_SEARCH = 32, 128
COMPRESSED_M, COMPRESSED_EF_SEARCH = 16, 256
BIG_GRAPH = 200_000


def ef_construction(n_vectors: int) -> int:
    """HNSW build effort for a graph of n vectors (see the module docstring)."""
    return 100 if n_vectors <= BIG_GRAPH else 200


KINDS = ("auto", "flat", "hnsw", "hnsw-sq8")
COMPRESSED = "hnsw-sq8"
GRAPHS = ("hnsw", COMPRESSED)


def graph(kind: str) -> tuple[int, int]:
    """Links a node and search effort of a graph kind (read when called: settings() and tests see changes)."""
    return (COMPRESSED_M, COMPRESSED_EF_SEARCH) if kind == COMPRESSED else (HNSW_M, HNSW_EF_SEARCH)


def choose_kind(n_vectors: int, kind: str = "auto") -> str:
    """'flat', 'hnsw' or 'hnsw-sq8' for an index of n vectors ('auto' picks flat or hnsw by HNSW_MIN)."""
    if kind == "auto":
        return "hnsw" if n_vectors >= HNSW_MIN else "flat"
    if kind not in KINDS:
        raise ValueError(f"vector index kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def build(vectors: np.ndarray, kind: str, threads: int = 1) -> faiss.Index:
    """An index holding the vectors in row order (FAISS ids = row numbers)."""
    faiss.omp_set_num_threads(threads)
    dimension = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind in GRAPHS:
        links, effort = graph(kind)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dimension, links, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWSQ(dimension, faiss.ScalarQuantizer.QT_8bit, links, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors if len(vectors) else np.zeros((1, dimension), dtype=np.float32))
        index.hnsw.efConstruction = ef_construction(len(vectors))
        index.hnsw.efSearch = effort
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(vectors)
    return index


class _Held:
    """A read-only array interface over memory the FAISS index owns, keeping the index alive for
    as long as an array made from it is."""

    def __init__(self, index: faiss.Index, pointer: int, shape: tuple[int, int]) -> None:
        self.index = index
        self.__array_interface__ = {"data": (pointer, True), "shape": shape, "typestr": "<f4", "version": 3}


def stored(index: faiss.Index) -> np.ndarray | QuantizedVectors:
    """The index's vectors in row order, as it stores them: a read-only float32 view of a flat or
    HNSW index's storage, or the decoded codes of a compressed one."""
    if isinstance(index, faiss.IndexHNSWSQ):
        return QuantizedVectors(index)
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if not storage.ntotal:
        return np.zeros((0, storage.d), dtype=np.float32)
    pointer = int(faiss.rev_swig_ptr(storage.codes.data(), 1).ctypes.data)
    return np.asarray(_Held(index, pointer, (storage.ntotal, storage.d)))


class QuantizedVectors:
    """The vectors of an "hnsw-sq8" index, decoded from the index's own 8-bit codes on access
    (rows, slices: float32 arrays), so no float32 copy is kept. Decoding is per element, so a
    row decodes to the same bits wherever it is read from."""

    def __init__(self, index: faiss.Index) -> None:
        storage = faiss.downcast_index(index.storage)
        self._index = index  # the codes below are a view of its memory
        n, dimension = storage.ntotal, storage.d
        self.codes = (faiss.rev_swig_ptr(storage.codes.data(), n * storage.code_size).reshape(n, storage.code_size)
                      if n else np.zeros((0, dimension), dtype=np.uint8))
        low, width = _ranges(index)
        self._scale = (width / 255).astype(np.float32)
        self._offset = (low + 0.5 * self._scale).astype(np.float32)
        self.shape = (n, dimension)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        decoded = self.codes[rows].astype(np.float32)  # scaled and shifted in place: one array, not three
        decoded *= self._scale
        decoded += self._offset
        return decoded

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        decoded = self[:]
        return decoded if dtype is None else decoded.astype(dtype)


def settings() -> list[int]:
    """Every constant that shapes a built vector index, for the build's content digest: a rebuild
    of an unchanged corpus after one of them changed makes the index again."""
    return [HNSW_MIN, *(value for kind in GRAPHS for value in graph(kind)), BIG_GRAPH]


def parameters(kind: str, index: faiss.Index) -> dict:
    """What the manifest records of an index: its kind, and a graph's parameters as it holds them."""
    if kind in GRAPHS:
        return {"kind": kind, "M": index.hnsw.nb_neighbors(0) // 2, "efConstruction": index.hnsw.efConstruction,
                "efSearch": index.hnsw.efSearch}
    return {"kind": "flat", "metric": "inner_product"}


def grow(path: Path, vectors: np.ndarray, kind: str, threads: int = 1) -> tuple[faiss.Index, int] | None:
    """The index in `path` with the rows of `vectors` beyond its own added, and how many it added
    (HNSW inserts them into its graph, as build() inserts every row); None when build() is due
    instead: the file is not of this kind, or not what build() would make of this many vectors
    (links, efSearch, efConstruction), or its rows are not exactly the first rows of `vectors`
    (one changed or was deleted), or, for 8-bit codes, an added vector lies further outside the
    ranges the codes were trained on than rounding errs (`_within_ranges`). An update that appends
    consultations then costs the new rows' insertion, not a new graph (README, "Updates")."""
    try:
        mapped = load(path, mapped=True)
    except (RuntimeError, OSError):  # damaged or missing: the build writes a new one anyway
        return None
    held = mapped.ntotal
    if _kind_of(mapped) != kind or held > len(vectors) or not _as_built(mapped, kind, len(vectors)):
        return None
    if not _same_rows(stored(mapped), vectors[:held]):
        return None
    added = np.ascontiguousarray(vectors[held:], dtype=np.float32)
    if kind == COMPRESSED and not _within_ranges(mapped, added):
        return None
    index = load(path)  # in memory: a mapped index cannot grow
    faiss.omp_set_num_threads(threads)
    if len(added):
        index.add(added)
    return index, len(added)


def _kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSWSQ):
        return COMPRESSED
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"


def _as_built(index: faiss.Index, kind: str, n_vectors: int) -> bool:
    """Whether build() would give a graph of n vectors the parameters this one has."""
    if kind not in GRAPHS:
        return True
    links, effort = graph(kind)
    hnsw = index.hnsw
    return (hnsw.nb_neighbors(0), hnsw.efSearch, hnsw.efConstruction) == (2 * links, effort, ef_construction(n_vectors))


def _same_rows(held: np.ndarray | QuantizedVectors, vectors: np.ndarray, chunk: int = 65_536) -> bool:
    """Whether an index's rows (decoded, for codes) are these vectors, bit for bit; in chunks,
    so codes are never decoded whole."""
    return all(np.array_equal(held[start : start + chunk], vectors[start : start + chunk]) for start in range(0, len(vectors), chunk))


def _ranges(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit index's trained ranges: each dimension's minimum and width."""
    storage = faiss.downcast_index(index.storage)
    trained = faiss.vector_to_array(storage.sq.trained)  # per dimension: minimum, then width
    return trained[: storage.d], trained[storage.d :]


def _within_ranges(index: faiss.Index, added: np.ndarray) -> bool:
    """Whether the codes hold the added vectors about as well as their own rows: clipping a
    vector to the trained ranges moves it by no more than rounding may (half a code step in every
    dimension). A few values just outside are usual (of 1,000 new vectors at 1M, 3 values by up
    to 4.6 steps); a vector far outside is not, and the codes are then trained again."""
    low, width = _ranges(index)
    moved = np.linalg.norm(added - np.clip(added, low, low + width), axis=1)
    return bool((moved <= np.linalg.norm(width / 255) / 2).all())


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load(path: Path, mapped: bool = False) -> faiss.Index:
    """Read an index file; `mapped`: its vectors (and HNSW links) memory-mapped from the file
    instead of copied into memory (FAISS's IO_FLAG_MMAP_IFC), for searching only. Opening then
    costs a map, not a read of the whole file (1.8 GB of float32 vectors and links at 1M
    consultations), and processes serving the same index share one copy in the page cache; a
    row's first read costs a page fault instead."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mapped else 0)


def ef_search(index: faiss.IndexHNSW, share: int = 1) -> int:
    """An HNSW index's search effort in a shard of `share`: the effort it was built with (its file
    keeps it) over `share` (the module docstring); FAISS searches with at least k."""
    return max(1, index.hnsw.efSearch // max(share, 1))


# An unfiltered search's parameters, made once per index and share: a SWIG object and the graph's
# efSearch read through a proxy cost about 10 µs a search, a sharded query searching twice a shard.
# FAISS only reads them, so concurrent searches share them.
_UNFILTERED: weakref.WeakKeyDictionary[faiss.Index, dict[int, faiss.SearchParameters]] = weakref.WeakKeyDictionary()


def search_parameters(index: faiss.Index, share: int = 1, allowed: np.ndarray | None = None) -> faiss.SearchParameters | None:
    """FAISS's per-call parameters: a shard's HNSW effort, and the rows `allowed` (a boolean
    mask; the bitmap is kept on the parameters while FAISS reads it)."""
    hnsw = isinstance(index, faiss.IndexHNSW)
    if not hnsw and allowed is None:
        return None
    if allowed is None:
        made = _UNFILTERED.setdefault(index, {})
        if share not in made:
            made[share] = faiss.SearchParametersHNSW(efSearch=ef_search(index, share))
        return made[share]
    params = faiss.SearchParametersHNSW(efSearch=ef_search(index, share)) if hnsw else faiss.SearchParameters()
    params.bitmap = np.packbits(allowed, bitorder="little")
    params.sel = faiss.IDSelectorBitmap(params.bitmap)
    return params


def search(
    index: faiss.Index, vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None, share: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) for one query vector; `allowed` is a boolean mask over rows; `share`:
    the index is one of that many shards (ef_search).

    `vectors` are the index's vectors in row order, for exact search of small filtered sets.
    """
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    if allowed is not None and isinstance(index, faiss.IndexHNSW) and allowed.sum() <= HNSW_MIN:
        rows = np.flatnonzero(allowed)
        scores = inner_products(vectors, query, rows)
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top].astype(np.float32), rows[top]
    params = search_parameters(index, share, allowed)
    scores, rows = index.search(query.reshape(1, -1).astype(np.float32, copy=False), k, params=params)
    keep = rows[0] >= 0
    return scores[0][keep], rows[0][keep]


def inner_products(vectors: np.ndarray, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Each row's inner product with the query (only `rows`' if given, read in place: no copy of
    them), on the calling thread (FAISS's SIMD loops).

    numpy's `vectors @ query` hands many rows to BLAS's threads, which then spin beside the query
    encoder's: on 2 cores the default Related FAQ (32,169 name vectors) took 31.7 ms p50 that
    way and 18.1 ms this way (benchmarks/README.md, "Related FAQ"), and the next query's
    encoding after an exact filtered search of 15,000 rows took 10.9 ms instead of 6.5. A row's
    value is the same bits whatever rows come with it (tests/test_vectors.py). A compressed
    index's vectors (`QuantizedVectors`) are decoded for `rows` alone, not whole.
    """
    if rows is not None and isinstance(vectors, QuantizedVectors):
        vectors, rows = vectors[np.asarray(rows, dtype=np.int64)], None
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # as stored: no copy
    query = np.ascontiguousarray(query, dtype=np.float32)
    d = len(query)
    if len(vectors) and vectors.shape[1] != d:  # FAISS would read past the rows
        raise ValueError(f"vectors of {vectors.shape[1]} dimensions against a query of {d}")
    if rows is None:
        out = np.empty(len(vectors), dtype=np.float32)
        if len(out):
            faiss.fvec_inner_products_ny(faiss.swig_ptr(out), faiss.swig_ptr(query), faiss.swig_ptr(vectors), d, len(vectors))
        return out
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.float32)
    if len(out):
        # FAISS's by-index loop opens an OpenMP team of the thread's OpenMP size whatever it is
        # given: on a request thread (the size is the core count) that left the other core
        # spinning for the whole query, CPU time twice the wall time. One thread, as queries run.
        faiss.omp_set_num_threads(1)
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(query), faiss.swig_ptr(vectors), faiss.swig_ptr(rows),
                                         d, 1, len(rows))
    return out
