"""How a head of every occurrence counts: `framestamp bench occurrence-counts MANIFEST --model CHECKPOINT`.

A checkpoint trained with ``--occurrences every`` answers "the k-th occurrence" by counting the events on
one track (``runtime.decoding.kth_of_every``: the joint ordered MAP of round(Lambda(T)) events, the k-th of
them). Per task this measures that answer, the same decoding given the true number of occurrences in the
clip (what a perfect count would give), and how often round(Lambda(T)) is that number, too few or too many:
whether the track or the count is what goes wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError

TOLERANCE = 0.04


def score(rows: dict[str, list[tuple[np.ndarray, int, int, float]]], tolerance: float = TOLERANCE) -> dict:
    """Per task, from (onset track, k, true count in the clip, true start of the k-th) per question."""
    from framestamp.runtime.decoding import heard_occurrences, kth_of_every, ordered_map

    result = {}
    for task, questions in rows.items():
        counted, known, heard = [], [], []
        for track, k, count, start in questions:
            counted.append(abs(kth_of_every(track, k)[0] - start) <= tolerance)
            known.append(abs(ordered_map(track, max(k, min(count, track.size)))[k - 1] - start) <= tolerance)
            heard.append(np.sign(heard_occurrences(track) - count))
        heard = np.array(heard)
        result[task] = {"questions": len(questions), "acc@40ms": float(np.mean(counted)),
                        "acc@40ms given the true count": float(np.mean(known)),
                        "count right": float(np.mean(heard == 0)), "count too low": float(np.mean(heard < 0)),
                        "count too high": float(np.mean(heard > 0))}
    return result


def markdown(result: dict, command: str) -> str:
    lines = ["# How a head of every occurrence counts", "", f"`{command}`", "",
             "| task | questions | acc@40ms | given the true count | count right | too low | too high |",
             "|---|---|---|---|---|---|---|"]
    for task, row in result.items():
        lines.append(f"| {task} | {row['questions']} | {row['acc@40ms']:.1%} | {row['acc@40ms given the true count']:.1%} | "
                     f"{row['count right']:.1%} | {row['count too low']:.1%} | {row['count too high']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from framestamp.benchmarks import write_report
    from framestamp.data.manifest import balanced_subset, read_manifest
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache, EveryOccurrence, occurrence_group
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import every_occurrence_head, question_rows

    parser = argparse.ArgumentParser(prog="framestamp bench occurrence-counts",
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifest", type=Path, help="a manifest whose clips ask about every occurrence of what they ask")
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint trained with --occurrences every")
    parser.add_argument("--limit", type=int, help="score at most N questions, spread evenly over tasks")
    parser.add_argument("--out", type=Path, help="folder for occurrence-counts.md and occurrence-counts.json")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        raise InputError(f"{args.manifest}: no such manifest")
    model, description = load_checkpoint(args.model)
    if not every_occurrence_head(model):
        raise InputError(f"{args.model}: its head marks the asked occurrence alone; this measures heads trained with "
                         "--occurrences every")
    examples = read_manifest(args.manifest)
    every = EveryOccurrence(examples)  # the true occurrences, from every question of each clip
    asked = [example for example in examples if occurrence_group(example) is not None]
    if args.limit:
        asked = balanced_subset(asked, args.limit)
    if not asked:
        raise InputError(f"{args.manifest}: no word, event or speaker questions")
    features = AudioCache(args.manifest.parent, FeatureSettings.from_json(description["features"]))
    tracks = question_rows(model.eval(), asked, features, batch_size=8, device="cpu", progress=True,
                           desc="occurrence questions")
    rows = defaultdict(list)
    for example, track in zip(asked, tracks):
        rows[example.task].append((track[:, 0], int(example.prompt["occurrence"]), len(every(example)[0]),
                                   float(example.times[0])))
    result = score(dict(sorted(rows.items())))
    # `framestamp bench` passes argv; `python -m` leaves it in sys.argv[1:]
    command = "framestamp bench occurrence-counts " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command)
    print(text)
    if args.out:
        write_report(args.out, "occurrence-counts", text, {"command": command, "model": str(args.model), "tasks": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
