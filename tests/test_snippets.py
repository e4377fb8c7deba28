"""Panel excerpts: cut at a word near 200 characters, ending in '...'."""

from hypothesis import given
from hypothesis import strategies as st

from index.consultation import normalize_space
from index.text import token_sets, tokenize
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


@given(st.lists(st.text(alphabet=st.sampled_from("aeiost TWxyz\u00e9\u0301\ufb01\uff28_1-\n"), max_size=60), max_size=6))
def test_each_texts_token_set_is_that_of_its_tokens(texts):
    """token_sets (hits' matched terms) stems each distinct word once and skips NFKC for ASCII
    texts: what it finds must be what the BM25 tokenizer makes of each text."""
    assert token_sets(texts) == [set(tokenize(text)) for text in texts]
