"""How fast `framestamp synth` makes word clips on one CPU core, every step included.

    python -m framestamp.benchmarks.synth_speed [--count 1000] [--seed 0]

Times ``write_task`` for the words task: espeak-ng synthesis in a forked child per clip, word and
phone timing, resampling to 16 kHz, FLAC and TextGrid writing, transcripts, and reading everything
back through the LibriSpeech loader into the manifest. Prints clips/s and the real-time factor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="word clips to make (default: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=12.0)
    args = parser.parse_args(argv)

    import soundfile

    from framestamp.data.espeak import VOICES
    from framestamp.data.synth import write_task

    if hasattr(os, "sched_setaffinity"):  # one core for this process and the children it forks
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    settings = {"voices": list(VOICES), "min_seconds": args.min_seconds, "max_seconds": args.max_seconds}
    with tempfile.TemporaryDirectory(prefix="synth_speed.") as folder:
        started = time.perf_counter()
        examples = write_task(Path(folder), "words", args.count, args.seed, settings, workers=1)
        elapsed = time.perf_counter() - started
        audio_seconds = sum(soundfile.info(str(path)).duration for path in Path(folder).rglob("*.flac"))
    print(f"{args.count} word clips ({audio_seconds / args.count:.1f} s each on average, {len(examples)} questions) "
          f"in {elapsed:.1f} s on one core: {args.count / elapsed:.1f} clips/s, {audio_seconds / elapsed:.0f}x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
