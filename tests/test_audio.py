"""Audio in: resampling, downmixing and the errors for unusable input."""

import numpy as np
import pytest
import soundfile

from framestamp.runtime import InputError
from framestamp.runtime.audio import load_audio, to_model_rate
from framestamp.runtime.files import atomic_path


def test_stereo_44k_file_becomes_16k_mono(tmp_path):
    rate, seconds = 44_100, 1.5
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "a.flac", np.stack([tone, tone], axis=1), rate)
    samples = load_audio(tmp_path / "a.flac")
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(16_000 * seconds, abs=2)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16_000 / len(samples) == pytest.approx(440, abs=2)


def test_integer_arrays_are_scaled_to_unit_range():
    pcm = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_array_equal(to_model_rate(pcm, 16_000), [0, 0.5, -1.0])
    unsigned = np.array([128, 192, 0], dtype=np.uint8)  # 8-bit WAV is offset binary
    np.testing.assert_array_equal(to_model_rate(unsigned, 16_000), [0, 0.5, -1.0])


@pytest.mark.parametrize("samples, rate, message", [
    (np.zeros(0), 16_000, "no samples"),
    (np.array([0.0, np.nan]), 16_000, "NaN"),
    (np.zeros((4, 0)), 16_000, "no channels"),
    (np.zeros((2, 2, 2)), 16_000, "shape"),
    (np.zeros(10), 100, "sample rate"),
])
def test_unusable_arrays_are_refused(samples, rate, message):
    with pytest.raises(InputError, match=message):
        to_model_rate(samples, rate)


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="no such audio file"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="cannot be read as audio"):
        load_audio(tmp_path / "junk.wav")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "artifact"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.mkdir()
            (temporary / "half.bin").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "whole.bin").write_bytes(b"y")
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]
    assert (target / "whole.bin").read_bytes() == b"y"
