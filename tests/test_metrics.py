"""Metrics against hand-counted cases and a per-element loop."""

import numpy as np
import pytest

from framestamp.runtime import InputError
from framestamp.runtime.metrics import interval_iou, interval_scores, timestamp_scores


def test_accuracy_counts_errors_within_each_tolerance_inclusive():
    reference = np.array([1.00, 2.00, 3.00, 4.00, 5.00])
    predicted = np.array([1.02, 2.04, 2.90, 4.50, np.nan])  # 20, 40, 100, 500 ms off, missing
    scores = timestamp_scores(predicted, reference)
    assert scores.accuracy == {0.02: 0.2, 0.04: 0.4, 0.1: 0.6}
    assert scores.missing == 1
    assert scores.mad == pytest.approx((0.02 + 0.04 + 0.10 + 0.50) / 4)
    assert scores.as_dict()["acc@40ms"] == 0.4


def test_accuracy_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 30, 500)
    predicted = reference + rng.normal(0, 0.05, 500)
    scores = timestamp_scores(predicted, reference, tolerances=(0.03,))
    within = sum(1 for p, r in zip(predicted, reference) if abs(p - r) <= 0.03 + 1e-9)
    assert scores.accuracy[0.03] == within / 500
    assert scores.mad == pytest.approx(sum(abs(p - r) for p, r in zip(predicted, reference)) / 500)


def test_interval_iou_cases():
    predicted = [[0, 2], [0, 1], [5, 6], [1, 3], [2, 2], [np.nan, 1]]
    reference = [[0, 2], [1, 2], [0, 1], [2, 4], [2, 2], [0, 1]]
    iou = interval_iou(predicted, reference)
    np.testing.assert_allclose(iou[:5], [1.0, 0.0, 0.0, 1 / 3, 1.0])
    assert np.isnan(iou[5])


def test_interval_scores_recall_and_miou():
    predicted = [[0, 1], [0, 1], [0, 1], [np.nan, np.nan]]
    reference = [[0, 1], [0, 1.25], [0, 2], [0, 1]]  # IoU 1, 0.8, 0.5, missing
    scores = interval_scores(predicted, reference)
    assert scores.recall == {0.5: 0.75, 0.7: 0.5, 0.9: 0.25}
    assert scores.miou == pytest.approx((1 + 0.8 + 0.5 + 0) / 4)
    assert scores.missing == 1


def test_mismatched_lengths_are_refused():
    with pytest.raises(InputError, match="3 predictions for 2"):
        timestamp_scores([1, 2, 3], [1, 2])
