"""The NumPy log-mel featurizer against transformers' WhisperFeatureExtractor (the backbones' own)."""

import subprocess
import sys

import numpy as np
import pytest

from framestamp.runtime import InputError
from framestamp.runtime.features import (
    DEFAULT_SETTINGS,
    FeatureSettings,
    batch_mel_lengths,
    log_mel,
    log_mel_batch,
    mel_filters,
)
from framestamp.runtime.frames import mel_frames_for_samples

transformers = pytest.importorskip("transformers")

RATE = 16_000
TOLERANCE = 1e-4  # max abs on features of range ~[-1.5, 2]; seen ~2e-5 (HF computes in float32)


@pytest.fixture(scope="module")
def whisper():
    return transformers.WhisperFeatureExtractor(feature_size=128)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced harmonics with a gliding pitch, syllable-rate bursts, noise and a silent lead-in."""
    rng = np.random.default_rng(seed)
    count = int(round(seconds * RATE))
    t = np.arange(count) / RATE
    pitch = 110 + 60 * rng.random() + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 7))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
    hiss = rng.standard_normal(count) * (syllables > 0.7)
    clip = 0.3 * syllables * voiced + 0.05 * hiss + 1e-4 * rng.standard_normal(count)
    clip[: count // 10] = 0.0  # digital silence: the -8 floor must act the same way
    return clip.astype(np.float32)


def whisper_features(whisper, clips, **kwargs):
    return whisper(clips, sampling_rate=RATE, truncation=False, padding="longest", return_tensors="np", **kwargs)


@pytest.mark.parametrize("seconds", [1, 30, 600], ids=["1s", "30s", "10min"])
@pytest.mark.parametrize("kind", ["speech", "silence"])
def test_equals_whisper_feature_extractor(whisper, seconds, kind):
    clip = speech_like(seconds, seed=seconds) if kind == "speech" else np.zeros(seconds * RATE, np.float32)
    expected = whisper_features(whisper, clip).input_features[0]
    features = log_mel(clip)
    assert features.dtype == np.float32 and features.shape == expected.shape == (128, seconds * 100)
    assert np.abs(features - expected).max() <= TOLERANCE


@pytest.mark.parametrize("count", [201, 16_000, 16_001, 16_159, 48_123])
def test_frame_count_is_the_shared_definition(whisper, count):
    clip = speech_like(count / RATE, seed=count)[:count]
    features = log_mel(clip)
    assert features.shape[1] == mel_frames_for_samples(count)
    np.testing.assert_allclose(features, whisper_features(whisper, clip).input_features[0], atol=TOLERANCE, rtol=0)


def test_clips_shorter_than_the_window_still_give_their_frames():
    # torch.stft refuses these (reflect padding wider than the clip); NumPy mirrors repeatedly.
    assert log_mel(speech_like(0.01)[:160]).shape == (128, 1)
    assert log_mel(speech_like(0.02)[:320]).shape == (128, 2)


@pytest.mark.parametrize("counts", [(16_000, 8_050), (24_123, 16_000), (5_000, 16_001), (3_210, 3_200)])
def test_batch_padding_equals_whisper(whisper, counts):
    """Zero-padded waveforms, per-clip floor over the padded row, lengths from HF's attention mask."""
    clips = [speech_like(count / RATE, seed=index)[:count] for index, count in enumerate(counts)]
    expected = whisper_features(whisper, clips, return_attention_mask=True)
    mel, mel_lengths = log_mel_batch(clips)
    assert mel.shape == expected.input_features.shape == (2, 128, max(counts) // 160)
    assert np.abs(mel - expected.input_features).max() <= TOLERANCE
    np.testing.assert_array_equal(mel_lengths, expected.attention_mask.sum(-1))
    np.testing.assert_array_equal(mel_lengths, batch_mel_lengths(counts))


def test_batch_length_rule():
    # ceil(n / hop) for shorter clips; the longest keeps n // hop (the STFT's last frame is dropped).
    np.testing.assert_array_equal(batch_mel_lengths([16_001, 8_050, 16_000, 160]), [100, 51, 100, 1])


def test_filters_are_whisper_slaney_filters_and_built_once(whisper):
    np.testing.assert_allclose(mel_filters(), whisper.mel_filters, rtol=0, atol=1e-12)
    assert mel_filters() is mel_filters(FeatureSettings())
    assert not mel_filters().flags.writeable


def test_settings_round_trip_through_json(tmp_path):
    settings = FeatureSettings(num_mel_bins=80)
    assert FeatureSettings.from_json(settings.to_json()) == settings
    settings.save(tmp_path / "features.json")
    assert FeatureSettings.load(tmp_path / "features.json") == settings
    assert FeatureSettings.from_json({"max_frequency": 8000}) == DEFAULT_SETTINGS


@pytest.mark.parametrize("record, message", [
    ({"mel_bins": 128}, "unknown feature setting"),
    ({"hop_length": 0}, "positive integer"),
    ({"max_frequency": 9000.0}, "max_frequency"),
    ({"kind": "kaldi_fbank"}, "not supported"),
    ({"num_mel_bins": 400}, "too many"),
])
def test_bad_settings_are_refused(record, message):
    with pytest.raises(InputError, match=message):
        mel_filters(FeatureSettings.from_json(record))


@pytest.mark.parametrize("samples, message", [
    (np.zeros(0, np.float32), "no samples"),
    (np.zeros(100, np.float32), "shorter than one mel hop"),
    (np.zeros((2, 16_000), np.float32), "1-D"),
    (np.array([0.0, np.inf] * 200, np.float32), "NaN or infinite"),
    (np.zeros(16_000, np.int16), "float samples"),
])
def test_unusable_audio_is_refused(samples, message):
    with pytest.raises(InputError, match=message):
        log_mel(samples)


def test_empty_batch_is_refused():
    with pytest.raises(InputError, match="at least one clip"):
        log_mel_batch([])


def test_featurizer_imports_no_torch():
    code = "import sys, framestamp.runtime.features; sys.exit(('torch' in sys.modules) + 2 * ('transformers' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
