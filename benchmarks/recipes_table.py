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


def seconds_at(steps, seconds: dict[int, float], run: Path) -> dict[int, float]:
    """Training seconds at each of ``steps``, interpolated between the logged steps around it (train
    records come every log_every steps, evaluations anywhere)."""
    if not seconds:
        raise InputError(f"{run}: its log has no train records with seconds; plot it with --x steps")
    logged = sorted(seconds)
    return {step: float(np.interp(step, logged, [seconds[s] for s in logged])) for step in steps}


def markdown(runs: dict[str, dict], command: str, note: str = "", seconds: dict[str, dict] | None = None) -> str:
    """A table of every run's evaluations; with ``seconds`` (run -> step -> training seconds) it also
    gives the minutes each evaluated step took to reach."""
    tasks = sorted({task for points in runs.values() for task in points})
    lines = ["# Training recipes at an equal budget (acc@40ms on held-out voices)", "", f"Reproduce: `{command}`", ""]
    if note:
        lines += [note, ""]
    lines += ["| run | step | " + ("minutes | " if seconds else "") + " | ".join(tasks) + " |",
              "|---|---|" + ("---|" if seconds else "") + "---|" * len(tasks)]
    for name, points in runs.items():
        steps = sorted({step for series in points.values() for step, _ in series})
        for step in steps:
            cells = []
            for task in tasks:
                value = dict(points.get(task, [])).get(step)
                cells.append("-" if value is None else f"{value:.1%}")
            where = f"{step} | {seconds[name][step] / 60:.1f}" if seconds else f"{step}"
            lines.append(f"| {name} | {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, dict], path: Path, seconds: dict[str, dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for points in runs.values() for task in points})
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for name, points in runs.items():
            if task in points:
                steps, values = zip(*points[task])
                places = [seconds[name][step] / 60 for step in steps] if seconds else steps
                axis.plot(places, [100 * v for v in values], marker="o", label=name)
        axis.set_title(task)
        axis.set_xlabel("training minutes" if seconds else "optimizer steps")
        axis.set_ylabel("acc@40ms (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from framestamp.benchmarks import write_table_and_chart

    parser = argparse.ArgumentParser(prog="framestamp bench recipes", description=__doc__.strip().splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training output folders (NAME=FOLDER to name a curve)")
    parser.add_argument("--out", type=Path, help="folder for NAME.md and NAME.png")
    parser.add_argument("--name", default="recipes", help="file name stem (default recipes)")
    parser.add_argument("--note", default="", help="a paragraph under the command: data, budget, what differs")
    parser.add_argument("--x", choices=("steps", "seconds"), default="steps",
                        help="curves against optimizer steps (default) or training time, for recipes whose steps "
                        "cost different amounts (e.g. --questions-per-clip)")
    args = parser.parse_args(argv)
    runs, seconds = {}, {}
    for given in args.runs:
        name, _, folder = str(given).rpartition("=")
        name = name or Path(folder).name
        runs[name] = curves(Path(folder))
        if args.x == "seconds":
            steps = {step for series in runs[name].values() for step, _ in series}
            seconds[name] = seconds_at(steps, training_seconds(Path(folder)), Path(folder))
    # `framestamp bench` passes argv; `python -m` leaves it in sys.argv[1:]
    command = "framestamp bench recipes " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(runs, command, args.note, seconds or None)
    print(text)
    if args.out:
        write_table_and_chart(args.out, args.name, text, lambda path: plot(runs, path, seconds or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
