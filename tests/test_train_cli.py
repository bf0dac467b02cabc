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


def test_manifest_batches_resume_on_the_next_batch_and_shard_by_rank():
    from framestamp.training.train import ManifestBatches

    examples = [Example(id=f"x{i}", task="speaker", prompt={"occurrence": 1}, times=(0.1,), duration=1.0 + (i % 5),
                        audio="a.wav") for i in range(21)]
    def ids(batch):
        return [e.id for e in batch]

    def take(source, count):
        taken = []
        while len(taken) < count:
            for batch in source:
                taken.append(ids(batch))
                if len(taken) == count:
                    break
        return taken

    straight = ManifestBatches(examples, 4, collate=list, seed=3)
    expected = take(straight, 12)  # 5 batches an epoch: crosses two epoch ends
    for stop in (1, 5, 7):
        first = ManifestBatches(examples, 4, collate=list, seed=3)
        seen = take(first, stop)
        resumed = ManifestBatches(examples, 4, collate=list, seed=3)
        resumed.load_state_dict(first.state_dict())
        assert seen + take(resumed, 12 - stop) == expected
    ranks = [ManifestBatches(examples, 4, collate=list, seed=3, rank=r, world_size=2) for r in (0, 1)]
    epoch = [take(source, 2) for source in ranks]  # 5 batches -> 2 each, the odd one dropped
    assert {e for batch in epoch[0] for e in batch}.isdisjoint({e for batch in epoch[1] for e in batch})


