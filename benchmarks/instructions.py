"""Instructions a hybrid query costs after its encoding, counted by valgrind's callgrind: the same
count on a slow or a fast minute of a shared machine, where wall time moves by up to 60%.

    python -m benchmarks.instructions [--index DIR ...] [--against REV] [--rounds 1]

For each index, a child process opens it and answers the 208 LiveQA questions (original and
summary) from vectors computed here beforehand, `rounds` times after 20 warm-up queries, under
`valgrind --tool=callgrind`; a second child does the same with no rounds. The difference of
their totals over the queries answered is a query's count: opening, imports and warm-up cancel.
`--against REV` counts a git revision's code the same way, in a worktree made for the run, so a
change is judged by its count against the code before it (PYTHONHASHSEED is fixed; two runs of
the same code differ by about 1%).

Counts are of instructions retired on the CPU the run is on (FAISS picks AVX2 or AVX-512
kernels), not of time: memory stalls (the exact rescoring's gathers of 1.5 KB vectors) cost time
they do not count, and threads' work is counted wherever it runs, so the reply search done
beside BM25 on the helper thread counts in full. Needs valgrind (Debian's package `valgrind`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.liveqa import load_queries
from benchmarks.speed import cpu_name

RESULTS = Path("benchmarks/results/speed")
INDEXES = ["build/medquad-index", "build/scale-out/single-hnsw", "build/scale-out/4-shards-hnsw"]
WARM_UP = 20

# The child, as source: a revision counted with --against runs its own search/ and index/, which
# predate this file.
CHILD = f"""
import json, sys
import numpy as np
from index.text import tokenize
from search.filters import Filters
from search.fusion import MODES
from search.searcher import Searcher
from search.shard import Clock, Query
index, queries, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
searcher = Searcher.open(index, query_vectors=0)
texts = json.loads(open(queries + ".json").read())
vectors = np.load(queries + ".npy")
fusion = MODES["hybrid"].for_index(searcher.has_replies)
asked = [(Query(tokenize(t), v, v), t) for t, v in zip(texts, vectors)]
for query, text in asked[:{WARM_UP}] + asked * rounds:
    searcher._answer(query, text, 10, fusion, Filters(), Clock(None))
"""


def counted(code: Path, index: str, queries: Path, rounds: int) -> int:
    """Instructions callgrind counts for the child over `code` (its search/ and index/: `python -c`
    puts its working directory first on the path)."""
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out",
                              sys.executable, "-c", CHILD, str(Path(index).resolve()), str(queries), str(rounds)],
                             cwd=code, env={**os.environ, "PYTHONPATH": str(code), "PYTHONHASHSEED": "0"},
                             capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"the counted child failed on {index} ({code}):\n{run.stderr[-2000:]}")
    for line in run.stderr.splitlines():
        if "I   refs:" in line:
            return int(line.split("I   refs:")[1].replace(",", ""))
    raise SystemExit(f"callgrind printed no instruction total:\n{run.stderr[-2000:]}")


def per_query(code: Path, index: str, queries: Path, rounds: int, n: int) -> float:
    """Instructions of one query: the rounds' count minus the count without them, over the queries."""
    return (counted(code, index, queries, rounds) - counted(code, index, queries, 0)) / (rounds * n)


def worktree(revision: str, into: Path) -> Path:
    """A checkout of `revision` at `into` (git worktree); its children read the indexes from here."""
    subprocess.run(["git", "worktree", "add", "--detach", str(into), revision], check=True, capture_output=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", action="append", help=f"an index directory (repeatable; default {', '.join(INDEXES)})")
    parser.add_argument("--against", help="a git revision whose code is counted beside this checkout's")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "instructions.json")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    indexes = args.index or INDEXES
    from search.searcher import Searcher  # the parent embeds once, with this checkout's encoder

    texts = [t for setting in ("summary", "original") for t in load_queries(setting).values()]
    with tempfile.TemporaryDirectory() as work:
        queries = Path(work) / "queries"
        queries.with_suffix(".json").write_text(json.dumps(texts))
        np.save(queries.with_suffix(".npy"), Searcher.open(indexes[0]).query_encoder().embed(texts))
        codes = {"this checkout": Path.cwd()}
        if args.against:
            codes[args.against] = worktree(args.against, Path(work) / "against")
        try:
            rows = {label: {index: round(per_query(code, index, queries, args.rounds, len(texts)) / 1e6, 3) for index in indexes}
                    for label, code in codes.items()}
        finally:
            if args.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(codes[args.against])], check=True)
    result = {"cpu": cpu_name(), "queries": len(texts), "rounds": args.rounds, "millions_of_instructions_a_query": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Millions of instructions a hybrid query costs after its encoding ({result['cpu']}, callgrind):")
    for label, counts in rows.items():
        print(f"  {label}: " + ", ".join(f"{index} {count}" for index, count in counts.items()))


if __name__ == "__main__":
    main()
