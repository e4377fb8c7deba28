"""The `simqa` command: index, texts, adapt, add, delete, refresh-stats, verify, search, similar, related-faq, serve, panels, bench, list.

argparse (standard library) rather than click or typer: subcommands, typed options and help are
all we need, and it adds no dependency. Errors of our own become one `simqa: error: ...` line
and exit code 1; usage errors exit 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from index import (
    BuildConfig,
    SimqaError,
    build_index,
    generations,
    read_sources,
    sharded,
    update_index,
)
from index import vector_files
from index.consultation import valid_unicode
from index.embed import PRECISIONS
from index.embed_cache import default_cache_path
from index.topics import read_topics
from index.manifest import Manifest
from index.passages import MAX_PASSAGES, PASSAGE_WORDS
from index.vectors import KINDS
from search.bench import (
    METHODS,
    bench_relevance,
    panel_recovery,
    read_qrels,
    read_queries,
)
from search.filters import NAMES as FILTERS, FilterError, iso_date
from search.fusion import MODES
from search.panel import render_panel, render_related_faq, terminal_safe
from search.searcher import Hit, Searcher

if TYPE_CHECKING:
    from index.ray_runner import RayRunner


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except SimqaError as error:
        print(f"simqa: error: {error}", file=sys.stderr)
        return 1
    except (PermissionError, IsADirectoryError, NotADirectoryError) as error:
        # An operator's mistake (a read-only index, a path of the wrong kind): one line, not a traceback.
        print(f"simqa: error: {error.filename or ''}: {error.strerror}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`simqa search ... | head -1`): stop quietly, as Unix tools do.
        # Python's own flush at exit would fail again, so stdout is pointed at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simqa", description="Similar Q&A search over medical consultations.")
    parser.add_argument("--version", action="version", version=f"simqa {version('simqa')}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    index = commands.add_parser("index", help="build an index directory from pages, JSONL files or directories")
    _source_options(index)
    index.add_argument("--model", help="sentence-transformers model directory (default: bundled all-MiniLM-L6-v2)")
    index.add_argument("--vector-index", choices=KINDS, default="auto",
                       help="FAISS index kind (auto: exact below 20,000 vectors, HNSW from there on; "
                            "hnsw-sq8: HNSW over 8-bit vectors, about 3x less vector memory)")
    index.add_argument("--no-cache", action="store_true", help="embed everything, use no cache")
    index.add_argument("--vectors", type=Path, metavar="DIR",
                       help="precomputed vectors: Parquet files of id, question_vector, passage_vectors (see 'simqa texts')")
    index.add_argument("--shards", type=_positive, metavar="N",
                       help="split the index into N shards by id hash (default: as the index is, 1 for a new one)")
    index.add_argument("--ray", metavar="ADDRESS",
                       help="read and embed on Ray Data and write shards as Ray tasks: a cluster address, or 'local' to start Ray here")
    index.add_argument("--ray-actors", type=_positive, default=1, metavar="N", help="embedding actors on Ray (each loads the model once)")
    index.add_argument("--ray-cpus-per-actor", type=float, default=1.0, metavar="CPUS", help="CPUs (and model threads) per actor")
    index.add_argument("--topics", type=Path, metavar="FILE",
                       help="Related FAQ topics, JSONL of {topic, department, synonyms, url} (default: kept as the index has "
                            "them, else gathered from the consultations' own Related FAQ lists)")
    index.set_defaults(run=_index)

    texts = commands.add_parser("texts", help="write the texts an index embeds (Parquet), for your own embedding pipeline")
    texts.add_argument("sources", nargs="+", metavar="SOURCE", help="seed-format pages, .jsonl files, or directories of them")
    texts.add_argument("--out", required=True, type=Path, help="Parquet file: id, question, passages")
    texts.add_argument("--skip-bad", action="store_true", help="skip bad files and lines, report them, go on")
    texts.add_argument("--quiet", action="store_true", help="no progress output")
    texts.set_defaults(run=_texts)

    adapt = commands.add_parser("adapt", help="fine-tune the encoder on the consultations themselves (no labels), for simqa index --model")
    adapt.add_argument("sources", nargs="+", metavar="SOURCE", help="seed-format pages, .jsonl files, or directories of them")
    adapt.add_argument("--out", required=True, type=Path, metavar="MODEL_DIR", help="where the adapted model is written (a new directory)")
    adapt.add_argument("--base", default=None, metavar="MODEL", help="model to start from: the bundled MiniLM, or a sentence-transformers directory")
    adapt.add_argument("--max-minutes", type=float, default=30.0, metavar="M", help="training stops by then (default 30)")
    adapt.add_argument("--seed", type=int, default=0, help="seed of the validation split and of training")
    adapt.add_argument("--base-weight", type=float, default=None, metavar="W",
                       help="share of the base model's weights blended into the published one (default 0.5; 0: the fine-tuned model as is)")
    adapt.add_argument("--hard-negatives", action="store_true",
                       help="pair each question with another consultation's reply that BM25 ranks high for it, as a negative")
    adapt.add_argument("--batch-size", type=int, default=64, metavar="N", help="pairs a training step")
    adapt.add_argument("--learning-rate", type=float, default=5e-5, metavar="LR", help="the optimizer's peak learning rate")
    adapt.add_argument("--skip-bad", action="store_true", help="skip bad files and lines, report them, go on")
    adapt.add_argument("--quiet", action="store_true", help="no progress output")
    adapt.set_defaults(run=_adapt)

    add = commands.add_parser("add", help="add or replace consultations (by id) in an index")
    _source_options(add)
    add.set_defaults(run=_add)

    delete = commands.add_parser("delete", help="remove consultations from an index")
    delete.add_argument("ids", nargs="+", metavar="ID")
    _index_option(delete)
    delete.add_argument("--quiet", action="store_true", help="no progress output")
    delete.set_defaults(run=_delete)

    refresh = commands.add_parser("refresh-stats", help="recompute a sharded index's BM25 statistics and rewrite its shards")
    _index_option(refresh)
    refresh.add_argument("--quiet", action="store_true", help="no progress output")
    refresh.set_defaults(run=_refresh_stats)

    verify = commands.add_parser("verify", help="check every file of an index against its manifest")
    _index_option(verify)
    verify.set_defaults(run=_verify)

    search = commands.add_parser("search", help="consultations relevant to a free-text question")
    search.add_argument("text", type=_unicode_text)
    _index_option(search)
    _k_option(search, 10)
    search.add_argument("--mode", choices=tuple(MODES), default="hybrid", help="ranking: both signals fused, or one alone")
    _filter_options(search)
    _explain_option(search)
    _format_option(search)
    search.set_defaults(run=_search)

    similar = commands.add_parser("similar", help="the Similar Q&A panel of a stored consultation")
    similar.add_argument("id")
    _index_option(similar)
    _k_option(similar, 4)
    _filter_options(similar)
    _explain_option(similar)
    _format_option(similar)
    similar.set_defaults(run=_similar)

    faq = commands.add_parser("related-faq", help="the Related FAQ topics of a free-text question or a stored consultation")
    faq.add_argument("text", nargs="?", type=_unicode_text, help="free text (or give --id)")
    faq.add_argument("--id", help="a stored consultation's id")
    _index_option(faq)
    _k_option(faq, 8)
    _format_option(faq)
    faq.set_defaults(run=_related_faq)

    bench = commands.add_parser("bench", help="relevance benchmarks on your own data")
    benches = bench.add_subparsers(required=True, metavar="BENCH")
    relevance = benches.add_parser("relevance", help="TREC-style evaluation of ranking methods")
    relevance.add_argument("--corpus", nargs="+", metavar="SOURCE", help="build the index from these first")
    relevance.add_argument("--index", required=True, metavar="DIR", help="index directory (built here with --corpus)")
    relevance.add_argument("--queries", required=True, type=Path, help="TSV (qid<TAB>text) or JSONL (qid, text)")
    relevance.add_argument("--qrels", required=True, type=Path, help="TREC qrels: qid 0 docid grade")
    relevance.add_argument("--methods", default=",".join(METHODS), help="comma-separated; all of them by default")
    relevance.add_argument("--threshold", type=int, default=2, help="lowest relevant grade")
    relevance.add_argument("--out", required=True, type=Path, help="directory for runs, results.md/json, results.png")
    relevance.add_argument("--title", default="relevance", help="title of the table and chart")
    relevance.add_argument("--cache", metavar="FILE", default=str(default_cache_path()), help="embedding cache for --corpus")
    relevance.add_argument("--precision", choices=PRECISIONS, default="auto", help="embedding precision for --corpus")
    relevance.set_defaults(run=_bench_relevance)
    panels = benches.add_parser("panels", help="stored Similar Q&A panel links recovered by `similar`")
    _index_option(panels)
    panels.set_defaults(run=_bench_panels)

    serve = commands.add_parser("serve", help="HTTP API, the Similar Q&A widget and a search page")
    _index_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only by default)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                       help="origin allowed to call the API from a browser (repeatable), e.g. https://clinic.example")
    serve.add_argument("--ray", metavar="ADDRESS",
                       help="serve on Ray Serve: an ingress and a deployment per shard; 'local' starts Ray here, "
                            "an address (host:port) joins a running cluster")
    serve.add_argument("--replicas", type=_positive, default=1, metavar="R", help="with --ray: replicas of each shard's deployment")
    serve.add_argument("--cpus-per-replica", type=float, default=0.5, metavar="CPUS", help="with --ray: CPUs Ray reserves per shard replica")
    serve.add_argument("--ingress-replicas", type=_positive, default=1, metavar="R", help="with --ray: replicas of the ingress (HTTP, query encoding)")
    serve.add_argument("--ingress-cpus", type=float, default=0.5, metavar="CPUS", help="with --ray: CPUs Ray reserves per ingress replica")
    serve.set_defaults(run=_serve)

    panels = commands.add_parser("panels", help="precompute the Similar Q&A panel of every consultation")
    _index_option(panels)
    panels.add_argument("--out", required=True, type=Path, help="JSONL file: one {id, panel} per consultation")
    _k_option(panels, 4)
    panels.add_argument("--batch", type=int, default=256, help="consultations per batch")
    panels.add_argument("--quiet", action="store_true", help="no progress bar")
    panels.set_defaults(run=_panels)

    listing = commands.add_parser("list", help="ids and titles of the indexed consultations")
    _index_option(listing)
    listing.set_defaults(run=_list)
    return parser


def _unicode_text(value: str) -> str:
    """A command-line text argument; bytes that are not UTF-8 are a usage error (exit 2)."""
    if not valid_unicode(value):
        raise argparse.ArgumentTypeError("not valid UTF-8 text")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has a real one (not for required or off-by-default options)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default in (None, False) or not action.option_strings:
            return action.help or ""
        return super()._get_help_string(action) or ""


class _Parser(argparse.ArgumentParser):
    """Every command's --help shows the defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _source_options(parser: argparse.ArgumentParser) -> None:
    """What `index` and `add` share: sources, the index, the cache, --skip-bad, --quiet."""
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    _index_option(parser)
    parser.add_argument("--cache", metavar="FILE", default=str(default_cache_path()),
                        help="embedding cache: only texts not in it are embedded")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="embedding precision (auto: bf16 where the CPU has bf16 hardware, else fp32)")
    parser.add_argument("--skip-bad", action="store_true", help="skip bad files and lines, report them, go on")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _index_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, metavar="DIR", help="index directory")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {value!r}")
    return number


