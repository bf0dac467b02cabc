"""bench recipes: equal-budget curves read back from training logs."""

import json

import pytest

from framestamp.benchmarks import recipes_table
from framestamp.runtime import InputError


def write_log(folder, evals):
    folder.mkdir()
    lines = [{"event": "start", "step": 0}] + [
        {"event": "eval", "step": step, "word/acc@40ms": word, "word/acc@20ms": 0.0, "transcript/acc@40ms": text}
        for step, word, text in evals] + [{"event": "train", "step": 7, "loss": 1.0}]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_curves_and_table_hold_each_runs_evaluations_at_their_steps(tmp_path):
    write_log(tmp_path / "a", [(500, 0.1, 0.5), (1000, 0.25, 0.625)])
    write_log(tmp_path / "b", [(500, 0.2, 0.4)])
    assert recipes_table.curves(tmp_path / "a") == {"word": [(500, 0.1), (1000, 0.25)],
                                                    "transcript": [(500, 0.5), (1000, 0.625)]}
    assert recipes_table.main([f"first={tmp_path / 'a'}", str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "recipes.md").read_text()
    assert "| first | 1000 | 62.5% | 25.0% |" in table and "| b | 500 | 40.0% | 20.0% |" in table
    assert (tmp_path / "out" / "recipes.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="log.jsonl"):
        recipes_table.curves(tmp_path / "missing")


def test_curves_by_training_time_carry_the_clock_across_a_resume(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    lines = [{"event": "start", "step": 0}, {"event": "train", "step": 10, "seconds": 30.0},
             {"event": "eval", "step": 10, "word/acc@40ms": 0.5}, {"event": "train", "step": 20, "seconds": 60.0},
             {"event": "resume", "step": 20},  # a new process: its clock starts at 0 again
             {"event": "train", "step": 30, "seconds": 45.0}, {"event": "eval", "step": 30, "word/acc@40ms": 0.75},
             {"event": "eval", "step": 25, "word/acc@40ms": 0.5},  # between logged steps: 60 s + half of 45
             {"event": "train", "step": 40, "seconds": 90.0}]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert recipes_table.training_seconds(folder) == {10: 30.0, 20: 60.0, 30: 105.0, 40: 150.0}
    out = tmp_path / "out"
    assert recipes_table.main([f"timed={folder}", "--x", "seconds", "--out", str(out)]) == 0
    table = (out / "recipes.md").read_text()
    assert "| run | step | minutes | word |" in table
    assert "| timed | 10 | 0.5 | 50.0% |" in table and "| timed | 30 | 1.8 | 75.0% |" in table
    assert "| timed | 25 | 1.4 | 50.0% |" in table  # (60 + 22.5) s
    write_log(tmp_path / "untimed", [(500, 0.1, 0.5)])  # its one train record has no seconds
    with pytest.raises(InputError, match="--x steps"):
        recipes_table.main([str(tmp_path / "untimed"), "--x", "seconds"])
