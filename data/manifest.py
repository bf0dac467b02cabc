"""The dataset manifest: JSONL, one question about one clip per line.

Every loader (real corpora and synthetic data alike) produces these lines, and training,
calibration and benchmarks read only these lines. A line looks like::

    {"id": "librispeech/1089-134686-0000/much/1", "task": "word",
     "prompt": {"word": "much", "occurrence": 1}, "times": [0.63], "duration": 10.43,
     "audio": "LibriSpeech/dev-clean/1089/134686/1089-134686-0000.flac",
     "source": {"dataset": "librispeech", "utterance": "1089-134686-0000"}}

Fields:
    id        unique string.
    task      one of framestamp.runtime.prompts.TASKS: word | speaker | event | transcript.
    prompt    the fields the task's question template needs (see runtime/prompts.py).
    times     the event times the question asks about, in seconds, sorted ascending: one time for
              word/speaker/event questions, every word's start for transcript questions.
    ends      optional, same length as ``times``: the end of each event (intervals: IoU metrics).
    duration  clip length in seconds; every time lies in [0, duration].
    audio     path to the audio file, relative to the manifest's folder (or absolute), OR
    generator {"name": ..., "seed": ...} to regenerate the clip deterministically instead. Exactly one.
    source    optional provenance (dataset, utterance, voice, ...), never read by training.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.files import atomic_path
from framestamp.runtime.prompts import TASKS, check_prompt_fields, render_prompt

REQUIRED = ("id", "task", "prompt", "times", "duration")
KNOWN = REQUIRED + ("ends", "audio", "generator", "source")


@dataclass(frozen=True)
class Example:
    id: str
    task: str
    prompt: dict
    times: tuple[float, ...]
    duration: float
    audio: str | None = None
    generator: dict | None = None
    ends: tuple[float, ...] | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        check_example(self)

    @property
    def question(self) -> str:
        return render_prompt(self.task, self.prompt)

    def audio_path(self, manifest_dir: str | Path) -> Path | None:
        """The audio file's path, resolving a relative path against the manifest's folder."""
        if self.audio is None:
            return None
        path = Path(self.audio)
        return path if path.is_absolute() else Path(manifest_dir) / path

    def to_json(self) -> dict:
        record = {"id": self.id, "task": self.task, "prompt": self.prompt, "times": list(self.times),
                  "duration": self.duration}
        if self.ends is not None:
            record["ends"] = list(self.ends)
        if self.audio is not None:
            record["audio"] = self.audio
        if self.generator is not None:
            record["generator"] = self.generator
        if self.source:
            record["source"] = self.source
        return record


def _is_time(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_example(example: Example) -> None:
    """Raise InputError describing the first thing wrong with ``example``."""
    if not isinstance(example.id, str) or not example.id.strip():
        raise InputError("'id' must be a non-empty string (not blank)")
    if example.task not in TASKS:
        raise InputError(f"unknown task {example.task!r}; expected one of {', '.join(TASKS)}")
    if not isinstance(example.prompt, dict):
        raise InputError("'prompt' must be an object of template fields")
    check_prompt_fields(example.task, example.prompt)
    if not _is_time(example.duration) or example.duration <= 0:
        raise InputError(f"'duration' must be a positive number of seconds, got {example.duration!r}")
    times = example.times
    if not isinstance(times, (list, tuple)) or not times or not all(_is_time(t) for t in times):
        raise InputError("'times' must be a non-empty list of seconds")
    if any(b < a for a, b in zip(times, times[1:])):
        raise InputError(f"'times' must be sorted ascending, got {list(times)}")
    # A small slack: label files often round the clip end up to the next millisecond.
    if times[0] < 0 or times[-1] > example.duration + 1e-3:
        raise InputError(f"'times' must lie in [0, duration={example.duration}], got {list(times)}")
    if example.task != "transcript" and len(times) != 1:
        raise InputError(f"a {example.task!r} question asks for one time, got {len(times)}")
    if example.task == "transcript" and len(times) != len(example.prompt["transcript"].split()):
        raise InputError(f"a transcript of {len(example.prompt['transcript'].split())} words needs as many times "
                         f"(each word's start), got {len(times)}")
    if example.ends is not None:
        ends = example.ends
        if not isinstance(ends, (list, tuple)) or len(ends) != len(times) or not all(_is_time(e) for e in ends):
            raise InputError("'ends' must be a list of seconds as long as 'times'")
        if any(e < t for t, e in zip(times, ends)):
            raise InputError("every end in 'ends' must be >= its start in 'times'")
    if (example.audio is None) == (example.generator is None):
        raise InputError("give exactly one of 'audio' (a file path) or 'generator' ({'name', 'seed'})")
    if example.audio is not None and (not isinstance(example.audio, str) or not example.audio):
        raise InputError("'audio' must be a non-empty path string")
    if example.generator is not None:
        gen = example.generator
        if not isinstance(gen, dict) or not isinstance(gen.get("name"), str) or not isinstance(gen.get("seed"), int):
            raise InputError("'generator' must be an object with a string 'name' and an integer 'seed'")
    if not isinstance(example.source, dict):
        raise InputError("'source' must be an object")


def example_from_json(record) -> Example:
    if not isinstance(record, dict):
        raise InputError("each line must be a JSON object")
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(record) - set(KNOWN))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; known fields are {', '.join(KNOWN)}")
    ends = record.get("ends")
    return Example(
        id=record["id"], task=record["task"], prompt=record["prompt"],
        times=tuple(record["times"]) if isinstance(record["times"], list) else record["times"],
        duration=record["duration"], audio=record.get("audio"), generator=record.get("generator"),
        ends=tuple(ends) if isinstance(ends, list) else ends, source=record.get("source", {}),
    )


def iter_manifest(path: str | Path) -> Iterator[Example]:
    """Yield the examples of a JSONL manifest; a bad line raises ManifestError naming file and line."""
    for _, example in iter_numbered(path):
        yield example


def iter_numbered(path: str | Path) -> Iterator[tuple[int, Example]]:
    """``(line number, example)`` for each example of a JSONL manifest; a bad line raises ManifestError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    seen: dict[str, int] = {}
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ManifestError(path, number, f"not valid UTF-8 (byte {error.start + 1} of the line); "
                                                  "manifests are UTF-8 JSON lines") from None
            if not line.strip():
                continue
            try:
                example = example_from_json(json.loads(line))
            except json.JSONDecodeError as error:
                raise ManifestError(path, number, f"not valid JSON ({error.msg} at column {error.colno})") from None
            except InputError as error:
                raise ManifestError(path, number, str(error)) from None
            if example.id in seen:
                raise ManifestError(path, number, f"duplicate id {example.id!r} (first on line {seen[example.id]})")
            seen[example.id] = number
            yield number, example