@pytest.fixture()
def torch_threads():
    """In-process `framestamp train --threads 1` sets torch's thread count for the whole test process:
    put it back, so later tests that compare runs bit for bit use the count they started with."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_merge_aware_training_runs_and_records_its_ratios(tmp_path, manifest, capsys, torch_threads):
    from framestamp.cli import main

    out = tmp_path / "merged"
    command = train_command(out, manifest, steps=10)[3:] + ["--merge-train", "0,0.5"]
    assert main(command) == 0
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "train"]
    assert losses and np.isfinite(losses).all()
    _, description = load_checkpoint(out / "model")
    assert description["training"]["merge_train"] == [0.0, 0.5]
    assert main(train_command(tmp_path / "bad", manifest, steps=4)[3:] + ["--merge-train", "0,1.2"]) != 0
    assert "in [0, 1)" in capsys.readouterr().err


def test_augmented_training_perturbs_the_batches_and_is_recorded(tmp_path, manifest, torch_threads):
    from framestamp.cli import main

    def first_losses(out, extra):
        assert main(train_command(out, manifest, steps=3)[3:] + extra) == 0
        return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
                if r.get("event") == "train"]

    plain, augmented = first_losses(tmp_path / "plain", []), first_losses(tmp_path / "augmented", ["--augment"])
    assert np.isfinite(augmented).all() and plain[0] != augmented[0]  # same seed and weights: only the mel differs
    assert first_losses(tmp_path / "again", ["--augment"]) == augmented  # the draw is the same every run
    _, description = load_checkpoint(tmp_path / "augmented" / "model")
    assert description["training"]["augment"] is True


def test_inside_speakers_needs_the_inside_weight(tmp_path, manifest, capsys, torch_threads):
    from framestamp.cli import main

    assert main(train_command(tmp_path / "run", manifest, steps=2)[3:] + ["--inside-speakers"]) != 0
    assert "--inside-speakers labels the inside channel" in capsys.readouterr().err


def test_questions_per_clip_train_together_and_are_recorded(tmp_path, manifest, capsys, torch_threads):
    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest

    # Two questions about every clip (the first occurrence asked twice under two ids).
    examples = read_manifest(manifest)
    twice = [Example(id=f"{e.id}/{n}", task=e.task, prompt=e.prompt, times=e.times, duration=e.duration,
                     audio=str(manifest.parent / e.audio)) for e in examples for n in range(2)]
    write_manifest(tmp_path / "twice.jsonl", twice)
    out = tmp_path / "grouped"
    assert main(train_command(out, tmp_path / "twice.jsonl", steps=6)[3:] + ["--questions-per-clip", "2"]) == 0
    trained = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "train"]
    assert trained[-1]["step"] == 6 and np.isfinite([r["loss"] for r in trained]).all()
    _, description = load_checkpoint(out / "model")
    assert description["training"]["questions_per_clip"] == 2
    assert main(train_command(tmp_path / "bad", manifest, steps=2)[3:] + ["--questions-per-clip", "3"]) != 0
    assert "--questions-per-clip must be between 1 and --batch-size (2)" in capsys.readouterr().err


def test_the_count_term_from_a_checkpoint_without_it_starts_at_the_event_counts(tmp_path, manifest, capsys,
                                                                               torch_threads):
    """Eq. 5 leaves the scale free; starting the count term (and a head of every occurrence) from such a
    checkpoint first shifts the onset channel so that Lambda(T) is the number of events (median over the
    questions), computed here again through single-example passes of the saved model."""
    import torch

    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest
    from framestamp.training.batches import AudioCache, collate

    assert main(train_command(tmp_path / "plain", manifest, steps=2)[3:]) == 0
    out = tmp_path / "counted"
    started = ["--init", str(tmp_path / "plain" / "model"), "--count-term", "--occurrences", "every", "--lr", "1e-12",
               "--warmup", "1"]
    assert main(train_command(out, manifest, steps=1)[3:] + started) == 0
    assert "onset log-intensity shifted by" in capsys.readouterr().out
    model, description = load_checkpoint(out / "model")
    assert description["head"]["occurrences"] == "every" and description["head"]["count_term"] is True
    gaps = []
    with torch.no_grad():
        for example in read_manifest(manifest):
            output = model.eval().run_batch(collate([example], AudioCache(manifest.parent), model.prompt_ids,
                                                    model.pad_id))
            gaps.append(float(torch.logsumexp(output.scores[0, output.frame_mask[0], 0], 0)) - np.log(len(example.times)))
    assert abs(np.median(gaps)) < 1e-3
    assert main(train_command(tmp_path / "bad", manifest, steps=1)[3:] + ["--occurrences", "every"]) != 0
    assert "needs a Poisson head trained with the count term" in capsys.readouterr().err


def test_questions_past_the_count_need_the_count_term_then_train_and_are_recorded(tmp_path, manifest, capsys,
                                                                                  torch_threads):
    from framestamp.cli import main

    assert main(train_command(tmp_path / "bad", manifest, steps=2)[3:] + ["--absent", "0.5"]) != 0
    assert "only the count term scores: add --count-term" in capsys.readouterr().err
    out = tmp_path / "absent"
    assert main(train_command(out, manifest, steps=2)[3:] + ["--absent", "1.0", "--count-term"]) == 0
    added = int(capsys.readouterr().out.split("--absent 1: ")[1].split()[0])
    assert added > 0
    description = json.loads((out / "model" / "framestamp.json").read_text())
    assert description["training"]["absent"] == 1.0 and description["head"]["count_term"] is True


def test_the_every_aid_and_its_channel_go_together(tmp_path, manifest, capsys, torch_threads):
    from framestamp.cli import main

    assert main(train_command(tmp_path / "run", manifest, steps=2)[3:] + ["--every", "1.0"]) != 0
    assert "the every channel and --every go together" in capsys.readouterr().err
    out = tmp_path / "every"
    assert main(train_command(out, manifest, steps=2)[3:] + ["--channels", "onset,every", "--every", "1.0"]) == 0
    trained = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "train"]
    assert np.isfinite(trained[-1]["every"])


def test_the_spelling_aid_needs_transcript_lines_then_is_logged_and_recorded(tmp_path, manifest, capsys, torch_threads):
    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest

    assert main(train_command(tmp_path / "events", manifest, steps=2)[3:] + ["--spelling", "0.5"]) != 0
    assert "--spelling need transcript lines with word ends" in capsys.readouterr().err
    spelled = manifest.parent / "spelled.jsonl"  # beside the clips: each also read as two words
    write_manifest(spelled, [Example(id=f"t{i}", task="transcript", prompt={"transcript": "beep tone"},
                                     times=(e.times[0], e.times[0] + 0.2), ends=(e.times[0] + 0.2, e.times[0] + 0.4),
                                     duration=e.duration, audio=e.audio) for i, e in enumerate(read_manifest(manifest))])
    out = tmp_path / "spelled"
    assert main(train_command(out, spelled, steps=3)[3:] + ["--spelling", "0.5"]) == 0
    logged = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r.get("event") == "train"]
    assert logged and all(np.isfinite(r["spelling"]) and r["spelling"] > 0 for r in logged)
    _, description = load_checkpoint(out / "model")
    assert description["training"]["aids"]["spelling"] == 0.5


def test_a_bounded_span_and_the_position_shift_train_and_are_recorded(tmp_path, manifest, capsys, torch_threads):
    from framestamp.cli import main

    out = tmp_path / "span"
    assert main(train_command(out, manifest, steps=4)[3:] + ["--span", "0.4", "--position-shift", "60"]) == 0
    model, description = load_checkpoint(out / "model")
    assert model.head_config.span == 10 and description["head"]["span"] == 10  # 0.4 s of 40 ms frames
    assert description["training"]["aids"]["position_shift"] == 1500
    assert main(train_command(tmp_path / "bad", manifest, steps=2)[3:] + ["--span", "0.01"]) != 0
    assert "less than one 40 ms frame" in capsys.readouterr().err


def test_a_fine_tune_keeps_what_its_start_was_asked_about(tmp_path, manifest, torch_threads):
    """Tasks, event labels, words and the longest clip of the --init checkpoint stay in the fine-tune's
    description beside its own manifest's (the runtime reads them; averaging needs runs to agree)."""
    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest
    from framestamp.training.checkpoint import read_description

    examples = read_manifest(manifest)
    words = [Example(id=f"w{i}", task="word", prompt={"word": word, "occurrence": 1}, times=(0.3,), duration=0.9,
                     audio=examples[0].audio) for i, word in enumerate(["harbor", "lantern"])]
    other = manifest.parent / "words.jsonl"
    write_manifest(other, words)
    assert main(train_command(tmp_path / "start", manifest, steps=2)[3:]) == 0
    assert main(train_command(tmp_path / "tuned", other, steps=2)[3:] + ["--init", str(tmp_path / "start" / "model")]) == 0
    start = read_description(tmp_path / "start" / "model")["training"]
    tuned = read_description(tmp_path / "tuned" / "model")["training"]
    assert start["vocabulary"] == [] and tuned["vocabulary"] == ["harbor", "lantern"]
    assert tuned["tasks"] == ["event", "word"] and tuned["event_labels"] == ["Beep"]
    assert tuned["max_seconds"] == max(example.duration for example in examples) > 0.9
