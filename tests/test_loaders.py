"""Real-corpus loaders and their label writers: small fixtures written here, values checked against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from framestamp.data.audiogrounding import load_audiogrounding
from framestamp.data.audioset import load_audioset_strong, read_mid_names, write_mid_names, write_strong_tsv
from framestamp.data.corpus import occurrence_numbers, read_json_entries
from framestamp.data.librispeech import (load_librispeech, read_alignment_txt, read_textgrid_words, write_textgrid)
from framestamp.data.libricount import load_libricount, write_libricount_json
from framestamp.data.manifest import read_manifest, write_manifest
from framestamp.data.aligned import load_aligned, main as aligned_manifest
from framestamp.runtime.errors import InputError, ManifestError
from framestamp.runtime.formats import textgrid_text

RATE = 16_000


def write_audio(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(round(seconds * RATE), dtype=np.float32), RATE)
    return path


def line_of(path: Path, text: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the ``occurrence``-th line containing ``text``."""
    hits = [number for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if text in line]
    return hits[occurrence - 1]


def assert_points_at(error: pytest.ExceptionInfo, path: Path, line: int | None) -> None:
    assert error.value.path == str(path)
    assert error.value.line == line
    assert str(error.value).startswith(f"{path}:{line}:" if line is not None else f"{path}:")


def by_id(examples):
    ids = [example.id for example in examples]
    assert len(ids) == len(set(ids)), "ids must be unique"
    return {example.id: example for example in examples}


# --- LibriSpeech -------------------------------------------------------------------------------------

CHAPTER = "dev-clean/84/121123"
TRANSCRIPTS = {
    "84-121123-0000": ("THE CAT SAW THE DOG", 2.0,
                       [("the", 0.1, 0.2), ("cat", 0.25, 0.5), ("saw", 0.6, 0.8), ("the", 0.9, 1.0), ("dog", 1.1, 1.5)]),
    "84-121123-0001": ("HELLO ZYZZYVA WORLD", 1.5, [("hello", 0.2, 0.5), ("<unk>", 0.5, 0.9), ("world", 1.0, 1.3)]),
}


def librispeech_audio(root: Path) -> Path:
    """LibriSpeech/dev-clean/84/121123 with two utterances and their transcript file; returns the chapter folder."""
    chapter = root / CHAPTER
    for uttid, (_, seconds, _) in TRANSCRIPTS.items():
        write_audio(chapter / f"{uttid}.flac", seconds)
    (chapter / "84-121123.trans.txt").write_text("".join(f"{u} {t}\n" for u, (t, _, _) in TRANSCRIPTS.items()))
    return chapter


def phones_for(words):
    return [(label.upper()[:2], start, end) for label, start, end in words]


def test_librispeech_textgrids_beside_audio(tmp_path):
    chapter = librispeech_audio(tmp_path)
    for uttid, (_, seconds, words) in TRANSCRIPTS.items():
        write_textgrid(chapter / f"{uttid}.TextGrid", words, phones_for(words), seconds)

    examples = by_id(load_librispeech(tmp_path))

    first = "librispeech/84-121123-0000"
    assert set(examples) == {f"{first}/{w}" for w in ("the/1", "cat/1", "saw/1", "the/2", "dog/1", "transcript")} | {
        "librispeech/84-121123-0001/hello/1", "librispeech/84-121123-0001/world/1"}  # no <unk>, no transcript
    second_the = examples[f"{first}/the/2"]
    assert (second_the.task, second_the.prompt, second_the.times, second_the.ends) == ("word", {"word": "the", "occurrence": 2}, (0.9,), (1.0,))
    assert second_the.duration == pytest.approx(2.0)
    assert second_the.audio == str(chapter / "84-121123-0000.flac")
    assert second_the.question == "When does the 2nd occurrence of the word 'the' occur?"
    transcript = examples[f"{first}/transcript"]
    assert transcript.prompt == {"transcript": "the cat saw the dog"}
    assert transcript.times == (0.1, 0.25, 0.6, 0.9, 1.1) and transcript.ends == (0.2, 0.5, 0.8, 1.0, 1.5)
    assert examples["librispeech/84-121123-0001/world/1"].times == (1.0,)


