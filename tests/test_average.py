"""Weight averaging of checkpoints: the mean of each weight, checked against the files themselves,
and refusals for checkpoints that cannot be averaged."""

import json

import pytest
import torch
from safetensors.torch import load_file

from framestamp.runtime import InputError
from framestamp.runtime.features import DEFAULT_SETTINGS
from framestamp.training.average import average_checkpoints, main
from framestamp.training.checkpoint import build_model, load_checkpoint, save_checkpoint
from framestamp.training.model import HeadConfig

TRAINING = {"tasks": ["word"], "event_labels": [], "vocabulary": ["budget", "city"], "command": "framestamp train A"}


def saved(folder, seed, head=None, training=TRAINING):
    model = build_model("omni-tiny", head or HeadConfig(lookahead=2), seed=seed)
    return save_checkpoint(model, folder, features=DEFAULT_SETTINGS.to_json(), training=dict(training))


def test_the_average_holds_the_mean_of_every_weight_and_names_its_sources(tmp_path):
    folders = [saved(tmp_path / f"run{seed}", seed) for seed in (1, 2, 3)]
    out = average_checkpoints(tmp_path / "soup", folders)
    for name in ("head.safetensors", "backbone/model.safetensors"):
        files = [load_file(folder / name) for folder in folders]
        averaged = load_file(out / name)
        assert averaged.keys() == files[0].keys()
        moved = 0
        for key, value in averaged.items():
            expected = sum(f[key].double() for f in files) / 3
            torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-6)
            moved += not torch.equal(files[0][key], files[1][key])
        assert moved > 0  # the seeds gave different weights, so the mean is not any one of them
    model, description = load_checkpoint(out)  # loads and runs like any checkpoint
    assert description["training"]["vocabulary"] == TRAINING["vocabulary"]
    assert [entry["checkpoint"] for entry in description["training"]["averaged_from"]] == [str(f) for f in folders]
    assert description["training"]["averaged_from"][0]["command"] == "framestamp train A"
    # Where the weights came from, as the first checkpoint records it (a preset), not that checkpoint's folder.
    assert description["backbone"]["source"] == "omni-tiny"
    # An average of an average names what the inner one averaged, not its first member's command as its own.
    fourth = saved(tmp_path / "run4", 4, training=dict(TRAINING, command="B"))
    again = average_checkpoints(tmp_path / "soup2", [out, fourth])
    outer = load_checkpoint(again)[1]["training"]["averaged_from"]
    assert outer[0] == {"checkpoint": str(out), "averaged_from": description["training"]["averaged_from"]}
    assert outer[1] == {"checkpoint": str(tmp_path / "run4"), "command": "B"}


def test_checkpoints_that_cannot_be_averaged_are_refused(tmp_path, capsys):
    one = saved(tmp_path / "one", 1)
    with pytest.raises(InputError, match="head differs"):
        average_checkpoints(tmp_path / "out", [one, saved(tmp_path / "other-head", 2, HeadConfig(lookahead=1))])
    every = HeadConfig(lookahead=2, count_term=True, occurrences="every")  # same weights' shapes, other meaning
    with pytest.raises(InputError, match="head differs"):
        average_checkpoints(tmp_path / "out", [saved(tmp_path / "counted", 1, HeadConfig(lookahead=2, count_term=True)),
                                               saved(tmp_path / "every", 2, every)])
    other_words = dict(TRAINING, vocabulary=["budget"])
    with pytest.raises(InputError, match="other vocabulary"):
        average_checkpoints(tmp_path / "out", [one, saved(tmp_path / "other-words", 2, training=other_words)])
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints(tmp_path / "out", [one])
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert main([str(tmp_path / "out"), str(one), str(tmp_path / "missing")]) == 2
    assert "not a framestamp checkpoint" in capsys.readouterr().err


def test_a_checkpoint_written_before_a_head_field_existed_averages_with_one_that_has_its_default(tmp_path):
    old, new = saved(tmp_path / "old", 1), saved(tmp_path / "new", 2)
    description = json.loads((old / "framestamp.json").read_text())
    del description["head"]["occurrences"]  # as checkpoints written before heads of every occurrence
    description["backbone"]["source"] = "runs/earlier/model/backbone"  # continued from another run: same shape
    (old / "framestamp.json").write_text(json.dumps(description))
    _, averaged = load_checkpoint(average_checkpoints(tmp_path / "soup", [old, new]))
    assert averaged["head"] == HeadConfig(lookahead=2).to_json()
