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
