"""Merge Similar Q&A excerpts into the full consultations they were cut from.

A panel entry shows the first ~200 characters of another consultation's question. When that
consultation is in the corpus too (seed 000's panel links to seed 003), it must be indexed once:
the excerpt is dropped and the panel link points at the full consultation. An excerpt matches a
full consultation when the doctor is the same and its question text is a prefix of the full
question (white space and case folded). Excerpts seen in several panels are kept once.
"""

from __future__ import annotations

from dataclasses import replace

from index.consultation import Consultation, PanelLink, normalize_space

# Excerpts shorter than this are too unspecific to merge on a prefix.
MIN_PREFIX = 40


def _key(doctor: str, question: str) -> tuple[str, str]:
    return normalize_space(doctor).lower(), normalize_space(question).lower()[:MIN_PREFIX]


def merge_excerpts(consultations: list[Consultation]) -> list[Consultation]:
    """Drop excerpts that duplicate a full consultation or each other; relink panels to survivors."""
    full: dict[tuple[str, str], list[Consultation]] = {}
    for c in consultations:
        if not c.excerpt:
            full.setdefault(_key(c.doctor, c.question), []).append(c)

    target: dict[str, str] = {}  # excerpt id -> id of the consultation that stands for it
    kept: list[Consultation] = []
    for c in consultations:
        if not c.excerpt:
            kept.append(c)
            continue
        if c.id in target:
            continue
        text = normalize_space(c.question).lower()
        match = None
        if len(text) >= MIN_PREFIX:
            match = next((f for f in full.get(_key(c.doctor, c.question), [])
                          if normalize_space(f.question).lower().startswith(text)), None)
        target[c.id] = match.id if match else c.id
        if match is None:
            kept.append(c)

    return [replace(c, panel=[PanelLink(p.title, target.get(p.id, p.id)) for p in c.panel]) if c.panel else c
            for c in kept]
