"""FAISS wrappers: exact and HNSW search, filters, and the exact path for small filtered sets."""

import faiss
import numpy as np
import pytest

from index import vectors


def unit_vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_choose_kind():
    assert vectors.choose_kind(vectors.HNSW_MIN - 1) == "flat"
    assert vectors.choose_kind(vectors.HNSW_MIN) == "hnsw"
    assert vectors.choose_kind(10, "hnsw") == "hnsw"


def test_flat_and_hnsw_agree_with_numpy():
    data = unit_vectors(2000)
    query = data[7]
    expected = np.argsort(-(data @ query))[:10]
    for kind in ("flat", "hnsw"):
        scores, rows = vectors.search(vectors.build(data, kind), data, query, 10)
        assert rows[0] == 7 and abs(scores[0] - 1) < 1e-5
        assert len(set(rows) & set(expected)) >= 9


def test_filters_exact_on_small_sets_and_never_return_excluded_rows():
    data = unit_vectors(3000)
    allowed = np.zeros(3000, dtype=bool)
    allowed[::100] = True  # 30 rows
    query = data[5]
    expected = np.flatnonzero(allowed)[np.argsort(-(data[allowed] @ query))[:40]]
    for kind in ("flat", "hnsw"):
        _, rows = vectors.search(vectors.build(data, kind), data, query, 40, allowed)
        assert rows.tolist() == expected.tolist()  # all 30, in exact order
    assert len(vectors.search(vectors.build(data[:0], "flat"), data[:0], query, 5)[1]) == 0


def test_flat_and_hnsw_indexes_give_their_own_vectors_read_only_for_as_long_as_they_are_used(tmp_path):
    import gc

    data = unit_vectors(3000, d=64)
    for kind in ("flat", "hnsw"):
        vectors.save(vectors.build(data, kind), tmp_path / f"{kind}.faiss")
        stored = vectors.stored(vectors.load(tmp_path / f"{kind}.faiss"))
        gc.collect()  # the index is referenced by the array alone now
        np.testing.assert_array_equal(stored, data)
        assert stored.dtype == np.float32 and not stored.flags.writeable
        with pytest.raises(ValueError):
            stored[0, 0] = 1.0
    assert vectors.stored(vectors.build(data[:0], "flat")).shape == (0, 64)
    assert isinstance(vectors.stored(vectors.build(data, vectors.COMPRESSED)), vectors.QuantizedVectors)


def test_the_compressed_kind_keeps_its_vectors_in_the_index(tmp_path):
    data = unit_vectors(3000, d=64)
    index = vectors.build(data, vectors.COMPRESSED)
    vectors.save(index, tmp_path / "v.faiss")
    stored = vectors.QuantizedVectors(vectors.load(tmp_path / "v.faiss"))
    assert stored.shape == data.shape and len(stored) == 3000
    decoded = stored[np.array([3, 9, 2999])]
    assert decoded.dtype == np.float32 and np.abs(decoded - data[[3, 9, 2999]]).max() < 0.01  # 8 bits a dimension
    np.testing.assert_array_equal(stored[5:6][0], stored[5])  # the same bits however a row is read
    assert np.asarray(stored).shape == data.shape
    expected = np.argsort(-(data @ data[7]))[:10]
    _, rows = vectors.search(index, stored, data[7], 10)
    assert rows[0] == 7 and len(set(rows) & set(expected)) >= 9
    allowed = np.zeros(3000, dtype=bool)
    allowed[::100] = True  # a filter's few rows are searched exactly, decoding those rows only
    whole = np.asarray(stored)
    stored.__array__ = lambda *args, **kwargs: pytest.fail("every row decoded for a filtered search")
    scores, rows = vectors.search(index, stored, data[7], 10, allowed)
    assert rows.tolist() == np.flatnonzero(allowed)[np.argsort(-(whole[allowed] @ data[7]), kind="stable")[:10]].tolist()
    assert (scores == vectors.inner_products(whole, data[7], rows)).all()
    assert vectors.parameters(vectors.COMPRESSED, index) == {"kind": "hnsw-sq8", "M": vectors.COMPRESSED_M,
                                                             "efConstruction": 100, "efSearch": vectors.COMPRESSED_EF_SEARCH}
    assert vectors.choose_kind(10**7) == "hnsw"  # never chosen by "auto"


def test_a_shard_searches_its_graph_with_less_effort_and_one_index_with_the_built_effort():
    import faiss

    data = unit_vectors(5000, d=32)
    index = vectors.build(data, "hnsw")
    query = data[11]
    faiss.cvar.hnsw_stats.reset()
    whole = vectors.search(index, data, query, 10)
    one = faiss.cvar.hnsw_stats.ndis
    faiss.cvar.hnsw_stats.reset()
    quarter = vectors.search(index, data, query, 10, share=4)
    assert faiss.cvar.hnsw_stats.ndis < one  # efSearch 32 instead of 128: fewer distances computed
    assert quarter[1][0] == 11
    _, expected = index.search(query.reshape(1, -1), 10)  # the efSearch the index was built with
    assert whole[1].tolist() == expected[0].tolist()
    assert vectors.ef_search(index, 4) == vectors.HNSW_EF_SEARCH // 4 and vectors.ef_search(index) == vectors.HNSW_EF_SEARCH
    compressed = vectors.build(data, vectors.COMPRESSED)  # fewer links, searched deeper
    assert compressed.hnsw.nb_neighbors(0) == 2 * vectors.COMPRESSED_M and vectors.ef_search(compressed) == vectors.COMPRESSED_EF_SEARCH
    # an unfiltered search's parameters are made once per index and share; a filter's are its own
    assert vectors.search_parameters(index, 4) is vectors.search_parameters(index, 4)
    assert vectors.search_parameters(index, 4).efSearch == vectors.HNSW_EF_SEARCH // 4
    assert vectors.search_parameters(index).efSearch == vectors.HNSW_EF_SEARCH
    allowed = np.zeros(5000, dtype=bool)
    allowed[:2500] = True
    assert vectors.search_parameters(index, 4, allowed) is not vectors.search_parameters(index, 4, allowed)
    assert set(vectors.search(index, data, data[4000], 10, allowed)[1]) <= set(range(2500))


