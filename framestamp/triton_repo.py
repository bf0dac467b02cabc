"""Write a Triton model repository for a GPU fleet: encoder and decoder in Triton's onnxruntime or tensorrt
backend, behind a Python-backend model that does the rest (BLS).

    framestamp triton-repo out/fp16 repo/ --backend onnxruntime --max-batch 16
    framestamp triton-repo out/fp16 repo/ --backend tensorrt --precision fp16   # engines from `framestamp build-engine`
    tritonserver --model-repository repo/                                       # a Triton image with both backends

The repository holds three models: ``framestamp`` (Python backend, dynamic batching; takes and
answers the same tensors as `framestamp serve`, so framestamp.client talks to either; its front
makes features and prompt tokens, its back decodes, in framestamp/triton_bls.py),
``framestamp_encoder`` and ``framestamp_decoder`` (the artifact's graphs or engines, names, types
and shapes read from the graphs themselves). The Python backend's environment needs
framestamp[runtime]. The onnxruntime and tensorrt backends are not in PyTriton's wheel: this
repository is checked here for structure and configs only, not run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from framestamp.runtime.artifact import SHIPPED, artifact_folder

ENCODER_MODEL, DECODER_MODEL = "framestamp_encoder", "framestamp_decoder"
# ONNX TensorProto element types -> Triton's data types.
ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL"}
PROTOCOL_TO_TRITON = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT32": "TYPE_INT32"}
BLS_MODEL_PY = '''"""framestamp's front and back for Triton's Python backend: see framestamp/triton_bls.py."""

from framestamp.triton_bls import TritonPythonModel  # noqa: F401
'''


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=artifact_folder, help="artifact folder from `framestamp export` ('shipped': the "
                        "shipped model's)")
    parser.add_argument("out", type=Path, help="the model repository folder to write (replaced if it exists)")
    parser.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                        help="Triton backend for the encoder and decoder (default onnxruntime)")
    parser.add_argument("--precision", choices=("fp16", "int8"), default="fp16", help="which engines (tensorrt only)")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="most requests per batch (default 16; tensorrt: at most the engines' profile)")
    parser.add_argument("--queue-delay-us", type=int, default=5000, metavar="US", help="dynamic batcher's wait (default 5000)")
    parser.add_argument("--instances", type=int, default=2, help="instances of the Python front/back (default 2)")
    parser.add_argument("--gpu-instances", type=int, default=1, help="encoder and decoder instances per GPU (default 1)")
    parser.add_argument("--decoding", choices=("ordered", "posterior"), default="ordered")


def run(args: argparse.Namespace) -> int:
    import sys

    from framestamp.runtime.artifact import read_manifest
    from framestamp.runtime.errors import InputError
    from framestamp.runtime.files import atomic_path

    for name in ("max_batch", "instances", "gpu_instances"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.precision != "fp16" and args.backend != "tensorrt":
        raise InputError("--precision picks TensorRT engines (--backend tensorrt)")
    manifest = read_manifest(args.artifact)
    graphs = {graph: args.artifact / manifest["graphs"][graph]["file"] for graph in ("encoder", "decoder")}
    max_batch = args.max_batch
    if args.backend == "tensorrt":
        max_batch = min(max_batch, engine_max_batch(args.artifact, args.precision))
    with atomic_path(args.out) as repository:
        for graph, model in (("encoder", ENCODER_MODEL), ("decoder", DECODER_MODEL)):
            inputs, outputs = graph_tensors(graphs[graph])
            version = repository / model / "1"
            version.mkdir(parents=True)
            if args.backend == "tensorrt":
                shutil.copy(args.artifact / "engines" / f"{graph}.{args.precision}.engine", version / "model.plan")
            else:
                shutil.copy(graphs[graph], version / "model.onnx")
                external = graphs[graph].with_name(graphs[graph].name + ".data")
                if external.is_file():  # weights of graphs over 2 GB, found by the name the graph records
                    shutil.copy(external, version / external.name)
            (repository / model / "config.pbtxt").write_text(
                graph_config(model, args.backend, max_batch, inputs, outputs, args.gpu_instances))
        front = repository / "framestamp" / "1"
        front.mkdir(parents=True)
        (front / "model.py").write_text(BLS_MODEL_PY)
        shutil.copytree(args.artifact, front / "artifact", ignore=shutil.ignore_patterns("engines"))
        (repository / "framestamp" / "config.pbtxt").write_text(
            bls_config(max_batch, args.queue_delay_us, args.instances, args.decoding))
    print(f"wrote {args.out}: framestamp (Python backend, BLS), {ENCODER_MODEL} and {DECODER_MODEL} ({args.backend}), "
          f"max batch {max_batch}", file=sys.stderr)
    return 0


def graph_tensors(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(name, Triton type, dims without the batch axis) of a graph's inputs and outputs; named axes are -1."""
    import onnx

    from framestamp.runtime.artifact import ArtifactError

    graph = onnx.load(str(path), load_external_data=False).graph

    def tensors(values):
        found = []
        for value in values:
            tensor = value.type.tensor_type
            if tensor.elem_type not in ONNX_TO_TRITON:
                raise ArtifactError(f"{path}: {value.name} has ONNX type {tensor.elem_type}, which Triton's config "
                                    "cannot name here")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            found.append((value.name, ONNX_TO_TRITON[tensor.elem_type], dims[1:]))  # the first axis is the batch
        return found
    return tensors(graph.input), tensors(graph.output)


