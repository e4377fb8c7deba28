"""Writers of benchmark files in the formats `simqa index` and `simqa bench relevance` read."""

from __future__ import annotations

import json
from pathlib import Path

from index.consultation import Consultation


def write_jsonl(path: Path, consultations: list[Consultation]) -> None:
    """Consultations as simqa JSONL (empty fields and read-time fields left out)."""
    with path.open("w", encoding="utf-8") as f:
        for c in consultations:
            record = {k: v for k, v in c.to_dict().items() if v and k not in ("source", "panel", "related_faq", "excerpt")}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_queries(path: Path, queries: dict[str, str]) -> None:
    """qid<TAB>text per line."""
    path.write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()), encoding="utf-8")


def write_qrels(path: Path, qrels: list[tuple[str, str, int]]) -> None:
    """TREC qrels: qid 0 docid grade."""
    path.write_text("".join(f"{q} 0 {d} {g}\n" for q, d, g in qrels), encoding="utf-8")
