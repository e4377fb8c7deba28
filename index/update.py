"""Updates: upsert and delete consultations, writing a new generation.

The new generation is built from the current one's consultations with the changes applied:
updated consultations keep their place, new ones are appended, deleted ones removed. Every text
whose vector the current generation holds (question texts, reply passages) reuses it, so only
new or changed texts are embedded, and the model is loaded only if there are any. The result is
the index a full build of the same consultations, in the same order, would give.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from index import generations
from index.build import BuildConfig, write_generation
from index.consultation import Consultation
from index.embed import Encoder
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
    config = config or BuildConfig()
    directory = Path(directory)
    generations.current(directory)  # not an index: refused before the lock creates anything
    with generations.writer_lock(directory):
        generation = generations.current(directory)
        manifest = Manifest.read(generation)
        store = Segment.open_store(generation)
        consultations = store.get(list(range(len(store))))
        missing = [i for i in deletes if i not in store.rows]
        store.close()
        if missing:
            raise SimqaError(f"cannot delete unknown consultation id(s): {', '.join(map(repr, missing[:5]))}")
        changed = {c.id: c for c in upserts}
        dropped = set(deletes)
        kept = [changed.pop(c.id, c) for c in consultations if c.id not in dropped]
        updated = kept + list(changed.values())
        if not updated:
            raise SimqaError("the update would leave the index empty; delete the directory instead")
        params = manifest.parameters
        config = replace(config, model=manifest.model, passage_words=params["passage_words"], max_passages=params["max_passages"],
                         vector_index=params.get("vector_index_choice", "auto"))
        encoder = Encoder(config.model, config.batch_size, config.progress, config.cache, dimension=manifest.dimension,
                          precision=config.precision)
        _remember_vectors(encoder, generation, consultations, config)
        return write_generation(updated, directory, config, encoder)


def _remember_vectors(encoder: Encoder, generation: Path, consultations: list[Consultation], config: BuildConfig) -> None:
    """Hand the encoder every vector the generation holds, keyed by the text it embeds."""
    texts = embedded_texts(consultations, config.passage_words, config.max_passages)
    question_vectors, reply_vectors = Segment.load_vectors(generation)
    encoder.remember(texts.questions, question_vectors)
    encoder.remember(texts.flat_passages, reply_vectors)

