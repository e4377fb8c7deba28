"""Excerpts as the Similar Q&A panel shows them, and the query terms a hit matched."""

from __future__ import annotations

import re

from index.consultation import normalize_space
from index.text import tokenize

EXCERPT_CHARS = 200
ELLIPSIS = "..."
_WORD = re.compile(r"\w+")


def excerpt(text: str, limit: int = EXCERPT_CHARS, truncated: bool = False) -> str:
    """The text on one line, cut at a word boundary near `limit`, ending in '...' when cut.

    `truncated` says the text is itself a cut excerpt, so it ends in '...' however short.
    Only a prefix of a long text is normalised (replies run to many KB): when the normalised
    prefix is longer than `limit`, it is the start of the normalised whole.
    """
    head = normalize_space(text[: limit * 4])
    text = head if len(head) > limit or len(text) <= limit * 4 else normalize_space(text)
    if len(text) <= limit:
        return text.rstrip(" .,;:-") + ELLIPSIS if truncated and text else text
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > limit // 2 else limit].rstrip(" .,;:-") + ELLIPSIS


def matched_terms(query: str, texts: list[str]) -> list[list[str]]:
    """For each text, the words of the query (as typed, lower-cased) whose stems occur in it.

    The query's words are stemmed once for all texts (one call per query, not per hit).
    """
    words: dict[str, str] = {}
    for word in _WORD.findall(query.lower()):
        stems = tokenize(word)
        if stems and word not in words:
            words[word] = stems[0]
    found = []
    for text in texts:
        present = set(tokenize(text))
        found.append([word for word, stem in words.items() if stem in present])
    return found