def test_unreliable_words_are_never_asked_but_still_counted(tmp_path):
    chapter = librispeech_audio(tmp_path)
    uttid = "84-121123-0000"
    _, seconds, words = TRANSCRIPTS[uttid]
    write_textgrid(chapter / f"{uttid}.TextGrid", words, phones_for(words), seconds, unreliable=[(0.1, 0.2)])
    assert read_textgrid_words(chapter / f"{uttid}.TextGrid") == (words, [(0.1, 0.2)])
    (chapter / "84-121123.trans.txt").write_text(f"{uttid} THE CAT SAW THE DOG\n")

    ids = set(by_id(load_librispeech(tmp_path)))

    assert f"librispeech/{uttid}/the/1" not in ids and f"librispeech/{uttid}/transcript" not in ids
    assert f"librispeech/{uttid}/the/2" in ids  # k counts the unreliable first "the"


def test_textgrid_round_trip_agrees_with_praatio(tmp_path):
    from praatio import textgrid

    words = [("tiny", 0.00001, 0.5), ('say "hi"', 0.5, 1.25), ("café", 1.3, 1.9999)]
    path = tmp_path / "ours.TextGrid"
    write_textgrid(path, words, phones_for(words), 2.0, unreliable=[(1.3, 1.9999), (1.5, 1.6)])

    assert read_textgrid_words(path) == (words, [(1.3, 1.9999)])
    # praatio (an independent parser) reads our long format the same way ...
    theirs = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    assert theirs.tierNames == ("words", "phones", "unreliable")
    assert [tuple(entry) for entry in theirs.getTier("words").entries] == [(s, e, w) for w, s, e in words]
    # ... and we read praatio's short format and Praat's UTF-16 files as praatio does.
    short = tmp_path / "short.TextGrid"
    theirs.save(str(short), format="short_textgrid", includeBlankSpaces=True)
    wide = tmp_path / "wide.TextGrid"
    wide.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    for other in (short, wide):
        assert read_textgrid_words(other) == (words, [(1.3, 1.9999)])
        again = textgrid.openTextgrid(str(other), includeEmptyIntervals=False).getTier("words").entries
        assert [(label, start, end) for start, end, label in again] == words


def test_mfa1_labels_and_speaker_tier_names(tmp_path):
    path = tmp_path / "mfa1.TextGrid"
    entries = [("sil", 0.0, 0.1), ("HELLO", 0.1, 0.5), ("sp", 0.5, 0.6), ("<unk>", 0.6, 0.9), ("spn", 0.9, 1.0), ("WORLD", 1.0, 1.4)]
    body = "".join(f"{s}\n{e}\n\"{label}\"\n" for label, s, e in entries)
    path.write_text('File type = "ooTextFile short"\n"TextGrid"\n\n0\n1.4\n<exists>\n2\n'
                    f'"IntervalTier"\n"speaker1 - phones"\n0\n1.4\n0\n"IntervalTier"\n"speaker1 - words"\n0\n1.4\n{len(entries)}\n{body}')

    words, unreliable = read_textgrid_words(path)

    assert words == [("HELLO", 0.1, 0.5), ("<unk>", 0.6, 0.9), ("spn", 0.9, 1.0), ("WORLD", 1.0, 1.4)]
    assert unreliable == [(0.6, 0.9), (0.9, 1.0)]


ALIGNMENT_LINE = '84-121123-0000 ",THE,CAT,SAW,THE,DOG," "0.100,0.200,0.500,0.800,1.000,1.500,2.000"\n'


def test_alignment_txt_end_times(tmp_path):
    path = tmp_path / "84-121123.alignment.txt"
    path.write_text(ALIGNMENT_LINE + '84-121123-0001 "HELLO,<unk>,WORLD" "0.5,0.9,1.3"\n')

    alignment = read_alignment_txt(path)

    assert alignment["84-121123-0000"] == ([("THE", 0.1, 0.2), ("CAT", 0.2, 0.5), ("SAW", 0.5, 0.8), ("THE", 0.8, 1.0),
                                            ("DOG", 1.0, 1.5)], [])
    assert alignment["84-121123-0001"] == ([("HELLO", 0.0, 0.5), ("<unk>", 0.5, 0.9), ("WORLD", 0.9, 1.3)], [(0.5, 0.9)])


