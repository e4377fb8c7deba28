"""Cold start: a fresh `simqa search` process (hybrid and bm25), and `simqa serve` to a healthy
/healthz and its first search, each the best of 3, on the seeds index.

    python -m benchmarks.start [--index build/seeds-index] [--out benchmarks/results/speed/start.md]

The query encoder's ONNX export must exist (any earlier query on this machine made it); the run
makes sure with one query first and says whether torch was imported on the way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.load import free_port
from benchmarks.speed import cpu_name

QUERY = "my neck muscles twitch and my head shakes when I am nervous"
TRIALS = 3


def cli(index: Path, mode: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.cli", "search", QUERY, "--index", str(index), "--mode", mode, "-k", "4"],
                   check=True, capture_output=True)
    return time.perf_counter() - started


def serve(index: Path) -> tuple[float, float]:
    """(seconds to a healthy /healthz, seconds of the first search)."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("simqa serve exited before it was healthy")
                time.sleep(0.01)
        healthy = time.perf_counter() - started
        started = time.perf_counter()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=neck+twitch&k=4").read()
        return healthy, time.perf_counter() - started
    finally:
        server.terminate()
        server.wait()


def imported(index: Path) -> dict[str, bool]:
    """Which heavy modules a hybrid query imports, in a fresh process."""
    script = ("import sys; from search import Searcher; Searcher.open(sys.argv[1]).search(sys.argv[2]); "
              "print(*[m in sys.modules for m in ('torch', 'sentence_transformers', 'transformers')])")
    out = subprocess.run([sys.executable, "-c", script, str(index), QUERY], check=True, capture_output=True, text=True).stdout.split()
    return dict(zip(("torch", "sentence_transformers", "transformers"), (flag == "True" for flag in out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, default=Path("build/seeds-index"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed/start.md"))
    args = parser.parse_args()
    cli(args.index, "hybrid")  # makes the ONNX export if this machine has none yet
    hybrid = [cli(args.index, "hybrid") for _ in range(TRIALS)]
    bm25 = [cli(args.index, "bm25") for _ in range(TRIALS)]
    served = [serve(args.index) for _ in range(TRIALS)]
    result = {"cpu": cpu_name(), "cli_hybrid_seconds": [round(s, 2) for s in hybrid],
              "cli_bm25_seconds": [round(s, 2) for s in bm25], "serve_healthy_seconds": [round(h, 2) for h, _ in served],
              "serve_first_search_ms": [round(f * 1000, 1) for _, f in served], "imported": imported(args.index)}
    lines = ["# Cold start (`python -m benchmarks.start`)", "",
             f"A fresh process on {args.index}, best of {TRIALS}, {result['cpu']}; the query encoder runs from its ONNX export.", "",
             "| what | best | all |", "|---|---|---|",
             f"| `simqa search`, hybrid | {min(hybrid):.2f} s | {', '.join(f'{s:.2f}' for s in hybrid)} |",
             f"| `simqa search`, bm25 | {min(bm25):.2f} s | {', '.join(f'{s:.2f}' for s in bm25)} |",
             f"| `simqa serve` to a healthy /healthz | {min(h for h, _ in served):.2f} s | {', '.join(f'{h:.2f}' for h, _ in served)} |",
             f"| its first search | {min(f for _, f in served) * 1000:.0f} ms | {', '.join(f'{f * 1000:.0f}' for _, f in served)} |", "",
             "Imported by a hybrid query: " + ", ".join(f"{m} {'yes' if on else 'no'}" for m, on in result["imported"].items()) + "."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
