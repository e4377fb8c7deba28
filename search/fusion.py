"""Fusion: one score from several ranking signals, and the presets behind each search mode.

Signals are scored per candidate; NaN means the signal has nothing to say about a candidate (no
query term matched, no reply text). Two methods:
- "weighted": each signal's scores are normalised, then averaged with the signal weights;
- "rrf": reciprocal rank fusion, sum of weight / (rrf_k + rank); needs no score calibration.
Normalisations for "weighted" (a candidate without the signal gets the lowest value):
- "minmax": (score - min) / (max - min) over the query's candidates;
- "zscore": (score - mean) / std, mean and std of the signal's own top `depth` scores for the
  query: a signal that sees one clear winner gives it a long lead, one whose top scores are
  all alike gives none a lead.
A mode with one active signal ranks by that signal's own score.

The default depends on what the index holds (benchmarks/README.md, "One default across
shapes"). With replies: min-max, the question by words and by meaning and the reply by meaning,
equal weights. On an index of questions alone: z-scores, BM25 at half the question vector's
weight. There a reworded question is the usual match: the vector finds it with a clear lead,
which z-scores keep and min-max squeezes into the same 0..1 as BM25's best guess.
Statistics are per query over the candidates, which a sharded index gathers from all shards
before fusing, so it ranks exactly as one index would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# bm25: BM25 of the question field plus BM25 of the reply field; bm25_question: the first alone;
# dense_question: cosine to the question vector; dense_reply: best cosine over reply passages.
SIGNALS = ("bm25", "bm25_question", "dense_question", "dense_reply")
DENSE = {"dense_question", "dense_reply"}
METHODS = ("weighted", "rrf")
NORMALIZATIONS = ("zscore", "minmax")

# The default hybrid on an index with replies (benchmarks/README.md): BM25 over the reply adds
# noise once the reply is matched by meaning (long replies mention much).
DEFAULT_WEIGHTS = {"bm25_question": 1.0, "dense_question": 1.0, "dense_reply": 1.0}
# ...and on an index of questions alone (with z-scores), chosen leaving each benchmark out in turn.
QUESTION_ONLY_WEIGHTS = {"bm25_question": 0.5, "dense_question": 1.0}


@dataclass(frozen=True)
class Fusion:
    """How candidates are gathered (depth per signal) and how their signals are combined."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    method: str = "weighted"
    normalization: str = "minmax"
    rrf_k: int = 60
    depth: int = 100
    # The fusion to use instead on an index that holds no reply text (None: this one).
    question_only: Fusion | None = None

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; known: {', '.join(SIGNALS)}")
        if self.method not in METHODS:
            raise ValueError(f"fusion method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, not {self.normalization!r}")

    @property
    def active(self) -> dict[str, float]:
        """Signals with a non-zero weight."""
        return {s: w for s, w in self.weights.items() if w}

    def for_index(self, has_replies: bool) -> Fusion:
        """The fusion that applies to an index with or without reply text."""
        return self if has_replies or self.question_only is None else self.question_only


MODES: dict[str, Fusion] = {
    "bm25": Fusion(weights={"bm25": 1.0}),
    "dense": Fusion(weights={"dense_question": 1.0}),
    "hybrid": Fusion(question_only=Fusion(weights=dict(QUESTION_ONLY_WEIGHTS), normalization="zscore")),
}


def contributions(scores: dict[str, np.ndarray], fusion: Fusion) -> dict[str, np.ndarray]:
    """Each active signal's part of the fused score, per candidate.

    The fused score is their sum; `--explain` shows them. With one active signal its part is
    its own score.
    """
    return dict(zip(fusion.active, _parts(scores, fusion))) if fusion.active else {}


def fuse(scores: dict[str, np.ndarray], fusion: Fusion) -> np.ndarray:
    """Fused score per candidate (higher is better) from each active signal's scores."""
    return _parts(scores, fusion).sum(axis=0) if fusion.active else np.zeros(0)


