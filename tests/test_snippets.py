"""Panel excerpts (cut at a word near 200 characters, ending in '...'), the snippets stored for
hits, and the query words a hit matched."""

from hypothesis import given
from hypothesis import strategies as st

from index.consultation import Consultation, normalize_space
from index.snippets import Snippet, excerpt, matched_terms
from index.text import WORD, tokenize, word_tokens


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


def shown(title: str, question: str = "", reply: str = "", excerpted: bool = False) -> Snippet:
    return Snippet.of(Consultation(id="c1", title=title, question=question, reply=reply, excerpt=excerpted))


def test_matched_terms_are_query_words_by_stem():
    snippets = [shown("Muscle twitches at night"), shown("nothing here"), shown("twitching")]
    assert matched_terms("My muscles are twitching, twitching", snippets) == [["muscles", "twitching"], [], ["twitching"]]
    assert matched_terms("the of", snippets) == [[], [], []]  # stop words only: nothing to match


def test_a_snippet_is_what_the_panel_shows_and_survives_json():
    long_reply = "Rest helps. " * 60
    snippet = shown("Twitching", "Why do my eyelids twitch?", long_reply)
    assert (snippet.question_excerpt, snippet.reply_excerpt) == ("Why do my eyelids twitch?", excerpt(long_reply))
    assert Snippet.from_jsons([snippet.to_json(), snippet.to_json()]) == [snippet, snippet]
    # a Similar Q&A entry's texts are the site's own cuts: marked as cut however short
    assert shown("Cut", "A question cut by the site", "A reply", excerpted=True).reply_excerpt == "A reply..."


ALPHABET = st.sampled_from("aeiost TWxyz\u00e9\u0301\ufb01\uff28_1-\n")


@given(st.text(alphabet=ALPHABET, max_size=60), st.text(alphabet=ALPHABET, max_size=300),
       st.text(alphabet=ALPHABET, max_size=300), st.text(alphabet=ALPHABET, max_size=60))
def test_a_hits_matched_words_are_those_whose_token_its_shown_text_has(title, question, reply, query):
    """The snippet's stored tokens must be what the BM25 tokenizer makes of the shown text (title
    and both excerpts, not the whole texts), so a query word matches as tokenizing would have."""
    snippet = shown(title, question, reply)
    text_tokens = set(tokenize(f"{title}\n{snippet.question_excerpt}\n{snippet.reply_excerpt}"))
    assert set(snippet.stems.split()) == text_tokens
    words = dict.fromkeys(WORD.findall(query.lower()))
    assert matched_terms(query, [snippet]) == [[w for w in words if tokenize(w) and tokenize(w)[0] in text_tokens]]


@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=12), max_size=8))
def test_a_words_token_is_its_first_as_tokenize_makes_it(words):
    """word_tokens' shortcut for ASCII words must agree with the tokenizer."""
    expected = {w: tokenize(w)[0] for w in words if tokenize(w)}
    assert word_tokens(words) == expected
