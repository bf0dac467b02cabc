"""Trace a trained FrameStampModel into the artifact's two ONNX graphs (torch.onnx, dynamo exporter).

The encoder graph turns log-mel into audio embeddings; the decoder graph merges them into the prompt
and runs the decoder and the frame head. Batch, audio length and prompt length are dynamic. Graphs
of more than 2 GB (Omni-7B) keep their weights in external data files beside them.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from framestamp.runtime.artifact import DECODER, DECODER_INPUTS, DECODER_OUTPUTS, ENCODER, ENCODER_INPUTS, ENCODER_OUTPUTS
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.prompts import pad_prompts, prompt_ids, render_prompt
from framestamp.training.model import Merging, merge_audio

DEFAULT_OPSET = 18
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's 2 GB limit, with room for the graph itself
# Upper bounds the exporter may assume for the dynamic axes (TensorRT profiles set the real limits).
MAX_BATCH = 1024
MAX_MEL_FRAMES = 360_000  # one hour
MAX_TOKENS = 131_072


class EncoderGraph(nn.Module):
    """mel (B, mel_bins, L), mel_lengths (B,) -> audio (B, F, H) float32, frame_counts (B,) int64."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, mel, mel_lengths):
        audio, frame_counts = self.model.encode_audio(mel, mel_lengths)
        return audio.float(), frame_counts


class DecoderGraph(nn.Module):
    """Prompt ids, mask, audio start, audio embeddings, frame counts, audio positions and the head's
    places (runtime/merging.py; one per frame for unmerged audio) -> scores (B, places, channels)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, audio_start, audio, frame_counts, audio_positions, frame_tokens):
        return self.model.frame_scores(input_ids, attention_mask, audio_start, audio, frame_counts, audio_positions,
                                       frame_tokens).scores


def example_inputs(model, seed: int = 0) -> tuple[dict, dict]:
    """Tracing inputs: two clips of different lengths, a short and a long question, right padding, and
    the audio merged (so the traced decoder reads positions and the head's places from its inputs)."""
    generator = torch.Generator().manual_seed(seed)
    mel_lengths = torch.tensor([530, 301])
    mel = torch.randn(2, model.info.num_mel_bins, 530, generator=generator)
    questions = [render_prompt("word", {"word": "time", "occurrence": 2}),
                 render_prompt("transcript", {"transcript": "the quick brown fox jumps over the lazy dog"})]
    with torch.no_grad():
        audio, frame_counts = model.encode_audio(mel, mel_lengths)
        merged, token_counts, positions, frame_tokens, _ = merge_audio(audio, frame_counts, Merging(0.3))
    prompts = [prompt_ids(model.tokenizer, question, int(count)) for question, count in zip(questions, token_counts)]
    input_ids, attention_mask, audio_start = (torch.from_numpy(array) for array in pad_prompts(prompts, model.pad_id))
    encoder = {"mel": mel, "mel_lengths": mel_lengths}
    decoder = {"input_ids": input_ids, "attention_mask": attention_mask, "audio_start": audio_start,
               "audio": merged.float(), "frame_counts": token_counts, "audio_positions": positions,
               "frame_tokens": frame_tokens}
    return encoder, decoder


def dynamic_axes(model) -> dict[str, dict]:
    """Named dynamic axes per graph input (also what the manifest records)."""
    from torch.export import Dim

    batch = Dim("batch", min=1, max=MAX_BATCH)
    mel_frames = Dim("mel_frames", min=1, max=model.info.fixed_mel_frames or MAX_MEL_FRAMES)
    tokens = Dim("tokens", min=2, max=MAX_TOKENS)
    frames = Dim("frames", min=1, max=audio_frames_for_mel(MAX_MEL_FRAMES))
    places = Dim("places", min=1, max=audio_frames_for_mel(MAX_MEL_FRAMES))  # the head's: frames, or merged tokens
    return {
        ENCODER: {"mel": {0: batch, 2: mel_frames}, "mel_lengths": {0: batch}},
        DECODER: {"input_ids": {0: batch, 1: tokens}, "attention_mask": {0: batch, 1: tokens},
                  "audio_start": {0: batch}, "audio": {0: batch, 1: frames}, "frame_counts": {0: batch},
                  "audio_positions": {0: batch, 1: frames}, "frame_tokens": {0: batch, 1: places}},
    }


def export_graph(module: nn.Module, inputs: dict, names: tuple[tuple[str, ...], tuple[str, ...]], dynamic: dict,
                 path: Path, opset: int = DEFAULT_OPSET, slim: bool = True, metadata: dict | None = None) -> Path:
    """Export one graph to ``path`` (with ``path.name + '.data'`` beside it when over 2 GB)."""
    import onnx

    input_names, output_names = names
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="framestamp-export.") as scratch, quiet_exporter():
        program = torch.onnx.export(module.eval(), tuple(inputs[name] for name in input_names), dynamo=True,
                                    opset_version=opset, input_names=list(input_names),
                                    output_names=list(output_names), dynamic_shapes=dynamic, verbose=False)
        raw = Path(scratch) / "raw.onnx"
        program.save(str(raw))
        del program
        graph = onnx.load(str(raw))
    large = _initializer_bytes(graph) > EXTERNAL_DATA_BYTES
    if slim and not large:
        import onnxslim

        graph = onnxslim.slim(graph)
    set_metadata(graph, metadata or {})
    save_graph(graph, path, large)
    return path


