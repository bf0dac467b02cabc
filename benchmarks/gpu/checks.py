"""What the GPU kit asks of one checkpoint: held-out accuracy, ONNX export, parity, bf16 against fp32.

    python -m framestamp.benchmarks.gpu.checks CHECKPOINT --out checks.json --device cuda \
        [--evaluate MANIFEST] [--artifact DIR | --export DIR] [--parity-manifest MANIFEST] [--bf16]

Each part runs in turn and the JSON is rewritten after each, so a run stopped at its deadline keeps
the parts it finished; a part that fails records its error and the next one still runs.
- evaluate: `framestamp evaluate`'s scores (acc@20/40/100 ms, MAD per task) on a manifest;
- export: `framestamp export` (fp32 ONNX) into DIR, with its time and size;
- parity: `framestamp parity`'s comparison of PyTorch on --device (fp32, TF32 off) with ONNX Runtime
  on this machine's CPU;
- bf16: the same checkpoint in bfloat16 against itself in fp32, both in PyTorch on --device, on the
  same batches: error statistics of the log-intensities and how many decoded timestamps agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

BF16_TIMESTAMP_MS = 40.0  # bf16 decodes "the same" timestamp when within one 40 ms frame


def _numbers(kind):
    return lambda text: tuple(kind(part) for part in text.split(",") if part.strip())


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m framestamp.benchmarks.gpu.checks", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--evaluate", type=Path, metavar="MANIFEST", help="score the checkpoint on this manifest")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    exported = parser.add_mutually_exclusive_group()
    exported.add_argument("--artifact", type=Path, help="an existing export of the checkpoint to compare with")
    exported.add_argument("--export", type=Path, metavar="DIR", help="export the checkpoint (fp32 ONNX) into DIR first")
    parser.add_argument("--parity-manifest", type=Path, help="clips to compare on (default: generate 4)")
    parser.add_argument("--batch-sizes", type=_numbers(int), default=(1, 3, 8))
    parser.add_argument("--seconds", type=_numbers(float), default=(0.5, 10.0, 60.0))
    parser.add_argument("--bf16", action="store_true", help="also compare bfloat16 with fp32 PyTorch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = parse_args(sys.argv[1:] if argv is None else argv)
    report: dict = {"checkpoint": str(args.checkpoint), "device": args.device}

    def part(name, function):
        started = time.monotonic()
        try:
            report[name] = function()
            report[name]["seconds"] = round(time.monotonic() - started, 2)
        except Exception as error:  # noqa: BLE001 - recorded; the next part still runs
            traceback.print_exc()
            report[name] = {"error": f"{type(error).__name__}: {error}", "seconds": round(time.monotonic() - started, 2)}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"checks: {name} done in {report[name]['seconds']} s", flush=True)

    _tf32_off()
    with tempfile.TemporaryDirectory(prefix="framestamp-checks.") as scratch:
        if args.evaluate:
            part("evaluate", lambda: evaluation(args.checkpoint, args.evaluate, args.device, args.eval_batch_size))
        artifact = args.artifact
        if args.export:
            part("export", lambda: exported(args.checkpoint, args.export))
            artifact = args.export if "error" not in report["export"] else None
        manifest = args.parity_manifest
        if manifest is None and (artifact or args.bf16):
            from framestamp.export.parity import _generated_clips  # parity's own default clips

            manifest = _generated_clips(Path(scratch) / "clips")
        if artifact:
            part("parity", lambda: onnx_parity(args.checkpoint, artifact, manifest, args.device, args.batch_sizes, args.seconds))
        if args.bf16:
            part("bf16", lambda: bf16_against_fp32(args.checkpoint, manifest, args.device, args.batch_sizes, args.seconds))
    failed = [name for name, value in report.items() if isinstance(value, dict) and "error" in value]
    return 1 if failed else 0


def _tf32_off() -> None:
    """fp32 on Ampere and newer may silently run in TF32; parity must measure fp32 itself."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def evaluation(checkpoint: Path, manifest: Path, device: str, batch_size: int) -> dict:
    from framestamp.data.manifest import read_manifest
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import AudioCache
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import evaluate

    model, description = load_checkpoint(checkpoint, device=device)
    examples = read_manifest(manifest)
    features = AudioCache(manifest.parent, FeatureSettings.from_json(description["features"]))
    result = evaluate(model, examples, features, batch_size=batch_size, device=device, progress=False)
    print(result.table(), flush=True)
    return {"manifest": str(manifest), "questions": len(examples), "table": result.table(), **result.as_dict()}


