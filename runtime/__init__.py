"""The runtime: features, prompts, ONNX Runtime graphs and NumPy decoding, from audio to timestamps.

This package is the floor: it imports nothing from the rest of framestamp and never imports torch
or transformers.
"""

from framestamp.runtime.decoding import (
    DECODINGS, binary_count, binary_top_k, decode_events, estimate_count, expected_count, ordered_map, paced_map,
    posterior_mode, subframe_times,
)
from framestamp.runtime.errors import FramestampError, InputError, ManifestError
from framestamp.runtime.locator import Locator, Query, Timestamps
from framestamp.runtime.frames import FRAME_SECONDS, SAMPLE_RATE
from framestamp.runtime.metrics import interval_iou, interval_scores, timestamp_scores

__all__ = [
    "DECODINGS", "FRAME_SECONDS", "SAMPLE_RATE", "FramestampError", "InputError", "ManifestError", "binary_count",
    "binary_top_k", "decode_events", "estimate_count", "expected_count", "interval_iou", "interval_scores",
    "ordered_map", "paced_map", "posterior_mode", "subframe_times", "timestamp_scores",
]
