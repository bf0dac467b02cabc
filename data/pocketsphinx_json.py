"""pocketsphinx's JSON alignments -> word and transcript questions on real speech.

pocketsphinx 5 (``pocketsphinx align clip.wav "the text"``, or ``Decoder.seg()`` written out the same
way) prints one JSON object per utterance and line::

    {"b": 0.000, "d": 2.990, "p": 1.0, "t": "he was not", "w": [
        {"b": 0.000, "d": 0.210, "p": 0.939, "t": "<sil>"},
        {"b": 0.210, "d": 0.120, "p": 0.987, "t": "he"},
        {"b": 0.330, "d": 0.230, "p": 0.981, "t": "was(2)"}, ...]}

``b`` is a start and ``d`` a duration in seconds, both from the start of the audio; a word's ``t``
may carry its pronunciation variant (``was(2)``), and with ``--phone_align`` each word holds its
phones in a nested ``w`` (ignored here). Silences and fillers (``<sil>``, ``<s>``, ``</s>``,
``[NOISE]``, ``++UH++``) are not words.

Layout: ``<stem>.json`` beside ``<stem>.wav`` (or another audio suffix), in one folder or below it.
JSON files with no audio of the same stem (pocketsphinx's ``<stem>.phone.json``, say) are skipped.
Questions follow the corpus rules (:mod:`framestamp.data.corpus`): each word as its k-th occurrence,
and one transcript question per clip with every word's start and end.

pocketsphinx's own source package ships five LibriVox utterances (public domain, one reader) with
the alignments it expects of itself, under ``test/data/librivox``: real speech to score on (README,
"Real speech")::

    python -m framestamp.data.pocketsphinx_json pocketsphinx-5.1.1/test/data/librivox librivox.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from framestamp.data.corpus import (audio_duration, find_audio, make_example, occurrence_numbers, read_text,
                                    sample_questions, warn_skipped)
from framestamp.data.manifest import Example
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.prompts import normalize_word

_VARIANT = re.compile(r"\(\d+\)$")  # "was(2)": the dictionary's second pronunciation of "was"
END_SLACK_SECONDS = 0.011  # pocketsphinx counts 10 ms frames: its last word may end one frame past the audio


def _is_word(label: str) -> bool:
    return not (label.startswith(("<", "[")) or label.startswith("++") and label.endswith("++"))


def _number(entry: dict, key: str, path: Path, line: int) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ManifestError(path, line, f"word {entry.get('t')!r}: {key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def read_alignment(path: str | Path) -> list[tuple[str, float, float]]:
    """(word, start, end) of every word in a pocketsphinx JSON file, in time order, spelled as the
    runtime asks (lower case, no pronunciation variant)."""
    path = Path(path)
    words: list[tuple[str, float, float]] = []
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            utterance = json.loads(text)
        except json.JSONDecodeError as error:
            raise ManifestError(path, line, f"not valid JSON ({error.msg} at column {error.colno}); expected one "
                                            "pocketsphinx result per line") from None
        if not isinstance(utterance, dict) or not isinstance(utterance.get("w"), list):
            raise ManifestError(path, line, 'expected a pocketsphinx result {"b", "d", "t", "w": [words]}; '
                                            "was the alignment written with word segments?")
        for entry in utterance["w"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("t"), str):
                raise ManifestError(path, line, f'each word must be {{"b", "d", "t"}}, got {entry!r}')
            label = _VARIANT.sub("", entry["t"])
            if not _is_word(label):
                continue
            word = normalize_word(label)
            if not word:
                raise ManifestError(path, line, f"word {entry['t']!r} has no letters; is this a filler pocketsphinx did not mark?")
            start = _number(entry, "b", path, line)
            words.append((word, start, start + _number(entry, "d", path, line)))
    if not words:
        raise ManifestError(path, None, "no words (only silences or fillers); align the clip with its transcript first")
    return sorted(words, key=lambda word: word[1])


def load_pocketsphinx_json(folder: str | Path, seed: int = 0, max_questions_per_clip: int | None = None) -> list[Example]:
    """Word and transcript questions for every ``<stem>.json`` alignment with audio beside it under ``folder``.

    ``max_questions_per_clip`` caps the word questions per clip (seeded sample); the transcript question
    is always kept.
    """
    folder = Path(folder).absolute()  # manifests resolve relative paths against their own folder
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give the folder holding <stem>.json alignments beside <stem>.wav")
    examples: list[Example] = []
    alignments = no_audio = 0
    for path in sorted(folder.rglob("*.json")):
        stem = path.name[: -len(".json")]
        audio = find_audio(path.parent, stem)
        if audio is None:
            no_audio += 1
            continue
        alignments += 1
        words = read_alignment(path)
        duration = audio_duration(audio)
        if words[-1][2] > duration + END_SLACK_SECONDS:
            raise ManifestError(path, None, f"the last word ends at {words[-1][2]:.3f} s but {audio} lasts {duration:.3f} s; "
                                            "is this the right audio?")
        clip = str(path.relative_to(folder).with_name(stem))
        source = {"dataset": "pocketsphinx-json", "utterance": clip}
        spelled = [word for word, _, _ in words]
        word_questions = [
            make_example(path, None, id=f"pocketsphinx-json/{clip}/{word}/{k}", task="word", prompt={"word": word, "occurrence": k},
                         times=(start,), ends=(min(end, duration),), duration=duration, audio=str(audio), source=source)
            for (word, start, end), k in zip(words, occurrence_numbers(spelled))]
        examples += sample_questions(word_questions, max_questions_per_clip, seed, clip)
        examples.append(make_example(
            path, None, id=f"pocketsphinx-json/{clip}/transcript", task="transcript", prompt={"transcript": " ".join(spelled)},
            times=tuple(start for _, start, _ in words), ends=tuple(min(end, duration) for _, _, end in words),
            duration=duration, audio=str(audio), source=source))
    if not alignments:
        raise InputError(f"{folder}: no <stem>.json alignment with audio of the same stem beside it "
                         f"({no_audio} JSON files without audio)")
    if no_audio:
        warn_skipped(f"{folder}: skipped {no_audio} JSON files with no audio of the same stem (e.g. <stem>.phone.json)")
    return examples


def main(argv: list[str] | None = None) -> int:
    from framestamp.data.manifest import write_manifest

    parser = argparse.ArgumentParser(prog="python -m framestamp.data.pocketsphinx_json",
                                     description="Write a manifest of word and transcript questions from pocketsphinx "
                                                 "JSON alignments (<stem>.json beside <stem>.wav).")
    parser.add_argument("folder", type=Path, help="folder holding the alignments and their audio (searched below, too)")
    parser.add_argument("manifest", type=Path, help="the JSONL manifest to write")
    args = parser.parse_args(argv)
    count = write_manifest(args.manifest, load_pocketsphinx_json(args.folder))
    print(f"wrote {count} questions to {args.manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
