"""The kit's results as markdown (results.md) and its training curve (training.png).

The headline numbers are the issue's acceptance figures: frame-level against generate and against
the fastest autoregressive loop at 26+ timestamps, the real-time factor at batch 16, peak GPU
memory, CUDA parity, and the GPU-trained model's accuracy on held-out voices.
"""

from __future__ import annotations

import sys
from pathlib import Path


def best(seconds: dict, prefix: str) -> tuple[str, float]:
    """(method, median seconds) of the fastest method whose name starts with ``prefix``."""
    return min(((name, stats["median"]) for name, stats in seconds.items() if name.startswith(prefix)),
               key=lambda pair: pair[1])


def latency_summary(report: dict) -> dict:
    """bench latency's report plus, per row, the speedups and real-time factor the markdown shows."""
    if not report.get("rows"):
        return report
    headline = []
    for row in report["rows"]:
        frame_method, frame = best(row["seconds"], "frame")
        autoregressive_method, autoregressive = best(row["seconds"], "autoregressive")
        generate = row["seconds"]["autoregressive generate"]["median"]
        headline.append({"bucket": row["bucket"], "batch_size": row["batch_size"], "frame_method": frame_method,
                         "frame_ms": frame * 1000, "generate_ms": generate * 1000,
                         "best_autoregressive": autoregressive_method, "best_autoregressive_ms": autoregressive * 1000,
                         "speedup_vs_generate": generate / frame, "speedup_vs_best_autoregressive": autoregressive / frame,
                         "real_time_factor": row["audio_seconds"] / frame if "audio_seconds" in row else None,
                         "audio_seconds": row.get("audio_seconds"),
                         "peak_gpu_memory_gib": row["peak_gpu_memory_bytes"] / 2**30 if "peak_gpu_memory_bytes" in row else None})
    return {**report, "headline": headline}


def markdown(results: dict) -> str:
    lines = [f"# framestamp GPU kit: {results.get('device', 'device not yet probed')}", "",
             f"Reproduce: `{results['command']}`", "",
             f"Plan `{results['plan']}`, started {results['started']}: {results.get('elapsed_seconds', 0):.0f} s of a "
             f"{results['budget_seconds']:g} s budget{'' if results.get('finished') else ' (still running, or stopped)'}."]
    if results["plan"] == "dry-run":
        lines += ["", "A dry run: tiny shapes on the CPU. It shows that every step works, not how fast anything is."]
    lines += ["", "| step | status | seconds | budget | note |", "|---|---|---|---|---|"]
    for name, step in results["steps"].items():
        note = step.get("error") or step.get("reason") or ""
        lines.append(f"| {name} | {step.get('status', 'running')} | {step.get('seconds', '')} | {step['budget']:g} | {note} |")
    for section in (_latency, _parity, _training, _trained, _environment):
        lines += section(results)
    return "\n".join(lines) + "\n"


