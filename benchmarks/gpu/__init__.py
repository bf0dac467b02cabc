"""Measure on a GPU in one short lease: `framestamp gpu-kit prepare|run|collect`.

    framestamp gpu-kit prepare                 # here, with network: wheels + espeak-ng .debs into .gpukit/
    bash benchmarks/gpu/run.sh                 # there, from the checkout's root, carrying .gpukit (no install)
    framestamp gpu-kit run --dry-run --out D   # here, on the CPU: the same steps at tiny shapes
    framestamp gpu-kit collect FOLDER          # the returned files into benchmarks/results/h200/

`run` generates data (16 processes), checks CUDA parity of the shipped model, times the Omni-3B
shape against autoregressive decoding, trains omni-small in bf16 for a fixed wall clock, and
scores, exports and checks the trained model, all inside 9 minutes (see plan.py); every result is
written to OUT as soon as it exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from framestamp.runtime.errors import InputError

RESULTS = Path(__file__).resolve().parents[1] / "results"
SCRATCH_SITE = "FRAMESTAMP_GPUKIT_SCRATCH_SITE"  # a site set up for one run outside run.sh
COLLECTED = ("results.json", "results.md", "latency.json", "latency.md", "latency.png", "training.png")


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prepare = actions.add_parser("prepare", help="gather wheels and espeak-ng .debs for the GPU machine; print the size that travels",
                                 description="Gather what the GPU machine lacks into a git-ignored folder, check the dry "
                                             "run under the image's transformers, and print the size that will travel.")
    prepare.add_argument("--kit", type=Path, help="the folder to fill (default: .gpukit in the checkout)")
    prepare.add_argument("--no-check", dest="check", action="store_false",
                         help="skip the dry run under the GPU image's transformers (about a minute)")
    prepare.add_argument("--wheel", action="append", default=[], metavar="REQUIREMENT",
                         help="carry one more wheel (e.g. transformers==VERSION instead of the one installed here)")
    prepare.add_argument("--image-transformers", dest="carry_transformers", action="store_false",
                         help="do not carry transformers: run on the image's 5.17.0 (which cannot build the Omni "
                              "models today)")

    run = actions.add_parser("run", help="run every measurement with its deadline, results into OUT",
                             description="Run the kit's steps (on the GPU machine: bash benchmarks/gpu/run.sh).")
    run.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                     help="folder for the (at most 8) result files (default: $OUT)")
    run.add_argument("--work", type=Path, help="scratch folder for data and runs (default: a folder in /tmp)")
    run.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, seconds of training: the same steps")
    run.add_argument("--steps", help="comma-separated subset of the steps (default: all): "
                                     "environment,synthesis,parity,latency,train,trained")
    run.add_argument("--kit", type=Path, default=None, help="the prepared kit (default .gpukit in the checkout)")

    collect = actions.add_parser("collect", help="copy a run's returned files into benchmarks/results/<device>/",
                                 description="Copy a run's result files into benchmarks/results/h200/ (or --into).")
    collect.add_argument("folder", type=Path, help="the folder the device's files landed in")
    collect.add_argument("--into", type=Path, default=RESULTS / "h200")


def run(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        from framestamp.benchmarks.gpu.bootstrap import DEFAULT_KIT
        from framestamp.benchmarks.gpu.prepare import prepare, print_summary

        kit = (args.kit or DEFAULT_KIT).resolve()
        return print_summary(prepare(kit, check=args.check, extra_wheels=tuple(args.wheel),
                                     carry_transformers=args.carry_transformers), kit)
    if args.action == "collect":
        return collect(args.folder, args.into)
    return run_kit(args)


def run_kit(args: argparse.Namespace) -> int:
    from framestamp.benchmarks.gpu import bootstrap
    from framestamp.benchmarks.gpu.plan import DRY_RUN, GPU, STEPS

    if args.out is None:
        raise InputError("give --out FOLDER (on the device machine $OUT is used)")
    only = tuple(name.strip() for name in args.steps.split(",")) if args.steps else STEPS
    unknown = [name for name in only if name not in STEPS]
    if unknown:
        raise InputError(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    if not os.environ.get(bootstrap.RECORD_VARIABLE):
        # Not started by run.sh: set up the same environment (kit wheels, espeak-ng, framestamp on
        # PYTHONPATH) in a scratch site and start again inside it, as run.sh does on the device.
        site = Path(tempfile.mkdtemp(prefix="framestamp-gpukit-site."))
        _, environment = bootstrap.prepare((args.kit or bootstrap.DEFAULT_KIT).resolve(), site)
        again = ["--out", str(args.out.resolve())] + (["--work", str(args.work.resolve())] if args.work else [])
        again += (["--dry-run"] if args.dry_run else []) + (["--steps", args.steps] if args.steps else [])
        environment[SCRATCH_SITE] = str(site)  # removed when the run ends
        bootstrap.restart(site, environment, ["-m", "framestamp", "gpu-kit", "run", *again])
    from framestamp.benchmarks.gpu.steps import DEVICE_RUN, run_kit as run_steps

    plan = DRY_RUN if args.dry_run else GPU
    work = args.work or Path(tempfile.gettempdir()) / f"framestamp-gpukit-{plan.name}"
    command = ("framestamp gpu-kit run --dry-run --out OUT" if args.dry_run
               else f"framestamp gpu-kit prepare, then bash benchmarks/gpu/run.sh ({DEVICE_RUN})")
    results = run_steps(plan, args.out.resolve(), work.resolve(), command, only)
    if os.environ.get(SCRATCH_SITE):
        shutil.rmtree(os.environ[SCRATCH_SITE], ignore_errors=True)
    return 1 if any(step.get("status") != "ok" for step in results["steps"].values()) else 0


def collect(folder: Path, into: Path) -> int:
    """Copy the result files of one run (not its log or model archive) into the results folder."""
    import json

    if not (folder / "results.json").is_file():
        raise InputError(f"{folder} has no results.json: give the folder the device run's files landed in")
    results = json.loads((folder / "results.json").read_text())
    if results.get("plan") == "dry-run":
        raise InputError(f"{folder} holds a dry run's results: they say the kit works, not how fast a GPU is")
    into.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in COLLECTED:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, into / name)
            copied.append(name)
    print(f"copied {', '.join(copied)} into {into}; model.tar.gz and log.txt stay in {folder}")
    return 0
