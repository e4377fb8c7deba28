"""Excerpts as the Similar Q&A panel shows them, and the query terms a hit matched."""

from __future__ import annotations

from index.consultation import normalize_space
from index.text import WORD, tokens_among, word_tokens

EXCERPT_CHARS = 200
ELLIPSIS = "..."


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

    Each distinct word is stemmed once, the query's and all the texts' together in two calls.
    """
    words = word_tokens(list(dict.fromkeys(WORD.findall(query.lower()))))
    present = tokens_among(texts, set(words.values()))
    return [[word for word, stem in words.items() if stem in stems] for stems in present]
