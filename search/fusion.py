"""Fusion: one score from several ranking signals, and the presets behind each search mode.

Signals are scored per candidate; NaN means the signal has nothing to say about a candidate (no
query term matched, no reply text). Two methods, chosen by what the scores mean:
- "rrf": reciprocal rank fusion, sum of weight / (rrf_k + rank); needs no score calibration.
- "weighted": min-max normalise each signal over the candidates, then a weighted mean.
A mode with one active signal ranks by that signal's own score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# bm25: BM25 of the question field plus BM25 of the reply field; bm25_question: the first alone;
# dense_question: cosine to the question vector; dense_reply: best cosine over reply passages.
SIGNALS = ("bm25", "bm25_question", "dense_question", "dense_reply")
DENSE = {"dense_question", "dense_reply"}

# The default hybrid, chosen on LiveQA-Med by cross-validation (benchmarks/README.md): the
# question matched lexically and semantically, the reply semantically, equally weighted.
# BM25 over the reply adds noise once the reply is matched by meaning: long replies mention much.
DEFAULT_WEIGHTS = {"bm25_question": 1.0, "dense_question": 1.0, "dense_reply": 1.0}


@dataclass(frozen=True)
class Fusion:
    """How candidates are gathered (depth per signal) and how their signals are combined."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    method: str = "weighted"
    rrf_k: int = 60
    depth: int = 100

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; known: {', '.join(SIGNALS)}")
        if self.method not in ("rrf", "weighted"):
            raise ValueError(f"fusion method must be 'rrf' or 'weighted', not {self.method!r}")

    @property
    def active(self) -> dict[str, float]:
        """Signals with a non-zero weight."""
        return {s: w for s, w in self.weights.items() if w}


MODES: dict[str, Fusion] = {
    "bm25": Fusion(weights={"bm25": 1.0}),
    "dense": Fusion(weights={"dense_question": 1.0}),
    "hybrid": Fusion(),
}


def fuse(scores: dict[str, np.ndarray], fusion: Fusion) -> np.ndarray:
    """Fused score per candidate (higher is better) from each active signal's scores."""
    active = fusion.active
    if len(active) == 1:
        return np.nan_to_num(scores[next(iter(active))], nan=0.0)
    n = len(next(iter(scores.values())))
    fused = np.zeros(n, dtype=np.float64)
    for signal, weight in active.items():
        values = np.asarray(scores[signal], dtype=np.float64)
        valid = ~np.isnan(values)
        if not valid.any():
            continue
        if fusion.method == "rrf":
            order = np.flatnonzero(valid)[np.argsort(-values[valid], kind="stable")]
            fused[order] += weight / (fusion.rrf_k + np.arange(1, len(order) + 1))
        else:
            low, high = values[valid].min(), values[valid].max()
            fused[valid] += weight * ((values[valid] - low) / (high - low) if high > low else 1.0)
    if fusion.method == "weighted":
        fused /= sum(active.values())
    return fused
