"""Cost of posterior-mode decoding (NumPy, one core) across counts and lengths.

    python -m framestamp.benchmarks.decoding_speed [--out benchmarks/results/cpu]

Head outputs are random log-intensities shaped like a trained head's (a low floor with peaks);
the cost does not depend on the values. Reports the median and min/max over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from framestamp.runtime.decoding import binary_top_k, posterior_mode

CASES = [  # (count, frames): 30 words in 30 s is the acceptance case
    (1, 250), (10, 250), (30, 750), (100, 1500), (30, 15_000), (500, 15_000),
]


def head_like(frames: int, count: int, rng) -> np.ndarray:
    log_intensity = rng.normal(-8, 1, frames)
    log_intensity[rng.choice(frames, min(count, frames), replace=False)] += 12
    return log_intensity


def measure(function, repeats: int) -> list[float]:
    function()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for decoding.json and decoding.md")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for count, frames in CASES:
        log_intensity = head_like(frames, count, rng)
        repeats = max(5, args.repeats * 750 * 30 // (frames * count))
        poisson = measure(lambda: posterior_mode(log_intensity, count), min(args.repeats, repeats))
        binary = measure(lambda: binary_top_k(log_intensity, count), min(args.repeats, repeats))
        rows.append({"count": count, "frames": frames, "seconds_of_audio": frames * 0.04,
                     "posterior_mode_ms": {"median": 1e3 * float(np.median(poisson)), "min": 1e3 * min(poisson),
                                           "max": 1e3 * max(poisson)},
                     "binary_top_k_ms": {"median": 1e3 * float(np.median(binary))}})
    header = "| events | frames (audio) | posterior_mode median ms (min-max) | binary top-k median ms |\n|---|---|---|---|"
    lines = [f"| {r['count']} | {r['frames']} ({r['seconds_of_audio']:.0f} s) | "
             f"{r['posterior_mode_ms']['median']:.3f} ({r['posterior_mode_ms']['min']:.3f}-{r['posterior_mode_ms']['max']:.3f}) | "
             f"{r['binary_top_k_ms']['median']:.3f} |" for r in rows]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "numpy": np.__version__}
    table = "\n".join([header, *lines])
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        command = "python -m framestamp.benchmarks.decoding_speed --out " + str(args.out)
        (args.out / "decoding.json").write_text(json.dumps({"command": command, "machine": machine, "rows": rows}, indent=2) + "\n")
        (args.out / "decoding.md").write_text(
            f"# Decoding cost (one core, NumPy)\n\nReproduce: `{command}`\n\nMachine: {machine}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
