"""The exported artifact: a folder of ONNX graphs that describes itself, and how to open it.

``framestamp export`` writes it; the runtime and ``framestamp parity`` read it. One definition of
its layout lives here:

    engines/          TensorRT engines and their manifests (`framestamp build-engine`), not hashed here
    manifest.json     schema version, versions, backbone, head, features, prompts, graphs, sha256 of every file
    encoder.onnx      mel (B, mel_bins, L) float32, mel_lengths (B,) int64 -> audio (B, F, H), frame_counts (B,)
    decoder.onnx      input_ids, attention_mask (B, T) int64, audio_start (B,) int64, audio, frame_counts,
                      audio_positions (B, F) float32, frame_tokens (B, P) int64 (merged audio: merging.py)
                      -> scores (B, P, channels) float32: log-intensity (Poisson) or logits (binary)
    tokenizer.json    the prompt tokenizer
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import framestamp
from framestamp.runtime.errors import FramestampError, InputError

ARTIFACT_FORMAT = "framestamp-artifact"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
ENCODER, DECODER = "encoder", "decoder"
GRAPH_FILES = {ENCODER: "encoder.onnx", DECODER: "decoder.onnx"}
ENCODER_INPUTS = ("mel", "mel_lengths")
ENCODER_OUTPUTS = ("audio", "frame_counts")
DECODER_INPUTS = ("input_ids", "attention_mask", "audio_start", "audio", "frame_counts", "audio_positions",
                  "frame_tokens")
# Decoders exported before token merging (runtime/merging.py) take only these; they run unmerged audio.
UNMERGED_DECODER_INPUTS = DECODER_INPUTS[:5]
DECODER_OUTPUTS = ("scores",)
PRECISIONS = ("fp32", "fp16", "int8")
ENGINES = "engines"  # TensorRT engines built later, each with its own manifest naming its graph's sha256


# The shipped model's ONNX export, reachable by this name from any folder (Locator("shipped")).
SHIPPED = "shipped"
SHIPPED_ARTIFACT = Path(framestamp.__file__).parent / "models" / "omni-tiny-synth-onnx"


class ArtifactError(FramestampError):
    """An artifact folder is missing, incomplete, altered, or from an incompatible framestamp."""


def artifact_folder(artifact: str | Path) -> Path:
    """The folder ``artifact`` names: the string "shipped" is the shipped model's export, anything else a
    path (write ``./shipped`` for a folder of that name)."""
    if isinstance(artifact, str) and artifact == SHIPPED:
        return SHIPPED_ARTIFACT
    if not isinstance(artifact, (str, os.PathLike)) or not str(artifact).strip():
        raise InputError(f"artifact must be an artifact folder's path or {SHIPPED!r} (the shipped model), "
                         f"got {artifact!r}")
    return Path(artifact)


def folder_version(folder: Path) -> tuple[int, int, int] | None:
    """Which version of the artifact is at ``folder``, None if there is none: its inode and the time it
    was renamed into place (an export swaps a new folder in: runtime/files.py), as the inode of a
    removed version may be reused."""
    try:
        status = os.stat(folder)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_ctime_ns


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


# What the graphs were exported to compute with: hashed at export into each graph's metadata_props
# (``manifest_facts_sha256``), so an edited manifest (frame_seconds, features, objective, ...) is refused.
HASHED_FIELDS = ("schema_version", "backbone", "head", "frame_seconds", "channels", "features", "prompts", "limits",
         "trained_on", "warning_thresholds")
HASHED_FIELDS_KEY = "manifest_facts_sha256"

# key -> (JSON types it may have, required). Checked before anything reads the manifest.
MANIFEST_KEYS = {
    "format": (str, True), "schema_version": (int, True), "precision": (str, True), "frame_seconds": ((int, float), True),
    "channels": (list, True), "head": (dict, True), "features": (dict, True), "prompts": (dict, True),
    "limits": (dict, True), "graphs": (dict, True), "files": (dict, True), "backbone": (dict, False),
    "trained_on": (dict, False), "warning_thresholds": (dict, False), "opset": (int, False),
}


def facts_sha256(manifest: dict) -> str:
    """sha256 of the manifest's facts (``HASHED_FIELDS``) as canonical JSON."""
    facts = {name: manifest.get(name) for name in HASHED_FIELDS}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_manifest(path: Path, manifest: dict) -> None:
    """Raise ArtifactError naming every missing key and every value of the wrong type."""
    problems = []
    for key, (types, required) in MANIFEST_KEYS.items():
        if key not in manifest:
            if required:
                problems.append(f"'{key}' is missing")
        elif isinstance(manifest[key], bool) or not isinstance(manifest[key], types):
            problems.append(f"'{key}' is {type(manifest[key]).__name__}, expected "
                            + "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,))))
    if not problems:
        problems += _value_problems(manifest)
    if problems:
        raise ArtifactError(f"{path}: " + "; ".join(problems) + ". Re-export the artifact rather than editing it")


def _value_problems(manifest: dict) -> list[str]:
    import math

    from framestamp.runtime.prompts import prompt_layout

    problems = []
    seconds = manifest["frame_seconds"]
    if not math.isfinite(seconds) or seconds <= 0:
        problems.append(f"'frame_seconds' must be a positive number of seconds, got {seconds!r}")
    if manifest["precision"] not in PRECISIONS:
        problems.append(f"'precision' must be one of {', '.join(PRECISIONS)}, got {manifest['precision']!r}")
    if not isinstance(manifest["head"].get("objective"), str):
        problems.append("'head' has no 'objective' string")
    if manifest["prompts"] != prompt_layout():
        problems.append("'prompts' differ from this framestamp's prompt templates (the runtime must ask in the "
                        "training's exact words); use the framestamp version that exported it")
    for name in (ENCODER, DECODER):
        entry = manifest["graphs"].get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            problems.append(f"'graphs' has no '{name}' entry with a 'file' name")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["files"].items()):
        problems.append("'files' must map file names to sha256 strings")
    problems += _trained_on_problems(manifest.get("trained_on") or {})
    for name in ("max_mel_frames", "chunk_mel_frames", "max_positions", "attention_heads", "decoder_layers"):
        value = manifest["limits"].get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"'limits.{name}' must be a positive integer or null, got {value!r}")
    thresholds = (manifest.get("warning_thresholds") or {}).get("absent_below") or {}
    if not isinstance(thresholds, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in thresholds.values()):
        problems.append("'warning_thresholds.absent_below' must map tasks to finite numbers")
    return problems


