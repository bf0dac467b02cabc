"""Whisper-style log-mel features in NumPy: the one featurizer for training and the runtime.

The Qwen2.5-Omni thinker and Qwen2-Audio both read the log-mel of transformers'
``WhisperFeatureExtractor(feature_size=128)`` (16 kHz, 25 ms window, 10 ms hop). This module
computes the same numbers without torch, for any length (no 30-second cap):

    samples -> centred STFT (reflect padding, periodic Hann window, n_fft=400, hop=160)
            -> power spectrum, last frame dropped (num_samples // hop frames)
            -> Slaney mel filter bank -> log10(max(mel, 1e-10))
            -> floor at (max over the example) - 8, then (x + 4) / 4

``log_mel`` equals ``WhisperFeatureExtractor(..., truncation=False, padding="longest")`` on one
clip; ``log_mel_batch`` equals the same call on a list of clips (zero-padded waveforms, mel lengths
as its attention mask gives them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.files import atomic_path

FEATURE_KIND = "whisper_log_mel"
LOG_FLOOR = 1e-10  # power clamp before log10 (Whisper)
DYNAMIC_RANGE = 8.0  # log10 units kept below each example's maximum (80 dB)
FRAMES_PER_BLOCK = 4096  # STFT frames transformed at once: bounds memory for long audio


@dataclass(frozen=True)
class FeatureSettings:
    """What a checkpoint or exported artifact must record to recompute its features.

    Defaults are the preprocessor settings of Qwen2.5-Omni and Qwen2-Audio.
    """

    num_mel_bins: int = 128
    sample_rate: int = 16_000
    hop_length: int = 160
    n_fft: int = 400
    min_frequency: float = 0.0
    max_frequency: float = 8_000.0  # Whisper fixes the top filter edge at 8 kHz
    kind: str = FEATURE_KIND

    def __post_init__(self):
        if self.kind != FEATURE_KIND:
            raise InputError(f"feature kind {self.kind!r} is not supported; this featurizer computes {FEATURE_KIND!r}")
        for name in ("num_mel_bins", "sample_rate", "hop_length", "n_fft"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"feature setting {name!r} must be a positive integer, got {value!r}")
        if not 0.0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            raise InputError(
                f"feature settings need 0 <= min_frequency < max_frequency <= sample_rate / 2, got "
                f"{self.min_frequency}, {self.max_frequency} at {self.sample_rate} Hz"
            )

    @property
    def frequency_bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "FeatureSettings":
        if not isinstance(record, dict):
            raise InputError(f"feature settings must be a JSON object, got {type(record).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise InputError(f"unknown feature setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(record)
        for name in ("min_frequency", "max_frequency"):
            if name in values and isinstance(values[name], int) and not isinstance(values[name], bool):
                values[name] = float(values[name])  # JSON writes 8000.0 back as 8000 in some tools
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write the settings as a JSON file (atomically), e.g. ``<checkpoint>/features.json``."""
        with atomic_path(path) as temporary:
            Path(temporary).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSettings":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such feature settings file")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
        try:
            return cls.from_json(record)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None


DEFAULT_SETTINGS = FeatureSettings()


