"""Panel excerpts: cut at a word near 200 characters, ending in '...'."""

from search.snippets import excerpt, matched_terms


def test_long_text_is_cut_at_a_word():
    text = "word " * 100
    cut = excerpt(text)
    assert cut.endswith("word...") and 180 <= len(cut) <= 203


def test_short_text_is_kept_and_excerpts_marked():
    assert excerpt("Short\n text.") == "Short text."
    assert excerpt("Cut by the site, mid-wor", truncated=True) == "Cut by the site, mid-wor..."
    assert excerpt("Ends a sentence.", truncated=True) == "Ends a sentence..."


def test_matched_terms_are_query_words_by_stem():
    assert matched_terms("My muscles are twitching", "Muscle twitches at night") == ["muscles", "twitching"]
