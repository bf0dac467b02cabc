"""LibriCount -> "when does the k-th speaker start speaking?" questions; the label writer.

A clip is ``<k>_<uid>.wav`` (k = the number of speakers) beside ``<k>_<uid>.json``, a list of
{"sex", "activity": [[start_sample, end_sample], ...], "speaker_id"}. A speaker's onset is the
start of their first activity, in samples of the clip's audio (16 kHz in LibriCount).

Tie rule: speakers are ranked by onset, and the k-th question asks for the k-th smallest onset.
Many LibriCount speakers start together at sample 0; tied speakers share their time, so when two
speakers both start at 0 the 1st and the 2nd speaker both start at 0.0 s. The answer to every k is
well defined even though which tied speaker is "the 2nd" is not.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Sequence

from framestamp.data.corpus import audio_header, find_audio, make_example, read_json_entries, sample_questions, warn_skipped
from framestamp.data.manifest import Example
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.files import atomic_path


def _is_sample(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _plain(value):
    """json.dumps fallback for NumPy scalars (a generator's sample indices are often np.int64)."""
    if isinstance(value, numbers.Number) and hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as JSON")


def _activity_problem(speaker) -> str | None:
    """What is wrong with one speaker entry, or None."""
    if not isinstance(speaker, dict):
        return f"must be an object {{\"sex\", \"activity\", \"speaker_id\"}}, got {type(speaker).__name__}"
    missing = [key for key in ("activity", "speaker_id") if key not in speaker]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    activity = speaker["activity"]
    if not isinstance(activity, list) or not activity:
        return "'activity' must be a non-empty list of [start_sample, end_sample] pairs"
    for number, span in enumerate(activity, start=1):
        if not (isinstance(span, list) and len(span) == 2 and all(_is_sample(value) for value in span)):
            return f"activity {number} must be [start_sample, end_sample] with samples >= 0, got {span!r}"
        if span[1] < span[0]:
            return f"activity {number} ends (sample {span[1]}) before it starts (sample {span[0]})"
    return None


def write_libricount_json(path: str | Path, speakers: Sequence[dict]) -> None:
    """Write a LibriCount label file (one speaker per line) atomically; the name should be ``<k>_<uid>.json``."""
    for number, speaker in enumerate(speakers, start=1):
        problem = _activity_problem(speaker)
        if problem:
            raise InputError(f"speaker {number}: {problem}")
    count_text = Path(path).stem.split("_")[0]
    if count_text.isdigit() and int(count_text) != len(speakers):
        raise InputError(f"{path}: the file name says {int(count_text)} speaker(s) but {len(speakers)} were given")
    lines = ",\n".join(json.dumps(speaker, ensure_ascii=False, default=_plain) for speaker in speakers)
    with atomic_path(path) as temporary:
        temporary.write_text(f"[\n{lines}\n]\n" if speakers else "[]\n", encoding="utf-8")


def _clip_questions(label_path: Path, audio: Path, seed: int, max_questions: int | None) -> list[Example]:
    entries = read_json_entries(label_path, "speaker")
    clip = label_path.stem
    count_text = clip.split("_")[0]
    if not count_text.isdigit():
        raise ManifestError(label_path, None, "the file name must start with the speaker count, as in '3_<uid>.json'")
    if int(count_text) != len(entries):
        raise ManifestError(label_path, 1, f"the file name says {int(count_text)} speaker(s) but the list has {len(entries)}")
    duration, rate = audio_header(audio)
    onsets = []  # (onset in seconds, speaker id, line)
    for number, (speaker, line) in enumerate(entries, start=1):
        problem = _activity_problem(speaker)
        if problem:
            raise ManifestError(label_path, line, f"speaker {number}: {problem}")
        onset = min(start for start, _ in speaker["activity"]) / rate
        if onset >= duration:
            raise ManifestError(label_path, line, f"speaker {number} starts at {onset:.3f} s, after {audio} ends ({duration:.3f} s)")
        onsets.append((onset, str(speaker["speaker_id"]), line))
    onsets.sort()
    questions = []
    for k, (onset, _, line) in enumerate(onsets, start=1):
        starting = sorted(speaker_id for other, speaker_id, _ in onsets if other == onset)
        questions.append(make_example(
            label_path, line, id=f"libricount/{clip}/speaker/{k}", task="speaker", prompt={"occurrence": k},
            times=(onset,), duration=duration, audio=str(audio),
            source={"dataset": "libricount", "clip": clip, "speakers": len(onsets), "speakers_starting": starting}))
    return sample_questions(questions, max_questions, seed, clip)


def load_libricount(folder: str | Path, seed: int = 0, max_questions_per_clip: int | None = None) -> list[Example]:
    """Speaker-onset questions for every ``<k>_<uid>.json`` in ``folder`` with its audio beside it.

    Clips with no speakers give no questions; labels without audio are skipped with a warning.
    """
    folder = Path(folder).absolute()  # manifests resolve relative paths against their own folder
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give the LibriCount folder holding <k>_<uid>.wav and .json files")
    label_paths = sorted(folder.glob("*.json"))
    if not label_paths:
        raise InputError(f"{folder}: no <k>_<uid>.json label files found; give the LibriCount folder")
    examples: list[Example] = []
    no_audio = 0
    for label_path in label_paths:
        audio = find_audio(folder, label_path.stem)
        if audio is None:
            no_audio += 1
            continue
        examples += _clip_questions(label_path, audio, seed, max_questions_per_clip)
    if no_audio:
        warn_skipped(f"{folder}: skipped {no_audio} of {len(label_paths)} label files with no audio file beside them")
    return examples
