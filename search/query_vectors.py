"""The query vectors of recent texts, kept so that a text is encoded once.

The encoder is most of a query's cost (benchmarks/README.md), and the same text comes back: a
page asks Similar Q&A and Related FAQ for one question at once (two requests, search/static),
and a widget on a consultation page asks the same question on every view of the page. Requests
for a text being encoded wait for that encoding instead of starting another. Entries are keyed
by a 16-byte BLAKE2b digest of the text, so a bounded number of entries is a bounded memory
whatever the texts: about 3.4 KB an entry for MiniLM's 384 dimensions (1.5 KB of vector, the
rest the Future that holds it and the map), 3.5 MB for QUERY_VECTORS.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

# Texts kept, least recently asked out first; SIMQA_QUERY_VECTORS=0 keeps none (benchmarks of
# the encoder's cost per query run `simqa serve` so).
QUERY_VECTORS = int(os.environ.get("SIMQA_QUERY_VECTORS", "1024"))


class QueryVectors:
    """A least-recently-used map of text -> query vector, shared by a Searcher's threads."""

    def __init__(self, size: int = QUERY_VECTORS) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, Future] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, encode: Callable[[str], np.ndarray]) -> np.ndarray:
        """The vector of `text`: kept, being encoded by another thread (waited for), or
        `encode(text)` now. Vectors are read-only: every caller gets the same array. A failed
        encoding is not kept; its error reaches the callers that waited for it."""
        if self.size <= 0:
            return encode(text)
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            pending = self._entries.get(key)
            mine = pending is None
            if mine:
                pending = self._entries[key] = Future()
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        if not mine:
            return pending.result()
        try:
            vector = np.asarray(encode(text))
        except BaseException as error:
            with self._lock:
                if self._entries.get(key) is pending:
                    del self._entries[key]
            pending.set_exception(error)
            raise
        vector.flags.writeable = False
        pending.set_result(vector)
        return vector

    def __len__(self) -> int:
        return len(self._entries)
