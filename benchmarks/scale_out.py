"""Scale-out benchmark (`make bench-scale-out`): a 4-shard MedQuAD index against the single index.

    python -m benchmarks.scale_out [--out benchmarks/results/scale-out]

- identity: with exact (flat) vectors, every LiveQA-Med question (original and summary) gets the
  same top 10 from 4 shards as from one index, in every mode (ids, order, scores within 1e-5);
  with HNSW, nDCG@10 of both;
- the default vector index ("auto", HNSW at MedQuAD's size, for the shards too) as a third layout;
- builds: wall time of the single and the 4-shard build from cached vectors, and each shard's;
- latency: per-stage p50 of the same queries on both layouts; the in-process cost of sharding is
  the difference without the query embedding, which both share;
- embedding: texts per second through Ray Data with 1 actor of 2 CPUs and 2 actors of 1 CPU,
  against the single-process build's encoder in the same run, and per-core efficiency;
- compression: the "hnsw-sq8" vector index against "hnsw": bytes a vector, recall@10 of dense
  search against exact float32 search, and the relevance table.

Needs the suite bench-relevance writes (build/suite) and its embedding cache; the Ray part needs
the ray extra. Figures depend on the CPU, which the results name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.speed import BENCH_CACHE, cpu_name, ms
from index import BuildConfig, build_index, generations, read_sources
from index.embed import Encoder, threads
from index.manifest import Manifest
from index.passages import MAX_PASSAGES, PASSAGE_WORDS
from index.segment import embedded_texts
from search import Searcher
from search.bench import evaluate, read_qrels, read_queries, run_method
from search.fusion import MODES

SUITE = Path("build/suite/medquad")
WORK = Path("build/scale-out")
SHARDS = 4
EMBED_TEXTS = 2000  # a fixed mix of questions and reply passages, 3 to 1, a few batches of each per block


def build(name: str, corpus: list, shards: int, vector_index: str) -> tuple[Path, dict]:
    """One index of the corpus from cached vectors; its wall time and each shard's build time.
    The directory is removed first: a build of an unchanged corpus is a no-op, not a build."""
    directory = WORK / name
    shutil.rmtree(directory, ignore_errors=True)
    start = time.perf_counter()
    build_index(corpus, directory, BuildConfig(progress=False, cache=BENCH_CACHE, precision="fp32", vector_index=vector_index, shards=shards))
    seconds = time.perf_counter() - start
    manifest = Manifest.read(generations.current(directory))
    shard_seconds = [Manifest.read(directory / e["directory"] / e["generation"]).parameters["build_seconds"]["total"]
                     for e in manifest.parameters.get("shards", [])]
    return directory, {"seconds": round(seconds, 1), "shard_seconds": shard_seconds}


def identity(one: Searcher, many: Searcher, queries: dict[str, str]) -> dict:
    """Per mode: queries whose top 10 differ in ids or order, and the largest score difference."""
    out = {}
    for mode in ("hybrid", "bm25", "dense"):
        differ, largest = 0, 0.0
        for text in queries.values():
            a, b = one.search(text, mode=mode), many.search(text, mode=mode)
            if [h.id for h in a] != [h.id for h in b]:
                differ += 1
            else:
                largest = max([largest, *(abs(x.score - y.score) for x, y in zip(a, b))])
        out[mode] = {"queries": len(queries), "top10_differ": differ, "max_score_difference": float(largest)}
    return out


def relevance(one: Searcher, many: Searcher, settings: dict, qrels: dict) -> dict:
    out = {}
    for setting, queries in settings.items():
        rows = {name: evaluate(run_method(s, queries, MODES["hybrid"]), qrels) for name, s in (("single", one), ("sharded", many))}
        out[setting] = {name: {"nDCG@10": round(r["nDCG@10"], 4), "MRR@10": round(r["MRR@10"], 4)} for name, r in rows.items()}
    return out


def latency(searcher: Searcher, queries: list[str], rounds: int = 3) -> dict:
    """p50 per stage, and of the wall time of the whole query and of it but its embedding, over
    every query `rounds` times (stages of shards run side by side count as the longest shard's;
    work moved into the embedding's time would leave the second, not the first)."""
    searcher.search("warm up the model and the caches")
    stages: dict[str, list[float]] = {}
    for _ in range(rounds):
        for text in queries:
            timings: dict[str, float] = {}
            start = time.perf_counter()
            searcher.search(text, timings=timings)
            wall = time.perf_counter() - start
            for stage, seconds in timings.items():
                stages.setdefault(stage, []).append(seconds)
            stages.setdefault("after_embed", []).append(wall - timings["embed"])
            stages.setdefault("end_to_end", []).append(wall)
    return {stage: ms(values)["p50"] for stage, values in stages.items()}


def compression(corpus: list, settings: dict, qrels: dict, exact: Searcher, hnsw: Searcher) -> dict:
    """hnsw-sq8 against hnsw on MedQuAD: vector bytes, dense recall@10 against exact, relevance."""
    directory, build_row = build("single-hnsw-sq8", corpus, 1, "hnsw-sq8")
    compressed = Searcher.open(directory)
    out: dict = {"build": build_row}
    texts = [t for queries in settings.values() for t in queries.values()]
    truth = [{h.id for h in exact.search(t, mode="dense")} for t in texts]
    for name, searcher in (("hnsw", hnsw), ("hnsw-sq8", compressed)):
        files = {p.name: p.stat().st_size for p in searcher.generation.iterdir() if p.suffix == ".faiss"}
        vectors = searcher.manifest.counts["consultations"] + searcher.manifest.counts["reply_passages"]
        found = [{h.id for h in searcher.search(t, mode="dense")} for t in texts]
        out[name] = {
            "vector_bytes": sum(files.values()), "bytes_per_vector": round(sum(files.values()) / vectors, 1), "files": files,
            "dense_recall_at_10": round(float(np.mean([len(a & b) / 10 for a, b in zip(found, truth)])), 4),
            "relevance": {setting: {k: round(v, 4) for k, v in evaluate(run_method(searcher, queries, MODES["hybrid"]), qrels).items()
                                    if k in ("nDCG@10", "MRR@10")} for setting, queries in settings.items()},
        }
    out["reduction"] = round(out["hnsw"]["vector_bytes"] / out["hnsw-sq8"]["vector_bytes"], 2)
    return out


def embedding(corpus: list) -> dict:
    """Texts per second: the in-process encoder on every core, then Ray Data actor pools."""
    from index.ray_runner import RayRunner

    texts = embedded_texts(corpus, PASSAGE_WORDS, MAX_PASSAGES)
    questions, passages = texts.questions[::15], texts.flat_passages[::60]
    mixed = [text for at, passage in enumerate(passages) for text in (*questions[3 * at:3 * at + 3], passage)]
    sample = mixed[:EMBED_TEXTS]
    out: dict = {"texts": len(sample), "cores": threads()}
    encoder = Encoder(precision="fp32")  # no cache: every text is encoded
    encoder.embed(sample[:64])  # the model is loaded and warm, as it is in a build
    start = time.perf_counter()
    reference = encoder.embed(sample)
    seconds = time.perf_counter() - start
    out["in_process"] = {"seconds": round(seconds, 2), "texts_per_second": round(len(sample) / seconds, 1),
                         "per_core": round(len(sample) / seconds / threads(), 1)}
    for kind, texts_of_kind in (("questions", questions[1::2][:400]), ("passages", passages[1::2][:150])):
        start = time.perf_counter()
        encoder.embed(texts_of_kind)
        out[f"in_process_{kind}_per_core"] = round(len(texts_of_kind) / (time.perf_counter() - start) / threads(), 2)
    for actors, cpus in ((1, threads()), (threads(), 1)):
        runner = RayRunner("local", actors=actors, cpus_per_actor=cpus)
        driver = Encoder(precision="fp32", dimension=encoder.dimension)  # loads nothing: the actors do
        # Actors start and load the model for every dataset Ray runs; a job of a text per actor
        # measures that fixed cost, which the steady rate leaves out.
        start = time.perf_counter()
        runner.embed(driver, sample[:actors])
        startup = time.perf_counter() - start
        start = time.perf_counter()
        vectors = runner.embed(driver, sample)  # no cache: every text goes to the actors
        seconds = time.perf_counter() - start
        steady = len(sample) / max(seconds - startup, 1e-9)
        out[f"ray_{actors}x{cpus}"] = {
            "seconds": round(seconds, 2), "startup_seconds": round(startup, 2), "texts_per_second": round(steady, 1),
            "per_core_efficiency": round(steady / (actors * cpus) / out["in_process"]["per_core"], 3),
            "per_core_efficiency_with_startup": round(len(sample) / seconds / (actors * cpus) / out["in_process"]["per_core"], 3),
            "max_cosine_difference": float(1 - np.min(np.sum(vectors * reference, axis=1))),
        }
    return out


def report(results: dict) -> str:
    lines = [f"# Scale-out: {SHARDS} shards against one index (MedQuAD, {results['documents']:,} consultations)", "",
             f"CPU: {results['cpu']}, {results['embedding']['cores'] if 'embedding' in results else threads()} cores.", "",
             "## Same answers (exact vectors)", "", "| mode | queries | top 10 differ | largest score difference |", "|---|---|---|---|"]
    for mode, row in results["identity_flat"].items():
        lines.append(f"| {mode} | {row['queries']} | {row['top10_differ']} | {row['max_score_difference']:.2e} |")
    lines += ["", "## Relevance with HNSW", "", "| questions | single nDCG@10 | 4 shards nDCG@10 | single MRR@10 | 4 shards MRR@10 |", "|---|---|---|---|---|"]
    for setting, row in results["relevance_hnsw"].items():
        lines.append(f"| {setting} | {row['single']['nDCG@10']:.4f} | {row['sharded']['nDCG@10']:.4f} | "
                     f"{row['single']['MRR@10']:.4f} | {row['sharded']['MRR@10']:.4f} |")
    lines += ["", "## Builds from cached vectors (seconds)", "", "| index | wall | each shard |", "|---|---|---|"]
    for name, row in results["builds"].items():
        lines.append(f"| {name} | {row['seconds']} | {', '.join(map(str, row['shard_seconds'])) or '-'} |")
    lines += ["", "## Query latency, p50 ms (208 LiveQA questions x 3)", "",
              "| index | embed | bm25 | vectors | rescore | fusion | hits | all but embed | end to end |", "|---|---|---|---|---|---|---|---|---|"]
    stages = ("embed", "bm25", "vectors", "rescore", "fusion", "hits", "after_embed", "end_to_end")
    for name, row in results["latency"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[s]:.3f}" if s in row else "-" for s in stages) + " |")
    for kind in ("flat", "hnsw", "auto"):
        many, one = results["latency"][f"{SHARDS}-shards-{kind}"], results["latency"][f"single-{kind}"]
        whole = f", {many['end_to_end'] - one['end_to_end']:+.3f} ms end to end" if "end_to_end" in one else ""
        lines.append(f"\nIn-process cost of {SHARDS} shards ({kind}): {many['after_embed'] - one['after_embed']:+.3f} ms p50 but the embedding{whole}.")
    if "compression" in results:
        c = results["compression"]
        lines += ["", "## Compressed vectors (single index)", "",
                  f"hnsw-sq8 keeps {c['reduction']}x fewer vector bytes than hnsw (their FAISS files, which hold the vectors and graphs).", "",
                  "| kind | bytes a vector | dense recall@10 vs exact | nDCG@10 original | nDCG@10 summary | MRR@10 original | MRR@10 summary |",
                  "|---|---|---|---|---|---|---|"]
        for kind in ("hnsw", "hnsw-sq8"):
            row = c[kind]
            lines.append(f"| {kind} | {row['bytes_per_vector']} | {row['dense_recall_at_10']} | {row['relevance']['original']['nDCG@10']} | "
                         f"{row['relevance']['summary']['nDCG@10']} | {row['relevance']['original']['MRR@10']} | "
                         f"{row['relevance']['summary']['MRR@10']} |")
    if "embedding" in results:
        e = results["embedding"]
        lines += ["", f"## Embedding throughput ({e['texts']} texts, fp32)", "",
                  "Ray's steady rate leaves out its fixed cost a job (actors start, load the model), measured by a job of one text an actor.", "",
                  "| runner | seconds | startup s | texts/s (steady) | per-core efficiency | with startup |", "|---|---|---|---|---|---|",
                  f"| in process, {e['cores']} threads | {e['in_process']['seconds']} | - | {e['in_process']['texts_per_second']} | 1 | 1 |"]
        for name, row in e.items():
            if name.startswith("ray_"):
                lines.append(f"| Ray Data, {name[4:]} | {row['seconds']} | {row['startup_seconds']} | {row['texts_per_second']} | "
                             f"{row['per_core_efficiency']} | {row['per_core_efficiency_with_startup']} |")
    return "\n".join(lines) + "\n"


SHARD_RAM = 20 * 2**30  # what a shard may take of a 24 GiB machine like ours, leaving room for the OS and a server
PASSAGES_PER_CONSULTATION = 0.93  # MedQuAD's average (the synthetic 1M corpus has 1)


def capacity(embedding: dict, scale_dir: Path, cpu: str) -> str:
    """The README's capacity table: from per-core embedding rates measured here and peak RSS per
    consultation at 1M synthetic consultations (benchmarks/speed.py scale, default and hnsw-sq8)."""
    seconds = 1 / embedding["in_process_questions_per_core"] + PASSAGES_PER_CONSULTATION / embedding["in_process_passages_per_core"]
    rows = ["| consultations | vectors | RAM a consultation | shards of 20 GiB | RAM a shard | core-hours to embed | hours on the shards' machines (2 cores each) |",
            "|---|---|---|---|---|---|---|"]
    for kind, name in (("hnsw", "scale.json"), ("hnsw-sq8", "scale-hnsw-sq8.json")):
        path = scale_dir / name
        if not path.is_file():
            continue
        million = json.loads(path.read_text())["1000000"]
        per = million["queries"]["peak_rss_mb"] * 2**20 / 1_000_000
        for n in (10_000_000, 100_000_000):
            shards = int(np.ceil(n * per / SHARD_RAM))
            hours = n * seconds / 3600
            rows.append(f"| {n:,} | {kind} | {per / 1024:.1f} KiB | {shards} | {n * per / shards / 2**30:.1f} GiB | {hours:,.0f} | "
                        f"{hours / (2 * shards):,.0f} |")
    return (f"Embedding at {embedding['in_process_questions_per_core']} questions and {embedding['in_process_passages_per_core']} "
            f"reply passages a second per core (fp32, {cpu}), {PASSAGES_PER_CONSULTATION} passages a consultation; "
            "RAM a consultation: peak RSS of 1M synthetic consultations / 1M (the CPU of `scale.json`'s run).\n\n" + "\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale-out"))
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray Data embedding section")
    parser.add_argument("--capacity", action="store_true", help="only rewrite capacity.md from results.json and the scale results")
    args = parser.parse_args()
    if args.capacity:
        measured = json.loads((args.out / "results.json").read_text())
        (args.out / "capacity.md").write_text(capacity(measured["embedding"], Path("benchmarks/results/speed"), measured["cpu"]),
                                              encoding="utf-8")
        print((args.out / "capacity.md").read_text())
        return
    corpus = read_sources([SUITE / "corpus.jsonl"]).consultations
    settings = {s: read_queries(SUITE / f"queries-{s}.tsv") for s in ("original", "summary")}
    qrels = read_qrels(SUITE / "qrels.txt")
    results: dict = {"cpu": cpu_name(), "documents": len(corpus), "builds": {}, "latency": {}}
    searchers = {}
    for kind in ("flat", "hnsw", "auto"):
        for name, shards in ((f"single-{kind}", 1), (f"{SHARDS}-shards-{kind}", SHARDS)):
            directory, results["builds"][name] = build(name, corpus, shards, kind)
            searchers[name] = Searcher.open(directory, query_vectors=0)  # rounds repeat texts: encode each time
            print(f"built {name}: {results['builds'][name]}", flush=True)
    every = {f"{s}-{q}": t for s, queries in settings.items() for q, t in queries.items()}
    results["identity_flat"] = identity(searchers["single-flat"], searchers[f"{SHARDS}-shards-flat"], every)
    results["relevance_hnsw"] = relevance(searchers["single-hnsw"], searchers[f"{SHARDS}-shards-hnsw"], settings, qrels)
    for name, searcher in searchers.items():
        results["latency"][name] = latency(searcher, list(every.values()))
    results["compression"] = compression(corpus, settings, qrels, searchers["single-flat"], searchers["single-hnsw"])
    if not args.no_ray:
        results["embedding"] = embedding(corpus)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(report(results), encoding="utf-8")
    print(report(results))
    if "embedding" in results:
        (args.out / "capacity.md").write_text(capacity(results["embedding"], Path("benchmarks/results/speed"), results["cpu"]),
                                              encoding="utf-8")


if __name__ == "__main__":
    main()
