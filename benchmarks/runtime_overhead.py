"""The runtime's own overhead (read + resample + features + tokenize + decode) against the forward pass.

    python -m framestamp.benchmarks.runtime_overhead [--artifact DIR ...] [--out benchmarks/results/cpu]

Audio is real synthetic speech tiled to 10, 30 and 60 s and stored as 44.1 kHz stereo FLAC, so reading
includes decoding, downmixing and resampling to 16 kHz. Every stage is the function the Locator calls;
the end-to-end time is Locator.run itself. Also reports the time and peak resident memory of a fresh
process answering one question about a 10-minute file. Median and min/max over repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from framestamp.runtime.artifact import SHIPPED_ARTIFACT
from framestamp.runtime.audio import load_audio
from framestamp.runtime.decoding import posterior_mode
from framestamp.runtime.features import log_mel
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.locator import Locator, Query
from framestamp.runtime.prompts import pad_prompts, prompt_ids, render_prompt

FILE_RATE = 44_100
QUESTION = render_prompt("word", {"word": "doctor", "occurrence": 1})

LONG_FILE_RUN = """
import json, resource, sys, time
from framestamp.runtime.locator import Locator
locator = Locator(sys.argv[1], threads=int(sys.argv[3]))
start = time.perf_counter()
locator.word(sys.argv[2], "doctor")
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def speech_files(folder: Path, seconds: float, count: int) -> list[Path]:
    """``count`` different 44.1 kHz stereo FLAC files of ``seconds`` of tiled synthetic speech."""
    import soundfile
    import soxr

    from framestamp.cli import main

    source = folder / "source"
    if not (source / "manifest.jsonl").is_file():
        main(["synth", str(source), "--tasks", "words", "--count", "8", "--seed", "3"])
    clips = sorted((source / "words").rglob("*.flac"))
    files = []
    for index in range(count):
        path = folder / f"speech-{seconds:g}s-{index}.flac"
        if not path.is_file():
            samples = np.concatenate([load_audio(clip) for clip in np.roll(clips, index)])
            samples = np.tile(samples, int(np.ceil(seconds * 16_000 / len(samples))))[: int(seconds * 16_000)]
            samples = soxr.resample(samples, 16_000, FILE_RATE)
            soundfile.write(path, np.stack([samples, 0.9 * samples], axis=1), FILE_RATE)
        files.append(path)
    return files


def timed(function, repeats: int) -> tuple[list[float], object]:
    result = function()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        timings.append(time.perf_counter() - start)
    return timings, result


def stages(locator: Locator, files: list[Path], repeats: int) -> dict:
    """Each stage of one batch, as the Locator runs it."""
    read, samples = timed(lambda: [load_audio(path) for path in files], repeats)
    features, mels = timed(lambda: [log_mel(s, locator.settings) for s in samples], repeats)
    frames = [audio_frames_for_mel(mel.shape[1]) for mel in mels]
    tokenize, prompts = timed(lambda: pad_prompts([prompt_ids(locator.tokenizer, QUESTION, f) for f in frames],
                                                  locator.pad_id), repeats)
    mel_lengths = np.array([mel.shape[1] for mel in mels])
    batch = np.zeros((len(mels), mels[0].shape[0], int(mel_lengths.max())), np.float32)
    for row, mel in enumerate(mels):
        batch[row, :, : mel.shape[1]] = mel

    def forward():
        audio, counts = locator.graphs.encode(batch, mel_lengths)
        return locator.graphs.scores(*prompts, audio, counts)[..., 0], counts

    forward_times, (scores, counts) = timed(forward, repeats)
    decode, _ = timed(lambda: [posterior_mode(scores[row, : counts[row]].astype(np.float64), 1)
                               for row in range(len(files))], repeats)
    end_to_end, _ = timed(lambda: locator.run([Query(str(path), "word", {"word": "doctor", "occurrence": 1})
                                               for path in files]), repeats)
    median = {name: float(np.median(values)) for name, values in
              (("read_resample", read), ("features", features), ("tokenize", tokenize), ("forward", forward_times),
               ("decode", decode), ("end_to_end", end_to_end))}
    overhead = median["read_resample"] + median["features"] + median["tokenize"] + median["decode"]
    return {"median_seconds": median, "end_to_end_min": float(np.min(end_to_end)),
            "end_to_end_max": float(np.max(end_to_end)), "overhead_seconds": overhead,
            "overhead_fraction": overhead / (overhead + median["forward"])}


