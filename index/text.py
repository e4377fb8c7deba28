"""The tokenizer shared by index build and queries.

Lower-cased word tokens, English stop words dropped (bm25s's 179-word list), Snowball-stemmed (PyStemmer),
so that "twitching" matches "twitches". Build and query call the same function; the manifest
records TOKENIZER so an index built with another tokenizer is refused.
"""

from __future__ import annotations

import re
import threading

import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

TOKENIZER = "word-lower/stop-en-plus/snowball-english"
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
_local = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def tokenize(text: str) -> list[str]:
    """Tokens of a text, as BM25 indexes and matches them."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer.stemWords([w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS])
