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
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
_local = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def tokenize(text: str) -> list[str]:
    """Tokens of a text, as BM25 indexes and matches them."""
    return _stemmer().stemWords(_words(text))


def token_sets(texts: list[str]) -> list[set[str]]:
    """Each text's distinct tokens, as set(tokenize(text)) has them, each distinct word of all
    the texts stemmed once (a hit's shown text repeats its words, and hits share theirs)."""
    words = [set(WORD.findall(_folded(text))) - _STOPWORDS for text in texts]
    vocabulary = list(set().union(*words))
    stems = dict(zip(vocabulary, _stemmer().stemWords(vocabulary)))
    return [{stems[w] for w in ws} for ws in words]


def word_tokens(words: list[str]) -> dict[str, str]:
    """The first token of each word as tokenize(word) makes it (a stop word has none and is left
    out), the words stemmed in one call."""
    firsts = {}
    for word in words:
        pieces = _words(word)
        if pieces:
            firsts[word] = pieces[0]
    return dict(zip(firsts, _stemmer().stemWords(list(firsts.values()))))


def _words(text: str) -> list[str]:
    """The words of a text that are not stop words, NFKC-normalised and lower-cased, unstemmed."""
    return [w for w in WORD.findall(_folded(text)) if w not in _STOPWORDS]


def _folded(text: str) -> str:
    """NFKC form, lower-cased; ASCII text is its own NFKC form (isascii is a flag, not a scan)."""
    return (text if text.isascii() else unicodedata.normalize("NFKC", text)).lower()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer
