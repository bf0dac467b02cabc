"""A tour on the shipped model: fresh clips in unheard voices, accuracy, ONNX export, parity, the runtime, latency.

The README's main job. `framestamp synth` makes word, speaker and sound-event clips with exact labels
in two voices the shipped model (omni-tiny trained on synthetic data, framestamp/models/) never heard;
the model answers every question with one forward pass and ordered decoding and is scored per
task; then it is exported to ONNX, checked against PyTorch, the torch-free runtime locates the
words of one clip, printed next to the true times, and one latency row compares the frame-level answer
with generating the timestamps as text.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from framestamp.runtime.errors import needs_toolkit

SHIPPED_MODEL = Path(__file__).parent / "models" / "omni-tiny-synth"
HELD_OUT_VOICES = "en-029,en-us-nyc"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL, help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, help="where to write the data and the artifact (default: a temporary folder)")
    parser.add_argument("--clips", type=int, default=12, help="clips per task to generate (default 12)")
    parser.add_argument("--seed", type=int, default=7)


def step(number: int, text: str) -> None:
    print(f"\n{number}. {text}", flush=True)


@needs_toolkit("demo")
def run(args: argparse.Namespace) -> int:
    from framestamp.cli import main as framestamp_main
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.errors import InputError
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import evaluate

    if not (args.model / "framestamp.json").is_file():
        raise InputError(f"{args.model}: no checkpoint here; give one with --model")
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        data, artifact = out / "demo-data", out / "demo-onnx"
        step(1, f"framestamp synth {data} --count {args.clips} --seed {args.seed} --voices {HELD_OUT_VOICES}")
        if framestamp_main(["synth", str(data), "--count", str(args.clips), "--seed", str(args.seed),
                            "--voices", HELD_OUT_VOICES]):
            return 1
        examples = read_manifest(data / "manifest.jsonl")
        model, description = load_checkpoint(args.model)
        features = AudioCache(data, FeatureSettings.from_json(description["features"]))
        training = description["training"]
        made = (f"the average of {len(training['averaged_from'])} checkpoints" if "averaged_from" in training
                else f"{training.get('steps', '?')} steps")
        step(2, f"framestamp evaluate {args.model.name} (PyTorch): {description['backbone']['num_parameters'] / 1e6:.1f}M "
                f"parameters, {description['head']['objective']} head, {made}; {len(examples)} questions, one forward "
                "pass per batch")
        print(evaluate(model, examples, features, batch_size=8).table())

        step(3, f"framestamp export {args.model.name} {artifact}")
        if framestamp_main(["export", str(args.model), str(artifact)]):
            return 1
        step(4, f"framestamp parity {args.model.name} {artifact} (PyTorch vs ONNX Runtime, padded batches)")
        if framestamp_main(["parity", str(args.model), str(artifact), "--manifest", str(data / "manifest.jsonl"),
                            "--batch-sizes", "1,4", "--seconds", "0.5,10"]):
            return 1
        transcript = next((e for e in examples if e.task == "transcript"), None)
        if transcript is not None:
            step(5, "the torch-free runtime: Locator(artifact).transcript(clip, text)")
            show_transcript(artifact, data, transcript)
        step(6, "latency, one question asking for 30 word starts (full grid: framestamp bench latency)")
        show_latency(model, artifact, out)
    return 0


def show_latency(model, artifact: Path, out: Path) -> None:
    """One row of the latency benchmark: frame-level vs generating the timestamps as text."""
    from framestamp.benchmarks.latency import Timer, benchmark_clips, truncated

    examples, features = benchmark_clips(out / "latency", 30)
    measured = Timer(model.eval(), "cpu", repeats=3, artifacts=[artifact], threads=None, compile=False).measure(
        [truncated(examples[0], 30)], features)
    seconds = {name: stats["median"] * 1000 for name, stats in measured["seconds"].items()}
    frame = min(value for name, value in seconds.items() if name.startswith("frame"))
    for name, value in seconds.items():
        print(f"   {name:<30} {value:8.1f} ms" + ("" if name.startswith("frame") else f"   {value / frame:5.1f}x slower"))
    print(f"   ({measured['answer_tokens']} answer tokens generated; the frame-level answer is one forward pass;"
          " by words, the runtime's default for a transcript, one pass of a question per word)")


def show_transcript(artifact: Path, data: Path, example) -> None:
    """One clip's words located by the runtime, next to the true starts."""
    from framestamp.runtime import Locator

    result = Locator(artifact).transcript(str(data / example.audio), example.prompt["transcript"])
    print(f"   {example.audio}")
    print("   word            true (s)   located (s)   error (ms)")
    for word, true, found in zip(result.words, example.times, result.times):
        print(f"   {word:<15} {true:8.3f}   {found:9.3f}   {abs(found - true) * 1000:8.0f}")