def graph_config(model: str, backend: str, max_batch: int, inputs, outputs, instances: int) -> str:
    platform = 'platform: "tensorrt_plan"' if backend == "tensorrt" else 'backend: "onnxruntime"'
    return "\n".join([
        f'name: "{model}"', platform, f"max_batch_size: {max_batch}",
        _tensors("input", [(name, kind, dims, False) for name, kind, dims in inputs]),
        _tensors("output", [(name, kind, dims, False) for name, kind, dims in outputs]),
        # The front sends whole batches already; the batcher only merges batches that arrive together.
        "dynamic_batching { }",
        f"instance_group [ {{ count: {instances} kind: KIND_GPU }} ]", ""])


def bls_config(max_batch: int, queue_delay_us: int, instances: int, decoding: str) -> str:
    from framestamp.protocol import INPUTS, MODEL_NAME, OUTPUTS

    parameters = {"encoder_model": ENCODER_MODEL, "decoder_model": DECODER_MODEL, "decoding": decoding}
    return "\n".join([
        f'name: "{MODEL_NAME}"', 'backend: "python"', f"max_batch_size: {max_batch}",
        _tensors("input", [(t.name, PROTOCOL_TO_TRITON[t.datatype], list(t.dims), t.optional) for t in INPUTS]),
        _tensors("output", [(t.name, PROTOCOL_TO_TRITON[t.datatype], list(t.dims), False) for t in OUTPUTS]),
        f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}",
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]",
        *(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}' for key, value in parameters.items()),
        ""])


def engine_max_batch(artifact: Path, precision: str) -> int:
    from framestamp.runtime.engines import read_engine_manifest
    from framestamp.runtime.errors import InputError

    batches = []
    for graph in ("encoder", "decoder"):
        engine = artifact / "engines" / f"{graph}.{precision}.engine"
        if not engine.is_file():
            raise InputError(f"{engine}: no such engine; build it with `framestamp build-engine {artifact} "
                             f"--precision {precision}` on the fleet's GPU type")
        batches.append(int(read_engine_manifest(engine)["limits"]["max_batch"]))
    return min(batches)


def _tensors(kind: str, tensors) -> str:
    """A config's input or output list; one value per batch item (shape [batch]) is dims [1] reshaped to []."""
    entries = []
    for name, data_type, dims, optional in tensors:
        shape = f"dims: [ {', '.join(str(d) for d in dims)} ]" if dims else "dims: [ 1 ] reshape: { shape: [ ] }"
        entries.append(f'  {{ name: "{name}" data_type: {data_type} {shape}' + (" optional: true" if optional else "") + " }")
    return f"{kind} [\n" + ",\n".join(entries) + "\n]"
