"""Precomputed embeddings: the texts simqa embeds, out to another pipeline, and their vectors back in.

Users with their own embedding pipeline (a GPU job, a batch cluster) run

    simqa texts SOURCES --out texts.parquet        # id, question, passages: what simqa embeds
    (their job embeds them, e.g. Ray Data's read_parquet -> map_batches -> write_parquet)
    simqa index SOURCES --index DIR --vectors VECTORS_DIR

VECTORS_DIR holds any number of Parquet files with the columns `id`, `question_vector` (a list
of floats) and `passage_vectors` (a list of float lists, one per passage of `passages`, in
order). Vectors are checked before anything is written: the dimension against the model's, each
consultation's number of passage vectors against its passages, and a few of them (SPOT_CHECK)
against the model itself, re-embedded here, so vectors of another model or of other texts are
refused. Consultations the files do not cover are embedded here as usual. Parquet needs pyarrow,
an optional extra: `pip install 'simqa[parquet]'` (the ray extra brings it too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from index.consultation import Consultation
from index.embed import Encoder
from index.errors import SimqaError
from index.segment import embedded_texts

SPOT_CHECK = 8  # vectors re-embedded here to check they are of this model and these texts
SPOT_COSINE = 0.99  # a GPU's fp16 or bf16 vectors stay above this; another model's fall far below
COLUMNS = ("id", "question_vector", "passage_vectors")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise SimqaError("Parquet files need pyarrow, which is not installed: pip install 'simqa[parquet]' "
                         "(in a checkout: pip install -e '.[parquet]')") from None
    return pyarrow


def write_texts(consultations: list[Consultation], path: Path, passage_words: int, max_passages: int) -> int:
    """Write the texts a build embeds for these consultations as Parquet; returns the passage count."""
    pa = _pyarrow()
    texts = embedded_texts(consultations, passage_words, max_passages)
    table = pa.table({"id": [c.id for c in consultations], "question": texts.questions, "passages": texts.passages})
    partial = path.with_name(path.name + ".partial")
    pa.parquet.write_table(table, partial)
    partial.replace(path)
    return sum(len(p) for p in texts.passages)


def remember(encoder: Encoder, consultations: list[Consultation], directory: Path, passage_words: int, max_passages: int,
             progress: bool = False) -> None:
    """Hand the encoder the vectors in `directory`'s Parquet files, checked (module docstring)."""
    vectors = _read(directory, encoder.dimension)
    texts = embedded_texts(consultations, passage_words, max_passages)
    known_texts, known_vectors, missing = [], [], 0
    for consultation, question, passages in zip(consultations, texts.questions, texts.passages):
        found = vectors.get(consultation.id)
        if found is None:
            missing += 1
            continue
        (file, question_vector, passage_vectors) = found
        if len(passage_vectors) != len(passages):
            raise SimqaError(f"{file}: consultation {consultation.id!r} has {len(passage_vectors)} passage vectors, but its reply "
                             f"makes {len(passages)} passages; embed the passages 'simqa texts' writes")
        known_texts += [question, *passages]
        known_vectors += [question_vector, *passage_vectors]
    if not known_texts:
        raise SimqaError(f"{directory}: no vectors for any of the {len(consultations)} consultations (no id matches)")
    _spot_check(encoder, known_texts, np.asarray(known_vectors, dtype=np.float32), directory)
    encoder.remember(known_texts, _unit(np.asarray(known_vectors, dtype=np.float32)))
    if missing and progress:
        print(f"simqa: {missing} consultation(s) have no vectors in {directory}; embedding them here", file=sys.stderr)


def _read(directory: Path, dimension: int) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """id -> (file, question vector, passage vectors) over every Parquet file of the directory."""
    pa = _pyarrow()
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        raise SimqaError(f"--vectors {directory}: no .parquet files there")
    out: dict[str, tuple[Path, np.ndarray, np.ndarray]] = {}
    for file in files:
        try:
            table = pa.parquet.read_table(file, columns=list(COLUMNS))
        except (pa.ArrowInvalid, KeyError, OSError) as error:
            raise SimqaError(f"{file}: not a vector file with columns {', '.join(COLUMNS)} ({error})") from None
        ids = table.column("id").to_pylist()
        questions = _matrix(table.column("question_vector").combine_chunks(), dimension, file, "question_vector")
        nested = table.column("passage_vectors").combine_chunks()
        offsets = nested.offsets.to_numpy()
        passages = _matrix(nested.flatten(), dimension, file, "passage_vectors")
        for row, consultation_id in enumerate(ids):
            out[consultation_id] = (file, questions[row], passages[offsets[row]:offsets[row + 1]])
    return out


def _matrix(column, dimension: int, file: Path, name: str) -> np.ndarray:
    """A list<float> column as an (n, dimension) array; SimqaError names a vector of another size."""
    lengths = np.diff(column.offsets.to_numpy())
    wrong = np.flatnonzero(lengths != dimension)
    if len(wrong):
        raise SimqaError(f"{file}: row {int(wrong[0])} of {name} has {int(lengths[wrong[0]])} dimensions; the model gives {dimension}")
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dimension)


def _spot_check(encoder: Encoder, texts: list[str], vectors: np.ndarray, directory: Path) -> None:
    """Re-embed a few texts (spread over the files' rows) and compare."""
    picks = np.unique(np.linspace(0, len(texts) - 1, min(SPOT_CHECK, len(texts))).astype(int))
    fresh = encoder.encode([texts[i] for i in picks])
    cosines = np.sum(fresh * _unit(vectors[picks]), axis=1)
    worst = int(np.argmin(cosines))
    if cosines[worst] < SPOT_COSINE:
        raise SimqaError(f"{directory}: the vector of {texts[picks[worst]][:60]!r} is at cosine {cosines[worst]:.3f} to what "
                         f"{encoder.name} gives; were they made by another model or from other texts?")


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)
