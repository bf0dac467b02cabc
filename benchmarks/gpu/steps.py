"""The kit's steps and the run that takes them in order, each in its own processes with a deadline.

Every step's outcome lands in OUT/results.json and OUT/results.md as soon as the step ends, and
the latency benchmark rewrites OUT/latency.json after every row, so a run stopped by the device's
time limit still returns what it finished. At most 8 files are written to OUT (what the GPU
machine sends back): results.json, results.md, latency.json, latency.md, latency.png,
training.png, model.tar.gz and log.txt. Everything else stays in WORK.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from importlib.metadata import distributions
from pathlib import Path

from framestamp.benchmarks.gpu.bootstrap import RECORD_VARIABLE
from framestamp.benchmarks.gpu.plan import STEPS, Plan, worker_shares

OUT_FILES = ("results.json", "results.md", "latency.json", "latency.md", "latency.png", "training.png",
             "model.tar.gz", "log.txt")
CHECKPOINT_LIMIT_BYTES = 15 * 2**20  # files back from the device are at most 16 MiB each
LOG_TAIL_LINES = 40
DEVICE_RUN = 'device run: command `bash benchmarks/gpu/run.sh`, carry [".gpukit"]'


class Job:
    """One subprocess in its own process group, stopped (with its children) at its deadline."""

    def __init__(self, name: str, argv: list[str], deadline: float, log: Path, environment: dict):
        self.name, self.argv, self.deadline, self.log = name, argv, deadline, log
        self.started = time.monotonic()
        self.handle = open(log, "w")
        self.process = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT, env=environment,
                                        start_new_session=True)

    def wait(self) -> dict:
        status = "ok"
        try:
            self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = "timeout"
            self.stop()
        self.handle.close()
        if status == "ok" and self.process.returncode:
            status = "failed"
        return {"command": " ".join(self.argv), "status": status, "returncode": self.process.returncode,
                "seconds": round(time.monotonic() - self.started, 2)}

    def stop(self) -> None:
        for sent, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sent)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


class KitRun:
    def __init__(self, plan: Plan, out: Path, work: Path, command: str):
        self.plan, self.out, self.work = plan, out, work
        self.started = time.monotonic()
        self.end = self.started + plan.total_seconds
        self.results = {"kit": "framestamp gpu-kit", "plan": plan.name, "command": command,
                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "budget_seconds": plan.total_seconds, "steps": {}}
        for folder in (out, work, work / "logs"):
            folder.mkdir(parents=True, exist_ok=True)
        (out / "log.txt").write_text("")
        self.environment = {**os.environ, **plan.variables}

    # -- plumbing -------------------------------------------------------------------------------
    def python(self, *arguments: str) -> list[str]:
        return [sys.executable, *arguments]

    def start(self, name: str, argv: list[str], deadline: float, **variables: str) -> Job:
        print(f"[{self.elapsed():6.1f} s] {name}: {' '.join(argv)}", flush=True)
        deadline = min(deadline, self.end)
        return Job(name, argv, deadline, self.work / "logs" / f"{name}.log", {**self.environment, **variables})

    def finish(self, job: Job) -> dict:
        outcome = job.wait()
        self.note(f"--- {job.name}: {outcome['status']} in {outcome['seconds']} s (exit {outcome['returncode']})",
                  log_tail(job.log))
        return outcome

    def command(self, name: str, argv: list[str], deadline: float, **variables: str) -> dict:
        return self.finish(self.start(name, argv, deadline, **variables))

    def note(self, heading: str, text: str = "") -> None:
        block = heading + ("\n" + text if text else "") + "\n"
        print(block, end="", flush=True)
        with open(self.out / "log.txt", "a") as log:
            log.write(block)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @contextmanager
    def step(self, name: str, budget: float | None = None, start: float | None = None):
        """Run a step's body with its deadline; record its status, time and error, then save the results."""
        began = time.monotonic() if start is None else start
        budget = self.plan.seconds[name] if budget is None else budget
        record = self.results["steps"].setdefault(name, {"budget": budget, "commands": []})
        self.note(f"=== {name} (budget {budget:g} s, {self.elapsed():.0f} s into the run)")
        try:
            yield began + budget, record
            record.setdefault("status", "ok")
        except Skipped as reason:
            record.update(status="skipped", reason=str(reason))
        except Exception as error:  # noqa: BLE001 - one step's failure must not lose the others
            record.update(status="failed", error=f"{type(error).__name__}: {error}")
            self.note(f"--- {name} failed", traceback.format_exc())
        if any(c["status"] == "timeout" for c in record["commands"]) and record["status"] == "ok":
            record["status"] = "timeout"
        record["seconds"] = round(time.monotonic() - began, 2)
        self.save()

    def save(self) -> None:
        from framestamp.benchmarks.gpu.report import markdown

        self.results["elapsed_seconds"] = round(self.elapsed(), 1)
        write_atomically(self.out / "results.json", json.dumps(self.results, indent=2) + "\n")
        write_atomically(self.out / "results.md", markdown(self.results))


