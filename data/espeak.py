"""libespeak-ng through ctypes: synthetic speech with exact word and phoneme times.

espeak-ng reports an event at the first sample of every phoneme. A word starts at the first
phoneme whose text position is the word's own and ends where the next phoneme or pause begins
(espeak's WORD events run 12-84 ms early, so they are never used for times). Words that espeak
merges into their neighbour ("on the") have no phonemes of their own: they and their host word are
marked unreliable.

espeak keeps state between utterances (repeating a call can move times by 0.3 ms), but a child
forked from a process that has only initialized espeak starts from the same state every time.
So every synthesis runs in such a child (``isolated``), which makes output bit-for-bit repeatable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import pickle
import selectors
import traceback
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
from numpy.ctypeslib import as_array  # numpy 2 imports it lazily: not in every forked child

from framestamp.runtime.errors import InputError

ESPEAK_RATE = 22_050  # espeak-ng's own output rate (Hz)
INSTALL_HINT = "install espeak-ng (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng)"

# The English voices of espeak-ng 1.51 ("en-gb" itself is not a voice name: "en" is).
VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")

# A fixed list (not read from the install) so that a seed picks the same variant everywhere.
# variant -> sex as LibriCount writes it. Whispered and robotic variants are left out: they
# have no voicing to hear an onset by.
VARIANTS = {
    "f1": "F", "f2": "F", "f3": "F", "f4": "F", "f5": "F", "Annie": "F", "Andrea": "F", "linda": "F",
    "belinda": "F", "aunty": "F", "grandma": "F", "steph": "F", "anika": "F",
    "m1": "M", "m2": "M", "m3": "M", "m4": "M", "m5": "M", "m6": "M", "m7": "M", "m8": "M",
    "Denis": "M", "Lee": "M", "Andy": "M", "victor": "M", "croak": "M", "antonio": "M", "travis": "M",
}

# espeak-ng's C constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_PHONEME = 7
_EVENT_END = 5
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3


@dataclass(frozen=True)
class Voice:
    """One speaker as espeak makes it: language voice, variant (timbre), rate and pitch."""

    language: str = "en-us"
    variant: str | None = None
    rate: int = 175
    pitch: int = 50

    engine = "espeak"  # a class attribute, not a field: asdict() and the manifests stay as they were
    sample_rate = ESPEAK_RATE

    @property
    def spec(self) -> str:
        """How --voices names it: espeak voices by their plain language name."""
        return self.language

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def sex(self) -> str:
        return VARIANTS.get(self.variant, "M")  # espeak's plain voices are male


RATES = (130, 250)  # words per minute a random voice speaks at, by default
PITCHES = (20, 80)  # espeak-ng's pitch scale, 0-99
RATE_LIMITS = (80, 450)  # the rates espeak-ng speaks at without its sonic speed-up
PITCH_LIMITS = (0, 99)


def check_range(name: str, values, limits: tuple[int, int]) -> tuple[int, int]:
    """``values`` as an integer (low, high) inside ``limits``, or InputError saying what to give."""
    try:
        low, high = (float(value) for value in values)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (low.is_integer() and high.is_integer() and limits[0] <= low <= high <= limits[1]):
        raise InputError(f"{name} takes two whole numbers LOW,HIGH with {limits[0]} <= LOW <= HIGH <= {limits[1]}, "
                         f"got {values!r}")
    return int(low), int(high)


def random_voice(rng: np.random.Generator, languages=VOICES, rates=RATES, pitches=PITCHES) -> Voice:
    """A voice drawn from ``rng``: language, variant (or none), rate and pitch within the ranges."""
    return random_variant(rng, languages[rng.integers(len(languages))], rates, pitches)


def random_variant(rng: np.random.Generator, language: str, rates=RATES, pitches=PITCHES) -> Voice:
    """A voice of ``language`` with variant (or none), rate and pitch drawn from ``rng``, in that order."""
    variants = (None,) + tuple(VARIANTS)
    return Voice(
        language=language,
        variant=variants[rng.integers(len(variants))],
        rate=int(rng.integers(rates[0], rates[1] + 1)),
        pitch=int(rng.integers(pitches[0], pitches[1] + 1)),
    )


def check_languages(languages) -> tuple[str, ...]:
    """The names as a tuple, or InputError naming the ones espeak-ng has no English voice for."""
    languages = tuple(languages)
    unknown = [name for name in languages if name not in VOICES]
    if unknown or not languages:
        raise InputError(f"unknown voice(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VOICES)}")
    return languages


@dataclass(frozen=True)
class Phone:
    name: str  # espeak's phoneme mnemonic, e.g. "aI", "@2"
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds: the first sample of the word's first phoneme
    end: float  # seconds: where the next phoneme or pause begins
    reliable: bool  # False for a word merged with a neighbour, and for that neighbour


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # int16 at ``rate``
    words: tuple[Word, ...]
    phones: tuple[Phone, ...]  # pauses left out
    rate: int = ESPEAK_RATE  # Hz: the engine's own output rate

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


# ---------------------------------------------------------------- the library


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # absolute sample index
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Engine:
    """The one initialized libespeak-ng of this process and the buffers its callback fills."""

    def __init__(self):
        self.library = _load_library()
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int, str]] = []  # (type, text_position, sample, phoneme)
        rate = self.library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if rate != ESPEAK_RATE:
            raise InputError(f"libespeak-ng failed to start (returned {rate}); its data files may be missing: {INSTALL_HINT}")
        self._callback = _SynthCallback(self._collect)  # kept on self: ctypes must not free it
        self.library.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events):
        if num_samples > 0:
            self.chunks.append(as_array(wav, (num_samples,)).copy())
        i = 0
        while events[i].type != 0:
            event = events[i]
            name = event.id.string.decode("ascii", "replace") if event.type == _EVENT_PHONEME else ""
            self.events.append((event.type, event.text_position, event.sample, name))
            i += 1
        return 0

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int, int, str]]]:
        library = self.library
        if library.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise InputError(f"espeak-ng has no voice {voice.espeak_name!r}; English voices are {', '.join(VOICES)} "
                             f"with an optional +variant such as +f3")
        library.espeak_SetParameter(_PARAMETER_RATE, int(voice.rate), 0)
        library.espeak_SetParameter(_PARAMETER_PITCH, int(voice.pitch), 0)
        self.chunks, self.events = [], []
        encoded = text.encode("utf-8")
        library.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        library.espeak_Synchronize()
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return samples, self.events


def _load_library() -> ctypes.CDLL:
    for name in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng"), "libespeak-ng.dylib"):
        if not name:
            continue
        try:
            library = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise InputError(f"libespeak-ng is not installed, and synthetic speech needs it: {INSTALL_HINT}")
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    return library


_engine: _Engine | None = None
_in_isolated_child = False


def initialize() -> None:
    """Start libespeak-ng in this process (once: Terminate then Initialize again hangs)."""
    global _engine
    if _engine is None:
        _engine = _Engine()
        # Loading the English dictionary here, before any fork, saves every child 3 ms; it changes no output.
        _engine.library.espeak_SetVoiceByName(b"en")


def available() -> bool:
    """True when libespeak-ng can be loaded (for skipping tests and features without it)."""
    try:
        _load_library()
    except InputError:
        return False
    return True


# ---------------------------------------------------------------- speech with times


def synthesize(text: str, voice: Voice) -> Speech:
    """Speak ``text`` (words separated by spaces) and time every word and phoneme.

    Deterministic: outside an ``isolated`` child it forks one for this call.
    """
    if not _in_isolated_child:
        return isolated(synthesize, text, voice)
    initialize()
    samples, events = _engine.speak(text, voice)
    words, phones = time_words(text, events, len(samples))
    return Speech(samples=samples, words=words, phones=phones)


def time_words(text: str, events, num_samples: int) -> tuple[tuple[Word, ...], tuple[Phone, ...]]:
    """Word and phone intervals from espeak's events: (type, text_position, sample, phoneme name).

    Every word of ``text`` gets an interval, in order. A merged word and its host share the host's
    phonemes, split between them in order, and are both marked unreliable.
    """
    spans = []  # (word, first character, one past the last character), 1-based like espeak
    position = 1
    for token in text.split(" "):
        if token:
            spans.append((token, position, position + len(token)))
        position += len(token) + 1
    boundaries = np.array(sorted({sample for kind, _, sample, _ in events if kind in (_EVENT_PHONEME, _EVENT_END)}
                                 | {num_samples}))

    def next_boundary(sample: int) -> int:
        later = boundaries[boundaries > sample]
        return int(later[0]) if len(later) else num_samples

    own_phones: list[list[int]] = [[] for _ in spans]  # word index -> its phonemes' samples
    phones: list[Phone] = []
    for kind, text_position, sample, name in events:
        if kind != _EVENT_PHONEME or name.startswith("_"):  # "_", "_:" are pauses
            continue
        if phones and phones[-1].start == sample / ESPEAK_RATE:
            phones.pop()  # espeak sometimes gives a phoneme no samples: the next one at its sample replaces it
        phones.append(Phone(name, sample / ESPEAK_RATE, next_boundary(sample) / ESPEAK_RATE))
        for index, (_, first, stop) in enumerate(spans):
            if first <= text_position < stop:
                own_phones[index].append(sample)
                break

    # Group each word without phonemes with its host: the previous word with phonemes, else the next.
    groups: list[list[int]] = []
    pending: list[int] = []  # merged words before the first word with phonemes
    for index, samples in enumerate(own_phones):
        if samples:
            groups.append(pending + [index])
            pending = []
        elif groups:
            groups[-1].append(index)
        else:
            pending.append(index)

    words: list[Word] = []
    for group in groups:
        starts = sorted({sample for index in group for sample in own_phones[index]})
        end = next_boundary(starts[-1])
        reliable = len(group) == 1
        for part, index in enumerate(group):
            # Split the group's phonemes in order (evenly in time if it has fewer phonemes than words).
            if len(starts) >= len(group):
                first = starts[part * len(starts) // len(group)]
                last = starts[(part + 1) * len(starts) // len(group)] if part + 1 < len(group) else end
            else:
                first = starts[0] + (end - starts[0]) * part // len(group)
                last = starts[0] + (end - starts[0]) * (part + 1) // len(group)
            words.append(Word(spans[index][0], first / ESPEAK_RATE, last / ESPEAK_RATE, reliable))
    return tuple(words), tuple(phones)


# ---------------------------------------------------------------- fork per job


def isolated(function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)`` run in a child forked from a process where espeak is initialized
    and unused. Inside such a child it is a plain call. Results and exceptions come back pickled.
    """
    if _in_isolated_child:
        return function(*args, **kwargs)
    return next(map_isolated(functools.partial(function, **kwargs), [args], workers=1))


