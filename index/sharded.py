"""A sharded index: N complete simqa indexes under one top-level generation.

    DIR/CURRENT, DIR/gen-N/    the top level's generations (index/generations.py); each holds a
                               manifest.json listing the shards, the generation of each that it
                               answers with and that generation's manifest checksum, and
                               bm25_stats.json, the collection's BM25 statistics, and its
                               Related FAQ topics (index/topics.py)
    DIR/shard-000/, ...        one complete index per shard, its own generations and manifest
                               (`simqa verify DIR/shard-000` checks it alone)

Consultations go to shards by a stable hash of their id (`shard_of`). Every shard's BM25 is built
with the statistics of the whole collection (index/bm25.py), so a consultation scores the same in
whichever shard holds it and whatever the number of shards; the query side pays nothing for it.

Writers (build, update, refresh) hold the top level's lock, publish a new generation of each shard
they change, then a top-level generation naming them. Readers follow the top level only, so a
writer killed between the two leaves them on the old state; the next writer first rolls every
shard back to the generation the top level names (`_recover`).

Updates keep the statistics the index was built with, so all shards go on scoring alike and only
the shards an update touches are rewritten. The statistics drift from the true ones by at most
what changed since they were computed; the top-level manifest counts those consultations
(`stats_changed`), and once they pass REFRESH_AT of the collection an update recomputes the
statistics and rewrites every shard (vectors reused, nothing embedded). `refresh` does so at once
(`simqa refresh-stats`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from index import generations, segment, topics, vector_files
from index.bm25 import B, K1, METHOD, CollectionStats
from index.build import BuildConfig, ShardOf, chosen_topics, topics_entry, write_generation, write_topics
from index.consultation import Consultation
from index.embed import Encoder, model_fingerprint, resolve_model
from index.errors import IndexFormatError, SimqaError
from index.manifest import MANIFEST, Manifest, sha256_of
from index.segment import embedded_texts
from index.text import TOKENIZER
from index.update import Change, update_encoder

STATS = "bm25_stats.json"
SHARD_NAME = re.compile(r"shard-\d{3}")
REFRESH_AT = 0.05  # fraction of the collection changed since the statistics were computed
ROUTING = "blake2b-64 of the UTF-8 id, modulo the number of shards"


def shard_of(consultation_id: str, shards: int) -> int:
    """The shard of a consultation: stable across processes, machines and Python versions."""
    digest = hashlib.blake2b(consultation_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def is_sharded(manifest: Manifest) -> bool:
    return "shards" in manifest.parameters


def count(manifest: Manifest) -> int:
    """The number of shards of an index (1 for an index that is not sharded)."""
    return len(manifest.parameters["shards"]) if is_sharded(manifest) else 1


def is_shard_directory(path: Path) -> bool:
    return path.is_dir() and SHARD_NAME.fullmatch(path.name) is not None


def shard_generations(directory: Path, manifest: Manifest, full: bool = True) -> list[tuple[Path, Manifest]]:
    """Each shard's generation and manifest, as the top level names them, after checking every
    file (`Manifest.verify`: every SHA-256 when `full`, else those of files modified since) and the model. IndexFormatError names a missing,
    damaged or substituted shard."""
    out = []
    for entry in manifest.parameters["shards"]:
        generation = directory / entry["directory"] / entry["generation"]
        if not (generation / MANIFEST).is_file():
            raise IndexFormatError(f"{generation}: missing; shard {entry['directory']} of the index {directory} is gone, rebuild the index")
        if sha256_of(generation / MANIFEST) != entry["manifest_sha256"]:
            raise IndexFormatError(f"{generation / MANIFEST}: not the shard manifest the index {directory} records; rebuild the index")
        shard_manifest = Manifest.read(generation)
        shard_manifest.verify(generation, full)
        if shard_manifest.model_fingerprint != manifest.model_fingerprint:
            raise IndexFormatError(f"{generation}: built with another model than the index {directory}; rebuild the index")
        out.append((generation, shard_manifest))
    return out


def read_stats(generation: Path) -> dict[str, CollectionStats]:
    """The collection's BM25 statistics per field, as a top-level generation holds them."""
    data = json.loads((generation / STATS).read_text(encoding="utf-8"))
    return {field: CollectionStats.from_dict(stats) for field, stats in data.items()}


class InProcess:
    """Runs a sharded build's work in this process: the default, and what Ray's runner mirrors."""

    def embed(self, encoder: Encoder, texts: list[str]) -> np.ndarray:
        return encoder.embed(texts)

    def map(self, function: Callable, items: Iterable) -> list:
        return [function(item) for item in items]


@dataclass
class ShardJob:
    """Everything one shard's writer needs, so it can run in another process (a Ray task)."""

    directory: Path
    consultations: list[Consultation]
    config: BuildConfig
    dimension: int
    texts: list[str]
    vectors: np.ndarray


