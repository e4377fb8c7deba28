"""Our BM25 (bm25s sparse matrices) against the reference, rank-bm25's BM25Okapi, on the same tokens."""

import re

import numpy as np
import pytest
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS
from bm25s.scoring import _build_idf_array, _build_scores_and_indices_for_matrix, _calculate_doc_freqs, _select_idf_scorer
from hypothesis import given, settings
from hypothesis import strategies as st
import scipy.sparse as sp
from rank_bm25 import BM25Okapi

from index.bm25 import B, K1, CollectionStats, FieldBM25, Scores, _TokenIds, score_matrix
from index.readers import read_sources
from index.sparse import columns_end_to_end
from index.text import tokenize
from tests.conftest import SEEDS

QUERIES = [
    "involuntary muscle twitching in my neck",
    "head tremor when nervous",
    "wrist tendon twitch after lifting heavy objects",
    "electrolyte imbalance potassium magnesium",
    "cannot sleep without sleeping pills",
    "tingling scalp and gag reflex",
]


def sample_corpus() -> list[list[str]]:
    """Every sentence of the seed consultations as a document: ~130 short, varied texts."""
    text = "\n".join(c.question_text() + "\n" + c.reply_text() for c in read_sources([SEEDS]).consultations)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n", text) if len(s.split()) > 3]
    return [tokenize(s) for s in sentences]


def test_scores_equal_bm25okapi_where_idf_is_positive():
    corpus = sample_corpus()
    assert len(corpus) > 100
    ours, reference = FieldBM25.build(corpus), BM25Okapi(corpus)
    for query in QUERIES:
        tokens = tokenize(query)
        assert all(reference.idf[t] > 0 for t in tokens if t in reference.idf)  # no term in half the corpus
        expected = reference.get_scores(tokens)
        got = ours.scores(tokens)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        top_expected = np.argsort(-expected, kind="stable")[:10]
        top_got = np.argsort(-got, kind="stable")[:10]
        assert expected[top_expected[0]] > 0
        assert top_got.tolist() == top_expected.tolist()


def test_term_in_most_documents_scores_zero_not_a_floor():
    """The documented difference: BM25Okapi floors negative idf at eps * mean idf; robertson gives 0."""
    corpus = [["pain", "knee"], ["pain", "back"], ["pain", "neck"], ["rash"]]
    ours, reference = FieldBM25.build(corpus), BM25Okapi(corpus)
    assert reference.get_scores(["pain"])[0] > 0
    assert ours.scores(["pain"]).tolist() == [0.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(ours.scores(["knee"]), reference.get_scores(["knee"]), rtol=1e-5)


def test_unknown_and_empty_queries_score_zero(tmp_path):
    index = FieldBM25.build([["a", "b"], [], ["b", "c"]])
    assert index.scores([]).tolist() == [0.0, 0.0, 0.0]
    assert index.scores(["zzz"]).tolist() == [0.0, 0.0, 0.0]
    index.save(tmp_path / "bm25")
    reloaded = FieldBM25.load(tmp_path / "bm25", 3)
    np.testing.assert_allclose(reloaded.scores(["a", "c"]), index.scores(["a", "c"]))
    assert FieldBM25.build([[], []]).scores(["a"]).tolist() == [0.0, 0.0]


def test_a_shard_built_with_collection_stats_scores_as_the_whole_collection(tmp_path):
    """What sharding needs: a document's score does not depend on which shard holds it."""
    corpus = sample_corpus()
    whole = FieldBM25.build(corpus)
    parts = [corpus[0::3], corpus[1::3], corpus[2::3]]
    stats = CollectionStats.sum(CollectionStats.of(part) for part in parts)
    assert stats.documents == len(corpus)
    shards = [FieldBM25.build(part, stats=stats) for part in parts]
    shards[2].save(tmp_path / "shard")
    shards[2] = FieldBM25.load(tmp_path / "shard", len(parts[2]))  # the statistics are in the saved matrix
    local = FieldBM25.build(parts[0])
    for query in QUERIES:
        tokens = tokenize(query)
        expected = whole.scores(tokens)
        for i, shard in enumerate(shards):
            np.testing.assert_allclose(shard.scores(tokens), expected[i::3], rtol=1e-5, atol=1e-6)
    # without the collection's statistics a shard scores differently
    assert not np.allclose(local.scores(tokenize(QUERIES[0])), whole.scores(tokenize(QUERIES[0]))[0::3], rtol=1e-3)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["pain", "knee", "neck", "rash", "tremor", "sleep", "b", "twitch"]), max_size=12),
                min_size=1, max_size=30).filter(any))
