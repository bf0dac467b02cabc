"""LibriCount-style mixes: 1-10 distinct espeak-ng voices, each speaking from its own onset to the end.

Speakers differ in (language voice, variant) and so in timbre, and each has its own pitch and rate.
Onsets are at least ``MIN_ONSET_GAP`` apart, so "the k-th speaker" is always a single speaker. A
speaker's onset is exactly the start of their first word (its first phoneme's first sample).

Layout (``root`` = OUT/speakers): ``<k>_<uid>.wav`` (16 kHz, 16-bit, 5 s) beside ``<k>_<uid>.json``,
a list of {"sex": "F"|"M", "activity": [[start_sample, end_sample], ...], "speaker_id": int} where the
activity spans are runs of speech (words less than ``ACTIVITY_GAP`` apart join one run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestamp.data import espeak
from framestamp.data.espeak import ESPEAK_RATE, Voice
from framestamp.data.synth import pcm16_to_float, to_pcm16, write_pcm16
from framestamp.data.synth_words import speak_phrases, speaker_number, vocabulary, word_pool
from framestamp.runtime.audio import to_model_rate
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import SAMPLE_RATE

SECONDS = 5.0
SPEAKERS = (1, 10)
MIN_ONSET_GAP = 0.2  # seconds between consecutive onsets: 5 frames of 40 ms
LAST_ONSET = 4.0  # everyone speaks for at least the last second
ACTIVITY_GAP = 0.25  # a silence at least this long ends a run of activity
LEVEL_DB = (-6.0, 0.0)  # each speaker's level relative to the others (peak-normalized first)
PEAK = (0.3, 0.9)
SPEC_DEFAULTS = {"voices": list(espeak.VOICES)}


@dataclass(frozen=True)
class SpeakerTrack:
    voice: Voice
    speaker_id: int  # speaker_number(voice) * 100 + pitch: distinct voices, distinct ids
    onset: int  # sample of the first word's start
    activity: tuple[tuple[int, int], ...]  # [start, end) samples of each run of speech
    audio: np.ndarray  # float32, the whole clip's length, silent before the onset; before mixing

    @property
    def sex(self) -> str:
        return self.voice.sex


@dataclass(frozen=True)
class SpeakerMix:
    pcm: np.ndarray  # int16 at 16 kHz, exactly what the wav file holds
    tracks: tuple[SpeakerTrack, ...]  # in onset order

    @property
    def audio(self) -> np.ndarray:
        return pcm16_to_float(self.pcm)

    def labels(self) -> list[dict]:
        """The LibriCount label file's entries."""
        return [{"sex": track.sex, "activity": [list(span) for span in track.activity], "speaker_id": track.speaker_id}
                for track in self.tracks]


def distinct_voices(rng: np.random.Generator, count: int, languages) -> list[Voice]:
    """``count`` voices with pairwise different (language, variant)."""
    variants = (None,) + tuple(espeak.VARIANTS)
    pairs = [(language, variant) for language in languages for variant in variants]
    if count > len(pairs):
        raise InputError(f"{count} distinct speakers need more voices than {', '.join(languages)} offer")
    chosen = rng.choice(len(pairs), size=count, replace=False)
    return [Voice(*pairs[i], rate=int(rng.integers(130, 251)), pitch=int(rng.integers(10, 91))) for i in chosen]


def spaced_onsets(rng: np.random.Generator, count: int) -> list[int]:
    """``count`` sorted onsets in samples, in [0, LAST_ONSET] and at least MIN_ONSET_GAP apart."""
    slack = LAST_ONSET - (count - 1) * MIN_ONSET_GAP
    seconds = np.sort(rng.uniform(0.0, slack, size=count)) + MIN_ONSET_GAP * np.arange(count)
    return [int(round(second * SAMPLE_RATE)) for second in seconds]


