"""The exported artifact: a folder of ONNX graphs that describes itself, and how to open it.

``framestamp export`` writes it; the runtime and ``framestamp parity`` read it. One definition of
its layout lives here:

    engines/          TensorRT engines and their manifests (`framestamp build-engine`), not hashed here
    manifest.json     schema version, versions, backbone, head, features, prompts, graphs, sha256 of every file
    encoder.onnx      mel (B, mel_bins, L) float32, mel_lengths (B,) int64 -> audio (B, F, H), frame_counts (B,)
    decoder.onnx      input_ids, attention_mask (B, T) int64, audio_start (B,) int64, audio, frame_counts
                      -> scores (B, F, channels) float32: log-intensity (Poisson) or logits (binary)
    tokenizer.json    the prompt tokenizer
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import FramestampError, InputError

ARTIFACT_FORMAT = "framestamp-artifact"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
ENCODER, DECODER = "encoder", "decoder"
GRAPH_FILES = {ENCODER: "encoder.onnx", DECODER: "decoder.onnx"}
ENCODER_INPUTS = ("mel", "mel_lengths")
ENCODER_OUTPUTS = ("audio", "frame_counts")
DECODER_INPUTS = ("input_ids", "attention_mask", "audio_start", "audio", "frame_counts")
DECODER_OUTPUTS = ("scores",)
PRECISIONS = ("fp32", "fp16", "int8")
ENGINES = "engines"  # TensorRT engines built later, each with its own manifest naming its graph's sha256


class ArtifactError(FramestampError):
    """An artifact folder is missing, incomplete, altered, or from an incompatible framestamp."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest and built engines, by relative POSIX path."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): sha256(path) for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != MANIFEST and path.relative_to(folder).parts[0] != ENGINES}


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """The artifact's manifest, checked: format, schema version, and (``verify``) every file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such artifact folder; make one with `framestamp export CHECKPOINT {folder}`")
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}; this is not an artifact written by `framestamp export`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path}: not valid JSON ({error}); re-export the artifact") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a framestamp artifact manifest (format {manifest.get('format')!r})"
                            if isinstance(manifest, dict) else f"{path}: not a JSON object")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{path}: schema version {manifest.get('schema_version')!r}; this framestamp reads "
                            f"version {SCHEMA_VERSION}: re-export with this version, or install the one that wrote it "
                            f"({manifest.get('framestamp_version', 'unknown')})")
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: dict) -> None:
    """Raise ArtifactError naming every file that is missing, altered or unexpected."""
    expected = manifest.get("files", {})
    problems = []
    for name, digest in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256(path) != digest:
            problems.append(f"{name} was altered (sha256 differs from the manifest)")
    unexpected = sorted(set(file_hashes(folder)) - set(expected))
    problems += [f"{name} is not in the manifest" for name in unexpected]
    if problems:
        raise ArtifactError(f"{folder}: " + "; ".join(problems) + ". Re-export the artifact rather than editing it")


@dataclass
class GraphSessions:
    """ONNX Runtime sessions over an artifact's encoder and decoder graphs."""

    folder: Path
    manifest: dict
    encoder: object
    decoder: object

    @classmethod
    def open(cls, folder: str | Path, providers=("CPUExecutionProvider",), threads: int | None = None,
             verify: bool = True) -> "GraphSessions":
        import onnxruntime

        folder = Path(folder)
        manifest = read_manifest(folder, verify=verify)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = set(onnxruntime.get_available_providers())
        missing = [name for name in providers if name not in available]
        if missing:
            raise InputError(f"ONNX Runtime here has no {', '.join(missing)}; available: {', '.join(sorted(available))}")
        sessions = {name: onnxruntime.InferenceSession(str(folder / manifest["graphs"][name]["file"]), options,
                                                       providers=list(providers))
                    for name in (ENCODER, DECODER)}
        return cls(folder, manifest, sessions[ENCODER], sessions[DECODER])

    def encode(self, mel: np.ndarray, mel_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        audio, frame_counts = self.encoder.run(list(ENCODER_OUTPUTS), {
            "mel": np.ascontiguousarray(mel, dtype=np.float32), "mel_lengths": np.asarray(mel_lengths, dtype=np.int64)})
        return audio, frame_counts

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts) -> np.ndarray:
        (scores,) = self.decoder.run(list(DECODER_OUTPUTS), {
            "input_ids": np.asarray(input_ids, dtype=np.int64),
            "attention_mask": np.asarray(attention_mask, dtype=np.int64),
            "audio_start": np.asarray(audio_start, dtype=np.int64),
            "audio": np.ascontiguousarray(audio, dtype=np.float32),
            "frame_counts": np.asarray(frame_counts, dtype=np.int64)})
        return scores
