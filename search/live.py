"""The Searcher of an index directory's current generation, reopened when a writer publishes.

The server asks `get()` on every request. At most every CHECK_SECONDS it reads CURRENT (a few
bytes); when it names a new generation, that request opens it (reusing the loaded model) and
the following requests get the new Searcher. Requests already running keep the old one, whose
files stay readable after a writer prunes them (open files and maps outlive their names). If the
new generation cannot be opened, the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from index import generations
from index.errors import IndexFormatError
from search.searcher import Searcher, ShardFactory

CHECK_SECONDS = 1.0
log = logging.getLogger("simqa")


class LiveSearcher:
    """Hands out the Searcher of the current generation."""

    def __init__(self, directory: str | Path, shard: ShardFactory = None) -> None:
        self.directory = Path(directory)
        self._shard = shard  # how each generation's shards are made (Searcher.open)
        self._searcher = Searcher.open(self.directory, shard=shard)
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def get(self) -> Searcher:
        now = time.monotonic()
        if now - self._checked >= CHECK_SECONDS and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                if generations.current(self.directory) != self._searcher.generation:
                    self._searcher = Searcher.open(self.directory, encoder=self._searcher.query_encoder(), shard=self._shard)
            except (IndexFormatError, OSError) as error:
                log.warning("simqa: keeping generation %s: %s", self._searcher.generation.name, error)
            finally:
                self._lock.release()
        return self._searcher
