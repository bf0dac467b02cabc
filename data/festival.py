"""The Festival speech synthesizer as a subprocess: speech with the engine's own word and phone times.

Festival reads Scheme from a pipe (``festival --pipe``); for each phrase we ask it to synthesize,
save the waveform and print every word's first-phone start and last-phone end (through
Word -> SylStructure -> Segment) and every segment's start and end. Starting Festival takes ~0.3 s,
so one process serves all phrases of a clip (a ``session``); a phrase's output does not depend on the
phrases before it (checked by the tests). As with flite, a stop after a pause starts at its closure,
everything outside the words (Festival's pauses) is set to digital silence unless ``keep_pauses``.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestamp.data.engines import silence_outside_words, words_of_tokens
from framestamp.data.espeak import Phone, Speech
from framestamp.runtime.errors import InputError

INSTALL_HINT = "install festival (Debian/Ubuntu: apt-get install festival festvox-kallpc16k)"


@dataclass(frozen=True)
class _VoiceInfo:
    scheme: str  # Festival's voice name: (voice_<scheme>) selects it
    sample_rate: int
    sex: str
    package: str  # the Debian package that installs it
    stretches: bool = True  # False: the voice keeps its own durations whatever Duration_Stretch says


VOICES = {
    "kal": _VoiceInfo("kal_diphone", 16_000, "M", "festvox-kallpc16k"),
    "ked": _VoiceInfo("ked_diphone", 16_000, "M", "festvox-kdlpc16k"),
    "slt": _VoiceInfo("cmu_us_slt_arctic_hts", 32_000, "F", "festvox-us-slt-hts", stretches=False),  # HTS
}
STRETCH = (0.85, 1.2)  # Duration_Stretch drawn per clip
_DONE = "framestamp-done"
_SAY = r"""
(define (framestamp_say text stretch path)
  (Parameter.set 'Duration_Stretch stretch)
  (let ((utt (utt.synth (eval (list 'Utterance 'Text text)))))
    (utt.save.wave utt path 'riff)
    (mapcar (lambda (word)
              (format t "word %s %f %f\n" (item.feat word "R:Token.parent.id")
                      (item.feat word "R:SylStructure.daughter1.daughter1.R:Segment.p.end")
                      (item.feat word "R:SylStructure.daughtern.daughtern.R:Segment.end")))
            (utt.relation.items utt 'Word))
    (mapcar (lambda (segment)
              (format t "segment %s %f %f\n" (item.name segment) (item.feat segment "p.end") (item.feat segment "end")))
            (utt.relation.items utt 'Segment))
    t))
"""


@dataclass(frozen=True)
class FestivalVoice:
    name: str = "kal"
    stretch: float = 1.0  # Duration_Stretch: > 1 is slower

    engine = "festival"

    @property
    def spec(self) -> str:
        return f"festival:{self.name}"

    @property
    def sex(self) -> str:
        return VOICES[self.name].sex

    @property
    def sample_rate(self) -> int:
        return VOICES[self.name].sample_rate


def random_voice(rng: np.random.Generator, name: str) -> FestivalVoice:
    stretch = round(float(rng.uniform(*STRETCH)), 3) if VOICES[name].stretches else 1.0
    return FestivalVoice(name=name, stretch=stretch)


@functools.lru_cache(maxsize=1)
def installed_voices() -> frozenset[str]:
    """The voices of VOICES that this machine's Festival can load (asks Festival once per process)."""
    if shutil.which("festival") is None:
        return frozenset()
    result = subprocess.run(["festival", "--pipe"], input='(format t "%l\\n" (voice.list))\n', capture_output=True,
                            text=True, timeout=60)
    listed = set(re.findall(r"[\w-]+", result.stdout))
    return frozenset(name for name, info in VOICES.items() if info.scheme in listed)


def check_voice(name: str) -> None:
    if name not in VOICES:
        raise InputError(f"festival has no voice {name!r}; choose from {', '.join(VOICES)}")
    if shutil.which("festival") is None:
        raise InputError(f"festival is not installed, and festival voices need it: {INSTALL_HINT}")
    if name not in installed_voices():
        raise InputError(f"festival's voice {name} is not installed: apt-get install {VOICES[name].package}")


def available(name: str = "kal") -> bool:
    try:
        check_voice(name)
    except InputError:
        return False
    return True


class _Process:
    """One running ``festival --pipe`` and a scratch folder for its waveforms."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="framestamp-festival."))
        self.errors = open(self.folder / "stderr.txt", "w+")
        self.process = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True, bufsize=1)
        self.voice: str | None = None
        self.ask(_SAY)

    def ask(self, expression: str) -> list[str]:
        """Run Scheme ``expression``; the lines it printed. ``fflush`` because stdout is a pipe."""
        self.process.stdin.write(f'{expression}\n(format t "{_DONE}\\n")\n(fflush nil)\n')
        self.process.stdin.flush()
        lines = []
        for line in self.process.stdout:
            if line.strip() == _DONE:
                return lines
            lines.append(line.rstrip("\n"))
        self.errors.seek(0)
        raise RuntimeError(f"festival stopped: {self.errors.read()[-2000:]}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.errors.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_process: _Process | None = None
_sessions = 0


@contextlib.contextmanager
def session():
    """Keep one Festival process for every phrase synthesized inside; stop it on leaving the outermost."""
    global _sessions, _process
    _sessions += 1
    try:
        yield
    finally:
        _sessions -= 1
        if _sessions == 0 and _process is not None:
            _process.close()
            _process = None


def synthesize(text: str, voice: FestivalVoice, keep_pauses: bool = False) -> Speech:
    """Speak ``text`` (words of letters separated by spaces) and time every word and phone."""
    global _process
    check_voice(voice.name)
    if not re.fullmatch(r"[A-Za-z', ]*", text):
        raise InputError(f"festival phrases must be words of letters (and commas), got {text!r}")
    with session():
        if _process is None:
            _process = _Process()
        if _process.voice != voice.name:
            _process.ask(f"(voice_{VOICES[voice.name].scheme})")
            _process.voice = voice.name
        path = _process.folder / "phrase.wav"
        lines = _process.ask(f'(framestamp_say "{text}" {voice.stretch!r} "{path}")')
        import soundfile

        samples, rate = soundfile.read(str(path), dtype="int16")
    if rate != voice.sample_rate or samples.ndim != 1:
        raise RuntimeError(f"festival voice {voice.name} gave {samples.shape} samples at {rate} Hz, "
                           f"expected mono at {voice.sample_rate} Hz")
    tokens: dict[str, list[float]] = {}  # token id -> [start, end], in order
    phones = []
    for line in lines:
        fields = line.split()
        if fields[:1] == ["word"] and len(fields) == 4:
            start, end = float(fields[2]), float(fields[3])
            tokens.setdefault(fields[1], [start, end])[1] = end
        elif fields[:1] == ["segment"] and len(fields) == 4 and fields[1] != "pau":
            phones.append(Phone(fields[1], float(fields[2]), float(fields[3])))
    words = words_of_tokens(text, list(tokens.values()), "festival")
    speech = Speech(samples=samples, words=words, phones=tuple(phones), rate=rate)
    return speech if keep_pauses else silence_outside_words(speech)
