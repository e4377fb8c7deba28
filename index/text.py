"""The tokenizer shared by index build and queries.

Text is first put in Unicode NFKC form, so that "café" typed as one character matches "cafe" +
U+0301 stored from another system, and compatibility forms (the "ﬁ" ligature, full-width
letters) match their plain letters; NFKC rather than NFC because a search should not tell them
apart. Then lower-cased word tokens, English stop words dropped (bm25s's 179-word list),
Snowball-stemmed (PyStemmer), so that "twitching" matches "twitches". Build and query call the
same function; the manifest records TOKENIZER so an index built with another tokenizer is
refused. (The embedding model normalises its own input; this is BM25's side.)
"""

from __future__ import annotations

import re
import threading
import unicodedata

import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

TOKENIZER = "nfkc/word-lower/stop-en-plus/snowball-english"
WORD = re.compile(r"\w+")  # a word: a run of letters, digits and underscores (snippets match query words by it)
# ASCII text's words without the regex (2.5x faster): every ASCII character \w does not match
# becomes a space, and str.split cuts there.
_ASCII_GAPS = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
_local = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def tokenize(text: str) -> list[str]:
    """Tokens of a text, as BM25 indexes and matches them."""
    return _stemmer().stemWords(_words(text))


def word_tokens(words: list[str]) -> dict[str, str]:
    """The first token of each word as tokenize(word) makes it (a stop word has none and is left
    out), the words stemmed in one call. An ASCII word of letters and digits is its own
    lower-cased word: no NFKC, no regex."""
    firsts = {}
    for word in words:
        if word.isascii() and word.isalnum():
            lowered = word.lower()
            pieces = [] if lowered in _STOPWORDS else [lowered]
        else:
            pieces = _words(word)
        if pieces:
            firsts[word] = pieces[0]
    return dict(zip(firsts, _stemmer().stemWords(list(firsts.values()))))


def _words(text: str) -> list[str]:
    """The words of a text that are not stop words, NFKC-normalised and lower-cased, unstemmed."""
    return [w for w in _word_list(_folded(text)) if w not in _STOPWORDS]


def _word_list(folded: str) -> list[str]:
    """WORD.findall(folded), through _ASCII_GAPS when the text is ASCII."""
    return folded.translate(_ASCII_GAPS).split() if folded.isascii() else WORD.findall(folded)


def _folded(text: str) -> str:
    """NFKC form, lower-cased; ASCII text is its own NFKC form (isascii is a flag, not a scan)."""
    return (text if text.isascii() else unicodedata.normalize("NFKC", text)).lower()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer
