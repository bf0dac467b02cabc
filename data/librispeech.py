"""LibriSpeech with forced alignments -> word and transcript questions; MFA-style TextGrid writer.

Reads the corpus as distributed (``subset/spk/chap/spk-chap-utt.flac`` beside ``spk-chap.trans.txt``,
lines ``UTTID UPPER TEXT``) and word times from either

- Montreal Forced Aligner TextGrids (long, short or UTF-16 Praat text files) with an interval tier
  ``words`` (or ``<speaker> - words`` from multi-speaker runs). Silence is "" (MFA 2+) or sil/sp
  (MFA 1.x); unknown words (``<unk>``, ``spn``) are aligned but unreliable. An optional interval tier
  ``unreliable`` (written by :func:`write_textgrid` for synthetic data) marks more such spans.
- ``*.alignment.txt`` lines ``UTTID ",WORD,WORD," "0.530,1.270,..."``: the times are word END times,
  a word starts where the previous entry ends, empty words are silences.

The TextGrid reader is framestamp's own rather than praatio's: it reports the line of a bad value
(praatio only says "Expected field in Textgrid missing.") and reads times written in exponent form,
which praatio 6.2 rejects even in files it wrote itself. The tests check it against praatio.

Questions: for each reliable word, "the k-th occurrence of <word>" (lower case; k counts every
occurrence of the word in the transcript, reliable or not), and one transcript question per clip
(every word's start) unless some word is unreliable.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from framestamp.data.corpus import (audio_duration, find_audio, format_seconds, make_example, occurrence_numbers,
                                    read_text, sample_questions, warn_skipped)
from framestamp.data.manifest import Example
from framestamp.runtime.formats import textgrid_text
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.files import atomic_path
from framestamp.runtime.prompts import normalize_word

# Word labels that mean "no word here" (MFA 2+ writes "", MFA 1.x sil/sp) and "a word the aligner
# did not know": its span is aligned as a whole but its boundaries cannot be trusted.
SILENCE_LABELS = frozenset({"", "sil", "sp", "<sil>", "<eps>"})
UNKNOWN_LABELS = frozenset({"<unk>", "spn", "<spn>"})
UNRELIABLE_LABEL = "unreliable"
# Alignments round times; a word may end this far after the audio file does.
END_SLACK_SECONDS = 1e-3


class AlignedWord(NamedTuple):
    word: str
    start: float
    end: float
    line: int  # line of the label file the word came from (its text line in a TextGrid)


# --- Praat TextGrid text files ---------------------------------------------------------------------

@dataclass(frozen=True)
class TextgridTier:
    name: str
    kind: str  # "IntervalTier" or "TextTier" (point tier: start == end)
    entries: tuple[AlignedWord, ...]  # every interval, empty labels included
    line: int  # line of the tier's name


# A Praat text file is a stream of values; the long format adds "key =" / "item [1]:" labels and
# "tiers?" before <exists>, which carry no information and are skipped.
_TEXTGRID_TOKEN = re.compile(r"""
      (?P<newline>\n)
    | (?P<space>[ \t\r\f\v]+)
    | (?P<comment>![^\n]*)
    | (?P<key>[A-Za-z][A-Za-z ]*?[ \t]*(?:\[[ \t]*\d*[ \t]*\])?[ \t]*[:=] | tiers\?)
    | "(?P<string>(?:[^"]|"")*)"
    | (?P<unclosed>")
    | (?P<bare>[^\s"]+)
""", re.VERBOSE)


def _decode_textgrid(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # what Praat writes when a label is not ASCII
    elif b"\x00" in raw[:64]:
        encoding = "utf-16-le" if raw[1:2] == b"\x00" else "utf-16-be"
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ManifestError(path, line, f"cannot be decoded as {encoding}; re-save the TextGrid as UTF-8 or UTF-16") from None


class _Values:
    """The values of a Praat text file in order, each with its line, read by kind."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.values: list[tuple[str, bool, int]] = []  # (value, was quoted, line)
        line = 1
        for match in _TEXTGRID_TOKEN.finditer(text):
            kind = match.lastgroup
            if kind == "newline":
                line += 1
            elif kind == "string":
                self.values.append((match.group("string").replace('""', '"'), True, line))
                line += match.group(0).count("\n")
            elif kind == "bare":
                self.values.append((match.group(0), False, line))
            elif kind == "unclosed":
                raise ManifestError(path, line, "a text starts here with '\"' but never ends; the file looks truncated")
        self.last_line = line
        self.position = 0

    def next(self, what: str) -> tuple[str, bool, int]:
        if self.position == len(self.values):
            raise ManifestError(self.path, self.last_line, f"the file ends where {what} should be; it looks truncated")
        self.position += 1
        return self.values[self.position - 1]

    def number(self, what: str) -> tuple[float, int]:
        value, quoted, line = self.next(what)
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if quoted or number != number or number in (float("inf"), float("-inf")):
            raise ManifestError(self.path, line, f"{what} must be a number, got {value!r}")
        return number, line

    def count(self, what: str) -> tuple[int, int]:
        number, line = self.number(what)
        if number < 0 or number != int(number):
            raise ManifestError(self.path, line, f"{what} must be a whole number >= 0, got {format_seconds(number)}")
        return int(number), line

    def text(self, what: str) -> tuple[str, int]:
        value, quoted, line = self.next(what)
        if not quoted:
            raise ManifestError(self.path, line, f"{what} must be a quoted text, got {value}")
        return value, line


def read_textgrid(path: str | Path) -> tuple[list[TextgridTier], int]:
    """All tiers of a long, short or UTF-16 TextGrid text file, and the line declaring the tier count."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such TextGrid file")
    values = _Values(path, _decode_textgrid(path))
    file_type, line = values.text("the file type (\"ooTextFile\")")
    if not file_type.startswith("ooTextFile"):
        raise ManifestError(path, line, f"file type is {file_type!r}, not \"ooTextFile\": save the TextGrid as a text file")
    object_class, line = values.text("the object class (\"TextGrid\")")
    if object_class != "TextGrid":
        raise ManifestError(path, line, f"object class is {object_class!r}, not \"TextGrid\"")
    values.number("the TextGrid's xmin")
    values.number("the TextGrid's xmax")
    flag, _, line = values.next("<exists>")
    if flag not in ("<exists>", "<absent>"):
        raise ManifestError(path, line, f"expected '<exists>' before the tiers, got {flag!r}")
    tier_count, count_line = (0, line) if flag == "<absent>" else values.count("the number of tiers")
    tiers = []
    for tier_number in range(1, tier_count + 1):
        kind, kind_line = values.text(f"tier {tier_number}'s class")
        if kind not in ("IntervalTier", "TextTier"):
            raise ManifestError(path, kind_line, f"tier {tier_number}'s class is {kind!r}; expected \"IntervalTier\" or \"TextTier\"")
        name, name_line = values.text(f"tier {tier_number}'s name")
        values.number(f"xmin of tier {name!r}")
        values.number(f"xmax of tier {name!r}")
        size, _ = values.count(f"the number of entries of tier {name!r}")
        entries = []
        for number in range(1, size + 1):
            where = f"{'interval' if kind == 'IntervalTier' else 'point'} {number} of tier {name!r}"
            start, _ = values.number(f"the start of {where}")
            end, end_line = values.number(f"the end of {where}") if kind == "IntervalTier" else (start, None)
            label, label_line = values.text(f"the text of {where}")
            if end < start:
                raise ManifestError(path, end_line, f"{where} ends ({format_seconds(end)}) before it starts ({format_seconds(start)})")
            entries.append(AlignedWord(label, start, end, label_line))
        tiers.append(TextgridTier(name, kind, tuple(entries), name_line))
    return tiers, count_line


def tier_is(tier: TextgridTier, suffix: str) -> bool:
    """Whether the tier is named ``suffix`` or ``<speaker> - suffix`` (MFA's multi-speaker output)."""
    return tier.name.lower() == suffix or tier.name.lower().endswith(f" - {suffix}")


def _find_tier(path: Path, tiers: list[TextgridTier], count_line: int, suffix: str, required: bool) -> TextgridTier | None:
    """The interval tier named ``suffix`` or ``<speaker> - suffix``."""
    found = [tier for tier in tiers if tier_is(tier, suffix)]
    if not found:
        if not required:
            return None
        names = ", ".join(repr(tier.name) for tier in tiers) or "none"
        raise ManifestError(path, count_line, f"no tier named {suffix!r} or '<speaker> - {suffix}' (tiers: {names}); "
                                              f"give the aligner's TextGrid output")
    if len(found) > 1:
        raise ManifestError(path, found[1].line, f"{len(found)} {suffix!r} tiers ({', '.join(repr(t.name) for t in found)}); "
                                                 "framestamp reads one speaker per utterance")
    if found[0].kind != "IntervalTier":
        raise ManifestError(path, found[0].line, f"tier {found[0].name!r} is a point tier; it must be an interval tier")
    return found[0]


def _textgrid_alignment(path: str | Path) -> tuple[list[AlignedWord], list[tuple[float, float]]]:
    path = Path(path)
    tiers, count_line = read_textgrid(path)
    words_tier = _find_tier(path, tiers, count_line, "words", required=True)
    words: list[AlignedWord] = []
    unreliable: list[tuple[float, float]] = []
    for entry in words_tier.entries:
        label = entry.word.strip()
        if label.lower() in SILENCE_LABELS:
            continue
        if words and entry.start < words[-1].end - 1e-9:
            raise ManifestError(path, entry.line, f"word {label!r} starts ({format_seconds(entry.start)}) before the "
                                                  f"previous word {words[-1].word!r} ends ({format_seconds(words[-1].end)})")
        words.append(entry._replace(word=label))
        if label.lower() in UNKNOWN_LABELS:
            unreliable.append((entry.start, entry.end))
    marks = _find_tier(path, tiers, count_line, UNRELIABLE_LABEL, required=False)
    if marks is not None:
        unreliable += [(entry.start, entry.end) for entry in marks.entries if entry.word.strip()]
    return words, sorted(unreliable)


def read_textgrid_words(path: str | Path) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """(words as (label, start, end) without silences, unreliable (start, end) spans) of an aligner TextGrid.

    Unknown words (``<unk>``/``spn``) are kept with their label and their spans are unreliable.
    """
    words, unreliable = _textgrid_alignment(path)
    return [(word.word, word.start, word.end) for word in words], unreliable


def _checked_intervals(tier: str, intervals: Iterable[tuple[str, float, float]], duration: float) -> list[tuple[str, float, float]]:
    checked: list[tuple[str, float, float]] = []
    for number, interval in enumerate(intervals, start=1):
        try:
            label, start, end = interval
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise InputError(f"{tier} entry {number} must be (label, start, end), got {interval!r}") from None
        if not isinstance(label, str) or not label.strip() or "\n" in label:
            raise InputError(f"{tier} entry {number}: the label must be a non-empty one-line string, got {label!r}")
        if not (0 <= start < end <= duration + 1e-9):
            raise InputError(f"{tier} entry {number} ({label!r}): need 0 <= start < end <= duration={duration}, got {start}..{end}; "
                             "an interval tier cannot hold a zero-length word: give it part of its neighbour's span and mark both unreliable")
        if checked and start < checked[-1][2] - 1e-9:
            raise InputError(f"{tier} entry {number} ({label!r}) starts at {start}, before entry {number - 1} ends at {checked[-1][2]}; "
                             "give the entries in time order without overlaps")
        checked.append((label, max(start, checked[-1][2]) if checked else start, min(end, duration)))
    return checked


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[str, float, float]]:
    merged: list[list] = []
    for start, end in sorted((float(start), float(end)) for start, end in spans):
        if merged and start <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], end)
        else:
            merged.append([UNRELIABLE_LABEL, start, end])
    return [tuple(span) for span in merged]


def write_textgrid(path: str | Path, words: Sequence[tuple[str, float, float]], phones: Sequence[tuple[str, float, float]],
                   duration: float, unreliable: Iterable[tuple[float, float]] = ()) -> None:
    """Write an MFA-style long TextGrid (tiers ``words``, ``phones`` and, if any, ``unreliable``) atomically.

    ``words`` and ``phones`` are (label, start, end) in time order without overlaps; ``unreliable``
    are (start, end) spans whose words must never be asked about (overlapping spans are merged).
    """
    if not isinstance(duration, (int, float)) or not duration > 0:
        raise InputError(f"duration must be a positive number of seconds, got {duration!r}")
    tiers = [("words", _checked_intervals("words", words, duration)),
             ("phones", _checked_intervals("phones", phones, duration))]
    spans = _merged(unreliable)
    if spans:
        tiers.append((UNRELIABLE_LABEL, _checked_intervals(UNRELIABLE_LABEL, spans, duration)))
    with atomic_path(path) as temporary:
        temporary.write_text(textgrid_text(tiers, float(duration)), encoding="utf-8")


# --- alignment.txt ---------------------------------------------------------------------------------

def _alignment_txt(path: str | Path) -> dict[str, tuple[list[AlignedWord], list[tuple[float, float]]]]:
    path = Path(path)
    utterances: dict[str, tuple[list[AlignedWord], list[tuple[float, float]]]] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not all(len(field) >= 2 and field[0] == field[-1] == '"' for field in fields[1:]):
            raise ManifestError(path, number, f"expected 3 fields 'UTTID \",WORD,WORD,\" \"0.530,1.270,...\"', got {len(fields)} "
                                              f"field(s){'' if len(fields) != 3 else ' without their double quotes'}")
        uttid, labels, ends = fields[0], fields[1][1:-1].split(","), fields[2][1:-1].split(",")
        if uttid in first_line:
            raise ManifestError(path, number, f"utterance {uttid} appears again (first on line {first_line[uttid]})")
        first_line[uttid] = number
        if len(labels) != len(ends):
            raise ManifestError(path, number, f"{len(labels)} words but {len(ends)} times; each word needs its end time")
        words: list[AlignedWord] = []
        unreliable: list[tuple[float, float]] = []
        previous_end = 0.0
        for index, (label, text) in enumerate(zip(labels, ends), start=1):
            try:
                end = float(text)
            except ValueError:
                end = float("nan")
            if not (previous_end <= end < float("inf")):
                raise ManifestError(path, number, f"time {index} ({text!r}) must be a number >= the time before it ({format_seconds(previous_end)})")
            if label.lower() not in SILENCE_LABELS:
                words.append(AlignedWord(label, previous_end, end, number))
                if label.lower() in UNKNOWN_LABELS:
                    unreliable.append((previous_end, end))
            previous_end = end
        utterances[uttid] = (words, unreliable)
    return utterances


def read_alignment_txt(path: str | Path) -> dict[str, tuple[list[tuple[str, float, float]], list[tuple[float, float]]]]:
    """{utterance id: (words as (label, start, end) without silences, unreliable spans)} of an alignment.txt."""
    return {uttid: ([(word.word, word.start, word.end) for word in words], unreliable)
            for uttid, (words, unreliable) in _alignment_txt(path).items()}


# --- the corpus ------------------------------------------------------------------------------------

class _Alignments:
    """Every TextGrid (found by utterance id, in any folder layout) and alignment.txt under a root."""

    def __init__(self, root: Path):
        self.root = root
        self.textgrids: dict[str, Path] = {}
        self.text_files: list[Path] = []
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() == ".textgrid":
                if path.stem in self.textgrids:
                    raise InputError(f"two TextGrids for utterance {path.stem}: {self.textgrids[path.stem]} and {path}; keep one")
                self.textgrids[path.stem] = path
            elif path.name.endswith(".alignment.txt"):
                self.text_files.append(path)
        self._from_text: dict[str, tuple[Path, list[AlignedWord], list[tuple[float, float]]]] | None = None

    def find(self, uttid: str) -> tuple[Path, list[AlignedWord], list[tuple[float, float]]] | None:
        if uttid in self.textgrids:
            return (self.textgrids[uttid], *_textgrid_alignment(self.textgrids[uttid]))
        if self._from_text is None:  # read on first need: most corpora have one kind or the other
            self._from_text = {}
            for path in self.text_files:
                for other, (words, unreliable) in _alignment_txt(path).items():
                    self._from_text.setdefault(other, (path, words, unreliable))
        return self._from_text.get(uttid)


def _transcripts(path: Path) -> list[tuple[str, list[str], int]]:
    """(utterance id, words, line) of each line of a ``spk-chap.trans.txt``."""
    chapter = path.name[: -len(".trans.txt")]
    seen: dict[str, int] = {}
    utterances = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        uttid, *words = line.split()
        if not words:
            raise ManifestError(path, number, f"utterance {uttid} has no text; lines look like 'UTTID WORD WORD ...'")
        if not uttid.startswith(f"{chapter}-"):
            raise ManifestError(path, number, f"utterance id {uttid!r} does not belong to chapter {chapter} "
                                              f"(expected '{chapter}-NNNN'); lines look like 'UTTID WORD WORD ...'")
        if uttid in seen:
            raise ManifestError(path, number, f"utterance {uttid} appears again (first on line {seen[uttid]})")
        seen[uttid] = number
        utterances.append((uttid, words, number))
    return utterances


def overlaps(start: float, end: float, spans: list[tuple[float, float]]) -> bool:
    """Whether the word [start, end] touches any (unreliable) span; a zero-length word inside one does."""
    return any(start < stop and begin < end or begin <= start == end <= stop for begin, stop in spans)


def _utterance_questions(uttid: str, transcript: list[str], transcript_at: str, audio: Path, alignment_path: Path,
                         aligned: list[AlignedWord], unreliable: list[tuple[float, float]],
                         seed: int, max_questions: int | None) -> list[Example]:
    expected = [normalize_word(word) for word in transcript]  # the spelling the runtime asks with, too
    for index, (word, said) in enumerate(zip(aligned, expected), start=1):
        if normalize_word(word.word) != said and word.word.lower() not in UNKNOWN_LABELS:
            raise ManifestError(alignment_path, word.line, f"{uttid}: aligned word {index} is {word.word!r} but the transcript "
                                                           f"({transcript_at}) has {said!r}; re-align with this transcript")
    if len(aligned) != len(expected):
        line = aligned[-1].line if aligned else None
        raise ManifestError(alignment_path, line, f"{uttid}: {len(aligned)} aligned words but the transcript ({transcript_at}) "
                                                  f"has {len(expected)}; re-align with this transcript")
    duration = audio_duration(audio)
    if aligned[-1].end > duration + END_SLACK_SECONDS:
        raise ManifestError(alignment_path, aligned[-1].line, f"{uttid}: the last word ends at {format_seconds(aligned[-1].end)} s "
                                                              f"but {audio} lasts {duration:.3f} s; is this the right audio?")
    source = {"dataset": "librispeech", "utterance": uttid}
    reliable = [not overlaps(word.start, word.end, unreliable) for word in aligned]
    word_questions = [
        make_example(alignment_path, word.line, id=f"librispeech/{uttid}/{said}/{k}", task="word",
                     prompt={"word": said, "occurrence": k}, times=(word.start,), ends=(word.end,),
                     duration=duration, audio=str(audio), source=source)
        for word, said, k, ok in zip(aligned, expected, occurrence_numbers(expected), reliable) if ok]
    questions = sample_questions(word_questions, max_questions, seed, uttid)
    if all(reliable):
        questions.append(make_example(
            alignment_path, aligned[0].line, id=f"librispeech/{uttid}/transcript", task="transcript",
            prompt={"transcript": " ".join(expected)}, times=tuple(word.start for word in aligned),
            ends=tuple(word.end for word in aligned), duration=duration, audio=str(audio), source=source))
    return questions


def load_librispeech(audio_root: str | Path, alignment_root: str | Path | None = None, seed: int = 0,
                     max_questions_per_clip: int | None = None) -> list[Example]:
    """Word and transcript questions for every aligned utterance under ``audio_root``.

    ``audio_root`` is a LibriSpeech folder (a subset such as ``dev-clean`` or the folder above it).
    Alignments are looked up by utterance id under ``alignment_root`` (any layout: mirroring the
    corpus tree or flat), or beside the audio when it is None; a TextGrid wins over an
    alignment.txt line. Utterances without audio or alignment are skipped with a warning.
    ``max_questions_per_clip`` caps the word questions per utterance (seeded sample); the
    transcript question is always kept.
    """
    audio_root = Path(audio_root).absolute()  # manifests resolve relative paths against their own folder
    if not audio_root.is_dir():
        raise InputError(f"{audio_root}: no such folder; give the LibriSpeech folder (e.g. LibriSpeech/dev-clean)")
    transcript_files = sorted(audio_root.rglob("*.trans.txt"))
    if not transcript_files:
        raise InputError(f"{audio_root}: no *.trans.txt transcripts found; give the LibriSpeech folder (e.g. LibriSpeech/dev-clean)")
    alignment_root = Path(alignment_root) if alignment_root is not None else audio_root
    if not alignment_root.is_dir():
        raise InputError(f"{alignment_root}: no such alignment folder")
    alignments = _Alignments(alignment_root)
    examples: list[Example] = []
    utterances = no_audio = no_alignment = 0
    for transcript_path in transcript_files:
        for uttid, transcript, line in _transcripts(transcript_path):
            utterances += 1
            audio = find_audio(transcript_path.parent, uttid)
            if audio is None:
                no_audio += 1
                continue
            found = alignments.find(uttid)
            if found is None:
                no_alignment += 1
                continue
            alignment_path, aligned, unreliable = found
            examples += _utterance_questions(uttid, transcript, f"{transcript_path}:{line}", audio, alignment_path,
                                             aligned, unreliable, seed, max_questions_per_clip)
    if no_audio:
        warn_skipped(f"{audio_root}: skipped {no_audio} of {utterances} utterances with no audio file beside their transcript")
    if no_alignment:
        if no_alignment == utterances - no_audio:
            raise InputError(f"{alignment_root}: no alignment found for any of {utterances - no_audio} utterances "
                             "(looked for <uttid>.TextGrid and *.alignment.txt); run the aligner or pass alignment_root")
        warn_skipped(f"{alignment_root}: skipped {no_alignment} of {utterances} utterances with no alignment "
                     "(<uttid>.TextGrid or a line in *.alignment.txt)")
    return examples
