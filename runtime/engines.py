"""TensorRT engines at run time: their manifests, and refusing an engine built for another GPU or TensorRT.

``framestamp build-engine`` (export/tensorrt.py) writes ``engines/<graph>.<precision>.engine`` and a JSON
manifest beside each; the runtime reads them through this module.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np

from framestamp.runtime.artifact import DECODER, DECODER_INPUTS, ENCODER, ENCODER_INPUTS, ENGINES, decoder_places
from framestamp.runtime.errors import FramestampError, InputError

ENGINE_FORMAT = "framestamp-engine"
ENGINE_KEYS = {"engine": str, "tensorrt_version": str, "precision": str, "gpu": dict, "limits": dict}


def gpu_identity() -> dict:
    """The GPU engines are built for: name and compute capability (from nvidia-smi, beside every driver)."""
    try:
        lines = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                               capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        raise InputError("no NVIDIA GPU found (nvidia-smi failed): TensorRT engines are built on the GPU "
                         "they will run on") from None
    parts = [part.strip() for part in lines[0].split(",")] if lines else []
    if len(parts) != 2 or not all(parts):
        raise InputError(f"nvidia-smi did not name a GPU and its compute capability (printed {lines[:1] or 'nothing'}); "
                         "check the NVIDIA driver: TensorRT engines are built on the GPU they will run on")
    return {"name": parts[0], "compute_capability": parts[1]}


def check_engine_manifest(engine_manifest: dict, tensorrt_version: str, gpu: dict) -> None:
    """Refuse an engine built for another TensorRT or GPU, saying how to rebuild."""
    built_for = (engine_manifest["tensorrt_version"], engine_manifest["gpu"]["compute_capability"])
    if built_for != (tensorrt_version, gpu["compute_capability"]):
        raise InputError(
            f"engine {engine_manifest['engine']} was built with TensorRT {built_for[0]} for "
            f"{engine_manifest['gpu']['name']} (compute capability {built_for[1]}); this machine has TensorRT "
            f"{tensorrt_version} on {gpu['name']} ({gpu['compute_capability']}): rebuild it here with "
            f"`framestamp build-engine ARTIFACT --precision {engine_manifest['precision']}`")


def read_engine_manifest(engine: str | Path) -> dict:
    """The JSON beside ``<graph>.<precision>.engine``."""
    path = Path(engine).with_suffix(".json")
    if not path.is_file():
        raise InputError(f"{engine}: no engine manifest {path.name} beside it; rebuild with `framestamp build-engine`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error}); rebuild with `framestamp build-engine`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ENGINE_FORMAT:
        raise InputError(f"{path}: not a framestamp engine manifest")
    missing = [key for key, kind in ENGINE_KEYS.items() if not isinstance(manifest.get(key), kind)]
    gpu = manifest.get("gpu") if isinstance(manifest.get("gpu"), dict) else {}
    missing += [f"gpu.{key}" for key in ("name", "compute_capability") if not isinstance(gpu.get(key), str)]
    if missing:
        raise InputError(f"{path}: engine manifest lacks (or has the wrong type for) {', '.join(missing)}; "
                         "rebuild with `framestamp build-engine`")
    return manifest


class EngineGraphs:
    """An artifact's two graphs run as TensorRT engines; the same ``encode``/``scores`` as GraphSessions.

    Engines come from ``framestamp build-engine``; each is refused unless its manifest names this
    machine's GPU (compute capability) and TensorRT version. Calls are serialized: one execution
    context per engine.
    """

    def __init__(self, folder: str | Path, precision: str = "fp16"):
        try:
            import tensorrt
            from polygraphy.backend.common import BytesFromPath
            from polygraphy.backend.trt import EngineFromBytes, TrtRunner
        except ImportError:
            raise FramestampError("the TensorRT backend needs tensorrt and polygraphy: pip install "
                                  "'framestamp[tensorrt]' on a machine with an NVIDIA GPU") from None
        gpu = gpu_identity()
        self.runners, self.limits = {}, None
        for name in (ENCODER, DECODER):
            path = Path(folder) / ENGINES / f"{name}.{precision}.engine"
            if not path.is_file():
                raise InputError(f"{path}: no such engine; build it with `framestamp build-engine {folder} "
                                 f"--precision {precision}`")
            manifest = read_engine_manifest(path)
            check_engine_manifest(manifest, tensorrt.__version__, gpu)
            runner = TrtRunner(EngineFromBytes(BytesFromPath(str(path))))
            runner.activate()
            self.runners[name] = runner
            self.limits = manifest["limits"]
        # Engines built from a decoder exported before token merging take its five inputs only.
        self.takes_merged_audio = "frame_tokens" in self.runners[DECODER].get_input_metadata()
        self._lock = threading.Lock()

    def encode(self, mel: np.ndarray, mel_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = dict(zip(ENCODER_INPUTS, (np.ascontiguousarray(mel, np.float32), np.asarray(mel_lengths, np.int64))))
        with self._lock:
            outputs = self.runners[ENCODER].infer(feed)
        return outputs["audio"], outputs["frame_counts"]

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts, audio_positions=None,
               frame_tokens=None) -> np.ndarray:
        values = (input_ids, attention_mask, audio_start, audio, frame_counts)
        feed = {name: np.ascontiguousarray(value, np.float32 if name == "audio" else np.int64)
                for name, value in zip(DECODER_INPUTS, values)}
        if self.takes_merged_audio:
            feed.update(decoder_places(feed["audio"].shape[1], feed["frame_counts"], audio_positions, frame_tokens))
        elif audio_positions is not None or frame_tokens is not None:
            raise InputError("these engines were built from a decoder exported before token merging; re-export the "
                             "artifact and rebuild the engines to merge audio tokens")
        with self._lock:
            return self.runners[DECODER].infer(feed)["scores"]