def check_audio_files(path: str | Path) -> None:
    """Refuse a manifest whose audio files are not all there, naming the first lines that lack one.

    Run before training starts: a missing file would otherwise surface only when its batch comes up."""
    path = Path(path)
    missing = [(number, example.audio_path(path.parent)) for number, example in iter_numbered(path)
               if example.audio is not None and not example.audio_path(path.parent).is_file()]
    if missing:
        number, audio = missing[0]
        more = f" (and {len(missing) - 1} more line(s))" if len(missing) > 1 else ""
        raise ManifestError(path, number, f"audio file {audio} does not exist{more}")


def read_manifest(path: str | Path) -> list[Example]:
    examples = list(iter_manifest(path))
    if not examples:
        raise InputError(f"{path}: manifest has no examples")
    return examples


def write_manifest(path: str | Path, examples: Iterable[Example]) -> int:
    """Write examples as JSONL atomically (temporary name, then rename); returns the count."""
    count = 0
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def balanced_subset(examples, limit: int):
    """At most ``limit`` examples, as evenly spread over tasks as they allow, the same every call."""
    import random

    by_task = {}
    for example in sorted(examples, key=lambda e: e.id):
        by_task.setdefault(example.task, []).append(example)
    for group in by_task.values():
        random.Random(0).shuffle(group)
    chosen, share = [], max(1, limit // max(1, len(by_task)))
    for group in by_task.values():
        chosen += group[:share]
    return chosen
