"""libflite through ctypes: speech with the engine's own word and phone times.

flite builds an utterance whose Segment relation holds every phone with its end time in the
waveform it returns, and whose Word items point to their phones (Word -> SylStructure -> syllables
-> segments). A word starts where the segment before its first phone ends and ends with its last
phone, exactly as ``flite -psdur`` prints them. The conventions are the voice's own: a stop after a
pause starts at its closure (as Montreal Forced Aligner labels it), not at the burst as espeak-ng's do.

flite's pauses carry the voice's recorded room noise (awb and kal16 up to -22 dB of the word peak);
``synthesize`` sets everything outside the words to digital silence, as espeak-ng's pauses are
(``keep_pauses=True`` returns flite's own samples, for checking its times against them).

slt, rms and awb are clustergen voices whose vocoder draws noise from C's ``rand()``; seeding it
before every phrase makes a phrase a function of its text and voice alone, in any process.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from framestamp.data.espeak import Phone, Speech, Word
from framestamp.data.engines import silence_outside_words, words_of_tokens
from framestamp.runtime.errors import InputError

INSTALL_HINT = "install flite (Debian/Ubuntu: apt-get install flite)"

# voice -> (native sample rate, sex as LibriCount writes it). awb_time (a talking clock) is left out.
VOICES = {"slt": (16_000, "F"), "rms": (16_000, "M"), "awb": (16_000, "M"), "kal16": (16_000, "M"), "kal": (8_000, "M")}
STRETCH = (0.85, 1.2)  # duration_stretch drawn per clip: slower or faster than the voice's own rate
PITCH = (-20.0, 20.0)  # Hz added to the voice's mean f0 (int_f0_target_mean), drawn per clip
DEFAULT_F0 = {"slt": 160.0, "rms": 95.0, "awb": 115.0, "kal16": 105.0, "kal": 105.0}
PAUSE = "pau"


@dataclass(frozen=True)
class FliteVoice:
    name: str = "slt"
    stretch: float = 1.0  # duration_stretch: > 1 is slower
    pitch: float = 0.0  # Hz added to the voice's mean f0

    engine = "flite"

    @property
    def spec(self) -> str:
        return f"flite:{self.name}"

    @property
    def sex(self) -> str:
        return VOICES[self.name][1]

    @property
    def sample_rate(self) -> int:
        return VOICES[self.name][0]


def random_voice(rng: np.random.Generator, name: str) -> FliteVoice:
    return FliteVoice(name=name, stretch=round(float(rng.uniform(*STRETCH)), 3), pitch=round(float(rng.uniform(*PITCH)), 1))


class _Wave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short))]


class _Voice(ctypes.Structure):  # the head of cst_voice: its name and feature set
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p)]


def _load_library() -> ctypes.CDLL:
    try:
        library = ctypes.CDLL("libflite.so.1", mode=ctypes.RTLD_GLOBAL)  # the voices link against its symbols
    except OSError:
        raise InputError(f"libflite is not installed, and flite voices need it: {INSTALL_HINT}") from None
    pointer = ctypes.c_void_p
    for name, restype, argtypes in [
        ("flite_init", ctypes.c_int, []),
        ("flite_synth_text", pointer, [ctypes.c_char_p, pointer]),
        ("utt_wave", ctypes.POINTER(_Wave), [pointer]),
        ("utt_relation", pointer, [pointer, ctypes.c_char_p]),
        ("relation_head", pointer, [pointer]),
        ("item_next", pointer, [pointer]),
        ("item_as", pointer, [pointer, ctypes.c_char_p]),
        ("item_parent", pointer, [pointer]),
        ("ffeature_float", ctypes.c_float, [pointer, ctypes.c_char_p]),
        ("ffeature_string", ctypes.c_char_p, [pointer, ctypes.c_char_p]),
        ("feat_set_float", None, [pointer, ctypes.c_char_p, ctypes.c_float]),
        ("delete_utterance", None, [pointer]),
    ]:
        function = getattr(library, name)
        function.restype, function.argtypes = restype, argtypes
    return library


_library: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None)
_voices: dict[str, int] = {}  # name -> cst_voice pointer


def _voice_pointer(name: str) -> int:
    global _library
    if _library is None:
        _library = _load_library()
        _library.flite_init()
    if name not in _voices:
        if name not in VOICES:
            raise InputError(f"flite has no voice {name!r}; choose from {', '.join(VOICES)}")
        try:
            module = ctypes.CDLL(f"libflite_cmu_us_{name}.so.1", mode=ctypes.RTLD_GLOBAL)
        except OSError:
            raise InputError(f"flite's voice {name} is not installed: {INSTALL_HINT}") from None
        register = getattr(module, f"register_cmu_us_{name}")
        register.restype, register.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
        _voices[name] = register(None)
    return _voices[name]


def initialize(names=VOICES) -> None:
    """Load libflite and register ``names`` in this process (before forking: every child inherits them)."""
    for name in names:
        _voice_pointer(name)


def available() -> bool:
    try:
        _voice_pointer("slt")
    except InputError:
        return False
    return True


def synthesize(text: str, voice: FliteVoice, keep_pauses: bool = False) -> Speech:
    """Speak ``text`` (words separated by spaces) and time every word and phone from flite's utterance."""
    pointer = _voice_pointer(voice.name)
    library = _library
    features = _Voice.from_address(pointer).features
    library.feat_set_float(features, b"duration_stretch", voice.stretch)
    library.feat_set_float(features, b"int_f0_target_mean", DEFAULT_F0[voice.name] + voice.pitch)
    _libc.srand(0)  # the clustergen voices (slt, rms, awb) draw their noise excitation from C's rand()
    utterance = library.flite_synth_text(text.encode("utf-8"), pointer)
    try:  # copy everything out of the utterance before deleting it: its wave is flite's memory
        wave = library.utt_wave(utterance).contents
        if wave.num_channels != 1 or wave.sample_rate != voice.sample_rate:
            raise RuntimeError(f"flite voice {voice.name} gave {wave.num_channels} channel(s) at {wave.sample_rate} Hz, "
                               f"expected mono at {voice.sample_rate} Hz")
        samples = np.ctypeslib.as_array(wave.samples, (wave.num_samples,)).copy() if wave.num_samples else np.zeros(0, np.int16)
        words = _words(library, utterance, text)
        phones = _phones(library, utterance)
    finally:
        library.delete_utterance(utterance)
    speech = Speech(samples=samples, words=words, phones=phones, rate=voice.sample_rate)
    return speech if keep_pauses else silence_outside_words(speech)


