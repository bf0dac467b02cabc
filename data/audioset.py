"""AudioSet strong labels -> "the k-th occurrence of the event <name>" questions; the label writers.

Files (as released):
- ``audioset_{train,eval}_strong.tsv``: header ``segment_id start_time_seconds end_time_seconds label``,
  one labelled event per line; the label is a MID (/m/...), the segment id a YouTube id + "_" + the
  clip's start in ms. The clip's audio is ``<audio_dir>/<segment_id>.<wav|flac|...>``.
- ``mid_to_display_name.tsv``: no header, ``MID<TAB>display name`` per line.
- optionally ``ontology.json``: a list of {"id", "name", "child_ids", ...}, used to expand a parent
  class (e.g. "Human sounds") to all classes below it.

Events are named by display name and numbered per name in onset order (framestamp.data.corpus).
Events are cut to the audio's length; events starting after it ends are skipped with a warning.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

from framestamp.data.corpus import (Event, audio_duration, audio_files_by_stem, event_questions, format_seconds,
                                    read_json_entries, read_text, sample_questions, warn_skipped)
from framestamp.data.manifest import Example
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.files import atomic_path

STRONG_HEADER = ("segment_id", "start_time_seconds", "end_time_seconds", "label")


def _one_line(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\t\n\r"):
        raise InputError(f"{what} must be a non-empty string without tabs or line breaks, got {value!r}")
    return value


def write_strong_tsv(path: str | Path, rows: Iterable[tuple[str, float, float, str]]) -> None:
    """Write (segment_id, start seconds, end seconds, MID) rows as a strong-label TSV, atomically."""
    lines = ["\t".join(STRONG_HEADER)]
    for number, row in enumerate(rows, start=1):
        try:
            segment_id, start, end, mid = row
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise InputError(f"row {number} must be (segment_id, start, end, MID), got {row!r}") from None
        if not 0 <= start <= end < float("inf"):
            raise InputError(f"row {number}: need 0 <= start <= end, got {start}..{end}")
        if any(c.isspace() for c in _one_line(segment_id, f"row {number}'s segment_id")):
            raise InputError(f"row {number}: segment_id {segment_id!r} must not contain spaces")
        lines.append(f"{segment_id}\t{format_seconds(start)}\t{format_seconds(end)}\t{_one_line(mid, f'row {number} MID')}")
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_mid_names(path: str | Path, names: dict[str, str]) -> None:
    """Write {MID: display name} as ``mid_to_display_name.tsv`` (no header, sorted by MID), atomically."""
    lines = [f"{_one_line(mid, 'a MID')}\t{_one_line(name, f'the name of {mid}')}" for mid, name in sorted(names.items())]
    with atomic_path(path) as temporary:
        temporary.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_mid_names(path: str | Path) -> dict[str, str]:
    """{MID: display name} from ``mid_to_display_name.tsv``."""
    names: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ManifestError(path, number, f"expected 2 tab-separated columns 'MID<TAB>display name', got {len(fields)}")
        mid, name = fields[0].strip(), fields[1].strip()
        if not mid.startswith("/") or not name:
            raise ManifestError(path, number, f"{mid!r} is not a MID with a name (MIDs look like /m/09x0r); the file has no header line")
        if mid in names:
            raise ManifestError(path, number, f"MID {mid} appears again (first on line {lines[mid]})")
        names[mid], lines[mid] = name, number
    if not names:
        raise ManifestError(path, None, "has no 'MID<TAB>display name' lines")
    return names


def _read_strong_tsv(path: Path) -> list[tuple[str, float, float, str, int]]:
    """(segment_id, start, end, MID, line) of each event in a strong-label TSV."""
    rows = []
    header_seen = False
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if not header_seen:
            if tuple(field.strip() for field in fields) != STRONG_HEADER:
                raise ManifestError(path, number, f"the header must be {' '.join(STRONG_HEADER)} (tab-separated); is this a strong-label TSV?")
            header_seen = True
            continue
        if len(fields) != len(STRONG_HEADER):
            raise ManifestError(path, number, f"expected {len(STRONG_HEADER)} tab-separated columns ({', '.join(STRONG_HEADER)}), got {len(fields)}")
        segment_id, start_text, end_text, mid = (field.strip() for field in fields)
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise ManifestError(path, number, f"start and end must be numbers of seconds, got {start_text!r} and {end_text!r}") from None
        if not 0 <= start <= end < float("inf"):
            raise ManifestError(path, number, f"need 0 <= start <= end, got start {start_text} and end {end_text}")
        if not segment_id or not mid:
            raise ManifestError(path, number, "the segment_id and label columns must not be empty")
        rows.append((segment_id, start, end, mid, number))
    if not header_seen:
        raise ManifestError(path, None, "the file is empty; expected a header and one event per line")
    return rows


def _read_ontology(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{MID: (name, child MIDs)} from AudioSet's ontology.json."""
    ontology = {}
    for number, (entry, line) in enumerate(read_json_entries(path, "class"), start=1):
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), str) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("child_ids", []), list)):
            raise ManifestError(path, line, f"class {number} must be an object with string 'id' and 'name' and a list 'child_ids'")
        ontology[entry["id"]] = (entry["name"], [str(child) for child in entry.get("child_ids", [])])
    return ontology


