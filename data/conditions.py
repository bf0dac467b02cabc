"""Acoustic conditions for synthetic speech: background noise at a drawn SNR, and reverberation.

Both leave the word times as they are: noise is added, and the room's impulse response has its direct
path at delay 0 with gain 1, so every word still starts where its label says (the reflections only
follow it). Every draw comes from the generator passed in, so a clip's conditions repeat with its seed.

SNR here is speech power over the samples inside words (after reverberation) to noise power over
the whole clip: the level of the noise against the speech while someone is speaking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framestamp.runtime.errors import InputError

NOISE_KINDS = ("white", "pink", "brown", "babble")
# 1/f^exponent power spectra
SPECTRAL_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
RT60_SECONDS = (0.2, 0.8)  # time for the reverberant tail to decay by 60 dB
DRR_DB = (0.0, 12.0)  # direct-to-reverberant energy ratio
BABBLE_TALKERS = (4, 8)


@dataclass(frozen=True)
class Noise:
    kind: str
    snr_db: float

    def as_dict(self) -> dict:
        return {"kind": self.kind, "snr_db": round(self.snr_db, 3)}


@dataclass(frozen=True)
class Room:
    rt60: float  # seconds
    drr_db: float

    def as_dict(self) -> dict:
        return {"rt60": round(self.rt60, 4), "drr_db": round(self.drr_db, 3)}


def check_noise_kinds(kinds) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in NOISE_KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown noise kind(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(NOISE_KINDS)}")
    return kinds


# ---------------------------------------------------------------- noise


def colored_noise(rng: np.random.Generator, length: int, kind: str) -> np.ndarray:
    """``length`` samples of Gaussian noise with a 1/f^exponent power spectrum, unit RMS."""
    white = rng.standard_normal(length)
    exponent = SPECTRAL_EXPONENTS[kind]
    if exponent == 0.0 or length < 2:
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        frequencies = np.arange(len(spectrum), dtype=np.float64)
        frequencies[0] = 1.0
        spectrum *= frequencies ** (-exponent / 2)
        spectrum[0] = 0.0  # no DC offset
        noise = np.fft.irfft(spectrum, n=length)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def babble(rng: np.random.Generator, length: int, sample_rate: int, words) -> np.ndarray:
    """Several espeak-ng talkers reading random ``words`` at once, each played backwards, unit RMS.

    Reversed, the speech keeps its spectrum and rhythm but says no word a question could be about.
    Call inside an espeak.isolated child (as speak_words is).
    """
    from framestamp.data import espeak
    from framestamp.runtime.audio import to_model_rate

    mix = np.zeros(length)
    for _ in range(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        voice = espeak.random_voice(rng)
        count = int(length / sample_rate * 4) + 4  # espeak speaks ~2-4 words a second
        speech = espeak.synthesize(" ".join(str(word) for word in rng.choice(words, size=count)), voice)
        talker = to_model_rate(speech.samples, espeak.ESPEAK_RATE).astype(np.float64)[::-1]
        talker = np.resize(talker, length) if len(talker) else np.zeros(length)  # repeats when too short
        talker = np.roll(talker, int(rng.integers(length)))
        mix += talker / max(float(np.sqrt(np.mean(talker**2))), 1e-12)
    return mix / max(float(np.sqrt(np.mean(mix**2))), 1e-12)


def speech_power(audio: np.ndarray, spans, sample_rate: int) -> float:
    """Mean square of ``audio`` over the samples inside (start, end) second ``spans``."""
    inside = np.zeros(len(audio), bool)
    for start, end in spans:
        inside[int(round(start * sample_rate)):int(round(end * sample_rate))] = True
    return float(np.mean(np.asarray(audio, np.float64)[inside] ** 2)) if inside.any() else 0.0


def add_noise(rng: np.random.Generator, audio: np.ndarray, spans, sample_rate: int, snr_range, kinds,
              words=()) -> tuple[np.ndarray, Noise]:
    """``audio`` plus noise of a kind drawn from ``kinds`` at an SNR drawn uniformly from ``snr_range``."""
    kind = kinds[int(rng.integers(len(kinds)))]
    snr_db = float(rng.uniform(*snr_range))
    if kind == "babble":
        noise = babble(rng, len(audio), sample_rate, words)
    else:
        noise = colored_noise(rng, len(audio), kind)
    scale = np.sqrt(speech_power(audio, spans, sample_rate) / 10 ** (snr_db / 10))
    return (audio + scale * noise).astype(np.float32), Noise(kind, snr_db)


# ---------------------------------------------------------------- reverberation


def impulse_response(rng: np.random.Generator, sample_rate: int, rt60: float, drr_db: float) -> np.ndarray:
    """A synthetic room: 1 at delay 0 (the direct path), then exponentially decaying Gaussian noise.

    The tail's amplitude falls 60 dB in ``rt60`` seconds; its energy is ``drr_db`` below the direct path's.
    """
    times = np.arange(1, int(rt60 * sample_rate) + 1) / sample_rate
    tail = rng.standard_normal(len(times)) * 10 ** (-3.0 * times / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    return np.concatenate([[1.0], tail])


def reverberate(rng: np.random.Generator, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, Room]:
    """``audio`` heard in a room drawn from ``rng`` (RT60 and DRR), cut to its own length."""
    room = Room(float(rng.uniform(*RT60_SECONDS)), float(rng.uniform(*DRR_DB)))
    response = impulse_response(rng, sample_rate, room.rt60, room.drr_db)
    size = 1 << int(np.ceil(np.log2(len(audio) + len(response) - 1)))
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(response, size), size)[:len(audio)]
    return wet.astype(np.float32), room
