"""The manifest schema: round trip, and a readable error naming file and line for each defect."""

import json

import pytest

from framestamp.data.manifest import Example, read_manifest, write_manifest
from framestamp.runtime import InputError, ManifestError
from framestamp.runtime.prompts import ordinal, render_prompt

GOOD = {"id": "a/1", "task": "word", "prompt": {"word": "much", "occurrence": 1}, "times": [0.63],
        "duration": 2.5, "audio": "a.flac"}


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_round_trip_and_relative_audio(tmp_path):
    examples = [
        Example(**{**GOOD, "times": tuple(GOOD["times"])}),
        Example(id="b", task="transcript", prompt={"transcript": "two words"}, times=(0.1, 0.5), duration=1.0,
                generator={"name": "words", "seed": 3}, source={"dataset": "synth"}),
        Example(id="c", task="event", prompt={"event": "Dog", "occurrence": 2}, times=(1.0,), ends=(1.5,),
                duration=10.0, audio="/abs/c.wav"),
    ]
    path = tmp_path / "sub" / "m.jsonl"
    assert write_manifest(path, examples) == 3
    assert read_manifest(path) == examples
    assert examples[0].audio_path(path.parent) == path.parent / "a.flac"
    assert str(examples[2].audio_path(path.parent)) == "/abs/c.wav"
    assert examples[0].question == "When does the 1st occurrence of the word 'much' occur?"
    assert not list(tmp_path.glob("sub/.*"))  # no temporary left behind


@pytest.mark.parametrize("defect, message", [
    ("{not json", "not valid JSON"),
    ({k: v for k, v in GOOD.items() if k != "times"}, "missing field"),
    ({**GOOD, "colour": "red"}, "unknown field"),
    ({**GOOD, "task": "count"}, "unknown task"),
    ({**GOOD, "prompt": {"word": "much"}}, "occurrence"),
    ({**GOOD, "prompt": {"word": "much", "occurrence": 0}}, "occurrence"),
    ({**GOOD, "times": [0.5, 0.4], "task": "transcript", "prompt": {"transcript": "a b"}}, "sorted"),
    ({**GOOD, "times": [3.0]}, "lie in"),
    ({**GOOD, "times": [0.1, 0.2]}, "one time"),
    ({**GOOD, "ends": [0.5]}, "ends"),
    ({**GOOD, "generator": {"name": "words", "seed": 1}}, "exactly one"),
    ({**GOOD, "duration": 0}, "duration"),
    ([1, 2], "JSON object"),
])
def test_each_defect_names_file_and_line(tmp_path, defect, message):
    path = write_lines(tmp_path / "m.jsonl", [GOOD, "", {**GOOD, "id": "a/2"}, defect])
    with pytest.raises(ManifestError, match=message) as error:
        read_manifest(path)
    assert str(error.value).startswith(f"{path}:4: ")


def test_duplicate_ids_and_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="duplicate id 'a/1' \\(first on line 1\\)"):
        read_manifest(write_lines(tmp_path / "d.jsonl", [GOOD, GOOD]))
    with pytest.raises(InputError, match="no examples"):
        read_manifest(write_lines(tmp_path / "e.jsonl", [""]))
    with pytest.raises(InputError, match="no such manifest"):
        read_manifest(tmp_path / "missing.jsonl")


def test_prompt_templates():
    assert [ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    assert render_prompt("speaker", {"occurrence": 3}) == "When does the 3rd speaker start speaking?"
    assert render_prompt("event", {"event": "Male singing", "occurrence": 2}) == \
        "When does the 2nd occurrence of the event 'Male singing' occur?"
    assert render_prompt("transcript", {"transcript": "mister verloc"}) == \
        "Transcript:\nmister verloc\nBased on the transcript, output the timestamps for every word"


def test_merged_manifests_point_at_the_same_audio_and_refuse_shared_ids(tmp_path):
    from framestamp.data.merge import merge_manifests

    for name in ("a", "b"):
        (tmp_path / name / "clips").mkdir(parents=True)
        (tmp_path / name / "clips" / "x.wav").write_bytes(name.encode())
        write_manifest(tmp_path / name / "m.jsonl", [Example(id=f"{name}/1", task="speaker", prompt={"occurrence": 1},
                                                            times=(0.5,), duration=1.0, audio="clips/x.wav")])
    out = tmp_path / "all" / "m.jsonl"
    assert merge_manifests(out, [tmp_path / "a" / "m.jsonl", tmp_path / "b" / "m.jsonl"]) == 2
    merged = read_manifest(out)
    assert [(out.parent / e.audio).read_bytes() for e in merged] == [b"a", b"b"]
    with pytest.raises(InputError, match="unique"):
        merge_manifests(tmp_path / "twice.jsonl", [tmp_path / "a" / "m.jsonl", tmp_path / "a" / "m.jsonl"])