def _wanted_mids(labels: Iterable[str] | str, names: dict[str, str], ontology_path: str | Path | None) -> set[str]:
    """The MIDs that ``labels`` (MIDs or display names) stand for, with their ontology descendants."""
    ontology = _read_ontology(Path(ontology_path)) if ontology_path is not None else {}
    by_name = {name.lower(): mid for mid, (name, _) in ontology.items()}
    by_name.update({name.lower(): mid for mid, name in names.items()})
    wanted: set[str] = set()
    pending = []
    for label in [labels] if isinstance(labels, str) else labels:
        mid = label if label in names or label in ontology else by_name.get(str(label).lower())
        if mid is None:
            raise InputError(f"label {label!r} is neither a MID nor a display name in the names file"
                             f"{' or the ontology' if ontology else ''}")
        pending.append(mid)
    while pending:  # walk down child_ids; the set guards against cycles
        mid = pending.pop()
        if mid not in wanted:
            wanted.add(mid)
            pending += ontology.get(mid, ("", []))[1]
    return wanted


def load_audioset_strong(tsv_path: str | Path, audio_dir: str | Path, names_path: str | Path, seed: int = 0,
                         labels: Iterable[str] | str | None = None, ontology_path: str | Path | None = None,
                         max_questions_per_clip: int | None = None) -> list[Example]:
    """Event questions for every segment of a strong-label TSV whose audio is in ``audio_dir``.

    ``labels`` (MIDs or display names) keeps only those classes; with ``ontology_path`` a class
    also brings every class below it (labels=["Human sounds"] for the human-sounds subset).
    Segments without an audio file are skipped and counted in a warning.
    """
    tsv_path = Path(tsv_path)
    names = read_mid_names(names_path)
    wanted = _wanted_mids(labels, names, ontology_path) if labels is not None else None
    by_segment: dict[str, list[Event]] = defaultdict(list)
    for segment_id, start, end, mid, line in _read_strong_tsv(tsv_path):
        if mid not in names:
            raise ManifestError(tsv_path, line, f"label {mid} is not in {names_path}; use the mid_to_display_name.tsv released with this TSV")
        if wanted is None or mid in wanted:
            by_segment[segment_id].append(Event(names[mid], start, end, line))
    audio_files = audio_files_by_stem(audio_dir)
    examples: list[Example] = []
    no_audio = past_end = 0
    for segment_id in sorted(by_segment):
        audio = audio_files.get(segment_id)
        if audio is None:
            no_audio += 1
            continue
        questions, dropped = event_questions(tsv_path, "audioset", segment_id, by_segment[segment_id], audio_duration(audio),
                                             audio, source={"dataset": "audioset", "segment": segment_id})
        past_end += dropped
        examples += sample_questions(questions, max_questions_per_clip, seed, segment_id)
    if by_segment and no_audio == len(by_segment):
        raise InputError(f"{audio_dir}: none of the {len(by_segment)} segments of {tsv_path} has an audio file here "
                         "(expected <segment_id>.wav or .flac); check audio_dir")
    if no_audio:
        warn_skipped(f"{tsv_path}: skipped {no_audio} of {len(by_segment)} segments with no audio file in {audio_dir}")
    if past_end:
        warn_skipped(f"{tsv_path}: skipped {past_end} events that start after their clip's audio ends")
    return examples
