"""Building blocks of QDQ graphs: quantization parameters, QuantizeLinear/DequantizeLinear insertion.

Rules:
- Activations: ``uint8`` is asymmetric over a range containing zero (zero point in [0, 255]);
  ``int8`` is symmetric (zero point 0, levels -127..127 so that -x is representable) unless asked
  asymmetric. A degenerate range (all zeros) gets scale 1.
- Weights: symmetric, per output channel along ``axis`` or per tensor, int8 levels -127..127 (or the
  ``bits``-bit equivalent); an all-zero channel gets scale 1 so the bias scale stays finite.
- Biases of Conv/Gemm become int32 with scale ``input scale * weight scale`` (what ONNX Runtime's
  integer kernels expect), clipped to the int32 range.
- Per-channel DequantizeLinear needs opset 13 (the ``axis`` attribute); ``raise_opset`` converts the
  model in place with ``onnx.version_converter`` and raises its IR version to the opset's; block-wise
  int4 needs opset 21 (IR 10).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from ir.errors import InvalidModelError

INT32 = np.iinfo(np.int32)
BIAS_LIMIT = 2.0**30  # int32 bias levels kept below this (half the range: headroom for rounding)


def default_opset(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1)))


def raise_opset(model: ir.Model, minimum: int) -> bool:
    """Convert the model to ``minimum`` when its default-domain opset is lower; True when converted."""
    if default_opset(model) >= minimum:
        return False
    proto = ir.serde.serialize_model(model)
    try:
        converted = onnx.version_converter.convert_version(proto, minimum)
    except Exception as exc:  # the converter raises assorted errors on ops it cannot adapt
        raise InvalidModelError(f"cannot convert the model from opset {default_opset(model)} to {minimum}: {str(exc).splitlines()[0]}") from exc
    new = ir.serde.deserialize_model(converted)
    opsets = dict(new.opset_imports)  # the model's opset_imports is its graph's dict
    model.graph = new.graph
    model.opset_imports.clear()
    model.opset_imports.update(opsets)
    # at least the IR version of the new opset (the converter keeps the old one): opset 13 needs IR 7,
    # opset 21 (and the INT4 type of block-wise weights) IR 10
    required = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", minimum)])
    model.ir_version = max(model.ir_version, new.ir_version, required)
    return True


def is_private(value: ir.Value) -> bool:
    """Used exactly once, and not a graph input or output: it can be rewritten freely."""
    return len(value.uses()) == 1 and not value.is_graph_output() and not value.is_graph_input()


def drop_unused_constants(graph: ir.Graph) -> None:
    """Remove Constant nodes and initializers nobody reads any more (weights replaced by their codes)."""
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            del graph.initializers[name]
    for node in list(graph):
        if node.op_type == "Constant" and not node.outputs[0].uses() and not node.outputs[0].is_graph_output():
            graph.remove(node, safe=True)


def set_constant_input(node: ir.Node, index: int, array: np.ndarray, base: str) -> None:
    """Give input ``index`` of the node a fresh initializer holding ``array``."""
    writer = GraphWriter(node.graph, "quantize")
    if len(node.inputs) <= index:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, writer.constant(base, array))


def activation_params(lo: float, hi: float, dtype: str, symmetric: bool) -> tuple[np.float32, np.ndarray]:
    """(scale, zero point) for an activation range; the zero point has the storage dtype."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if dtype == "uint8":
        scale = (hi - lo) / 255.0
        zero = 0 if scale == 0 else int(np.clip(np.round(-lo / scale), 0, 255))
        return np.float32(scale or 1.0), np.array(zero, dtype=np.uint8)
    if symmetric:
        scale = max(-lo, hi) / 127.0
        return np.float32(scale or 1.0), np.array(0, dtype=np.int8)
    scale = (hi - lo) / 255.0
    zero = 0 if scale == 0 else int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return np.float32(scale or 1.0), np.array(zero, dtype=np.int8)


