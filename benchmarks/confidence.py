"""Is the runtime's confidence calibrated? A reliability table on held-out data.

    python -m framestamp.benchmarks.confidence runs/data/eval/manifest.jsonl --warnings --out benchmarks/results/cpu

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
        entry = by_task.setdefault(example.task, [[], [], []])
        entry[0] += list(result.confidence)
        entry[1] += list(right)
        entry[2] += [bool(result.warnings)] * len(right)  # the question's warnings speak for each of its times
    table = {}
    everything = [sum((v[i] for v in by_task.values()), []) for i in range(3)]
    for task, (confidence, right, warned) in sorted(by_task.items()) + [("all", everything)]:
        confidence, right, warned = np.asarray(confidence), np.asarray(right, dtype=bool), np.asarray(warned, dtype=bool)
        sure = confidence >= 0.8
        table[task] = {"times": int(confidence.size), "acc@40ms": float(right.mean()),
                       "confident_times": int(sure.sum()),
                       "right_when_confident": float(right[sure].mean()) if sure.any() else None,
                       "wrong_times": int((~right).sum()), "wrong_warned": int((warned & ~right).sum()),
                       "right_times": int(right.sum()), "right_warned": int((warned & right).sum()),
                       "deciles": reliability(confidence, right)}
    return {"manifest": str(manifest), "artifact": str(artifact), "questions": len(examples), "tasks": table}


def warning_rules(manifest: Path, artifact: Path, limit: int | None, seed: int = 0) -> dict:
    """The raw statistics behind runtime/caveats.py's rules, on questions whose answer exists and on
    questions it does not: about words and events the clip does not hold (peak score), and about the
    k-th occurrence (or speaker) past the clip's count (does the k-th answer land on an earlier one?)."""
    import random
    from collections import Counter, defaultdict

    from framestamp.data.manifest import read_manifest
    from framestamp.runtime import Locator, Query

    rng = random.Random(seed)
    examples = read_manifest(manifest)[:limit]
    locator = Locator(artifact, batch_size=8, count_check=False)
    clips: dict[tuple[str, str], list] = defaultdict(list)
    for example in examples:
        clips[("word" if example.task == "transcript" else example.task, example.audio)].append(example)
    heard = sorted({w for e in examples if e.task == "transcript" for w in e.prompt["transcript"].split()})
    queries, kinds = [], []

    def ask(audio, task, fields, kind):
        queries.append(Query(str(manifest.parent / audio), task, fields, with_intensity=True))
        kinds.append((task, kind, audio, fields.get("word") or fields.get("event") or "", fields["occurrence"]))

    for (task, audio), group in sorted(clips.items()):
        if task == "word":
            spoken = [e.prompt["transcript"].split() for e in group if e.task == "transcript"]
            if not spoken:
                continue
            counts = Counter(spoken[0])
            named, missing = rng.sample(sorted(counts), min(3, len(counts))), sorted(set(heard) - set(counts))
        elif task == "event":
            counts = Counter(e.prompt["event"] for e in group)
            named, missing = sorted(counts), sorted(set(locator.event_labels or ()) - set(counts))
        else:
            counts, named, missing = {"": group[0].source.get("speakers", len(group))}, [""], []
        for name in named:
            for k in range(1, counts[name] + 3):
                fields = {"occurrence": k} if task == "speaker" else {task: name, "occurrence": k}
                ask(audio, task, fields, "exists" if k <= counts[name] else "beyond the count")
        for name in rng.sample(missing, min(2, len(missing))):
            ask(audio, task, {task: name, "occurrence": 1}, "absent")
    answers = locator.run(queries)
    time = {kind[2:]: answer.times[0] for kind, answer in zip(kinds, answers)}
    peaks: dict[tuple[str, str], list[float]] = defaultdict(list)
    landed: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for (task, kind, audio, name, k), answer in zip(kinds, answers):
        if k == 1:
            peaks[(task, kind)].append(float(answer.log_intensity.max()))
        elif kind != "absent":
            earlier = [time[(audio, name, j)] for j in range(1, k)]
            landed[(task, kind)].append(any(answer.times[0] <= t + 0.04 for t in earlier))
    rules = {"absent": {}, "occurrence": {}}
    for task in ("word", "event"):
        present, absent = np.array(peaks[(task, "exists")]), np.array(peaks[(task, "absent")])
        if present.size and absent.size:
            threshold = float(np.percentile(present, 5))
            rules["absent"][task] = {"threshold": round(threshold, 2), "questions_present": int(present.size),
                                     "questions_absent": int(absent.size),
                                     "flagged_absent": float((absent < threshold).mean()),
                                     "flagged_present": float((present < threshold).mean())}
    for task in ("word", "event", "speaker"):
        beyond, exists = landed[(task, "beyond the count")], landed[(task, "exists")]
        if beyond and exists:
            rules["occurrence"][task] = {"questions_beyond": len(beyond), "flagged_beyond": float(np.mean(beyond)),
                                         "questions_within": len(exists), "flagged_within": float(np.mean(exists))}
    return rules