def _slaney_mel(hertz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hertz = np.asarray(hertz, dtype=np.float64)
    log_step = 27.0 / np.log(6.4)
    linear = 3.0 * hertz / 200.0
    logarithmic = 15.0 + np.log(np.maximum(hertz, 1e-12) / 1000.0) * log_step
    return np.where(hertz >= 1000.0, logarithmic, linear)


def _slaney_hertz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    linear = 200.0 * mels / 3.0
    logarithmic = 1000.0 * np.exp(log_step * (mels - 15.0))
    return np.where(mels >= 15.0, logarithmic, linear)


def mel_filters(settings: FeatureSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """(frequency_bins, num_mel_bins) Slaney-normalised triangular filters, float64, read-only.

    Built once per settings. Triangles are spaced evenly on the Slaney mel scale and drawn in
    hertz; each is scaled by 2 / (its width in Hz) so every band carries about the same energy
    (librosa's norm="slaney").
    """
    return _mel_filters(settings)


def _mel_edges_hertz(settings: FeatureSettings) -> np.ndarray:
    """The mel filters' corner frequencies in Hz: filter i rises from edge i to edge i+1, falls to i+2."""
    return _slaney_hertz(np.linspace(_slaney_mel(settings.min_frequency), _slaney_mel(settings.max_frequency),
                                     settings.num_mel_bins + 2))


def mel_band_centres(settings: FeatureSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """(num_mel_bins,) each mel filter's centre frequency in Hz, ascending."""
    return _mel_edges_hertz(settings)[1:-1]


@lru_cache(maxsize=8)
def _mel_filters(settings: FeatureSettings) -> np.ndarray:
    edges = _mel_edges_hertz(settings)
    bin_hertz = np.linspace(0.0, settings.sample_rate // 2, settings.frequency_bins)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_hertz[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bin_hertz[:, None]) / (upper - centre)[None, :]
    filters = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))[None, :]
    if (filters.max(axis=0) == 0.0).any():
        raise InputError(
            f"{settings.num_mel_bins} mel bins are too many for n_fft={settings.n_fft}: some filters fall "
            "between frequency bins; use fewer mel bins or a larger n_fft"
        )
    filters.setflags(write=False)
    return filters


@lru_cache(maxsize=8)
def _hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default), as Whisper uses."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)
    window.setflags(write=False)
    return window


def _check_samples(samples, settings: FeatureSettings, source: str) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise InputError(
            f"{source}: expected 1-D mono samples, got shape {samples.shape}; downmix with runtime.audio.to_model_rate"
        )
    if samples.size == 0:
        raise InputError(f"{source}: contains no samples; give at least {settings.hop_length} samples (one hop)")
    if samples.size < settings.hop_length:
        raise InputError(
            f"{source}: {samples.size} samples is shorter than one mel hop ({settings.hop_length} samples at "
            f"{settings.sample_rate} Hz) and gives no frames; pad or drop the clip"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise InputError(
            f"{source}: expected float samples in [-1, 1], got {samples.dtype}; convert with runtime.audio.to_model_rate"
        )
    samples = samples.astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise InputError(f"{source}: contains NaN or infinite samples")
    return samples


def _log_mel_power(samples: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """log10 mel power, (frames, num_mel_bins) float32, frames = len(samples) // hop."""
    half_window = settings.n_fft // 2
    # Centred frames: frame k is centred on sample k * hop; the edges are mirrored (torch.stft's default).
    padded = np.pad(samples, half_window, mode="reflect")
    frame_count = len(samples) // settings.hop_length  # the STFT gives one more; Whisper drops it
    frames = np.lib.stride_tricks.sliding_window_view(padded, settings.n_fft)[:: settings.hop_length][:frame_count]
    window = _hann_window(settings.n_fft)
    filters = mel_filters(settings)
    log_power = np.empty((frame_count, settings.num_mel_bins), dtype=np.float32)
    for start in range(0, frame_count, FRAMES_PER_BLOCK):
        block = frames[start:start + FRAMES_PER_BLOCK].astype(np.float64) * window
        spectrum = np.fft.rfft(block, n=settings.n_fft, axis=-1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        log_power[start:start + FRAMES_PER_BLOCK] = np.log10(np.maximum(power @ filters, LOG_FLOOR))
    return log_power


def _whisper_scale(log_power: np.ndarray) -> np.ndarray:
    """Keep 8 decades below the example's loudest mel value, then map to roughly [-1, 1]."""
    floored = np.maximum(log_power, log_power.max() - DYNAMIC_RANGE)
    return (floored + 4.0) / 4.0


def log_mel(samples: np.ndarray, settings: FeatureSettings = DEFAULT_SETTINGS, source: str = "audio") -> np.ndarray:
    """Log-mel features of one clip: (num_mel_bins, len(samples) // hop_length) float32.

    ``samples`` are mono float at ``settings.sample_rate`` (runtime.audio.load_audio gives them).
    Equal to ``WhisperFeatureExtractor(feature_size=num_mel_bins)(samples, truncation=False,
    padding="longest")``.
    """
    samples = _check_samples(samples, settings, source)
    features = _whisper_scale(_log_mel_power(samples, settings))
    return np.ascontiguousarray(features.T, dtype=np.float32)


def batch_mel_lengths(num_samples: Sequence[int], settings: FeatureSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """Valid mel frames per clip of a batch zero-padded to its longest clip, as transformers counts them.

    WhisperFeatureExtractor's attention mask keeps every hop-th sample's mask value, so a clip
    of n samples gets ceil(n / hop) frames, capped at the batch's max(n) // hop frames. (Alone,
    a clip gets n // hop: the frame that would cover its last partial hop is dropped.)
    """
    num_samples = np.asarray(num_samples, dtype=np.int64)
    padded_frames = int(num_samples.max()) // settings.hop_length
    return np.minimum(-(-num_samples // settings.hop_length), padded_frames)


def log_mel_batch(
    clips: Sequence[np.ndarray], settings: FeatureSettings = DEFAULT_SETTINGS
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel of several clips padded to the longest: ``(mel (B, num_mel_bins, L) float32, mel_lengths (B,) int64)``.

    Equal to ``WhisperFeatureExtractor(clips, truncation=False, padding="longest",
    return_attention_mask=True)``: each clip is zero-padded *as a waveform* to the longest, so a
    shorter clip's last frames and its padding frames are those of silence after it, and its
    8-decade floor is taken over the whole padded row. ``L = longest // hop``; frames past
    ``mel_lengths`` are padding.
    """
    if len(clips) == 0:
        raise InputError("log_mel_batch needs at least one clip")
    checked = [_check_samples(clip, settings, f"clip {index}") for index, clip in enumerate(clips)]
    num_samples = np.array([len(clip) for clip in checked], dtype=np.int64)
    longest = int(num_samples.max())
    mel = np.empty((len(checked), settings.num_mel_bins, longest // settings.hop_length), dtype=np.float32)
    for row, clip in enumerate(checked):
        padded = np.zeros(longest, dtype=np.float32)
        padded[: len(clip)] = clip
        mel[row] = _whisper_scale(_log_mel_power(padded, settings)).T
    return mel, batch_mel_lengths(num_samples, settings)