def _relation_items(library, utterance, relation: bytes):
    item = library.relation_head(library.utt_relation(utterance, relation))
    while item:
        yield item
        item = library.item_next(item)


def _words(library, utterance, text: str) -> tuple[Word, ...]:
    """One Word per token of ``text``: from its first word's first phone to its last word's last phone."""
    tokens: list[list[float]] = []  # [start, end] per token, in order
    last_token = None
    for item in _relation_items(library, utterance, b"Word"):
        start = library.ffeature_float(item, b"R:SylStructure.daughter1.daughter1.R:Segment.p.end")
        end = library.ffeature_float(item, b"R:SylStructure.daughtern.daughtern.R:Segment.end")
        token = library.item_parent(library.item_as(item, b"Token"))
        if token != last_token or token is None:
            tokens.append([start, end])
            last_token = token
        else:
            tokens[-1][1] = end
    return words_of_tokens(text, tokens, "flite")


def _phones(library, utterance) -> tuple[Phone, ...]:
    phones = []
    for item in _relation_items(library, utterance, b"Segment"):
        name = library.ffeature_string(item, b"name").decode("ascii", "replace")
        if name != PAUSE:
            phones.append(Phone(name, float(library.ffeature_float(item, b"p.end")), float(library.ffeature_float(item, b"end"))))
    return tuple(phones)
