"""Reading constant tensors the way real exporters store them.

``constant_array``: a value the model cannot change at run time: an initializer that is not a graph
input, or a ``Constant`` node's output. An initializer listed as a graph input may be fed by the
caller, so it is not a constant; what cannot be read (external data, a type numpy cannot hold, a
malformed ``Constant``) is not one either. Rewriting passes use this.

``weight_array``: a weight as the channel analysis reads it: an initializer (also one listed as a
graph input, as in the onnx package's light_* models), the output of a ``Constant`` node (PP-OCR),
a ``ConstantOfShape`` of a constant shape, or a reshaping op of such a weight. The analysis only
reads weights; rewriting code gives the node a fresh initializer, so the original storage is never
modified in place.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The contents of a constant value (see the module docstring), or None."""
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = ir.convenience.get_const_tensor(value)
        return None if tensor is None else tensor.numpy()
    except Exception:  # a malformed Constant node or unreadable external data: not usable as a constant
        return None


def weight_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's contents when it is a weight (see module docstring), else None."""
    if value is None:
        return None
    if value.const_value is not None:
        try:
            return value.const_value.numpy()
        except Exception:  # unreadable external data or an unsupported type
            return None
    producer = value.producer()
    if producer is None or producer.domain not in ("", "ai.onnx"):
        return None
    if producer.op_type == "Constant":
        try:
            tensor = ir.convenience.get_const_tensor(value)
        except ValueError:
            return None
        return None if tensor is None else tensor.numpy()
    if producer.op_type == "ConstantOfShape":
        shape = weight_array(producer.inputs[0])
        if shape is None:
            return None
        attr = producer.attributes.get("value")
        fill = attr.value.numpy().reshape(-1) if attr is not None else np.zeros(1, np.float32)
        return np.full(tuple(int(d) for d in shape), fill[0], dtype=fill.dtype)
    if producer.op_type in _SHAPE_OPS and producer.inputs and producer.inputs[0] is not None:
        data = weight_array(producer.inputs[0])
        if data is None:
            return None
        return _SHAPE_OPS[producer.op_type](producer, data)
    return None


def _axes(node: ir.Node) -> list[int] | None:
    attr = node.attributes.get("axes")
    if attr is not None:
        return list(attr.value)
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        array = weight_array(node.inputs[1])
        return None if array is None else [int(a) for a in array.reshape(-1)]
    return None


def _unsqueeze(node: ir.Node, data: np.ndarray) -> np.ndarray | None:
    axes = _axes(node)
    if axes is None:
        return None
    rank = data.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        data = np.expand_dims(data, axis)
    return data


def _squeeze(node: ir.Node, data: np.ndarray) -> np.ndarray | None:
    axes = _axes(node)
    return np.squeeze(data) if axes is None else np.squeeze(data, axis=tuple(a % data.ndim for a in axes))


def _reshape(node: ir.Node, data: np.ndarray) -> np.ndarray | None:
    shape = weight_array(node.inputs[1])
    if shape is None:
        return None
    dims = [data.shape[i] if d == 0 else int(d) for i, d in enumerate(shape.reshape(-1))]
    return data.reshape(dims)


def _cast(node: ir.Node, data: np.ndarray) -> np.ndarray | None:
    return data.astype(ir.DataType(node.attributes.get_int("to")).numpy())


# Ops exporters put between a stored weight and its use; evaluated here so the weight is seen.
_SHAPE_OPS = {
    "Identity": lambda node, data: data,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Cast": _cast,
}


def is_weight(value: ir.Value | None) -> bool:
    """Whether ``weight_array`` would return an array, without materializing it."""
    if value is None:
        return False
    if value.const_value is not None:
        return True
    producer = value.producer()
    if producer is None or producer.domain not in ("", "ai.onnx"):
        return False
    if producer.op_type == "Constant":
        return True
    if producer.op_type in ("ConstantOfShape", *_SHAPE_OPS):
        return all(is_weight(v) for v in producer.inputs if v is not None)
    return False


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value.shape is None:
        array = weight_array(value)
        return None if array is None else array.shape
    dims = []
    for dim in value.shape:
        if not isinstance(dim, int) or dim < 0:
            return None
        dims.append(dim)
    return tuple(dims)
