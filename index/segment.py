"""One generation's files: the only module that writes or reads them.

A generation (index/generations.py) is a directory of immutable files, as a Lucene segment is:
the document store, BM25 per field, the two FAISS indexes (which hold the question and
reply-passage vectors, index/vectors.py `stored`), the passages' offsets and the manifest.
`write` lays them out; `Segment.open` maps them back. Build, update, the Searcher and the
benchmarks go through here and know no file name. Generations written before the vectors lived
in the indexes alone also hold question_vectors.npy and reply_vectors.npy: they still open (the
manifest checks them) and the copies go unread.

    consultations.sqlite   the document store (index/store.py), with its memory-mapped columns
    ids.npy, ids_sorted.npy, ids_sorted_rows.npy, question_hashes.npy
    filters/               the columns filters compare, dictionary-encoded (index/filter_columns.py)
    bm25_question/         bm25s directory: title + question
    bm25_reply/            bm25s directory: reply + more info
    reply_offsets.npy      passages of row i are offsets[i]:offsets[i + 1]
    question.faiss         one unit vector per consultation, and the graph over them
    reply.faiss            one unit vector per reply passage, idem
    manifest.json          written last, listing every other file (index/manifest.py)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from index import vectors
from index.bm25 import CollectionStats, FieldBM25
from index.consultation import Consultation
from index.errors import IndexFormatError
from index.passages import passages
from index.store import DocumentStore, Kept, write_store
from index.text import tokenize

STORE = "consultations.sqlite"
BM25_QUESTION = "bm25_question"
BM25_REPLY = "bm25_reply"
REPLY_OFFSETS = "reply_offsets.npy"
QUESTION_FAISS = "question.faiss"
REPLY_FAISS = "reply.faiss"


@dataclass(frozen=True)
class EmbeddedTexts:
    """What gets embedded for a list of consultations: one question text each, and each reply's
    passages. Build and update both take it from `embedded_texts`, so an update finds every
    vector of the current generation under the text it was made from."""

    questions: list[str]
    passages: list[list[str]]

    @property
    def flat_passages(self) -> list[str]:
        return [p for ps in self.passages for p in ps]

    @property
    def offsets(self) -> np.ndarray:
        """Row i's passages are flat_passages[offsets[i]:offsets[i + 1]]."""
        out = np.zeros(len(self.passages) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in self.passages], out=out[1:])
        return out


def embedded_texts(consultations: list[Consultation], passage_words: int, max_passages: int) -> EmbeddedTexts:
    """The texts a generation embeds for these consultations, in row order."""
    return EmbeddedTexts([c.question_text() for c in consultations],
                         [passages(c.reply_text(), passage_words, max_passages) for c in consultations])


def field_tokens(consultations: list[Consultation]) -> dict[str, list[list[str]]]:
    """The BM25 token lists of each field ("question": title + question, "reply": reply + more info)."""
    return {"question": [tokenize(c.question_text()) for c in consultations],
            "reply": [tokenize(c.reply_text()) for c in consultations]}


def field_stats(consultations: list[Consultation]) -> dict[str, CollectionStats]:
    """Each BM25 field's statistics over these consultations (a shard's part of the collection's)."""
    return {field: CollectionStats.of(tokens) for field, tokens in field_tokens(consultations).items()}


