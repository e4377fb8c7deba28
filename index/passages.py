"""Split long replies into passages the model can read whole.

MiniLM reads at most 256 word pieces and truncates the rest, so one vector of a long reply sees
only its start. Replies are cut into passages of at most PASSAGE_WORDS words (about 200 word
pieces) at sentence ends where possible; each passage gets a vector and a reply's dense score is
the best of its passages. MAX_PASSAGES bounds the embedding cost of very long texts: words past
that many passages are not embedded (BM25 still indexes every word).
"""

from __future__ import annotations

import re

PASSAGE_WORDS = 150
MAX_PASSAGES = 8
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(text: str, max_words: int = PASSAGE_WORDS, max_passages: int = MAX_PASSAGES) -> list[str]:
    """The text's passages, in order; [] for an empty text."""
    out: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        while words:
            room = max_words - len(current)
            if len(words) > room and current:
                out.append(" ".join(current))
                current = []
                continue
            current.extend(words[:max_words])
            words = words[max_words:]
        if len(out) >= max_passages:
            break
    if current:
        out.append(" ".join(current))
    return out[:max_passages]