def _k_option(parser: argparse.ArgumentParser, default: int) -> None:
    def positive(value: str) -> int:
        k = int(value)
        if k < 1:
            raise argparse.ArgumentTypeError("k must be at least 1")
        return k

    parser.add_argument("-k", type=positive, default=default, help="number of results")


def _filter_options(parser: argparse.ArgumentParser) -> None:
    """The filters of `search` and `similar` (search/filters.py)."""
    parser.add_argument("--department", help="only consultations of this department")
    parser.add_argument("--doctor", help="only consultations this doctor replied to")
    parser.add_argument("--since", type=_iso_date("--since"), metavar="YYYY-MM-DD", help="only consultations asked on or after this date")
    parser.add_argument("--until", type=_iso_date("--until"), metavar="YYYY-MM-DD", help="only consultations asked on or before this date")
    parser.add_argument("--source", help="only consultations read from this file (its path as indexed, or its name)")


def _iso_date(option: str):
    """An argparse type: an ISO date, else a usage error (exit 2) naming the option."""
    def parse(value: str) -> str:
        try:
            return iso_date(option, value)
        except FilterError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None

    return parse


def _filters(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in FILTERS}


def _explain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--explain", action="store_true",
                        help="show each hit's per-signal raw and normalised scores and their part of the fused score")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text", help="the panel as text, or hits as JSON")


