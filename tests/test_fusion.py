"""Fusion arithmetic on hand-made scores."""

import math

import numpy as np
import pytest

from search.fusion import Fusion, fuse

NAN = math.nan


def test_rrf_sums_reciprocal_ranks_and_skips_missing():
    scores = {"bm25": np.array([3.0, NAN, 1.0]), "dense_question": np.array([0.1, 0.9, 0.5])}
    fused = fuse(scores, Fusion(weights={"bm25": 1.0, "dense_question": 1.0}, method="rrf", rrf_k=60))
    np.testing.assert_allclose(fused, [1 / 61 + 1 / 63, 1 / 61, 1 / 62 + 1 / 62])


def test_weighted_min_max_mean():
    scores = {"bm25": np.array([10.0, 0.0, 5.0]), "dense_question": np.array([0.2, 0.6, 0.4])}
    fused = fuse(scores, Fusion(weights={"bm25": 3.0, "dense_question": 1.0}, method="weighted"))
    np.testing.assert_allclose(fused, [(3 * 1 + 0) / 4, (0 + 1) / 4, (3 * 0.5 + 0.5) / 4])


def test_single_signal_keeps_its_own_score():
    scores = {"bm25": np.array([2.5, NAN])}
    np.testing.assert_allclose(fuse(scores, Fusion(weights={"bm25": 1.0})), [2.5, 0.0])


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown signals"):
        Fusion(weights={"colbert": 1.0})
    with pytest.raises(ValueError, match="fusion method"):
        Fusion(method="max")
