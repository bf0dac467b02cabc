"""Ask when something happens in an audio file; prints the timestamps (torch-free: the runtime only).

    framestamp locate clip.wav --word doctor --occurrence 2
    framestamp locate clip.wav --transcript "the doctor came late" --format srt
    framestamp locate clip.wav --event Dog --plot dog.png
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from framestamp.runtime.artifact import SHIPPED, SHIPPED_ARTIFACT, artifact_folder  # noqa: F401 (imported from here)
from framestamp.runtime.chain import CHAIN_SECONDS
from framestamp.runtime.decoding import DECODINGS, TRANSCRIPT_BY
from framestamp.runtime.formats import FORMATS
from framestamp.runtime.pacing import WEIGHT as PACE

# What the head's per-frame scores are, by objective (the --plot's lower axis).
SCORE_NAMES = {"poisson": "log-intensity", "interpolated": "log-intensity", "binary": "logit"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", type=Path, help="an audio file soundfile reads (wav, flac, ogg, ...)")
    question = parser.add_mutually_exclusive_group()
    question.add_argument("--word", help="when the word starts (its --occurrence-th time); case and punctuation "
                          "do not matter (Dog, == dog)")
    question.add_argument("--speaker", type=int, metavar="K", help="when the K-th speaker starts speaking")
    question.add_argument("--event", metavar="LABEL", help="when the event starts (its --occurrence-th time)")
    parser.add_argument("--transcript", metavar="TEXT", help="the start of every word of TEXT; with --word, that word's "
                        "--occurrence-th start in TEXT aligned (it must occur that often)")
    parser.add_argument("--transcript-by", choices=TRANSCRIPT_BY, default="words",
                        help="'words' (default) asks each word of --transcript as its own question and aligns the answers "
                             "in order; 'question' is the paper's one transcript question (one decoder row, less accurate)")
    parser.add_argument("--occurrence", type=int, help="k-th occurrence for --word/--event (default 1)")
    parser.add_argument("--artifact", type=artifact_folder, default=SHIPPED,
                        help="artifact folder from `framestamp export`, or 'shipped' (default: the shipped model)")
    parser.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime")
    parser.add_argument("--providers", default="CPUExecutionProvider",
                        help="ONNX Runtime providers, comma-separated (e.g. CUDAExecutionProvider,CPUExecutionProvider)")
    parser.add_argument("--precision", choices=("fp16", "int8"), help="which engines (tensorrt backend only; default fp16)")
    parser.add_argument("--decoding", choices=DECODINGS, default="ordered",
                        help="'ordered' (default) puts a transcript's words on distinct frames, jointly, and a k-th occurrence "
                             "after occurrences 1..k-1 (asked alongside); "
                             "'posterior' is the paper's per-event posterior mode (words may share a frame)")
    parser.add_argument("--pace", type=float, default=PACE,
                        help="--transcript timed by its words: weight of the prior that words follow each other as fast as "
                             f"their lengths predict at one speaking rate (default {PACE}; 0: no prior)")
    parser.add_argument("--format", choices=FORMATS, default="json", help="output format (srt/vtt/textgrid suit --transcript)")
    parser.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                        help="drop times whose confidence (the model's probability of being within 40 ms) is below P, "
                             "and say how many on stderr (default 0: keep all)")
    parser.add_argument("--window", type=float, metavar="SECONDS",
                        help="answer audio longer than this a window at a time, the windows' answers stitched over the "
                             "whole recording (default: audio no longer than the model's training clips in one pass, "
                             "longer audio in 20 s windows; 0: one pass over all of it)")
    parser.add_argument("--overlap", type=float, metavar="SECONDS", help="seconds shared by neighbouring windows (default 4)")
    parser.add_argument("--chain-after", type=float, default=CHAIN_SECONDS, metavar="SECONDS",
                        help="a k-th --occurrence of a --word or --event whose joint answers pass this time is found from "
                             "there on as a chain of first occurrences, each asked of the audio after the previous one "
                             "(a pass per link; default %(default)g, where the shipped model stops counting well; 0: never)")
    parser.add_argument("--merge", type=float, metavar="RATIO",
                        help="merge this share of the audio tokens (0-1) away before the decoder: a faster pass, less "
                             "accurate (training-free; see the README's merging section)")
    parser.add_argument("--merge-kind", choices=("local", "global"), default="local",
                        help="'local' (default) merges neighbouring frames; 'global' any similar ones (the control)")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="draw the waveform, the intensity curve and the timestamps into FILE: .png, .jpg, .pdf "
                             "or .svg (needs matplotlib); the printed answer is the same with or without it")


def run(args: argparse.Namespace) -> int:
    from framestamp.runtime.formats import render
    from framestamp.runtime.locator import Locator

    check_arguments(args)
    windows = {} if args.window is None else {"window_seconds": args.window or None}
    if args.overlap is not None:
        windows["overlap_seconds"] = args.overlap
    locator = Locator(args.artifact, backend=args.backend, providers=tuple(args.providers.split(",")),
                      precision=args.precision, decoding=args.decoding, merge=args.merge, merge_kind=args.merge_kind,
                      transcript_by=args.transcript_by, pace=args.pace, chain_seconds=args.chain_after or None, **windows)
    options = {"with_intensity": args.plot is not None}
    occurrence = args.occurrence or 1
    if args.word is not None:
        result = locator.word(args.audio, args.word, occurrence, transcript=args.transcript, **options)
    elif args.speaker is not None:
        result = locator.speaker(args.audio, args.speaker, **options)
    elif args.event is not None:
        result = locator.event(args.audio, args.event, occurrence, **options)
    else:
        result = locator.transcript(args.audio, args.transcript, **options)
    for warning in result.warnings:
        print(f"framestamp locate: warning: {warning}", file=sys.stderr)
    if args.min_confidence > 0:
        kept = result.confident(args.min_confidence)
        if len(kept.times) < len(result.times):
            print(f"framestamp locate: dropped {len(result.times) - len(kept.times)} of {len(result.times)} time(s) "
                  f"with confidence below {args.min_confidence:g}", file=sys.stderr)
        result = kept
    if args.plot is not None:
        from framestamp.runtime.audio import load_audio
        from framestamp.runtime.plot import save_plot

        save_plot(load_audio(args.audio), locator.settings.sample_rate, result, f"{args.audio.name}: {result.question}",
                  SCORE_NAMES[locator.objective], args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    sys.stdout.write(render(replace(result, log_intensity=None), args.format))  # the intensity was for the plot
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse a command line with no question, or with options that would do nothing."""
    from framestamp.runtime.errors import InputError

    if args.word is None and args.speaker is None and args.event is None and args.transcript is None:
        raise InputError("ask one question: --word, --speaker, --event or --transcript")
    if args.transcript is not None and (args.speaker is not None or args.event is not None):
        raise InputError("--transcript goes alone, or with --word to check the word's occurrences in it")
    if args.occurrence is not None and args.word is None and args.event is None:
        raise InputError("--occurrence counts a --word's or an --event's occurrences; "
                         + ("--speaker K already says which speaker" if args.speaker is not None
                            else "a --transcript asks about every word"))
    if args.precision is not None and args.backend != "tensorrt":
        raise InputError("--precision picks TensorRT engines (--backend tensorrt); ONNX Runtime runs the artifact at the "
                         "precision it was exported with: pick it with --artifact")
    if not 0.0 <= args.min_confidence <= 1.0:
        raise InputError(f"--min-confidence is a probability in [0, 1], got {args.min_confidence:g}")
    if args.plot is not None:
        from framestamp.runtime.plot import check_plot_path

        check_plot_path(args.plot)
