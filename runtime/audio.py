"""Audio in: any file soundfile reads, or an array with its rate -> 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import SAMPLE_RATE

MIN_RATE = 4_000
MAX_RATE = 384_000
# Float audio is full scale at 1.0; a little headroom above it is normal, samples at 64 and beyond mean
# integer PCM stored as floats (e.g. int16 values), and would be read as deafening noise.
MAX_FLOAT_PEAK = 64.0
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a clip holds nothing to time


def holds_sound(samples: np.ndarray) -> bool:
    """Whether ``samples`` rise above silence (``SILENCE_PEAK``) and are more than a constant (DC) offset."""
    return bool(samples.size) and float(np.abs(samples).max()) >= SILENCE_PEAK \
        and float(samples.max() - samples.min()) >= 2 * SILENCE_PEAK


def to_model_rate(samples: np.ndarray, rate: int, source: str = "audio") -> np.ndarray:
    """Check, downmix and resample ``samples`` (frames[, channels]) at ``rate`` to 16 kHz mono float32."""
    samples = np.asarray(samples)
    if samples.dtype.kind not in "iuf":
        kind = {"b": "booleans", "c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes"}.get(
            samples.dtype.kind, f"{samples.dtype}")
        raise InputError(f"{source}: holds {kind}; audio samples are integers (PCM) or floats in [-1, 1]")
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
    peak = float(np.abs(samples).max())
    if peak >= MAX_FLOAT_PEAK:
        raise InputError(f"{source}: float samples reach {peak:.3g}, far outside [-1, 1]: integer PCM stored as floats? "
                         "Divide by the full scale (32768 for 16-bit) or pass the integer array as it is")
    if rate != SAMPLE_RATE:
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return samples


def load_audio(path: str | Path, max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file as 16 kHz mono float32 in [-1, 1]; refuse one cut short, or (from its header,
    before decoding it) one longer than ``max_seconds``."""
    import soundfile

    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an audio file")
        if not path.is_file():
            raise InputError(f"{path}: no such audio file")
        info = soundfile.info(str(path))
        if max_seconds and info.frames / info.samplerate > max_seconds:
            raise InputError(f"{path}: {info.frames / info.samplerate:.1f} s of audio is longer than the "
                             f"{max_seconds:g} s this model takes; split the audio")
        _check_complete(path)
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InputError(f"{path}: cannot be read as audio ({error}); use wav, flac, ogg or another format libsndfile reads") from None
    except OSError as error:  # no permission, a name too long for the system, an I/O error
        raise InputError(f"{str(path)[:200]}: cannot be read ({error.strerror or error})") from None
    if info.frames > 0 and len(samples) < info.frames:
        raise InputError(f"{path}: is cut short: its header promises {info.frames / rate:.2f} s but only "
                         f"{len(samples) / rate:.2f} s could be decoded; the file is incomplete")
    return to_model_rate(samples, rate, source=str(path))


def _check_complete(path: Path) -> None:
    """A RIFF/WAVE file whose data chunk promises more bytes than the file holds was cut short.

    libsndfile silently reads such a file as a shorter clip. A size of 0 or 0xFFFFFFFF is the
    placeholder streaming writers leave, not a promise.
    """
    import struct

    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk, length = struct.unpack("<4sI", handle.read(8))
            if chunk == b"data":
                available = size - position - 8
                if length not in (0, 0xFFFFFFFF) and available < length:
                    raise InputError(f"{path}: is cut short: its WAV header promises {length} bytes of audio but the "
                                     f"file holds {available} ({available / length:.0%}); the file is incomplete")
                return
            position += 8 + length + (length & 1)
