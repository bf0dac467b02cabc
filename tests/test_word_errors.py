"""`framestamp bench word-errors` sorts wrong word answers by where they land, and splits accuracy by
position, repetition and offset in the encoder chunk: checked on clips whose answers are built by hand."""

import json

import pytest

from framestamp.benchmarks.word_errors import KINDS, Question, classify, main
from framestamp.runtime import InputError

# clip "a": "the cat saw the dog" (the twice); clip "b": one word late in its 2 s encoder chunk
CLIP_A = [("the", 0.10), ("cat", 0.50), ("saw", 0.90), ("the", 1.30), ("dog", 1.70)]
QUESTIONS = [Question("a", w, t) for w, t in CLIP_A] + [Question("b", "late", 3.90)]


def test_each_wrong_answer_is_named_by_where_it_lands():
    answers = [
        0.12,  # the #1: right (20 ms off)
        0.90,  # cat: on "saw": another word's start
        None,  # saw: no answer: no word's start
        0.10,  # the #2: on the first "the": another occurrence of the word
        2.50,  # dog: nothing there
        3.92,  # late: right
    ]
    result = classify(QUESTIONS, answers)
    assert result["questions"] == 6
    assert result["kinds"] == {KINDS[0]: 2, KINDS[1]: 1, KINDS[2]: 1, KINDS[3]: 2}
    # the clip says "the" twice: both "the" questions fall in group 2, the others in group 1
    assert result["by_times_said"] == {"1": {"count": 4, "acc@40ms": 0.25}, "2": {"count": 2, "acc@40ms": 0.5}}
    assert list(result["by_position"]) == ["1-5"] and result["by_position"]["1-5"]["count"] == 6
    # offsets inside the 2 s chunk: 3.90 s is 1.90 s in
    assert result["by_chunk_offset"]["1.75-2.00 s"] == {"count": 1, "acc@40ms": 1.0}
    assert result["by_chunk_offset"]["1.50-1.75 s"] == {"count": 1, "acc@40ms": 0.0}  # dog at 1.70 s


def test_only_the_scored_questions_count_but_every_question_gives_the_word_starts():
    answers = [None, None, None, 0.10, None, None]
    result = classify(QUESTIONS, answers, scored=[3])
    assert result["questions"] == 1 and result["kinds"][KINDS[1]] == 1  # knows the first "the" from question 0


def test_positions_group_by_fives_in_clip_order():
    words = [Question("c", f"w{i}", 0.3 * i) for i in range(17)]
    result = classify(words, [q.start for q in words])
    assert {k: v["count"] for k, v in result["by_position"].items()} == {"1-5": 5, "6-10": 5, "11-15": 5, "16+": 2}


def test_mismatched_answers_and_missing_manifest_are_refused(tmp_path):
    with pytest.raises(InputError, match="6 questions but 2 answers"):
        classify(QUESTIONS, [0.1, 0.2])
    with pytest.raises(InputError, match="no such manifest"):
        main([str(tmp_path / "missing.jsonl")])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "x", "task": "speaker", "prompt": {"occurrence": 1}, "times": [0.5],
                                    "duration": 2.0, "audio": "x.wav"}) + "\n")
    with pytest.raises(InputError, match="no word questions"):
        main([str(manifest)])
