"""A persistent cache of embeddings keyed by model fingerprint and text hash.

Re-indexing an unchanged corpus, or a corpus that grew by a few consultations, embeds only the
texts the cache has not seen. One SQLite file holds any number of models' vectors as raw float32
bytes (no pickle); it can be shared by several indexes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key BLOB, vector BLOB, PRIMARY KEY (model, key))"


def default_cache_path() -> Path:
    """$SIMQA_CACHE, else $XDG_CACHE_HOME/simqa/embeddings.sqlite, else ~/.cache/simqa/..."""
    if os.environ.get("SIMQA_CACHE"):
        return Path(os.environ["SIMQA_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "simqa" / "embeddings.sqlite"


class EmbeddingCache:
    """Vectors of one model, by the SHA-1 of the text."""

    def __init__(self, path: Path, model_fingerprint: str, dimension: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.db.execute(SCHEMA)
        self.model = model_fingerprint
        self.dimension = dimension

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among these keys."""
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})", [self.model, *chunk])
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if len(vector) == self.dimension:
                    found[key] = vector
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                ((self.model, key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in zip(keys, vectors)),
            )

    def close(self) -> None:
        self.db.close()
