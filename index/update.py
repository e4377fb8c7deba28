"""Updates: upsert and delete consultations, writing a new generation.

The new generation is built from the current one's consultations with the changes applied:
updated consultations keep their place, new ones are appended, deleted ones removed. Every text
whose vector the current generation holds (question texts, reply passages) reuses it, so only
new or changed texts are embedded, and the model is loaded only if there are any; the stored
rows of unchanged consultations are copied from the current store (index/store.py, Kept). The
result is the index a full build of the same consultations, in the same order, would give, but
for the links of HNSW graphs: when every row before stays in place with its vectors (an update
that only appends, or changes what is not embedded), the graphs grow by the new rows
(index/vectors.py, grow) instead of being built anew, as a build inserts rows one by one too;
the manifest says how many were appended. A sharded index routes each change to its shard
(index/sharded.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from index import generations
from index.build import BuildConfig, write_generation
from index.consultation import Consultation
from index.embed import Encoder, resolve_precision
from index.errors import SimqaError
from index.manifest import Manifest
from index.segment import Segment, embedded_texts


def update_index(
    directory: str | Path,
    upserts: list[Consultation] = (),
    deletes: list[str] = (),
    config: BuildConfig | None = None,
) -> Manifest:
    """Apply upserts (by id) and deletes to the index in `directory`; returns the new manifest."""
    from index import sharded  # it builds on this module

    config = config or BuildConfig()
    directory = Path(directory)
    manifest = Manifest.read(generations.current(directory))  # not an index: refused before the lock creates anything
    if sharded.is_sharded(manifest):
        return sharded.update(directory, list(upserts), list(dict.fromkeys(deletes)), config)
    if "shard" in manifest.parameters:
        raise SimqaError(f"{directory} is a shard of the sharded index {directory.parent}; update that index instead")
    with generations.writer_lock(directory):
        change = Change.read(directory, upserts, deletes)
        if not change.after:
            raise SimqaError("the update would leave the index empty; delete the directory instead")
        return change.write(config)


def update_encoder(config: BuildConfig, dimension: int) -> Encoder:
    """The encoder of an update, which embeds only the texts the index has no vector for: where
    its vectors are fp32 they run on ONNX Runtime, as queries do (same vectors within 1e-5,
    tests/test_embed.py), and torch is never loaded for them (4-8 s; index/embed.py). bf16
    vectors come from torch alone."""
    backend = "onnx" if resolve_precision(config.precision) == "fp32" else "torch"
    return Encoder(config.model, config.batch_size, config.progress, config.cache, backend=backend, dimension=dimension,
                   precision=config.precision)


@dataclass
class Change:
    """An update of one index directory, read under its writer lock: the current generation's
    consultations and what they become."""

    directory: Path
    generation: Path
    manifest: Manifest
    before: list[Consultation]
    after: list[Consultation]
    changes: int  # consultations added, replaced by different ones, or deleted

    @classmethod
    def read(cls, directory: Path, upserts: list[Consultation] = (), deletes: list[str] = ()) -> "Change":
        """SimqaError if a delete names an id the index does not hold."""
        generation = generations.current(directory)
        store = Segment.open_store(generation)
        before = store.get(list(range(len(store))))
        missing = [i for i in deletes if i not in store.rows]
        store.close()
        if missing:
            raise SimqaError(f"cannot delete unknown consultation id(s): {', '.join(map(repr, missing[:5]))}")
        changed = {c.id: c for c in upserts}
        dropped = set(deletes)
        held = {c.id: c for c in before}
        changes = sum(held.get(c.id) != c for c in changed.values()) + len(dropped)
        kept = [changed.pop(c.id, c) for c in before if c.id not in dropped]
        return cls(directory, generation, Manifest.read(generation), before, kept + list(changed.values()), changes)

    def write(self, config: BuildConfig) -> Manifest:
        """Write `after` as the next generation with the current one's model and parameters,
        embedding only texts the current generation has no vector for."""
        params = self.manifest.parameters
        config = replace(config, model=self.manifest.model, passage_words=params["passage_words"],
                         max_passages=params["max_passages"], vector_index=params.get("vector_index_choice", "auto"))
        encoder = update_encoder(config, self.manifest.dimension)
        # The model directory may hold other weights than at the build (adapted again, say): new
        # vectors from them beside the old ones would answer wrongly, so refuse.
        self.manifest.check_model(encoder.name, encoder.model_path)
        config = replace(config, recorded_fingerprint=self.manifest.model_fingerprint)
        self._remember_vectors(encoder, config)
        return write_generation(self.after, self.directory, config, encoder, self._kept())

    def _kept(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, their rows in the current generation) of the consultations it holds unchanged:
        the new store copies their stored rows (index/store.py, Kept)."""
        held = {c.id: row for row, c in enumerate(self.before)}
        pairs = [(row, held[c.id]) for row, c in enumerate(self.after) if c.id in held and self.before[held[c.id]] == c]
        rows, source_rows = zip(*pairs) if pairs else ((), ())
        return np.array(rows, dtype=np.int64), np.array(source_rows, dtype=np.int64)

    def _remember_vectors(self, encoder: Encoder, config: BuildConfig) -> None:
        """Hand the current generation's vectors to the encoder under the texts they were made
        from. Those texts are not kept beyond it (half a GB at 1M consultations)."""
        texts = embedded_texts(self.before, config.passage_words, config.max_passages)
        question_vectors, reply_vectors = Segment.load_vectors(self.generation)
        encoder.remember(texts.questions, question_vectors)
        encoder.remember(texts.flat_passages, reply_vectors)
