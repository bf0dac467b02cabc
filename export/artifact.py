"""Export a trained checkpoint to an ONNX artifact folder: graphs, tokenizer and a manifest.

    framestamp export runs/shipped/model out/shipped-fp32
    framestamp export runs/shipped/model out/shipped-fp16 --precision fp16
    framestamp export runs/shipped/model out/shipped-int8 --precision int8 --calibration data/manifest.jsonl

The folder appears only when complete (written under a temporary name, then renamed). Check what
it computes against PyTorch with `framestamp parity CHECKPOINT ARTIFACT`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from framestamp.runtime.artifact import (ARTIFACT_FORMAT, DECODER, ENCODER, ENGINES, HASHED_FIELDS_KEY, MANIFEST, PRECISIONS,
                                         SCHEMA_VERSION, TOKENIZER, facts_sha256, file_hashes, read_manifest)
from framestamp.runtime.errors import InputError, needs_toolkit
from framestamp.runtime.files import atomic_path


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "onnxslim"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def graph_metadata(description: dict, precision: str, opset: int) -> dict[str, str]:
    """Key facts each graph carries in its own metadata_props."""
    import json

    from framestamp import __version__

    return {"framestamp_version": __version__, "schema_version": str(SCHEMA_VERSION), "precision": precision,
            "opset": str(opset), "backbone": description["backbone"]["source"],
            "backbone_kind": description["backbone"]["kind"], "objective": description["head"]["objective"],
            "channels": json.dumps(description["head"]["channels"]), "frame_seconds": str(description["frame_seconds"])}


def to_fp16(folder: Path, graphs: dict) -> None:
    """FP16 weights and compute with fp32 inputs and outputs (ONNX Runtime's converter; onnxconverter-common's made graphs that fail to load)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from framestamp.export.graphs import save_graph

    for entry in graphs.values():
        path = folder / entry["file"]
        graph = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
        save_graph(graph, path, external=entry["external_data"])


@dataclass
class Calibration:
    """How to quantize to int8 (see framestamp/calibration/int8.py for why these defaults)."""

    manifest: Path | None = None  # real audio to calibrate on
    count: int = 32
    cache: Path | None = None  # folder of activation ranges: reused when complete, written when not
    keep_head_float: bool = True  # the frame head and the decoder's MLP down projections stay in float
    weights_only: bool = True  # only MatMul/Conv/Gemm with a constant weight

    def cached(self) -> bool:
        return self.cache is not None and all((Path(self.cache) / f"{name}-calibration.json").is_file()
                                              for name in (ENCODER, DECODER))


def export_artifact(checkpoint: Path, out: Path, precision: str = "fp32", opset: int = 18, slim: bool = True,
                    calibration: Calibration | None = None) -> dict:
    """Write the artifact for ``checkpoint`` at ``out``; returns its manifest."""
    check_precision(precision, calibration)
    if precision == "fp32":
        return export_fp32(checkpoint, out, opset, slim)
    with tempfile.TemporaryDirectory(prefix="framestamp-fp32.") as scratch:
        fp32 = Path(scratch) / "fp32"
        export_fp32(checkpoint, fp32, opset, slim)
        return convert_artifact(fp32, out, precision, calibration)


def check_precision(precision: str, calibration: Calibration | None) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and (calibration is None or (calibration.manifest is None and not calibration.cached())):
        raise InputError("--precision int8 needs --calibration MANIFEST: real audio to measure activation ranges "
                         "(e.g. a few dozen clips of your own data, or `framestamp synth` output), "
                         "or a --calibration-cache folder filled by an earlier export")


def export_fp32(checkpoint: Path, out: Path, opset: int = 18, slim: bool = True) -> dict:
    """Trace the checkpoint's graphs into an fp32 artifact at ``out``."""
    from framestamp import __version__
    from framestamp.export.graphs import export_model
    from framestamp.training.checkpoint import load_checkpoint

    model, description = load_checkpoint(checkpoint)
    manifest = {
        "format": ARTIFACT_FORMAT, "schema_version": SCHEMA_VERSION, "framestamp_version": __version__,
        "libraries": library_versions(), "precision": "fp32", "opset": opset,
        "backbone": description["backbone"], "head": description["head"],
        "frame_seconds": description["frame_seconds"], "channels": description["head"]["channels"],
        "features": description["features"], "prompts": description["prompts"],
        "limits": {"max_mel_frames": model.info.fixed_mel_frames, "chunk_mel_frames": model.info.encoder_chunk_mel_frames,
                   **decoder_limits(model)},
        "source": {"checkpoint": str(checkpoint), "training_command": description.get("training", {}).get("command")},
        "trained_on": trained_on(description),
        # Thresholds measured on held-out data for the runtime's warnings (benchmarks/confidence.py --warnings).
        "warning_thresholds": description.get("warning_thresholds") or {},
    }
    # Each graph carries the manifest's facts hash: an edited manifest no longer matches its graphs.
    metadata = {**graph_metadata(description, "fp32", opset), HASHED_FIELDS_KEY: facts_sha256(manifest)}
    with atomic_path(out) as folder:
        folder.mkdir()
        shutil.copy2(Path(checkpoint) / TOKENIZER, folder / TOKENIZER)
        manifest["graphs"] = export_model(model, folder, opset, slim, metadata)
        write_manifest(folder, manifest)
    return manifest


