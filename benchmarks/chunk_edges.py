"""Accuracy at the edges of the encoder's 2-second attention chunks: per-frame head vs look-ahead head.

    python -m framestamp.benchmarks.chunk_edges runs/objectives/all-poisson-la0/model \
        runs/objectives/all-poisson-la2/model --manifest runs/data/eval/manifest.jsonl

The Omni audio encoder attends only inside 2-s chunks and the decoder is causal, so the state at an
onset in a chunk's last 0.3 s sees little of the word that follows it. This scores word onsets (word
and transcript questions) by where they fall in their chunk.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CHUNK_SECONDS = 2.0
EDGE_SECONDS = 0.3


def edge_scores(checkpoint: Path, manifest: Path, limit: int) -> dict:
    import torch

    from framestamp.data.manifest import balanced_subset, read_manifest
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache, collate
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import predict

    model, description = load_checkpoint(checkpoint)
    examples = balanced_subset([e for e in read_manifest(manifest) if e.task in ("word", "transcript")], limit)
    features = AudioCache(manifest.parent, FeatureSettings.from_json(description["features"]))
    hits = {"edge": [], "inside": []}
    for start in range(0, len(examples), 8):
        chunk = examples[start:start + 8]
        with torch.no_grad():
            predicted = predict(model.eval(), collate(chunk, features, model.prompt_ids, model.pad_id), "poisson")
        for example, times in zip(chunk, predicted):
            for true, found in zip(example.times, np.sort(times)):
                where = "edge" if true % CHUNK_SECONDS >= CHUNK_SECONDS - EDGE_SECONDS else "inside"
                hits[where].append(abs(found - true) <= 0.04)
    return {where: {"onsets": len(values), "acc@40ms": float(np.mean(values)) if values else None}
            for where, values in hits.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=600, help="questions, half word and half transcript")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    results = {}
    for checkpoint in args.checkpoints:
        results[str(checkpoint)] = edge_scores(checkpoint, args.manifest, args.limit)
        scores = results[str(checkpoint)]
        print(f"{checkpoint}: last {EDGE_SECONDS} s of a chunk {scores['edge']['acc@40ms']:.1%} "
              f"({scores['edge']['onsets']} onsets), elsewhere {scores['inside']['acc@40ms']:.1%} "
              f"({scores['inside']['onsets']})", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
