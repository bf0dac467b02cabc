"""Spoken sentences of random words with exact word times, written like LibriSpeech aligned by MFA.

A clip is one espeak-ng voice reading phrases of 2-8 words drawn from a small per-clip pool of the
built-in vocabulary (so words repeat and "the k-th occurrence" questions exist). Phrases are
separated by digital silence, so every phrase's first word follows a pause.

Layout (``root`` = OUT/words)::

    LibriSpeech/synth/<spk>/<chap>/<spk>-<chap>-<utt>.flac      16 kHz, 16-bit
    LibriSpeech/synth/<spk>/<chap>/<spk>-<chap>-<utt>.TextGrid  tiers words, phones, unreliable
    LibriSpeech/synth/<spk>/<chap>/<spk>-<chap>.trans.txt       "UTTID UPPER TEXT" lines
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from framestamp.data import espeak
from framestamp.data.espeak import ESPEAK_RATE, Phone, Speech, Voice, Word
from framestamp.data.synth import DEFAULT_MAX_SECONDS, DEFAULT_MIN_SECONDS, pcm16_to_float, to_pcm16, write_pcm16
from framestamp.runtime.audio import to_model_rate
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import SAMPLE_RATE

PHRASE_WORDS = (2, 8)
POOL_WORDS = (6, 24)  # distinct words a clip draws from: small enough that words repeat
LEAD_SECONDS = (0.05, 0.5)
PAUSE_SECONDS = (0.0, 0.6)  # added silence between phrases, after espeak's own 0.3 s end pause
PEAK = (0.25, 0.9)  # the clip's peak level, drawn per clip
SUBSET = "synth"  # plays the part of LibriSpeech's "dev-clean"
UTTERANCES_PER_CHAPTER = 10_000  # utterance numbers have four digits
SPEC_DEFAULTS = {"min_seconds": DEFAULT_MIN_SECONDS, "max_seconds": DEFAULT_MAX_SECONDS, "voices": list(espeak.VOICES)}


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """The built-in words (data/vocabulary.txt), in file order."""
    text = resources.files("framestamp.data").joinpath("vocabulary.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def word_pool(rng: np.random.Generator) -> tuple[str, ...]:
    """The few distinct words one clip (or one speaker) draws from."""
    size = int(rng.integers(POOL_WORDS[0], POOL_WORDS[1] + 1))
    return tuple(str(word) for word in rng.choice(vocabulary(), size=size, replace=False))


def speak_phrases(rng: np.random.Generator, voice: Voice, pool: tuple[str, ...], min_seconds: float,
                  max_seconds: float, lead_seconds: float) -> Speech:
    """Phrases of words from ``pool`` with pauses between, after ``lead_seconds`` of silence.

    Stops once at least ``min_seconds`` long (and never passes ``max_seconds``: a phrase that would
    is retried shorter, then dropped). Call inside an espeak.isolated child.
    """
    pieces = [np.zeros(round(lead_seconds * ESPEAK_RATE), np.int16)]
    length = len(pieces[0])
    words: list[Word] = []
    phones: list[Phone] = []
    while length < min_seconds * ESPEAK_RATE:
        count = int(rng.integers(PHRASE_WORDS[0], PHRASE_WORDS[1] + 1))
        text = " ".join(rng.choice(pool, size=count))
        phrase = espeak.synthesize(text, voice)
        while length + len(phrase.samples) > max_seconds * ESPEAK_RATE and count > 1:
            count //= 2
            phrase = espeak.synthesize(" ".join(text.split(" ")[:count]), voice)
        if length + len(phrase.samples) > max_seconds * ESPEAK_RATE:
            break
        offset = length / ESPEAK_RATE
        words += [Word(w.text, w.start + offset, w.end + offset, w.reliable) for w in phrase.words]
        phones += [Phone(p.name, p.start + offset, p.end + offset) for p in phrase.phones]
        pieces.append(phrase.samples)
        length += len(phrase.samples)
        pause = np.zeros(round(rng.uniform(*PAUSE_SECONDS) * ESPEAK_RATE), np.int16)
        if length + len(pause) <= max_seconds * ESPEAK_RATE:
            pieces.append(pause)
            length += len(pause)
    return Speech(samples=np.concatenate(pieces), words=tuple(words), phones=tuple(phones))


@dataclass(frozen=True)
class WordClip:
    pcm: np.ndarray  # int16 at 16 kHz, exactly what the FLAC file holds
    words: tuple[Word, ...]
    phones: tuple[Phone, ...]
    voice: Voice

    @property
    def audio(self) -> np.ndarray:
        return pcm16_to_float(self.pcm)

    @property
    def duration(self) -> float:
        return len(self.pcm) / SAMPLE_RATE

    @property
    def transcript(self) -> str:
        return " ".join(word.text for word in self.words)

    def unreliable_spans(self) -> list[tuple[float, float]]:
        """Time spans of unreliable words, touching ones merged (a merged word and its host)."""
        spans: list[tuple[float, float]] = []
        for word in self.words:
            if word.reliable:
                continue
            if spans and spans[-1][1] >= word.start:
                spans[-1] = (spans[-1][0], max(spans[-1][1], word.end))
            else:
                spans.append((word.start, word.end))
        return spans


@espeak.deterministic
def speak_words(seed: int, min_seconds: float = DEFAULT_MIN_SECONDS, max_seconds: float = DEFAULT_MAX_SECONDS,
                voices=espeak.VOICES) -> WordClip:
    """The word clip for ``seed``: same seed and settings, same samples and times, in any process."""
    if not 0 < min_seconds <= max_seconds:
        raise InputError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    rng = np.random.default_rng(seed)
    voice = espeak.random_voice(rng, espeak.check_languages(voices))
    pool = word_pool(rng)
    target = rng.uniform(min_seconds, max_seconds)
    speech = speak_phrases(rng, voice, pool, target, max_seconds, rng.uniform(*LEAD_SECONDS))
    if not speech.words:
        raise InputError(f"max_seconds={max_seconds} is too short for one spoken word; allow at least 2 seconds")
    audio = to_model_rate(speech.samples, ESPEAK_RATE)[:int(max_seconds * SAMPLE_RATE)]  # resampling may round up
    if len(audio) < min_seconds * SAMPLE_RATE:  # the last phrase fell short of the minimum: pad with silence
        audio = np.concatenate([audio, np.zeros(int(np.ceil(min_seconds * SAMPLE_RATE)) - len(audio), np.float32)])
    # At 16 kHz the clip can be a fraction of a sample shorter than at 22.05 kHz: keep every end inside it.
    duration = len(audio) / SAMPLE_RATE
    words = tuple(Word(w.text, w.start, min(w.end, duration), w.reliable) for w in speech.words)
    phones = tuple(Phone(p.name, p.start, min(p.end, duration)) for p in speech.phones)
    return WordClip(pcm=to_pcm16(audio, rng.uniform(*PEAK)), words=words, phones=phones, voice=voice)


def generate(seed: int, **spec) -> tuple[np.ndarray, dict]:
    """(16 kHz float32 audio, labels) for ``seed``; labels hold what the TextGrid holds."""
    clip = speak_words(seed, **spec)
    return clip.audio, labels_of(clip)


def labels_of(clip: WordClip) -> dict:
    return {
        "words": [[w.text, w.start, w.end, w.reliable] for w in clip.words],
        "phones": [[p.name, p.start, p.end] for p in clip.phones],
        "unreliable": [list(span) for span in clip.unreliable_spans()],
        "voice": asdict(clip.voice),
        "duration": clip.duration,
    }


# ---------------------------------------------------------------- files


def speaker_number(voice: Voice) -> int:
    """A LibriSpeech-style speaker id per language voice and variant: 1000 + 100*language + variant."""
    variant = 0 if voice.variant is None else 1 + list(espeak.VARIANTS).index(voice.variant)
    return 1000 + 100 * espeak.VOICES.index(voice.language) + variant


def utterance_id(voice: Voice, index: int) -> str:
    """"<spk>-<chap>-<utt>" from the clip's index alone, so clip i keeps its name whatever --count is."""
    chapter, utterance = divmod(index, UTTERANCES_PER_CHAPTER)
    return f"{speaker_number(voice)}-{chapter + 1}-{utterance:04d}"