def _parts(scores: dict[str, np.ndarray], fusion: Fusion) -> np.ndarray:
    """contributions() as one array, a row per active signal: the signals are normalised and
    weighted together (min-max in a handful of numpy calls for all of them, not a dozen each:
    21 against 52 µs for a query's ~420 candidates, the same bits)."""
    active = fusion.active
    values = np.array([scores[signal] for signal in active], dtype=np.float64)
    if len(active) == 1:
        return np.nan_to_num(values, nan=0.0)
    weights = np.array(list(active.values()), dtype=np.float64)[:, None]
    if fusion.method == "rrf":
        return weights * np.array([reciprocal_rank(row, fusion.rrf_k) for row in values])
    if fusion.normalization == "minmax":
        normal = _minmax(values)
    else:
        normal = np.array([normalized(row, fusion) for row in values])
    return weights / weights.sum() * normal


def explain(scores: dict[str, np.ndarray], fusion: Fusion, parts: dict[str, np.ndarray], at: int) -> dict[str, dict[str, float | None]]:
    """Why candidate `at` scored what it did: per active signal its raw score, the value the
    fusion made of it (normalised score, reciprocal rank, or the raw score alone), its weight
    and its part of the fused score."""
    total = sum(fusion.active.values())
    out = {}
    for signal, weight in fusion.active.items():
        raw = float(scores[signal][at])
        part = float(parts[signal][at])
        if len(parts) == 1:
            value = part
        elif fusion.method == "rrf":
            value = part / weight
        else:
            value = part * total / weight
        out[signal] = {"raw": None if np.isnan(raw) else raw, "normalized": value, "weight": weight, "contribution": part}
    return out


def normalized(values: np.ndarray, fusion: Fusion) -> np.ndarray:
    """One signal's scores under the fusion's normalization; NaN (no evidence) gets the lowest
    value (0 for min-max)."""
    if fusion.normalization == "minmax":
        return _minmax(values[None])[0].astype(np.float64)
    out = np.zeros(len(values), dtype=np.float64)
    valid = ~np.isnan(values)
    if not valid.any():
        return out
    present = values[valid]
    top = np.partition(present, len(present) - fusion.depth)[-fusion.depth:] if len(present) > fusion.depth else present
    spread = top.std()
    out[valid] = (present - top.mean()) / spread if spread > 0 else 0.0
    out[~valid] = out[valid].min()
    return out


def _minmax(values: np.ndarray) -> np.ndarray:
    """Min-max of each row over its non-NaN values, in the array's own precision:
    (score - min) / (max - min), 1 where every value is the same, 0 for NaN."""
    low = np.fmin.reduce(values, axis=1, keepdims=True, initial=np.nan)  # fmin and fmax pass NaN over
    span = np.fmax.reduce(values, axis=1, keepdims=True, initial=np.nan) - low
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, (values - low) / span, 1.0)
    out[np.isnan(values)] = 0.0
    return out


def proposed(scores: dict[str, np.ndarray], depth: int) -> np.ndarray:
    """Positions of the candidates these signals propose: each one's top `depth` (a signal with
    no evidence for a candidate proposes none). Scores gathered from several sources (every
    signal of an offline pool, the shards of a collection) hold more than that; fusing over
    exactly these ranks as one search over one index would."""
    keep = np.zeros(len(next(iter(scores.values()))), dtype=bool)
    for values in scores.values():
        valid = np.flatnonzero(~np.isnan(values))
        keep[valid[np.argsort(-values[valid], kind="stable")[:depth]]] = True
    return np.flatnonzero(keep)


def reciprocal_rank(values: np.ndarray, k: int) -> np.ndarray:
    """RRF's 1 / (k + rank) of each candidate a signal scores (ties in candidate order), 0 elsewhere."""
    out = np.zeros(len(values), dtype=np.float64)
    valid = ~np.isnan(values)
    order = np.flatnonzero(valid)[np.argsort(-values[valid], kind="stable")]
    out[order] = 1.0 / (k + np.arange(1, len(order) + 1))
    return out
