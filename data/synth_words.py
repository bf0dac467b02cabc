"""Spoken sentences of random words with exact word times, written like LibriSpeech aligned by MFA.

A clip is one voice (espeak-ng, flite or Festival: data/engines.py) reading phrases of 2-8 words
drawn from a small per-clip pool of the vocabulary (so words repeat and "the k-th occurrence"
questions exist). Each phrase is one engine call, so words coarticulate as in a sentence; phrases
are separated by digital silence, so every phrase's first word follows a pause. Optionally the clip
is heard in a room (reverberation) and over background noise (data/conditions.py); both are drawn
from the clip's seed and leave the word times unchanged.

Layout (``root`` = OUT/words)::

    LibriSpeech/synth/<spk>/<chap>/<spk>-<chap>-<utt>.flac      16 kHz, 16-bit
    LibriSpeech/synth/<spk>/<chap>/<spk>-<chap>-<utt>.TextGrid  tiers words, phones, unreliable
    LibriSpeech/synth/<spk>/<chap>/<spk>-<chap>.trans.txt       "UTTID UPPER TEXT" lines
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from framestamp.data import conditions, engines, espeak
from framestamp.data.espeak import Phone, Speech, Word
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
SPEC_DEFAULTS = {"min_seconds": DEFAULT_MIN_SECONDS, "max_seconds": DEFAULT_MAX_SECONDS, "voices": list(espeak.VOICES),
                 "noise_snr": None, "noise_kinds": list(conditions.NOISE_KINDS), "reverb": 0.0, "vocabulary": None,
                 "rates": list(espeak.RATES), "pitches": list(espeak.PITCHES)}
# Settings a clip's generator records only when they differ from the default, so that datasets made
# before they existed keep their bytes.
OPTIONAL_SETTINGS = ("noise_snr", "noise_kinds", "reverb", "vocabulary", "rates", "pitches")
# The clip's conditions draw from their own streams of its seed: turning noise on changes nothing else.
ROOM_STREAM, NOISE_STREAM = 1, 2
SPEAKER_BASE = {"flite": 2000, "festival": 3000, "piper": 4000}  # espeak's speaker numbers are 1000-1799


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """The built-in words (data/vocabulary.txt), in file order."""
    text = resources.files("framestamp.data").joinpath("vocabulary.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def read_vocabulary(path: str | Path) -> tuple[str, ...]:
    """The words of a word list file: the first field of each line, lower-cased, in file order.

    Blank lines, ``#`` comments, repeats and words with anything but the letters a-z are skipped, so
    a pronouncing dictionary such as cmudict (``word  W ER1 D``, ``word(2) ...``) can be given as is.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise InputError(f"cannot read the vocabulary file {path}: {error.strerror or error}") from None
    words = dict.fromkeys(fields[0].lower() for fields in (line.split() for line in text.splitlines())
                          if fields and not fields[0].startswith(("#", ";;;")))
    words = tuple(word for word in words if word.isascii() and word.isalpha())
    if len(words) < 2:
        raise InputError(f"the vocabulary file {path} has {len(words)} usable word(s) (lines starting with a word of "
                         f"letters a-z); a clip needs at least 2")
    return words


def vocabulary_source(path: str | Path) -> dict:
    """How a clip's generator names a vocabulary file: its absolute path and the SHA-256 of its bytes."""
    path = Path(path).expanduser().resolve()
    read_vocabulary(path)  # the words must be usable before any clip is started
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@lru_cache(maxsize=4)
def _word_array(path: str | None, sha256: str | None, version: tuple = ()) -> np.ndarray:
    """The words as an array (rng.choice converts a tuple on every call); ``version`` is the file's
    (mtime, size), so an edited file is read and checked again."""
    if path is None:
        return np.array(vocabulary())
    if sha256 is not None and hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha256:
        raise InputError(f"the vocabulary file {path} has changed since this clip was made (its SHA-256 is not {sha256}); "
                         f"restore it to regenerate the clip")
    return np.array(read_vocabulary(path))


def clip_words(source=None) -> np.ndarray:
    """The words clips draw from: the built-in vocabulary (None), a word list file's path, or
    ``vocabulary_source``'s {"path", "sha256"} (checked against the file)."""
    if source is None:
        return _word_array(None, None)
    if isinstance(source, (str, Path)):
        source = {"path": str(Path(source).expanduser().resolve()), "sha256": None}
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        raise InputError(f"a vocabulary must be a file path or {{'path': ..., 'sha256': ...}}, got {source!r}")
    try:
        status = Path(source["path"]).stat()
    except OSError as error:
        raise InputError(f"cannot read the vocabulary file {source['path']}: {error.strerror or error}") from None
    return _word_array(source["path"], source.get("sha256"), (status.st_mtime_ns, status.st_size))


def word_pool(rng: np.random.Generator, words=None) -> tuple[str, ...]:
    """The few distinct words one clip (or one speaker) draws from ``words`` (default: the built-in ones)."""
    words = clip_words() if words is None else words
    size = int(rng.integers(POOL_WORDS[0], POOL_WORDS[1] + 1))
    return tuple(str(word) for word in rng.choice(words, size=min(size, len(words)), replace=False))