def audio_root(root: Path) -> Path:
    """The folder a LibriSpeech loader is pointed at."""
    return Path(root) / "LibriSpeech" / SUBSET


def prepare() -> None:
    """Load what every clip needs once, before the per-clip forks inherit it."""
    import framestamp.data.librispeech  # noqa: F401

    espeak.initialize()  # here, so a missing libespeak-ng is reported before any clip is started
    vocabulary()


def write_clip(root: Path, index: int, seed: int, spec: dict) -> dict:
    """Generate clip ``index`` and write its FLAC and TextGrid; returns its transcript line's parts."""
    from framestamp.data.librispeech import write_textgrid

    clip = speak_words(seed, **spec)
    uttid = utterance_id(clip.voice, index)
    speaker, chapter, _ = uttid.split("-")
    folder = audio_root(root) / speaker / chapter
    write_pcm16(folder / f"{uttid}.flac", clip.pcm, SAMPLE_RATE)
    write_textgrid(folder / f"{uttid}.TextGrid",
                   words=[(w.text, w.start, w.end) for w in clip.words],
                   phones=[(p.name, p.start, p.end) for p in clip.phones],
                   duration=clip.duration, unreliable=clip.unreliable_spans())
    return {"audio": (folder / f"{uttid}.flac").relative_to(root).as_posix(), "utterance": uttid,
            "transcript": clip.transcript.upper()}


def write_labels(root: Path, records: list[dict]) -> None:
    """One <spk>-<chap>.trans.txt per chapter folder, lines sorted by utterance id."""
    chapters: dict[str, list[str]] = {}
    for record in records:
        speaker, chapter, _ = record["utterance"].split("-")
        chapters.setdefault(f"{speaker}/{chapter}", []).append(f"{record['utterance']} {record['transcript']}")
    for folder, lines in sorted(chapters.items()):
        speaker, chapter = folder.split("/")
        path = audio_root(root) / folder / f"{speaker}-{chapter}.trans.txt"
        path.write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8")


def load(root: Path, seed: int = 0) -> list:
    """The questions the LibriSpeech loader asks about what was written under ``root``."""
    from framestamp.data.librispeech import load_librispeech

    return load_librispeech(audio_root(root), alignment_root=None, seed=seed)
