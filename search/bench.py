"""The relevance harness users run on their own data: `simqa bench relevance` and `simqa bench panels`.

relevance: every method ranks every query; one TREC run file per method, metrics from
ir-measures (trec_eval's definitions), a results table (markdown and JSON) and a bar chart.
Grades at or above `threshold` are relevant, with gain grade - threshold + 1 for nDCG (so
LiveQA's 1-Incorrect..4-Excellent with threshold 2 give gains 0..3). AvgScore is the TREC LiveQA
score: the first result's grade minus 1 (1..4 -> 0..3), unjudged counting 0; no library has it.
judged@10 is the share of the top 10 that has a judgment: pooled qrels are incomplete.

panels: how many links of the stored Similar Q&A panels `similar()` recovers in its top k.
"""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
from ir_measures import AP, RR, Judged, P, R, nDCG

from index.errors import ParseError
from search.fusion import DEFAULT_WEIGHTS, MODES, SIGNALS, Fusion
from search.searcher import Searcher

MEASURES = {"nDCG@10": nDCG @ 10, "MAP@10": AP @ 10, "MRR@10": RR @ 10, "P@1": P @ 1, "R@100": R @ 100, "judged@10": Judged @ 10}
COLUMNS = ("AvgScore", *MEASURES)
RUN_DEPTH = 100

# What `--methods` can name: each signal alone, the default's signals fused by RRF and by
# z-scores, "minmax" (the default's part for indexes with replies, on every index: the default
# before question-only indexes had their own), and the default.
METHODS: dict[str, Fusion] = {
    **{signal: Fusion(weights={signal: 1.0}) for signal in SIGNALS},
    "rrf": Fusion(weights=dict(DEFAULT_WEIGHTS), method="rrf"),
    "zscore": Fusion(weights=dict(DEFAULT_WEIGHTS), normalization="zscore"),
    "minmax": Fusion(weights=dict(DEFAULT_WEIGHTS)),
    "default": MODES["hybrid"],
}
# The default's ranking with duplicate questions kept (search(distinct=False)): what folding them
# into one panel entry costs on a collection whose judgments count every copy.
UNFOLDED = "default-unfolded"
METHODS[UNFOLDED] = MODES["hybrid"]


def read_queries(path: Path) -> dict[str, str]:
    """qid -> text from TSV (`qid<TAB>text`) or JSONL (`{"qid": ..., "text": ...}`)."""
    queries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            try:
                record = json.loads(line)
                qid, text = str(record["qid"]), record["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ParseError(str(path), number, "line", 'expected {"qid": ..., "text": ...}') from None
        else:
            qid, tab, text = line.partition("\t")
            if not tab:
                raise ParseError(str(path), number, "line", "expected qid<TAB>text")
        if not str(text).strip():
            raise ParseError(str(path), number, "text", "empty query")
        queries[qid.strip()] = " ".join(str(text).split())
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels `qid 0 docid grade` -> {qid: {docid: grade}}."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            raise ParseError(str(path), number, "line", "expected 'qid 0 docid grade' with an integer grade")
        qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return qrels


def run_method(searcher: Searcher, queries: dict[str, str], fusion: Fusion, depth: int = RUN_DEPTH,
               distinct: bool = True) -> dict[str, list[tuple[str, float]]]:
    """qid -> ranked (docid, score), through the same search() users call."""
    return {qid: [(h.id, h.score) for h in searcher.search(text, k=depth, fusion=fusion, distinct=distinct)]
            for qid, text in queries.items()}


def _judged(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]], threshold: int):
    """(judged qrels, graded gains, ranked run) as ir-measures takes them."""
    judged = {q: d for q, d in qrels.items() if q in run}
    gains = {q: {doc: max(0, grade - threshold + 1) for doc, grade in docs.items()} for q, docs in judged.items()}
    # Ranks, not raw scores, decide: fusion ties are broken by rank as search() returned them.
    ranked = {q: {doc: float(len(hits) - i) for i, (doc, _) in enumerate(hits)} for q, hits in run.items() if q in judged and hits}
    return judged, gains, ranked


def per_query(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]], threshold: int = 2,
              measure: str = "nDCG@10") -> dict[str, float]:
    """One measure of every judged query (0 where the run has no results for it), for paired comparisons."""
    judged, gains, ranked = _judged(run, qrels, threshold)
    values = dict.fromkeys(judged, 0.0)
    for metric in ir_measures.iter_calc([MEASURES[measure]], gains, ranked):
        values[metric.query_id] = metric.value
    return values


