"""What an ONNX file says about itself, read without onnx: its metadata_props and every external-data location.

The runtime reads these before ONNX Runtime opens a graph: an artifact's graphs must name their facts
(frame seconds, objective, the manifest's hash) and must not point their weights at files outside the
artifact (``../``, absolute paths): older ONNX Runtimes follow such locations and read the file into a
weight. The protobuf wire format is walked directly, over the messages that can hold tensors:

    ModelProto     7 graph, 14 metadata_props, 25 functions
    GraphProto     1 node, 5 initializer, 15 sparse_initializer
    NodeProto      5 attribute
    AttributeProto 5 t, 6 g, 10 tensors, 11 graphs, 22 sparse_tensor, 23 sparse_tensors
    FunctionProto  7 node
    SparseTensorProto 1 values, 2 indices
    TensorProto    13 external_data (StringStringEntryProto: 1 key, 2 value)
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path

from framestamp.runtime.errors import FramestampError

# message -> {field number: message type of that field}; fields not listed are skipped.
_MESSAGES = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "function": {7: "node"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_MAX_DEPTH = 64  # nested subgraphs (If/Loop bodies) deeper than this are refused, not recursed into


class OnnxFileError(FramestampError):
    """The bytes are not an ONNX model protobuf."""


@dataclass
class OnnxFacts:
    metadata: dict[str, str] = field(default_factory=dict)
    external_locations: list[str] = field(default_factory=list)


def read_onnx_facts(path: str | Path) -> OnnxFacts:
    """The model's metadata_props and the ``location`` of every tensor stored as external data."""
    facts = OnnxFacts()
    with open(path, "rb") as handle:
        size = Path(path).stat().st_size
        if size == 0:
            raise OnnxFileError(f"{path}: empty file, not an ONNX model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                _walk(view, "model", facts, 0, str(path))
            finally:
                view.release()
    return facts


def _varint(data: memoryview, position: int, path: str) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise OnnxFileError(f"{path}: truncated or garbled protobuf (bad varint)")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _fields(data: memoryview, path: str):
    """(field number, wire type, value) for each field; value is an int or a memoryview of the bytes."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position, path)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position, path)
        elif wire == 1:
            value, position = None, position + 8
        elif wire == 5:
            value, position = None, position + 4
        elif wire == 2:
            length, position = _varint(data, position, path)
            value = data[position:position + length]
            position += length
        else:
            raise OnnxFileError(f"{path}: garbled protobuf (wire type {wire}); not an ONNX model")
        if position > len(data) or number == 0:
            raise OnnxFileError(f"{path}: truncated or garbled protobuf; not an ONNX model")
        yield number, wire, value


def _entry(data: memoryview, path: str) -> tuple[str, str]:
    key = value = ""
    for number, wire, content in _fields(data, path):
        if wire == 2 and number in (1, 2):
            text = bytes(content).decode("utf-8", errors="replace")
            key, value = (text, value) if number == 1 else (key, text)
    return key, value


def _walk(data: memoryview, message: str, facts: OnnxFacts, depth: int, path: str) -> None:
    if depth > _MAX_DEPTH:
        raise OnnxFileError(f"{path}: subgraphs nested deeper than {_MAX_DEPTH}; not a graph framestamp writes")
    children = _MESSAGES[message]
    for number, wire, value in _fields(data, path):
        if wire != 2:
            continue
        if message == "model" and number == 14:
            key, text = _entry(value, path)
            facts.metadata[key] = text
        elif message == "tensor" and number == 13:
            key, text = _entry(value, path)
            if key == "location":
                facts.external_locations.append(text)
        elif number in children:
            _walk(value, children[number], facts, depth + 1, path)
