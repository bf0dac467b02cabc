"""INT8 graphs with explicit quantization: Q/DQ nodes placed by ONNX Runtime's quantize_static.

Why this recipe (each point measured when the export was built):
- QDQ format, the one TensorRT 10 builds from (explicit quantization); QOperator fails on the decoder.
- Symmetric int8 activations and per-channel symmetric weights: what TensorRT's int8 kernels take.
- MinMax calibration: Percentile and Entropy fail on calibration samples of different shapes.
- Only MatMul, Conv and Gemm with a constant weight are quantized: norms, softmax, residual adds and
  attention's activation x activation products stay in float.
- In the decoder, two kinds of node stay in float: the frame head (the last Conv/MatMul before the
  scores: tiny, and its output is the log-intensity that decoding exponentiates) and the gated MLPs'
  down projections, whose inputs carry outlier activations. On the shipped model, keeping the down
  projections in float cut the decoder's median error 4x (0.116 -> 0.029) and raised the decoded
  timestamps agreeing with fp32 from 67% to 96%.
The activation ranges are kept as a JSON calibration cache per graph: a second export with the same
cache skips the calibration pass.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

QUANTIZED_OPS = ("MatMul", "Conv", "Gemm")


def head_nodes(graph_path: Path, output: str = "scores") -> list[str]:
    """Names of the nodes from the graph's output back to (and including) its last MatMul/Conv/Gemm."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    producer = {name: node for node in graph.node for name in node.output}
    chain, frontier = [], [output]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in chain:
            continue
        chain.append(node.name)
        if node.op_type in QUANTIZED_OPS:
            break
        frontier.extend(node.input)
    return chain


def gated_mlp_outputs(graph_path: Path) -> list[str]:
    """The down projections of gated MLPs: weight MatMuls fed by ``act(gate) * up`` where ``up`` is a
    weight MatMul. Their inputs carry the decoder's outlier activations; one int8 range cannot hold them."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    weighted = set(weight_nodes(graph_path))
    producer = {name: node for node in graph.node for name in node.output}
    found = []
    for node in graph.node:
        if node.name not in weighted or node.op_type != "MatMul":
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type == "Mul" and any(
                producer.get(name) is not None and producer[name].name in weighted for name in source.input):
            found.append(node.name)
    return found


def weight_nodes(graph_path: Path) -> list[str]:
    """MatMul/Conv/Gemm nodes that multiply by a constant weight (not attention's activation products)."""
    import onnx

    graph = onnx.load(str(graph_path), load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {name for node in graph.node if node.op_type == "Constant" for name in node.output}
    return [node.name for node in graph.node if node.op_type in QUANTIZED_OPS and any(i in constants for i in node.input)]


def quantize_graph(source: Path, target: Path, feeds_reader, cache: Path | None = None, keep_float: bool = False,
                   weights_only: bool = True, per_channel: bool = True) -> dict:
    """Calibrate ``source`` (fp32 ONNX) with ``feeds_reader`` and write its QDQ int8 version to ``target``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="framestamp-int8.") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference and graph optimisation first, as ONNX Runtime recommends for static quantization.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        external = source.with_name(source.name + ".data").is_file()
        target.with_name(target.name + ".data").unlink(missing_ok=True)
        excluded = (head_nodes(prepared) + gated_mlp_outputs(prepared)) if keep_float else []
        chosen = [name for name in weight_nodes(prepared) if name not in excluded] if weights_only else None
        quantize_static(
            str(prepared), str(target), feeds_reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=chosen,
            nodes_to_exclude=excluded,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(cache) if cache else None,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            use_external_data_format=external,  # weights beside the graph as <name>.data, as the fp32 ones were
        )
    return {"quantized_nodes": len(chosen) if chosen is not None else "all", "excluded_nodes": excluded}


def quantize_artifact_graphs(fp32_folder: Path, target_folder: Path, manifest: Path, count: int = 32,
                             cache_folder: Path | None = None, keep_head_float: bool = True,
                             weights_only: bool = True, max_seconds: float | None = 30.0, progress: bool = True) -> dict:
    """Both graphs of an fp32 artifact folder quantized into ``target_folder``; returns what was done."""
    from tqdm import tqdm

    from framestamp.calibration.reader import calibration_examples, feed_reader, graph_feeds
    from framestamp.runtime.artifact import DECODER, ENCODER, GraphSessions
    from framestamp.runtime.features import FeatureSettings
    from tokenizers import Tokenizer

    sessions = GraphSessions.open(fp32_folder, verify=False)
    caches = {name: cache_folder / f"{name}-calibration.json" if cache_folder else None for name in (ENCODER, DECODER)}
    encoder_feeds, decoder_feeds, examples = [], [], []
    if not all(cache is not None and cache.is_file() for cache in caches.values()):
        tokenizer = Tokenizer.from_file(str(fp32_folder / "tokenizer.json"))
        settings = FeatureSettings.from_json(sessions.manifest["features"])
        examples = calibration_examples(manifest, count, max_seconds)
        stream = graph_feeds(examples, Path(manifest).parent, sessions, tokenizer, settings)
        for encoder_feed, decoder_feed in tqdm(stream, total=len(examples), desc="calibration audio",
                                               disable=not progress):
            encoder_feeds.append(encoder_feed)
            decoder_feeds.append(decoder_feed)

    report = {"method": "onnxruntime quantize_static, QDQ, MinMax, symmetric int8, per-channel weights",
              "quantized_ops": list(QUANTIZED_OPS), "calibration_manifest": str(manifest) if manifest else None,
              "calibration_examples": len(examples) or "from the calibration cache", "weights_only": weights_only,
              "graphs": {}}
    for name, feeds in ((ENCODER, encoder_feeds), (DECODER, decoder_feeds)):
        source = fp32_folder / sessions.manifest["graphs"][name]["file"]
        cache = caches[name]
        if cache:
            cache_folder.mkdir(parents=True, exist_ok=True)
        report["graphs"][name] = quantize_graph(source, target_folder / source.name, feed_reader(feeds), cache,
                                                keep_head_float and name == DECODER, weights_only)
    return report