def evaluate(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]], threshold: int = 2) -> dict[str, float]:
    """Mean of every measure over the queries that have judgments."""
    judged, gains, ranked = _judged(run, qrels, threshold)
    # Per query, then the mean over every judged query: one the run has no results for counts 0
    # (trec_eval would leave it out, and ir-measures' judged@k divides by zero on it).
    totals = dict.fromkeys(MEASURES.values(), 0.0)
    for metric in ir_measures.iter_calc(list(MEASURES.values()), gains, ranked):
        totals[metric.measure] += metric.value
    result = {"AvgScore": avg_score(run, judged)}
    result.update({name: totals[measure] / len(judged) if judged else 0.0 for name, measure in MEASURES.items()})
    return result


def avg_score(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]]) -> float:
    """TREC LiveQA average score: the top result's grade - 1, unjudged 0, over judged queries."""
    top = [max(qrels[q].get(run[q][0][0], 1) - 1, 0) if run.get(q) else 0 for q in qrels]
    return sum(top) / len(top) if top else 0.0


def write_run(path: Path, run: dict[str, list[tuple[str, float]]], name: str) -> None:
    """TREC run format: qid Q0 docid rank score name."""
    with path.open("w", encoding="utf-8") as f:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(hits, 1):
                f.write(f"{qid} Q0 {doc} {rank} {score:.6f} {name}\n")


def read_run(path: Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file (as write_run writes it) back into qid -> ranked (docid, score)."""
    run: dict[str, list[tuple[str, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 6:
            raise ParseError(str(path), number, "line", "expected 'qid Q0 docid rank score name'")
        run.setdefault(parts[0], []).append((parts[2], float(parts[4])))
    return run


def bench_relevance(
    searcher: Searcher,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    methods: list[str],
    out: Path,
    threshold: int = 2,
    title: str = "relevance",
) -> dict[str, dict[str, float]]:
    """Run, evaluate and report every method; returns {method: {measure: value}}."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in methods:
        run = run_method(searcher, queries, METHODS[name], distinct=name != UNFOLDED)
        write_run(out / f"{name}.run", run, name)
        results[name] = evaluate(run, qrels, threshold)
    judged_queries = sum(1 for q in queries if q in qrels)
    meta = {"title": title, "queries": len(queries), "judged_queries": judged_queries, "threshold": threshold,
            "documents": len(searcher), "model": searcher.manifest.model}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(results_table(results, meta), encoding="utf-8")
    bar_chart(results, out / "results.png", title)
    return results


def results_table(results: dict[str, dict[str, float]], meta: dict) -> str:
    """Markdown: one row per method, best value of each column in bold."""
    best = {c: max(r[c] for r in results.values()) for c in COLUMNS}
    lines = [
        f"### {meta['title']}: {meta['judged_queries']} judged queries of {meta['queries']}, "
        f"{meta['documents']} documents, relevant = grade >= {meta['threshold']}",
        "",
        "| method | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name, row in results.items():
        cells = [f"**{row[c]:.3f}**" if row[c] == best[c] and len(results) > 1 else f"{row[c]:.3f}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """Grouped bars of nDCG@10, MAP@10, MRR@10, P@1 and AvgScore/3 per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("nDCG@10", "MAP@10", "MRR@10", "P@1", "AvgScore")
    width = 0.8 / len(results)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(columns)), 4))
    for i, (name, row) in enumerate(results.items()):
        values = [row[c] / 3 if c == "AvgScore" else row[c] for c in columns]
        axes.bar([x + i * width for x in range(len(columns))], values, width, label=name)
    axes.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(columns))])
    axes.set_xticklabels([c if c != "AvgScore" else "AvgScore/3" for c in columns])
    axes.set_ylim(0, 1)
    axes.set_title(title)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def panel_recovery(searcher: Searcher, fusion: Fusion | None = None) -> list[tuple[str, int, int]]:
    """(id, panel links recovered in similar()'s top k, k) for each consultation with a panel.

    Only links to consultations in the index count; k is the number of such links.
    """
    out = []
    for consultation in searcher.consultations():  # one read, not one per id
        links = {p.id for p in consultation.panel if p.id in searcher}
        if links:
            found = {h.id for h in searcher.similar(consultation.id, k=len(links), fusion=fusion)}
            out.append((consultation.id, len(links & found), len(links)))
    return out