def decoder_limits(model) -> dict:
    """The decoder's position range, attention heads and layers: the runtime's length limit, memory estimate
    and, for a bounded span, how much audio before a window its frames depend on."""
    text = getattr(model.backbone.config, "text_config", model.backbone.config)
    return {"max_positions": getattr(text, "max_position_embeddings", None),
            "attention_heads": getattr(text, "num_attention_heads", None),
            "decoder_layers": getattr(text, "num_hidden_layers", None)}


def trained_on(description: dict) -> dict:
    """What the checkpoint's training saw, for the runtime's refusals and warnings; None where not recorded."""
    training = description.get("training", {})
    shift = (training.get("aids") or {}).get("position_shift")  # frames; the position-shift aid
    return {**{name: training.get(name) for name in ("tasks", "event_labels", "vocabulary", "max_seconds")},
            "position_shift_seconds": shift * description["frame_seconds"] if shift else None}


def convert_artifact(fp32_artifact: Path, out: Path, precision: str, calibration: Calibration | None = None) -> dict:
    """An fp16 or int8 artifact at ``out`` from an fp32 one (traced once, converted as often as wanted)."""
    from framestamp.export.graphs import graph_entry

    check_precision(precision, calibration)
    manifest = read_manifest(fp32_artifact)
    if manifest["precision"] != "fp32":
        raise InputError(f"{fp32_artifact} is {manifest['precision']}; convert from an fp32 artifact")
    manifest = {**manifest, "precision": precision}
    with atomic_path(out) as folder:
        shutil.copytree(fp32_artifact, folder, ignore=shutil.ignore_patterns(ENGINES))
        if precision == "fp16":
            to_fp16(folder, manifest["graphs"])
        elif precision == "int8":
            from framestamp.calibration.int8 import quantize_artifact_graphs

            manifest["quantization"] = quantize_artifact_graphs(
                Path(fp32_artifact), folder, calibration.manifest, calibration.count, calibration.cache,
                calibration.keep_head_float, calibration.weights_only)
        for name, entry in manifest["graphs"].items():
            path = folder / entry["file"]
            _restamp(path, {**_metadata_of(Path(fp32_artifact) / entry["file"]), "precision": precision})
            manifest["graphs"][name] = {**graph_entry(path), "dynamic_axes": entry["dynamic_axes"]}
        write_manifest(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    """The manifest last, with the sha256 of every file written before it."""
    import json

    manifest["files"] = file_hashes(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _metadata_of(path: Path) -> dict:
    import onnx

    return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}


def _restamp(path: Path, changes: dict) -> None:
    """Converters drop or keep metadata_props unevenly: write them once more on the final graph."""
    import onnx

    from framestamp.export.graphs import save_graph, set_metadata

    graph = onnx.load(str(path))
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    set_metadata(graph, {**metadata, **changes})
    save_graph(graph, path, external=path.with_name(path.name + ".data").is_file())


# ---------------------------------------------------------------------------------- the CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint folder written by `framestamp train`")
    parser.add_argument("out", type=Path, help="the artifact folder to write (replaced if it exists)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32; fp16 (fp16 compute, fp32 inputs/outputs); int8 (Q/DQ, needs --calibration)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--no-slim", dest="slim", action="store_false", help="skip onnxslim's graph clean-up")
    calibration = parser.add_argument_group("int8 calibration")
    calibration.add_argument("--calibration", type=Path, help="manifest of real audio to calibrate with")
    calibration.add_argument("--calibration-count", type=int, default=32,
                             help="questions (one clip each) to calibrate with, spread over tasks (default 32)")
    calibration.add_argument("--calibration-cache", type=Path,
                             help="folder for the activation ranges: reused when present, written when not")
    calibration.add_argument("--quantize-all-weights", dest="keep_head_float", action="store_false",
                             help="also quantize the frame head and the decoder's MLP down projections "
                                  "(default: keep them in float; see framestamp/calibration/int8.py)")
    calibration.add_argument("--quantize-activation-products", dest="weights_only", action="store_false",
                             help="also quantize attention's activation x activation MatMuls "
                                  "(default: only MatMul/Conv/Gemm with a constant weight)")


@needs_toolkit("export")
def run(args: argparse.Namespace) -> int:
    import json

    calibration = Calibration(args.calibration, args.calibration_count, args.calibration_cache, args.keep_head_float,
                              args.weights_only)
    manifest = export_artifact(args.checkpoint, args.out, args.precision, args.opset, args.slim, calibration)
    sizes = {name: (args.out / name).stat().st_size for name in manifest["files"]}
    print(json.dumps({"artifact": str(args.out), "precision": manifest["precision"], "opset": manifest["opset"],
                      "files": {name: f"{size / 1e6:.1f} MB" for name, size in sizes.items()}}, indent=2))
    return 0
