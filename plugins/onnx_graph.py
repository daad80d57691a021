"""What an ONNX graph does to its input before anything else, read from the file without the ``onnx`` package.

Graphs converted from MXNet (insightface's model zoo) start with ``Sub`` and ``Mul`` nodes that normalise the
input inside the graph; normalising it outside as well divides the pixels twice and silently costs accuracy.
Finding those nodes needs the graph, which onnxruntime does not expose, and lrbench's ``onnx`` extra installs
onnxruntime alone, so the few fields needed are read from the protobuf wire format here: the graph's nodes,
its constant tensors (initializers and ``Constant`` nodes) and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Field numbers of onnx.proto's messages (stable since ONNX 1.0).
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 4, 5
ATTRIBUTE_NAME, ATTRIBUTE_FLOAT, ATTRIBUTE_TENSOR, ATTRIBUTE_FLOATS = 1, 2, 5, 7
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_INT32_DATA, TENSOR_INT64_DATA = 1, 2, 4, 5, 7
TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DOUBLE_DATA, TENSOR_DATA_LOCATION = 8, 9, 10, 14
# TensorProto.DataType → the numpy type its raw_data holds (little-endian), for the types constants use.
DATA_TYPES = {1: "<f4", 2: "u1", 3: "i1", 5: "<i2", 6: "<i4", 7: "<i8", 10: "<f2", 11: "<f8"}
AFFINE_OPS = ("Sub", "Add", "Mul", "Div")


@dataclass(frozen=True)
class InputNormalisation:
    """The per-channel ``(x − mean) / std`` a graph's first nodes apply to its input."""

    nodes: tuple[str, ...]  # their op types, in order (e.g. Sub, Mul)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def in_unit_range(self) -> bool:
        """Whether its constants are in 0–1 units: the graph then expects 0…1 input, not 0…255 pixels."""
        return in_unit_range(self.mean, self.std)

    def describe(self) -> str:
        """``Sub, Mul: (x − 127.5) / 128``."""
        return f"{', '.join(self.nodes)}: (x − {channel_values(self.mean)}) / {channel_values(self.std)}"


def in_unit_range(mean, std) -> bool:
    """Mean and std that only make sense for 0…1 input (ImageNet's 0.485 and 0.229, AdaFace's 0.5 and 0.5).

    Every channel's mean and std at most 1, except mean 0 with std 1 (pixels taken as they are).
    """
    identity = all(m == 0 for m in mean) and all(s == 1 for s in std)
    return not identity and all(abs(m) <= 1 for m in mean) and all(0 < s <= 1 for s in std)


def channel_values(values) -> str:
    """One number when all channels agree (``127.5``), else all three (``123.675,116.28,103.53``)."""
    values = [f"{v:.6g}" for v in values]
    return values[0] if len(set(values)) == 1 else ",".join(values)


@dataclass(frozen=True)
class InputStage:
    """How a graph begins: its first node's op type, and the normalisation its first nodes apply (None: none)."""

    first_op: str | None
    normalisation: InputNormalisation | None


def input_stage(path: Path, input_name: str) -> InputStage:
    """How the graph in ``path`` treats ``input_name`` first.

    The normalisation is followed from the input through a chain of Sub, Add, Mul and Div nodes whose other
    operand is a constant per-channel (or scalar) tensor, while each step's output feeds one node; the
    chain's affine map is ``(x − mean) / std``. Raises ValueError for a file that is not an ONNX protobuf.
    """
    nodes, constants = _graph(Path(path).read_bytes())
    first = next((node.op for node in nodes if input_name in node.inputs), None)
    return InputStage(first, _normalisation(nodes, constants, input_name))


def _normalisation(nodes: list[_Node], constants: dict, input_name: str) -> InputNormalisation | None:
    scale, shift = np.ones(3), np.zeros(3)
    current, ops = input_name, []
    while True:
        consumers = [node for node in nodes if current in node.inputs]
        if len(consumers) != 1 or consumers[0].op not in AFFINE_OPS or len(consumers[0].inputs) != 2:
            break
        node = consumers[0]
        first = node.inputs[0] == current
        value = _per_channel(constants.get(node.inputs[1 if first else 0]))
        if value is None or (node.op == "Div" and not first) or not node.outputs:
            break
        if node.op == "Add":
            shift = shift + value
        elif node.op == "Sub":
            scale, shift = (scale, shift - value) if first else (-scale, value - shift)
        elif node.op == "Mul":
            scale, shift = scale * value, shift * value
        else:
            scale, shift = scale / value, shift / value
        ops.append(node.op)
        current = node.outputs[0]
    if not ops or not np.all(np.isfinite(scale)) or np.any(scale == 0):
        return None
    mean, std = -shift / scale, 1 / scale
    return InputNormalisation(tuple(ops), tuple(map(float, mean)), tuple(map(float, std)))