def write_shard(job: ShardJob) -> dict:
    """Write one shard as the next generation of its directory (nothing if unchanged) under its
    writer lock, from vectors computed already; returns the top level's entry for it."""
    encoder = Encoder(job.config.model, dimension=job.dimension, precision=job.config.precision)
    encoder.remember(job.texts, job.vectors)
    with generations.writer_lock(job.directory):
        manifest = write_generation(job.consultations, job.directory, job.config, encoder)
    return _entry(job.directory, generations.current(job.directory), manifest)


def build(consultations: list[Consultation], target: Path, shards: int, config: BuildConfig, encoder: Encoder | None) -> Manifest:
    """Build a sharded index of the consultations in `target` (caller holds its writer lock)."""
    current = _current(target)
    if current is not None and count(current) != shards:
        raise SimqaError(f"{target} has {count(current)} shard(s); to build it with {shards}, delete it first or choose another directory")
    if current is not None:
        _recover(target, current)
    else:
        for stray in (p for p in target.iterdir() if is_shard_directory(p)):  # from a killed first build
            shutil.rmtree(stray)
    groups = [[] for _ in range(shards)]
    for consultation in consultations:
        groups[shard_of(consultation.id, shards)].append(consultation)
    empty = [number for number, group in enumerate(groups) if not group]
    if empty:
        raise SimqaError(f"{len(consultations)} consultations leave shard {empty[0]} of {shards} empty; use fewer shards")
    runner = config.ray_runner() or InProcess()
    if encoder is None:
        dimension = current.dimension if current is not None and current.model_fingerprint == _fingerprint(config) else None
        encoder = Encoder(config.model, config.batch_size, config.progress, config.cache, dimension=dimension, precision=config.precision)
    if config.vectors is not None:
        vector_files.remember(encoder, consultations, config.vectors, config.passage_words, config.max_passages, config.progress)
    listed = chosen_topics(lambda: consultations, config, target, encoder)
    texts = embedded_texts(consultations, config.passage_words, config.max_passages)
    every = texts.questions + texts.flat_passages + topics.name_texts(listed[0])
    vectors = runner.embed(encoder, every) if every else np.zeros((0, encoder.dimension), dtype=np.float32)
    encoder.remember(every, vectors)
    known = dict(zip(every, vectors))
    config = replace(config, model=encoder.name, vectors=None)  # the shards' writers get the vectors from here
    stats = _sum_stats(runner.map(segment.field_stats, groups))
    sha = _stats_sha256(stats)
    counts = {"question": len(texts.questions), "reply": len(texts.flat_passages)}
    jobs = [_job(target / _name(number), group, replace(config, shard=ShardOf(number, shards, stats, sha, counts)), encoder.dimension,
                 known) for number, group in enumerate(groups)]
    entries = runner.map(write_shard, jobs)
    model = (encoder.name, encoder.fingerprint, encoder.dimension, encoder.precision)
    return _publish(target, current, entries, stats, model, config, 0, listed, encoder)


def update(directory: Path, upserts: list[Consultation], deletes: list[str], config: BuildConfig, force_refresh: bool = False) -> Manifest:
    """Route upserts and deletes to their shards and publish the result (see the module docstring)."""
    with generations.writer_lock(directory), ExitStack() as locks:
        current = Manifest.read(generations.current(directory))
        _recover(directory, current)
        shards = count(current)
        stats = read_stats(generations.current(directory))
        changes = {number: ([], []) for number in range(shards)}
        for consultation in upserts:
            changes[shard_of(consultation.id, shards)][0].append(consultation)
        for consultation_id in deletes:
            changes[shard_of(consultation_id, shards)][1].append(consultation_id)
        read: dict[int, Change] = {}

        def open_shard(number: int) -> None:
            shard_directory = directory / _name(number)
            locks.enter_context(generations.writer_lock(shard_directory))
            read[number] = Change.read(shard_directory, *changes[number])

        for number, (up, down) in changes.items():
            if up or down or force_refresh:
                open_shard(number)
        changed = current.parameters["stats_changed"] + sum(change.changes for change in read.values())
        refresh = force_refresh or changed > REFRESH_AT * stats["question"].documents
        for number in range(shards):
            if refresh and number not in read:
                open_shard(number)
        for number, change in read.items():
            if not change.after:
                raise SimqaError(f"the update would leave shard {number} of {shards} empty; rebuild the index with fewer shards")
        if refresh:
            stats = _sum_stats(segment.field_stats(change.after) for change in read.values())
            changed = 0
        sha = _stats_sha256(stats)
        counts = {"question": current.counts["consultations"], "reply": current.counts["reply_passages"]}
        entries = {e["number"]: e for e in current.parameters["shards"]}
        for number, change in read.items():
            manifest = change.write(replace(config, shard=ShardOf(number, shards, stats, sha, counts)))
            entries[number] = _entry(change.directory, generations.current(change.directory), manifest)
        params = current.parameters
        config = replace(config, model=current.model, passage_words=params["passage_words"], max_passages=params["max_passages"],
                         vector_index=params["vector_index_choice"])
        model = (current.model, current.model_fingerprint, current.dimension, params["embedding_precision"])
        encoder = update_encoder(config, current.dimension)
        listed = chosen_topics(lambda: _consultations(directory, current, read), config, directory, encoder)
        return _publish(directory, current, [entries[n] for n in range(shards)], stats, model, config, changed, listed, encoder)


