"""Sharded builds on Ray: source files read on Ray Data, texts embedded on Ray Data by a pool of
actors, shards written as Ray tasks.

It mirrors index/sharded.py's InProcess runner, so the same code builds the same shards with or
without Ray. Reading is index/readers' own `read_file`, a Ray Data task per file, with the
consultations and errors brought back as JSON rows (a ParseError names the file and line as it
does here). The driver keeps the embedding cache: only texts it has no vector for go to Ray, and
their vectors are cached as batches come back, so an interrupted build resumes. Texts go to the
actors longest first, so a block holds texts of about one length and pads as little as the
in-process encoder's length-sorted batches do. Each actor loads
the model once and embeds with as many threads as it has CPUs. On a cluster, every node needs
simqa installed (and the model, when it is not the bundled one, at the same path), and the
index directory must be on a filesystem all nodes share: shard writers run where Ray puts them.
Ray is an optional extra: `pip install 'simqa[ray]'`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from index.consultation import Consultation
from index.embed import Encoder
from index.errors import ParseError, SimqaError

BATCH = 256  # texts per Ray Data block and batch: small enough that actors share the work evenly


def ray_module(serve: bool = False):
    """Ray with Ray Data (or with Ray Serve), or a SimqaError that says how to install it."""
    try:
        import ray
        if serve:
            import ray.serve  # noqa: F401  (the extra installs its dependencies; a bare `ray` lacks them)
        else:
            import ray.data  # noqa: F401
    except ImportError:
        raise SimqaError("--ray needs Ray, which is not installed: pip install 'simqa[ray]' "
                         "(in a checkout: pip install -e '.[ray]')") from None
    return ray


class EmbedActor:
    """A Ray Data actor: the model loaded once, then batches of texts embedded."""

    def __init__(self, model: str, batch_size: int, precision: str, threads: int) -> None:
        os.environ["SIMQA_THREADS"] = str(threads)
        self.encoder = Encoder(model, batch_size, precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"position": batch["position"], "vector": self.encoder.embed([str(t) for t in batch["text"]])}


class RayRunner:
    """Joins a Ray cluster (`address`, or "local" to start Ray on this machine) for one build."""

    def __init__(self, address: str, actors: int = 1, cpus_per_actor: float = 1.0, progress: bool = False) -> None:
        if actors < 1 or cpus_per_actor <= 0:
            raise SimqaError(f"Ray needs at least one actor and some CPU per actor (got {actors} actors, {cpus_per_actor} CPUs each)")
        ray = ray_module()
        if not ray.is_initialized():
            ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = progress
        logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
        self.actors, self.cpus = actors, cpus_per_actor

    def read(self, files: list[Path], read_file: Callable[[Path], tuple[list[Consultation], list[ParseError]]]
             ) -> list[tuple[list[Consultation], list[ParseError]]]:
        """read_file of each file on Ray Data (a block, so a task, per file), results in file order."""
        if not files:
            return []
        ray = ray_module()

        def rows(row: dict) -> list[dict]:
            consultations, errors = read_file(Path(row["path"]))
            return ([{"file": row["file"], "record": json.dumps(c.to_dict()), "error": ""} for c in consultations]
                    + [{"file": row["file"], "record": "", "error": json.dumps([e.path, e.line, e.field, e.message])} for e in errors])

        dataset = ray.data.from_items([{"file": number, "path": str(path)} for number, path in enumerate(files)],
                                      override_num_blocks=len(files))
        out: list[tuple[list[Consultation], list[ParseError]]] = [([], []) for _ in files]
        for batch in dataset.flat_map(rows).iter_batches(batch_size=None, batch_format="pyarrow"):  # a file's rows stay in order
            for file, record, error in zip(*(batch.column(name).to_pylist() for name in ("file", "record", "error"))):
                if record:
                    out[file][0].append(Consultation.from_dict(json.loads(record)))
                else:
                    out[file][1].append(ParseError(*json.loads(error)))
        return out

    def embed(self, encoder: Encoder, texts: list[str]) -> np.ndarray:
        """encoder.embed, with the texts it must encode embedded on Ray Data."""
        return encoder.embed(texts, encode=lambda missing, bar: self.stream(encoder, missing, bar))

    def stream(self, encoder: Encoder, texts: list[str], bar) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions among the texts, their vectors), batch by batch as the actors finish them;
        `bar.update(n)` is told of each."""
        ray = ray_module()
        import pyarrow as pa

        # One block per batch, and batches small enough that every actor of the pool gets work;
        # longest texts first (the order the in-process encoder batches in).
        size = max(1, min(BATCH, -(-len(texts) // self.actors)))
        order = np.argsort([-len(t) for t in texts], kind="stable")
        dataset = ray.data.from_arrow([pa.table({"position": order[start:start + size], "text": [texts[i] for i in order[start:start + size]]})
                                       for start in range(0, len(texts), size)])
        embedded = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs={"model": encoder.name, "batch_size": encoder.batch_size, "precision": encoder.precision,
                                   "threads": max(1, int(self.cpus))},
            batch_size=size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=self.actors), num_cpus=self.cpus)
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            bar.update(len(batch["position"]))
            yield batch["position"], np.asarray(batch["vector"], dtype=np.float32)

    def map(self, function: Callable, items: Iterable) -> list:
        """function over the items as Ray tasks (one CPU each), results in order."""
        ray = ray_module()
        remote = ray.remote(num_cpus=1, runtime_env={"env_vars": {"SIMQA_THREADS": "1"}})(function)
        return ray.get([remote.remote(item) for item in items])