def deterministic(function: Callable) -> Callable:
    """Decorator: the whole of ``function`` runs in one isolated child, so its speech is repeatable."""

    @functools.wraps(function)
    def run_isolated(*args, **kwargs):
        return isolated(function, *args, **kwargs)

    return run_isolated


def map_isolated(function: Callable, jobs: Iterable[tuple], workers: int = 1) -> Iterator:
    """Yield ``function(*job)`` for each job in order, each in its own freshly forked child.

    Up to ``workers`` children run at once. espeak is initialized here first so that every child
    starts from the same state.
    """
    if _in_isolated_child:
        yield from (function(*job) for job in jobs)
        return
    if _engine is None and available():
        initialize()
    jobs = iter(jobs)
    running: dict[int, tuple[int, bytearray, int]] = {}  # fd -> (job number, bytes so far, pid)
    finished: dict[int, object] = {}
    submitted = yielded = 0
    selector = selectors.DefaultSelector()
    try:
        while True:
            while len(running) < max(1, workers):
                job = next(jobs, None)
                if job is None:
                    break
                fd, pid = _fork(function, job)
                running[fd] = (submitted, bytearray(), pid)
                selector.register(fd, selectors.EVENT_READ)
                submitted += 1
            if not running and yielded == submitted:
                return
            while yielded in finished:
                yield _unpack(finished.pop(yielded))
                yielded += 1
            if not running:
                continue
            for key, _ in selector.select():
                number, payload, pid = running[key.fd]
                chunk = os.read(key.fd, 1 << 20)
                if chunk:
                    payload += chunk
                    continue
                selector.unregister(key.fd)
                os.close(key.fd)
                os.waitpid(pid, 0)
                del running[key.fd]
                finished[number] = bytes(payload)
    finally:
        for fd, (_, _, pid) in running.items():  # stopped early: leave no child behind
            selector.unregister(fd)
            os.close(fd)
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        selector.close()


def _fork(function: Callable, job: tuple) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return read_end, pid
    # The child: run the job, send back the pickled outcome, exit without the parent's cleanup.
    global _in_isolated_child
    _in_isolated_child = True
    gc.disable()  # a short life: collecting would only copy the parent's pages (copy-on-write) for nothing
    status = 0
    try:
        os.close(read_end)
        try:
            outcome = (True, function(*job))
        except BaseException as error:  # noqa: BLE001 - every failure must reach the parent
            outcome = (False, _portable_error(error))
        payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_end, view):]
    except BaseException:  # noqa: BLE001
        status = 1
    finally:
        os._exit(status)


def _portable_error(error: BaseException) -> BaseException:
    """What the parent raises: a message for the user as an InputError, anything else (a bug) as a
    RuntimeError carrying the child's traceback, which would otherwise be lost."""
    if isinstance(error, InputError):
        return InputError(str(error))
    return RuntimeError("in a forked synthesis child:\n" + "".join(traceback.format_exception(error)))


def _unpack(payload: bytes):
    if not payload:
        raise RuntimeError("a synthesis child died without a result (out of memory or killed?)")
    ok, value = pickle.loads(payload)
    if not ok:
        raise value
    return value