def _read(args: argparse.Namespace, ray: RayRunner | None = None) -> list:
    """Read the sources of `index` and `add` (on Ray Data with a runner), reporting what --skip-bad skipped."""
    progress = not args.quiet
    result = read_sources(args.sources, skip_bad=args.skip_bad, progress=progress, ray=ray)
    for error in result.skipped:
        print(f"simqa: skipped: {error}", file=sys.stderr)
    if result.skipped:
        print(f"simqa: skipped {len(result.skipped)} bad input(s)", file=sys.stderr)
    if result.ignored_files and progress:
        print(f"simqa: passed over {len(result.ignored_files)} file(s) of other types", file=sys.stderr)
    return result.consultations


def _index(args: argparse.Namespace) -> int:
    progress = not args.quiet
    cache = None if args.no_cache else Path(args.cache)
    topics = read_topics(args.topics) if args.topics is not None else None  # before the sources: a bad file fails fast
    config = BuildConfig(model=args.model, vector_index=args.vector_index, progress=progress, cache=cache, precision=args.precision,
                         vectors=args.vectors, shards=args.shards, ray=args.ray, ray_actors=args.ray_actors, ray_cpus_per_actor=args.ray_cpus_per_actor,
                         topics=topics)
    consultations = _read(args, config.ray_runner())  # `index --ray`: the files are read on Ray Data too
    manifest = build_index(consultations, args.index, config)
    counts = manifest.counts
    shards = f" ({sharded.count(manifest)} shards)" if sharded.is_sharded(manifest) else ""
    print(f"indexed {counts['consultations']} consultations ({counts['excerpts']} panel excerpts, "
          f"{counts['reply_passages']} reply passages) into {args.index}{shards}")
    return 0


