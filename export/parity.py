"""Check an exported artifact against the PyTorch checkpoint it came from, on real audio.

    framestamp parity CHECKPOINT ARTIFACT [--manifest M] [--batch-sizes 1,3,8] [--seconds 0.5,10,60]

Clips from a manifest (or freshly generated ones) are cropped or repeated to each length of the
sweep, batched with padding (rows of a batch differ in length and prompt), and run through PyTorch
and through ONNX Runtime. Errors are compared on valid frames only (padded frames hold garbage that
differs between exporters), per graph and end to end, and the timestamps both decode are compared:
what a user sees. Exits 1 when a tolerance of the artifact's precision is exceeded, so it can gate CI.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from framestamp.runtime.console import stdout_for_the_answer
from framestamp.runtime.errors import InputError


@dataclass(frozen=True)
class Tolerance:
    max_abs: float | None  # on the log-intensity (logits) of valid frames, end to end
    median_abs: float | None
    timestamp_ms: float  # two decoded times agree when this close
    agreement: float  # the fraction of decoded times that must agree


TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-4, median_abs=None, timestamp_ms=1.0, agreement=1.0),
    "fp16": Tolerance(max_abs=None, median_abs=2e-2, timestamp_ms=40.0, agreement=0.99),
    "int8": Tolerance(max_abs=None, median_abs=None, timestamp_ms=40.0, agreement=0.90),
}


@dataclass
class ErrorStats:
    """Polygraphy-style statistics of |actual - expected| and of the relative error."""

    count: int
    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float
    p99_rel: float

    @classmethod
    def of(cls, actual: np.ndarray, expected: np.ndarray) -> "ErrorStats":
        actual, expected = np.asarray(actual, np.float64).ravel(), np.asarray(expected, np.float64).ravel()
        absolute = np.abs(actual - expected)
        relative = absolute / np.maximum(np.abs(expected), np.finfo(np.float32).tiny)
        return cls(count=absolute.size,
                   max_abs=float(absolute.max()), mean_abs=float(absolute.mean()),
                   median_abs=float(np.median(absolute)), p99_abs=float(np.quantile(absolute, 0.99)),
                   max_rel=float(relative.max()), mean_rel=float(relative.mean()),
                   median_rel=float(np.median(relative)), p99_rel=float(np.quantile(relative, 0.99)))


@dataclass
class ParityReport:
    precision: str
    tolerance: Tolerance
    cases: list  # (batch size, seconds) run
    encoder: ErrorStats  # encoder graph vs PyTorch's encoder, valid frames
    decoder: ErrorStats  # decoder graph on PyTorch's audio embeddings vs PyTorch, valid frames
    end_to_end: ErrorStats  # both ONNX graphs chained vs PyTorch, valid frames
    timestamps: int
    timestamps_agreeing: int
    max_timestamp_ms: float

    @property
    def agreement(self) -> float:
        return self.timestamps_agreeing / max(1, self.timestamps)

    def failures(self) -> list[str]:
        tolerance, found = self.tolerance, []
        if tolerance.max_abs is not None and self.end_to_end.max_abs > tolerance.max_abs:
            found.append(f"max abs error {self.end_to_end.max_abs:.3g} > {tolerance.max_abs:.3g}")
        if tolerance.median_abs is not None and self.end_to_end.median_abs > tolerance.median_abs:
            found.append(f"median abs error {self.end_to_end.median_abs:.3g} > {tolerance.median_abs:.3g}")
        if self.agreement < tolerance.agreement:
            found.append(f"{self.agreement:.2%} of timestamps within {tolerance.timestamp_ms:g} ms "
                         f"< {tolerance.agreement:.2%}")
        return found

    def as_dict(self) -> dict:
        return {"precision": self.precision, "tolerance": asdict(self.tolerance), "cases": self.cases,
                "encoder": asdict(self.encoder), "decoder": asdict(self.decoder), "end_to_end": asdict(self.end_to_end),
                "timestamps": self.timestamps, "timestamps_agreeing": self.timestamps_agreeing,
                "agreement": self.agreement, "max_timestamp_ms": self.max_timestamp_ms, "passed": not self.failures()}

    def table(self) -> str:
        lines = [f"precision {self.precision}: {len(self.cases)} cases (batch size, seconds) "
                 + " ".join(f"({b},{s:g})" for b, s in self.cases),
                 "graph        values    max abs   mean abs  median abs    p99 abs    max rel  median rel"]
        for name, stats in (("encoder", self.encoder), ("decoder", self.decoder), ("end-to-end", self.end_to_end)):
            lines.append(f"{name:<11} {stats.count:7d}  {stats.max_abs:9.3g}  {stats.mean_abs:9.3g}  "
                         f"{stats.median_abs:10.3g}  {stats.p99_abs:9.3g}  {stats.max_rel:9.3g}  {stats.median_rel:10.3g}")
        lines.append(f"timestamps: {self.timestamps_agreeing}/{self.timestamps} ({self.agreement:.2%}) within "
                     f"{self.tolerance.timestamp_ms:g} ms; largest difference {self.max_timestamp_ms:.2f} ms")
        failures = self.failures()
        lines.append("PASS" if not failures else "FAIL: " + "; ".join(failures))
        return "\n".join(lines)


class OnnxModel:
    """An artifact behind the small interface evaluation uses (prompt_ids, pad_id, run_batch)."""

    def __init__(self, folder: str | Path, providers=("CPUExecutionProvider",), threads: int | None = None):
        from tokenizers import Tokenizer

        from framestamp.runtime.artifact import GraphSessions
        from framestamp.runtime.prompts import PAD_TOKEN, special_token_id
        from framestamp.training.model import HeadConfig

        self.sessions = GraphSessions.open(folder, providers, threads=threads)
        self.manifest = self.sessions.manifest
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.pad_id = special_token_id(self.tokenizer, PAD_TOKEN)
        self.head_config = HeadConfig(**self.manifest["head"])

    def eval(self) -> "OnnxModel":
        return self

    def prompt_ids(self, example, num_audio_frames: int, with_answer: bool | None = None):
        from framestamp.runtime.prompts import prompt_ids

        return prompt_ids(self.tokenizer, example.question, num_audio_frames)

    def run_batch(self, batch, merging=None):
        """Scores as ``FrameStampModel.run_batch`` gives them; ``merging`` merges in NumPy between the graphs."""
        import torch

        from framestamp.runtime.merging import merge_batch
        from framestamp.training.model import FrameOutput

        audio, frame_counts = self.sessions.encode(batch.mel.numpy(), batch.mel_lengths.numpy())
        if getattr(batch, "clip_of", None) is not None:  # questions sharing a clip: one encoder row each clip
            audio, frame_counts = audio[batch.clip_of.numpy()], frame_counts[batch.clip_of.numpy()]
        prompt = (batch.input_ids.numpy(), batch.attention_mask.numpy(), batch.audio_start.numpy())
        plans = None
        if merging is None:
            scores = self.sessions.scores(*prompt, audio, frame_counts)
            frame_mask = np.arange(scores.shape[1])[None] < frame_counts[:, None]
        else:
            merged, token_counts, positions, places, plans = merge_batch(audio, frame_counts, merging.ratio, merging.kind,
                                                                         merging.positions, merging.head)
            scores = self.sessions.scores(*prompt, merged, token_counts, positions, places)
            frame_mask = places >= 0
        return FrameOutput(scores=torch.from_numpy(scores), frame_mask=torch.from_numpy(frame_mask), hidden=None,
                           plans=plans if merging is not None and merging.head == "segments" else None)


def fitted_examples(examples, seconds: float, batch_size: int, offset: int):
    """``batch_size`` examples whose clips become ``seconds`` long, then shorter row by row (padding)."""
    chosen = []
    for row in range(batch_size):
        example = examples[(offset + row) % len(examples)]
        length = seconds * (1.0 - 0.4 * row / max(1, batch_size - 1))
        times = [t for t in example.times if t < length] or [length / 2]
        prompt = example.prompt
        if example.task == "transcript":  # a cut transcript keeps the words that still start inside the clip
            prompt = {**prompt, "transcript": " ".join(prompt["transcript"].split()[:len(times)])}
        chosen.append(replace(example, prompt=prompt, times=times, duration=length, ends=None))
    return chosen


def fitted_features(manifest_dir: Path, settings):
    """Features of a clip cropped, or repeated, to the example's (changed) duration."""
    from framestamp.runtime.audio import load_audio
    from framestamp.runtime.features import log_mel

    cache = {}

    def features(example):
        path = example.audio_path(manifest_dir)
        if path not in cache:
            cache[path] = load_audio(path)
        samples = cache[path]
        wanted = int(round(example.duration * settings.sample_rate))
        samples = np.tile(samples, -(-wanted // len(samples)))[:wanted]
        return log_mel(samples, settings, source=str(path))

    return features


def check_parity(checkpoint: Path, artifact: Path, manifest: Path, batch_sizes=(1, 3, 8), seconds=(0.5, 10.0, 60.0),
                 tolerance: Tolerance | None = None, device: str = "cpu", progress: bool = True) -> ParityReport:
    import torch
    from tqdm import tqdm

    from framestamp.data.manifest import balanced_subset, read_manifest
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import collate
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import decode_frames, default_method

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, description = load_checkpoint(checkpoint, device=device)
    model.eval()
    onnx_model = OnnxModel(artifact)
    precision = onnx_model.manifest["precision"]
    tolerance = tolerance or TOLERANCES[precision]
    settings = FeatureSettings.from_json(description["features"])
    examples = [e for e in read_manifest(manifest) if e.audio is not None]
    if not examples:
        raise InputError(f"{manifest}: no examples with audio files to check parity on")
    examples = balanced_subset(examples, 64)
    features = fitted_features(Path(manifest).parent, settings)
    limit = onnx_model.manifest["limits"].get("max_mel_frames")
    cases = [(b, s) for b in batch_sizes for s in seconds if limit is None or s * 100 <= limit]
    if not cases:
        raise InputError(f"every length asked for exceeds this backbone's {limit / 100:g} s")
    method = default_method(model.head_config.objective)
    gathered = {"encoder": ([], []), "decoder": ([], []), "end_to_end": ([], [])}
    differences = []
    for index, (batch_size, length) in enumerate(tqdm(cases, desc="parity", unit="case", disable=not progress)):
        chunk = fitted_examples(examples, length, batch_size, offset=index * 7)
        batch = collate(chunk, features, model.prompt_ids, model.pad_id, settings)
        with torch.no_grad():
            moved = batch.to(device)
            audio, frame_counts = model.encode_audio(moved.mel, moved.mel_lengths)
            expected = model.frame_scores(moved.input_ids, moved.attention_mask, moved.audio_start, audio, frame_counts)
        audio, expected_scores = audio.float().cpu().numpy(), expected.scores.cpu().numpy()
        sessions = onnx_model.sessions
        onnx_audio, onnx_counts = sessions.encode(batch.mel.numpy(), batch.mel_lengths.numpy())
        decoder_scores = sessions.scores(batch.input_ids.numpy(), batch.attention_mask.numpy(), batch.audio_start.numpy(),
                                         audio, frame_counts.cpu().numpy())
        onnx_scores = sessions.scores(batch.input_ids.numpy(), batch.attention_mask.numpy(), batch.audio_start.numpy(),
                                      onnx_audio, onnx_counts)
        if not np.array_equal(onnx_counts, frame_counts.cpu().numpy()):
            raise InputError(f"the encoder graph counts frames {onnx_counts.tolist()} where PyTorch counts "
                             f"{frame_counts.tolist()}: the artifact does not match this checkpoint")
        # The encoder pads to whole 2-second chunks: its frame axis can be longer than the batch's.
        valid = np.arange(audio.shape[1])[None] < onnx_counts[:, None]
        for name, actual, reference in (("encoder", onnx_audio, audio), ("decoder", decoder_scores, expected_scores),
                                        ("end_to_end", onnx_scores, expected_scores)):
            gathered[name][0].append(actual[valid].ravel())
            gathered[name][1].append(reference[valid].ravel())
        counts = [len(example.times) for example in chunk]
        ours = decode_frames(onnx_scores[..., 0].astype(np.float64), valid, counts, method)  # logits for binary
        theirs = decode_frames(expected_scores[..., 0].astype(np.float64), valid, counts, method)
        differences += [np.abs(a - b) * 1000 for a, b in zip(ours, theirs)]
    stats = {name: ErrorStats.of(np.concatenate(pair[0]), np.concatenate(pair[1])) for name, pair in gathered.items()}
    differences = np.concatenate(differences)
    return ParityReport(precision=precision, tolerance=tolerance, cases=cases, **stats,
                        timestamps=int(differences.size),
                        timestamps_agreeing=int((differences <= tolerance.timestamp_ms).sum()),
                        max_timestamp_ms=float(differences.max()))


# ---------------------------------------------------------------------------------- the CLI
def _numbers(kind):
    def parse(text: str):
        try:
            return tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return parse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="the checkpoint folder the artifact was exported from")
    parser.add_argument("artifact", type=Path, help="the artifact folder written by `framestamp export`")
    parser.add_argument("--manifest", type=Path,
                        help="manifest of real audio to compare on (default: generate a few synthetic clips)")
    parser.add_argument("--batch-sizes", type=_numbers(int), default=(1, 3, 8), help="default 1,3,8")
    parser.add_argument("--seconds", type=_numbers(float), default=(0.5, 10.0, 60.0),
                        help="clip lengths, each batch padded from this down to 60%% of it (default 0.5,10,60)")
    parser.add_argument("--device", default="cpu", help="PyTorch's device (cpu or cuda; TF32 is turned off)")
    tolerance = parser.add_argument_group("tolerances (defaults depend on the artifact's precision)")
    tolerance.add_argument("--max-abs", type=float, help="largest abs error allowed end to end (fp32: 1e-4)")
    tolerance.add_argument("--median-abs", type=float, help="largest median abs error allowed (fp16: 2e-2)")
    tolerance.add_argument("--timestamp-ms", type=float, help="two decoded times agree when this close (fp32: 1)")
    tolerance.add_argument("--agreement", type=float,
                           help="fraction of timestamps that must agree (fp32: 1.0, fp16: 0.99, int8: 0.9)")
    parser.add_argument("--trt", action="store_true",
                        help="also compare TensorRT with ONNX Runtime through `polygraphy run --trt --onnxrt` "
                             "(needs the tensorrt module)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from framestamp.runtime.artifact import read_manifest

    precision = read_manifest(args.artifact)["precision"]
    base = TOLERANCES[precision]
    tolerance = Tolerance(
        max_abs=args.max_abs if args.max_abs is not None else base.max_abs,
        median_abs=args.median_abs if args.median_abs is not None else base.median_abs,
        timestamp_ms=args.timestamp_ms if args.timestamp_ms is not None else base.timestamp_ms,
        agreement=args.agreement if args.agreement is not None else base.agreement)
    with stdout_for_the_answer(args.json) as answer:  # --json: the clips' generation and polygraphy print to stderr
        with tempfile.TemporaryDirectory(prefix="framestamp-parity.") as scratch:
            manifest = args.manifest or _generated_clips(Path(scratch))
            report = check_parity(args.checkpoint, args.artifact, manifest, args.batch_sizes, args.seconds, tolerance,
                                  args.device, progress=not args.json)
        status = 1 if report.failures() else 0
        if args.trt:
            from framestamp.export.tensorrt import polygraphy_check

            status = max(status, polygraphy_check(args.artifact, max(args.seconds), max(args.batch_sizes)))
        print(json.dumps(report.as_dict(), indent=2) if args.json else report.table(), file=answer)
    return status


def _generated_clips(folder: Path) -> Path:
    from framestamp.cli import main as framestamp_main

    if framestamp_main(["synth", str(folder), "--count", "4", "--seed", "11", "--voices", "en-029,en-us-nyc"]):
        raise InputError("could not generate clips to check parity on; give --manifest")
    return folder / "manifest.jsonl"
