"""Equal-budget curves of training recipes: `framestamp bench recipes RUN [RUN ...] --out DIR`.

Each RUN is a `framestamp train` output folder; its log.jsonl holds the periodic evaluations. The
table has one row per run and evaluated step (acc@40ms per task) and the PNG one curve per run and
task, so recipes are compared at the same steps on the same held-out questions. ``--x seconds``
plots against training time instead (the log's seconds, summed across resumes), for recipes whose
steps cost different amounts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError


def curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """task -> [(step, acc@40ms), ...] from a run's log.jsonl."""
    points: dict[str, list[tuple[int, float]]] = {}
    for record in _records(run):
        if record.get("event") != "eval":
            continue
        for key, value in record.items():
            if key.endswith("/acc@40ms"):
                points.setdefault(key.split("/")[0], []).append((int(record["step"]), float(value)))
    return points


def training_seconds(run: Path) -> dict[int, float]:
    """step -> seconds of training up to it, from the log's train records. Each process logs seconds since
    it started, so a resumed run's clock starts again: the time before a resume is carried over."""
    seconds, carried, last = {}, 0.0, 0.0
    for record in _records(run):
        if record.get("event") == "resume":
            carried, last = carried + last, 0.0
        elif record.get("event") == "train" and "seconds" in record:
            last = float(record["seconds"])
            seconds[int(record["step"])] = carried + last
    return seconds


def _records(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    if not log.is_file():
        raise InputError(f"{run}: no log.jsonl; give folders written by `framestamp train`")
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_seconds(points: dict[str, list[tuple[int, float]]], seconds: dict[int, float], run: Path):
    """The same curves with each evaluated step replaced by the training seconds it took to reach
    (interpolated between the logged steps around it: train records come every log_every steps)."""
    if not seconds:
        raise InputError(f"{run}: its log has no train records with seconds; plot it with --x steps")
    logged = sorted(seconds)
    at = {step: float(np.interp(step, logged, [seconds[s] for s in logged]))
          for step in {step for series in points.values() for step, _ in series}}
    return {task: [(at[step], value) for step, value in series] for task, series in points.items()}


def markdown(runs: dict[str, dict], command: str, note: str = "", steps_of: dict[str, dict] | None = None) -> str:
    """A table of every run's evaluations; with ``steps_of`` (run -> seconds -> step) the curves are by
    seconds and the table gives both."""
    tasks = sorted({task for points in runs.values() for task in points})
    lines = ["# Training recipes at an equal budget (acc@40ms on held-out voices)", "", f"Reproduce: `{command}`", ""]
    if note:
        lines += [note, ""]
    timed = steps_of is not None
    lines += ["| run | step | " + ("minutes | " if timed else "") + " | ".join(tasks) + " |",
              "|---|---|" + ("---|" if timed else "") + "---|" * len(tasks)]
    for name, points in runs.items():
        places = sorted({place for series in points.values() for place, _ in series})
        for place in places:
            cells = []
            for task in tasks:
                value = dict(points.get(task, [])).get(place)
                cells.append("-" if value is None else f"{value:.1%}")
            where = f"{steps_of[name][place]} | {place / 60:.1f}" if timed else f"{place}"
            lines.append(f"| {name} | {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, dict], path: Path, x: str = "steps") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for points in runs.values() for task in points})
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for name, points in runs.items():
            if task in points:
                places, values = zip(*points[task])
                places = [place / 60 for place in places] if x == "seconds" else places
                axis.plot(places, [100 * v for v in values], marker="o", label=name)
        axis.set_title(task)
        axis.set_xlabel("training minutes" if x == "seconds" else "optimizer steps")
        axis.set_ylabel("acc@40ms (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from framestamp.runtime.files import atomic_path

    parser = argparse.ArgumentParser(prog="framestamp bench recipes", description=__doc__.strip().splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training output folders (NAME=FOLDER to name a curve)")
    parser.add_argument("--out", type=Path, help="folder for NAME.md and NAME.png")
    parser.add_argument("--name", default="recipes", help="file name stem (default recipes)")
    parser.add_argument("--note", default="", help="a paragraph under the command: data, budget, what differs")
    parser.add_argument("--x", choices=("steps", "seconds"), default="steps",
                        help="curves against optimizer steps (default) or training time, for recipes whose steps "
                        "cost different amounts (e.g. --questions-per-clip)")
    args = parser.parse_args(argv)
    runs, steps_of = {}, {}
    for given in args.runs:
        name, _, folder = str(given).rpartition("=")
        name = name or Path(folder).name
        runs[name] = curves(Path(folder))
        if args.x == "seconds":
            seconds = training_seconds(Path(folder))
            timed = by_seconds(runs[name], seconds, Path(folder))
            steps_of[name] = {place: step for task in runs[name]
                              for (step, _), (place, _) in zip(runs[name][task], timed[task])}
            runs[name] = timed
    command = "framestamp bench recipes " + " ".join(argv if argv is not None else sys.argv[3:])
    text = markdown(runs, command, args.note, steps_of if args.x == "seconds" else None)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out / f"{args.name}.md") as path:
            path.write_text(text)
        with atomic_path(args.out / f"{args.name}.png") as path:
            plot(runs, path, args.x)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
