"""Read and rewrite the declared shapes of an ONNX graph's inputs and outputs, in pure Python.

Some exported models declare dims they do not need: CenterFace's file says its input is
10×3×32×32, although the network is fully convolutional and runs at any multiple of 32.
ONNX Runtime checks every input against the declared dims, so such a model has to be told
its real input size before a session is made. The `onnx` package can do that, but it is a
large dependency for a few dozen bytes; the ONNX format is plain protocol buffers, so this
module walks the wire format itself and rewrites only the `shape` of the graph's inputs and
outputs, copying every other byte (weights included) unchanged.

Field numbers are those of onnx.proto (ModelProto.graph = 7, GraphProto.initializer = 5,
input = 11, output = 12, ValueInfoProto.name = 1, type = 2, TypeProto.tensor_type = 1,
TypeProto.Tensor.elem_type = 1, shape = 2, TensorShapeProto.dim = 1, Dimension.dim_value = 1,
dim_param = 2, TensorProto.name = 8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ...errors import EdgehiveError

__all__ = ["GraphIO", "OnnxGraphError", "ValueInfo", "read_graph_io", "set_io_dims"]

Dim = int | str  # a fixed size, or a symbolic name (any size)

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_TENSOR_NAME = 8
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2


class OnnxGraphError(EdgehiveError, ValueError):
    """The bytes are not a model this module can read (truncated, or not ONNX)."""


@dataclass(frozen=True)
class ValueInfo:
    """One graph input or output: its name, element type (onnx TensorProto.DataType) and dims."""

    name: str
    elem_type: int
    dims: tuple[Dim, ...] | None  # None: the file declares no shape


@dataclass(frozen=True)
class GraphIO:
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    initializers: frozenset[str]

    @property
    def feeds(self) -> tuple[ValueInfo, ...]:
        """The inputs a caller must feed (old exporters also list every weight as an input)."""
        return tuple(v for v in self.inputs if v.name not in self.initializers)


@dataclass(frozen=True)
class _Field:
    number: int
    wire: int
    raw: bytes  # the whole field: tag, length prefix and payload
    payload: bytes  # LEN fields: the bytes inside; others: empty
    value: int  # VARINT fields: the value; others: 0


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise OnnxGraphError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields encode negatives as ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> Iterator[_Field]:
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload, value = b"", 0
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos)
            payload = buf[pos : pos + length]
            pos += length
        else:
            raise OnnxGraphError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > len(buf) or number == 0:
            raise OnnxGraphError("truncated protobuf message")
        yield _Field(number, wire, buf[start:pos], payload, value)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def _graph(model: bytes) -> bytes:
    graphs = [f.payload for f in _fields(model) if f.number == _MODEL_GRAPH and f.wire == _LEN]
    if not graphs:
        raise OnnxGraphError("no graph in the model (is this an ONNX file?)")
    return graphs[-1]


def _dims(shape: bytes) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for dim in _fields(shape):
        if dim.number != _SHAPE_DIM or dim.wire != _LEN:
            continue
        value: Dim = "?"
        for part in _fields(dim.payload):
            if part.number == _DIM_VALUE and part.wire == _VARINT:
                value = part.value - (1 << 64) if part.value >= 1 << 63 else part.value
            elif part.number == _DIM_PARAM and part.wire == _LEN:
                value = part.payload.decode("utf-8", errors="replace")
        dims.append(value)
    return tuple(dims)


def _value_info(buf: bytes) -> ValueInfo:
    name, elem_type, dims = "", 0, None
    for field in _fields(buf):
        if field.number == _VALUE_NAME and field.wire == _LEN:
            name = field.payload.decode("utf-8", errors="replace")
        elif field.number == _VALUE_TYPE and field.wire == _LEN:
            for kind in _fields(field.payload):
                if kind.number != _TYPE_TENSOR or kind.wire != _LEN:
                    continue
                for part in _fields(kind.payload):
                    if part.number == _TENSOR_ELEM_TYPE and part.wire == _VARINT:
                        elem_type = part.value
                    elif part.number == _TENSOR_SHAPE and part.wire == _LEN:
                        dims = _dims(part.payload)
    return ValueInfo(name, elem_type, dims)


def _tensor_name(buf: bytes) -> str:
    for field in _fields(buf):
        if field.number == _TENSOR_NAME and field.wire == _LEN:
            return field.payload.decode("utf-8", errors="replace")
    return ""


def read_graph_io(model: bytes) -> GraphIO:
    """The declared inputs and outputs of a serialized ModelProto, and its initializer names."""
    inputs: list[ValueInfo] = []
    outputs: list[ValueInfo] = []
    initializers: set[str] = set()
    for field in _fields(_graph(model)):
        if field.wire != _LEN:
            continue
        if field.number == _GRAPH_INPUT:
            inputs.append(_value_info(field.payload))
        elif field.number == _GRAPH_OUTPUT:
            outputs.append(_value_info(field.payload))
        elif field.number == _GRAPH_INITIALIZER:
            initializers.add(_tensor_name(field.payload))
    return GraphIO(tuple(inputs), tuple(outputs), frozenset(initializers))


def _encode_shape(dims: Sequence[Dim]) -> bytes:
    out = bytearray()
    for dim in dims:
        if isinstance(dim, str):
            inner = _len_field(_DIM_PARAM, dim.encode("utf-8"))
        else:
            inner = _varint(_DIM_VALUE << 3 | _VARINT) + _varint(int(dim))
        out += _len_field(_SHAPE_DIM, inner)
    return bytes(out)


def _rewrite(buf: bytes, number: int, rewrite: Callable[[bytes], bytes]) -> bytes:
    """`buf` with every LEN field `number` replaced by rewrite(payload); all else copied."""
    out = bytearray()
    for field in _fields(buf):
        if field.number == number and field.wire == _LEN:
            out += _len_field(number, rewrite(field.payload))
        else:
            out += field.raw
    return bytes(out)


def _with_shape(value_info: bytes, dims: Sequence[Dim]) -> bytes:
    shape = _encode_shape(dims)

    def tensor(buf: bytes) -> bytes:
        kept = b"".join(f.raw for f in _fields(buf) if f.number != _TENSOR_SHAPE)
        return kept + _len_field(_TENSOR_SHAPE, shape)

    return _rewrite(value_info, _VALUE_TYPE, lambda t: _rewrite(t, _TYPE_TENSOR, tensor))


def set_io_dims(model: bytes, dims: Mapping[str, Sequence[Dim]]) -> bytes:
    """The model with the declared shape of each named graph input or output replaced.

    Only the declarations change; a graph whose operators depend on the old size (a fixed
    Reshape) will fail when ONNX Runtime builds the session, with the runtime's own message.
    """
    io = read_graph_io(model)
    known = {v.name for v in (*io.inputs, *io.outputs)}
    missing = sorted(set(dims) - known)
    if missing:
        raise OnnxGraphError(f"the graph has no input or output named {', '.join(missing)}")

    def value_info(buf: bytes) -> bytes:
        name = _value_info(buf).name
        return _with_shape(buf, dims[name]) if name in dims else buf

    def graph(buf: bytes) -> bytes:
        return _rewrite(_rewrite(buf, _GRAPH_INPUT, value_info), _GRAPH_OUTPUT, value_info)

    return _rewrite(model, _MODEL_GRAPH, graph)
