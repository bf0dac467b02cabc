"""Training-free audio-token merging: accuracy against decoder speed, local merging and the global control.

    framestamp bench merging [--manifest runs/final/eval-voices/manifest.jsonl] [--out benchmarks/results/cpu]

Accuracy: the shipped model (PyTorch, ``framestamp evaluate --merge``) on the word, transcript and
event questions of a held-out manifest, at each merge ratio, local and global. Speed: the decoder
pass alone (prompt + audio tokens -> per-frame scores) at a clip length, ONNX Runtime and PyTorch,
one thread, median of repeats, with the merging's own NumPy cost beside it. The ONNX graphs come
from exporting the checkpoint (a decoder that takes merged tokens) unless --artifact names one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATIOS = (0.0, 0.2, 0.4, 0.6)
KINDS = ("local", "global")
TASKS = ("word", "transcript", "event")
# Other settings measured at one ratio: what the defaults (positions "first", head on frames) were chosen against.
VARIANTS = (("positions", "mean"), ("positions", "compact"), ("head", "segments"))
VARIANT_RATIO = 0.4


def accuracy_rows(checkpoint: Path, manifest: Path, ratios, limit: int | None, variants: bool) -> list[dict]:
    """acc@40ms per task for every (ratio, kind), and the variants at VARIANT_RATIO (local)."""
    from framestamp.data.manifest import balanced_subset, read_manifest
    from framestamp.runtime.features import FeatureSettings
    from framestamp.runtime.merging import merged_length
    from framestamp.training.batches import AudioCache
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import evaluate
    from framestamp.training.model import Merging

    model, description = load_checkpoint(checkpoint)
    examples = [example for example in read_manifest(manifest) if example.task in TASKS]
    if limit:
        examples = balanced_subset(examples, limit)
    features = AudioCache(manifest.parent, FeatureSettings.from_json(description["features"]))
    frames = [int(round(example.duration / 0.04)) for example in {example.audio: example for example in examples}.values()]
    settings = [(ratio, kind, {}) for ratio in ratios for kind in KINDS if ratio > 0 or kind == "local"]
    if variants:
        settings += [(VARIANT_RATIO, "local", {name: value}) for name, value in VARIANTS]
    rows = []
    for ratio, kind, extra in settings:
        merging = Merging(ratio, kind, **extra) if ratio > 0 else None
        started = time.perf_counter()
        result = evaluate(model, examples, features, batch_size=8, progress=False, merging=merging)
        removed = 1 - sum(merged_length(f, ratio) for f in frames) / sum(frames)
        rows.append({"ratio": ratio, "kind": kind if ratio > 0 else "none", **extra, "tokens_removed": removed,
                     "acc40": {task: result.tasks[task].accuracy[0.04] for task in TASKS if task in result.tasks},
                     "questions": {task: result.tasks[task].count for task in TASKS if task in result.tasks},
                     "seconds": time.perf_counter() - started})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def clip_audio(manifest: Path, seconds: float) -> np.ndarray:
    """Speech of ``seconds`` from the manifest's clips, joined end to end."""
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.audio import load_audio

    pieces, total, wanted = [], 0, int(seconds * 16_000)
    for example in read_manifest(manifest):
        if total >= wanted:
            break
        samples = load_audio(manifest.parent / example.audio)
        pieces.append(samples)
        total += samples.size
    return np.concatenate(pieces)[:wanted]


def interleaved_ms(functions: dict, repeats: int) -> dict:
    """Best and median milliseconds of each function, timed in turns (a busy machine slows all alike)."""
    timings = {name: [] for name in functions}
    for function in functions.values():
        function()  # warm-up
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            timings[name].append(1e3 * (time.perf_counter() - started))
    return {name: {"best": min(values), "median": float(np.median(values))} for name, values in timings.items()}