def speak_phrases(rng: np.random.Generator, voice, pool: tuple[str, ...], min_seconds: float,
                  max_seconds: float, lead_seconds: float) -> Speech:
    """Phrases of words from ``pool`` with pauses between, after ``lead_seconds`` of silence.

    Each phrase is one call to the voice's engine. Stops once at least ``min_seconds`` long (and never
    passes ``max_seconds``: a phrase that would is retried shorter, then dropped). Call inside an
    espeak.isolated child, within engines.session().
    """
    rate = voice.sample_rate
    pieces = [np.zeros(round(lead_seconds * rate), np.int16)]
    length = len(pieces[0])
    words: list[Word] = []
    phones: list[Phone] = []
    while length < min_seconds * rate:
        count = int(rng.integers(PHRASE_WORDS[0], PHRASE_WORDS[1] + 1))
        text = " ".join(rng.choice(pool, size=count))
        phrase = engines.synthesize(text, voice)
        while length + len(phrase.samples) > max_seconds * rate and count > 1:
            count //= 2
            phrase = engines.synthesize(" ".join(text.split(" ")[:count]), voice)
        if length + len(phrase.samples) > max_seconds * rate:
            break
        offset = length / rate
        words += [Word(w.text, w.start + offset, w.end + offset, w.reliable) for w in phrase.words]
        phones += [Phone(p.name, p.start + offset, p.end + offset) for p in phrase.phones]
        pieces.append(phrase.samples)
        length += len(phrase.samples)
        pause = np.zeros(round(rng.uniform(*PAUSE_SECONDS) * rate), np.int16)
        if length + len(pause) <= max_seconds * rate:
            pieces.append(pause)
            length += len(pause)
    return Speech(samples=np.concatenate(pieces), words=tuple(words), phones=tuple(phones), rate=rate)


@dataclass(frozen=True)
class WordClip:
    pcm: np.ndarray  # int16 at 16 kHz, exactly what the FLAC file holds
    words: tuple[Word, ...]
    phones: tuple[Phone, ...]
    voice: object  # espeak.Voice, flite.FliteVoice, festival.FestivalVoice or piper.PiperVoice
    conditions: dict = field(default_factory=dict)  # {"reverb": {...}, "noise": {...}} when applied

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


def speak_words(seed: int, min_seconds: float = DEFAULT_MIN_SECONDS, max_seconds: float = DEFAULT_MAX_SECONDS,
                voices=espeak.VOICES, noise_snr=None, noise_kinds=conditions.NOISE_KINDS, reverb: float = 0.0,
                vocabulary=None, rates=espeak.RATES, pitches=espeak.PITCHES) -> WordClip:
    """The word clip for ``seed``: same seed and settings, same samples and times, in any process.

    ``voices`` are --voices names (``en-029``, ``flite:slt``, ``festival:kal``); ``noise_snr`` is None
    or a (low, high) dB range to draw the SNR from, with the noise kind drawn from ``noise_kinds``;
    ``reverb`` is the probability of a room; ``vocabulary`` is None (built-in) or a word list
    (see ``clip_words``); ``rates`` and ``pitches`` are the ranges an espeak-ng voice's words per
    minute and pitch are drawn from.
    """
    if not 0 < min_seconds <= max_seconds:
        raise InputError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    noise_snr = check_snr_range(noise_snr)
    noise_kinds = conditions.check_noise_kinds(noise_kinds)
    if not 0.0 <= reverb <= 1.0:
        raise InputError(f"reverb is a probability between 0 and 1, got {reverb}")
    voices = engines.parse_voices(voices)
    words = clip_words(vocabulary)
    rates = espeak.check_range("rates", rates, espeak.RATE_LIMITS)
    pitches = espeak.check_range("pitches", pitches, espeak.PITCH_LIMITS)
    return _speak_words(seed, min_seconds, max_seconds, voices, noise_snr, noise_kinds, reverb, words, rates, pitches)


