"""`make bench-load-ray`: the load test (benchmarks/load.py) against today's single server and the
Ray Serve application, in one run, on loopback.

Three servers over MedQuAD, one after the other: `simqa serve` over one index, `simqa serve` over
the same consultations in 2 shards (in one process), and `simqa serve --ray local` over those
2 shards (an ingress and 2 shard deployments, one replica each). Each gets one client for a few
seconds (latency without queueing: what a request costs on its own) and then the load: 16 clients
for 30 s. The sharded index is built from the embedding cache when it is missing. Writes
benchmarks/results/load-ray.md and .json.

    python -m benchmarks.load_ray --index build/medquad-index --corpus build/suite/medquad/corpus.jsonl \\
        --sharded build/medquad-2shards --cache benchmarks/cache/embeddings.sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.liveqa import load_queries
from benchmarks.load import RESULTS, ROOT, run, running_server
from benchmarks.speed import cpu_name
from index import generations
from index.segment import Segment


def cpu() -> str:
    """The CPU and its cores, for the record (figures depend on them)."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default="build/medquad-index")
    parser.add_argument("--corpus", default="build/suite/medquad/corpus.jsonl", help="the index's corpus, to build the sharded copy")
    parser.add_argument("--sharded", default="build/medquad-2shards")
    parser.add_argument("--cache", default="benchmarks/cache/embeddings.sqlite")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--single-seconds", type=float, default=10, help="seconds of the one-client run")
    args = parser.parse_args()
    if not (Path(args.sharded) / "CURRENT").is_file():
        subprocess.run([sys.executable, "-m", "search.cli", "index", args.corpus, "--index", args.sharded, "--shards", "2",
                        "--cache", args.cache, "--quiet"], cwd=ROOT, check=True)
    ids = Segment.open_store(generations.current(Path(args.index))).ids.tolist()
    queries = list(load_queries("summary").values()) + list(load_queries("original").values())
    setups = [("simqa serve, one index", args.index, []), ("simqa serve, 2 shards in one process", args.sharded, []),
              ("simqa serve --ray local, 2 shard deployments", args.sharded, ["--ray", "local"])]
    rows = []
    for name, index, extra in setups:
        with running_server(index, *extra) as base:
            alone = asyncio.run(run(base, 1, args.single_seconds, queries, ids))
            loaded = asyncio.run(run(base, args.clients, args.seconds, queries, ids))
        rows.append({"server": name, "index": index, "one_client": alone, "load": loaded})
        print(json.dumps(rows[-1]), flush=True)
    single, ray = rows[0], rows[-1]
    cores = os.cpu_count() or 1
    result = {
        "command": f"python -m benchmarks.load_ray --index {args.index} --sharded {args.sharded} --clients {args.clients} "
                   f"--seconds {args.seconds:g}",
        "cpu": cpu(), "rows": rows,
        # With every core busy, a request costs cores / (requests/s) core-seconds.
        "ray_overhead_core_ms_per_request": round(1e3 * cores * (1 / ray["load"]["requests_per_second"] - 1 / single["load"]["requests_per_second"]), 1),
        "ray_overhead_p50_ms_one_client": round(ray["one_client"]["latency_ms"]["p50"] - single["one_client"]["latency_ms"]["p50"], 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load-ray.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Load test: the single server and Ray Serve, same run\n\n`{result['command']}`\n\nCPU: {result['cpu']}. "
             f"One client for {args.single_seconds:g} s, then {args.clients} clients for {args.seconds:g} s; 3 in 4 requests "
             "free-text search (LiveQA-Med questions, k=10), 1 in 4 the Similar Q&A panel of a random consultation (k=4), "
             "over MedQuAD (benchmarks/load.py).\n",
             "| server | 1 client p50 ms | requests | errors | requests/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        load = row["load"]
        lines.append(f"| {row['server']} | {row['one_client']['latency_ms']['p50']} | {load['requests']} | {load['errors']} | "
                     f"{load['requests_per_second']} | {load['latency_ms']['p50']} | {load['latency_ms']['p99']} |")
    lines.append(f"\nRay Serve's overhead: {result['ray_overhead_core_ms_per_request']} core-ms per request under load "
                 f"({cores} cores / requests/s, against the single server over one index), "
                 f"{result['ray_overhead_p50_ms_one_client']} ms of p50 latency with one client.\n")
    (RESULTS / "load-ray.md").write_text("\n".join(lines))
    print("\n".join(lines))
    if any(row["load"]["errors"] or row["one_client"]["errors"] for row in rows):
        raise SystemExit("errors under load")


if __name__ == "__main__":
    main()
