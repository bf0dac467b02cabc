"""AudioGrounding (v2) -> "the k-th occurrence of the event <phrase>" questions.

The label file is one JSON list of captions::

    {"audiocap_id": 1234, "audio_id": "Y<ytid>.wav", "tokens": "a dog barks" (or a list of tokens),
     "phrases": [{"phrase": "a dog", "start_index": 0, "end_index": 1,
                  "segments": [[0.5, 1.2], [3.0, 3.6]]}, ...]}

with segment onsets and offsets in seconds. Each phrase becomes an event name; its segments (and
those of any other phrase of the same caption with the same text) are numbered in onset order.
Several captions can describe the same clip, so ids carry the caption's audiocap_id.
"""

from __future__ import annotations

import math
from pathlib import Path

from framestamp.data.corpus import Event, audio_duration, event_questions, read_json_entries, warn_skipped
from framestamp.data.manifest import Example
from framestamp.runtime.errors import InputError, ManifestError


def _is_seconds(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _caption_events(entry, label_path: Path, line: int, number: int) -> list[Event]:
    """The grounded events of one caption entry, or a ManifestError saying which key is wrong."""
    def bad(problem: str) -> ManifestError:
        return ManifestError(label_path, line, f"caption {number}: {problem}")

    if not isinstance(entry, dict):
        raise bad(f"must be an object with audiocap_id, audio_id, tokens and phrases, got {type(entry).__name__}")
    missing = [key for key in ("audiocap_id", "audio_id", "phrases") if key not in entry]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    if not isinstance(entry["audio_id"], str) or not entry["audio_id"].strip():
        raise bad(f"'audio_id' must be a file name such as 'Y<ytid>.wav', got {entry['audio_id']!r}")
    tokens = entry.get("tokens", "")
    if not (isinstance(tokens, str) or isinstance(tokens, list) and all(isinstance(token, str) for token in tokens)):
        raise bad("'tokens' must be a string or a list of strings")
    if not isinstance(entry["phrases"], list):
        raise bad("'phrases' must be a list of {phrase, start_index, end_index, segments}")
    events = []
    for index, phrase in enumerate(entry["phrases"], start=1):
        if not isinstance(phrase, dict) or not isinstance(phrase.get("phrase"), str) or not phrase["phrase"].strip():
            raise bad(f"phrase {index} must be an object with a non-empty 'phrase' text")
        name = " ".join(phrase["phrase"].split())
        segments = phrase.get("segments")
        if not isinstance(segments, list):
            raise bad(f"phrase {index} ({name!r}): 'segments' must be a list of [onset, offset] pairs in seconds")
        for position, segment in enumerate(segments, start=1):
            if not (isinstance(segment, list) and len(segment) == 2 and all(_is_seconds(value) for value in segment)):
                raise bad(f"phrase {index} ({name!r}), segment {position}: must be [onset, offset] in seconds >= 0, got {segment!r}")
            if segment[1] < segment[0]:
                raise bad(f"phrase {index} ({name!r}), segment {position}: offset {segment[1]} is before onset {segment[0]}")
            events.append(Event(name, float(segment[0]), float(segment[1]), line))
    return events


def load_audiogrounding(json_path: str | Path, audio_dir: str | Path) -> list[Example]:
    """Event questions for every grounded phrase of every caption whose audio is in ``audio_dir``.

    Captions whose audio file is missing are skipped and counted in a warning, as are segments
    starting after their clip's audio ends.
    """
    json_path = Path(json_path)
    audio_dir = Path(audio_dir).absolute()  # manifests resolve relative paths against their own folder
    if not audio_dir.is_dir():
        raise InputError(f"{audio_dir}: no such audio folder")
    entries = read_json_entries(json_path, "caption")
    durations: dict[Path, float] = {}  # several captions describe one clip
    seen: dict[str, int] = {}
    examples: list[Example] = []
    no_audio = past_end = 0
    for number, (entry, line) in enumerate(entries, start=1):
        events = _caption_events(entry, json_path, line, number)
        caption_id = str(entry["audiocap_id"])
        if caption_id in seen:
            raise ManifestError(json_path, line, f"caption {number}: audiocap_id {caption_id} appears again (first on line {seen[caption_id]})")
        seen[caption_id] = line
        audio = audio_dir / entry["audio_id"]
        if not audio.is_file():
            no_audio += 1
            continue
        if audio not in durations:
            durations[audio] = audio_duration(audio)
        tokens = entry.get("tokens", "")
        source = {"dataset": "audiogrounding", "audiocap_id": caption_id, "audio_id": entry["audio_id"],
                  "caption": tokens if isinstance(tokens, str) else " ".join(tokens)}
        questions, dropped = event_questions(json_path, "audiogrounding", caption_id, events, durations[audio], audio, source)
        examples += questions
        past_end += dropped
    if entries and no_audio == len(entries):
        raise InputError(f"{audio_dir}: none of the {len(entries)} captions of {json_path} has its audio here "
                         "(expected the files named by 'audio_id', e.g. Y<ytid>.wav); check audio_dir")
    if no_audio:
        warn_skipped(f"{json_path}: skipped {no_audio} of {len(entries)} captions with no audio file in {audio_dir}")
    if past_end:
        warn_skipped(f"{json_path}: skipped {past_end} segments that start after their clip's audio ends")
    return examples
