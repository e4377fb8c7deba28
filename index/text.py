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
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
_local = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def tokenize(text: str) -> list[str]:
    """Tokens of a text, as BM25 indexes and matches them."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return stemmer.stemWords([w for w in words if w not in _STOPWORDS])