def test_alignment_root_layouts(tmp_path):
    librispeech_audio(tmp_path / "audio")
    mirrored = tmp_path / "mirrored" / CHAPTER / "84-121123.alignment.txt"
    mirrored.parent.mkdir(parents=True)
    mirrored.write_text(ALIGNMENT_LINE)
    _, seconds, words = TRANSCRIPTS["84-121123-0001"]
    write_textgrid(tmp_path / "mirrored" / "84-121123-0001.TextGrid", words, phones_for(words), seconds)  # flat

    examples = by_id(load_librispeech(tmp_path / "audio", alignment_root=tmp_path / "mirrored"))

    assert examples["librispeech/84-121123-0000/the/2"].times == (0.8,)
    assert examples["librispeech/84-121123-0000/transcript"].times == (0.1, 0.2, 0.5, 0.8, 1.0)
    assert examples["librispeech/84-121123-0001/world/1"].times == (1.0,)


def test_question_sampling_is_seeded_per_clip(tmp_path):
    chapter = librispeech_audio(tmp_path)
    for uttid, (_, seconds, words) in TRANSCRIPTS.items():
        write_textgrid(chapter / f"{uttid}.TextGrid", words, phones_for(words), seconds)

    def chosen(seed):
        return [e.id for e in load_librispeech(tmp_path, seed=seed, max_questions_per_clip=2)]

    assert chosen(3) == chosen(3)
    assert len([i for i in chosen(3) if "0000" in i and "transcript" not in i]) == 2
    assert any(i.endswith("0000/transcript") for i in chosen(3))  # the transcript question is not sampled away
    assert len({tuple(chosen(seed)) for seed in range(8)}) > 1


