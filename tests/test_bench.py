"""The latency benchmark times honest work: its autoregressive paths generate the same greedy tokens,
its frame-level paths decode the same timestamps, and generation is forced to the answer's length."""

import json

import numpy as np
import pytest
import torch

from framestamp.benchmarks.latency import Timer, benchmark_clips, truncated
from framestamp.training.batches import collate
from framestamp.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_export):
    folder = tmp_path_factory.mktemp("bench")
    checkpoint, artifact = tiny_export("omni-tiny")
    model, _ = load_checkpoint(checkpoint)
    examples, features = benchmark_clips(folder, 8)
    timer = Timer(model.eval(), "cpu", repeats=1, artifacts=[artifact], threads=1, compile=False)
    return timer, [truncated(e, 8) for e in examples[:3]], features


def test_autoregressive_paths_generate_the_same_tokens(setup):
    timer, examples, features = setup
    model = timer.model
    batch = collate(examples, features, model.prompt_ids, model.pad_id)
    dynamic = timer.generate(batch, 12, static=False)
    assert dynamic.shape == (3, 12)  # forced: no early stop at the end token
    assert torch.equal(timer.generate(batch, 12, static=True), dynamic)
    assert torch.equal(timer.lean_loop(batch, 12), dynamic)
    # Left padding changes nothing: each row alone generates the same.
    for row, example in enumerate(examples):
        alone = collate([example], features, model.prompt_ids, model.pad_id)
        assert torch.equal(timer.lean_loop(alone, 12)[0], dynamic[row])


def test_every_method_is_timed_and_frame_methods_agree(setup):
    timer, examples, features = setup
    measured = timer.measure(examples, features)
    assert set(measured["seconds"]) == {"frame pytorch", "frame onnxruntime fp32", "autoregressive generate",
                                        "autoregressive static cache", "autoregressive lean loop"}
    assert measured["frame_methods_max_difference_ms"] < 1.0  # ONNX Runtime decodes the frames PyTorch decodes
    assert measured["answer_tokens"] > 8  # eight timestamps take more than one token each
    assert all(s["min"] <= s["median"] <= s["max"] for s in measured["seconds"].values())


def test_one_transcript_is_also_timed_by_its_words_as_evaluate_answers_it(setup):
    from framestamp.benchmarks.latency import BY_WORDS
    from framestamp.training.evaluate import answer_examples

    timer, examples, features = setup
    by_words = timer._by_words(examples[0], features)()[0]
    expected, _ = answer_examples(timer.model, examples[:1], features, progress=False)[0]
    np.testing.assert_allclose(by_words, expected, atol=1e-6)
    assert BY_WORDS in timer.measure(examples[:1], features)["seconds"]
    assert BY_WORDS not in timer.measure(examples[:2], features)["seconds"]  # rows grow with words: batches of one only


