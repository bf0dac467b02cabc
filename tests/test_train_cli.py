"""`framestamp train` end to end on a tiny manifest: SIGKILL mid-run, rerun, it resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from framestamp.data.manifest import Example, write_manifest
from framestamp.training.checkpoint import load_checkpoint
from framestamp.training.trainer import checkpoint_folders


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    examples = []
    for i in range(12):
        seconds = 0.8 + 0.1 * i
        onset = round(0.2 + 0.04 * i, 3)
        audio = 0.01 * rng.standard_normal(int(16000 * seconds))
        audio[int(onset * 16000):] += 0.3 * np.sin(np.arange(len(audio) - int(onset * 16000)) * 0.2)
        soundfile.write(folder / f"c{i}.wav", audio.astype(np.float32), 16000)
        examples.append(Example(id=f"e{i}", task="event", prompt={"event": "Beep", "occurrence": 1}, times=(onset,),
                                duration=seconds, audio=f"c{i}.wav"))
    write_manifest(folder / "train.jsonl", examples)
    return folder / "train.jsonl"


def train_command(out, manifest, steps):
    return [sys.executable, "-m", "framestamp", "train", str(out), "--train", str(manifest), "--eval", str(manifest),
            "--steps", str(steps), "--warmup", "2", "--save-every", "3", "--eval-every", "100",
            "--batch-size", "2", "--threads", "1"]


def test_sigkill_then_rerun_resumes_from_the_last_checkpoint(tmp_path, manifest):
    out = tmp_path / "run"
    command = train_command(out, manifest, steps=40)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    deadline = time.time() + 120
    while time.time() < deadline and len(checkpoint_folders(out)) < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = int(checkpoint_folders(out)[-1].name.split("-")[1])
    assert 3 <= killed_at < 40, "the run must be killed mid-way"

    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    resumed = [r for r in records if r.get("event") == "resume"]
    assert resumed and resumed[-1]["step"] >= killed_at
    steps = [r["step"] for r in records if r.get("event") == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # each step logged once, none lost
    model, description = load_checkpoint(out / "model")
    assert description["training"]["steps"] == 40
    assert description["training"]["command"].startswith("framestamp train")
