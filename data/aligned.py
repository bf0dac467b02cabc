"""Recordings with forced alignments beside them -> word and transcript questions on real speech.

Each clip's audio, ``<stem>.wav`` (or another audio suffix), has a word alignment of the same stem,
beside it or in a folder of their own (an aligner's output folder), from either aligner:

- ``<stem>.TextGrid``: Montreal Forced Aligner's output (or any Praat TextGrid with an interval tier
  ``words``), read as the LibriSpeech loader reads it (:mod:`framestamp.data.librispeech`);
- ``<stem>.json``: pocketsphinx 5's output (what ``pocketsphinx align clip.wav "the text"`` prints),
  one JSON object per utterance and line::

      {"b": 0.000, "d": 2.990, "p": 1.0, "t": "he was not", "w": [
          {"b": 0.000, "d": 0.210, "p": 0.939, "t": "<sil>"},
          {"b": 0.210, "d": 0.120, "p": 0.987, "t": "he"},
          {"b": 0.330, "d": 0.230, "p": 0.981, "t": "was(2)"}, ...]}

  ``b`` is a start and ``d`` a duration in seconds from the start of the audio; a word's ``t`` may
  carry its pronunciation variant (``was(2)``), and with phone alignment each word holds its phones
  in a nested ``w`` (ignored here).

Silences and non-speech marks are not words: ``<sil>``, ``<s>``, ``</s>``, ``<vocnoise>``, ``[NOISE]``,
``[cutoff]``, ``++UH++`` and the like are skipped. Unknown words (``<unk>``, ``spn``) are aligned but
unreliable: never asked, and their clip gets no transcript question. Alignment files with no audio of
the same stem (pocketsphinx's ``<stem>.phone.json``, say) and TextGrids with no ``words`` tier (MFA's
input transcripts) are skipped with a warning. Questions follow
the corpus rules (:mod:`framestamp.data.corpus`): each word as its k-th occurrence, and one transcript
question per clip with every word's start and end.

Source packages on PyPI carry such recordings: pocketsphinx's has five LibriVox utterances with the
alignments it expects of itself (``test/data/librivox``), Montreal Forced Aligner's has its author's
speech with MFA's word alignments (``tests/data/wav`` and ``tests/data/textgrid``). README, "Real speech"::

    python -m framestamp.data.aligned pocketsphinx-5.1.1/test/data/librivox librivox.jsonl
    python -m framestamp.data.aligned mfa/tests/data/wav mfa.jsonl --alignments mfa/tests/data/textgrid
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from framestamp.data.corpus import (audio_duration, audio_files_by_stem, make_example, occurrence_numbers,
                                    read_text, sample_questions, warn_skipped)
from framestamp.data.librispeech import (SILENCE_LABELS, UNKNOWN_LABELS, overlaps, read_textgrid, read_textgrid_words,
                                        tier_is)
from framestamp.data.manifest import Example
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.prompts import normalize_word

_VARIANT = re.compile(r"\(\d+\)$")  # "was(2)": the dictionary's second pronunciation of "was"
END_SLACK_SECONDS = 0.011  # aligners count 10 ms frames: the last word may end one frame past the audio
ALIGNMENT_SUFFIXES = (".textgrid", ".json")


def is_word(label: str) -> bool:
    """False for silences and marks of non-speech: ``<sil>``, ``[NOISE]``, ``++UH++``; True for unknown words."""
    label = label.strip()
    if label.lower() in UNKNOWN_LABELS:
        return True
    if label.lower() in SILENCE_LABELS:
        return False
    return not (label[0] + label[-1] in ("<>", "[]") or len(label) > 4 and label[:2] == label[-2:] == "++")


def _number(entry: dict, key: str, path: Path, line: int) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ManifestError(path, line, f"word {entry.get('t')!r}: {key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def read_pocketsphinx_json(path: str | Path) -> list[tuple[str, float, float]]:
    """(label, start, end) of every word in a pocketsphinx JSON file, in time order, without
    pronunciation variants, silences or fillers."""
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
            if not isinstance(entry, dict) or not isinstance(entry.get("t"), str) or not entry["t"].strip():
                raise ManifestError(path, line, f'each word must be {{"b", "d", "t"}}, got {entry!r}')
            label = _VARIANT.sub("", entry["t"].strip())
            if is_word(label):
                start = _number(entry, "b", path, line)
                words.append((label, start, start + _number(entry, "d", path, line)))
    return sorted(words, key=lambda word: word[1])


def read_alignment(path: str | Path) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """(words as (label, start, end) in time order, unreliable (start, end) spans) of a TextGrid or a
    pocketsphinx JSON file; non-speech marks are left out."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        words, unreliable = read_pocketsphinx_json(path), []
    else:
        words, unreliable = read_textgrid_words(path)
        words = [word for word in words if is_word(word[0])]
    unreliable = unreliable + [(start, end) for label, start, end in words if label.lower() in UNKNOWN_LABELS]
    if not words:
        raise ManifestError(path, None, "no words (only silences or marks); align the clip with its transcript first")
    return words, sorted(unreliable)