def test_rescoring_on_a_request_thread_opens_no_openmp_team():
    """FAISS's by-index products open an OpenMP team of the calling thread's OpenMP size: on a
    thread that never set it (a server's request threads), a team of every core, whose idle
    member spins. inner_products runs them on one thread, wherever it is called from."""
    import threading

    data = unit_vectors(100, d=16, seed=1)
    sizes = []

    def request() -> None:
        faiss.omp_set_num_threads(2)  # a request thread starts at the process's size, every core
        vectors.inner_products(data, data[0], np.arange(10))
        sizes.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    assert sizes == [1]


def test_inner_products_on_this_thread_match_numpy_and_do_not_depend_on_the_rows_alongside():
    """index.vectors.inner_products (the exact filtered path, Related FAQ's dense signal): numpy's
    products to float precision, and a row's value the same bits whatever rows come with it."""
    data = unit_vectors(1001, d=384, seed=3)
    query = unit_vectors(1, d=384, seed=4)[0]
    every = vectors.inner_products(data, query)
    assert np.allclose(every, data @ query, atol=1e-6)
    for rows in (np.arange(7), np.random.default_rng(5).choice(1001, 300, replace=False), np.array([1000])):
        assert (vectors.inner_products(data[rows], query) == every[rows]).all()
        assert (vectors.inner_products(data, query, rows) == every[rows]).all()  # read in place
    assert vectors.inner_products(data[:0], query).shape == (0,)
    assert vectors.inner_products(data, query, np.zeros(0, dtype=np.int64)).shape == (0,)


def test_an_index_grows_by_appended_rows_only_when_it_holds_exactly_the_rows_before(tmp_path, monkeypatch):
    data = unit_vectors(2100, d=32)
    for kind in ("flat", "hnsw"):
        vectors.save(vectors.build(data[:2000], kind), tmp_path / f"{kind}.faiss")
        index, added = vectors.grow(tmp_path / f"{kind}.faiss", data, kind)
        assert added == 100 and index.ntotal == 2100
        np.testing.assert_array_equal(vectors.stored(index), data)
        assert vectors.search(index, data, data[2050], 5)[1][0] == 2050  # an appended row is found
        assert vectors.grow(tmp_path / f"{kind}.faiss", data[:2000], kind)[1] == 0
    changed = data.copy()
    changed[7] = unit_vectors(1, d=32, seed=9)[0]
    assert vectors.grow(tmp_path / "hnsw.faiss", changed, "hnsw") is None  # a row before changed: a new graph
    assert vectors.grow(tmp_path / "hnsw.faiss", data[1:], "hnsw") is None  # a row deleted
    assert vectors.grow(tmp_path / "hnsw.faiss", data[:1999], "hnsw") is None
    assert vectors.grow(tmp_path / "hnsw.faiss", data, "flat") is None  # another kind
    assert vectors.grow(tmp_path / "missing.faiss", data, "hnsw") is None
    (tmp_path / "damaged.faiss").write_bytes((tmp_path / "hnsw.faiss").read_bytes()[:5000])
    assert vectors.grow(tmp_path / "damaged.faiss", data, "hnsw") is None
    monkeypatch.setattr(vectors, "BIG_GRAPH", 2050)  # a fresh graph of 2,100 would be built with more effort
    assert vectors.grow(tmp_path / "hnsw.faiss", data, "hnsw") is None


def test_eight_bit_codes_grow_only_by_values_within_their_trained_ranges(tmp_path):
    data = unit_vectors(3000, d=32)
    inside = data[:2000]
    vectors.save(vectors.build(inside, vectors.COMPRESSED), tmp_path / "sq8.faiss")
    held = np.asarray(vectors.stored(vectors.load(tmp_path / "sq8.faiss")))  # what an update remembers of the rows before
    low, high = inside.min(axis=0), inside.max(axis=0)
    within = np.clip(data[2000:], low, high)
    index, added = vectors.grow(tmp_path / "sq8.faiss", np.concatenate([held, within]), vectors.COMPRESSED)
    assert added == 1000 and np.abs(np.asarray(vectors.stored(index))[2000:] - within).max() < 0.01
    step = (high - low) / 255
    near = within.copy()
    near[0, 3] = high[3] + 2 * step[3]  # clipped by two steps: less than rounding errs over 32 dimensions
    assert vectors.grow(tmp_path / "sq8.faiss", np.concatenate([held, near]), vectors.COMPRESSED)[1] == 1000
    beyond = within.copy()
    beyond[0, 3] = high[3] + 0.1 * (high[3] - low[3])  # would be clipped by a tenth of the range
    assert vectors.grow(tmp_path / "sq8.faiss", np.concatenate([held, beyond]), vectors.COMPRESSED) is None