def check_snr_range(noise_snr) -> tuple[float, float] | None:
    if noise_snr is None:
        return None
    try:
        low, high = (float(value) for value in noise_snr)
    except (TypeError, ValueError):
        raise InputError(f"a noise SNR range is two numbers of dB (low, high), got {noise_snr!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise InputError(f"a noise SNR range needs finite low <= high, got {low:g} and {high:g}")
    return low, high


@espeak.deterministic
def _speak_words(seed: int, min_seconds: float, max_seconds: float, voices: tuple[str, ...], noise_snr, noise_kinds,
                 reverb: float, vocabulary_words: np.ndarray, rates: tuple[int, int],
                 pitches: tuple[int, int]) -> WordClip:
    rng = np.random.default_rng(seed)
    voice = engines.random_voice(rng, voices, rates, pitches)
    pool = word_pool(rng, vocabulary_words)
    target = rng.uniform(min_seconds, max_seconds)
    with engines.session():
        speech = speak_phrases(rng, voice, pool, target, max_seconds, rng.uniform(*LEAD_SECONDS))
    if not speech.words:
        raise InputError(f"max_seconds={max_seconds} is too short for one spoken word; allow at least 2 seconds")
    audio = to_model_rate(speech.samples, speech.rate)[:int(max_seconds * SAMPLE_RATE)]  # resampling may round up
    if len(audio) < min_seconds * SAMPLE_RATE:  # the last phrase fell short of the minimum: pad with silence
        audio = np.concatenate([audio, np.zeros(int(np.ceil(min_seconds * SAMPLE_RATE)) - len(audio), np.float32)])
    # At 16 kHz the clip can be a fraction of a sample shorter than at the engine's rate: keep every end inside it.
    duration = len(audio) / SAMPLE_RATE
    words = tuple(Word(w.text, w.start, min(w.end, duration), w.reliable) for w in speech.words)
    phones = tuple(Phone(p.name, p.start, min(p.end, duration)) for p in speech.phones)
    audio, applied = acoustic_conditions(seed, audio, words, noise_snr, noise_kinds, reverb, vocabulary_words)
    return WordClip(pcm=to_pcm16(audio, rng.uniform(*PEAK)), words=words, phones=phones, voice=voice,
                    conditions=applied)


def acoustic_conditions(seed: int, audio: np.ndarray, words, noise_snr, noise_kinds, reverb: float,
                        vocabulary_words) -> tuple[np.ndarray, dict]:
    """The clip in a room (with probability ``reverb``), then over noise (if ``noise_snr``): each drawn
    from its own stream of ``seed``. Returns the audio and what was applied."""
    applied = {}
    if reverb > 0:
        room_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ROOM_STREAM,)))
        if room_rng.random() < reverb:
            audio, room = conditions.reverberate(room_rng, audio, SAMPLE_RATE)
            applied["reverb"] = room.as_dict()
    if noise_snr is not None:
        noise_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(NOISE_STREAM,)))
        audio, noise = conditions.add_noise(noise_rng, audio, [(w.start, w.end) for w in words], SAMPLE_RATE,
                                            noise_snr, noise_kinds, vocabulary_words)
        applied["noise"] = noise.as_dict()
    return audio, applied


def generate(seed: int, **spec) -> tuple[np.ndarray, dict]:
    """(16 kHz float32 audio, labels) for ``seed``; labels hold what the TextGrid holds."""
    clip = speak_words(seed, **spec)
    return clip.audio, labels_of(clip)


def labels_of(clip: WordClip) -> dict:
    return {
        "words": [[w.text, w.start, w.end, w.reliable] for w in clip.words],
        "phones": [[p.name, p.start, p.end] for p in clip.phones],
        "unreliable": [list(span) for span in clip.unreliable_spans()],
        "engine": clip.voice.engine,
        "voice": asdict(clip.voice),
        "conditions": clip.conditions,
        "duration": clip.duration,
    }


# ---------------------------------------------------------------- files


def speaker_number(voice) -> int:
    """A LibriSpeech-style speaker id per voice: espeak 1000 + 100*language + variant, flite 2000 +
    100*voice, festival 3000 + 100*voice, piper 4000 + 100*voice (in the order of each engine's VOICES)."""
    if voice.engine != "espeak":
        return SPEAKER_BASE[voice.engine] + 100 * list(engines.engine_module(voice.engine).VOICES).index(voice.name)
    variant = 0 if voice.variant is None else 1 + list(espeak.VARIANTS).index(voice.variant)
    return 1000 + 100 * espeak.VOICES.index(voice.language) + variant


def utterance_id(voice, index: int) -> str:
    """"<spk>-<chap>-<utt>" from the clip's index alone, so clip i keeps its name whatever --count is."""
    chapter, utterance = divmod(index, UTTERANCES_PER_CHAPTER)
    return f"{speaker_number(voice)}-{chapter + 1}-{utterance:04d}"


def audio_root(root: Path) -> Path:
    """The folder a LibriSpeech loader is pointed at."""
    return Path(root) / "LibriSpeech" / SUBSET


def prepare(spec: dict) -> None:
    """Load what every clip needs once, before the per-clip forks inherit it."""
    import framestamp.data.librispeech  # noqa: F401

    voices = engines.parse_voices(spec["voices"])  # here, so a missing engine is reported before any clip is started
    if engines.espeak_voices(voices) or (spec["noise_snr"] is not None and "babble" in spec["noise_kinds"]):
        espeak.initialize()
    engines.prepare(voices)
    clip_words(spec["vocabulary"])


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
    # What the manifest's source adds for this clip; nothing for plain espeak clips, which keep their old bytes.
    source = {"engine": clip.voice.engine, "voice": clip.voice.spec} if clip.voice.engine != "espeak" else {}
    if clip.conditions:
        source["conditions"] = clip.conditions
    return {"audio": (folder / f"{uttid}.flac").relative_to(root).as_posix(), "utterance": uttid,
            "transcript": clip.transcript.upper(), "source": source}


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
