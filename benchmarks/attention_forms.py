"""Causal self-attention in four ONNX forms, timed and sized on ONNX Runtime's CPU provider.

    python -m framestamp.benchmarks.attention_forms [--lengths 400,800,3000,7500] [--out benchmarks/results/cpu]

The decoder graph of an artifact spends its memory on attention: the exporter writes each layer as
MatMul -> Softmax -> MatMul over the full (positions x positions) score matrix. This measures one
attention layer at the shipped model's head shape (4 heads of 32) in each form the issue names, each
in a fresh process (peak resident memory is ru_maxrss):

- matmul-softmax: the exporter's form at opset 18 (every TensorRT 10 parses it);
- onnx-attention: the standard Attention operator of opset 23 with is_causal=1;
- ort-multihead: ONNX Runtime's com.microsoft MultiHeadAttention with unidirectional=1 (ONNX Runtime only:
  TensorRT has no parser for com.microsoft operators);
- query-chunked: a Loop over blocks of 256 queries, each against all keys (standard opset-18 ops:
  peak memory grows with 256 x positions instead of positions^2).

Outputs of the four forms are compared against the first (max abs difference).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HEADS, HEAD_DIM, CHUNK = 4, 32, 256
FORMS = ("matmul-softmax", "onnx-attention", "ort-multihead", "query-chunked")


def build(form: str):
    """One causal attention layer in ``form``: inputs q, k, v (1, heads, T, head_dim) -> out (1, heads, T, head_dim)."""
    import onnx
    from onnx import TensorProto, helper

    shape = [1, HEADS, "T", HEAD_DIM]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("q", "k", "v")]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [HEAD_DIM ** -0.5])
    blocked = helper.make_tensor("blocked", TensorProto.FLOAT, [], [-1e9])
    opset, domain_opsets = 18, []
    initializers = [scale, blocked, helper.make_tensor("axis1", TensorProto.INT64, [1], [1])] + [
        helper.make_tensor(name, TensorProto.INT64, [], [value]) for name, value in
        (("zero", 0), ("one", 1), ("two", 2), ("three", 3), ("chunk", CHUNK))]
    if form == "matmul-softmax":
        nodes = causal_softmax_nodes("q", "out")
    elif form == "onnx-attention":
        opset = 23
        nodes = [helper.make_node("Attention", ["q", "k", "v"], ["out"], is_causal=1, scale=HEAD_DIM ** -0.5)]
    elif form == "ort-multihead":
        domain_opsets = [helper.make_opsetid("com.microsoft", 1)]
        flat = helper.make_tensor("flat", TensorProto.INT64, [3], [1, 0, HEADS * HEAD_DIM])
        heads = helper.make_tensor("heads", TensorProto.INT64, [4], [1, 0, HEADS, HEAD_DIM])
        initializers += [flat, heads]
        nodes = []
        for name in ("q", "k", "v"):
            nodes += [helper.make_node("Transpose", [name], [f"{name}_t"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [f"{name}_t", "flat"], [f"{name}_flat"])]
        nodes += [helper.make_node("MultiHeadAttention", ["q_flat", "k_flat", "v_flat"], ["mha"], domain="com.microsoft",
                                   num_heads=HEADS, unidirectional=1, scale=HEAD_DIM ** -0.5),
                  helper.make_node("Reshape", ["mha", "heads"], ["mha_heads"]),
                  helper.make_node("Transpose", ["mha_heads"], ["out"], perm=[0, 2, 1, 3])]
    else:
        nodes, more = query_chunked_nodes()
        initializers += more
    graph = helper.make_graph(nodes, form, inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)] + domain_opsets)
    model.ir_version = 10
    return model


def causal_softmax_nodes(query: str, out: str, offset: str | None = None):
    """scores = q k^T * scale, keys after each query blocked, softmax, times v (what the exporter writes)."""
    from onnx import helper

    nodes = [helper.make_node("Transpose", ["k"], ["k_t"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", [query, "k_t"], ["raw"]),
             helper.make_node("Mul", ["raw", "scale"], ["scores"]),
             # causal mask from positions: key index > query index (+ the block's offset) is blocked
             helper.make_node("Shape", ["scores"], ["score_shape"]),
             helper.make_node("Gather", ["score_shape", "two"], ["rows"]),
             helper.make_node("Gather", ["score_shape", "three"], ["cols"]),
             helper.make_node("Range", ["zero", "rows", "one"], ["row_index0"]),
             helper.make_node("Range", ["zero", "cols", "one"], ["col_index"])]
    row = "row_index0"
    if offset:
        nodes.append(helper.make_node("Add", ["row_index0", offset], ["row_index"]))
        row = "row_index"
    nodes += [helper.make_node("Unsqueeze", [row, "axis1"], ["row_column"]),
              helper.make_node("Greater", ["col_index", "row_column"], ["future"]),
              helper.make_node("Where", ["future", "blocked", "scores"], ["masked"]),
              helper.make_node("Softmax", ["masked"], ["weights"], axis=-1),
              helper.make_node("MatMul", ["weights", "v"], [out])]
    return nodes


def query_chunked_nodes():
    """Loop over ceil(T / CHUNK) query blocks; each block attends causally to all keys."""
    from onnx import TensorProto, helper

    initializers = [helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
                    helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
                    helper.make_tensor("zero_1d", TensorProto.INT64, [1], [0]),
                    helper.make_tensor("six_zeros", TensorProto.INT64, [6], [0] * 6)]
    body_nodes = [helper.make_node("Constant", [], ["zero_axis"], value=helper.make_tensor("za", TensorProto.INT64, [1], [0])),
                  helper.make_node("Mul", ["i", "chunk"], ["block_start"]),
                  helper.make_node("Add", ["block_start", "chunk"], ["block_stop"]),
                  helper.make_node("Unsqueeze", ["block_start", "zero_axis"], ["starts"]),
                  helper.make_node("Unsqueeze", ["block_stop", "zero_axis"], ["stops"]),
                  helper.make_node("Slice", ["q_padded", "starts", "stops", "axis2"], ["q_block"])]
    body_nodes += causal_softmax_nodes("q_block", "block_out", offset="block_start")
    body_nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    body = helper.make_graph(
        body_nodes, "block",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("block_out", TensorProto.FLOAT, [1, HEADS, None, HEAD_DIM])])
    nodes = [helper.make_node("Shape", ["q"], ["q_shape"]),
             helper.make_node("Gather", ["q_shape", "two"], ["length"]),
             helper.make_node("Add", ["length", "chunk"], ["padded"]),
             helper.make_node("Sub", ["padded", "one"], ["padded_less"]),
             helper.make_node("Div", ["padded_less", "chunk"], ["blocks"]),
             # equal blocks (a Loop stacks its outputs): pad the queries to whole blocks, drop the padding after
             helper.make_node("Mul", ["blocks", "chunk"], ["whole"]),
             helper.make_node("Sub", ["whole", "length"], ["missing"]),
             helper.make_node("Unsqueeze", ["missing", "axis0"], ["missing_1d"]),
             helper.make_node("Concat", ["six_zeros", "missing_1d", "zero_1d"], ["pads"], axis=0),
             helper.make_node("Pad", ["q", "pads"], ["q_padded"]),
             helper.make_node("Constant", [], ["true"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])),
             helper.make_node("Loop", ["blocks", "true"], ["stacked"], body=body),
             # (blocks, 1, heads, <=chunk, d) -> (1, heads, T, d): blocks are concatenated along the query axis
             helper.make_node("Transpose", ["stacked"], ["by_head"], perm=[1, 2, 0, 3, 4]),
             helper.make_node("Constant", [], ["merged_shape"],
                              value=helper.make_tensor("ms", TensorProto.INT64, [4], [1, HEADS, -1, HEAD_DIM])),
             helper.make_node("Reshape", ["by_head", "merged_shape"], ["out_padded"]),
             helper.make_node("Unsqueeze", ["length", "axis0"], ["length_1d"]),
             helper.make_node("Slice", ["out_padded", "zero_1d", "length_1d", "axis2"], ["out"])]
    return nodes, initializers


MEASURE = """
import json, resource, sys, time
import numpy as np, onnxruntime
path, length, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = threads
session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feed = {name: rng.standard_normal((1, 4, length, 32)).astype(np.float32) for name in ("q", "k", "v")}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
(out,) = session.run(None, feed)
times = []
for _ in range(3):
    start = time.perf_counter(); session.run(None, feed); times.append(time.perf_counter() - start)
