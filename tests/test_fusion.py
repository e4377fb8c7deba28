"""Fusion arithmetic on hand-made scores."""

import math

import numpy as np
import pytest

from search.fusion import MODES, Fusion, contributions, explain, fuse, proposed

NAN = math.nan


def test_rrf_sums_reciprocal_ranks_and_skips_missing():
    scores = {"bm25": np.array([3.0, NAN, 1.0]), "dense_question": np.array([0.1, 0.9, 0.5])}
    fused = fuse(scores, Fusion(weights={"bm25": 1.0, "dense_question": 1.0}, method="rrf", rrf_k=60))
    np.testing.assert_allclose(fused, [1 / 61 + 1 / 63, 1 / 61, 1 / 62 + 1 / 62])


def test_weighted_min_max_mean():
    scores = {"bm25": np.array([10.0, 0.0, 5.0]), "dense_question": np.array([0.2, 0.6, 0.4])}
    fused = fuse(scores, Fusion(weights={"bm25": 3.0, "dense_question": 1.0}, normalization="minmax"))
    np.testing.assert_allclose(fused, [(3 * 1 + 0) / 4, (0 + 1) / 4, (3 * 0.5 + 0.5) / 4])


def test_zscore_uses_the_signals_own_top_depth_and_scores_missing_lowest():
    bm25 = np.array([9.0, 3.0, NAN, 1.0, 0.5])
    dense = np.array([0.5, 0.9, 0.7, 0.1, 0.3])
    fusion = Fusion(weights={"bm25": 1.0, "dense_question": 1.0}, normalization="zscore", depth=3)
    top_bm25, top_dense = np.array([9.0, 3.0, 1.0]), np.array([0.9, 0.7, 0.5])
    expected_bm25 = (bm25 - top_bm25.mean()) / top_bm25.std()
    expected_bm25[2] = expected_bm25[4]  # no BM25 evidence: as low as the lowest that has some
    expected_dense = (dense - top_dense.mean()) / top_dense.std()
    np.testing.assert_allclose(fuse({"bm25": bm25, "dense_question": dense}, fusion), (expected_bm25 + expected_dense) / 2)


def test_zscore_ranks_alike_whatever_candidates_lie_below_the_top_depth():
    """What makes sharded and single indexes rank alike: extra low candidates change nothing."""
    fusion = Fusion(weights={"bm25": 1.0, "dense_question": 1.0}, normalization="zscore", depth=3)
    few = {"bm25": np.array([9.0, 3.0, 1.0, 2.0]), "dense_question": np.array([0.5, 0.9, 0.7, 0.8])}
    more = {s: np.concatenate([v, [0.01, 0.02]]) for s, v in few.items()}
    np.testing.assert_allclose(fuse(few, fusion), fuse(more, fusion)[:4])


def test_min_max_gives_one_to_a_signal_without_spread_and_zero_without_evidence():
    scores = {"bm25_question": np.array([2.0, NAN, 2.0]), "dense_question": np.array([0.8, 0.2, 0.5]),
              "dense_reply": np.array([NAN, NAN, NAN])}
    parts = contributions(scores, Fusion())
    np.testing.assert_array_equal(parts["bm25_question"], [1 / 3, 0.0, 1 / 3])
    np.testing.assert_allclose(parts["dense_question"], [1 / 3, 0.0, 0.5 / 3])
    np.testing.assert_array_equal(parts["dense_reply"], [0.0, 0.0, 0.0])
    assert fuse({s: v[:0] for s, v in scores.items()}, Fusion()).shape == (0,)


def test_single_signal_keeps_its_own_score():
    scores = {"bm25": np.array([2.5, NAN])}
    np.testing.assert_allclose(fuse(scores, Fusion(weights={"bm25": 1.0})), [2.5, 0.0])


def test_explain_parts_add_up_to_the_fused_score():
    scores = {"bm25_question": np.array([4.0, NAN, 1.0]), "dense_question": np.array([0.8, 0.7, 0.2]),
              "dense_reply": np.array([0.6, 0.1, NAN])}
    for fusion in (Fusion(), Fusion(normalization="zscore"), Fusion(method="rrf"), Fusion(weights={"dense_question": 1.0})):
        fused, parts = fuse(scores, fusion), contributions(scores, fusion)
        for at in range(3):
            why = explain(scores, fusion, parts, at)
            assert sum(p["contribution"] for p in why.values()) == pytest.approx(fused[at])
            assert set(why) == set(fusion.active)
    why = explain(scores, Fusion(), contributions(scores, Fusion()), 1)
    assert why["bm25_question"]["raw"] is None and why["bm25_question"]["contribution"] == 0.0
    assert why["dense_question"]["raw"] == pytest.approx(0.7)


def test_the_default_has_a_question_only_part():
    hybrid = MODES["hybrid"]
    assert hybrid.for_index(has_replies=True) is hybrid
    question_only = hybrid.for_index(has_replies=False)
    assert question_only.normalization == "zscore" and "dense_reply" not in question_only.active
    assert MODES["dense"].for_index(has_replies=False) is MODES["dense"]


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown signals"):
        Fusion(weights={"colbert": 1.0})
    with pytest.raises(ValueError, match="fusion method"):
        Fusion(method="max")
    with pytest.raises(ValueError, match="normalization"):
        Fusion(normalization="softmax")


def test_proposed_keeps_each_signals_own_top_depth():
    scores = {"bm25": np.array([5.0, NAN, 1.0, 3.0, NAN]), "dense_question": np.array([0.1, 0.9, 0.2, 0.3, 0.8])}
    np.testing.assert_array_equal(proposed(scores, 2), [0, 1, 3, 4])
    np.testing.assert_array_equal(proposed({"bm25": scores["bm25"]}, 5), [0, 2, 3])
