"""bench peers: pocketsphinx beside framestamp on the same questions, scored the same way."""

import json

import numpy as np
import pytest

from framestamp.benchmarks import peers
from framestamp.data import espeak
from framestamp.data.manifest import Example
from framestamp.runtime.metrics import timestamp_scores


def question(id, task, prompt, times, audio="a.flac", engine=None):
    source = {"dataset": "synth_words"} if engine is None else {"engine": engine}
    return Example(id=id, task=task, prompt=prompt, times=tuple(times), duration=5.0, audio=audio, source=source)


def test_kth_start_counts_occurrences_case_blind_and_misses_absent_ones():
    words, starts = ["the", "dog", "The", "cat"], [0.1, 0.4, 0.9, 1.3]
    assert peers.kth_start(words, starts, "the", 2) == 0.9
    assert peers.kth_start(words, starts, "CAT", 1) == 1.3
    assert peers.kth_start(words, starts, "the", 3) is None
    assert peers.kth_start(words, starts, "cow", 1) is None


def test_table_scores_each_system_on_the_same_questions_per_task_and_engine():
    examples = [question("t1", "transcript", {"transcript": "a b"}, [0.5, 1.0]),
                question("w1", "word", {"word": "a", "occurrence": 1}, [0.5]),
                question("w2", "word", {"word": "b", "occurrence": 1}, [1.0], audio="b.flac", engine="flite")]
    answers = {"framestamp": {"t1": np.array([0.51, 1.2]), "w1": np.array([0.5]), "w2": np.array([3.0])},
               "pocketsphinx": {"t1": np.array([np.nan, np.nan]), "w1": np.array([0.55]), "w2": np.array([1.01])}}
    table = peers.score_table(examples, answers)
    assert set(table) == {"transcript", "word"} and set(table["word"]) == {"espeak-ng", "flite"}
    expected = timestamp_scores([0.51, 1.2], [0.5, 1.0]).as_dict()
    assert table["transcript"]["espeak-ng"]["framestamp"]["acc@40ms"] == expected["acc@40ms"] == 0.5
    assert table["transcript"]["espeak-ng"]["pocketsphinx"]["acc@40ms"] == 0.0  # no answer is a miss
    assert table["word"]["flite"]["pocketsphinx"]["acc@40ms"] == 1.0
    assert table["word"]["espeak-ng"]["pocketsphinx"]["acc@100ms"] == 1.0
    assert [table["transcript"]["espeak-ng"][system]["unanswered"] for system in ("framestamp", "pocketsphinx")] == [0, 1]
    assert table["word"]["espeak-ng"]["pocketsphinx"]["unanswered"] == 0
    assert "| flite | 1 | 1 |" in peers.markdown(table, "cmd")
    transcript_row = [line for line in peers.markdown(table, "cmd").splitlines() if line.startswith("| espeak-ng | 1 | 2 |")]
    assert transcript_row[0].endswith("| 1 |")  # the transcript's clip: pocketsphinx left it unanswered


@pytest.mark.espeak
@pytest.mark.skipif(not espeak.available(), reason="needs libespeak-ng (apt-get install espeak-ng)")
def test_pocketsphinx_aligns_a_spoken_clip_near_its_true_word_starts(tmp_path):
    pytest.importorskip("pocketsphinx", reason="pip install pocketsphinx==5.1.1 (framestamp[peers])")
    from framestamp.data.synth_words import speak_words

    clip = speak_words(3, min_seconds=3, max_seconds=5, voices=("en-us",))
    words = [word.text for word in clip.words]
    starts = peers.PocketsphinxAligner().align(clip.audio, words)
    assert starts is not None and len(starts) == len(words)
    errors = np.abs(np.array(starts) - np.array([word.start for word in clip.words]))
    assert np.mean(errors <= 0.1) >= 0.7  # a working aligner, not a perfect one
    assert not peers.PocketsphinxAligner().knows("zzxqv")


@pytest.mark.slow
@pytest.mark.espeak
@pytest.mark.skipif(not espeak.available(), reason="needs libespeak-ng (apt-get install espeak-ng)")
def test_bench_peers_end_to_end_on_the_shipped_model(tmp_path):
    pytest.importorskip("pocketsphinx", reason="pip install pocketsphinx==5.1.1 (framestamp[peers])")
    from framestamp.cli import main

    assert main(["synth", str(tmp_path / "data"), "--tasks", "words", "--count", "3", "--seed", "5",
                 "--min-seconds", "2", "--max-seconds", "4", "--voices", "en-us"]) == 0
    assert main(["bench", "peers", str(tmp_path / "data" / "manifest.jsonl"), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "peers.json").read_text())
    rows = report["tasks"]["word"]["espeak-ng"]
    assert rows["framestamp"]["questions"] == rows["pocketsphinx"]["questions"] > 0
    assert (tmp_path / "out" / "peers.md").read_text().startswith("# framestamp vs pocketsphinx")
