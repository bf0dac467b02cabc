"""TensorRT engines from an artifact's ONNX graphs (TensorRT 10+ Python API), and their manifests.

    framestamp build-engine ARTIFACT --precision fp16 --max-batch 8 --max-seconds 60 --max-prompt-tokens 256

Each graph becomes ``<graph>.<precision>.engine`` in ARTIFACT/engines/, with ``<graph>.<precision>.json``
beside it: TensorRT version, GPU name and compute capability, the optimization profile and the
limits it was built for, so that a runtime can refuse an engine built for another GPU or TensorRT,
or audio longer than the profile, with a clear error.

Precision:
- fp16 from an fp16 artifact: a strongly typed network (types come from the graph). From an fp32
  artifact: FP16 builder flag on a weakly typed network (TensorRT 10 only: 11 removed the flag).
- int8 from an int8 artifact: its Q/DQ nodes are explicit quantization, built strongly typed
  (TensorRT's implicit INT8 calibrators are deprecated since 10.1).

This is the only module that imports tensorrt; none of it runs where tensorrt is not installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from framestamp.runtime.artifact import DECODER, ENCODER, ENGINES, read_manifest
from framestamp.runtime.engines import ENGINE_FORMAT, gpu_identity
from framestamp.runtime.errors import FramestampError, InputError
from framestamp.runtime.files import atomic_path
from framestamp.runtime.frames import SAMPLE_RATE, audio_frames_for_mel

WORKSPACE_BYTES = 8 << 30


class TensorRTMissing(FramestampError):
    pass


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise TensorRTMissing("the tensorrt module is not installed: pip install 'framestamp[tensorrt]' on a machine "
                              "with an NVIDIA GPU and driver (TensorRT 10 or later)") from None
    return tensorrt


def encoder_frames(mel_frames: int, limits: dict) -> int:
    """Frames of the encoder graph's output for ``mel_frames`` (Omni pads to whole 2-s chunks)."""
    if limits.get("max_mel_frames"):  # Qwen2-Audio: always the fixed 30 s
        return audio_frames_for_mel(limits["max_mel_frames"])
    chunk = limits.get("chunk_mel_frames") or 200
    return -(-mel_frames // chunk) * chunk // 4


def profile_shapes(manifest: dict, max_batch: int, max_seconds: float, max_prompt_tokens: int) -> dict:
    """(min, opt, max) shape per input of each graph, from the user's limits."""
    if max_batch < 1 or max_seconds <= 0 or max_prompt_tokens < 1:
        raise InputError("--max-batch, --max-seconds and --max-prompt-tokens must be positive")
    limits = manifest["limits"]
    bins = manifest["features"]["num_mel_bins"]
    hidden = manifest["backbone"]["hidden_size"]
    max_mel = int(round(max_seconds * SAMPLE_RATE / manifest["features"]["hop_length"]))
    if limits.get("max_mel_frames") and max_mel > limits["max_mel_frames"]:
        raise InputError(f"this backbone takes at most {limits['max_mel_frames'] / 100:g} s of audio; "
                         f"lower --max-seconds")
    opt_batch, opt_mel = max(1, max_batch // 2), max(1, max_mel // 2)
    max_frames = encoder_frames(max_mel, limits)
    max_tokens = max_prompt_tokens + audio_frames_for_mel(max_mel) + 2  # text, placeholders, audio bos/eos
    opt_tokens = max_prompt_tokens // 2 + audio_frames_for_mel(opt_mel) + 2
    return {
        ENCODER: {"mel": ((1, bins, 1), (opt_batch, bins, opt_mel), (max_batch, bins, max_mel)),
                  "mel_lengths": ((1,), (opt_batch,), (max_batch,))},
        DECODER: {"input_ids": ((1, 2), (opt_batch, opt_tokens), (max_batch, max_tokens)),
                  "attention_mask": ((1, 2), (opt_batch, opt_tokens), (max_batch, max_tokens)),
                  "audio_start": ((1,), (opt_batch,), (max_batch,)),
                  "audio": ((1, 1, hidden), (opt_batch, encoder_frames(opt_mel, limits), hidden),
                            (max_batch, max_frames, hidden)),
                  "frame_counts": ((1,), (opt_batch,), (max_batch,)),
                  "audio_positions": ((1, 1), (opt_batch, encoder_frames(opt_mel, limits)), (max_batch, max_frames)),
                  "frame_tokens": ((1, 1), (opt_batch, encoder_frames(opt_mel, limits)), (max_batch, max_frames))},
    }


def build_engine(graph: Path, shapes: dict, precision: str, graph_precision: str, timing_cache: Path) -> bytes:
    """One serialized engine from one ONNX graph."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weakly_typed_fp16 = precision == "fp16" and graph_precision == "fp32"
    if weakly_typed_fp16 and not hasattr(trt.BuilderFlag, "FP16"):
        raise InputError(f"TensorRT {trt.__version__} has no FP16 flag: export the artifact with --precision fp16 "
                         "and build from that (strongly typed)")
    flags = 0 if weakly_typed_fp16 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):  # reads external data beside the graph too
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise FramestampError(f"TensorRT could not parse {graph}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if weakly_typed_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (smallest, typical, largest) in shapes.items():
        profile.set_shape(name, smallest, typical, largest)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FramestampError(f"TensorRT failed to build an engine from {graph} (see its log above)")
    with atomic_path(timing_cache) as temporary:
        temporary.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(serialized)


def build_engines(artifact: Path, precision: str, max_batch: int, max_seconds: float, max_prompt_tokens: int) -> dict:
    """Both graphs' engines and their manifests into ``artifact/engines``; returns the manifests."""
    trt = import_tensorrt()
    manifest = read_manifest(artifact)
    wanted = {"fp16": ("fp16", "fp32"), "int8": ("int8",)}[precision]
    if manifest["precision"] not in wanted:
        raise InputError(f"a {precision} engine needs an artifact exported with --precision "
                         f"{' or '.join(wanted)}; {artifact} is {manifest['precision']}")
    shapes = profile_shapes(manifest, max_batch, max_seconds, max_prompt_tokens)
    gpu = gpu_identity()
    folder = artifact / ENGINES
    folder.mkdir(exist_ok=True)
    described = {}
    for name in (ENCODER, DECODER):
        engine = build_engine(artifact / manifest["graphs"][name]["file"], shapes[name], precision,
                              manifest["precision"], folder / "timing.cache")
        path = folder / f"{name}.{precision}.engine"
        with atomic_path(path) as temporary:
            temporary.write_bytes(engine)
        described[name] = {
            "format": ENGINE_FORMAT, "graph": name, "engine": path.name, "precision": precision,
            "artifact_precision": manifest["precision"], "tensorrt_version": trt.__version__, "gpu": gpu,
            "limits": {"max_batch": max_batch, "max_seconds": max_seconds, "max_prompt_tokens": max_prompt_tokens},
            "profile": {input_name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
                        for input_name, s in shapes[name].items()},
            "graph_sha256": manifest["files"][manifest["graphs"][name]["file"]],
        }
        with atomic_path(folder / f"{name}.{precision}.json") as temporary:
            temporary.write_text(json.dumps(described[name], indent=2) + "\n")
    return described


TOLERANCES = {"fp32": ("1e-4", "1e-4"), "fp16": ("2e-2", "2e-2"), "int8": ("0.5", "0.5")}  # polygraphy --atol/--rtol


def polygraphy_commands(artifact: Path, inputs: dict[str, Path], shapes: dict, trt: bool = True) -> list[list[str]]:
    """`polygraphy run GRAPH --trt --onnxrt` per graph, fed saved real inputs, over the engine's profile."""
    manifest = read_manifest(artifact)
    atol, rtol = TOLERANCES[manifest["precision"]]
    commands = []
    for name in (ENCODER, DECODER):
        command = ["polygraphy", "run", str(artifact / manifest["graphs"][name]["file"]), "--onnxrt",
                   "--load-inputs", str(inputs[name]), "--atol", atol, "--rtol", rtol]
        if trt:
            command.append("--trt")
            for option, position in (("--trt-min-shapes", 0), ("--trt-opt-shapes", 1), ("--trt-max-shapes", 2)):
                command += [option] + [f"{input_name}:{list(s[position])}".replace(" ", "")
                                       for input_name, s in shapes[name].items()]
            if manifest["precision"] != "fp32":
                command.append("--strongly-typed")  # the graph's own fp16 / Q/DQ types, as build_engine does
        commands.append(command)
    return commands


def save_real_inputs(artifact: Path, folder: Path, clips: int = 8) -> dict[str, Path]:
    """Batch-1 feeds for each graph from generated speech, saved as polygraphy's JSON input lists."""
    from polygraphy.json import save_json
    from tokenizers import Tokenizer

    from framestamp.calibration.reader import calibration_examples, graph_feeds
    from framestamp.export.parity import _generated_clips
    from framestamp.runtime.artifact import GraphSessions
    from framestamp.runtime.features import FeatureSettings

    manifest = read_manifest(artifact)
    audio = _generated_clips(folder)
    feeds = list(graph_feeds(calibration_examples(audio, clips), audio.parent, GraphSessions.open(artifact),
                             Tokenizer.from_file(str(artifact / "tokenizer.json")),
                             FeatureSettings.from_json(manifest["features"])))
    paths = {}
    for index, name in enumerate((ENCODER, DECODER)):
        paths[name] = folder / f"{name}-inputs.json"
        save_json([feed[index] for feed in feeds], str(paths[name]))
    return paths


def polygraphy_check(artifact: Path, max_seconds: float, max_batch: int) -> int:
    """TensorRT against ONNX Runtime through polygraphy, on real audio; returns the worst exit status."""
    import tempfile

    import_tensorrt()
    shapes = profile_shapes(read_manifest(artifact), max_batch, max_seconds, 512)
    status = 0
    with tempfile.TemporaryDirectory(prefix="framestamp-polygraphy.") as scratch:
        for command in polygraphy_commands(artifact, save_real_inputs(artifact, Path(scratch)), shapes):
            print("$", " ".join(command), flush=True)
            status = max(status, subprocess.run(command).returncode)
    return status


# ---------------------------------------------------------------------------------- the CLI
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, help="an artifact folder written by `framestamp export`")
    parser.add_argument("--precision", choices=("fp16", "int8"), default="fp16",
                        help="fp16 (from an fp16 or fp32 artifact) or int8 (from an int8 Q/DQ artifact)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch the engine takes (default 8)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest audio in seconds (default 60)")
    parser.add_argument("--max-prompt-tokens", type=int, default=256,
                        help="longest question in tokens, audio placeholders not counted (default 256)")


def run(args: argparse.Namespace) -> int:
    described = build_engines(args.artifact, args.precision, args.max_batch, args.max_seconds, args.max_prompt_tokens)
    print(json.dumps({name: {"engine": str(args.artifact / ENGINES / entry["engine"]), "gpu": entry["gpu"]["name"],
                             "tensorrt": entry["tensorrt_version"]} for name, entry in described.items()}, indent=2))
    return 0