def _latency(results: dict) -> list[str]:
    report = results.get("latency") or {}
    if not report.get("headline"):
        return []
    lines = ["", f"## Latency: {report['model']} ({_parameters(report['parameters'])} parameters, {report['precision']}), "
                 f"{report['device']}", "",
             f"Optimized autoregressive loop: generate with a {report.get('optimized_autoregressive')}. Median of "
             f"{report['repeats']} repeats; every row and method in latency.md / latency.json.", "",
             "| timestamps | batch | frame-level | generate | best autoregressive | vs generate | vs best autoregressive "
             "| real-time factor | peak GPU memory |", "|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(report["headline"], key=lambda r: (-int(r["bucket"].rstrip("+").split("-")[0]), r["batch_size"])):
        factor = f"{row['real_time_factor']:.0f}x" if row["real_time_factor"] else "n/a"
        memory = f"{row['peak_gpu_memory_gib']:.1f} GiB" if row["peak_gpu_memory_gib"] is not None else "n/a"
        lines.append(f"| {row['bucket']} | {row['batch_size']} | {row['frame_ms']:.1f} ms | {row['generate_ms']:.1f} ms | "
                     f"{row['best_autoregressive_ms']:.1f} ms ({row['best_autoregressive'].removeprefix('autoregressive ')}) | "
                     f"{row['speedup_vs_generate']:.1f}x | {row['speedup_vs_best_autoregressive']:.1f}x | {factor} | {memory} |")
    return lines + ["", "Real-time factor: seconds of audio in the batch per second of frame-level inference."]


def _parameters(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


def _parity(results: dict) -> list[str]:
    parity = results.get("parity") or {}
    if not parity:
        return []
    return ["", f"## Parity: {parity.get('model', parity.get('checkpoint'))}", ""] + _comparisons(parity, results)


def _comparisons(checks: dict, results: dict) -> list[str]:
    lines = []
    onnx = checks.get("parity")
    if onnx and "error" not in onnx:
        end = onnx["end_to_end"]
        lines.append(f"- PyTorch on {onnx['pytorch_device']} (fp32, TF32 off) vs ONNX Runtime on the CPU, "
                     f"{len(onnx['cases'])} cases (batch, seconds) {' '.join(f'({b},{s:g})' for b, s in onnx['cases'])}: "
                     f"end to end max abs {end['max_abs']:.3g}, median abs {end['median_abs']:.3g}, p99 abs {end['p99_abs']:.3g}; "
                     f"encoder max abs {onnx['encoder']['max_abs']:.3g}; timestamps {onnx['timestamps_agreeing']}/"
                     f"{onnx['timestamps']} within {onnx['tolerance']['timestamp_ms']:g} ms (largest difference "
                     f"{onnx['max_timestamp_ms']:.2f} ms): {'PASS' if onnx['passed'] else 'FAIL: ' + '; '.join(onnx['failures'])}")
    elif onnx:
        lines.append(f"- ONNX parity failed: {onnx['error']}")
    bf16 = checks.get("bf16")
    if bf16 and "error" not in bf16:
        stats = bf16["log_intensity"]
        lines.append(f"- bf16 vs fp32 PyTorch on {checks.get('device')}: log-intensity max abs {stats['max_abs']:.3g}, "
                     f"median abs {stats['median_abs']:.3g}, p99 abs {stats['p99_abs']:.3g}; timestamps "
                     f"{bf16['timestamps_agreeing']}/{bf16['timestamps']} within {bf16['timestamp_ms']:g} ms "
                     f"(largest difference {bf16['max_timestamp_ms']:.0f} ms)")
    elif bf16:
        lines.append(f"- bf16 comparison failed: {bf16['error']}")
    return lines


def _training(results: dict) -> list[str]:
    train = results.get("train")
    if not train:
        return []
    step = results["steps"].get("train", {}).get("plan", {})
    lines = ["", f"## Training: {train['backbone']}"
                 + (f" ({_parameters(train['parameters'])} parameters)" if train.get("parameters") else "")
                 + f", {train['precision']}, batch {train['batch_size']}, lr {train['learning_rate']:g}, {train['recipe']}", ""]
    if step:
        lines.append(f"- {train['steps']} steps (planned {step['steps']}) at {step['step_seconds'] * 1000:.1f} ms a step "
                     f"({train['batch_size'] / step['step_seconds']:.0f} examples/s); final loss "
                     f"{train['final_loss']:.4g}" if train.get("final_loss") is not None else f"- {train['steps']} steps")
    archive = train.get("model_archive")
    if archive:
        lines.append(f"- model.tar.gz: {archive['contents']} ({archive['archive_bytes'] / 2**20:.1f} MiB; "
                     f"checkpoint {archive['checkpoint_bytes'] / 2**20:.1f} MiB)")
    lines += ["- commands, on the data the synthesis step wrote (the second resumes the first with more steps):"]
    lines += [f"  `{command.split(' -m ', 1)[-1]}`" for command in train["commands"]]
    return lines


def _trained(results: dict) -> list[str]:
    checks = results.get("trained")
    if not checks:
        return []
    lines = ["", "## The trained model"]
    evaluation = checks.get("evaluate")
    if evaluation and "error" not in evaluation:
        lines += ["", f"Held-out voices, {evaluation['questions']} questions ({evaluation['decoding']} decoding):", "",
                  "| task | questions | acc@20ms | acc@40ms | acc@100ms | MAD |", "|---|---|---|---|---|---|"]
        for task, scores in evaluation["tasks"].items():
            lines.append(f"| {task} | {scores['count']} | {scores['acc@20ms']:.1%} | {scores['acc@40ms']:.1%} | "
                         f"{scores['acc@100ms']:.1%} | {scores['mad_ms']:.0f} ms |")
    elif evaluation:
        lines += ["", f"- evaluation failed: {evaluation['error']}"]
    export = checks.get("export")
    if export and "error" not in export:
        lines += ["", f"- exported to ONNX fp32 in {export['seconds']} s ({sum(export['bytes'].values()) / 2**20:.1f} MiB)"]
    elif export:
        lines += ["", f"- export failed: {export['error']}"]
    return lines + _comparisons(checks, results)


def _environment(results: dict) -> list[str]:
    found = results.get("environment")
    if not found:
        return []
    packages = found.get("packages", {})
    names = ("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "onnxslim", "numpy", "soundfile", "soxr")
    lines = ["", "## Environment", "",
             f"- GPU: {found.get('nvidia_smi', 'n/a')}",
             f"- torch: {found.get('torch')}",
             f"- Python {found['python']} on {found['machine']}, {found['cpus']} CPUs; "
             + ", ".join(f"{name} {packages[name]}" for name in names if name in packages)]
    bootstrap = found.get("bootstrap")
    if bootstrap:
        wheels, debs = bootstrap["wheels"], bootstrap["debs"]
        lines.append(f"- from the kit: {len(wheels.get('installed', []))} wheels"
                     + (f" ({wheels.get('note') or wheels.get('error')})" if not wheels.get("installed") else "")
                     + f", {len(debs.get('unpacked', []))} .deb packages"
                     + (f" ({len(debs.get('linked', []))} libraries linked, {len(debs.get('from_system', []))} taken from the system)"
                        if debs.get("unpacked") else f" ({debs.get('note') or debs.get('error')})"))
    return lines


def training_chart(train: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no training chart", file=sys.stderr)
        return
    steps, losses = zip(*train["losses"])
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, losses)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title(f"{train['backbone']}, {train['precision']}, batch {train['batch_size']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
