"""`framestamp locate-corpus` on Ray Data: every question answered once, as the Locator answers it, and a
job killed mid-run (driver, workers and its local cluster) then run again ends with the same output."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ray.data")

from framestamp.cli import main  # noqa: E402
from framestamp.corpus import read_answers, read_corpus, shard_paths  # noqa: E402
from framestamp.runtime import Locator, Query  # noqa: E402

pytestmark = pytest.mark.espeak


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~45 questions of every task about generated clips, and one whose audio file is missing."""
    folder = tmp_path_factory.mktemp("corpus")
    assert main(["synth", str(folder), "--count", "2", "--seed", "29", "--voices", "en-029,en-us-nyc",
                 "--max-seconds", "4"]) == 0
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    missing = json.loads(lines[0]) | {"id": "missing-audio", "audio": "words/no-such-file.flac"}
    (folder / "manifest.jsonl").write_text("\n".join(lines + [json.dumps(missing)]) + "\n")
    return folder / "manifest.jsonl"


def expected_answers(manifest) -> dict:
    """The Locator's answers in this process, one question at a time: the independent computation."""
    locator = Locator("shipped", threads=1)
    answers = {}
    for question in read_corpus(manifest):
        if not os.path.exists(question["audio"]):
            continue
        answers[question["id"]] = locator.run([Query(question["audio"], question["task"],
                                                     json.loads(question["prompt"]))])[0]
    return answers


def locate_corpus(manifest, out, *options, **popen):
    return subprocess.Popen([sys.executable, "-m", "framestamp", "locate-corpus", str(manifest), str(out),
                             "--shard-size", "4", "--batch-size", "4", *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def test_killed_mid_run_then_rerun_gives_every_answer_once_as_the_locator(corpus, tmp_path):
    out = tmp_path / "answers"
    job = locate_corpus(corpus, out, start_new_session=True)  # its own process group: the local cluster too
    deadline = time.monotonic() + 180
    while len(shard_paths(out)) < 3:
        assert job.poll() is None, job.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    before = read_answers(out)
    questions = read_corpus(corpus)
    assert 0 < len(before) < len(questions)

    rerun = locate_corpus(corpus, out)
    _, log = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    assert f"{len(before)} answered already" in log
    after = read_answers(out)
    ids = [record["id"] for record in after]
    assert len(ids) == len(set(ids)) == len(questions)
    assert {record["id"]: record for record in after if record["id"] in {r["id"] for r in before}} == {
        record["id"]: record for record in before}

    expected = expected_answers(corpus)
    for record in after:
        if record["id"] == "missing-audio":
            assert "no such audio file" in record["error"] and not record["times"]
            continue
        answer = expected[record["id"]]
        assert record["error"] is None
        assert np.allclose(record["times"], answer.times, atol=1e-6), record["id"]
        assert np.allclose(record["confidence"], answer.confidence, atol=1e-6), record["id"]
        assert record["warnings"] == list(answer.warnings), record["id"]
        assert record["words"] == list(answer.words or ()), record["id"]


def test_a_folder_of_audio_with_transcripts_and_parquet_shards(corpus, tmp_path):
    """A folder of clips with .txt transcripts beside them is one transcript question per clip; a
    Parquet shard reads back what was written, and counts as finished for a rerun."""
    import shutil

    from framestamp.corpus import finished_ids, next_shard_number, write_shard

    clips = sorted({q["audio"] for q in read_corpus(corpus) if os.path.exists(q["audio"])})[:3]
    folder = tmp_path / "recordings"
    (folder / "day2").mkdir(parents=True)
    for number, clip in enumerate(clips):
        name = f"day2/clip{number}.flac" if number else f"clip{number}.flac"
        shutil.copy(clip, folder / name)
        (folder / name).with_suffix(".txt").write_text(f"words of clip {number}\n")
    (folder / "no-transcript.flac").write_bytes(b"")
    found = read_corpus(folder)
    assert [q["id"] for q in found] == ["clip0.flac", "day2/clip1.flac", "day2/clip2.flac"]
    assert [json.loads(q["prompt"]) for q in found] == [{"transcript": f"words of clip {n}"} for n in range(3)]

    records = [{"id": q["id"], "task": "transcript", "prompt": json.loads(q["prompt"]), "times": [0.5, 1.25],
                "confidence": [0.9, 0.1], "ends": [], "words": ["a", "b"], "warnings": [], "error": None} for q in found]
    records[2] = {**records[2], "times": [], "confidence": [], "words": [], "error": "no such audio file"}
    write_shard(tmp_path / "out", 0, records, "parquet")
    assert read_answers(tmp_path / "out") == records
    assert finished_ids(tmp_path / "out") == {q["id"] for q in found}
    assert next_shard_number(tmp_path / "out") == 1
