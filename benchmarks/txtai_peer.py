"""txtai's hybrid search on a benchmark, with simqa's vectors: the peer a user would pick instead.

txtai 9 (the `bench` extra) indexes one text per consultation (its question text) in its own
BM25 and FAISS, and fuses them its default way: 0.5 x cosine + 0.5 x BM25 normalised by
min(top + average score, 6 x average score). Its vectors come from the same MiniLM through
txtai's "external" vector method, read from simqa's embedding cache, so the comparison is of
retrieval and fusion, not of embedding runs. Queries are embedded the same way.

    python -m benchmarks.txtai_peer --suite build/suite --out benchmarks/results/suite/txtai.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.fit_fusion import measures
from benchmarks.suite import BENCHMARKS
from index.consultation import Consultation
from index.embed import Encoder
from search.bench import RUN_DEPTH, read_qrels, read_queries


def txtai_runs(corpus: Path, query_files: dict[str, Path], cache: Path) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """{name: TREC-style run} of txtai's hybrid over the corpus's question texts, per query file."""
    from txtai import Embeddings

    encoder = Encoder(cache=cache, precision="fp32")  # the vectors of the relevance tables (Makefile)
    records = [Consultation(**json.loads(line)) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    # txtai calls a transform only if it is a plain function, not a bound method
    embeddings = Embeddings(method="external", transform=lambda texts: encoder.embed(list(texts)), hybrid=True, content=False)
    embeddings.index([(i, c.question_text(), None) for i, c in enumerate(records)])
    runs = {}
    for name, path in query_files.items():
        queries = read_queries(path)
        found = embeddings.batchsearch(list(queries.values()), RUN_DEPTH)
        runs[name] = {q: [(records[i].id, float(s)) for i, s in hits] for q, hits in zip(queries, found)}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", type=Path, default=Path("build/suite"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/embeddings.sqlite"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = {}
    searches = [b for b in BENCHMARKS if not b.panel]  # txtai has no similar(id)
    for corpus in dict.fromkeys(b.corpus for b in searches):
        benchmarks = [b for b in searches if b.corpus == corpus]
        runs = txtai_runs(args.suite / corpus / "corpus.jsonl", {b.name: args.suite / corpus / b.queries for b in benchmarks}, args.cache)
        for b in benchmarks:
            qrels = read_qrels(args.suite / corpus / "qrels.txt")
            results[b.name] = measures(runs[b.name], qrels, b, args.suite)
            print(b.name, json.dumps({k: round(v, 3) for k, v in results[b.name].items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
