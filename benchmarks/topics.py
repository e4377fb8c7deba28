"""Related FAQ benchmark: MedQuAD's foci as the topic list, LiveQA-Med questions as queries.

Topics: every MedQuAD Focus (case folded: one topic per name), with the union of its documents'
FocusAnnotations synonyms, the UMLS semantic group its documents give most as the department,
and its first document's url. The index is the main benchmark's corpus with each consultation's
Related FAQ list made of its document's focus, which is what a site's own lists are: the topics
of a page. Relevant topics of a question: the foci of the MedQuAD answers judged 3-Incomplete or
4-Excellent for it. The questions' own FOCUS and TYPE annotations are never read.

    python -m benchmarks.topics [--out benchmarks/results/topics] [--cache FILE]

Prints and writes Success@1, Success@5 and MRR@10 per signal alone and for the default, on the
original questions and on the NLM summaries, on pages with their Related FAQ lists and without.
"""

from __future__ import annotations

import argparse
import json
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import replace
from pathlib import Path

import ir_measures
import numpy as np
from ir_measures import RR, Success

from benchmarks.liveqa import load_qrels, load_queries
from benchmarks.medquad import MEDQUAD, load_medquad
from benchmarks.speed import cpu_name
from index.build import BuildConfig, build_index
from index.consultation import FaqTopic
from index.topics import Topic, read_topics, topic_key
from search.searcher import Searcher
from search.topics import SIGNALS

RELEVANT_GRADE = 3  # 3-Incomplete or 4-Excellent
MEASURES = (Success @ 1, Success @ 5, RR @ 10)
# "names + dense" is what the default becomes where no neighbour votes (no list, and no title naming a topic).
RUNS = {"names": ("names",), "dense": ("dense",), "votes": ("votes",), "names + dense": ("names", "dense"), "default": SIGNALS}
# Pages with their Related FAQ lists (each consultation lists its document's focus), and pages
# without (a consultation votes for the topics its title names: MedQuAD's titles are the foci
# themselves, so this shape shows the rule at its best; a site's titles say more than a topic).
SHAPES = {"lists": True, "titles only": False}


def medquad_topics(root: Path = MEDQUAD) -> list[Topic]:
    """One topic per distinct focus, in file order."""
    names: dict[str, str] = {}
    synonyms: dict[str, dict[str, None]] = {}
    groups: dict[str, Counter] = {}
    urls: dict[str, str] = {}
    for path in sorted(root.glob("*/*.xml")):
        document = ET.parse(path).getroot()
        focus = " ".join((document.findtext("Focus") or "").split())
        if not focus:
            continue
        key = topic_key(focus)
        names.setdefault(key, focus)
        urls.setdefault(key, document.get("url", ""))
        synonyms.setdefault(key, {}).update((" ".join(s.text.split()), None) for s in document.iter("Synonym") if s.text and s.text.strip())
        groups.setdefault(key, Counter()).update(g.text.strip() for g in document.iter("SemanticGroup") if g.text and g.text.strip())
    return [Topic(names[k], groups[k].most_common(1)[0][0] if groups[k] else "", [s for s in synonyms[k] if topic_key(s) != k], urls[k])
            for k in names]


