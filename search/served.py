"""`simqa serve --ray`: the HTTP API on Ray Serve, an ingress deployment and one deployment per shard.

    HTTP ──> ingress (R_i replicas): FastAPI app of search/server.py, query embedded once,
             │                       fusion once over every shard's candidates, hits last
             ├── handle ──> shard-00 (R replicas): Shard over shard-00's generation files
             └── handle ──> shard-01 (R replicas): ...

The ingress holds a Searcher (search/searcher.py) whose shards are `RemoteShard`s: each call is
one request to a replica of that shard's deployment, which answers with a local Shard
(search/shard.py). A query costs two rounds of calls, each asking its shards at once (`ask`):
every shard's `answer` (proposals and their raw scores together), then, from the shards that
hold the top, its duplicate keys with its snippets (index/snippets.py; the hits are among them). The ranking
is the single-index ranking, by the same cut and fusion.

Every request names the generation the ingress is on; a replica opens a generation it has not
seen (and keeps the last two), so after `simqa add`/`delete` each shard answers for the
generation the ingress moved to (search/live.py), with no request failing on the way.

When a shard has no replica that answers within SHARD_TIMEOUT seconds, the request fails with
ShardUnavailable, which the API answers with HTTP 503 naming the shard: never a panel of the
other shards' consultations presented as complete. Ray Serve restarts dead replicas; answers are
complete again once one is up, with no restart of simqa.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from index import generations, sharded
from index.errors import ShardUnavailable, SimqaError
from index.manifest import Manifest
from index.ray_runner import ray_module
from search.filters import Filters
from search.shard import Candidates, Clock, Proposals, Query, Shard

APP = "simqa"
SHARD_TIMEOUT = 3.0  # seconds a shard has to answer one call: a replica restart takes longer
KEEP_GENERATIONS = 2  # generations a replica keeps open: the current one and the one before
CALLS = frozenset({"answer", "consultations", "get", "ids", "has", "question_keys", "stored_queries", "health", "snippets", "keys_and_snippets"})
KNOWN = 4096  # rows of each kind a RemoteShard keeps from earlier answers (a few MB)


class ShardReplica:
    """One replica of one shard's deployment: the shard's generations, each opened once."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self._open: OrderedDict[str, Shard] = OrderedDict()
        self._lock = threading.Lock()
        self._shard(str(generations.current(self.directory)))  # ready before the first request

    def call(self, generation: str, method: str, *args):
        """`method` of the Shard of this generation (one of CALLS)."""
        if method not in CALLS:
            raise SimqaError(f"a shard does not answer {method!r}")
        shard = self._shard(generation)
        if method == "answer":  # with the candidates' ids, which order tied scores
            proposals = shard.answer(*args)
            return proposals, shard.ids(proposals.scored.rows)
        if method == "keys_and_snippets":
            return shard.question_keys(*args), shard.snippets(*args)
        return getattr(shard, method)(*args)

    def _shard(self, generation: str) -> Shard:
        with self._lock:
            if generation not in self._open:
                if Path(generation).parent != self.directory:
                    raise SimqaError(f"{generation} is not a generation of the shard {self.directory}")
                self._open[generation] = Shard(Path(generation))
                while len(self._open) > KEEP_GENERATIONS:
                    self._open.popitem(last=False)
            self._open.move_to_end(generation)
            return self._open[generation]