@contextlib.contextmanager
def quiet_exporter():
    """The exporter's notes that concern no user (missing torchvision ops, pytree deprecations, axis
    names merged because two inputs share one) stay out of the command's output; errors still show."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*", category=UserWarning)
        try:
            yield
        finally:
            logger.setLevel(level)


def save_graph(graph, path: Path, external: bool | None = None) -> None:
    """Save with external data (``<name>.data``) when asked or when the weights exceed 2 GB."""
    import onnx

    if external is None:
        external = _initializer_bytes(graph) > EXTERNAL_DATA_BYTES
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    onnx.save(graph, str(path), save_as_external_data=external, all_tensors_to_one_file=True, location=data.name)


def set_metadata(graph, metadata: dict) -> None:
    """Key facts in the graph's own metadata_props (read back by any ONNX tool)."""
    del graph.metadata_props[:]
    for key, value in sorted(metadata.items()):
        entry = graph.metadata_props.add()
        entry.key, entry.value = str(key), str(value)


def _initializer_bytes(graph) -> int:
    from onnx import numpy_helper

    total = 0
    for tensor in graph.graph.initializer:
        if tensor.data_location == 1:  # EXTERNAL: size from its shape and type
            total += int(np.prod(tensor.dims)) * numpy_helper.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        else:
            total += len(tensor.raw_data) or tensor.ByteSize()
    return total


def export_model(model, folder: Path, opset: int = DEFAULT_OPSET, slim: bool = True,
                 metadata: dict | None = None) -> dict[str, dict]:
    """Both graphs of ``model`` into ``folder``; returns each graph's manifest entry."""
    model = model.eval()
    encoder_inputs, decoder_inputs = example_inputs(model)
    axes = dynamic_axes(model)
    plans = [
        (ENCODER, EncoderGraph(model), encoder_inputs, (ENCODER_INPUTS, ENCODER_OUTPUTS)),
        (DECODER, DecoderGraph(model), decoder_inputs, (DECODER_INPUTS, DECODER_OUTPUTS)),
    ]
    entries = {}
    for name, module, inputs, names in plans:
        path = folder / f"{name}.onnx"
        export_graph(module, inputs, names, axes[name], path, opset, slim, {**(metadata or {}), "graph": name})
        entries[name] = graph_entry(path, axes[name])
    return entries


def graph_entry(path: Path, axes: dict | None = None) -> dict:
    """The manifest's description of one graph: file, inputs and outputs with dtypes and named axes."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)

    def describe(values):
        described = []
        for value in values:
            tensor = value.type.tensor_type
            shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
            described.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                              "shape": shape})
        return described

    return {"file": path.name, "inputs": describe(graph.graph.input), "outputs": describe(graph.graph.output),
            "dynamic_axes": {name: {str(axis): dim.__name__ for axis, dim in dims.items()} for name, dims in (axes or {}).items()},
            "external_data": path.with_name(path.name + ".data").is_file()}

