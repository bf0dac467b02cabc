"""A Locator pass with the encoder once per distinct clip, against once per question.

    python -m framestamp.benchmarks.shared_clips MANIFEST [--artifact DIR] [--out benchmarks/results/cpu]

Takes the clip of MANIFEST with the most word questions and times ``Locator.run`` (one thread, one pass)
on two kinds of request: the 4th occurrence of a word, whose count check asks occurrences 1-3 in the
same pass, and 8 questions about the clip. Each is run as the Locator runs it (one encoder row per
distinct clip) and with a pass that encodes every question's copy of the clip, as the Locator did
before. Median of 7 after a warm-up; the answers of both are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types
from pathlib import Path

import numpy as np

from framestamp.runtime.artifact import SHIPPED_ARTIFACT
from framestamp.runtime.locator import Locator, Query
from framestamp.runtime.prompts import pad_prompts


def per_question_forward(self, asked):
    """``Locator._forward`` with one encoder row per question (every question's copy of its clip)."""
    mel_lengths = np.array([one.mel.shape[1] for one in asked], dtype=np.int64)
    batch = np.zeros((len(asked), asked[0].mel.shape[0], int(mel_lengths.max())), dtype=np.float32)
    for row, one in enumerate(asked):
        batch[row, :, : one.mel.shape[1]] = one.mel
    input_ids, attention_mask, audio_start = pad_prompts([one.ids for one in asked], self.pad_id)
    audio, frame_counts = self.graphs.encode(batch, mel_lengths)
    scores = self.graphs.scores(input_ids, attention_mask, audio_start, audio, frame_counts)
    return [scores[row, : int(frame_counts[row])].astype(np.float64) for row in range(len(asked))]


def requests(manifest: Path) -> tuple[str, float, dict[str, list[Query]]]:
    from framestamp.data.manifest import read_manifest

    examples = [example for example in read_manifest(manifest) if example.task == "word"]
    clip = max(sorted({example.audio for example in examples}), key=lambda audio: sum(e.audio == audio for e in examples))
    asked = [example for example in examples if example.audio == clip][:8]
    path = str(manifest.parent / clip)
    return clip, asked[0].duration, {
        "the 4th occurrence of a word (count check: occurrences 1-3 in the same pass)":
            [Query(path, "word", {"word": asked[0].prompt["word"], "occurrence": 4})],
        f"{len(asked)} word questions about the clip in one `run`":
            [Query(path, "word", dict(example.prompt)) for example in asked],
    }


def timed(locator: Locator, queries: list[Query], repeats: int) -> tuple[float, list]:
    answers = locator.run(queries)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        locator.run(queries)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), answers


def main(argv: list[str] | None = None) -> int:
    from framestamp.runtime.files import atomic_path

    parser = argparse.ArgumentParser(prog="python -m framestamp.benchmarks.shared_clips",
                                     description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifest", type=Path, help="a manifest with word questions (e.g. framestamp synth's)")
    parser.add_argument("--artifact", default=SHIPPED_ARTIFACT, help="an exported artifact (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, help="folder for shared-clips.md")
    args = parser.parse_args(argv)
    clip, seconds, kinds = requests(args.manifest)
    locator = Locator(args.artifact, threads=1, batch_size=16)
    lines = ["# One encoder row per distinct clip in a Locator pass", "",
             f"Reproduce: `python -m framestamp.benchmarks.shared_clips {args.manifest}` (one thread, median of "
             f"{args.repeats} after a warm-up). Clip: {clip} ({seconds:.1f} s).", "",
             "| request | encoder once per question | once per clip (the Locator) | same answers |", "|---|---|---|---|"]
    for name, queries in kinds.items():
        locator._forward = types.MethodType(per_question_forward, locator)
        before, old = timed(locator, queries, args.repeats)
        del locator._forward  # back to the class's pass
        now, new = timed(locator, queries, args.repeats)
        same = all(np.allclose(a.times, b.times, atol=1e-6) for a, b in zip(old, new))
        lines.append(f"| {name} | {1000 * before:.0f} ms | {1000 * now:.0f} ms | {'yes' if same else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out / "shared-clips.md") as path:
            path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
