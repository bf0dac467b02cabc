"""The training loop on a toy regression: it learns, accumulation equals a bigger batch, the schedule
has its closed form, checkpoints are complete and rotated, and a resumed run (after an exception
or a real SIGKILL mid-save) is bit-identical to an uninterrupted one."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from framestamp.runtime.errors import InputError
from framestamp.training.trainer import (
    InMemoryBatches,
    TrainConfig,
    TrainingDiverged,
    checkpoint_folders,
    decay_groups,
    latest_checkpoint,
    learning_rate_at,
    read_log,
    save_weights,
)
from toy_training import ToyRegression, toy_config, toy_model, toy_trainer

TOY_SCRIPT = Path(__file__).with_name("toy_training.py")


def train_losses(output_dir):
    return [(record["step"], record["loss"]) for record in read_log(output_dir, "train")]


def final_weights(output_dir):
    return load_file(str(latest_checkpoint(output_dir) / "model.safetensors"))


def assert_same_weights(left, right):
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name


def leftovers(output_dir):
    return sorted(path.name for path in Path(output_dir).iterdir() if path.name.startswith("."))


def unfinished_saves(output_dir):
    """Temporary folders of checkpoints not (yet) complete: ".checkpoint-8.abc.tmp" without checkpoint-8."""
    complete = {folder.name for folder in checkpoint_folders(output_dir)}
    return [name for name in leftovers(output_dir) if name.split(".")[1] not in complete]


def test_loss_decreases(tmp_path):
    toy_trainer(tmp_path, toy_config(max_steps=60, save_every=0, warmup_steps=5)).train()
    losses = [loss for _, loss in train_losses(tmp_path)]
    assert len(losses) == 60
    assert sum(losses[-10:]) < 0.25 * sum(losses[:10])


def test_accumulating_two_batches_of_b_equals_one_batch_of_2b(tmp_path):
    # No dropout: the two runs draw different numbers of random masks.
    accumulated = toy_model(dropout=0.0)
    toy_trainer(tmp_path / "accumulated", toy_config(max_steps=3, batch_size=4, grad_accumulation=2),
                model=accumulated).train()
    whole = toy_model(dropout=0.0)
    toy_trainer(tmp_path / "whole", toy_config(max_steps=3, batch_size=8), model=whole).train()
    for (name, left), right in zip(accumulated.named_parameters(), whole.parameters()):
        torch.testing.assert_close(left, right, rtol=1e-5, atol=1e-6, msg=name)
    for (_, left), (_, right) in zip(train_losses(tmp_path / "accumulated"), train_losses(tmp_path / "whole")):
        assert left == pytest.approx(right, rel=1e-5)


def test_schedule_warms_up_linearly_then_decays_to_the_minimum(tmp_path):
    cosine = TrainConfig(learning_rate=1.0, min_learning_rate=0.1, warmup_steps=4, max_steps=12)
    linear = TrainConfig(learning_rate=1.0, min_learning_rate=0.1, warmup_steps=4, max_steps=12, decay="linear")
    for config in (cosine, linear):
        assert [learning_rate_at(step, config) for step in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
        assert learning_rate_at(8, config) == pytest.approx(0.55)  # halfway through the decay
        assert learning_rate_at(12, config) == pytest.approx(0.1)
        assert learning_rate_at(50, config) == pytest.approx(0.1)
    assert learning_rate_at(6, cosine) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert learning_rate_at(6, linear) == pytest.approx(0.1 + 0.9 * 0.75)
    # The optimizer really stepped with those rates.
    config = toy_config(max_steps=10, warmup_steps=3, save_every=0)
    toy_trainer(tmp_path, config).train()
    assert [record["lr"] for record in read_log(tmp_path, "train")] == [learning_rate_at(s, config) for s in range(10)]


def test_biases_and_norm_scales_are_not_decayed():
    model = ToyRegression()
    decayed, not_decayed = decay_groups(model, weight_decay=0.01)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert sorted(names[id(p)] for p in decayed["params"]) == ["hidden.weight", "output.weight"]
    assert sorted(names[id(p)] for p in not_decayed["params"]) == ["hidden.bias", "norm.bias", "norm.weight", "output.bias"]
    assert (decayed["weight_decay"], not_decayed["weight_decay"]) == (0.01, 0.0)


def test_checkpoint_folders_are_complete_rotated_and_describe_themselves(tmp_path):
    saved_models = []

    def save_model(model, folder):
        # Like the lead's format: a config JSON beside the weights.
        saved_models.append(model)
        (folder / "config.json").write_text("{}")
        save_weights(model, folder)

    def eval_fn(model):
        assert not model.training
        return {"loss": float(model.training_loss({"x": torch.ones(2, 4), "y": torch.zeros(2)})[0])}

    model = toy_model()
    config = toy_config(max_steps=12, save_every=5, keep_checkpoints=2, eval_every=4, best_metric="loss")
    toy_trainer(tmp_path, config, model=model, save_model=save_model, eval_fn=eval_fn).train()

    assert [folder.name for folder in checkpoint_folders(tmp_path)] == ["checkpoint-10", "checkpoint-12"]
    assert sorted(path.name for path in (tmp_path / "checkpoint-12").iterdir()) == [
        "config.json", "model.safetensors", "trainer_state.json", "trainer_state.pt"]
    assert leftovers(tmp_path) == []
    assert all(saved is model for saved in saved_models)
    state = json.loads((tmp_path / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["step"] == 12 and state["world_size"] == 1
    assert TrainConfig.from_dict(state["config"]) == config
    tensors = torch.load(tmp_path / "checkpoint-12" / "trainer_state.pt", weights_only=True)
    assert set(tensors) == {"optimizer", "ranks"}
    assert set(tensors["ranks"][0]["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert tensors["ranks"][0]["batches"] == {"epoch": 1, "position": 4}  # 12 batches, 8 a pass

    evaluations = read_log(tmp_path, "eval")
    assert [record["step"] for record in evaluations] == [4, 8, 12]
    best = min(evaluations, key=lambda record: record["loss"])
    assert state["best"] == {"metric": "loss", "value": best["loss"], "step": best["step"]}
    assert json.loads((tmp_path / "best" / "eval_metrics.json").read_text())["step"] == best["step"]
    assert [record["step"] for record in read_log(tmp_path, "save")] == [5, 10, 12]


class Interrupted(Exception):
    pass


class CrashingRegression(ToyRegression):
    """Raises on its n-th training batch, as a crash between checkpoints would."""

    def __init__(self, crash_at_call: int):
        super().__init__()
        self.calls, self.crash_at_call = 0, crash_at_call

    def training_loss(self, batch):
        self.calls += 1
        if self.calls == self.crash_at_call:
            raise Interrupted
        return super().training_loss(batch)


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    config = toy_config(max_steps=12, save_every=5, grad_accumulation=2, batch_size=4)
    toy_trainer(tmp_path / "uninterrupted", config).train()

    crashing = CrashingRegression(crash_at_call=2 * 8 + 1)  # during step 9: checkpoint-5 is the newest
    crashing.load_state_dict(toy_model().state_dict())
    with pytest.raises(Interrupted):
        toy_trainer(tmp_path / "resumed", config, model=crashing).train()
    # What a kill during the next save would leave behind.
    unfinished = tmp_path / "resumed" / ".checkpoint-10.x1y2.tmp" / "checkpoint-10"
    unfinished.mkdir(parents=True)
    (unfinished / "model.safetensors").write_bytes(b"half")

    resumed = toy_trainer(tmp_path / "resumed", config, model=toy_model(seed=99))  # other initial weights
    assert resumed.step == 5
    assert leftovers(tmp_path / "resumed") == []
    resumed.train()

    assert train_losses(tmp_path / "resumed") == train_losses(tmp_path / "uninterrupted")
    assert [step for step, _ in train_losses(tmp_path / "resumed")] == list(range(1, 13))
    assert_same_weights(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "uninterrupted"))


def test_a_finished_run_is_not_trained_again_and_fresh_starts_refuse_to_overwrite(tmp_path):
    toy_trainer(tmp_path, toy_config(max_steps=4)).train()
    again = toy_trainer(tmp_path, toy_config(max_steps=4))
    assert again.step == 4
    again.train()
    assert len(read_log(tmp_path, "train")) == 4
    with pytest.raises(InputError, match="already holds checkpoint-4"):
        toy_trainer(tmp_path, toy_config(max_steps=4), resume=False)


def test_sigkill_mid_save_resumes_from_the_last_complete_checkpoint(tmp_path):
    killed = tmp_path / "killed"
    command = [sys.executable, str(TOY_SCRIPT), str(killed), "--max-steps", "16", "--save-every", "4",
               "--slow-save", "0.3"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill once one checkpoint is complete and a later one is half-written.
    deadline = time.monotonic() + 20
    while not (checkpoint_folders(killed) and unfinished_saves(killed)):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the toy run wrote no checkpoint in 20 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    completed_step = int(latest_checkpoint(killed).name.split("-")[1])
    assert completed_step < 16 and unfinished_saves(killed)

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"(step {completed_step} of 16)" in rerun.stderr
    assert [record["step"] for record in read_log(killed, "resume")] == [completed_step]
    assert [step for step, _ in train_losses(killed)] == list(range(1, 17))
    assert leftovers(killed) == []

    uninterrupted = tmp_path / "uninterrupted"
    toy_trainer(uninterrupted, toy_config(max_steps=16, save_every=4)).train()
    assert train_losses(killed) == train_losses(uninterrupted)
    assert_same_weights(final_weights(killed), final_weights(uninterrupted))


def test_torchrun_single_process_trains_like_a_plain_run(tmp_path):
    # World size 1 only: DDP wrapping, gloo and the rank-0 checkpoint path, not real multi-process sync.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               str(TOY_SCRIPT), str(tmp_path / "torchrun"), "--max-steps", "6", "--save-every", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads((latest_checkpoint(tmp_path / "torchrun") / "trainer_state.json").read_text())["world_size"] == 1
    toy_trainer(tmp_path / "plain", toy_config(max_steps=6, save_every=3)).train()
    assert train_losses(tmp_path / "torchrun") == train_losses(tmp_path / "plain")
    assert_same_weights(final_weights(tmp_path / "torchrun"), final_weights(tmp_path / "plain"))


def test_config_round_trips_through_json_and_errors_name_the_fix(tmp_path):
    config = TrainConfig(learning_rate=3e-4, betas=(0.9, 0.95), precision="bf16", best_metric="acc_40ms")
    config.to_json(tmp_path / "train.json")
    assert TrainConfig.from_json(tmp_path / "train.json") == config
    with pytest.raises(InputError, match="precision must be one of fp32, bf16, got 'fp16'"):
        TrainConfig(precision="fp16")
    with pytest.raises(InputError, match=r"warmup_steps \(50\) must not exceed max_steps \(10\)"):
        TrainConfig(warmup_steps=50, max_steps=10)
    (tmp_path / "typo.json").write_text('{"learning_rte": 0.1}')
    with pytest.raises(InputError, match="typo.json: unknown training config keys \\['learning_rte'\\]"):
        TrainConfig.from_json(tmp_path / "typo.json")
    with pytest.raises(InputError, match="max_steps must be an integer, got '100'"):
        TrainConfig.from_dict({"max_steps": "100"})
    with pytest.raises(InputError, match="cannot fill one batch of 8"):
        InMemoryBatches(list(range(5)), batch_size=8)


def test_bf16_on_cpu_says_it_trains_in_fp32(tmp_path):
    messages = []
    trainer = toy_trainer(tmp_path, toy_config(precision="bf16", max_steps=2), log=messages.append)
    assert not trainer.use_bf16
    assert any("on CPU this run trains in fp32" in message for message in messages)


def test_in_memory_batches_resume_mid_pass_and_shard_by_rank():
    source = InMemoryBatches(list(range(10)), batch_size=2, seed=3)
    stream = iter(source)
    seen = [next(stream).tolist() for _ in range(2)]
    restored = InMemoryBatches(list(range(10)), batch_size=2, seed=3)
    restored.load_state_dict(source.state_dict())
    rest = [batch.tolist() for batch in restored]
    assert rest == [batch.tolist() for batch in stream]
    first_pass = sum(seen + rest, [])
    assert sorted(first_pass) == list(range(10))
    second_pass = sum((batch.tolist() for batch in restored), [])
    assert sorted(second_pass) == list(range(10)) and second_pass != first_pass
    shards = [list(InMemoryBatches(list(range(10)), batch_size=2, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 2  # 5 batches: the odd one is dropped so ranks stay in step
    assert len({int(x) for shard in shards for batch in shard for x in batch}) == 8


class ExplodingRegression(ToyRegression):
    def training_loss(self, batch):
        loss, metrics = super().training_loss(batch)
        return loss * float("nan"), metrics


def test_a_diverging_loss_stops_training_with_advice(tmp_path):
    with pytest.raises(TrainingDiverged, match="step 1: loss nan.*Lower learning_rate"):
        toy_trainer(tmp_path, toy_config(max_steps=2), model=ExplodingRegression()).train()
    assert checkpoint_folders(tmp_path) == []
    with pytest.raises(InputError, match="Linear has no training_loss"):
        toy_trainer(tmp_path, toy_config(), model=torch.nn.Linear(4, 1))