def markdown(report: dict) -> str:
    lines = [f"# Confidence calibration\n", f"`python -m framestamp.benchmarks.confidence {report['manifest']}` "
             f"({report['questions']} questions, artifact `{report['artifact']}`). A time is right within 40 ms.\n"]
    for task, entry in report["tasks"].items():
        sure = entry["right_when_confident"]
        lines += [f"## {task}: {entry['times']} times, acc@40ms {entry['acc@40ms']:.1%}; confidence >= 0.8: "
                  f"{entry['confident_times']} times, {'n/a' if sure is None else f'{sure:.1%}'} right\n",
                  f"Warned (the question carries a warning): {entry['wrong_warned']} of {entry['wrong_times']} wrong times, "
                  f"{entry['right_warned']} of {entry['right_times']} right ones.\n",
                  "| confidence | times | mean confidence | right |", "|---|---|---|---|"]
        lines += [f"| {row['confidence']} | {row['times']} | {row['mean_confidence']:.3f} | {row['right']:.3f} |"
                  for row in entry["deciles"]]
        lines.append("")
    rules = report.get("warning_rules")
    if rules:
        lines += ["## Warning rules (runtime/caveats.py)\n",
                  "Probably absent: the peak score below the 5th percentile of questions whose answer exists.\n",
                  "| task | threshold | absent flagged | present flagged (false alarms) |", "|---|---|---|---|"]
        lines += [f"| {task} | {row['threshold']} | {row['flagged_absent']:.0%} of {row['questions_absent']} | "
                  f"{row['flagged_present']:.0%} of {row['questions_present']} |" for task, row in rules["absent"].items()]
        lines += ["", "The k-th occurrence lands on or before an earlier occurrence's answer (k >= 2):\n",
                  "| task | k beyond the count: flagged | k within the count: flagged |", "|---|---|---|"]
        lines += [f"| {task} | {row['flagged_beyond']:.0%} of {row['questions_beyond']} | "
                  f"{row['flagged_within']:.0%} of {row['questions_within']} |" for task, row in rules["occurrence"].items()]
        lines += ["", "Thresholds for the checkpoint's framestamp.json (`warning_thresholds`), carried into its exports:", "",
                  "```json", json.dumps({"absent_below": {task: row["threshold"] for task, row in rules["absent"].items()}}),
                  "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifest", type=Path, help="held-out questions (e.g. framestamp synth output)")
    parser.add_argument("--artifact", type=Path, default=SHIPPED_ARTIFACT)
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--warnings", action="store_true",
                        help="also measure the warning rules (absent things, occurrences past the count)")
    parser.add_argument("--out", type=Path, help="folder for confidence.json and confidence.md")
    args = parser.parse_args(argv)
    report = measure(args.manifest, args.artifact, args.limit)
    if args.warnings:
        report["warning_rules"] = warning_rules(args.manifest, args.artifact, args.limit)
    text = markdown(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "confidence.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "confidence.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
