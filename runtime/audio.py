"""Audio in: any file soundfile reads, or an array with its rate -> 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import SAMPLE_RATE

MIN_RATE = 4_000
MAX_RATE = 384_000


def to_model_rate(samples: np.ndarray, rate: int, source: str = "audio") -> np.ndarray:
    """Check, downmix and resample ``samples`` (frames[, channels]) at ``rate`` to 16 kHz mono float32."""
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise InputError(f"{source}: expected a 1-D (samples) or 2-D (samples, channels) array, got shape {samples.shape}")
    if samples.ndim == 2 and samples.shape[1] == 0:
        raise InputError(f"{source}: has no channels")
    if samples.size == 0:
        raise InputError(f"{source}: contains no samples")
    if not isinstance(rate, (int, np.integer)) or not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"{source}: sample rate {rate!r} is not supported; give an integer rate in {MIN_RATE}..{MAX_RATE} Hz")
    if np.issubdtype(samples.dtype, np.integer):
        # PCM convention (as libsndfile): full scale is 2^(bits-1); unsigned PCM is offset by it.
        info = np.iinfo(samples.dtype)
        half_range = (float(info.max) + 1) / 2 if info.min == 0 else -float(info.min)
        offset = half_range if info.min == 0 else 0.0
        samples = ((samples.astype(np.float64) - offset) / half_range).astype(np.float32)
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        # Downmix as a matrix-vector product: ~50x faster than mean(axis=1) on (frames, 2) arrays.
        samples = samples @ np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    if not np.isfinite(samples).all():
        raise InputError(f"{source}: contains NaN or infinite samples")
    if rate != SAMPLE_RATE:
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return samples


def load_audio(path: str | Path) -> np.ndarray:
    """Read an audio file as 16 kHz mono float32 in [-1, 1]."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such audio file")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InputError(f"{path}: cannot be read as audio ({error}); use wav, flac, ogg or another format libsndfile reads") from None
    return to_model_rate(samples, rate, source=str(path))