def speaker_track(rng: np.random.Generator, voice: Voice, onset: int, length: int) -> SpeakerTrack:
    """``voice`` reading random words so that its first word starts at sample ``onset``."""
    pool = word_pool(rng)
    remaining = (length - onset) / SAMPLE_RATE + 0.5
    speech = speak_phrases(rng, voice, pool, remaining, max_seconds=float("inf"), lead_seconds=0.0)
    audio = to_model_rate(speech.samples, ESPEAK_RATE)
    audio /= max(float(np.max(np.abs(audio))), 1e-9)
    shift = onset - int(round(speech.words[0].start * SAMPLE_RATE))  # speech's own lead silence moves left
    track = np.zeros(length, np.float32)
    source = audio[max(0, -shift):]
    place = max(0, shift)
    track[place:place + len(source)] = source[:length - place]

    runs: list[list[int]] = []
    for word in speech.words:
        start, end = (int(round(t * SAMPLE_RATE)) + shift for t in (word.start, word.end))
        if start >= length:
            break
        if runs and start - runs[-1][1] < ACTIVITY_GAP * SAMPLE_RATE:
            runs[-1][1] = min(end, length)
        else:
            runs.append([start, min(end, length)])
    return SpeakerTrack(voice=voice, speaker_id=speaker_number(voice) * 100 + voice.pitch, onset=onset,
                        activity=tuple((start, end) for start, end in runs), audio=track)


def speaker_voices(voices) -> tuple[str, ...]:
    """The espeak-ng voices of ``voices``: mixes tell speakers apart by espeak's variants."""
    from framestamp.data.engines import espeak_voices

    languages = espeak_voices(voices)
    if not languages:
        raise InputError(f"the speakers task mixes espeak-ng voices, and the voices {', '.join(voices)} include none; "
                         f"add one (e.g. en-us) or leave speakers out of --tasks")
    return espeak.check_languages(languages)


@espeak.deterministic
def mix_speakers(seed: int, voices=espeak.VOICES) -> SpeakerMix:
    """The speaker-counting clip for ``seed``: same seed and voices, same samples, in any process."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(SPEAKERS[0], SPEAKERS[1] + 1))
    length = int(SECONDS * SAMPLE_RATE)
    chosen = distinct_voices(rng, count, speaker_voices(voices))
    tracks = [speaker_track(rng, voice, onset, length) for voice, onset in zip(chosen, spaced_onsets(rng, count))]
    gains = 10 ** (rng.uniform(*LEVEL_DB, size=count) / 20)
    mix = sum(gain * track.audio for gain, track in zip(gains, tracks))
    return SpeakerMix(pcm=to_pcm16(mix, rng.uniform(*PEAK)), tracks=tuple(tracks))


def generate(seed: int, **spec) -> tuple[np.ndarray, dict]:
    """(16 kHz float32 audio, labels) for ``seed``; labels["speakers"] is the LibriCount JSON list."""
    mix = mix_speakers(seed, **spec)
    return mix.audio, {"speakers": mix.labels()}


# ---------------------------------------------------------------- files


def prepare(spec: dict) -> None:
    """Load what every clip needs once, before the per-clip forks inherit it."""
    import framestamp.data.libricount  # noqa: F401

    espeak.initialize()  # here, so a missing libespeak-ng is reported before any clip is started
    vocabulary()


def clip_name(count: int, index: int) -> str:
    """"<k>_<uid>" as LibriCount names clips; the uid comes from the clip's index alone."""
    return f"{count}_synth-{index:06d}"


def write_clip(root: Path, index: int, seed: int, spec: dict) -> dict:
    from framestamp.data.libricount import write_libricount_json

    mix = mix_speakers(seed, **spec)
    name = clip_name(len(mix.tracks), index)
    write_pcm16(root / f"{name}.wav", mix.pcm, SAMPLE_RATE)
    write_libricount_json(root / f"{name}.json", mix.labels())
    return {"audio": f"{name}.wav"}


def write_labels(root: Path, records: list[dict]) -> None:
    """Nothing more: LibriCount keeps each clip's labels beside it."""


def load(root: Path, seed: int = 0) -> list:
    from framestamp.data.libricount import load_libricount

    return load_libricount(root, seed=seed)
