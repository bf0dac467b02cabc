"""Transcripts timed by their words against the paper's one transcript question, through the runtime.

    framestamp bench transcripts MANIFEST [MANIFEST ...] [--limit 40] [--word-limit 100] [--out DIR]

For the transcript questions of each manifest (at most ``--limit``, spread over clip lengths), asks
``Locator.transcript`` once with ``transcript_by="words"`` (each word asked as its own question, the
k-th time the transcript says it, the answers aligned in order: one decoder row per word) and once
with ``"question"`` (one decoder row for the whole transcript), and reports per manifest: accuracy of
starts and ends within 40 ms, words placed on the frame of another whose true start is more than
40 ms away (stacked), and the median time of one transcript (one ONNX Runtime thread, the default
20 s windows, so clips past 20 s are answered a window at a time). A second table asks word
questions about the same clips (at most ``--word-limit``, spread over the clips) twice: alone, and
with the clip's transcript (``Locator.word(..., transcript=...)``: from the aligned transcript).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from framestamp.runtime.artifact import SHIPPED_ARTIFACT
from framestamp.runtime.locator import Locator
from framestamp.runtime.metrics import timestamp_scores

MODES = ("words", "question")
TOLERANCE = 0.04


def spread(examples, limit: int):
    """At most ``limit`` of ``examples``, evenly over their lengths (shortest to longest)."""
    ordered = sorted(examples, key=lambda example: (example.duration, example.id))
    if len(ordered) <= limit:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (limit - 1))] for i in range(limit)] if limit > 1 else ordered[:1]


def stacked(times, truth, frame_seconds: float) -> int:
    """Answers sharing a frame with the previous answer where the true starts are more than 40 ms apart."""
    frames = np.floor(np.asarray(times) / frame_seconds).astype(np.int64)
    truth = np.asarray(truth)
    return int(np.sum((frames[1:] == frames[:-1]) & (np.diff(truth) > TOLERANCE)))


def measure(locator: Locator, examples, folder: Path) -> dict:
    starts, ends, true_starts, true_ends, seconds, stacks = [], [], [], [], [], 0
    for example in examples:
        audio = str(folder / example.audio)
        start = time.perf_counter()
        answer = locator.transcript(audio, example.prompt["transcript"])
        seconds.append(time.perf_counter() - start)
        starts += answer.times
        true_starts += example.times
        if answer.ends and example.ends:
            ends += answer.ends
            true_ends += example.ends
        stacks += stacked(answer.times, example.times, answer.frame_seconds)
    return {"words": len(true_starts), "acc@40ms": timestamp_scores(starts, true_starts).as_dict()["acc@40ms"],
            "end acc@40ms": timestamp_scores(ends, true_ends).as_dict()["acc@40ms"] if ends else None,
            "stacked": stacks, "median_ms": 1000 * statistics.median(seconds),
            "median_seconds_of_audio": statistics.median(example.duration for example in examples)}


def words_given_transcripts(locator: Locator, examples, transcripts, folder: Path) -> dict:
    """Word questions about clips with a transcript: right within 40 ms alone and given the transcript."""
    alone, given, asked = [], [], []
    for example in examples:
        audio, fields = str(folder / example.audio), example.prompt
        alone += locator.word(audio, fields["word"], fields["occurrence"]).times
        given += locator.word(audio, fields["word"], fields["occurrence"],
                              transcript=transcripts[example.audio].prompt["transcript"]).times
        asked += example.times
    return {"questions": len(asked), "alone": timestamp_scores(alone, asked).as_dict()["acc@40ms"],
            "given": timestamp_scores(given, asked).as_dict()["acc@40ms"]}


def main(argv: list[str] | None = None) -> int:
    from framestamp.benchmarks import write_report
    from framestamp.data.manifest import read_manifest

    parser = argparse.ArgumentParser(prog="framestamp bench transcripts",
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifests", type=Path, nargs="+", help="manifests with transcript questions (framestamp synth's)")
    parser.add_argument("--artifact", default=SHIPPED_ARTIFACT, help="an exported artifact (default: the shipped one)")
    parser.add_argument("--limit", type=int, default=40, help="transcripts per manifest, spread over clip lengths")
    parser.add_argument("--word-limit", type=int, default=100, help="word questions per manifest for the second table")
    parser.add_argument("--out", type=Path, help="folder for transcripts.md and transcripts.json")
    args = parser.parse_args(argv)
    locators = {mode: Locator(args.artifact, threads=1, batch_size=16, transcript_by=mode) for mode in MODES}
    record, lines = {}, ["# Transcripts: each word asked and aligned in order, or one transcript question", "",
                         "Reproduce: `framestamp bench transcripts "
                         + " ".join(str(m) for m in args.manifests) + f" --limit {args.limit} --word-limit {args.word_limit}` (the runtime, ONNX "
                         "Runtime on one thread, 20 s windows past 20 s).", "",
                         "| manifest | transcripts (words) | median clip | timed by | starts acc@40ms | ends acc@40ms "
                         "| stacked | median time |", "|---|---|---|---|---|---|---|---|"]
    for manifest in args.manifests:
        examples = spread([e for e in read_manifest(manifest) if e.task == "transcript"], args.limit)
        if not examples:
            raise SystemExit(f"{manifest}: no transcript questions")
        for mode, locator in locators.items():
            locator.transcript(str(manifest.parent / examples[0].audio), examples[0].prompt["transcript"])  # warm-up
            found = measure(locator, examples, manifest.parent)
            record[f"{manifest}:{mode}"] = found
            end = "-" if found["end acc@40ms"] is None else f"{found['end acc@40ms']:.1%}"
            lines.append(f"| {manifest} | {len(examples)} ({found['words']}) | {found['median_seconds_of_audio']:.1f} s "
                         f"| {mode} | {found['acc@40ms']:.1%} | {end} | {found['stacked']} | {found['median_ms']:.0f} ms |")
    lines += ["", "| manifest | word questions | alone acc@40ms | given the transcript acc@40ms |", "|---|---|---|---|"]
    for manifest in args.manifests:
        examples = read_manifest(manifest)
        transcripts = {e.audio: e for e in spread([e for e in examples if e.task == "transcript"], args.limit)}
        words = [e for e in examples if e.task == "word" and e.audio in transcripts]
        words = words[::max(1, len(words) // args.word_limit)][:args.word_limit]
        found = words_given_transcripts(locators["words"], words, transcripts, manifest.parent)
        record[f"{manifest}:word questions"] = found
        lines.append(f"| {manifest} | {found['questions']} | {found['alone']:.1%} | {found['given']:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_report(args.out, "transcripts", text, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