class Skipped(Exception):
    """A step that cannot run because an earlier one did not produce what it needs."""


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, progress bars' carriage-return redraws collapsed to their final state."""
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")
    kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(line for line in kept[-lines:] if line.strip())


# ---------------------------------------------------------------------------------------- steps
def environment(run: KitRun) -> None:
    with run.step("environment") as (_, record):
        import framestamp.data

        found: dict = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                       # under the bootstrap's site, as on the device, unless something shadows it
                       "framestamp_data_from": str(Path(framestamp.data.__file__).parent)}
        record_path = os.environ.get(RECORD_VARIABLE)
        if record_path and Path(record_path).is_file():
            found["bootstrap"] = json.loads(Path(record_path).read_text())
        # What `pip list` shows, read in this process (whose sys.path holds the kit's site too).
        installed = {}
        for distribution in distributions():  # in sys.path order: the first of a name is the one imported
            installed.setdefault((distribution.metadata["Name"] or "").lower().replace("_", "-"), distribution.version)
        installed.pop("", None)
        found["packages"] = installed
        wanted = ("torch", "transformers", "tokenizers", "safetensors", "onnx", "onnxruntime", "onnxscript", "onnxslim",
                  "numpy", "soundfile", "soxr", "cffi", "tqdm", "matplotlib", "triton", "tensorrt", "polygraphy")
        summary = ", ".join(f"{name} {installed[name]}" for name in wanted if name in installed)
        missing = [name for name in wanted if name not in installed]
        run.note(f"packages ({len(installed)} installed): {summary}; not installed: {', '.join(missing) or 'none'}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            found["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
            run.note("nvidia-smi: " + found["nvidia_smi"])
        except (OSError, subprocess.SubprocessError) as error:
            found["nvidia_smi"] = f"not available ({error})"
        found["torch"] = torch_probe()
        run.note("torch: " + json.dumps(found["torch"]))
        run.results["environment"] = found
        run.results["device"] = found["torch"].get("device_name") or f"CPU {platform.machine()} ({os.cpu_count()} cores)"


def torch_probe() -> dict:
    """What torch sees. The GPU's context opened here costs this process some memory, nothing timed."""
    import torch

    found = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        found.update(device_name=properties.name, capability=list(torch.cuda.get_device_capability(0)),
                     memory_gib=round(properties.total_memory / 2**30, 1),
                     multiprocessors=properties.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
    return found


def start_synthesis(run: KitRun) -> tuple[float, list[tuple[str, Job]]]:
    """Training data (one `framestamp synth` per group of tasks), held-out and long clips, all at once
    in the background; the training parts are merged into data/train/manifest.jsonl afterwards."""
    from framestamp.training.train import ALL_VOICES, HELD_OUT_VOICES

    plan, data = run.plan, run.work / "data"
    per_group, per_held_out, per_long = worker_shares(plan.workers, len(plan.train_synthesis))
    training_voices = ",".join(v for v in ALL_VOICES if v not in HELD_OUT_VOICES)
    lengths = ["--min-seconds", "2", "--max-seconds", "8"]
    jobs = {f"train-{_part(tasks)}": ["synth", str(data / "train" / _part(tasks)), "--tasks", tasks,
                                       "--count", str(plan.train_clips), "--seed", "1", "--voices", training_voices,
                                       *lengths, "--workers", str(per_group)]
            for tasks in plan.train_synthesis}
    jobs["eval"] = ["synth", str(data / "eval"), "--count", str(plan.eval_clips), "--seed", "2",
                    "--voices", ",".join(HELD_OUT_VOICES), *lengths, "--workers", str(per_held_out)]
    jobs["long"] = ["synth", str(data / "long"), "--tasks", "words", "--count", str(plan.long_clips), "--seed", "9",
                    "--min-seconds", f"{plan.long_seconds[0]:g}", "--max-seconds", f"{plan.long_seconds[1]:g}",
                    "--workers", str(per_long)]
    began = time.monotonic()
    deadline = began + plan.seconds["synthesis"]
    return began, [(name, run.start(f"synth-{name}", run.python("-m", "framestamp", *argv), deadline))
                   for name, argv in jobs.items()]


def _part(tasks: str) -> str:
    return tasks.replace(",", "-")


def finish_synthesis(run: KitRun, began: float, jobs: list[tuple[str, Job]]) -> None:
    from framestamp.data.manifest import read_manifest, write_manifest

    with run.step("synthesis", start=began) as (_, record):
        outcomes = {name: run.finish(job) for name, job in jobs}
        record["commands"] += list(outcomes.values())
        data = run.work / "data"
        merged, parts = [], {}
        for part in map(_part, run.plan.train_synthesis):
            manifest = data / "train" / part / "manifest.jsonl"
            if outcomes[f"train-{part}"]["status"] == "ok" and manifest.is_file():
                examples = read_manifest(manifest)  # audio relative to the part's folder
                parts[part] = len(examples)
                merged += [replace(example, audio=f"{part}/{example.audio}") for example in examples]
        if merged:
            write_manifest(data / "train" / "manifest.jsonl", merged)
        run.results["synthesis"] = {
            "train_questions": parts, "train_clips_per_task": run.plan.train_clips,
            "eval_questions": _count_lines(data / "eval" / "manifest.jsonl"),
            "long_clips": _count_lines(data / "long" / "manifest.jsonl"),
            "seconds": {name: outcome["seconds"] for name, outcome in outcomes.items()}}
        if not merged:
            raise Skipped("no training data was generated")


def _count_lines(path: Path) -> int | None:
    return sum(1 for line in open(path) if line.strip()) if path.is_file() else None


def parity(run: KitRun) -> None:
    from framestamp.demo import SHIPPED_MODEL
    from framestamp.runtime.locate import SHIPPED_ARTIFACT

    with run.step("parity") as (deadline, record):
        report = run.work / "parity-shipped.json"
        argv = run.python("-m", "framestamp.benchmarks.gpu.checks", str(SHIPPED_MODEL), "--artifact", str(SHIPPED_ARTIFACT),
                          "--device", run.plan.device, "--bf16", "--out", str(report),
                          "--batch-sizes", _joined(run.plan.parity_batch_sizes), "--seconds", _joined(run.plan.parity_seconds))
        record["commands"].append(run.command("parity-shipped", argv, deadline, NVIDIA_TF32_OVERRIDE="0"))
        run.results["parity"] = {"model": "the shipped omni-tiny-synth", **_json_or_empty(report)}


def latency(run: KitRun) -> None:
    plan = run.plan
    with run.step("latency") as (deadline, record):
        clips = run.work / "data" / "long" / "manifest.jsonl"
        argv = ["bench", "latency", "--backbone", plan.latency_backbone, "--device", plan.device,
                "--precision", plan.latency_precision, "--buckets", plan.latency_buckets,
                "--batch-sizes", plan.latency_batch_sizes, "--repeats", str(plan.latency_repeats), "--out", str(run.out)]
        if plan.latency_compile:
            argv.append("--compile")
        if clips.is_file():  # else bench latency generates its own (espeak-ng must work here then)
            argv += ["--clips", str(clips)]
        record["commands"].append(run.command("latency", run.python("-m", "framestamp", *argv), deadline))
        from framestamp.benchmarks.gpu.report import latency_summary

        run.results["latency"] = latency_summary(_json_or_empty(run.out / "latency.json"))
        if not run.results["latency"].get("rows"):
            raise RuntimeError("no latency row finished; see log.txt")


def train(run: KitRun) -> Path | None:
    """Train for the step's wall clock: warmup first (which times a step), then as many steps as fit."""
    plan = run.plan
    data, folder = run.work / "data", run.work / "runs" / "trained"
    budget = plan.seconds["train"]
    if plan.train_until_end:  # what earlier steps left unused goes to training, the last step keeps its own
        budget = max(budget, run.end - plan.seconds["trained"] - time.monotonic())
    with run.step("train", budget) as (deadline, record):
        manifest = data / "train" / "manifest.jsonl"
        if not manifest.is_file():
            raise Skipped("no training data (synthesis failed)")
        base = ["train", str(folder), "--train", str(manifest), "--backbone", plan.backbone, *plan.train_recipe,
                "--batch-size", str(plan.batch_size), "--lr", f"{plan.learning_rate:g}", "--warmup", str(plan.warmup),
                "--precision", plan.precision, "--device", plan.device, "--eval-every", "0", "--seed", "0"]
        warm = base + ["--steps", str(plan.warmup), "--save-every", str(plan.warmup)]
        first = run.command("train-warmup", run.python("-m", "framestamp", *warm), deadline)
        record["commands"].append(first)
        if first["status"] != "ok":
            raise RuntimeError(f"the warmup run {first['status']}; see log.txt")
        timing = step_timing(folder / "log.jsonl", first["seconds"])
        # The learning rate of a warmup step does not depend on --steps: resuming with more steps is
        # the same schedule as one run of that length (warmup, then cosine to the new end).
        margin = 3 + 0.03 * (deadline - time.monotonic())
        more = int((deadline - time.monotonic() - timing["startup_seconds"] - margin) / timing["step_seconds"])
        least, most = plan.resumed_steps
        more = max(least, more if most is None else min(most, more))
        total = plan.warmup + more
        record["plan"] = {**timing, "steps": total}
        # A few safety checkpoints: should the deadline stop it, the newest one is the model.
        rest = base + ["--steps", str(total), "--save-every", str(max(plan.warmup, more // 3))]
        record["commands"].append(run.command("train", run.python("-m", "framestamp", *rest), deadline))
        model = trained_model(folder)
        run.results["train"] = training_summary(folder, model, plan, [c["command"] for c in record["commands"]])
        if model is None:
            raise RuntimeError("training left no model or checkpoint")
        run.results["train"]["model_archive"] = archive_model(model, folder / "log.jsonl", run.out / "model.tar.gz")
        return model
    return None


def step_timing(log: Path, wall_seconds: float) -> dict:
    """Seconds per optimizer step (from the trainer's log, first record excluded when there are more)
    and the process's own start-up and shut-down time around them."""
    records = [json.loads(line) for line in log.read_text().splitlines() if '"event": "train"' in line]
    if not records:
        raise RuntimeError(f"{log} has no training records to time a step by")
    first, last = (records[0], records[-1]) if len(records) > 1 else ({"step": 0, "seconds": 0.0}, records[-1])
    per_step = (last["seconds"] - first["seconds"]) / max(1, last["step"] - first["step"])
    return {"step_seconds": per_step, "startup_seconds": max(0.0, wall_seconds - last["seconds"]),
            "warmup_steps": last["step"]}


def trained_model(folder: Path) -> Path | None:
    """The final model, or the newest complete checkpoint of a run stopped at its deadline."""
    if (folder / "model" / "framestamp.json").is_file():
        return folder / "model"
    from framestamp.training.trainer import latest_checkpoint

    return latest_checkpoint(folder)


def training_summary(folder: Path, model: Path | None, plan: Plan, commands: list[str]) -> dict:
    log = folder / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    train_records = [r for r in records if r.get("event") == "train"]
    summary = {"backbone": plan.backbone, "precision": plan.precision, "batch_size": plan.batch_size,
               "learning_rate": plan.learning_rate, "warmup": plan.warmup, "recipe": " ".join(plan.train_recipe),
               "commands": commands, "model": str(model) if model else None,
               "steps": train_records[-1]["step"] if train_records else 0,
               "final_loss": train_records[-1]["loss"] if train_records else None,
               "losses": [[r["step"], r["loss"]] for r in train_records]}
    if model is not None and (model / "framestamp.json").is_file():
        description = json.loads((model / "framestamp.json").read_text())
        summary["parameters"] = description.get("backbone", {}).get("num_parameters")
    return summary


def archive_model(model: Path, log: Path, archive: Path) -> dict:
    """The whole checkpoint if it fits one returned file; else everything but the backbone's weights
    (the head, configs, tokenizer, training log), which the recorded commands regenerate."""
    files = [path for path in sorted(model.rglob("*")) if path.is_file()]
    size = sum(path.stat().st_size for path in files)
    whole = size <= CHECKPOINT_LIMIT_BYTES
    if not whole:
        files = [path for path in files if not (path.parent.name == "backbone" and path.suffix == ".safetensors")]
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=f"model/{path.relative_to(model).as_posix()}")
        if log.is_file():
            tar.add(log, arcname="model/log.jsonl")
    return {"contents": "the whole checkpoint" if whole else "head, configs, tokenizer and log (backbone weights left out)",
            "checkpoint_bytes": size, "archive_bytes": archive.stat().st_size}


def trained(run: KitRun, model: Path | None) -> None:
    plan = run.plan
    with run.step("trained") as (deadline, record):
        if model is None:
            raise Skipped("no trained model")
        eval_manifest = run.work / "data" / "eval" / "manifest.jsonl"
        report = run.work / "checks-trained.json"
        argv = ["-m", "framestamp.benchmarks.gpu.checks", str(model), "--device", plan.device, "--out", str(report),
                "--export", str(run.work / "runs" / "trained-onnx"), "--bf16",
                "--batch-sizes", _joined(plan.trained_parity_batch_sizes), "--seconds", _joined(plan.trained_parity_seconds)]
        if eval_manifest.is_file():
            argv += ["--evaluate", str(eval_manifest), "--parity-manifest", str(eval_manifest)]
        record["commands"].append(run.command("trained-checks", run.python(*argv), deadline, NVIDIA_TF32_OVERRIDE="0"))
        run.results["trained"] = _json_or_empty(report)


def _joined(numbers) -> str:
    return ",".join(f"{n:g}" for n in numbers)


def _json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# ---------------------------------------------------------------------------------------- the run
def run_kit(plan: Plan, out: Path, work: Path, command: str, only: tuple[str, ...] = STEPS) -> dict:
    """Every step of ``plan`` (or those in ``only``), in order; returns the results written to OUT."""
    from framestamp.benchmarks.gpu.report import training_chart

    run = KitRun(plan, out, work, command)
    if "train" in only:  # a training folder left by an earlier run would be resumed, not started afresh
        for leftover in ("trained", "trained-onnx"):
            shutil.rmtree(work / "runs" / leftover, ignore_errors=True)
    run.note(f"framestamp gpu-kit run: plan {plan.name}, {plan.total_seconds:g} s at most; results in {out}")
    synthesis = start_synthesis(run) if "synthesis" in only else None
    if "environment" in only:
        environment(run)
    if "parity" in only:
        parity(run)
    if synthesis:
        finish_synthesis(run, *synthesis)
    if "latency" in only:
        latency(run)
    model = train(run) if "train" in only else trained_model(work / "runs" / "trained")
    if "train" in only and run.results.get("train", {}).get("losses"):
        training_chart(run.results["train"], out / "training.png")
    if "trained" in only:
        trained(run, model)
    run.results["finished"] = True
    run.save()
    print((out / "results.md").read_text(), flush=True)
    return run.results
