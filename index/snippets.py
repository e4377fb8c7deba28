"""What a hit shows of a consultation (the Similar Q&A panel's fields and excerpts), made when
the consultation is stored, and the query words a hit matched.

A query's hits are read as these small records, not as whole consultations: replies run to many
KB, and decoding ten of them, cutting their excerpts and tokenizing the shown text took 0.61 ms
of a 2.29 ms query on MedQuAD after its encoding, 0.27 ms this way (AMD EPYC, AVX2 only;
benchmarks/README.md). The shown text's
tokens are kept with it (`stems`, as the BM25 tokenizer makes them, which the manifest records),
so a hit's matched terms are the query words whose token is among them: no text is tokenized at
query time but the query's own words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from index.consultation import Consultation, normalize_space
from index.text import WORD, tokenize, word_tokens

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


@dataclass
class Snippet:
    """A consultation as a hit shows it: id, panel fields, the question and reply excerpts, and
    the tokens of the shown text (title and both excerpts), space-separated."""

    id: str
    title: str
    url: str
    doctor: str
    department: str
    question_excerpt: str
    reply_excerpt: str
    stems: str

    @classmethod
    def of(cls, c: Consultation) -> "Snippet":
        question = excerpt(c.question, truncated=c.excerpt)
        reply = excerpt(c.reply or c.more_info, truncated=c.excerpt)
        stems = " ".join(sorted(set(tokenize(f"{c.title}\n{question}\n{reply}"))))
        return cls(c.id, c.title, c.url, c.doctor, c.department, question, reply, stems)

    def to_json(self) -> str:
        return json.dumps(vars(self), ensure_ascii=False)  # its fields are strings: asdict's deep copy would double a build's cost

    @classmethod
    def from_jsons(cls, texts: list[str]) -> list["Snippet"]:
        """Inverse of to_json for several, decoded as one JSON array (half the cost of one decode
        each for a query's ten); trusts its input (it comes from our own store)."""
        return [cls(**fields) for fields in json.loads(f"[{','.join(texts)}]")]


def matched_terms(query: str, snippets: list[Snippet]) -> list[list[str]]:
    """For each snippet, the words of the query (as typed, lower-cased) whose token its shown
    text has: the query's distinct words are stemmed once, in one call."""
    words = word_tokens(list(dict.fromkeys(WORD.findall(query.lower()))))
    if not words:
        return [[] for _ in snippets]
    out = []
    for snippet in snippets:
        stems = set(snippet.stems.split())
        out.append([word for word, stem in words.items() if stem in stems])
    return out