def test_missing_alignments_are_skipped_with_a_warning(tmp_path):
    chapter = librispeech_audio(tmp_path)
    _, seconds, words = TRANSCRIPTS["84-121123-0000"]
    write_textgrid(chapter / "84-121123-0000.TextGrid", words, phones_for(words), seconds)
    with pytest.warns(UserWarning, match="skipped 1 of 2 utterances with no alignment"):
        examples = load_librispeech(tmp_path)
    assert {e.source["utterance"] for e in examples} == {"84-121123-0000"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no alignment found"):
        load_librispeech(tmp_path, alignment_root=tmp_path / "empty")


def test_textgrid_errors_name_the_line(tmp_path):
    chapter = librispeech_audio(tmp_path)
    uttid = "84-121123-0000"
    _, seconds, words = TRANSCRIPTS[uttid]
    path = chapter / f"{uttid}.TextGrid"
    write_textgrid(path, words, phones_for(words), seconds)
    good = path.read_text()

    path.write_text(good.replace("xmax = 0.5\n", "xmax = 0.5x\n", 1))
    with pytest.raises(ManifestError, match="must be a number, got '0.5x'") as error:
        read_textgrid_words(path)
    assert_points_at(error, path, line_of(path, "xmax = 0.5x"))

    path.write_text(good.replace('"cat"', '"bat"'))
    with pytest.raises(ManifestError, match="aligned word 2 is 'bat' but the transcript .*trans.txt:1\\) has 'cat'") as error:
        load_librispeech(tmp_path / "dev-clean")
    assert_points_at(error, path, line_of(path, '"bat"'))

    path.write_text(good.replace('name = "words"', 'name = "orthography"'))
    with pytest.raises(ManifestError, match="no tier named 'words'.*'orthography'") as error:
        read_textgrid_words(path)
    assert_points_at(error, path, line_of(path, "size = 2"))

    path.write_text(good[: len(good) // 2])
    with pytest.raises(ManifestError, match="truncated"):
        read_textgrid_words(path)


def test_transcript_and_alignment_txt_errors_name_the_line(tmp_path):
    chapter = librispeech_audio(tmp_path)
    transcripts = chapter / "84-121123.trans.txt"
    transcripts.write_text("84-121123-0000 THE CAT SAW THE DOG\n99-1-0001 HELLO\n")
    with pytest.raises(ManifestError, match="does not belong to chapter 84-121123") as error:
        load_librispeech(tmp_path)
    assert_points_at(error, transcripts, 2)

    path = tmp_path / "align.alignment.txt"
    path.write_text(ALIGNMENT_LINE + '84-121123-0001 "HELLO,WORLD"\n')
    with pytest.raises(ManifestError, match="expected 3 fields") as error:
        read_alignment_txt(path)
    assert_points_at(error, path, 2)

    path.write_text('\n84-121123-0001 "HELLO,WORLD" "0.5,O.9"\n')
    with pytest.raises(ManifestError, match="time 2 \\('O.9'\\) must be a number") as error:
        read_alignment_txt(path)
    assert_points_at(error, path, 2)


def test_write_textgrid_refuses_overlapping_words(tmp_path):
    with pytest.raises(InputError, match="before entry 1 ends"):
        write_textgrid(tmp_path / "x.TextGrid", [("a", 0.0, 0.5), ("b", 0.4, 0.8)], [], 1.0)
    assert not (tmp_path / "x.TextGrid").exists()


# --- LibriCount --------------------------------------------------------------------------------------

def activity(*spans_in_seconds):
    return [[round(start * RATE), round(end * RATE)] for start, end in spans_in_seconds]


def test_libricount_speaker_onsets_and_tie_rule(tmp_path):
    write_audio(tmp_path / "3_abc.wav", 2.0)
    speakers = [{"sex": "F", "activity": activity((0.75, 1.5)), "speaker_id": "c"},
                {"sex": "M", "activity": activity((0.0, 0.5), (1.0, 1.25)), "speaker_id": "a"},
                {"sex": "F", "activity": activity((0.0, 0.25)), "speaker_id": "b"}]
    write_libricount_json(tmp_path / "3_abc.json", speakers)
    write_audio(tmp_path / "0_empty.wav", 2.0)
    write_libricount_json(tmp_path / "0_empty.json", [])

    examples = by_id(load_libricount(tmp_path))

    assert set(examples) == {f"libricount/3_abc/speaker/{k}" for k in (1, 2, 3)}
    times = [examples[f"libricount/3_abc/speaker/{k}"].times[0] for k in (1, 2, 3)]
    assert times == [0.0, 0.0, 0.75]  # a and b tie at 0: the 1st and 2nd speaker both start at 0
    first = examples["libricount/3_abc/speaker/1"]
    assert first.prompt == {"occurrence": 1} and first.task == "speaker" and first.duration == pytest.approx(2.0)
    assert first.source["speakers_starting"] == ["a", "b"] and first.audio == str(tmp_path / "3_abc.wav")
    assert first.question == "When does the 1st speaker start speaking?"


def test_libricount_errors_name_the_line(tmp_path):
    write_audio(tmp_path / "2_abc.wav", 1.0)
    path = tmp_path / "2_abc.json"
    speakers = [{"sex": "F", "activity": activity((0.1, 0.5)), "speaker_id": 1},
                {"sex": "M", "activity": [[8000, 4000]], "speaker_id": 2}]
    path.write_text("[\n" + ",\n".join(json.dumps(s) for s in speakers) + "\n]\n")
    with pytest.raises(ManifestError, match="speaker 2: activity 1 ends") as error:
        load_libricount(tmp_path)
    assert_points_at(error, path, 3)

    path.write_text(json.dumps(speakers[:1] * 3))
    with pytest.raises(ManifestError, match="file name says 2 speaker\\(s\\) but the list has 3") as error:
        load_libricount(tmp_path)
    assert_points_at(error, path, 1)
    with pytest.raises(InputError, match="file name says 2 speaker"):
        write_libricount_json(path, speakers[:1] * 3)

    path.write_text('[\n{"activity": [[0, 10]], "speaker_id": 1}\n{"activity": [[0, 10]], "speaker_id": 2}\n]\n')
    with pytest.raises(ManifestError, match="not valid JSON") as error:
        load_libricount(tmp_path)
    assert_points_at(error, path, 3)


# --- AudioSet strong ---------------------------------------------------------------------------------

NAMES = {"/m/0bt9lr": "Dog", "/m/09x0r": "Speech", "/m/0dgw9r": "Human sounds"}
EVENTS = [("abc_30000", 0.5, 1.0, "/m/0bt9lr"), ("abc_30000", 0.2, 2.0, "/m/09x0r"), ("abc_30000", 1.5, 2.5, "/m/0bt9lr"),
          ("abc_30000", 2.9, 3.5, "/m/0bt9lr"), ("abc_30000", 3.5, 4.0, "/m/09x0r"), ("gone_1000", 0.0, 1.0, "/m/0bt9lr")]


def audioset_files(root: Path) -> tuple[Path, Path, Path]:
    write_audio(root / "audio" / "abc_30000.flac", 3.0)
    write_strong_tsv(root / "strong.tsv", EVENTS)
    write_mid_names(root / "names.tsv", NAMES)
    return root / "strong.tsv", root / "audio", root / "names.tsv"


def test_audioset_strong_events(tmp_path):
    tsv, audio, names = audioset_files(tmp_path)
    assert read_mid_names(names) == NAMES

    with pytest.warns(UserWarning) as warned:
        examples = by_id(load_audioset_strong(tsv, audio, names))

    messages = " ".join(str(w.message) for w in warned)
    assert "skipped 1 of 2 segments with no audio file" in messages and "skipped 1 events that start after" in messages
    expected = {"Dog/1": (0.5, 1.0), "Dog/2": (1.5, 2.5), "Dog/3": (2.9, 3.0), "Speech/1": (0.2, 2.0)}  # Dog/3 cut at the clip end
    assert {key.removeprefix("audioset/abc_30000/"): (e.times[0], e.ends[0]) for key, e in examples.items()} == expected
    dog = examples["audioset/abc_30000/Dog/2"]
    assert dog.prompt == {"event": "Dog", "occurrence": 2} and dog.audio == str(audio / "abc_30000.flac")
    assert dog.duration == pytest.approx(3.0)


def test_audioset_label_filter_and_ontology(tmp_path):
    tsv, audio, names = audioset_files(tmp_path)
    ontology = tmp_path / "ontology.json"
    ontology.write_text(json.dumps([{"id": "/m/0dgw9r", "name": "Human sounds", "child_ids": ["/m/09x0r"]},
                                    {"id": "/m/09x0r", "name": "Speech", "child_ids": []},
                                    {"id": "/m/0bt9lr", "name": "Dog", "child_ids": []}], indent=1))
    with pytest.warns(UserWarning):
        dogs = load_audioset_strong(tsv, audio, names, labels=["/m/0bt9lr"])
        human = load_audioset_strong(tsv, audio, names, labels="human sounds", ontology_path=ontology)
    assert {e.prompt["event"] for e in dogs} == {"Dog"} and len(dogs) == 3
    assert [e.id for e in human] == ["audioset/abc_30000/Speech/1"]
    with pytest.raises(InputError, match="'Cat' is neither a MID nor a display name"):
        load_audioset_strong(tsv, audio, names, labels=["Cat"])


def test_audioset_errors_name_the_line(tmp_path):
    tsv, audio, names = audioset_files(tmp_path)
    good = tsv.read_text()
    cases = [(good.replace("\t1.5\t", "\t1.5\t2.5\t"), "expected 4 tab-separated columns", 4),
             (good.replace("\t2.9\t", "\t2,9\t"), "start and end must be numbers", 5),
             (good.replace("/m/09x0r", "/m/nope", 1), "label /m/nope is not in", 3),
             (good.replace("label", "mid"), "the header must be", 1)]
    for text, problem, line in cases:
        tsv.write_text(text)
        with pytest.raises(ManifestError, match=problem) as error:
            load_audioset_strong(tsv, audio, names)
        assert_points_at(error, tsv, line)

    names.write_text("mid\tdisplay_name\n/m/0bt9lr\tDog\n")
    with pytest.raises(ManifestError, match="no header") as error:
        read_mid_names(names)
    assert_points_at(error, names, 1)


# --- AudioGrounding ----------------------------------------------------------------------------------

CAPTIONS = [
    {"audiocap_id": 11, "audio_id": "Yaaa.wav", "tokens": "a dog barks while a man talks",
     "phrases": [{"phrase": "a dog", "start_index": 0, "end_index": 1, "segments": [[1.5, 2.0], [0.2, 0.9]]},
                 {"phrase": "a man", "start_index": 4, "end_index": 5, "segments": [[0.5, 3.5]]}]},
    {"audiocap_id": 12, "audio_id": "Yaaa.wav", "tokens": ["a", "dog", "barks", "and", "a", "dog", "growls"],
     "phrases": [{"phrase": "a dog", "start_index": 0, "end_index": 1, "segments": [[0.2, 0.9]]},
                 {"phrase": "a  dog", "start_index": 4, "end_index": 5, "segments": [[0.2, 0.9], [2.5, 2.75]]}]},
    {"audiocap_id": 13, "audio_id": "Ymissing.wav", "tokens": "rain", "phrases": [{"phrase": "rain", "segments": [[0, 1]]}]},
]


def test_audiogrounding_phrases(tmp_path):
    write_audio(tmp_path / "audio" / "Yaaa.wav", 3.0)
    path = tmp_path / "grounding.json"
    path.write_text(json.dumps(CAPTIONS, indent=2))

    with pytest.warns(UserWarning, match="skipped 1 of 3 captions with no audio file"):
        examples = by_id(load_audiogrounding(path, tmp_path / "audio"))

    spans = {key: (e.times[0], e.ends[0]) for key, e in examples.items()}
    assert spans == {"audiogrounding/11/a dog/1": (0.2, 0.9), "audiogrounding/11/a dog/2": (1.5, 2.0),
                     "audiogrounding/11/a man/1": (0.5, 3.0),  # cut at the clip end
                     "audiogrounding/12/a dog/1": (0.2, 0.9), "audiogrounding/12/a dog/2": (2.5, 2.75)}  # repeats merged
    dog = examples["audiogrounding/11/a dog/2"]
    assert dog.prompt == {"event": "a dog", "occurrence": 2} and dog.task == "event" and dog.duration == pytest.approx(3.0)
    assert examples["audiogrounding/12/a dog/1"].source["caption"] == "a dog barks and a dog growls"


def test_audiogrounding_errors_name_the_line(tmp_path):
    write_audio(tmp_path / "Yaaa.wav", 3.0)
    path = tmp_path / "grounding.json"
    bad = json.loads(json.dumps(CAPTIONS))
    bad[1]["phrases"][1]["segments"][1] = [2.75, 2.5]
    path.write_text("[\n" + ",\n".join(json.dumps(c) for c in bad) + "\n]\n")
    with pytest.raises(ManifestError, match="caption 2: phrase 2 \\('a dog'\\), segment 2: offset 2.5 is before onset 2.75") as error:
        load_audiogrounding(path, tmp_path)
    assert_points_at(error, path, 3)

    del bad[1]["phrases"][1]["segments"][1], bad[0]["audio_id"]
    path.write_text("[\n" + ",\n".join(json.dumps(c) for c in bad) + "\n]\n")
    with pytest.raises(ManifestError, match="caption 1: missing key\\(s\\) audio_id") as error:
        load_audiogrounding(path, tmp_path)
    assert_points_at(error, path, 2)

    path.write_text(json.dumps(CAPTIONS, indent=2)[:-20])
    with pytest.raises(ManifestError, match="not valid JSON") as error:
        load_audiogrounding(path, tmp_path)
    assert error.value.line is not None and error.value.line > 1


# --- forced alignments beside recordings (pocketsphinx JSON, MFA TextGrids) --------------------------

# (label as pocketsphinx writes it, start, duration): the words as pocketsphinx 5 aligns "he was not he".
SPHINX_WORDS = [("<sil>", 0.0, 0.21), ("he", 0.21, 0.12), ("was(2)", 0.33, 0.23), ("[NOISE]", 0.56, 0.1),
                ("not", 0.66, 0.5), ("<sil>", 1.16, 0.07), ("++UH++", 1.23, 0.2), ("He", 1.43, 0.4), ("</s>", 1.83, 0.17)]


def sphinx_line(words, phones: bool = False) -> str:
    """One utterance as pocketsphinx prints it; with ``phones``, each word holds a nested phone list."""
    entries = []
    for label, start, duration in words:
        entry = {"b": start, "d": duration, "p": 0.98, "t": label}
        if phones:
            entry["w"] = [{"b": start, "d": duration, "p": 0.99, "t": "SIL"}]
        entries.append(entry)
    return json.dumps({"b": 0.0, "d": 2.0, "p": 1.0, "t": "he was not he", "w": entries})


def test_pocketsphinx_alignments_become_word_and_transcript_questions(tmp_path):
    write_audio(tmp_path / "clip.wav", 2.0)
    (tmp_path / "clip.json").write_text(sphinx_line(SPHINX_WORDS) + "\n")
    (tmp_path / "clip.phone.json").write_text(sphinx_line(SPHINX_WORDS, phones=True) + "\n")  # no audio of its stem
    write_audio(tmp_path / "deeper" / "nested.flac", 2.0)
    (tmp_path / "deeper" / "nested.json").write_text(sphinx_line(SPHINX_WORDS[:3], phones=True))

    with pytest.warns(UserWarning, match="skipped 1 alignment files with no audio"):
        questions = by_id(load_aligned(tmp_path))

    words = [(label.split("(")[0].lower(), start, start + duration) for label, start, duration in SPHINX_WORDS
             if label[0].isalpha()]
    numbers = occurrence_numbers(word for word, _, _ in words)
    expected = {f"aligned/clip/{word}/{k}": (start, end) for (word, start, end), k in zip(words, numbers)}
    asked = {key: (q.times[0], q.ends[0]) for key, q in questions.items() if key.startswith("aligned/clip/") and q.task == "word"}
    assert sorted(asked) == sorted(expected)
    assert [asked[key] for key in sorted(asked)] == [pytest.approx(expected[key]) for key in sorted(asked)]
    assert questions["aligned/clip/he/2"].prompt == {"word": "he", "occurrence": 2}
    transcript = questions["aligned/clip/transcript"]
    assert transcript.prompt == {"transcript": "he was not he"}
    assert transcript.times == pytest.approx([start for _, start, _ in words])
    assert transcript.ends == pytest.approx([end for _, _, end in words])
    assert transcript.duration == pytest.approx(2.0) and transcript.audio == str(tmp_path / "clip.wav")
    # nested phones are ignored: the words of a phone-level file are its word entries
    assert questions["aligned/deeper/nested/transcript"].prompt == {"transcript": "he was"}
    assert questions["aligned/deeper/nested/was/1"].audio == str(tmp_path / "deeper" / "nested.flac")

    with pytest.warns(UserWarning, match="skipped 1 alignment files"):
        aligned_manifest([str(tmp_path), str(tmp_path / "manifest.jsonl")])
    assert read_manifest(tmp_path / "manifest.jsonl") == list(questions.values())


def test_mfa_textgrids_in_their_own_folder(tmp_path):
    """MFA's layout: the corpus in one folder, its TextGrids in another; marks of non-speech are no words,
    an unknown word is never asked and leaves its clip without a transcript question."""
    words = [("uh", 0.1, 0.3), ("so", 0.3, 0.5), ("<vocnoise>", 0.6, 0.8), ("the", 0.9, 1.0), ("[cutoff]", 1.0, 1.1),
             ("cold", 1.2, 1.6), ("the", 1.7, 1.8)]
    write_audio(tmp_path / "wav" / "talk.wav", 2.0)
    write_textgrid(tmp_path / "aligned" / "talk.TextGrid", words, phones_for(words), 2.0)
    write_audio(tmp_path / "wav" / "odd.flac", 1.0)
    write_textgrid(tmp_path / "aligned" / "odd.TextGrid", [("hello", 0.1, 0.4), ("<unk>", 0.4, 0.7)],
                   [("h", 0.1, 0.4), ("spn", 0.4, 0.7)], 1.0)
    write_audio(tmp_path / "wav" / "input.wav", 1.0)  # MFA's input: a transcript, not an alignment
    (tmp_path / "aligned" / "input.TextGrid").write_text(textgrid_text([("speaker", [("hello world", 0.0, 1.0)])], 1.0))

    with pytest.warns(UserWarning, match="skipped 1 TextGrids with no words tier"):
        questions = by_id(load_aligned(tmp_path / "wav", tmp_path / "aligned"))

    kept = [(label, start, end) for label, start, end in words if label[0].isalpha()]
    numbers = occurrence_numbers(label for label, _, _ in kept)
    assert {key: q.times[0] for key, q in questions.items() if key.startswith("aligned/talk/") and q.task == "word"} == \
        pytest.approx({f"aligned/talk/{label}/{k}": start for (label, start, _), k in zip(kept, numbers)})
    assert questions["aligned/talk/transcript"].prompt == {"transcript": "uh so the cold the"}
    assert questions["aligned/talk/transcript"].ends == pytest.approx([end for _, _, end in kept])
    assert questions["aligned/talk/the/2"].audio == str(tmp_path / "wav" / "talk.wav")
    assert [key for key in questions if key.startswith("aligned/odd/")] == ["aligned/odd/hello/1"]
    assert not any(key.startswith("aligned/input/") for key in questions)


@pytest.mark.parametrize("text, line, message", [
    ('\n{"w": [{"b": 0.1, "d": 0.2, "t": "he"}]\n', 2, "not valid JSON"),
    ('{"b": 0, "t": "he"}', 1, "word segments"),
    ('{"w": [{"b": 0.1, "d": 0.2, "t": "he"}]}\n{"w": [["he", 0.1]]}', 2, "each word must be"),
    ('{"w": [{"b": -0.1, "d": 0.2, "t": "he"}]}', 1, "'b' must be a number of seconds"),
    ('{"w": [{"b": 0.1, "d": "0.2", "t": "he"}]}', 1, "'d' must be a number of seconds"),
    ('{"w": [{"b": 0.1, "d": 0.2, "t": "--"}]}', None, "has no letters"),
    ('{"w": [{"b": 0.1, "d": 0.2, "t": "<sil>"}]}', None, "no words"),
    ('{"w": [{"b": 0.1, "d": 2.2, "t": "he"}]}', None, "is this the right audio"),
])
def test_alignment_errors_name_the_file_and_line(tmp_path, text, line, message):
    write_audio(tmp_path / "clip.wav", 2.0)
    (tmp_path / "clip.json").write_text(text)
    with pytest.raises(ManifestError, match=message) as error:
        load_aligned(tmp_path)
    assert_points_at(error, tmp_path / "clip.json", line)


def test_folders_without_alignments_or_with_ambiguous_clips_are_refused(tmp_path):
    with pytest.raises(InputError, match="no such audio folder"):
        load_aligned(tmp_path / "missing")
    write_audio(tmp_path / "a" / "clip.wav", 1.0)
    (tmp_path / "a" / "clip.phone.json").write_text(sphinx_line(SPHINX_WORDS))
    with pytest.raises(InputError, match=r"no <stem>.TextGrid .* \(1 alignment files without audio, 0 TextGrids"):
        load_aligned(tmp_path)
    write_audio(tmp_path / "b" / "clip.wav", 1.0)  # the same name in two folders: which one does clip.json time?
    (tmp_path / "a" / "clip.json").write_text(sphinx_line(SPHINX_WORDS[:3]))
    with pytest.raises(InputError, match="two clips named clip"):
        load_aligned(tmp_path)



# --- shared ------------------------------------------------------------------------------------------

def test_occurrence_numbers_and_json_entry_lines(tmp_path):
    assert occurrence_numbers(["the", "cat", "the", "the", "dog"]) == [1, 1, 2, 3, 1]
    path = tmp_path / "list.json"
    path.write_text('\n[ {"a": 1},\n\n  {"b": [1,\n 2]}, 3\n]')
    assert read_json_entries(path, "thing") == [({"a": 1}, 2), ({"b": [1, 2]}, 4), (3, 5)]


def test_loader_output_is_a_valid_manifest(tmp_path):
    chapter = librispeech_audio(tmp_path / "libri")
    for uttid, (_, seconds, words) in TRANSCRIPTS.items():
        write_textgrid(chapter / f"{uttid}.TextGrid", words, phones_for(words), seconds)
    write_audio(tmp_path / "count" / "1_x.wav", 1.0)
    write_libricount_json(tmp_path / "count" / "1_x.json", [{"sex": "F", "activity": activity((0.3, 0.6)), "speaker_id": 7}])
    examples = load_librispeech(tmp_path / "libri") + load_libricount(tmp_path / "count")

    write_manifest(tmp_path / "manifest.jsonl", examples)

    assert read_manifest(tmp_path / "manifest.jsonl") == examples