np.save(sys.argv[4], out[0, :, -64:])  # the last queries: they attend to every key
print(json.dumps({"ms": 1000 * float(np.median(times)), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "added_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def measure(lengths: list[int], threads: int) -> list[dict]:
    import onnx

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for form in FORMS:
            model = build(form)
            path = Path(scratch) / f"{form}.onnx"
            onnx.save(model, str(path))
            for length in lengths:
                sample = Path(scratch) / f"{form}-{length}.npy"
                done = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(length), str(threads), str(sample)],
                                      capture_output=True, text=True)
                row = {"form": form, "positions": length}
                if done.returncode:
                    row["error"] = done.stderr.strip().splitlines()[-1][:200]
                else:
                    row.update(json.loads(done.stdout))
                    reference = Path(scratch) / f"{FORMS[0]}-{length}.npy"
                    row["max_abs_vs_matmul_softmax"] = float(np.abs(np.load(sample) - np.load(reference)).max())
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# Causal attention forms on ONNX Runtime (CPU)", "", f"`{command}`", "",
             f"One layer, batch 1, {HEADS} heads of {HEAD_DIM}; median of 3 runs; peak RSS of a fresh process.", "",
             "| form | positions | ms | peak RSS (MB) | added by the run (MB) | max abs vs matmul-softmax |", "|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['form']} | {row['positions']} | fails: {row['error']} | | | |")
        else:
            lines.append(f"| {row['form']} | {row['positions']} | {row['ms']:.1f} | {row['peak_mb']:.0f} | {row['added_mb']:.0f} | "
                         f"{row['max_abs_vs_matmul_softmax']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framestamp.benchmarks.attention_forms", description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="400,800,3000,7500")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    command = "python -m framestamp.benchmarks.attention_forms " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = measure([int(n) for n in args.lengths.split(",")], args.threads)
    text = markdown(rows, command)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "attention-forms.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
        (args.out / "attention-forms.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
