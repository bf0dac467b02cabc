"""Long recordings: windowed answers against one pass, and time and memory from 10 s to 60 minutes.

    framestamp bench long-audio accuracy runs/final/eval-long/manifest.jsonl --windows none,12/4,20/4,30/6
    framestamp bench long-audio tiled runs/final/eval-long/manifest.jsonl --seconds 300 --windows 20/4
    framestamp bench long-audio first runs/final/eval-voices/manifest.jsonl --seconds 180 --recordings 5
    framestamp bench long-audio scaling --out benchmarks/results/cpu

accuracy: acc@40ms of word and transcript questions on a manifest, for each window/overlap in seconds
("none": one pass over the whole clip), through the Locator on an exported artifact.

tiled: the manifest's transcript clips joined end to end into one recording of about --seconds, its
transcript the clips' transcripts in order, every word's true start known: acc@40ms of the whole
transcript answered over the recording, per window/overlap.

first: recordings built the same way, each from a different clip on; the first occurrence of words spread
evenly over where they are first heard, asked of the whole recording: acc@40ms by where that is.

scaling: one fresh process per length and backend answers a transcript question (every window is
asked) and a word question about a file of tiled synthetic speech; wall time and peak resident memory
(ru_maxrss) per length. "runtime" is the Locator on ONNX Runtime; "pytorch" is the same Locator with
the checkpoint's PyTorch model in place of the graphs; "one pass" columns run without windows, as far
as memory allows.
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
from framestamp.runtime.chain import CHAIN_SECONDS
from framestamp.runtime.locator import AUTO_WINDOWS, DEFAULT_OVERLAP_SECONDS, DEFAULT_WINDOW_SECONDS
from framestamp.runtime.pacing import WEIGHT as PACE

SHIPPED_CHECKPOINT = SHIPPED_ARTIFACT.parent / "omni-tiny-synth"
LENGTHS = (10, 30, 60, 150, 300, 600, 1200, 2400, 3600)  # seconds
ONE_PASS_LENGTHS = (10, 30, 60, 150)  # one pass beyond ~3 minutes needs several GiB (the decoder's attention)


def parse_window(text: str) -> tuple[float | str | None, float]:
    """A --windows entry: "20/4" (window / overlap seconds), "none" (one pass) or "auto" (the runtime's default)."""
    if text == "none":
        return None, 0.0
    if text == AUTO_WINDOWS:
        return AUTO_WINDOWS, DEFAULT_OVERLAP_SECONDS
    window, _, overlap = text.partition("/")
    return float(window), float(overlap or 0)


# ------------------------------------------------------------------------------------------ accuracy
def accuracy(manifest: Path, artifact: Path, windows: list[str], every: int, threads: int,
             chains: list[float] = (CHAIN_SECONDS,), tasks: tuple[str, ...] = ("word", "transcript")) -> list[dict]:
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.locator import Locator, Query

    examples = read_manifest(manifest)
    chosen = ([e for e in examples if e.task == "transcript"] if "transcript" in tasks else []) + \
        ([e for e in examples if e.task == "word"][::every] if "word" in tasks else [])
    rows = []
    for text in windows:
        window, overlap = parse_window(text)
        for chain in chains:
            locator = Locator(artifact, threads=threads, window_seconds=window, overlap_seconds=overlap,
                              chain_seconds=chain or None)
            hits = {task: [] for task in ("word", "word k>=2", "transcript")}
            start = time.perf_counter()
            for example in chosen:
                query = Query(str(manifest.parent / example.audio), example.task, dict(example.prompt),
                              count=len(example.times))
                (answer,) = locator.run([query])
                right = list(np.abs(np.asarray(answer.times) - np.asarray(example.times)) <= 0.04)
                hits[example.task] += right
                if example.task == "word" and example.prompt["occurrence"] >= 2:
                    hits["word k>=2"] += right
            rows.append({"window": text, "chain_after": chain, "seconds": time.perf_counter() - start,
                         **{f"{task}_acc40": float(np.mean(found)) if found else None for task, found in hits.items()},
                         **{f"{task}_events": len(found) for task, found in hits.items()}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def accuracy_markdown(rows: list[dict], command: str, manifest: Path) -> str:
    def cell(row, task):
        return "-" if row.get(f"{task}_acc40") is None else f"{row[f'{task}_acc40']:.1%}"

    lines = [f"# Windowed vs one pass on {manifest}", "", f"`{command}`", "",
             "acc@40ms (ordered decoding); word: k-th occurrence questions, transcript: every word's start; "
             "chain after: a k-th occurrence chained past that many seconds (0: never; runtime/chain.py).", "",
             "| window / overlap (s) | chain after (s) | word acc@40 | word k>=2 acc@40 | transcript acc@40 | word events | "
             "word k>=2 events | transcript events | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['window']} | {row.get('chain_after', 0):g} | {cell(row, 'word')} | {cell(row, 'word k>=2')} | "
                     f"{cell(row, 'transcript')} | {row['word_events']} | {row.get('word k>=2_events', '-')} | "
                     f"{row['transcript_events']} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ tiled
def tiled_recording(manifest: Path, seconds: float, path: Path, cut: bool = False,
                    start: int = 0) -> tuple[list[str], np.ndarray]:
    """The manifest's transcript clips, in order from the ``start``-th and round again, joined into a 16 kHz
    FLAC at ``path`` (written clip by clip) until it holds ``seconds``: whole clips (it may run a clip past),
    or with ``cut`` exactly ``seconds``, the last clip cut short with the words that start before the cut.
    Returns (its words, their starts)."""
    import soundfile

    from framestamp.data.manifest import read_manifest

    clips = [e for e in read_manifest(manifest) if e.task == "transcript"]
    if not clips:
        raise SystemExit(f"{manifest}: no transcript lines to tile")
    total = int(seconds * 16_000)
    words, starts, written, index = [], [], 0, start
    with soundfile.SoundFile(path, "w", samplerate=16_000, channels=1, format="FLAC") as handle:
        while written < total:
            clip = clips[index % len(clips)]
            sound, rate = soundfile.read(manifest.parent / clip.audio, dtype="float32")
            if rate != 16_000 or sound.ndim != 1:
                raise SystemExit(f"{clip.audio}: tiling takes 16 kHz mono clips, got {rate} Hz, shape {sound.shape}")
            if cut:
                sound = sound[:total - written]
            kept = [(word, t) for word, t in zip(clip.prompt["transcript"].split(), clip.times) if t < len(sound) / 16_000]
            words += [word for word, _ in kept]
            starts += [written / 16_000 + t for _, t in kept]
            handle.write(sound)
            written += len(sound)
            index += 1
    return words, np.asarray(starts)


def tiled(manifest: Path, artifact: Path, seconds: float, windows: list[str], threads: int, pace: float = PACE) -> list[dict]:
    from framestamp.runtime.locator import Locator

    rows = []
    with tempfile.TemporaryDirectory(prefix="framestamp-tiled.") as scratch:
        path = Path(scratch) / "tiled.flac"
        words, starts = tiled_recording(manifest, seconds, path)
        for text in windows:
            window, overlap = parse_window(text)
            locator = Locator(artifact, threads=threads, window_seconds=window, overlap_seconds=overlap, pace=pace)
            began = time.perf_counter()
            answer = locator.transcript(str(path), " ".join(words))
            errors = np.abs(np.asarray(answer.times) - starts)
            rows.append({"window": text, "audio_seconds": answer.duration, "words": len(words),
                         "acc20": float(np.mean(errors <= 0.02 + 1e-9)), "acc40": float(np.mean(errors <= 0.04 + 1e-9)),
                         "acc100": float(np.mean(errors <= 0.1 + 1e-9)), "seconds": time.perf_counter() - began})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def tiled_markdown(rows: list[dict], command: str, manifest: Path) -> str:
    lines = [f"# One transcript over {manifest}'s clips joined end to end", "", f"`{command}`", "",
             "Word starts within 20 / 40 / 100 ms of the truth, the whole transcript answered over the recording.", "",
             "| window / overlap (s) | audio | words | acc@20 | acc@40 | acc@100 | seconds |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['window']} | {row['audio_seconds']:.0f} s | {row['words']} | {row['acc20']:.1%} | "
                     f"{row['acc40']:.1%} | {row['acc100']:.1%} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


FIRST_BUCKETS = ((0.0, 30.0), (30.0, 120.0), (120.0, float("inf")))  # where a word is first heard, seconds


def first_heard(manifest: Path, artifact: Path, seconds: float, recordings: int, questions: int, windows: list[str],
                threads: int) -> list[dict]:
    """The first occurrence of a word asked over recordings of ``seconds`` (the manifest's transcript clips
    end to end, each recording from a different clip on), the words spread evenly over where they are first
    heard; acc@40ms overall and by where, per window/overlap."""
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.locator import Locator

    clips = sum(e.task == "transcript" for e in read_manifest(manifest))
    rows = []
    with tempfile.TemporaryDirectory(prefix="framestamp-first.") as scratch:
        asked = []
        for number in range(recordings):
            path = Path(scratch) / f"recording-{number}.flac"
            words, starts = tiled_recording(manifest, seconds, path, start=number * max(clips // recordings, 1))
            first: dict[str, float] = {}
            for word, start in zip(words, starts):
                first.setdefault(word, float(start))
            order = sorted(first, key=first.get)
            picks = np.unique(np.linspace(0, len(order) - 1, questions).round().astype(int))
            asked += [(path, order[i], first[order[i]]) for i in picks]
        for text in windows:
            window, overlap = parse_window(text)
            locator = Locator(artifact, threads=threads, window_seconds=window, overlap_seconds=overlap)
            began = time.perf_counter()
            right = [abs(locator.word(str(path), word, 1).times[0] - truth) <= 0.04 + 1e-9 for path, word, truth in asked]
            heard_at = np.array([truth for *_, truth in asked])
            rows.append({"window": text, "questions": len(asked), "acc40": float(np.mean(right)),
                         "by_where": [{"from": low, "to": high, "questions": int(np.sum(inside)),
                                       "acc40": float(np.mean(np.asarray(right)[inside])) if inside.any() else None}
                                      for low, high in FIRST_BUCKETS
                                      for inside in [(heard_at >= low) & (heard_at < high)]],
                         "seconds": time.perf_counter() - began})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def first_markdown(rows: list[dict], command: str, manifest: Path, seconds: float) -> str:
    spans = [f"{low:g}-{high:g} s" if high != float("inf") else f"from {low:g} s" for low, high in FIRST_BUCKETS]
    lines = [f"# A word's first occurrence over {seconds:g} s of {manifest}'s clips end to end", "", f"`{command}`", "",
             "Answers within 40 ms of where the word is first heard, by where that is.", "",
             "| window / overlap (s) | questions | acc@40 | " + " | ".join(spans) + " | seconds |",
             "|---|---|---|" + "---|" * len(spans) + "---|"]
    for row in rows:
        cells = [f"{b['acc40']:.1%} ({b['questions']})" if b["acc40"] is not None else "-" for b in row["by_where"]]
        lines.append(f"| {row['window']} | {row['questions']} | {row['acc40']:.1%} | " + " | ".join(cells)
                     + f" | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ scaling
class TorchGraphs:
    """The checkpoint's PyTorch model behind the Locator's graph interface (encode, scores)."""

    def __init__(self, checkpoint: Path, threads: int):
        import torch

        from framestamp.training.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = load_checkpoint(checkpoint)[0].eval()

    def encode(self, mel, mel_lengths):
        with self.torch.no_grad():
            audio, frame_counts = self.model.encode_audio(self.torch.from_numpy(mel), self.torch.from_numpy(mel_lengths))
        return audio.float().numpy(), frame_counts.numpy()

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts):
        arrays = (input_ids, attention_mask, audio_start, audio, frame_counts)
        with self.torch.no_grad():
            return self.model.frame_scores(*(self.torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)).scores.numpy()


RUN_ONE = """
import json, resource, sys, time
start = time.perf_counter()
backend, path, text, window, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
from framestamp.runtime.locator import Locator
locator = Locator("shipped", threads=threads, **({"window_seconds": float(window) or None} if window else {}))
if backend == "pytorch":
    from framestamp.benchmarks.long_audio import SHIPPED_CHECKPOINT, TorchGraphs
    locator.graphs = TorchGraphs(SHIPPED_CHECKPOINT, threads)
answer = locator.transcript(path, text).as_dict()
times = answer["times"]
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_mib": usage.ru_maxrss / 1024,
                  "answers": len(times), "in_order": all(a < b for a, b in zip(times, times[1:])),
                  "inside": all(0 <= t < answer["duration"] for t in times)}))
"""


def long_speech(folder: Path, seconds: float) -> tuple[Path, str]:
    """A 16 kHz FLAC of exactly ``seconds`` of synthetic speech (clips tiled), and its transcript."""
    from framestamp.cli import main

    source = folder / "source"
    if not (source / "manifest.jsonl").is_file():
        main(["synth", str(source), "--tasks", "words", "--count", "6", "--seed", "12", "--min-seconds", "8",
              "--max-seconds", "12", "--voices", "en-029,en-us-nyc"])
    path = folder / f"speech-{seconds:g}s.flac"
    words, _ = tiled_recording(source / "manifest.jsonl", seconds, path, cut=True)
    return path, " ".join(words)


def scaling(lengths: list[float], one_pass_up_to: float, threads: int, backends: list[str],
            pytorch_up_to: float = max(LENGTHS)) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="framestamp-long.") as scratch:
        for seconds in lengths:
            path, text = long_speech(Path(scratch), seconds)
            for backend in [b for b in backends if b != "pytorch" or seconds <= pytorch_up_to]:
                for windowed in (True, False) if seconds <= one_pass_up_to else (True,):
                    command = [sys.executable, "-c", RUN_ONE, backend, str(path), text, "" if windowed else "0",
                               str(threads)]
                    started = time.perf_counter()
                    done = subprocess.run(command, capture_output=True, text=True,
                                          env={**__import__("os").environ, "OMP_NUM_THREADS": str(threads)})
                    row = {"seconds_of_audio": seconds, "backend": backend, "windowed": windowed,
                           "wall_seconds": time.perf_counter() - started}
                    if done.returncode:
                        row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
                    else:
                        row.update(json.loads(done.stdout.strip().splitlines()[-1]))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def scaling_markdown(rows: list[dict], command: str) -> str:
    lines = [f"# Long recordings: time and peak memory from {rows[0]['seconds_of_audio']:g} s to "
             f"{rows[-1]['seconds_of_audio'] / 60:g} min", "", f"`{command}`", "",
             f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores (shared with other work "
             "while measured). One fresh process per row answers a transcript question (every window is asked) "
             "about tiled synthetic speech with the Locator (what `framestamp locate FILE --transcript TEXT` runs) on "
             "the shipped ONNX artifact for runtime, and with the checkpoint's PyTorch model in place of the graphs for "
             "pytorch, at --threads threads. Wall time "
             "includes start-up and imports; peak is the process's resident maximum (ru_maxrss). Windowed: "
             f"{DEFAULT_WINDOW_SECONDS:g} s windows, {DEFAULT_OVERLAP_SECONDS:g} s overlap (the default); one pass: "
             "`--window 0`. CPU s is the process's user + system time.", "",
             "| audio | backend | mode | wall s | CPU s | peak RSS MiB | answers | in order, inside the file |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        length = f"{row['seconds_of_audio']:g} s" if row["seconds_of_audio"] < 60 else f"{row['seconds_of_audio'] / 60:g} min"
        mode = "windowed" if row["windowed"] else "one pass"
        if "error" in row:
            lines.append(f"| {length} | {row['backend']} | {mode} | fails: {row['error']} | | | | |")
        else:
            lines.append(f"| {length} | {row['backend']} | {mode} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | {row['peak_mib']:.0f} | "
                         f"{row['answers']} | {'yes' if row['in_order'] and row['inside'] else 'NO'} |")
    lines += ["", "Growth per doubling of length beyond linear (time(2L) / (2 time(L)), windowed, L >= 5 min; wall and CPU):",
              ""]
    for backend in dict.fromkeys(row["backend"] for row in rows):
        for clock in ("seconds", "cpu_seconds"):
            timed = {row["seconds_of_audio"]: row[clock] for row in rows
                     if row["backend"] == backend and row["windowed"] and clock in row}
            ratios = [f"{length / 60:g}->{2 * length / 60:g} min: {timed[2 * length] / (2 * timed[length]):.2f}x"
                      for length in sorted(timed) if length >= 300 and 2 * length in timed]
            lines.append(f"- {backend}, {'wall' if clock == 'seconds' else 'CPU'}: " + (", ".join(ratios) or "not measured"))
    return "\n".join(lines) + "\n"


def scaling_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for backend in dict.fromkeys(row["backend"] for row in rows):
        for windowed in (True, False):
            chosen = [row for row in rows if row["backend"] == backend and row["windowed"] == windowed and "seconds" in row]
            if not chosen:
                continue
            label = f"{backend}, {'windowed' if windowed else 'one pass'}"
            style = "-o" if windowed else "--s"
            minutes = [row["seconds_of_audio"] / 60 for row in chosen]
            left.plot(minutes, [row["cpu_seconds"] for row in chosen], style, label=label)
            right.plot(minutes, [row["peak_mib"] / 1024 for row in chosen], style, label=label)
    # CPU time, not wall time: on a shared machine the work done is what scales with the audio.
    for axis, name in ((left, "CPU time, one thread (s)"), (right, "peak RSS (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("minutes of audio")
        axis.set_ylabel(name)
        axis.grid(True, which="both", alpha=0.3)
    right.axhline(2.0, color="tab:red", linewidth=0.8)
    left.legend(fontsize=8)
    figure.suptitle("A transcript question over long recordings: CPU time and peak memory (start-up included)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(out: Path | None, name: str, command: str, rows: list[dict], text: str) -> None:
    """Print the markdown table; with ``out``, also write it and the rows as NAME.md and NAME.json there."""
    print(text)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
        (out / f"{name}.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="framestamp bench long-audio", description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    scored = modes.add_parser("accuracy", help="windowed vs one pass, acc@40ms on a manifest")
    scored.add_argument("manifest", type=Path)
    scored.add_argument("--artifact", type=Path, default=SHIPPED_ARTIFACT)
    scored.add_argument("--windows", default="none,12/4",
                        help="comma-separated WINDOW/OVERLAP seconds, none (one pass) or auto (the runtime's default)")
    scored.add_argument("--every", type=int, default=1, help="score every N-th word question (all transcripts)")
    scored.add_argument("--chain-after", default=f"{CHAIN_SECONDS:g}",
                        help="comma-separated seconds past which a k-th occurrence is chained (0: never), each a row")
    scored.add_argument("--tasks", default="word,transcript", help="which questions to score: word, transcript or both")
    scored.add_argument("--threads", type=int, default=1)
    scored.add_argument("--out", type=Path)
    joined = modes.add_parser("tiled", help="one transcript over a manifest's clips joined end to end, acc@40ms")
    joined.add_argument("manifest", type=Path)
    joined.add_argument("--seconds", type=float, default=300.0, help="join clips until the recording is this long")
    joined.add_argument("--artifact", type=Path, default=SHIPPED_ARTIFACT)
    joined.add_argument("--windows", default=f"{DEFAULT_WINDOW_SECONDS:g}/{DEFAULT_OVERLAP_SECONDS:g}",
                        help="comma-separated WINDOW/OVERLAP seconds, or none (one pass: memory grows with the length)")
    joined.add_argument("--pace", type=float, default=PACE, help=f"the speaking-rate prior's weight (default {PACE}; 0: none)")
    joined.add_argument("--threads", type=int, default=2)
    joined.add_argument("--out", type=Path)
    firsts = modes.add_parser("first", help="a word's first occurrence over recordings of clips end to end, acc@40ms")
    firsts.add_argument("manifest", type=Path)
    firsts.add_argument("--seconds", type=float, default=180.0, help="join clips until each recording is this long")
    firsts.add_argument("--recordings", type=int, default=5)
    firsts.add_argument("--questions", type=int, default=20, help="words asked per recording")
    firsts.add_argument("--artifact", type=Path, default=SHIPPED_ARTIFACT)
    firsts.add_argument("--windows", default=f"{DEFAULT_WINDOW_SECONDS:g}/{DEFAULT_OVERLAP_SECONDS:g}",
                        help="comma-separated WINDOW/OVERLAP seconds, or none")
    firsts.add_argument("--threads", type=int, default=1)
    firsts.add_argument("--out", type=Path)
    scaled = modes.add_parser("scaling", help="wall time and peak memory from 10 s to 60 minutes")
    scaled.add_argument("--lengths", default=",".join(str(n) for n in LENGTHS), help="seconds of audio, comma-separated")
    scaled.add_argument("--one-pass-up-to", type=float, default=max(ONE_PASS_LENGTHS),
                        help="also run without windows up to this many seconds")
    scaled.add_argument("--backends", default="runtime,pytorch")
    scaled.add_argument("--pytorch-up-to", type=float, default=max(LENGTHS), help="run PyTorch up to this many seconds")
    scaled.add_argument("--threads", type=int, default=2)
    scaled.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    command = "framestamp bench long-audio " + " ".join(argv or sys.argv[1:])
    if args.mode == "accuracy":
        rows = accuracy(args.manifest, args.artifact, args.windows.split(","), args.every, args.threads,
                        [float(c) for c in args.chain_after.split(",")], tuple(args.tasks.split(",")))
        report(args.out, "long-audio-accuracy", command, rows, accuracy_markdown(rows, command, args.manifest))
    elif args.mode == "tiled":
        rows = tiled(args.manifest, args.artifact, args.seconds, args.windows.split(","), args.threads, args.pace)
        report(args.out, "long-audio-tiled", command, rows, tiled_markdown(rows, command, args.manifest))
    elif args.mode == "first":
        rows = first_heard(args.manifest, args.artifact, args.seconds, args.recordings, args.questions,
                           args.windows.split(","), args.threads)
        report(args.out, "long-audio-first", command, rows, first_markdown(rows, command, args.manifest, args.seconds))
    else:
        rows = scaling([float(n) for n in args.lengths.split(",")], args.one_pass_up_to, args.threads,
                       args.backends.split(","), args.pytorch_up_to)
        report(args.out, "long-audio-scaling", command, rows, scaling_markdown(rows, command))
        if args.out:
            scaling_plot(rows, args.out / "long-audio-scaling.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