def test_quick_run_on_the_shipped_model_writes_its_report(tmp_path):
    """What a new user runs first: no --model, so the shipped checkpoint and its shipped export are timed."""
    import json

    from framestamp.benchmarks.latency import QUICK_BUCKETS
    from framestamp.cli import main

    threads = torch.get_num_threads()
    try:
        assert main(["bench", "latency", "--quick", "--repeats", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    finally:
        # --threads sets torch's process-wide count; later tests compare in-process training with
        # subprocesses bit for bit, and a different thread count changes the order of float sums.
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["model"] == "the shipped omni-tiny-synth"
    assert [(row["bucket"], row["batch_size"]) for row in report["rows"]] == [(label, 1) for label, _ in QUICK_BUCKETS]
    for row in report["rows"]:
        assert "frame onnxruntime fp32" in row["seconds"]  # the shipped export, timed as it ships
        assert row["frame_methods_max_difference_ms"] < 1.0  # and it answers as the checkpoint in PyTorch
    assert (tmp_path / "latency.md").read_text().count("\n| ") == len(QUICK_BUCKETS) + 1  # header + one line per row
    assert (tmp_path / "latency.png").stat().st_size > 0


def test_buckets_run_in_the_order_asked_and_unknown_ones_are_refused():
    from framestamp.benchmarks.latency import BUCKETS, chosen_buckets
    from framestamp.runtime.errors import InputError

    assert chosen_buckets(None) == BUCKETS
    assert chosen_buckets("26+,1-5") == [("26+", 30), ("1-5", 3)]  # most wanted first: a deadline cuts the tail
    with pytest.raises(InputError, match="30-40"):
        chosen_buckets("1-5,30-40")


def test_report_shows_real_time_factor_and_peak_memory_when_measured():
    from framestamp.benchmarks.latency import markdown

    seconds = {"frame pytorch": 0.05, "autoregressive generate": 2.0, "autoregressive static cache": 1.0,
               "autoregressive lean loop": 0.5}
    rows = [{"bucket": bucket, "timestamps": count, "batch_size": 16, "answer_tokens": 9 * count,
             "audio_seconds": 272.0, "peak_gpu_memory_bytes": 9 * 2**30, "frame_methods_max_difference_ms": 0.0,
             "seconds": {m: {"median": s, "min": s, "max": s} for m, s in seconds.items()}}
            for bucket, count in (("26+", 30), ("1-5", 3))]  # in the order they ran
    report = {"command": "framestamp bench latency --buckets 26+,1-5", "device": "GPU", "model": "m", "parameters": 3e9,
              "precision": "bf16", "repeats": 2, "versions": {}, "optimized_autoregressive": "static KV cache", "rows": rows}
    table = [line for line in markdown(report).splitlines() if line.startswith("| ")]
    assert table[0].endswith("| real-time factor (frame) | peak GPU memory |")
    assert table[1].startswith("| 1-5 |") and table[2].startswith("| 26+ |")  # fewest timestamps first
    assert table[2].endswith("| 40.0x | 10.0x | 5440x | 9.0 GiB |")


def test_shared_clips_benchmark_times_both_passes_and_they_answer_alike(tmp_path, capsys):
    from framestamp.benchmarks import shared_clips
    from framestamp.cli import main

    assert main(["synth", str(tmp_path / "clips"), "--tasks", "words", "--count", "2", "--seed", "5"]) == 0
    assert shared_clips.main([str(tmp_path / "clips" / "manifest.jsonl"), "--repeats", "1",
                              "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "shared-clips.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| the 4th") or " word questions about" in line]
    assert len(rows) == 2 and all(row.endswith("| yes |") for row in rows)


def test_transcripts_benchmark_counts_stacked_words_and_reports_both_modes(tmp_path):
    from framestamp.benchmarks import transcripts
    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest

    # frames 5, 5, 9, 9: the second word shares the first's frame (true starts 300 ms apart: stacked), the
    # fourth the third's (true starts 20 ms apart: a frame holds them both, not stacked)
    assert transcripts.stacked([0.21, 0.22, 0.37, 0.39], [0.2, 0.5, 0.9, 0.92], 0.04) == 1

    assert main(["synth", str(tmp_path / "clips"), "--tasks", "words", "--count", "2", "--seed", "5"]) == 0
    manifest = tmp_path / "clips" / "manifest.jsonl"
    assert main(["bench", "transcripts", str(manifest), "--limit", "2", "--word-limit", "5",
                 "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "transcripts.json").read_text())
    words = sum(len(e.times) for e in read_manifest(manifest) if e.task == "transcript")
    assert set(record) == {f"{manifest}:words", f"{manifest}:question", f"{manifest}:word questions"}
    assert all(record[f"{manifest}:{mode}"]["words"] == words for mode in ("words", "question"))
    assert all(0 <= record[f"{manifest}:{mode}"]["acc@40ms"] <= 1 for mode in ("words", "question"))
    assert record[f"{manifest}:word questions"]["questions"] == 5
    assert "| words |" in (tmp_path / "out" / "transcripts.md").read_text()


def test_confidence_report_counts_warned_answers_among_right_and_wrong(tmp_path, monkeypatch):
    """The calibration report's warned counts, on a stand-in Locator whose answers and warnings are fixed here."""
    from types import SimpleNamespace

    import framestamp.runtime
    from framestamp.benchmarks import confidence
    from framestamp.data.manifest import Example, write_manifest

    truth = {"a": [1.0], "b": [2.0], "c": [3.0], "t": [0.5, 1.5]}
    answers = {"a": ([1.01], [0.9], ()), "b": ([2.5], [0.3], ("the word 'b' is probably not in the audio",)),
               "c": ([3.2], [0.85], ()), "t": ([0.5, 1.9], [0.95, 0.4], ("not trained on 'x'",))}
    examples = [Example(id=key, task="transcript" if key == "t" else "word",
                        prompt={"transcript": "x y"} if key == "t" else {"word": key, "occurrence": 1},
                        times=tuple(times), duration=4.0, audio=f"{key}.wav") for key, times in truth.items()]
    write_manifest(tmp_path / "m.jsonl", examples)

    class StandIn:
        def __init__(self, *args, **kwargs):
            pass

        def run(self, queries):
            keys = [q.fields.get("word") or "t" for q in queries]
            return [SimpleNamespace(times=answers[k][0], confidence=answers[k][1], warnings=answers[k][2]) for k in keys]

    monkeypatch.setattr(framestamp.runtime, "Locator", StandIn)
    tasks = confidence.measure(tmp_path / "m.jsonl", tmp_path, None)["tasks"]
    # words: a right and unwarned, b wrong and warned, c wrong and unwarned
    assert (tasks["word"]["wrong_warned"], tasks["word"]["wrong_times"], tasks["word"]["right_warned"],
            tasks["word"]["right_times"]) == (1, 2, 0, 1)
    # the transcript's warning covers both its times: one right, one wrong
    assert (tasks["transcript"]["wrong_warned"], tasks["transcript"]["right_warned"]) == (1, 1)
    assert (tasks["all"]["wrong_warned"], tasks["all"]["wrong_times"]) == (2, 3)
    assert "Warned (the question carries a warning): 1 of 2 wrong times, 0 of 1 right ones." in \
        confidence.markdown({"manifest": "m", "artifact": "x", "questions": 4, "tasks": tasks})
