"""Timestamp and interval metrics (paper 3.3): accuracy within a tolerance, MAD, IoU.

A missing prediction (NaN: the token baseline's malformed output, say) counts as a miss for
accuracy and recall and as IoU 0 in the mean IoU; MAD can only average what was predicted.
``missing`` says how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from framestamp.runtime.errors import InputError

TOLERANCES = (0.02, 0.04, 0.1)  # seconds: acc@20ms, acc@40ms, acc@100ms
IOU_THRESHOLDS = (0.5, 0.7, 0.9)
# Differences such as 0.64 - 0.60 come out a hair above 0.04 in floating point.
_SLACK = 1e-9


def _paired(predicted, reference, name: str):
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    if predicted.shape != reference.shape:
        raise InputError(f"{name}: {predicted.size} predictions for {reference.size} references")
    if not np.isfinite(reference).all():
        raise InputError(f"{name}: reference times must be finite")
    return predicted, reference


@dataclass(frozen=True)
class TimestampScores:
    count: int
    missing: int
    accuracy: dict = field(default_factory=dict)  # tolerance (s) -> fraction within it
    mad: float = float("nan")  # mean absolute deviation (s) over predicted times

    def as_dict(self) -> dict:
        scores = {f"acc@{round(t * 1000)}ms": a for t, a in self.accuracy.items()}
        return {"count": self.count, "missing": self.missing, **scores, "mad_ms": self.mad * 1000}


def timestamp_scores(predicted, reference, tolerances=TOLERANCES) -> TimestampScores:
    """Accuracy within each tolerance and MAD for paired predicted/reference times in seconds."""
    predicted, reference = _paired(predicted, reference, "timestamp_scores")
    error = np.abs(predicted - reference)
    present = np.isfinite(error)
    count = reference.size
    accuracy = {t: float(np.count_nonzero(error[present] <= t + _SLACK) / count) if count else float("nan")
                for t in tolerances}
    mad = float(error[present].mean()) if present.any() else float("nan")
    return TimestampScores(count=count, missing=int(count - present.sum()), accuracy=accuracy, mad=mad)


def interval_iou(predicted, reference) -> np.ndarray:
    """IoU of paired intervals, each array (N, 2) of [start, end] seconds; NaN where missing."""
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, 2)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    if predicted.shape != reference.shape:
        raise InputError(f"interval_iou: {len(predicted)} predicted intervals for {len(reference)} references")
    if (reference[:, 1] < reference[:, 0]).any():
        raise InputError("interval_iou: every reference interval needs start <= end")
    start, end = np.sort(predicted, axis=1).T  # a reversed prediction is read as the interval it spans
    overlap = np.clip(np.minimum(end, reference[:, 1]) - np.maximum(start, reference[:, 0]), 0.0, None)
    union = (end - start) + (reference[:, 1] - reference[:, 0]) - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        # Two identical zero-length intervals agree fully; otherwise zero union means no overlap.
        iou = np.where(union > 0, overlap / union, np.where((start == reference[:, 0]) & (end == reference[:, 1]), 1.0, 0.0))
    return np.where(np.isfinite(predicted).all(axis=1), iou, np.nan)


@dataclass(frozen=True)
class IntervalScores:
    count: int
    missing: int
    miou: float
    recall: dict = field(default_factory=dict)  # IoU threshold -> fraction with IoU >= it

    def as_dict(self) -> dict:
        recalls = {f"recall@{t:g}": r for t, r in self.recall.items()}
        return {"count": self.count, "missing": self.missing, "miou": self.miou, **recalls}


def interval_scores(predicted, reference, thresholds=IOU_THRESHOLDS) -> IntervalScores:
    """Mean IoU and recall at each IoU threshold for paired intervals (N, 2)."""
    iou = interval_iou(predicted, reference)
    present = np.isfinite(iou)
    count = iou.size
    recall = {t: float(np.count_nonzero(iou[present] >= t) / count) if count else float("nan") for t in thresholds}
    miou = float(np.where(present, iou, 0.0).mean()) if count else float("nan")
    return IntervalScores(count=count, missing=int(count - present.sum()), miou=miou, recall=recall)
