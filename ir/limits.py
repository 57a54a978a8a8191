"""Resource caps for untrusted models, checked on the protobuf before anything is built from it.

A model file can ask for more than the machine has. Rules (each cap can be raised with the
environment variable named beside it):
- a model file of 2 GiB or more is refused before it is parsed: protobuf cannot hold a message that
  large, so such a model must keep its weights in external data (``MAX_PROTO_BYTES``, fixed);
- a model with more than ``MAX_NODES`` nodes in all (main graph, subgraphs, functions) is refused
  (``GRAPHPRESS_MAX_NODES``, default 1,000,000: the largest published models have about 10^5);
- subgraphs nested deeper than ``MAX_GRAPH_DEPTH`` levels are refused (``GRAPHPRESS_MAX_GRAPH_DEPTH``,
  default 16; every tool below recurses once per level);
- every tensor stored in the model must hold exactly the data its dims and type declare: dims are
  non-negative, their product times the element size stays below 2^63, and inline data has that
  length (a tensor cannot declare terabytes and hold nothing);
- a value that a run would compute (a graph input, a node output whose shape is known statically,
  e.g. a ``ConstantOfShape``/``Expand``/``Tile`` of a constant shape) must stay below
  ``MAX_VALUE_BYTES`` before ONNX Runtime is asked to compute it (``GRAPHPRESS_MAX_VALUE_BYTES``,
  default 8 GiB); ``fold-constants{max_bytes}`` caps what folding itself materializes.
- every text field (names, op types, domains) is valid UTF-8, and every attribute has a defined type.
Violations raise ``InvalidModelError`` with one line naming what and where.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import onnx
import onnx_ir as ir
from google.protobuf.descriptor import FieldDescriptor

from ir.errors import InvalidModelError

MAX_PROTO_BYTES = (1 << 31) - 1
INT64_LIMIT = 1 << 63


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    try:
        return int(text) if text else default
    except ValueError:
        return default


def max_nodes() -> int:
    return _env_int("GRAPHPRESS_MAX_NODES", 1_000_000)


def max_graph_depth() -> int:
    return _env_int("GRAPHPRESS_MAX_GRAPH_DEPTH", 16)


def max_value_bytes() -> int:
    return _env_int("GRAPHPRESS_MAX_VALUE_BYTES", 8 << 30)


def check_proto_size(size: int, where: str) -> None:
    if size > MAX_PROTO_BYTES:
        raise InvalidModelError(
            f"{where}: {size:,} bytes is over protobuf's 2 GiB limit; a model this large must keep its weights in external data"
        )


# --- walking every graph and tensor of a ModelProto -----------------------------------------------


def graphs(proto: onnx.ModelProto, where: str) -> Iterator[onnx.GraphProto]:
    """The main graph, every subgraph and every function body's subgraphs, iteratively; refuses a
    nesting deeper than the cap and more nodes than the cap."""
    depth_cap, node_cap = max_graph_depth(), max_nodes()
    stack: list[tuple[object, int]] = [(proto.graph, 0)] + [(f, 0) for f in proto.functions]
    nodes = 0
    while stack:
        graph, depth = stack.pop()
        if depth > depth_cap:
            raise InvalidModelError(f"{where}: subgraphs nested {depth} levels deep (more than {depth_cap})")
        nodes += len(graph.node)
        if nodes > node_cap:
            raise InvalidModelError(f"{where}: more than {node_cap:,} nodes (set GRAPHPRESS_MAX_NODES to allow more)")
        if isinstance(graph, onnx.GraphProto):
            yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    stack.append((attribute.g, depth + 1))
                stack.extend((g, depth + 1) for g in attribute.graphs)


def tensors(graph: onnx.GraphProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every tensor a graph holds (not those of its subgraphs), with a label for messages."""
    for tensor in graph.initializer:
        yield tensor, f"initializer '{tensor.name}'"
    for sparse in graph.sparse_initializer:
        yield sparse.values, f"sparse initializer '{sparse.values.name}'"
        yield sparse.indices, f"indices of sparse initializer '{sparse.values.name}'"
    for node in graph.node:
        for attribute in node.attribute:
            where = f"attribute '{attribute.name}' of node '{node.name or node.op_type}'"
            if attribute.HasField("t"):
                yield attribute.t, where
            for tensor in attribute.tensors:
                yield tensor, where
            sparse_list = ([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []) + list(attribute.sparse_tensors)
            for sparse in sparse_list:
                yield sparse.values, where
                yield sparse.indices, where


# --- tensors hold what they declare ---------------------------------------------------------------

# Typed field and stored entries per element, for the types whose layout is fixed by onnx.proto.
_TYPED_FIELDS = {
    onnx.TensorProto.FLOAT: ("float_data", 1),
    onnx.TensorProto.DOUBLE: ("double_data", 1),
    onnx.TensorProto.INT64: ("int64_data", 1),
    onnx.TensorProto.UINT64: ("uint64_data", 1),
    onnx.TensorProto.UINT32: ("uint64_data", 1),
    onnx.TensorProto.COMPLEX64: ("float_data", 2),
    onnx.TensorProto.COMPLEX128: ("double_data", 2),
    onnx.TensorProto.STRING: ("string_data", 1),
    **{t: ("int32_data", 1) for t in (onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                                       onnx.TensorProto.UINT16, onnx.TensorProto.UINT8, onnx.TensorProto.BOOL,
                                       onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)},
}


_DATA_TYPES = frozenset(int(t) for t in ir.DataType)


def elements(dims, where: str) -> int:
    if any(d < 0 for d in dims):
        raise InvalidModelError(f"{where}: negative dimension in {list(dims)}")
    return math.prod(dims)


def declared_bytes(tensor: onnx.TensorProto, where: str) -> int | None:
    """Bytes that dims x type declare (None for strings and unknown types); refuses dims that
    multiply past 2^63."""
    count = elements(tensor.dims, where)
    try:
        bits = ir.DataType(tensor.data_type).bitwidth
    except (ValueError, TypeError):
        return None
    size = math.ceil(count * bits / 8)
    if size >= INT64_LIMIT or count >= INT64_LIMIT:
        raise InvalidModelError(f"{where}: dims {list(tensor.dims)} multiply past 2^63")
    return size


def check_inline_tensor(tensor: onnx.TensorProto, where: str) -> None:
    """A tensor stored in the protobuf has a data type and holds exactly the data its dims and type declare."""
    if tensor.data_type == onnx.TensorProto.UNDEFINED or tensor.data_type not in _DATA_TYPES:
        raise InvalidModelError(f"{where}: no valid data type ({tensor.data_type})")
    expected = declared_bytes(tensor, where)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return  # checked against its file by ir.external
    if tensor.HasField("raw_data"):
        if expected is not None and len(tensor.raw_data) != expected:
            raise InvalidModelError(
                f"{where}: holds {len(tensor.raw_data):,} bytes but dims {list(tensor.dims)} of type "
                f"{_type_name(tensor.data_type)} need {expected:,}"
            )
        return
    field = _TYPED_FIELDS.get(tensor.data_type)
    if field is None:
        return
    name, per_element = field
    count = elements(tensor.dims, where)
    held = len(getattr(tensor, name))
    if held != count * per_element:
        raise InvalidModelError(f"{where}: holds {held:,} values but dims {list(tensor.dims)} need {count * per_element:,}")


def _type_name(data_type: int) -> str:
    try:
        return ir.DataType(data_type).name
    except ValueError:
        return str(data_type)


def check_model_proto(proto: onnx.ModelProto, where: str) -> None:
    """Node count, nesting depth, every stored tensor's dims and data, and text fields that are text
    (see the module docstring)."""
    for graph in graphs(proto, where):
        for tensor, label in tensors(graph):
            check_inline_tensor(tensor, f"{where}: {label}")
        _check_attribute_types(graph.node, where)
    for function in proto.functions:
        _check_attribute_types(function.node, where)
    check_text(proto, where)


_ATTRIBUTE_TYPES = frozenset(onnx.AttributeProto.AttributeType.values()) - {onnx.AttributeProto.UNDEFINED}


def _check_attribute_types(nodes, where: str) -> None:
    for node in nodes:
        for attribute in node.attribute:
            if attribute.type not in _ATTRIBUTE_TYPES:
                raise InvalidModelError(
                    f"{where}: attribute '{attribute.name}' of node '{node.name or node.op_type}' has no valid type ({attribute.type})"
                )


def check_text(proto, where: str) -> None:
    """Every string field (names, op types, domains, doc strings) holds valid UTF-8.

    Protobuf hands undecodable bytes over as they are, so a model with them loads but cannot be
    serialized again for the checker, inference or ONNX Runtime."""
    string = FieldDescriptor.TYPE_STRING
    message = FieldDescriptor.TYPE_MESSAGE
    stack = [proto]
    while stack:
        current = stack.pop()
        for field, value in current.ListFields():
            if field.type == string:
                for text in value if _repeated(field) else (value,):
                    if not _is_text(text):
                        shown = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
                        raise InvalidModelError(f"{where}: field '{field.name}' of a {current.DESCRIPTOR.name} is not valid UTF-8 ({shown[:40]!r})")
            elif field.type == message:
                stack.extend(value if _repeated(field) else (value,))


def _is_text(text) -> bool:
    # Protobuf returns undecodable string fields as bytes (upb) or as text with surrogates.
    if isinstance(text, bytes):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _repeated(field) -> bool:
    return field.is_repeated


# --- values a run would compute -------------------------------------------------------------------


def value_bytes(value: ir.Value) -> int | None:
    """Bytes of a value with a static shape and a sized type, else None."""
    if value.shape is None or value.dtype is None:
        return None
    dims = list(value.shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    try:
        bits = value.dtype.bitwidth
    except (ValueError, TypeError):
        return None
    return math.ceil(math.prod(max(d, 0) for d in dims) * bits / 8)


def check_runnable(model: ir.Model, where: str = "model") -> None:
    """Refuse to run a model one of whose statically known values exceeds the cap."""
    cap = max_value_bytes()
    for value in model.graph.inputs:
        size = value_bytes(value)
        if size is not None and size > cap:
            raise InvalidModelError(f"{where}: input '{value.name}' would take {_human(size)}, more than the {_human(cap)} cap (GRAPHPRESS_MAX_VALUE_BYTES)")
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        for value in node.outputs:
            size = value_bytes(value)
            if size is not None and size > cap:
                raise InvalidModelError(
                    f"{where}: node '{node.name or node.op_type}' ({node.op_type}) would produce '{value.name}' of "
                    f"{_human(size)}, more than the {_human(cap)} cap (GRAPHPRESS_MAX_VALUE_BYTES)"
                )


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size} B"
