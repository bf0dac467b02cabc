"""framestamp beside a classic forced aligner on the same clips: `framestamp bench peers MANIFEST`.

The peer is pocketsphinx 5 (CMU Sphinx; its wheel bundles an en-us acoustic model and cmudict),
aligning each clip's transcript. It answers a transcript question with its word starts, and a word
question with the start of the k-th aligned occurrence of that word: it is given the transcript,
which framestamp's word questions never see. A clip it cannot align (a word missing from its
dictionary, or an alignment that stops short) counts as a miss for every question about that clip.

Settings that matter (measured): ``silprob=1.0`` and ``dither=True``; even so, silences of exact
digital zeros make most synthetic clips fail ("final result does not match the grammar"). A clip
that fails is retried with a faint Gaussian noise floor (-80, -70, -60 dBFS), the first full
alignment kept: on held-out espeak-ng voices this took pocketsphinx from 9 to 24 of 40 clips aligned.

One table per task, one row per speech engine (read from the manifest's source), acc@20/40/100 ms
and MAD for both systems on exactly the same questions.

    pip install pocketsphinx==5.1.1
    framestamp bench peers runs/data/eval/manifest.jsonl --out benchmarks/results/cpu
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.metrics import timestamp_scores

SYSTEMS = ("framestamp", "pocketsphinx")
TASKS = ("word", "transcript")
NOT_WORDS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]"}
NOISE_FLOORS = (0.0, 1e-4, 3e-4, 1e-3)  # standard deviations: none, then -80, -70, -60 dBFS


def engine_of(example) -> str:
    """The speech engine a clip was made with (synthetic data), or the dataset's name."""
    source = example.source or {}
    if source.get("engine"):
        return str(source["engine"])
    generator = source.get("generator") or {}
    if source.get("dataset") == "synth_words" or generator.get("name") == "words":
        return "espeak-ng"
    return str(source.get("dataset", "unknown"))


class PocketsphinxAligner:
    """Forced alignment of a transcript with pocketsphinx; None when it cannot align the clip."""

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as error:
            raise InputError("bench peers needs pocketsphinx: pip install pocketsphinx==5.1.1") from error
        self.decoder = Decoder(samprate=16000, silprob=1.0, dither=True, loglevel="ERROR")

    def knows(self, word: str) -> bool:
        return self.decoder.lookup_word(word.lower()) is not None

    def align(self, samples: np.ndarray, words: list[str]) -> list[float] | None:
        """Start of each of ``words`` in seconds, or None; retried over noise floors (module doc)."""
        if not all(self.knows(word) for word in words):
            return None
        for noise in NOISE_FLOORS:
            floor = np.random.default_rng(0).normal(0.0, noise, len(samples)) if noise else 0.0
            starts = self._align_once(samples + floor, words)
            if starts is not None:
                return starts
        return None

    def _align_once(self, samples: np.ndarray, words: list[str]) -> list[float] | None:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.decoder.set_align_text(" ".join(word.lower() for word in words))
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        segments = self.decoder.seg() or []  # None when no alignment was found at all
        starts = [segment.start_frame / 100.0 for segment in segments if segment.word not in NOT_WORDS]
        # A failed alignment can come back as a partial one: only a full one counts.
        return starts if len(starts) == len(words) else None


def kth_start(words: list[str], starts: list[float], word: str, occurrence: int) -> float | None:
    positions = [i for i, w in enumerate(words) if w.lower() == word.lower()]
    return starts[positions[occurrence - 1]] if len(positions) >= occurrence else None


def peer_answers(examples, manifest_dir: Path, progress: bool = True) -> dict[str, np.ndarray]:
    """example id -> pocketsphinx's times (NaN where it has no answer)."""
    from tqdm import tqdm

    from framestamp.runtime.audio import load_audio

    aligner = PocketsphinxAligner()
    by_clip = defaultdict(list)
    for example in examples:
        by_clip[example.audio].append(example)
    transcripts = {example.audio: example.prompt["transcript"].split()
                   for example in examples if example.task == "transcript"}
    answers = {}
    for audio, questions in tqdm(by_clip.items(), desc="pocketsphinx", unit="clip", disable=not progress):
        words = transcripts.get(audio)
        starts = None
        if words:
            starts = aligner.align(load_audio(Path(manifest_dir) / audio), words)
        for example in questions:
            if starts is None:
                times = [np.nan] * len(example.times)
            elif example.task == "transcript":
                times = starts
            else:
                found = kth_start(words, starts, example.prompt["word"], example.prompt["occurrence"])
                times = [np.nan if found is None else found]
            answers[example.id] = np.asarray(times, dtype=np.float64)
    return answers