def speed_rows(checkpoint: Path, artifact: Path, manifest: Path, ratios, seconds_list, repeats: int) -> list[dict]:
    """Decoder-pass time per ratio and clip length: ONNX Runtime and PyTorch, one thread; merging's cost."""
    import torch

    from framestamp.runtime.artifact import GraphSessions
    from framestamp.runtime.features import DEFAULT_SETTINGS, log_mel
    from framestamp.runtime.merging import merge_batch
    from framestamp.runtime.prompts import pad_prompts, prompt_ids, render_prompt
    from framestamp.training.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model, _ = load_checkpoint(checkpoint)
    model.eval()
    sessions = GraphSessions.open(artifact, threads=1)
    question = render_prompt("word", {"word": "time", "occurrence": 1})
    rows = []
    for seconds in seconds_list:
        mel = log_mel(clip_audio(manifest, seconds), DEFAULT_SETTINGS)[None]
        audio, frame_counts = sessions.encode(mel, np.array([mel.shape[2]]))
        functions, shapes = {}, {}
        for ratio in ratios:
            # Local and global merging hand the decoder the same number of tokens: one workload per ratio.
            merged, tokens, positions, places = audio, frame_counts, None, None
            if ratio > 0:
                merged, tokens, positions, places, _ = merge_batch(audio, frame_counts, ratio, "local")
                for kind in KINDS:
                    functions[ratio, kind] = (lambda r=ratio, k=kind: merge_batch(audio, frame_counts, r, k))
            prompt = pad_prompts([prompt_ids(model.tokenizer, question, int(tokens[0]))], model.pad_id)
            functions[ratio, "onnxruntime"] = (
                lambda p=prompt, m=merged, t=tokens, o=positions, q=places: sessions.scores(*p, m, t, o, q))
            tensors = [torch.from_numpy(np.asarray(value)) for value in (*prompt, merged, tokens)]
            if ratio > 0:
                tensors += [torch.from_numpy(positions), torch.from_numpy(places)]
            functions[ratio, "pytorch"] = (lambda t=tensors: model.frame_scores(*t))
            shapes[ratio] = (int(tokens[0]), int(prompt[0].shape[1]))
        with torch.no_grad():  # longer clips cost more per pass and vary less: fewer turns
            timed = interleaved_ms(functions, max(20, int(repeats * seconds_list[0] / seconds)))
        for ratio, (tokens, prompt_tokens) in shapes.items():
            rows.append({"seconds": seconds, "ratio": ratio, "audio_tokens": tokens, "frames": int(frame_counts[0]),
                         "prompt_tokens": prompt_tokens, "decoder_ms_onnxruntime": timed[ratio, "onnxruntime"],
                         "decoder_ms_pytorch": timed[ratio, "pytorch"],
                         "merge_ms": {kind: timed[ratio, kind] for kind in KINDS if (ratio, kind) in timed}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def tables(accuracy: list[dict], speed: list[dict], speed_seconds: float) -> str:
    base = next(row for row in accuracy if row["ratio"] == 0)
    timing = {row["ratio"]: row for row in speed if row["seconds"] == speed_seconds}
    base_time = timing[0.0]
    lines = [f"| ratio | merging | audio tokens removed | word | transcript | event | decoder pass, {speed_seconds:g} s clip "
             "(ONNX Runtime / PyTorch) | faster than unmerged | merging's own cost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in accuracy:
        if any(name in row for name, _ in VARIANTS):
            continue
        acc = [f"{100 * row['acc40'][task]:.1f}%" + ("" if row is base else
                                                     f" ({100 * (row['acc40'][task] - base['acc40'][task]):+.1f})")
               for task in TASKS]
        time_row = timing[row["ratio"]]
        merge_ms = time_row["merge_ms"].get(row["kind"], {"best": 0.0})["best"]
        faster = 1 - time_row["decoder_ms_onnxruntime"]["best"] / base_time["decoder_ms_onnxruntime"]["best"]
        faster_torch = 1 - time_row["decoder_ms_pytorch"]["best"] / base_time["decoder_ms_pytorch"]["best"]
        lines.append(f"| {row['ratio']:g} | {row['kind']} | {100 * row['tokens_removed']:.0f}% | {' | '.join(acc)} | "
                     f"{time_row['decoder_ms_onnxruntime']['best']:.2f} / {time_row['decoder_ms_pytorch']['best']:.2f} ms | "
                     f"{100 * faster:.0f}% / {100 * faster_torch:.0f}% | {merge_ms:.2f} ms |")
    variants = [row for row in accuracy if any(name in row for name, _ in VARIANTS)]
    if variants:
        default = next(row for row in accuracy if row["ratio"] == VARIANT_RATIO and row["kind"] == "local"
                       and not any(name in row for name, _ in VARIANTS))
        lines += ["", f"Settings at ratio {VARIANT_RATIO:g}, local (acc@40ms):", "",
                  "| setting | word | transcript | event |", "|---|---|---|---|",
                  "| positions first, head on frames (the defaults) | "
                  + " | ".join(f"{100 * default['acc40'][t]:.1f}%" for t in TASKS) + " |"]
        for row in variants:
            name, value = next((name, row[name]) for name, _ in VARIANTS if name in row)
            lines.append(f"| {name} {value} | " + " | ".join(f"{100 * row['acc40'][t]:.1f}%" for t in TASKS) + " |")
    scaling = sorted({row["seconds"] for row in speed})
    if len(scaling) > 1:
        lines += ["", "Decoder pass by clip length (ONNX Runtime / PyTorch, one thread, best of the turns):", "",
                  "| clip | " + " | ".join(f"ratio {r:g}" for r in sorted(timing)) + " |", "|---|" + "---|" * len(timing)]
        for seconds in scaling:
            lines.append(f"| {seconds:g} s | " + " | ".join(
                f"{r['decoder_ms_onnxruntime']['best']:.1f} / {r['decoder_ms_pytorch']['best']:.1f} ms"
                for r in sorted((r for r in speed if r["seconds"] == seconds), key=lambda r: r["ratio"])) + " |")
    return "\n".join(lines)


def plot(accuracy: list[dict], speed: list[dict], speed_seconds: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timing = {r["ratio"]: r["decoder_ms_onnxruntime"]["best"] for r in speed if r["seconds"] == speed_seconds}
    figure, axes = plt.subplots(1, len(TASKS), figsize=(12, 3.8), sharey=True)
    for axis, task in zip(axes, TASKS):
        for kind, style in (("local", "o-"), ("global", "s--")):
            rows = [r for r in accuracy if (r["kind"] == kind or r["ratio"] == 0)
                    and not any(name in r for name, _ in VARIANTS)]
            speedup = [timing[0.0] / timing[r["ratio"]] for r in rows]
            axis.plot(speedup, [100 * r["acc40"][task] for r in rows], style, label=kind)
            for x, r in zip(speedup, rows):
                axis.annotate(f"{r['ratio']:g}", (x, 100 * r["acc40"][task]), fontsize=7, xytext=(3, 3),
                              textcoords="offset points")
        axis.set_title(task)
        axis.set_xlabel(f"decoder speed-up ({speed_seconds:g} s clip, ONNX Runtime)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("acc@40ms (%)")
    axes[0].legend(title="merging")
    figure.suptitle("Audio-token merging: accuracy against decoder speed (labels: merge ratio)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("framestamp/models/omni-tiny-synth"))
    parser.add_argument("--manifest", type=Path, default=Path("runs/final/eval-voices/manifest.jsonl"))
    parser.add_argument("--artifact", type=Path, help="an exported artifact of the checkpoint whose decoder takes "
                                                      "merged tokens (default: export one to a temporary folder)")
    parser.add_argument("--ratios", default=",".join(f"{r:g}" for r in RATIOS))
    parser.add_argument("--limit", type=int, help="at most N questions, spread over the tasks (default: all)")
    parser.add_argument("--seconds", default="8,30,120", help="clip lengths for the decoder timing (the first is the table's)")
    parser.add_argument("--repeats", type=int, default=300, help="timed turns at the first clip length (fewer for longer ones)")
    parser.add_argument("--no-variants", action="store_true", help="skip the position and head settings")
    parser.add_argument("--accuracy-from", type=Path, metavar="JSON",
                        help="take the accuracy rows from an earlier merging.json (time the decoder again only)")
    parser.add_argument("--out", type=Path, help="folder for merging.json, merging.md and merging.png")
    args = parser.parse_args(argv)
    ratios = [float(r) for r in args.ratios.split(",")]
    seconds_list = [float(s) for s in args.seconds.split(",")]
    with tempfile.TemporaryDirectory(prefix="framestamp-merging.") as scratch:
        artifact = args.artifact
        if artifact is None:
            from framestamp.export.artifact import export_fp32

            artifact = Path(scratch) / "artifact"
            export_fp32(args.checkpoint, artifact)
        speed = speed_rows(args.checkpoint, artifact, args.manifest, ratios, seconds_list, args.repeats)
    accuracy_command = None  # when the accuracy rows come from an earlier run, the command that measured them
    if args.accuracy_from:
        earlier = json.loads(args.accuracy_from.read_text())
        accuracy, accuracy_command = earlier["accuracy"], earlier.get("accuracy_command") or earlier.get("command")
    else:
        accuracy = accuracy_rows(args.checkpoint, args.manifest, ratios, args.limit, not args.no_variants)
    table = tables(accuracy, speed, seconds_list[0])
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        command = "OMP_NUM_THREADS=1 framestamp bench merging " + " ".join(sys.argv[1:] if argv is None else argv)
        machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "python": platform.python_version()}
        (args.out / "merging.json").write_text(json.dumps({"command": command, "accuracy_command": accuracy_command,
                                                           "machine": machine, "accuracy": accuracy, "speed": speed},
                                                          indent=2) + "\n")
        plot(accuracy, speed, seconds_list[0], args.out / "merging.png")
        (args.out / "merging.md").write_text(
            f"# Audio-token merging: accuracy against decoder speed\n\nReproduce: `{command}`"
            + (f" (accuracy rows measured by `{accuracy_command}`)" if accuracy_command else "")
            + f"\n\nMachine: {machine}\n\n"
            f"Model `{args.checkpoint}`, questions of `{args.manifest}` (acc@40ms; in brackets: points against "
            f"unmerged). Decoder pass: prompt and audio tokens to per-frame scores, batch 1, one thread, the best of "
            f"{args.repeats} turns at {seconds_list[0]:g} s (fewer for longer clips) timed in turns, on a machine "
            f"shared with other jobs (medians in merging.json).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
