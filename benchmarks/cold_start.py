"""Cold start of `framestamp locate`: a fresh process answering one question about a 2 s clip.

    python -m framestamp.benchmarks.cold_start [--repeats 9] [--out benchmarks/results/cpu]

Each run is a new Python process, so it pays for the interpreter, every import, opening the artifact
(hashing its files, loading both graphs) and one forward pass. Variants, run interleaved so a busy
machine slows them alike:

- ``locate``: the command as it is (``python -m framestamp locate CLIP --word dog``);
- ``locate, every subcommand imported``: the same after importing every subcommand's module first,
  which is what the CLI did before it imported only the chosen one (torch came in through
  ``train`` and ``export``);
- ``python -c pass``: the interpreter alone, the floor.

Reported: median and min-max wall time, and the heavy modules each variant left in ``sys.modules``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEAVY_MODULES = ("torch", "transformers", "onnx", "onnxscript", "polygraphy", "matplotlib", "safetensors")

# After the command runs, report which heavy modules it imported (on stderr, the last line).
REPORT_MODULES = ("import json, sys; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))),"
                  " file=sys.stderr)")
LOCATE = "import sys; from framestamp.cli import main; code = main(sys.argv[1:]); {report}; sys.exit(code)"
EVERYTHING_FIRST = ("import importlib, sys; from framestamp.cli import SUBCOMMANDS, main; "
                    "[importlib.import_module(module) for module, _ in SUBCOMMANDS.values()]; "
                    "code = main(sys.argv[1:]); {report}; sys.exit(code)")


def commands(clip: Path) -> dict[str, list[str]]:
    report = REPORT_MODULES.format(heavy=HEAVY_MODULES)
    question = ["locate", str(clip), "--word", "dog"]
    return {
        "locate": [sys.executable, "-c", LOCATE.format(report=report), *question],
        "locate, every subcommand imported (before lazy imports)": [
            sys.executable, "-c", EVERYTHING_FIRST.format(report=report), *question],
        "python -c pass": [sys.executable, "-c", "pass"],
    }


def write_clip(path: Path) -> None:
    import soundfile

    rate = 16_000
    t = np.arange(2 * rate) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32), rate)


def measure(variants: dict[str, list[str]], repeats: int) -> dict[str, dict]:
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    modules: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, command in variants.items():
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr}")
            if "locate" in name:
                modules[name] = json.loads(done.stderr.strip().splitlines()[-1])
    return {name: {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                   "heavy_modules": modules.get(name)} for name, times in seconds.items()}


def markdown(report: dict) -> str:
    lines = ["# Cold start of `framestamp locate` (a fresh process, one question, 2 s clip)", "",
             f"Reproduce: `{report['command']}`", "",
             f"Machine: {report['machine']}; {report['repeats']} runs per variant, interleaved; the shipped artifact.",
             "", "| variant | median | min-max | heavy modules imported |", "|---|---|---|---|"]
    for name, row in report["variants"].items():
        modules = "-" if row["heavy_modules"] is None else (", ".join(row["heavy_modules"]) or "none")
        lines.append(f"| {name} | {row['median_s']:.2f} s | {row['min_s']:.2f}-{row['max_s']:.2f} s | {modules} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, help="folder for cold_start.json and .md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "clip.wav"
        write_clip(clip)
        variants = measure(commands(clip), args.repeats)
    report = {"command": "python -m framestamp.benchmarks.cold_start " + " ".join(argv or sys.argv[1:]),
              "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
              "repeats": args.repeats, "variants": variants}
    text = markdown(report)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cold_start.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "cold_start.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