def refresh(directory: Path, config: BuildConfig | None = None) -> Manifest:
    """Recompute the collection's BM25 statistics and rewrite every shard with them."""
    return update(directory, [], [], config or BuildConfig(), force_refresh=True)


def _job(directory: Path, group: list[Consultation], config: BuildConfig, dimension: int, known: dict[str, np.ndarray]) -> ShardJob:
    """A shard's job, carrying the vectors of its own texts only."""
    texts = embedded_texts(group, config.passage_words, config.max_passages)
    own = list(dict.fromkeys(texts.questions + texts.flat_passages))
    vectors = np.stack([known[t] for t in own]) if own else np.zeros((0, dimension), dtype=np.float32)
    return ShardJob(directory, group, config, dimension, own, vectors)


def _consultations(directory: Path, current: Manifest, read: dict[int, Change]) -> list[Consultation]:
    """Every consultation of a sharded index being updated: the changed shards' new ones, the
    others' as stored (gathered topics are the whole collection's)."""
    out = []
    for entry in current.parameters["shards"]:
        if entry["number"] in read:
            out += read[entry["number"]].after
        else:
            store = segment.Segment.open_store(directory / entry["directory"] / entry["generation"])
            out += store.get(list(range(len(store))))
            store.close()
    return out


def _publish(directory: Path, current: Manifest | None, entries: list[dict], stats: dict[str, CollectionStats],
             model: tuple[str, str, int, str], config: BuildConfig, changed: int,
             listed: tuple[list[topics.Topic], str], encoder: Encoder) -> Manifest:
    """Publish a top-level generation naming these shard generations and holding these topics
    (nothing if it would be the current one). `model`: name, fingerprint, dimension, precision."""
    name, fingerprint, dimension, precision = model
    text = _stats_json(stats)  # a vocabulary's worth of JSON: made once, for its checksum and its file
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if current is not None and current.parameters["shards"] == entries and current.parameters["bm25_stats_sha256"] == sha \
            and current.parameters["stats_changed"] == changed and current.parameters.get("topics") == topics_entry(*listed):
        return current
    counts = {key: sum(e["counts"][key] for e in entries) for key in ("consultations", "excerpts", "reply_passages")}
    counts.update(vocabulary_question=len(stats["question"].document_frequency), vocabulary_reply=len(stats["reply"].document_frequency))
    manifest = Manifest(
        model=name,
        model_fingerprint=fingerprint,
        dimension=dimension,
        counts=counts,
        parameters={
            "tokenizer": TOKENIZER,
            "bm25": {"k1": K1, "b": B, "method": METHOD},
            "passage_words": config.passage_words,
            "max_passages": config.max_passages,
            "vector_index_choice": config.vector_index,
            "embedding_precision": precision,
            "routing": ROUTING,
            "shards": entries,
            "bm25_stats_sha256": sha,
            "stats_changed": changed,  # consultations added, replaced or deleted since the statistics were computed
        },
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    with generations.writing(directory) as work:
        (work / STATS).write_text(text, encoding="utf-8")
        manifest.parameters["topics"] = write_topics(work, *listed, encoder)
        manifest.write(work)
    return manifest


def _entry(directory: Path, generation: Path, manifest: Manifest) -> dict:
    """What the top level records of one shard."""
    return {"number": manifest.parameters["shard"]["number"], "directory": directory.name, "generation": generation.name,
            "manifest_sha256": sha256_of(generation / MANIFEST),
            "counts": {key: manifest.counts[key] for key in ("consultations", "excerpts", "reply_passages")}}


def _recover(directory: Path, current: Manifest) -> None:
    """Roll every shard back to the generation the top level names: a writer killed after
    publishing a shard and before the top level left that shard ahead."""
    for entry in current.parameters["shards"]:
        generations.roll_back(directory / entry["directory"], entry["generation"])


def _current(target: Path) -> Manifest | None:
    return Manifest.read(generations.current(target)) if generations.is_index(target) else None


def _fingerprint(config: BuildConfig) -> str:
    return model_fingerprint(resolve_model(config.model)[1])


def _name(number: int) -> str:
    return f"shard-{number:03d}"


def _sum_stats(parts: Iterable[dict[str, CollectionStats]]) -> dict[str, CollectionStats]:
    parts = list(parts)
    return {field: CollectionStats.sum(part[field] for part in parts) for field in ("question", "reply")}


def _stats_json(stats: dict[str, CollectionStats]) -> str:
    return json.dumps({field: s.to_dict() for field, s in stats.items()}, ensure_ascii=False, sort_keys=True)


def _stats_sha256(stats: dict[str, CollectionStats]) -> str:
    return hashlib.sha256(_stats_json(stats).encode("utf-8")).hexdigest()  # as _publish records it