def write(
    directory: Path,
    consultations: list[Consultation],
    texts: EmbeddedTexts,
    question_vectors: np.ndarray,
    reply_vectors: np.ndarray,
    vector_index: str,
    threads: int,
    progress: bool = False,
    stage: Callable[[str, str], None] = lambda name, message: None,
    stats: dict[str, CollectionStats] | None = None,
    collection_vectors: dict[str, int] | None = None,
    base: Path | None = None,
    kept: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Write every file of a generation but the manifest into `directory`; returns what the
    manifest records of it (BM25 vocabulary sizes, the vector indexes' kinds and parameters).
    `stage(name, message)` is told as each part starts (the build times its stages). `stats`:
    the collection's BM25 statistics per field, and `collection_vectors` its number of question and
    reply vectors, for a shard of a sharded index: "auto" picks the kind the whole collection
    would get, so a sharded index searches as the single one (flat per shard costs as much as
    flat over all, in total). `base`: the generation this one follows, whose vector indexes grow
    by the rows appended since when they hold exactly the rows before (index/vectors.py, grow);
    the manifest then says how many were appended. `kept`: (rows, their rows in `base`) of
    consultations `base` holds unchanged, whose stored rows are copied from its store."""
    stage("store", f"storing {len(consultations)} consultations")
    write_store(directory / STORE, consultations, None if kept is None or base is None else Kept(base / STORE, *kept))
    stage("bm25", "indexing BM25 (title + question, reply + more info)")
    tokens = field_tokens(consultations)
    stats = stats or {}
    bm25_question = FieldBM25.build(tokens["question"], progress, stats.get("question"))
    bm25_reply = FieldBM25.build(tokens["reply"], progress, stats.get("reply"))
    bm25_question.save(directory / BM25_QUESTION)
    bm25_reply.save(directory / BM25_REPLY)
    stage("vector_index", "building vector indexes")
    kinds = {}
    for name, vecs, faiss_file in (("question", question_vectors, QUESTION_FAISS), ("reply", reply_vectors, REPLY_FAISS)):
        kind = vectors.choose_kind((collection_vectors or {}).get(name, len(vecs)), vector_index)
        grown = vectors.grow(base / faiss_file, vecs, kind, threads) if base is not None else None
        index = vectors.build(vecs, kind, threads) if grown is None else grown[0]
        vectors.save(index, directory / faiss_file)
        kinds[name] = vectors.parameters(kind, index) | ({} if grown is None else {"appended": grown[1]})
    np.save(directory / REPLY_OFFSETS, texts.offsets, allow_pickle=False)
    return {"vocabulary_question": bm25_question.vocabulary_size, "vocabulary_reply": bm25_reply.vocabulary_size,
            "vector_index": kinds}


@dataclass
class Segment:
    """A generation's files, opened for searching: the FAISS indexes (their vectors and links, read
    in place from their storage), the store's columns and the BM25 matrices memory-mapped."""

    store: DocumentStore
    bm25_question: FieldBM25
    bm25_reply: FieldBM25
    question_vectors: np.ndarray
    reply_vectors: np.ndarray
    reply_offsets: np.ndarray
    question_index: faiss.Index
    reply_index: faiss.Index

    @classmethod
    def open(cls, generation: Path) -> "Segment":
        """Map a generation's files; IndexFormatError if their sizes disagree."""
        store = DocumentStore(generation / STORE)
        n = len(store)
        question_index, reply_index = (vectors.load(generation / name, mapped=True) for name in (QUESTION_FAISS, REPLY_FAISS))
        segment = cls(
            store=store,
            bm25_question=FieldBM25.load(generation / BM25_QUESTION, n),
            bm25_reply=FieldBM25.load(generation / BM25_REPLY, n),
            question_vectors=vectors.stored(question_index),
            reply_vectors=vectors.stored(reply_index),
            reply_offsets=np.load(generation / REPLY_OFFSETS),
            question_index=question_index,
            reply_index=reply_index,
        )
        if not (len(segment.question_vectors) == n == len(segment.reply_offsets) - 1 == segment.question_index.ntotal):
            raise IndexFormatError(f"{generation}: store, vectors and indexes disagree on the number of consultations")
        return segment

    @staticmethod
    def open_store(generation: Path) -> DocumentStore:
        """The document store alone (updates and tools that need no vectors)."""
        return DocumentStore(generation / STORE)

    @staticmethod
    def load_vectors(generation: Path) -> tuple[np.ndarray | vectors.QuantizedVectors, np.ndarray | vectors.QuantizedVectors]:
        """(question vectors, reply-passage vectors), every row, as vectors.stored gives them
        (updates reuse them): read by rows from the files mapped, those of a compressed index
        decoded as they are read (and quantised again). The graphs are not read for them; an
        update that grows them reads them once (vectors.grow)."""
        return tuple(vectors.stored(vectors.load(generation / index, mapped=True)) for index in (QUESTION_FAISS, REPLY_FAISS))