def _texts(args: argparse.Namespace) -> int:
    _check_output(args.out)
    consultations = _read(args)
    passages = vector_files.write_texts(consultations, args.out, PASSAGE_WORDS, MAX_PASSAGES)
    print(f"wrote the texts of {len(consultations)} consultations ({passages} reply passages) to {args.out}")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    from index.adapt import BASE_WEIGHT, adapt  # imported here: training libraries load slowly

    weight = BASE_WEIGHT if args.base_weight is None else args.base_weight
    report = adapt(_read(args), args.out, base=args.base, max_minutes=args.max_minutes, seed=args.seed, base_weight=weight,
                   batch_size=args.batch_size, learning_rate=args.learning_rate, hard_negatives=args.hard_negatives,
                   progress=not args.quiet)
    scores = ", ".join(f"{kind} {report.validation_before[kind]:.3f} -> {report.validation_after[kind]:.3f}" for kind in report.validation_after)
    print(f"adapted {report.base} on {sum(report.pairs.values()):,} pairs in {report.steps} steps ({report.seconds / 60:.1f} min, "
          f"{report.stopped}); validation MRR@10: {scores}; wrote {args.out} (simqa index --model {args.out})")
    return 0


def _refresh_stats(args: argparse.Namespace) -> int:
    directory = Path(args.index)
    if not sharded.is_sharded(Manifest.read(generations.current(directory))):
        raise SimqaError(f"{directory} is not sharded: its BM25 statistics are always exact")
    manifest = sharded.refresh(directory, BuildConfig(progress=not args.quiet))
    print(f"recomputed the BM25 statistics of {manifest.counts['consultations']} consultations over {sharded.count(manifest)} shards")
    return 0


def _add(args: argparse.Namespace) -> int:
    consultations = _read(args)
    config = BuildConfig(progress=not args.quiet, cache=Path(args.cache), precision=args.precision)
    before = _generation(args.index)
    manifest = update_index(args.index, upserts=consultations, config=config)
    held = manifest.counts["consultations"]
    if _generation(args.index) == before:
        print(f"unchanged: the index already holds these {len(consultations)} consultations as read ({held} in all)")
    else:
        print(f"added or replaced {len(consultations)}; the index holds {held} consultations")
    return 0


def _delete(args: argparse.Namespace) -> int:
    ids = list(dict.fromkeys(args.ids))  # an id named twice is deleted once
    manifest = update_index(args.index, deletes=ids, config=BuildConfig(progress=not args.quiet))
    print(f"deleted {len(ids)}; the index holds {manifest.counts['consultations']} consultations")
    return 0


def _generation(directory: str) -> Path | None:
    """The current generation of an index directory, or None if it has none (yet)."""
    path = Path(directory)
    return generations.current(path) if generations.is_index(path) else None


def _verify(args: argparse.Namespace) -> int:
    directory = Path(args.index)
    generation = generations.current(directory)
    manifest = Manifest.read(generation)
    manifest.verify(generation)
    print(f"{generation}: {len(manifest.files)} files match the manifest (sizes and SHA-256)")
    if sharded.is_sharded(manifest):
        for shard, shard_manifest in sharded.shard_generations(directory, manifest):
            print(f"{shard}: {len(shard_manifest.files)} files match the manifest (sizes and SHA-256)")
        drift = manifest.parameters["stats_changed"] / max(1, manifest.counts["consultations"])
        print(f"{sharded.count(manifest)} shards; BM25 statistics computed before {manifest.parameters['stats_changed']} "
              f"consultation changes ({drift:.1%} of the collection; refreshed above {sharded.REFRESH_AT:.0%}, "
              f"or by 'simqa refresh-stats')")
    return 0