def test_the_score_matrix_is_bm25s_loops_bits(corpus):
    """score_matrix computes every document at once what bm25s computes a document at a time:
    the same float32 bits, the same sparse layout; and the statistics from the term pairs are
    CollectionStats.of's."""
    documents = _TokenIds.of(corpus)
    stats = documents.stats()
    assert stats == CollectionStats.of(corpus)
    idf = _build_idf_array({i: stats.document_frequency[t] for t, i in documents.vocab.items()}, stats.documents,
                           _select_idf_scorer("robertson"), "float32")
    ids = [[documents.vocab[t] for t in tokens] for tokens in corpus]
    frequency = _calculate_doc_freqs(ids, list(documents.vocab.values()), show_progress=False)
    scores, rows, columns = _build_scores_and_indices_for_matrix(ids, idf, stats.average_length, frequency, K1, B, None, None,
                                                                 method="robertson", show_progress=False)
    expected = sp.csc_matrix((scores, (rows, columns)), shape=(len(corpus), len(idf)), dtype=np.float32)
    got = score_matrix(documents, idf, stats.average_length, K1, B)
    for name in ("data", "indices", "indptr"):
        assert getattr(got, name).dtype == getattr(expected, name).dtype
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_text_is_nfkc_normalised_before_tokenising():
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    assert tokenize(composed) == tokenize(decomposed)
    assert tokenize("\ufb01brosis") == tokenize("fibrosis")  # the "fi" ligature
    assert tokenize("\uff28\uff29\uff36 test") == tokenize("HIV test")  # full-width letters


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_text_is_cut_into_words_as_the_word_pattern_cuts_it(text):
    """ASCII text skips the regex (index/text.py, _ASCII_GAPS): the same words as \\w+ finds."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS_EN_PLUS]
    assert tokenize(text) == Stemmer.Stemmer("english").stemWords(words)


@pytest.mark.parametrize("matching", [0.2, 0.0004])
def test_top_rows_of_a_large_collection_are_those_of_every_matched_row(matching):
    """From SAMPLED_TOP_MIN rows the top BM25 rows come through a sample's bound: the same rows,
    ties with the last included, as ranking every row that matched (few or many of them), from an
    array of scores or from a field's Scores."""
    from search.shard import SAMPLED_TOP_MIN, _top_rows, _top_units

    rng = np.random.default_rng(3)
    scores = np.where(rng.random(SAMPLED_TOP_MIN + 5_000) < matching,
                      np.round(rng.gamma(2.0, 3.0, SAMPLED_TOP_MIN + 5_000), 1), 0.0).astype(np.float32)
    matched = np.flatnonzero(scores > 0)
    for limit in (10, 101):
        rows, values = _top_rows(Scores(scores, scale=1.0), limit)
        expected_rows, expected_values = _top_units(matched, scores[matched], limit)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(values, expected_values)
        assert len(rows) >= min(limit, len(matched))
    # a field's Scores, rounded to float32 only where read: the rows and bits of rounding every row
    sums = scores.astype(np.float64) / 2.5 + np.where(scores > 0, rng.random(len(scores)) * 1e-7, 0.0)
    dense = Scores(sums).dense()
    dense_matched = np.flatnonzero(dense > 0)
    for limit in (10, 101):
        rows, values = _top_rows(Scores(sums), limit)
        expected_rows, expected_values = _top_units(dense_matched, dense[dense_matched], limit)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(values, expected_values)