def framestamp_answers(model_path: Path, examples, manifest_dir: Path, batch_size: int = 8,
                       progress: bool = True) -> dict[str, np.ndarray]:
    """example id -> framestamp's times, from a checkpoint (PyTorch) or an exported artifact (ONNX Runtime),
    answered as ``framestamp evaluate`` and the runtime answer (a transcript timed by its words)."""
    import torch

    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import answer_examples, trained_words

    if (model_path / "manifest.json").is_file():
        from framestamp.export.parity import OnnxModel

        model = OnnxModel(model_path)
        description = model.manifest
    else:
        model, description = load_checkpoint(model_path)
    features = AudioCache(manifest_dir, FeatureSettings.from_json(description["features"]))
    with torch.no_grad():
        answers = answer_examples(model, examples, features, batch_size, progress=progress,
                                  vocabulary=trained_words(description))
    return {example.id: np.sort(np.asarray(times, dtype=np.float64)) for example, (times, _) in zip(examples, answers)}


def score_table(examples, answers: dict[str, dict[str, np.ndarray]]) -> dict:
    """task -> engine -> system -> scores (acc@20/40/100 ms, MAD, and ``unanswered``: questions it gave no
    time at all, a clip it could not align), on the same questions."""
    rows: dict = defaultdict(lambda: defaultdict(dict))
    groups = defaultdict(list)
    for example in examples:
        groups[(example.task, engine_of(example))].append(example)
    for (task, engine), group in sorted(groups.items()):
        reference = np.concatenate([np.asarray(example.times, dtype=np.float64) for example in group])
        for system in SYSTEMS:
            predicted = np.concatenate([answers[system][example.id] for example in group])
            scores = timestamp_scores(predicted, reference).as_dict()
            unanswered = sum(bool(np.isnan(answers[system][example.id]).all()) for example in group)
            rows[task][engine][system] = {"questions": len(group), **scores, "unanswered": unanswered}
    return {task: dict(engines) for task, engines in rows.items()}


def markdown(table: dict, command: str) -> str:
    lines = [f"# framestamp vs pocketsphinx forced alignment", "", f"Reproduce: `{command}`", "",
             "A question pocketsphinx leaves unanswered (a clip it could not align) counts as a miss.", ""]
    for task, engines in table.items():
        lines += [f"## {task}", "", "| engine | questions | times | framestamp acc@40ms | pocketsphinx acc@40ms | "
                  "framestamp acc@20ms | pocketsphinx acc@20ms | framestamp MAD | pocketsphinx MAD | "
                  "pocketsphinx unanswered |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for engine, systems in engines.items():
            ours, peer = systems["framestamp"], systems["pocketsphinx"]
            lines.append(f"| {engine} | {ours['questions']} | {ours['count']} | {ours['acc@40ms']:.1%} | "
                         f"{peer['acc@40ms']:.1%} | {ours['acc@20ms']:.1%} | {peer['acc@20ms']:.1%} | "
                         f"{ours['mad_ms']:.0f} ms | {peer['mad_ms']:.0f} ms | {peer['unanswered']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from framestamp.data.manifest import read_manifest
    from framestamp.benchmarks import write_report

    parser = argparse.ArgumentParser(prog="framestamp bench peers", description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifest", type=Path, help="JSONL manifest with transcript lines (framestamp synth writes them)")
    parser.add_argument("--model", type=Path, help="checkpoint or artifact folder (default: the shipped model)")
    parser.add_argument("--limit", type=int, help="at most this many clips (first ones in the manifest)")
    parser.add_argument("--out", type=Path, help="folder for peers.json and peers.md")
    args = parser.parse_args(argv)

    from framestamp.demo import SHIPPED_MODEL

    model_path = args.model or SHIPPED_MODEL
    examples = [example for example in read_manifest(args.manifest) if example.task in TASKS]
    clips = list(dict.fromkeys(example.audio for example in examples if example.task == "transcript"))
    if args.limit:
        clips = clips[: args.limit]
    keep = set(clips)
    examples = [example for example in examples if example.audio in keep]
    if not examples:
        raise InputError(f"{args.manifest}: no word or transcript questions about clips with a transcript line")
    manifest_dir = args.manifest.parent
    answers = {"pocketsphinx": peer_answers(examples, manifest_dir),
               "framestamp": framestamp_answers(Path(model_path), examples, manifest_dir)}
    table = score_table(examples, answers)
    # `framestamp bench` passes argv; `python -m` leaves it in sys.argv[1:]
    command = "framestamp bench peers " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(table, command)
    print(text)
    if args.out:
        write_report(args.out, "peers", text, {"command": command, "model": str(model_path), "tasks": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
