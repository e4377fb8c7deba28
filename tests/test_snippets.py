"""Panel excerpts: cut at a word near 200 characters, ending in '...'."""

from hypothesis import given
from hypothesis import strategies as st

from index.consultation import normalize_space
from index.text import tokens_among, tokenize, word_tokens
from search.snippets import excerpt, matched_terms


def test_long_text_is_cut_at_a_word():
    text = "word " * 100
    cut = excerpt(text)
    assert cut.endswith("word...") and 180 <= len(cut) <= 203


def test_short_text_is_kept_and_excerpts_marked():
    assert excerpt("Short\n text.") == "Short text."
    assert excerpt("Cut by the site, mid-wor", truncated=True) == "Cut by the site, mid-wor..."
    assert excerpt("Ends a sentence.", truncated=True) == "Ends a sentence..."


@given(st.text(alphabet="ab. \n\t", max_size=400), st.integers(min_value=1, max_value=40), st.booleans())
def test_an_excerpt_depends_only_on_the_normalised_text(text, limit, truncated):
    """Runs of white space longer than the normalised prefix must not change the cut."""
    assert excerpt(text, limit, truncated) == excerpt(normalize_space(text), limit, truncated)


def test_matched_terms_are_query_words_by_stem():
    texts = ["Muscle twitches at night", "nothing here", "twitching"]
    assert matched_terms("My muscles are twitching, twitching", texts) == [["muscles", "twitching"], [], ["twitching"]]


ALPHABET = st.sampled_from("aeiost TWxyz\u00e9\u0301\ufb01\uff28_1-\n")


@given(st.lists(st.text(alphabet=ALPHABET, max_size=60), max_size=6), st.text(alphabet=ALPHABET, max_size=60))
def test_each_texts_wanted_tokens_are_those_of_its_tokens(texts, query):
    """tokens_among (hits' matched terms) stems each distinct word once, skips NFKC for ASCII
    texts and looks up only wanted words: what it finds must be what the BM25 tokenizer makes
    of each text, among the query's tokens."""
    wanted = set(tokenize(query)) | ({tokenize(texts[0])[0]} if texts and tokenize(texts[0]) else set())
    assert tokens_among(texts, wanted) == [set(tokenize(text)) & wanted for text in texts]


@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=12), max_size=8))
def test_a_words_token_is_its_first_as_tokenize_makes_it(words):
    """word_tokens' shortcut for ASCII words must agree with the tokenizer."""
    expected = {w: tokenize(w)[0] for w in words if tokenize(w)}
    assert word_tokens(words) == expected