def test_rows_from_a_bound_read_through_the_rare_terms_are_those_of_every_row(monkeypatch):
    """MaxScore's shortcut (Scores.rows_from via Terms.rows_reaching): rows matching only terms
    whose largest weights cannot add up to the bound are never read, and the rows found are
    exactly those of a scan over every row, for bounds from the best score down, repeated terms
    and filtered rows (scores zeroed) included."""
    import index.bm25 as bm25

    monkeypatch.setattr(bm25, "PICKED_ROWS", 0)  # the shortcut whenever it applies, however many rows
    monkeypatch.setattr(bm25, "MATCHED_SHARE", 0.0)  # sums kept for every row, which the shortcut reads
    rng = np.random.default_rng(5)
    vocabulary = [f"w{i}" for i in range(2_000)]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)  # Zipf: a few words everywhere, most rare
    documents = [list(rng.choice(vocabulary, size=rng.integers(3, 15), p=weights / weights.sum())) for _ in range(6_000)]
    field = FieldBM25.build(documents)
    shortcuts = 0
    for query in (["w0", "w1", "w1500"], ["w3", "w800", "w800", "w1999"], ["w0", "w2", "w5", "w40"], ["w7"]):
        scores = field.scored(query)
        scores.keep(rng.random(len(scores)) >= 0.1)  # a filter
        every = Scores(scores.sums)  # no terms: a scan over every row
        for bound in np.quantile(every.dense()[every.dense() > 0], [1.0, 0.999, 0.99, 0.9, 0.5, 0.0]):
            np.testing.assert_array_equal(scores.rows_from(float(bound)), every.rows_from(float(bound)))
            shortcuts += scores.terms.rows_reaching(float(bound) / scores.scale * (1 - 1e-6)) is not None
    assert shortcuts >= 6  # the rare terms' rows were enough for most bounds


def test_sums_of_the_matched_rows_only_read_as_sums_of_every_row(monkeypatch):
    """A query whose terms match few rows keeps their sums only (Scores.matched): every way the
    query path reads them (a row's score, every row's, the top rows with their ties, a filter, a
    bound) gives the bits of the sums of every row, repeated terms included."""
    import index.bm25 as bm25
    from search.shard import _top_rows

    rng = np.random.default_rng(11)
    vocabulary = [f"w{i}" for i in range(500)]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    documents = [list(rng.choice(vocabulary, size=rng.integers(1, 12), p=weights / weights.sum())) for _ in range(3_000)]
    field = FieldBM25.build(documents)
    for query in (["w0", "w7", "w7", "w300"], ["w40", "w41"], ["w499"], ["w3", "w3", "w3"], ["absent"]):
        monkeypatch.setattr(bm25, "MATCHED_SHARE", 10.0)
        matched = field.scored(query)
        monkeypatch.setattr(bm25, "MATCHED_SHARE", 0.0)
        every = field.scored(query)
        assert query == ["absent"] or matched.rows is not None and every.rows is None
        np.testing.assert_array_equal(matched.dense(), every.dense())
        picked = rng.integers(0, len(documents), 50)
        np.testing.assert_array_equal(matched[picked], every[picked])
        for limit in (1, 10, 101):
            for a, b in zip(_top_rows(matched, limit), _top_rows(every, limit)):
                np.testing.assert_array_equal(a, b)
        allowed = rng.random(len(documents)) < 0.5
        matched.keep(allowed)
        every.keep(allowed)
        np.testing.assert_array_equal(matched.dense(), every.dense())
        positive = every.dense()[every.dense() > 0]
        for bound in np.quantile(positive, [1.0, 0.5, 0.0]) if len(positive) else []:
            np.testing.assert_array_equal(matched.rows_from(float(bound)), every.rows_from(float(bound)))


def test_columns_end_to_end_match_scipy_column_sums():
    rng = np.random.default_rng(7)
    matrix = sp.random(50, 30, density=0.2, format="csc", random_state=rng)
    columns, scales = [3, 17, 4, 29], [1.0, 0.5, 2.0, 0.25]
    rows, weights, ends = columns_end_to_end(matrix.indptr, matrix.indices, matrix.data, columns, scales)
    assert list(ends) == list(np.cumsum(np.diff(matrix.indptr)[columns]))
    expected = sum(matrix[:, [c]].toarray().ravel() * s for c, s in zip(columns, scales))
    assert np.allclose(np.bincount(rows, weights=weights, minlength=50), expected)
