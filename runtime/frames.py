"""The time grid shared by every part of framestamp: one definition of each fact.

Both backbones (Qwen2.5-Omni thinker, Qwen2-Audio) turn 16 kHz audio into 100 log-mel frames per
second, then a stride-2 convolution and a 2x average pool give one audio frame per 40 ms.
"""

from __future__ import annotations

SAMPLE_RATE = 16_000
HOP_LENGTH = 160  # samples per mel frame (10 ms)
FRAME_SECONDS = 0.04  # seconds per audio frame the head scores


def mel_frames_for_samples(num_samples: int) -> int:
    """Number of log-mel frames the Whisper featurizer gives for ``num_samples`` (no padding)."""
    return num_samples // HOP_LENGTH


def audio_frames_for_mel(mel_frames: int) -> int:
    """Audio frames after the encoder's stride-2 conv (k=3, p=1) and 2x average pool."""
    after_conv = (mel_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def audio_frames_for_seconds(seconds: float) -> int:
    return audio_frames_for_mel(mel_frames_for_samples(round(seconds * SAMPLE_RATE)))