def _trained_on_problems(trained_on: dict) -> list[str]:
    import math

    problems = []
    for name in ("tasks", "event_labels", "vocabulary"):
        value = trained_on.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            problems.append(f"'trained_on.{name}' must be a list of strings or null")
    for name in ("max_seconds", "position_shift_seconds"):
        seconds = trained_on.get(name)
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not math.isfinite(seconds) or seconds <= 0):
            problems.append(f"'trained_on.{name}' must be a positive number or null, got {seconds!r}")
    return problems


def inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` (no absolute paths, ``..`` or symlinks out)."""
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts or "\\" in name or ":" in name:
        raise ArtifactError(f"{folder}: {what} {name!r} leaves the artifact folder; an artifact's files must lie "
                            "inside it (re-export the artifact)")
    path = folder / relative
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        raise ArtifactError(f"{folder}: {what} {name!r} is a link that leads out of the artifact folder "
                            f"(to {path.resolve()}); copy the file in, or re-export") from None
    return path


def check_graph_files(folder: Path, manifest: dict) -> None:
    """Each graph's own facts against the manifest: what it is, what it computes with, where its weights lie."""
    from framestamp.runtime.onnx_file import OnnxFileError, read_onnx_facts

    digest = facts_sha256(manifest)
    for name in (ENCODER, DECODER):
        file = manifest["graphs"][name]["file"]
        path = inside(folder, file, "graph file")
        if not path.is_file():
            raise ArtifactError(f"{folder}: {file} is missing; re-export the artifact")
        try:
            facts = read_onnx_facts(path)
        except OnnxFileError as error:
            raise ArtifactError(f"{error}: the {name} graph is damaged; re-export the artifact") from None
        for location in facts.external_locations:
            data = inside(folder, location, f"{file}'s external weights at")
            listed = data.relative_to(folder).as_posix() in manifest["files"]
            if not listed:
                raise ArtifactError(f"{folder}: {file} keeps weights in {location!r}, which the manifest does not list "
                                    "(and so does not hash); re-export the artifact")
        _check_graph_metadata(folder, name, file, facts.metadata, manifest, digest)


def _check_graph_metadata(folder: Path, name: str, file: str, metadata: dict, manifest: dict, digest: str) -> None:
    other = DECODER if name == ENCODER else ENCODER
    if metadata.get("graph", name) != name:
        raise ArtifactError(f"{folder}: {file} is the {metadata['graph']} graph but the manifest uses it as the {name}: "
                            f"were {GRAPH_FILES[name]} and {GRAPH_FILES[other]} swapped? Re-export the artifact")
    if HASHED_FIELDS_KEY in metadata:
        if metadata[HASHED_FIELDS_KEY] != digest:
            raise ArtifactError(f"{folder}: {MANIFEST} does not describe {file} (its facts hash differs from the one "
                                "the graph was exported with: frame_seconds, features, head, prompts, limits or "
                                "training facts were edited). Re-export the artifact rather than editing it")
        return
    # Graphs exported before the facts hash: compare the facts they do carry.
    expected = {"frame_seconds": str(manifest["frame_seconds"]), "objective": manifest["head"].get("objective"),
                "channels": json.dumps(manifest["channels"]), "schema_version": str(manifest["schema_version"])}
    for key, value in expected.items():
        if key in metadata and metadata[key] != value:
            raise ArtifactError(f"{folder}: {MANIFEST} says {key} {value} but {file} was exported with "
                                f"{metadata[key]}; re-export the artifact rather than editing it")


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """The artifact's manifest, checked: format, schema version, keys and types, and (``verify``) every
    file's sha256 and each graph's facts against the manifest."""
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
    check_manifest(path, manifest)
    for name in manifest["files"]:
        inside(folder, name, "file")
    if verify:
        verify_files(folder, manifest)
        check_graph_files(folder, manifest)
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
        sessions = {}
        for name, inputs in ((ENCODER, ENCODER_INPUTS), (DECODER, DECODER_INPUTS)):
            path = inside(folder, manifest["graphs"][name]["file"], "graph file")
            try:
                session = onnxruntime.InferenceSession(str(path), options, providers=list(providers))
            except Exception as error:  # noqa: BLE001 (ONNX Runtime raises its own classes: InvalidProtobuf, Fail, ...)
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ArtifactError(f"{path}: ONNX Runtime cannot load the {name} graph ({first[:300]}); "
                                    "re-export the artifact") from None
            found = tuple(value.name for value in session.get_inputs())
            if name == DECODER and found == UNMERGED_DECODER_INPUTS:
                found = inputs  # exported before merging: runs unmerged audio (``takes_merged_audio``)
            if found != inputs:
                swapped = " (these are the other graph's inputs: were the files swapped?)" if found in (
                    ENCODER_INPUTS, DECODER_INPUTS) else ""
                raise ArtifactError(f"{path}: the {name} graph takes {', '.join(found)}, not {', '.join(inputs)}"
                                    f"{swapped}; re-export the artifact")
            sessions[name] = session
        return cls(folder, manifest, sessions[ENCODER], sessions[DECODER])

    def encode(self, mel: np.ndarray, mel_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        audio, frame_counts = self.encoder.run(list(ENCODER_OUTPUTS), {
            "mel": np.ascontiguousarray(mel, dtype=np.float32), "mel_lengths": np.asarray(mel_lengths, dtype=np.int64)})
        return audio, frame_counts

    @property
    def takes_merged_audio(self) -> bool:
        """Whether the decoder graph takes merged audio tokens (exported with audio_positions, frame_tokens)."""
        return len(self.decoder.get_inputs()) == len(DECODER_INPUTS)

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts, audio_positions=None,
               frame_tokens=None) -> np.ndarray:
        """Per-frame scores; ``audio_positions`` and ``frame_tokens`` for merged audio (None: unmerged)."""
        feed = {"input_ids": np.asarray(input_ids, dtype=np.int64),
                "attention_mask": np.asarray(attention_mask, dtype=np.int64),
                "audio_start": np.asarray(audio_start, dtype=np.int64),
                "audio": np.ascontiguousarray(audio, dtype=np.float32),
                "frame_counts": np.asarray(frame_counts, dtype=np.int64)}
        if self.takes_merged_audio:
            feed.update(decoder_places(feed["audio"].shape[1], feed["frame_counts"], audio_positions, frame_tokens))
        elif audio_positions is not None or frame_tokens is not None:
            raise ArtifactError(f"{self.folder}: this artifact's decoder was exported before token merging; "
                                "re-export it with `framestamp export` to merge audio tokens")
        (scores,) = self.decoder.run(list(DECODER_OUTPUTS), feed)
        return scores


def decoder_places(frames: int, frame_counts: np.ndarray, audio_positions=None, frame_tokens=None) -> dict:
    """The decoder's ``audio_positions`` and ``frame_tokens`` inputs; for unmerged audio (None) one
    position per frame and the head reading every frame."""
    if audio_positions is None:
        audio_positions = np.broadcast_to(np.arange(frames, dtype=np.float32), (len(frame_counts), frames))
    if frame_tokens is None:
        index = np.arange(frames)[None]
        frame_tokens = np.where(index < np.asarray(frame_counts)[:, None], index, -1)
    return {"audio_positions": np.ascontiguousarray(audio_positions, dtype=np.float32),
            "frame_tokens": np.ascontiguousarray(frame_tokens, dtype=np.int64)}