def _per_channel(value: np.ndarray | None) -> np.ndarray | None:
    """A constant as 3 per-channel values of an N×3×H×W operand: a scalar, or 3 values on the channel axis."""
    if value is None or value.size == 0:
        return None
    if value.size == 1:
        return np.full(3, float(value.reshape(-1)[0]))
    shape = value.shape
    if value.size == 3 and len(shape) >= 3 and shape[-3] == 3:  # (3, 1, 1) or (1, 3, 1, 1): broadcast along C
        return value.reshape(3).astype(np.float64)
    return None  # a spatial constant (a mean image) or a shape that is not per-channel: not followed


@dataclass(frozen=True)
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _graph(data: bytes) -> tuple[list[_Node], dict[str, np.ndarray | None]]:
    """The graph's nodes in order and its constants by name (None for types or layouts not decoded)."""
    graph = None
    for number, _, value in _fields(memoryview(data)):
        if number == MODEL_GRAPH:
            graph = value
    if graph is None:
        raise ValueError("no graph in the model")
    nodes, constants = [], {}
    for number, _, value in _fields(graph):
        if number == GRAPH_NODE:
            node, constant = _node(value)
            nodes.append(node)
            if node.op == "Constant" and node.outputs:
                constants[node.outputs[0]] = constant
        elif number == GRAPH_INITIALIZER:
            name, tensor = _tensor(value)
            constants[name] = tensor
    return nodes, constants


def _node(data: memoryview) -> tuple[_Node, np.ndarray | None]:
    op, inputs, outputs, constant = "", [], [], None
    for number, _, value in _fields(data):
        if number == NODE_INPUT:
            inputs.append(_text(value))
        elif number == NODE_OUTPUT:
            outputs.append(_text(value))
        elif number == NODE_OP_TYPE:
            op = _text(value)
        elif number == NODE_ATTRIBUTE:
            constant = _constant_attribute(value) if constant is None else constant
    return _Node(op, tuple(inputs), tuple(outputs)), (constant if op == "Constant" else None)


def _constant_attribute(data: memoryview) -> np.ndarray | None:
    """A Constant node's ``value`` (a tensor), ``value_float`` or ``value_floats``."""
    name, found = "", None
    for number, wire, value in _fields(data):
        if number == ATTRIBUTE_NAME:
            name = _text(value)
        elif number == ATTRIBUTE_TENSOR:
            found = _tensor(value)[1]
        elif number == ATTRIBUTE_FLOAT:
            found = np.frombuffer(value, "<f4").copy()
        elif number == ATTRIBUTE_FLOATS:
            found = np.array(_packed(wire, value, "<f4"))
    return found if name in ("value", "value_float", "value_floats") else None


def _tensor(data: memoryview) -> tuple[str, np.ndarray | None]:
    """A TensorProto's name and values (None when stored outside the file or of a type not decoded here)."""
    name, dims, data_type, raw, listed = "", [], 1, None, []
    for number, wire, value in _fields(data):
        if number == TENSOR_NAME:
            name = _text(value)
        elif number == TENSOR_DIMS:
            dims += _varints(wire, value)
        elif number == TENSOR_DATA_TYPE:
            data_type = value
        elif number == TENSOR_RAW_DATA:
            raw = value
        elif number == TENSOR_FLOAT_DATA:
            listed += _packed(wire, value, "<f4")
        elif number == TENSOR_DOUBLE_DATA:
            listed += _packed(wire, value, "<f8")
        elif number in (TENSOR_INT32_DATA, TENSOR_INT64_DATA):
            listed += [_signed(v) for v in _varints(wire, value)]
        elif number == TENSOR_DATA_LOCATION and value == 1:  # EXTERNAL: the values live in another file
            return name, None
    if data_type not in DATA_TYPES:
        return name, None
    if raw is not None:
        values = np.frombuffer(raw, DATA_TYPES[data_type])
    elif data_type == 10:  # float16 values are listed as their bit patterns in int32_data
        values = np.array(listed, np.uint16).view(np.float16)
    else:
        values = np.array(listed, DATA_TYPES[data_type])
    return name, values.reshape(dims) if values.size == math.prod(dims) else None


def _fields(data: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of one protobuf message: an int for varints, else the raw bytes."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = data[position : position + size], position + size
        elif wire == 2:
            size, position = _varint(data, position)
            value, position = data[position : position + size], position + size
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {position}")
        if position > end:
            raise ValueError("a protobuf field runs past the end of its message")
        yield number, wire, value


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("a protobuf varint runs past the end of its message")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _varints(wire: int, value) -> list[int]:
    """A repeated integer field's values: one (unpacked) or a packed run."""
    if wire == 0:
        return [value]
    values, position = [], 0
    while position < len(value):
        number, position = _varint(value, position)
        values.append(number)
    return values


def _packed(wire: int, value, dtype: str) -> list[float]:
    return np.frombuffer(value, dtype).tolist() if wire in (1, 2, 5) else []


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value) -> str:
    return bytes(value).decode("utf-8", "replace")
