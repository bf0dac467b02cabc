"""Speech engines behind one interface: voices named ``engine:voice``, speech with word and phone times.

    espeak    espeak-ng through libespeak-ng (data/espeak.py): a plain name such as ``en-029`` is espeak's
    flite     libflite through ctypes (data/flite.py): slt, rms, awb, kal16, kal
    festival  Festival as a subprocess (data/festival.py): kal, ked, slt (each its own Debian package)
    piper     Piper's neural (VITS) voices on ONNX Runtime (data/piper.py): joe (pip install 'framestamp[piper]')

Every engine's ``synthesize(text, voice)`` returns a Speech: int16 samples at the engine's own rate
(``voice.sample_rate``) and one Word per word of the text with start and end times taken from the
engine's own phone timing. A voice object names its engine (``voice.engine``), its ``--voices``
spelling (``voice.spec``) and its sex; ``random_voice`` draws the engine's per-speaker settings
(variant, rate, pitch) from a seeded generator.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

from framestamp.data import espeak
from framestamp.data.espeak import Phone, Speech, Word
from framestamp.runtime.errors import InputError

MODULES = {"espeak": "framestamp.data.espeak", "flite": "framestamp.data.flite", "festival": "framestamp.data.festival",
           "piper": "framestamp.data.piper"}


def engine_module(engine: str):
    if engine not in MODULES:
        raise InputError(f"unknown speech engine {engine!r}; engines are {', '.join(MODULES)}")
    return importlib.import_module(MODULES[engine])


def split_spec(spec: str) -> tuple[str, str]:
    """("flite", "slt") from "flite:slt"; a name without an engine is an espeak-ng voice."""
    engine, separator, name = spec.partition(":")
    return (engine.strip(), name.strip()) if separator else ("espeak", spec.strip())


def parse_voices(specs) -> tuple[str, ...]:
    """The voices as --voices spells them (espeak voices plainly), or InputError saying what is wrong.

    Checks that each engine and voice exists and is installed, so a run fails before its first clip.
    """
    specs = tuple(spec for spec in specs if spec.strip())
    if not specs:
        raise InputError("no voices given; name some, e.g. en-us,flite:slt,festival:kal")
    parsed = []
    for spec in specs:
        engine, name = split_spec(spec)
        module = engine_module(engine)
        if engine == "espeak":
            espeak.check_languages([name])
            parsed.append(name)
            continue
        if name not in module.VOICES:
            raise InputError(f"{engine} has no voice {name!r} (in {spec!r}); choose from {', '.join(module.VOICES)}")
        if engine == "flite":
            module.initialize([name])  # loads the library and the voice: InputError if either is missing
        else:
            module.check_voice(name)
        parsed.append(f"{engine}:{name}")
    return tuple(parsed)


def espeak_voices(specs) -> tuple[str, ...]:
    """The espeak-ng voices among ``specs`` (tasks that mix espeak variants use only these)."""
    return tuple(name for engine, name in map(split_spec, specs) if engine == "espeak")


def random_voice(rng: np.random.Generator, specs, rates=espeak.RATES, pitches=espeak.PITCHES):
    """A voice drawn from ``rng``: which of ``specs``, then the engine's own settings (an espeak-ng
    voice's rate and pitch from ``rates`` and ``pitches``).

    For a list of espeak voices the draws are exactly espeak.random_voice's, so datasets made before
    other engines existed keep their bytes.
    """
    specs = tuple(specs)
    engine, name = split_spec(specs[rng.integers(len(specs))])
    if engine == "espeak":
        return espeak.random_variant(rng, espeak.check_languages([name])[0], rates, pitches)
    return engine_module(engine).random_voice(rng, name)


def synthesize(text: str, voice, keep_pauses: bool = False) -> Speech:
    """``text`` (words separated by spaces) spoken by ``voice``, timed by its engine.

    flite and Festival set the samples outside words to zero unless ``keep_pauses``, Piper those of its
    pauses (espeak-ng's pauses are silent already).
    """
    if voice.engine == "espeak":
        return espeak.synthesize(text, voice)
    return engine_module(voice.engine).synthesize(text, voice, keep_pauses=keep_pauses)


def prepare(specs) -> None:
    """Load the engines ``specs`` use in this process, before per-clip children are forked from it."""
    for engine, name in map(split_spec, specs):
        if engine == "espeak":
            espeak.initialize()
        elif engine in ("flite", "piper"):
            engine_module(engine).initialize([name])


@contextlib.contextmanager
def session():
    """Keep subprocess engines (Festival) running for every phrase synthesized inside."""
    with engine_module("festival").session():
        yield


# ---------------------------------------------------------------- helpers of the engines that time phones


def words_of_tokens(text: str, token_times, engine: str) -> tuple[Word, ...]:
    """Words of ``text`` with the (start, end) the engine gave each of its tokens, in order.

    Times are rounded to microseconds (engines hold single-precision floats or print six decimals).
    A token the engine gave no phones (start >= end) is left out: the audio has no such word.
    """
    texts = text.split()
    if len(texts) != len(token_times):
        raise RuntimeError(f"{engine} read {len(token_times)} token(s) in {text!r}, which has {len(texts)} word(s)")
    return tuple(Word(word, round(float(start), 6), round(float(end), 6), True)
                 for word, (start, end) in zip(texts, token_times) if end > start)


def silence_outside_words(speech: Speech) -> Speech:
    """The speech with every sample outside its words set to zero (and times cut to its samples).

    Engines built from recordings fill their pauses with the room noise of the pause units (flite's
    awb and kal16 up to -22 dB of the word peak); outside its words a clip should be silent, as
    espeak-ng's phrases are, so that a pause sounds like one whichever engine spoke.
    """
    duration = len(speech.samples) / speech.rate
    words = tuple(Word(w.text, w.start, min(w.end, duration), w.reliable) for w in speech.words if w.start < duration)
    phones = tuple(Phone(p.name, p.start, min(p.end, duration)) for p in speech.phones if p.start < duration)
    samples = np.zeros_like(speech.samples)
    for word in words:
        first, last = (int(round(t * speech.rate)) for t in (word.start, word.end))
        samples[first:last] = speech.samples[first:last]
    return Speech(samples=samples, words=words, phones=phones, rate=speech.rate)