def _search(args: argparse.Namespace) -> int:
    hits = Searcher.open(args.index).search(args.text, k=args.k, mode=args.mode, explain=args.explain, **_filters(args))
    _print_hits(hits, args.format)
    return 0


def _similar(args: argparse.Namespace) -> int:
    hits = Searcher.open(args.index).similar(args.id, k=args.k, explain=args.explain, **_filters(args))
    _print_hits(hits, args.format)
    return 0


def _related_faq(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.id is None):
        raise SimqaError("give a text or --id, not both")
    topics = Searcher.open(args.index).related_faq(text=args.text, consultation_id=args.id, k=args.k)
    if args.format == "json":
        print(json.dumps([t.to_dict() for t in topics], ensure_ascii=False, indent=2))
    elif topics:
        print(render_related_faq(topics))
    else:
        print("no Related FAQ topics (the index holds none, or none matched)")
    return 0


def _bench_relevance(args: argparse.Namespace) -> int:
    if args.corpus:
        result = read_sources(args.corpus, progress=True)
        build_index(result.consultations, args.index, BuildConfig(cache=Path(args.cache), precision=args.precision))
    searcher = Searcher.open(args.index)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SimqaError(f"unknown methods {', '.join(unknown)}; known: {', '.join(METHODS)}")
    bench_relevance(searcher, read_queries(args.queries), read_qrels(args.qrels), methods, args.out, args.threshold, args.title)
    print((args.out / "results.md").read_text(encoding="utf-8"), end="")
    print(f"runs, results.json and results.png in {args.out}")
    return 0


def _bench_panels(args: argparse.Namespace) -> int:
    rows = panel_recovery(Searcher.open(args.index))
    for consultation_id, found, total in rows:
        print(f"{consultation_id}\t{found}/{total}")
    print(f"recovered {sum(r[1] for r in rows)} of {sum(r[2] for r in rows)} panel links")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.ray:
        from search.served import serve_on_ray

        serve_on_ray(Path(args.index), args.ray, args.host, args.port, replicas=args.replicas, cpus_per_replica=args.cpus_per_replica,
                     ingress_replicas=args.ingress_replicas, ingress_cpus=args.ingress_cpus, allow_origins=args.allow_origin)
        return 0
    from search.server import serve

    serve(Path(args.index), args.host, args.port, args.allow_origin)
    return 0


def _panels(args: argparse.Namespace) -> int:
    _check_output(args.out)
    searcher = Searcher.open(args.index)
    ids = searcher.ids()
    partial = args.out.with_name(args.out.name + ".partial")
    with partial.open("w", encoding="utf-8") as f, tqdm(total=len(ids), unit="panel", disable=args.quiet) as bar:
        for start in range(0, len(ids), args.batch):
            batch = ids[start : start + args.batch]
            for consultation_id, hits in zip(batch, searcher.similar_many(batch, k=args.k)):
                f.write(json.dumps({"id": consultation_id, "panel": [h.to_dict() for h in hits]}, ensure_ascii=False) + "\n")
            bar.update(len(batch))
    partial.replace(args.out)
    print(f"wrote {len(ids)} panels to {args.out}")
    return 0


def _check_output(path: Path) -> None:
    """Refuse an output file inside an index directory (it would damage the index) or in a
    folder that does not exist; the file itself is written beside and renamed into place."""
    target = path.resolve()
    if not target.parent.is_dir():
        raise SimqaError(f"--out {path}: the folder {target.parent} does not exist")
    if target.is_dir():
        raise SimqaError(f"--out {path}: is a directory; name a file")
    for folder in target.parents:
        if generations.is_index(folder):
            raise SimqaError(f"--out {path}: inside the index directory {folder}; write it elsewhere")


def _list(args: argparse.Namespace) -> int:
    for consultation_id, title in Searcher.open(args.index).titles():
        print(f"{terminal_safe(consultation_id)}\t{terminal_safe(title)}")
    return 0


def _print_hits(hits: list[Hit], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    elif hits:
        print("Similar Q&A\n")
        print(render_panel(hits))
    else:
        print("no matching consultations")


if __name__ == "__main__":
    sys.exit(main())