def write_topics_file(path: Path, topics: list[Topic]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for t in topics:
            f.write(json.dumps({"topic": t.topic, "department": t.department, "synonyms": t.synonyms, "url": t.url}, ensure_ascii=False) + "\n")


def topic_qrels(topics: list[Topic]) -> dict[str, dict[str, int]]:
    """qid -> {topic key: 1} for the foci of its answers judged 3 or 4."""
    focus = {c.id: topic_key(c.title) for c in load_medquad()}
    known = {t.key for t in topics}
    out: dict[str, dict[str, int]] = {}
    for qid, answer, grade in load_qrels():
        if grade >= RELEVANT_GRADE and focus.get(answer) in known:
            out.setdefault(qid, {})[focus[answer]] = 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/topics"))
    parser.add_argument("--work", type=Path, default=Path("build/topics"))
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache/embeddings.sqlite"))
    args = parser.parse_args()

    topics_file = args.work / "topics.jsonl"
    write_topics_file(topics_file, medquad_topics())
    topics = read_topics(topics_file)  # as a user's file is read
    qrels = topic_qrels(topics)
    results: dict = {"topics": len(topics), "names": sum(len(t.names) for t in topics), "queries_with_relevant": len(qrels),
                     "cpu": cpu_name()}
    for shape, lists in SHAPES.items():
        consultations = [replace(c, related_faq=[FaqTopic(c.title, "")] if lists else []) for c in load_medquad()]
        directory = args.work / ("index" if lists else "index-no-lists")
        started = time.perf_counter()
        build_index(consultations, directory, BuildConfig(cache=args.cache, precision="fp32", topics=topics, progress=False))
        results.setdefault("build_seconds", round(time.perf_counter() - started, 1))
        results["settings" if lists else "titles_only"] = run_settings(Searcher.open(directory, query_vectors=0), qrels, shape)
    texts = [t for setting in ("original", "summary") for t in load_queries(setting).values()]
    results["page"] = page_times(args.work / "index", texts)
    print("page", results["page"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(_markdown(results), encoding="utf-8")
    print(_markdown(results))


def run_settings(searcher: Searcher, qrels: dict[str, dict[str, int]], shape: str) -> dict:
    """Success@1, Success@5, MRR@10 and ms/query of every run on original questions and summaries;
    every run encodes (the searcher keeps no query vectors): ms/query as a fresh text costs."""
    searcher.related_faq(text="warm up: the query encoder loads and name matching is set up here", k=1)
    settings = {}
    for setting in ("original", "summary"):
        queries = {q: t for q, t in load_queries(setting).items() if q in qrels}
        table = {}
        for run, signals in RUNS.items():
            started = time.perf_counter()
            ranked = {q: searcher.related_faq(text, k=10, signals=signals) for q, text in queries.items()}
            seconds = (time.perf_counter() - started) / len(queries)
            scored = [ir_measures.ScoredDoc(q, topic_key(h.topic), -h.rank) for q, hits in ranked.items() for h in hits]
            measured = ir_measures.calc_aggregate(MEASURES, _qrels(qrels), scored)
            table[run] = {str(m): round(measured[m], 4) for m in MEASURES} | {"ms_per_query": round(seconds * 1000, 1)}
            print(shape, setting, run, table[run], flush=True)
        settings[setting] = table
    return settings


def page_times(index: Path, texts: list[str], rounds: int = 2) -> dict:
    """A search page's two requests for one question, as search/static/index.html sends them at
    once (search k=10, related_faq k=8), run on two threads as the server runs requests: p50 ms
    of the pair with no query vectors kept, and with them kept (search/query_vectors.py) on the
    first view of each question (the two requests share one encoding) and the next view."""
    kept_first, kept_next, none = [], [], []
    with ThreadPoolExecutor(max_workers=2) as pool:
        def page(searcher: Searcher, text: str) -> float:
            started = time.perf_counter()
            asked = [pool.submit(searcher.search, text, 10), pool.submit(searcher.related_faq, text, None, 8)]
            for request in asked:
                request.result()
            return time.perf_counter() - started

        plain = Searcher.open(index, query_vectors=0)
        page(plain, "warm up: the query encoder loads and name matching is set up here")
        for _ in range(rounds):
            kept = Searcher.open(index, encoder=plain.query_encoder())  # the loaded model, no vectors kept yet
            page(kept, "warm up: name matching is set up here")
            none += [page(plain, t) for t in texts]
            kept_first += [page(kept, t) for t in texts]
            kept_next += [page(kept, t) for t in texts]
    p50 = {name: round(float(np.median(v)) * 1000, 1) for name, v in
           (("no vectors kept", none), ("kept, first view", kept_first), ("kept, next view", kept_next))}
    return {"questions": len(texts), "rounds": rounds, "p50_ms": p50}


def _qrels(qrels: dict[str, dict[str, int]]) -> list:
    return [ir_measures.Qrel(q, d, g) for q, docs in qrels.items() for d, g in docs.items()]


def _markdown(results: dict) -> str:
    lines = [f"# Related FAQ: LiveQA-Med 2017 questions -> MedQuAD foci ({results['topics']:,} topics, {results['names']:,} names)",
             "", f"{results['queries_with_relevant']} questions have a relevant topic (a focus of an answer judged 3 or 4). "
             f"ms/query: {results.get('cpu', 'CPU not recorded')}, 2 cores, each query encoded.", ""]
    for setting, table in results["settings"].items():
        lines += [f"## {setting} questions", "", "| run | Success@1 | Success@5 | MRR@10 | ms/query |", "|---|---|---|---|---|"]
        for run, row in table.items():
            lines.append(f"| {run} | {row['Success@1']:.3f} | {row['Success@5']:.3f} | {row['RR@10']:.3f} | {row['ms_per_query']} |")
        lines.append("")
    if "titles_only" in results:
        lines += ["## Pages without Related FAQ lists", "",
                  "The same corpus with no consultation's list: a consultation votes for the topics its title names best "
                  "(MedQuAD's titles are the foci themselves, so this is the rule at its best).", "",
                  "| questions | run | Success@1 | Success@5 | MRR@10 | ms/query |", "|---|---|---|---|---|---|"]
        for setting, table in results["titles_only"].items():
            for run, row in table.items():
                lines.append(f"| {setting} | {run} | {row['Success@1']:.3f} | {row['Success@5']:.3f} | {row['RR@10']:.3f} | "
                             f"{row['ms_per_query']} |")
        lines.append("")
    page = results.get("page")
    if page:
        lines += ["## A search page's two requests", "",
                  f"Search (k=10) and Related FAQ (k=8) for one question at once, as the search page sends them, on two threads "
                  f"(`page_times`): p50 ms over {page['questions']} questions x {page['rounds']} rounds.", "",
                  "| query vectors | p50 ms a page |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in page["p50_ms"].items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
