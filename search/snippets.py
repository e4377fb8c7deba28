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
    """
    text = normalize_space(text)
    if len(text) <= limit:
        return text.rstrip(" .,;:-") + ELLIPSIS if truncated and text else text
    cut = text.rfind(" ", 0, limit + 1)
    return text[: cut if cut > limit // 2 else limit].rstrip(" .,;:-") + ELLIPSIS


def matched_terms(query: str, text: str) -> list[str]:
    """Words of the query (as typed, lower-cased) whose stems occur in the text."""
    present = set(tokenize(text))
    seen: list[str] = []
    for word in _WORD.findall(query.lower()):
        stems = tokenize(word)
        if stems and stems[0] in present and word not in seen:
            seen.append(word)
    return seen