def exported(checkpoint: Path, folder: Path) -> dict:
    from framestamp.export.artifact import export_fp32

    export_fp32(checkpoint, folder)
    files = {path.name: path.stat().st_size for path in sorted(folder.iterdir()) if path.is_file()}
    return {"artifact": str(folder), "bytes": files}


def onnx_parity(checkpoint: Path, artifact: Path, manifest: Path, device: str, batch_sizes, seconds) -> dict:
    from framestamp.export.parity import check_parity

    report = check_parity(checkpoint, artifact, manifest, batch_sizes, seconds, device=device, progress=False)
    print(report.table(), flush=True)
    return {"artifact": str(artifact), "manifest": str(manifest), "pytorch_device": device,
            "onnxruntime": "CPUExecutionProvider", **report.as_dict(), "failures": report.failures()}


def bf16_against_fp32(checkpoint: Path, manifest: Path, device: str, batch_sizes, seconds) -> dict:
    """bfloat16 weights and activations against fp32, both in PyTorch on ``device``, on parity's batches."""
    from dataclasses import asdict

    import torch

    from framestamp.data.manifest import balanced_subset, read_manifest
    from framestamp.export.parity import ErrorStats, fitted_examples, fitted_features
    from framestamp.runtime.features import FeatureSettings
    from framestamp.training.batches import collate
    from framestamp.training.checkpoint import load_checkpoint
    from framestamp.training.evaluate import decode_frames, default_method

    reference, description = load_checkpoint(checkpoint, device=device)
    lowered, _ = load_checkpoint(checkpoint, device=device, dtype=torch.bfloat16)
    lowered.head.to(torch.bfloat16)  # load_checkpoint leaves the head in fp32, which refuses bf16 states
    reference.eval(), lowered.eval()
    settings = FeatureSettings.from_json(description["features"])
    examples = balanced_subset([e for e in read_manifest(manifest) if e.audio is not None], 64)
    features = fitted_features(Path(manifest).parent, settings)
    method = default_method(reference.head_config.objective)
    cases = [(b, s) for b in batch_sizes for s in seconds]
    actual, expected, differences = [], [], []
    for index, (batch_size, length) in enumerate(cases):
        chunk = fitted_examples(examples, length, batch_size, offset=index * 7)
        batch = collate(chunk, features, reference.prompt_ids, reference.pad_id, settings).to(device)
        with torch.no_grad():
            ours, theirs = lowered.run_batch(batch), reference.run_batch(batch)
        valid = theirs.frame_mask.cpu().numpy()
        low = ours.scores[..., 0].float().cpu().numpy().astype(np.float64)
        high = theirs.scores[..., 0].float().cpu().numpy().astype(np.float64)
        actual.append(low[valid]), expected.append(high[valid])
        counts = [len(example.times) for example in chunk]
        differences += [np.abs(a - b) * 1000 for a, b in zip(decode_frames(low, valid, counts, method),
                                                              decode_frames(high, valid, counts, method))]
    stats = ErrorStats.of(np.concatenate(actual), np.concatenate(expected))
    differences = np.concatenate(differences)
    agreeing = int((differences <= BF16_TIMESTAMP_MS).sum())
    result = {"cases": cases, "log_intensity": asdict(stats), "timestamps": int(differences.size),
              "timestamps_agreeing": agreeing, "agreement": agreeing / max(1, differences.size),
              "timestamp_ms": BF16_TIMESTAMP_MS, "max_timestamp_ms": float(differences.max())}
    print(f"bf16 vs fp32: max abs {stats.max_abs:.3g}, median abs {stats.median_abs:.3g}; "
          f"{agreeing}/{differences.size} timestamps within {BF16_TIMESTAMP_MS:g} ms", flush=True)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
