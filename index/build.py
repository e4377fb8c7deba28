"""Build an index generation from consultations: embeddings, then the files (index/segment.py), then the manifest.

Each build writes a new generation and switches to it atomically (index/generations.py), so a
failed or interrupted build leaves the existing index as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from index import generations, segment, topics, vector_files, vectors
from index.bm25 import B, K1, METHOD, CollectionStats
from index.consultation import Consultation
from index.embed import BATCH_SIZE, Encoder, model_fingerprint, resolve_model, threads
from index.errors import IndexFormatError, SimqaError
from index.manifest import FORMAT_VERSION, Manifest
from index.passages import MAX_PASSAGES, PASSAGE_WORDS
from index.segment import embedded_texts
from index.text import TOKENIZER

if TYPE_CHECKING:
    from index.ray_runner import RayRunner


@dataclass
class BuildConfig:
    """Build options; the defaults are what `simqa index` uses."""

    model: str | None = None
    vector_index: str = "auto"
    passage_words: int = PASSAGE_WORDS
    max_passages: int = MAX_PASSAGES
    batch_size: int = BATCH_SIZE
    progress: bool = True
    cache: Path | None = None  # embedding cache file (index.embed_cache); None: no cache
    precision: str = "auto"  # torch's for embedding: auto, fp32 or bf16 (index.embed)
    shards: int | None = None  # None: as many as the index already has (1 for a new index); index/sharded.py
    ray: str | None = None  # a Ray cluster's address, or "local": embed and write shards on Ray (index/ray_runner.py)
    ray_actors: int = 1  # embedding actors on Ray, each loading the model once
    ray_cpus_per_actor: float = 1.0
    vectors: Path | None = None  # a directory of precomputed vectors in Parquet (index/vector_files.py)
    shard: ShardOf | None = None  # set by index/sharded.py for each shard it writes
    topics: list[topics.Topic] | None = None  # a topics file's (index/topics.py); None: kept as the index has them, or gathered
    recorded_fingerprint: str | None = None  # set by updates: the model fingerprint their index records, kept as it is

    def ray_runner(self) -> RayRunner | None:
        """The Ray runner these options ask for (`ray` set), joining the cluster; None without."""
        if self.ray is None:
            return None
        from index.ray_runner import RayRunner

        return RayRunner(self.ray, self.ray_actors, self.ray_cpus_per_actor)


@dataclass(frozen=True)
class ShardOf:
    """What makes an index a shard: its number, how many shards there are, and the collection's
    BM25 statistics it is built with (per field; index/bm25.py)."""

    number: int
    shards: int
    stats: dict[str, CollectionStats]
    stats_sha256: str
    vectors: dict[str, int]  # the collection's question and reply vectors ("auto" chooses the vector index kind by them)


def build_index(
    consultations: list[Consultation],
    directory: str | Path,
    config: BuildConfig | None = None,
    encoder: Encoder | None = None,
) -> Manifest:
    """Write a complete index of the consultations as the next generation of `directory`.

    Pass an already loaded `encoder` to reuse it; otherwise config.model is loaded (lazily when
    the directory already holds an index of the same model: cached texts need no model).
    """
    config = config or BuildConfig()
    target = Path(directory)
    _check_replaceable(target)
    if not consultations:
        raise SimqaError("no consultations to index")
    from index import sharded  # it builds on this module

    current = _current_manifest(target)
    shards = config.shards or (sharded.count(current) if current is not None else 1)
    created, existed = not generations.is_index(target), target.exists()
    try:
        with generations.writer_lock(target):
            if shards > 1 or config.ray or (current is not None and sharded.is_sharded(current)):
                return sharded.build(consultations, target, shards, config, encoder)
            return write_generation(consultations, target, config, encoder)
    except BaseException:
        if created:
            _remove_leftovers(target, existed)
        raise


def write_generation(consultations: list[Consultation], target: Path, config: BuildConfig, encoder: Encoder | None,
                     kept: tuple[np.ndarray, np.ndarray] | None = None) -> Manifest:
    """The build itself, for callers holding the writer lock: workspace, files, manifest, publish.
    `kept`: (rows, their rows in the current generation) of consultations it holds unchanged (an
    update's), whose stored rows are copied (index/segment.py)."""
    stages = _Stages(config.progress)
    stages.start("load_model", "preparing the encoder (the model loads only if texts need embedding)")
    if encoder is None:
        encoder = Encoder(config.model, config.batch_size, config.progress, config.cache,
                          dimension=_known_dimension(target, config), precision=config.precision)
    if config.vectors is not None:
        vector_files.remember(encoder, consultations, config.vectors, config.passage_words, config.max_passages, config.progress)
    listed = None if config.shard is not None else chosen_topics(lambda: consultations, config, target, encoder)
    digest = _content_digest(consultations, config, config.recorded_fingerprint or encoder.fingerprint, listed)
    current = _current_manifest(target)
    if current is not None and current.parameters.get("content_sha256") == digest:
        stages.start("unchanged", "the index already holds exactly these consultations: nothing to write")
        return current
    base = generations.current(target) if current is not None else None  # its vector indexes may grow (index/vectors.py, grow)
    with generations.writing(target) as work:
        manifest = _write(consultations, work, config, encoder, stages, base, kept)
        if listed is not None:
            stages.start("topics", f"storing {len(listed[0])} Related FAQ topics")
            manifest.parameters["topics"] = write_topics(work, *listed, encoder)
        manifest.parameters["content_sha256"] = digest
        stages.stop()
        manifest.parameters["build_seconds"] = stages.seconds  # up to here; fsync and publish follow
        manifest.write(work)
    return manifest


def _current_manifest(target: Path) -> Manifest | None:
    """The manifest of the index already in `target`, if there is a readable one."""
    if not generations.is_index(target):
        return None
    try:
        return Manifest.read(generations.current(target))
    except IndexFormatError:
        return None


def _known_dimension(target: Path, config: BuildConfig) -> int | None:
    """The dimension of the index already in `target` if it was built with config.model."""
    manifest = _current_manifest(target)
    fingerprint = model_fingerprint(resolve_model(config.model)[1])
    return manifest.dimension if manifest is not None and manifest.model_fingerprint == fingerprint else None


def chosen_topics(consultations: Callable[[], list[Consultation]], config: BuildConfig, target: Path,
                  encoder: Encoder) -> tuple[list[topics.Topic], str]:
    """The topic list a new generation of `target` holds, and where it comes from: the build's
    topics file ("file"), else the file topics the index holds already (an update or a rebuild
    keeps them), else the Related FAQ entries of the collection's `consultations()` ("gathered").
    The current generation's name vectors are remembered, so only new names are embedded."""
    current = _current_manifest(target)
    stored = topics.StoredTopics.open(generations.current(target)) if current is not None else None
    if stored is not None and stored.topics:
        encoder.remember(topics.name_texts(stored.topics), stored.vectors)
    if config.topics is not None:
        return config.topics, "file"
    if stored is not None and current.parameters.get("topics", {}).get("source") == "file":
        return stored.topics, "file"
    return topics.gather_topics(consultations()), "gathered"


def topics_entry(listed: list[topics.Topic], source: str) -> dict:
    """What a manifest records of a topic list."""
    return {"source": source, "count": len(listed), "names": len(topics.name_texts(listed)), "sha256": topics.digest(listed)}


def write_topics(work: Path, listed: list[topics.Topic], source: str, encoder: Encoder) -> dict:
    """Store a topic list and its name vectors in a workspace; what the manifest records of it."""
    topics.write(work, listed, encoder.embed(topics.name_texts(listed)))
    return topics_entry(listed, source)


def _content_digest(consultations: list[Consultation], config: BuildConfig, model_fingerprint_: str,
                    listed: tuple[list[topics.Topic], str] | None) -> str:
    """SHA-256 of everything a generation is made from: the consultations in order, the model,
    the parameters and the topics. Equal digests mean an identical index, so a rebuild can be skipped."""
    digest = hashlib.sha256()
    shard = None if config.shard is None else [config.shard.number, config.shard.shards, config.shard.stats_sha256, config.shard.vectors]
    held = None if listed is None else [listed[1], topics.digest(listed[0])]
    settings = [FORMAT_VERSION, TOKENIZER, model_fingerprint_, config.passage_words, config.max_passages, config.vector_index,
                config.precision, vectors.settings(), [K1, B, METHOD], shard, held]
    digest.update(json.dumps(settings).encode())
    for c in consultations:
        digest.update(json.dumps(c.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _write(consultations: list[Consultation], work: Path, config: BuildConfig, encoder: Encoder, stages: "_Stages",
           base: Path | None, kept: tuple[np.ndarray, np.ndarray] | None) -> Manifest:
    texts = embedded_texts(consultations, config.passage_words, config.max_passages)
    stages.start("embed_questions", "embedding questions")
    question_vectors = encoder.embed(texts.questions)
    stages.start("embed_replies", "embedding reply passages")
    reply_vectors = encoder.embed(texts.flat_passages)
    shard = config.shard
    written = segment.write(work, consultations, texts, question_vectors, reply_vectors, config.vector_index, threads(),
                            config.progress, stages.start, None if shard is None else shard.stats,
                            None if shard is None else shard.vectors, base, kept)
    manifest = Manifest(
        model=encoder.name,
        model_fingerprint=config.recorded_fingerprint or encoder.fingerprint,
        dimension=encoder.dimension,
        counts={
            "consultations": len(consultations),
            "excerpts": sum(c.excerpt for c in consultations),
            "reply_passages": len(reply_vectors),
            "vocabulary_question": written["vocabulary_question"],
            "vocabulary_reply": written["vocabulary_reply"],
        },
        parameters={
            "tokenizer": TOKENIZER,
            "bm25": {"k1": K1, "b": B, "method": METHOD},
            "passage_words": config.passage_words,
            "max_passages": config.max_passages,
            "vector_index": written["vector_index"],
            "vector_index_choice": config.vector_index,  # what updates build again
            "embedding_precision": encoder.precision,
        },
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if shard is not None:
        manifest.parameters["shard"] = {"number": shard.number, "of": shard.shards, "bm25_stats_sha256": shard.stats_sha256}
    return manifest


def _check_replaceable(target: Path) -> None:
    """Refuse to write into a directory that is neither a simqa index nor empty (but for what a
    killed first build left there)."""
    if target.exists() and not generations.is_index(target):
        if not target.is_dir() or not all(_leftover(p) for p in target.iterdir()):
            raise SimqaError(f"{target} exists and is not a simqa index; refusing to replace it")


def _leftover(path: Path) -> bool:
    """Left by a killed build: a writer's lock, workspace or pointer, or a shard directory."""
    from index import sharded

    return generations.leftover(path) or sharded.is_shard_directory(path)


def _remove_leftovers(target: Path, existed: bool) -> None:
    """Undo a first build that failed: remove what it wrote, and the directory if it made it."""
    if not existed:
        shutil.rmtree(target, ignore_errors=True)
    elif target.is_dir():
        for path in target.iterdir():
            if _leftover(path):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


class _Stages:
    """Announces each build stage (with progress on) and records its seconds for the manifest."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._started = self._first = time.perf_counter()

    def start(self, name: str, message: str) -> None:
        self.stop()
        if self.verbose:
            print(f"simqa: {message}", file=sys.stderr, flush=True)
        self._name, self._started = name, time.perf_counter()

    def stop(self) -> None:
        now = time.perf_counter()
        if self._name:
            self.seconds[self._name] = round(now - self._started, 3)
        self.seconds["total"] = round(now - self._first, 3)
        self._name = None
