"""Bounded load test of `simqa serve` on loopback: N concurrent clients for S seconds.

Starts the server on a free loopback port, then runs asyncio clients (httpx) that loop over a
mix of requests: free-text search with LiveQA-Med questions (3 in 4) and the Similar Q&A panel
of a random consultation (1 in 4). Reports throughput, latency percentiles and errors (which
must be 0), and writes benchmarks/results/load.md and .json.

    python -m benchmarks.load --index build/medquad-index --clients 16 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from benchmarks.liveqa import load_queries
from benchmarks.speed import cpu_name
from index import generations
from index.segment import Segment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(index: str | Path, *extra: str, query_vectors: int = 0):
    """`simqa serve` on a free loopback port, as a subprocess, until the block ends; yields its URL.

    The clients loop over 208 questions: with query vectors kept (search/query_vectors.py), after
    one round no request would encode; by default the server keeps none and encodes each one."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", str(port), *extra],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "SIMQA_QUERY_VECTORS": str(query_vectors)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # Ray Serve starts its runtime and deployments first
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError("simqa serve did not start")
            time.sleep(0.3)
        yield base
    finally:
        process.send_signal(signal.SIGINT)  # as Ctrl-C: `simqa serve --ray` shuts Ray Serve down
        process.wait(timeout=60)


async def client(base: str, queries: list[str], ids: list[str], until: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while time.perf_counter() < until:
            if rng.random() < 0.75:
                path, params = "/api/search", {"q": rng.choice(queries), "k": 10}
            else:
                path, params = f"/api/similar/{rng.choice(ids)}", {"k": 4}
            start = time.perf_counter()
            try:
                response = await http.get(path, params=params)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            out["latency"].append(time.perf_counter() - start)
            out["errors"] += 0 if ok else 1


async def run(base: str, clients: int, seconds: float, queries: list[str], ids: list[str]) -> dict:
    out = {"latency": [], "errors": 0}
    start = time.perf_counter()
    await asyncio.gather(*(client(base, queries, ids, start + seconds, i, out) for i in range(clients)))
    elapsed = time.perf_counter() - start
    latency = np.asarray(out["latency"]) * 1e3
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(latency), "errors": out["errors"],
        "requests_per_second": round(len(latency) / elapsed, 1),
        "latency_ms": {p: round(float(np.percentile(latency, q)), 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default="build/medquad-index")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--query-vectors", type=int, default=0,
                        help="query vectors the server keeps (0: each request encodes); results in load-query-vectors.md/.json if not 0")
    args = parser.parse_args()
    with running_server(args.index, query_vectors=args.query_vectors) as base:
        ids = Segment.open_store(generations.current(Path(args.index))).ids.tolist()
        queries = list(load_queries("summary").values()) + list(load_queries("original").values())
        result = asyncio.run(run(base, args.clients, args.seconds, queries, ids))
    result["index"] = args.index
    result["command"] = f"python -m benchmarks.load --index {args.index} --clients {args.clients} --seconds {args.seconds:g}" + (
        f" --query-vectors {args.query_vectors}" if args.query_vectors else "")
    result["query_vectors"] = args.query_vectors
    name = "load-query-vectors" if args.query_vectors else "load"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(
        f"# Load test of `simqa serve` on loopback\n\n`{result['command']}`\n\n"
        f"{result['clients']} concurrent clients for {result['seconds']} s, 3 in 4 requests free-text search (LiveQA-Med "
        f"questions, k=10), 1 in 4 the Similar Q&A panel of a random consultation (k=4), over {args.index}; the server keeps "
        f"{args.query_vectors or 'no'} query vectors. CPU: {cpu_name()}.\n\n"
        "| requests | errors | requests/s | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|\n"
        f"| {result['requests']} | {result['errors']} | {result['requests_per_second']} | {result['latency_ms']['p50']} | "
        f"{result['latency_ms']['p95']} | {result['latency_ms']['p99']} |\n")
    print(json.dumps(result, indent=2))
    if result["errors"]:
        raise SystemExit(f"{result['errors']} errors")


if __name__ == "__main__":
    main()