def long_file_run(artifact: Path, path: Path, threads: int) -> dict:
    """One question about a long file in a fresh process: its end-to-end seconds and peak resident bytes."""
    done = subprocess.run([sys.executable, "-c", LONG_FILE_RUN, str(artifact), str(path), str(threads)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, action="append",
                        help="artifact folder(s) to measure (default: the shipped model's)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 30, 60])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument("--memory-minutes", type=float, default=10.0, help="file length for the peak-memory run")
    # In-process up to 5 min: the decoder's attention is quadratic, and 10 min needs ~20 GB on its own.
    parser.add_argument("--scaling", type=float, nargs="*", default=[10, 30, 60, 120, 300],
                        help="audio lengths (s) for the first artifact's end-to-end scaling curve at batch 1 (none: skip)")
    parser.add_argument("--out", type=Path, help="folder for runtime_overhead.json and .md")
    parser.add_argument("--work", type=Path, help="where to keep the generated audio (default: a temporary folder)")
    args = parser.parse_args(argv)
    artifacts = args.artifact or [SHIPPED_ARTIFACT]
    with tempfile.TemporaryDirectory(prefix="framestamp-overhead.") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for artifact in artifacts:
            locator = Locator(artifact, threads=args.threads, batch_size=max(args.batch_sizes))
            for seconds in args.seconds:
                for batch_size in args.batch_sizes:
                    measured = stages(locator, speech_files(work, seconds, batch_size), args.repeats)
                    rows.append({"artifact": artifact.name, "parameters": locator.manifest["backbone"]["num_parameters"],
                                 "seconds": seconds, "batch_size": batch_size, **measured})
                    print(f"{artifact.name}: {seconds:g} s x{batch_size}: forward "
                          f"{measured['median_seconds']['forward'] * 1000:.1f} ms, overhead "
                          f"{measured['overhead_seconds'] * 1000:.1f} ms ({measured['overhead_fraction']:.1%})", flush=True)
        scaling = []
        for artifact in artifacts[:1]:  # the first artifact's curve
            locator = Locator(artifact, threads=args.threads)
            for seconds in args.scaling or []:
                measured = stages(locator, speech_files(work, seconds, 1), max(1, min(args.repeats, 3)))
                scaling.append({"artifact": artifact.name, "seconds": seconds, **measured})
                print(f"{artifact.name}: {seconds:g} s end to end {measured['median_seconds']['end_to_end']:.3f} s",
                      flush=True)
        del locator  # the peak-memory runs get the machine's memory to themselves
        long_file = speech_files(work, args.memory_minutes * 60, 1)[0]
        long_runs = {artifact.name: long_file_run(artifact, long_file, args.threads) for artifact in artifacts[:1]}
    report = {"command": "python -m framestamp.benchmarks.runtime_overhead " + " ".join(argv or sys.argv[1:]),
              "machine": {"processor": platform.processor() or platform.machine(), "threads": args.threads,
                          "python": platform.python_version()},
              "rows": rows, "scaling": scaling, "long_file": {"minutes": args.memory_minutes, "runs": long_runs}}
    table = markdown(report)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runtime_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "runtime_overhead.md").write_text(table)
        if scaling:
            chart(scaling, long_runs, args.memory_minutes * 60, args.out / "runtime_scaling.png")
    return 0


STAGES = ("read_resample", "features", "tokenize", "forward", "decode")


def chart(scaling: list[dict], long_runs: dict, long_seconds: float, path: Path) -> None:
    """Each stage's time against audio length, log-log: what grows, and how fast."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install 'framestamp[plot]')", file=sys.stderr)
        return
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for artifact in sorted({row["artifact"] for row in scaling}):
        rows = [row for row in scaling if row["artifact"] == artifact]
        lengths = [row["seconds"] for row in rows]
        axis.plot(lengths, [row["median_seconds"]["end_to_end"] for row in rows], "k-o", label=f"{artifact}: end to end")
        for stage in STAGES:
            axis.plot(lengths, [max(row["median_seconds"][stage], 1e-6) for row in rows], "--", marker=".", label=stage)
        if artifact in long_runs:
            axis.plot([long_seconds], [long_runs[artifact]["seconds"]], "rs",
                      label=f"{long_seconds / 60:g} min, one cold run in a fresh process")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("audio (s)")
    axis.set_ylabel("seconds (median)")
    axis.set_title("Runtime cost against audio length, batch 1", fontsize=10)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(report: dict) -> str:
    lines = ["# Runtime overhead: read + resample + features + tokenize + decode vs the forward pass", "",
             f"Reproduce: `{report['command']}`", "",
             f"CPU ({report['machine']['processor']}), ONNX Runtime with {report['machine']['threads']} threads, "
             "median of repeats; audio is 44.1 kHz stereo FLAC.", "",
             "| model | params | audio | batch | read+resample | features | tokenize | forward | decode | "
             "end-to-end (min-max) | overhead |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        m = {k: v * 1000 for k, v in row["median_seconds"].items()}
        lines.append(f"| {row['artifact']} | {row['parameters'] / 1e6:.1f}M | {row['seconds']:g} s | {row['batch_size']} | "
                     f"{m['read_resample']:.1f} ms | {m['features']:.1f} ms | {m['tokenize']:.2f} ms | "
                     f"{m['forward']:.1f} ms | {m['decode']:.2f} ms | {m['end_to_end']:.1f} ms "
                     f"({row['end_to_end_min'] * 1000:.1f}-{row['end_to_end_max'] * 1000:.1f}) | "
                     f"{row['overhead_fraction']:.1%} |")
    if report.get("scaling"):
        lines += ["", "## End to end against audio length (batch 1; chart: runtime_scaling.png)", "",
                  "| model | audio | end-to-end | forward | features | read+resample | decode | overhead |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in report["scaling"]:
            m = row["median_seconds"]
            lines.append(f"| {row['artifact']} | {row['seconds']:g} s | {m['end_to_end']:.3f} s | {m['forward']:.3f} s | "
                         f"{m['features']:.3f} s | {m['read_resample']:.3f} s | {m['decode'] * 1000:.2f} ms | "
                         f"{row['overhead_fraction']:.1%} |")
    long = report["long_file"]
    lines += ["", f"One question about a {long['minutes']:g}-minute file, in a fresh process (cold: the first call "
              "allocates everything): " + ", ".join(f"{name}: end to end {run['seconds']:.1f} s, peak resident memory "
                                                    f"{run['peak_bytes'] / 2**30:.2f} GiB"
                                                    for name, run in long["runs"].items()) + ".",
              "The decoder attends over every audio frame (25 per second) at once, so its attention scores grow with the "
              "square of the length: memory, not time, is what limits one pass over long audio on a small machine.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
