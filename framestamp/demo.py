"""Generate a little synthetic audio in voices the shipped model never heard, and time it.

The README's main job: `framestamp synth` makes word, speaker and sound-event clips with exact
labels; the shipped model (omni-tiny trained on synthetic data, framestamp/models/) answers every
question with one forward pass and posterior-mode decoding; the table scores it per task.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

SHIPPED_MODEL = Path(__file__).parent / "models" / "omni-tiny-synth"
HELD_OUT_VOICES = "en-029,en-us-nyc"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL, help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, help="where to write the generated data (default: a temporary folder)")
    parser.add_argument("--clips", type=int, default=12, help="clips per task to generate (default 12)")
    parser.add_argument("--seed", type=int, default=7)


def show_transcript(model, example, features) -> None:
    """One clip's words: true start next to the decoded one."""
    from framestamp.training.batches import collate
    from framestamp.training.evaluate import predict

    batch = collate([example], features, model.prompt_ids, model.pad_id)
    decoded = predict(model, batch, "poisson")[0]
    print(f"\n   {example.id}")
    print("   word            true (s)   decoded (s)")
    for word, true, found in list(zip(example.prompt["transcript"].split(), example.times, decoded))[:10]:
        print(f"   {word:<15} {true:8.3f}   {found:8.3f}")


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
        out = args.out or Path(scratch) / "demo-data"
        print(f"1. framestamp synth {out} --count {args.clips} --seed {args.seed} --voices {HELD_OUT_VOICES}")
        status = framestamp_main(["synth", str(out), "--count", str(args.clips), "--seed", str(args.seed),
                                  "--voices", HELD_OUT_VOICES])
        if status:
            return status
        examples = read_manifest(out / "manifest.jsonl")
        model, description = load_checkpoint(args.model)
        features = AudioCache(out, FeatureSettings.from_json(description["features"]))
        print(f"2. {args.model.name}: {description['backbone']['num_parameters'] / 1e6:.1f}M parameters, "
              f"{description['head']['objective']} head, trained {description['training'].get('steps', '?')} steps")
        transcripts = [e for e in examples if e.task == "transcript"]
        if transcripts:
            show_transcript(model, transcripts[0], features)
        print(f"\n3. every question of the {len(examples)} ({args.clips} clips per task), one forward pass each batch:")
        print(evaluate(model, examples, features, batch_size=8).table())
    return 0
