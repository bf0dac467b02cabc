"""What every corpus loader shares: the question rules, and reading label files with line numbers.

The question rules, defined once for real and synthetic corpora alike:

- A named thing (a word, a sound event, a grounded phrase) is asked about as its k-th occurrence in
  its clip: occurrences are ordered by start time and k counts every occurrence of that name,
  including the ones no question is asked about (so dropping an unreliable word never renumbers
  the others).
- Optional sampling keeps at most ``limit`` questions per clip, drawn with a generator seeded by
  (seed, clip) so a clip's choice does not depend on which other clips were loaded.
"""

from __future__ import annotations

import json
import random
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Hashable, Iterable, NamedTuple, Sequence, TypeVar

import numpy as np

from framestamp.data.manifest import Example
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.formats import format_seconds  # noqa: F401  (the loaders import it from here)

# Suffixes the loaders accept for a clip's audio, in order of preference when several exist.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus")

Item = TypeVar("Item")


class Event(NamedTuple):
    """One labelled occurrence in a clip, with the label-file line it came from."""

    name: str
    start: float
    end: float
    line: int | None


class NumberedEvent(NamedTuple):
    name: str
    occurrence: int  # k: this is the k-th occurrence of ``name`` in its clip (1-based)
    start: float
    end: float
    line: int | None


def occurrence_numbers(names: Iterable[Hashable]) -> list[int]:
    """For each name in order, how many times it has appeared so far, itself included (1-based)."""
    seen: Counter = Counter()
    numbers = []
    for name in names:
        seen[name] += 1
        numbers.append(seen[name])
    return numbers


def numbered_events(events: Iterable[Event]) -> list[NumberedEvent]:
    """Order a clip's events by (start, end, name), drop exact repeats, number each name's occurrences."""
    unique: dict[tuple[str, float, float], Event] = {}
    for event in events:
        unique.setdefault((event.name, event.start, event.end), event)  # keep the first line seen
    ordered = sorted(unique.values(), key=lambda event: (event.start, event.end, event.name))
    return [NumberedEvent(event.name, k, event.start, event.end, event.line)
            for event, k in zip(ordered, occurrence_numbers(event.name for event in ordered))]


def fit_to_clip(start: float, end: float, duration: float) -> tuple[float, float] | None:
    """Clip an event to the audio: None if it starts at or after the audio's end, else end capped.

    Label files often assume a full 10 s clip while the downloaded audio is a little shorter.
    """
    if start >= duration:
        return None
    return start, min(end, duration)


def event_questions(label_path: str | Path, dataset: str, clip: str, events: Iterable[Event], duration: float,
                    audio: Path, source: dict) -> tuple[list[Example], int]:
    """A clip's event questions ("<dataset>/<clip>/<name>/<k>", with ends), cut to the audio's length,
    and how many events were dropped for starting after the audio ends."""
    kept, past_end = [], 0
    for event in events:
        span = fit_to_clip(event.start, event.end, duration)
        if span is None:
            past_end += 1
        else:
            kept.append(event._replace(start=span[0], end=span[1]))
    questions = [
        make_example(label_path, event.line, id=f"{dataset}/{clip}/{event.name}/{event.occurrence}", task="event",
                     prompt={"event": event.name, "occurrence": event.occurrence}, times=(event.start,),
                     ends=(event.end,), duration=duration, audio=str(audio), source=source)
        for event in numbered_events(kept)]
    return questions, past_end


def sample_questions(questions: Sequence[Item], limit: int | None, seed: int, clip: str) -> list[Item]:
    """At most ``limit`` of a clip's questions (all when limit is None), keeping their order."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InputError(f"max_questions_per_clip must be a positive integer or None, got {limit!r}")
    if limit is None or len(questions) <= limit:
        return list(questions)
    chosen = random.Random(f"{seed}/{clip}").sample(range(len(questions)), limit)
    return [questions[index] for index in sorted(chosen)]


def make_example(label_path: str | Path, line: int | None, **fields) -> Example:
    """An Example, or a ManifestError pointing at the label-file line the bad values came from."""
    try:
        return Example(**fields)
    except InputError as error:
        raise ManifestError(label_path, line, f"cannot make a question from this entry: {error}") from None


def audio_header(path: str | Path) -> tuple[float, int]:
    """(seconds, sample rate) of the audio in ``path`` from the file's header, without decoding it."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InputError(f"{path}: cannot read the audio header ({error}); is it a wav/flac/ogg file?") from None
    return info.frames / info.samplerate, info.samplerate