def _clip_questions(path: Path, audio_folder: Path, audio: Path, seed: int, max_questions: int | None) -> list[Example]:
    aligned, unreliable = read_alignment(path)
    duration = audio_duration(audio)
    if aligned[-1][2] > duration + END_SLACK_SECONDS:
        raise ManifestError(path, None, f"the last word ends at {aligned[-1][2]:.3f} s but {audio} lasts {duration:.3f} s; "
                                        "is this the right audio?")
    words = []
    for label, start, end in aligned:
        word = normalize_word(label)
        if not word:
            raise ManifestError(path, None, f"word {label!r} at {start:.3f} s has no letters; mark non-speech as <...> or [...]")
        words.append((word, start, min(end, duration)))
    clip = audio.relative_to(audio_folder).with_suffix("").as_posix()
    source = {"dataset": "aligned", "utterance": clip}
    reliable = [not overlaps(start, end, unreliable) for _, start, end in words]
    spelled = [word for word, _, _ in words]
    word_questions = [
        make_example(path, None, id=f"aligned/{clip}/{word}/{k}", task="word", prompt={"word": word, "occurrence": k},
                     times=(start,), ends=(end,), duration=duration, audio=str(audio), source=source)
        for (word, start, end), k, ok in zip(words, occurrence_numbers(spelled), reliable) if ok]
    questions = sample_questions(word_questions, max_questions, seed, clip)
    if all(reliable):
        questions.append(make_example(
            path, None, id=f"aligned/{clip}/transcript", task="transcript", prompt={"transcript": " ".join(spelled)},
            times=tuple(start for _, start, _ in words), ends=tuple(end for _, _, end in words),
            duration=duration, audio=str(audio), source=source))
    return questions


def _is_alignment(path: Path) -> bool:
    """Whether a TextGrid holds word times (a ``words`` tier) rather than an aligner's input transcript."""
    if path.suffix.lower() != ".textgrid":
        return True
    tiers, _ = read_textgrid(path)
    return any(tier_is(tier, "words") for tier in tiers)


def load_aligned(audio_folder: str | Path, alignment_folder: str | Path | None = None, seed: int = 0,
                 max_questions_per_clip: int | None = None) -> list[Example]:
    """Word and transcript questions for every clip under ``audio_folder`` with a ``<stem>.TextGrid`` or
    ``<stem>.json`` alignment under ``alignment_folder`` (default: the audio folder itself).

    ``max_questions_per_clip`` caps the word questions per clip (seeded sample); the transcript question
    is always kept.
    """
    audio_folder = Path(audio_folder).absolute()  # manifests resolve relative paths against their own folder
    if not audio_folder.is_dir():
        raise InputError(f"{audio_folder}: no such audio folder; give the folder holding <stem>.wav beside "
                         "<stem>.TextGrid or <stem>.json alignments")
    alignment_folder = Path(alignment_folder).absolute() if alignment_folder is not None else audio_folder
    if not alignment_folder.is_dir():
        raise InputError(f"{alignment_folder}: no such alignment folder")
    audio_files = audio_files_by_stem(audio_folder, recursive=True)
    examples: list[Example] = []
    seen: dict[Path, Path] = {}
    no_audio, no_words = [], []
    for path in sorted(alignment_folder.rglob("*")):
        if path.suffix.lower() not in ALIGNMENT_SUFFIXES or not path.is_file():
            continue
        audio = audio_files.get(path.stem)
        if audio is None:
            no_audio.append(path)
            continue
        if not _is_alignment(path):
            no_words.append(path)
            continue
        if audio in seen:
            raise InputError(f"two alignments of {audio}: {seen[audio]} and {path}; keep one")
        seen[audio] = path
        examples += _clip_questions(path, audio_folder, audio, seed, max_questions_per_clip)
    if not seen:
        raise InputError(f"{alignment_folder}: no <stem>.TextGrid (with a words tier) or <stem>.json alignment of a clip "
                         f"under {audio_folder} ({len(no_audio)} alignment files without audio, {len(no_words)} TextGrids "
                         "without a words tier)")
    if no_audio:
        warn_skipped(f"{alignment_folder}: skipped {len(no_audio)} alignment files with no audio of the same stem "
                     f"(e.g. {no_audio[0].name})")
    if no_words:
        warn_skipped(f"{alignment_folder}: skipped {len(no_words)} TextGrids with no words tier, transcripts rather than "
                     f"alignments (e.g. {no_words[0].name})")
    return examples


def main(argv: list[str] | None = None) -> int:
    from framestamp.data.manifest import write_manifest

    parser = argparse.ArgumentParser(prog="python -m framestamp.data.aligned",
                                     description="Write a manifest of word and transcript questions from forced "
                                                 "alignments (<stem>.TextGrid from MFA or <stem>.json from pocketsphinx) "
                                                 "beside their audio (<stem>.wav).")
    parser.add_argument("audio", type=Path, help="folder holding the clips (searched below, too)")
    parser.add_argument("manifest", type=Path, help="the JSONL manifest to write")
    parser.add_argument("--alignments", type=Path, help="folder holding the alignments (default: beside the audio)")
    args = parser.parse_args(argv)
    count = write_manifest(args.manifest, load_aligned(args.audio, args.alignments))
    print(f"wrote {count} questions to {args.manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