def symmetric_weight(weight: np.ndarray, axis: int | None, bits: int = 8, minimum_scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric quantization: (integer levels as int8, scale per channel of ``axis`` or a scalar),
    each scale at least ``minimum_scale`` when given."""
    levels = 2 ** (bits - 1) - 1
    w = weight.astype(np.float64)
    if axis is None:
        peak = np.array(np.abs(w).max())
    else:
        peak = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scale = np.where(peak > 0, peak / levels, 1.0)
    if minimum_scale is not None:
        scale = np.maximum(scale, minimum_scale)
    # Levels nearest to w for the scale the model stores (float32), not for the unrounded one: they
    # differ where w / scale is within float32 rounding of a half-way point.
    scale = scale.astype(np.float32).astype(np.float64)
    shaped = scale if axis is None else scale.reshape([-1 if i == axis else 1 for i in range(w.ndim)])
    q = np.clip(np.round(w / shaped), -levels, levels).astype(np.int8)
    return q, scale.astype(np.float32)


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    shaped = scale if axis is None or np.ndim(scale) == 0 else scale.reshape([-1 if i == axis else 1 for i in range(q.ndim)])
    return q.astype(np.float32) * shaped


def quantized_bias(bias: np.ndarray, input_scale: float, weight_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(int32 levels, float32 scale, number of clipped elements) for a bias vector."""
    scale = (np.float64(input_scale) * weight_scale.astype(np.float64)).astype(np.float32)
    scale = np.broadcast_to(scale, bias.shape) if scale.ndim else scale
    levels = np.round(bias.astype(np.float64) / scale.astype(np.float64))
    clipped = int(np.count_nonzero((levels < INT32.min) | (levels > INT32.max)))
    return np.clip(levels, INT32.min, INT32.max).astype(np.int32), np.asarray(scale, np.float32), clipped


class GraphWriter:
    """Adds initializers and Q/DQ nodes to a graph with names that do not collide."""

    def __init__(self, graph: ir.Graph, tag: str):
        self.graph = graph
        self.tag = tag
        self.taken = set(graph.initializers) | {v.name for v in graph.inputs}
        self.taken.update(out.name for node in graph for out in node.outputs if out.name)
        self.taken.update(node.name for node in graph if node.name)

    def fresh(self, base: str) -> str:
        name, counter = base, 0
        while name in self.taken:
            counter += 1
            name = f"{base}_{counter}"
        self.taken.add(name)
        return name

    def constant(self, base: str, array: np.ndarray) -> ir.Value:
        name = self.fresh(base)
        # Not np.ascontiguousarray: it turns a 0-d scale into shape [1], and ONNX Runtime fuses
        # Q/DQ pairs into QLinear ops (and drops Relu/Clip before a Q) only for scalar scales.
        array = np.require(array, requirements="C")
        value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(array.dtype)), shape=ir.Shape(array.shape),
                         const_value=ir.tensor(array, name=name))
        self.graph.register_initializer(value)
        return value

    def node(self, op: str, inputs: list[ir.Value], base: str, dtype: ir.DataType, shape, attributes=None, domain: str = "") -> ir.Value:
        node = ir.node(op, inputs, attributes=attributes or {}, domain=domain, name=self.fresh(f"{base}_{op}"))
        node.metadata_props["graphpress.rule"] = self.tag
        self.graph.append(node)
        out = node.outputs[0]
        out.name = self.fresh(f"{base}_{'dq' if op == 'DequantizeLinear' else 'q' if op == 'QuantizeLinear' else op.lower()}")
        out.dtype = dtype
        out.shape = shape
        return out

    def dequantized_constant(self, base: str, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int | None,
                             block_size: int | None = None) -> ir.Value:
        attributes = {}
        if axis is not None and (np.ndim(scale) > 0):
            attributes["axis"] = axis
        if block_size:
            attributes["block_size"] = block_size
        inputs = [self.constant(f"{base}_quantized", q), self.constant(f"{base}_scale", scale), self.constant(f"{base}_zero_point", zero)]
        return self.node("DequantizeLinear", inputs, base, ir.DataType.FLOAT, ir.Shape(q.shape), attributes)

    def fake_quantize(self, value: ir.Value, scale: np.float32, zero: np.ndarray) -> ir.Value:
        """Insert Q -> DQ after ``value``; every other reader of ``value`` reads the DQ output."""
        users = list(value.uses())
        base = value.name or "value"
        scale_value = self.constant(f"{base}_scale", np.asarray(scale, np.float32))
        zero_value = self.constant(f"{base}_zero_point", zero)
        q = self.node("QuantizeLinear", [value, scale_value, zero_value], base, ir.DataType.from_numpy(zero.dtype), value.shape)
        dq = self.node("DequantizeLinear", [q, scale_value, zero_value], base, value.dtype or ir.DataType.FLOAT, value.shape)
        for user, index in users:
            user.replace_input_with(index, dq)
        return dq