def audio_duration(path: str | Path) -> float:
    """Seconds of audio in ``path`` from the file's header, without decoding the samples."""
    return audio_header(path)[0]


def audio_files_by_stem(folder: str | Path, recursive: bool = False) -> dict[str, Path]:
    """{file name without suffix: path} for the audio files directly inside ``folder`` (or anywhere below it,
    with ``recursive``, where one name in two folders is refused: it could not say which clip is meant)."""
    folder = Path(folder).absolute()  # manifests resolve relative paths against their own folder
    if not folder.is_dir():
        raise InputError(f"{folder}: no such audio folder")
    found: dict[str, Path] = {}
    rank = {suffix: index for index, suffix in enumerate(AUDIO_SUFFIXES)}
    paths = folder.rglob("*") if recursive else folder.iterdir()
    for path in sorted(paths, key=lambda p: (p.stem, rank.get(p.suffix.lower(), len(rank)), p)):
        if path.suffix.lower() in rank and path.is_file():
            other = found.setdefault(path.stem, path)  # beside each other, the first suffix of AUDIO_SUFFIXES wins
            if other.parent != path.parent:
                raise InputError(f"two clips named {path.stem}: {other} and {path}; alignments are matched to audio "
                                 "by name, keep one")
    return found


def find_audio(folder: Path, stem: str) -> Path | None:
    """``folder/stem.<suffix>`` for the first audio suffix that exists, else None."""
    for suffix in AUDIO_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def warn_skipped(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


_WHITESPACE = re.compile(r"\s*")


def read_text(path: str | Path) -> str:
    """A label file's UTF-8 text; a ManifestError naming the line of the first undecodable byte."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ManifestError(path, line, f"is not UTF-8 text (byte {raw[error.start]:#04x}); re-save it as UTF-8") from None


def read_json_entries(path: str | Path, what: str) -> list[tuple[object, int]]:
    """The entries of a file holding one JSON list, each with the line its entry starts on.

    ``what`` names an entry in error messages ("speaker", "caption", ...).
    """
    path = Path(path)
    text = read_text(path)
    decoder = json.JSONDecoder()
    line = 1
    position = 0

    def skip_whitespace(start: int) -> int:
        nonlocal line, position
        end = _WHITESPACE.match(text, start).end()
        line += text.count("\n", position, end)
        position = end
        return end

    def broken(error: json.JSONDecodeError) -> ManifestError:
        return ManifestError(path, error.lineno, f"not valid JSON ({error.msg} at column {error.colno}); fix or re-download the file")

    index = skip_whitespace(0)
    if text[index:index + 1] != "[":
        if index == len(text):
            raise ManifestError(path, line, f"the file is empty; expected a JSON list of {what} entries")
        raise ManifestError(path, line, f"expected a JSON list of {what} entries, starting with '['")
    entries: list[tuple[object, int]] = []
    index = skip_whitespace(index + 1)
    if text[index:index + 1] == "]":
        index += 1
    else:
        while True:
            try:
                entry, end = decoder.raw_decode(text, index)
            except json.JSONDecodeError as error:
                raise broken(error) from None
            entries.append((entry, line))
            line += text.count("\n", position, end)
            position = end
            index = skip_whitespace(end)
            separator = text[index:index + 1]
            if separator == ",":
                index = skip_whitespace(index + 1)
            elif separator == "]":
                index += 1
                break
            else:
                found = repr(separator) if separator else "the end of the file"
                raise ManifestError(path, line, f"not valid JSON (expected ',' or ']' after {what} {len(entries)}, found {found})")
    index = skip_whitespace(index)
    if index != len(text):
        raise ManifestError(path, line, "not valid JSON (extra data after the closing ']')")
    return entries
