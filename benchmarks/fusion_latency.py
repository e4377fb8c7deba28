"""The fusion stage's latency (p50, ms) on the suite's indexes, with and without replies.

Times search()'s "fusion" stage (search/searcher.py's timings) for the default over each
benchmark's queries (at most 300 per benchmark), one thread, after a warm-up.

    python -m benchmarks.fusion_latency --suite build/suite --indexes build/suite-index
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.fit_fusion import index_of
from benchmarks.suite import BENCHMARKS
from search.bench import read_queries
from search.searcher import Searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="build/suite")
    parser.add_argument("--indexes", default="build/suite-index")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    out = {}
    for benchmark in (b for b in BENCHMARKS if not b.panel):
        searcher = Searcher.open(index_of(benchmark, Path(args.indexes)))
        texts = list(read_queries(Path(args.suite) / benchmark.corpus / benchmark.queries).values())[: args.queries]
        searcher.search(texts[0])
        stages = []
        for text in texts:
            timings: dict[str, float] = {}
            searcher.search(text, timings=timings)
            stages.append(timings["fusion"] * 1000)
        out[benchmark.name] = {"documents": len(searcher), "queries": len(texts), "fusion_p50_ms": round(float(np.median(stages)), 3),
                               "fusion_p95_ms": round(float(np.percentile(stages, 95)), 3)}
        print(benchmark.name, json.dumps(out[benchmark.name]), flush=True)


if __name__ == "__main__":
    main()