class RemoteShard:
    """A shard in a Ray Serve deployment, with the methods the Searcher calls on a Shard."""

    def __init__(self, number: int, name: str, handle, generation: Path, manifest: Manifest, timeout: float = SHARD_TIMEOUT) -> None:
        self.number, self.name, self.handle = number, name, handle
        self.generation = generation
        self.timeout = timeout
        self._count = int(manifest.counts["consultations"])
        self.known = _Known()

    def __len__(self) -> int:
        return self._count

    def start(self, query: Query, signals, depth: int, filters: Filters | None, found: dict | None = None,
              share: int = 1) -> Callable[[Clock | None], "_Answer"]:
        """The shard's proposals and their candidates (`Shard.answer`), sent now and waited for
        when first read: the Searcher asks every shard before it reads any answer."""
        answer = _Answer(self, self._send("answer", query, signals, depth, filters, share))
        return lambda clock=None: answer

    def propose_many(self, queries: list[Query], signals, depth: int, share: int = 1) -> list[None]:
        """Nothing searched ahead: each query's answer searches the shard's vectors."""
        return [None] * len(queries)

    def candidates(self, query: Query, proposals: Proposals, clock: Clock | None = None) -> Candidates:
        return proposals.scored.among(proposals.rows())

    def ask(self, method: str, *args) -> Callable[[], Any]:
        """`method(*args)` of the shard, sent now, waited for when read; answered here when every
        row is known from earlier answers (`_Known`). The duplicate keys of the top come with those
        rows' snippets, among which the hits are, so the Searcher's round for the hits'
        snippets is answered here."""
        if method in _Known.KINDS and args[0] is not None:
            known = self.known.recall(method, args[0])
            if known is not None:
                return lambda: known
        if method == "question_keys":
            response = self._send("keys_and_snippets", *args)

            def keys():
                found, snippets = self.wait(response)
                self.known.learn("question_keys", args[0], list(zip(*found)))
                self.known.learn("snippets", args[0], snippets)
                return found

            return keys
        response = self._send(method, *args)
        return lambda: self.wait(response)

    def consultations(self, rows: np.ndarray) -> list:
        return self.ask("consultations", rows)()

    def get(self, consultation_id: str):
        return self._call("get", consultation_id)

    def ids(self, rows: np.ndarray | None = None) -> np.ndarray:
        return self.ask("ids", rows)()

    def has(self, consultation_id: str) -> bool:
        return self._call("has", consultation_id)

    def question_keys(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.ask("question_keys", rows)()

    def stored_queries(self, consultation_ids: list[str]) -> list[Query]:
        return self._call("stored_queries", consultation_ids)

    def health(self) -> dict:
        """The shard's count and generation, as one of its replicas answers, and its running replicas."""
        return {**self._call("health"), "replicas": running_replicas().get(self.name, 0)}

    def _send(self, method: str, *args):
        return self.handle.call.remote(str(self.generation), method, *args)

    def _call(self, method: str, *args):
        return self.wait(self._send(method, *args))

    def wait(self, response):
        """A call's result; ShardUnavailable when no replica answers in time or the replica died.
        A SimqaError raised in the replica (an unknown id) is the answer, not a failure."""
        try:
            return response.result(timeout_s=self.timeout)
        except SimqaError:
            raise
        except Exception as error:  # TimeoutError, RayActorError, a replica being replaced...
            raise ShardUnavailable(self.name, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None


class _Answer:
    """A shard's `answer` on its way; read as the Proposals it will be."""

    def __init__(self, shard: RemoteShard, response) -> None:
        self._shard, self._response = shard, response

    @cached_property
    def _proposals(self) -> Proposals:
        proposals, ids = self._shard.wait(self._response)
        self._shard.known.learn("ids", proposals.scored.rows, ids)  # what orders tied scores
        return proposals

    def __getattr__(self, name: str):
        return getattr(self._proposals, name)


class _Known:
    """What a RemoteShard learnt of its rows from earlier answers: ids, duplicate keys and
    snippets, the last KNOWN rows of each. A RemoteShard serves one generation, so nothing
    here goes stale. Thread-safe."""

    KINDS = ("ids", "question_keys", "snippets")

    def __init__(self) -> None:
        self._rows: dict[str, OrderedDict[int, Any]] = {kind: OrderedDict() for kind in self.KINDS}
        self._lock = threading.Lock()

    def learn(self, kind: str, rows: np.ndarray, values) -> None:
        with self._lock:
            known = self._rows[kind]
            for row, value in zip(np.asarray(rows).tolist(), values):
                known[row] = value
                known.move_to_end(row)
            while len(known) > KNOWN:
                known.popitem(last=False)

    def recall(self, kind: str, rows: np.ndarray):
        """The shard's answer to `kind(rows)` if every row is known, else None."""
        with self._lock:
            found = [self._rows[kind].get(row) for row in np.asarray(rows).tolist()]
        if not found or any(value is None for value in found):
            return None
        if kind == "ids":
            return np.asarray(found)
        if kind == "question_keys":
            return np.asarray([h for h, _ in found], dtype=np.int64), np.stack([v for _, v in found])
        return found


def running_replicas() -> dict[str, int]:
    """Running replicas per deployment of the simqa application, as Ray Serve's controller reports them."""
    from ray import serve

    application = serve.status().applications.get(APP)
    if application is None:
        return {}
    return {name: int(d.replica_states.get("RUNNING", 0)) for name, d in application.deployments.items()}


def shard_directories(directory: Path) -> list[Path]:
    """The directories whose generations the shards serve: each shard's, or the index itself."""
    manifest = Manifest.read(generations.current(directory))
    if not sharded.is_sharded(manifest):
        return [directory]
    return [directory / entry["directory"] for entry in manifest.parameters["shards"]]


def shard_name(number: int) -> str:
    return f"shard-{number:02d}"


class Ingress:
    """The ingress deployment: the API of search/server.py over RemoteShards (Ray Serve calls
    `__serve_build_asgi_app__` after the constructor, so the app closes over this replica's Searcher)."""

    def __init__(self, directory: str, handles: list, timeout: float, allow_origins: list[str] | None) -> None:
        from index.onnx_runner import SPINNING
        from search.live import LiveSearcher

        os.environ[SPINNING] = "0"  # the query encoder shares the node's cores with shard replicas
        names = [shard_name(n) for n in range(len(handles))]
        self.live = LiveSearcher(directory, shard=lambda n, generation, manifest: RemoteShard(n, names[n], handles[n], generation, manifest, timeout))
        self.live.get().embed("load the model before the first request")
        self.allow_origins = allow_origins

    def __serve_build_asgi_app__(self):
        from search.server import create_app

        return create_app(self.live, self.allow_origins)


def application(directory: Path, replicas: int = 1, cpus_per_replica: float = 0.5, ingress_replicas: int = 1,
                ingress_cpus: float = 0.5, timeout: float = SHARD_TIMEOUT, allow_origins: list[str] | None = None):
    """The Ray Serve application of an index: the ingress bound to one deployment per shard."""
    if replicas < 1 or ingress_replicas < 1 or cpus_per_replica < 0 or ingress_cpus < 0:
        raise SimqaError(f"replicas must be 1 or more and CPUs 0 or more (got {replicas} replicas, {cpus_per_replica} CPUs each)")
    from ray import serve

    directory = Path(directory).resolve()
    shards = [
        serve.deployment(ShardReplica, name=shard_name(n), num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica})
        .bind(str(path))
        for n, path in enumerate(shard_directories(directory))
    ]
    ingress = serve.deployment(serve.ingress()(Ingress), name="ingress", num_replicas=ingress_replicas,
                               ray_actor_options={"num_cpus": ingress_cpus})
    return ingress.bind(str(directory), shards, timeout, allow_origins)


def start(directory: Path, address: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Join (or, for "local", start) a Ray cluster and run the application on it, not waiting."""
    ray = ray_module(serve=True)
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(directory, **options), name=APP, route_prefix="/", blocking=False)


def serve_on_ray(directory: Path, address: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """`simqa serve --ray`: start the application, then serve until interrupted."""
    start(directory, address, host, port, **options)
    from ray import serve

    def stop(signum, frame):
        raise KeyboardInterrupt

    for number in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, a service manager's stop, and SIGINT where a shell ignored it
        signal.signal(number, stop)

    print(f"simqa: serving {directory} on Ray Serve at http://{host}:{port}/ "
          f"({len(shard_directories(Path(directory)))} shard deployment(s)); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
