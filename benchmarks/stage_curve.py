"""Held-out accuracy by shipped stage against targets: `framestamp bench stages STAGES.json --out DIR`.

STAGES.json records what each stage scored when it was measured:

    {"about": "where the numbers come from", "targets": {"words 2-8 s": 90, ...},
     "stages": {"3": {"source": "README.md at 67321be", "acc@40ms": {"words 2-8 s": 67.6, ...}}, ...}}

(percentages). The table has one row per stage and a last row with the gap from the latest stage to
each target; the PNG one panel per measure, its target dashed, so a plateau and the distance left are
seen at a glance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from framestamp.runtime.errors import InputError


def load(path: Path) -> tuple[dict[str, float], dict[int, dict[str, float]], str]:
    """(targets, stage -> measure -> acc@40ms %, about) from STAGES.json, stages in order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read it as JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict) or not data["stages"]:
        raise InputError(f'{path}: expected {{"targets": {{...}}, "stages": {{"N": {{"acc@40ms": {{...}}}}}}}}')
    targets = {name: float(value) for name, value in data.get("targets", {}).items()}
    stages = {}
    for name, record in data["stages"].items():
        if not str(name).isdigit() or not isinstance(record, dict) or not isinstance(record.get("acc@40ms"), dict):
            raise InputError(f'{path}: stage {name!r} needs a number as its name and an "acc@40ms" object')
        stages[int(name)] = {measure: float(value) for measure, value in record["acc@40ms"].items()}
    return targets, dict(sorted(stages.items())), str(data.get("about", ""))


def measures(targets: dict[str, float], stages: dict[int, dict[str, float]]) -> list[str]:
    """The targets' measures first (in their order), then any other measure a stage reports."""
    seen = list(targets)
    for values in stages.values():
        seen += [measure for measure in values if measure not in seen]
    return seen


def gaps(targets: dict[str, float], stages: dict[int, dict[str, float]]) -> dict[str, float | None]:
    """measure -> points the latest stage that reports it is short of its target (0 when met; None
    without a target or a measurement)."""
    result = {}
    for measure in measures(targets, stages):
        reported = [values[measure] for values in stages.values() if measure in values]
        if measure not in targets or not reported:
            result[measure] = None
        else:
            result[measure] = max(0.0, targets[measure] - reported[-1])
    return result


def markdown(targets: dict[str, float], stages: dict[int, dict[str, float]], command: str, note: str = "") -> str:
    columns = measures(targets, stages)
    lines = ["# Held-out accuracy by stage (acc@40ms, %)", "", f"Reproduce: `{command}`", ""]
    if note:
        lines += [note, ""]
    lines += ["| stage | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines.append("| target | " + " | ".join(f"{targets[m]:.0f}" if m in targets else "-" for m in columns) + " |")
    for stage, values in stages.items():
        lines.append(f"| {stage} | " + " | ".join(f"{values[m]:.1f}" if m in values else "-" for m in columns) + " |")
    short = gaps(targets, stages)
    cells = ["-" if short[m] is None else ("met" if short[m] == 0 else f"{short[m]:.1f} short") for m in columns]
    lines.append("| gap, latest | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(targets: dict[str, float], stages: dict[int, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = measures(targets, stages)
    across = min(4, len(columns))
    down = -(-len(columns) // across)
    figure, axes = plt.subplots(down, across, figsize=(3.6 * across, 2.9 * down), squeeze=False)
    for axis, measure in zip(axes.flat, columns):
        points = [(stage, values[measure]) for stage, values in stages.items() if measure in values]
        if points:
            axis.plot(*zip(*points), marker=".", color="tab:blue")
        if measure in targets:
            axis.axhline(targets[measure], linestyle="--", color="tab:red", label=f"target {targets[measure]:.0f}%")
            axis.legend(fontsize=7, loc="best")
        axis.set_title(measure, fontsize=9)
        axis.set_xlabel("stage", fontsize=8)
        axis.set_ylabel("acc@40ms (%)", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(columns):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from framestamp.benchmarks import write_table_and_chart

    parser = argparse.ArgumentParser(prog="framestamp bench stages", description=__doc__.strip().splitlines()[0])
    parser.add_argument("stages", type=Path, help="STAGES.json: targets and each stage's held-out acc@40ms")
    parser.add_argument("--out", type=Path, help="folder for NAME.md and NAME.png")
    parser.add_argument("--name", default="stages", help="file name stem (default stages)")
    parser.add_argument("--note", help="a paragraph under the command (default: the record's \"about\")")
    args = parser.parse_args(argv)
    targets, stages, about = load(args.stages)
    # `framestamp bench` passes argv; `python -m` leaves it in sys.argv[1:]
    command = "framestamp bench stages " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(targets, stages, command, about if args.note is None else args.note)
    print(text)
    if args.out:
        write_table_and_chart(args.out, args.name, text, lambda path: plot(targets, stages, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
