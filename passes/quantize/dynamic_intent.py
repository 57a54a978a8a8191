"""The intent of ``quantize-dynamic``: each quantized layer computed in float on integer levels.

Dynamic quantization means, by definition, ``y = s_x s_w sum (q_x - z_x) q_w + b`` with the input
quantized at run time and the weight on fixed levels. The intent writes exactly that with float ONNX
ops on the original layer:

- the layer's input ``x`` (per tensor, uint8, what ``DynamicQuantizeLinear`` defines):
  ``lo = min(0, min x)``, ``hi = max(0, max x)``, ``s_x = (hi - lo) / 255``,
  ``z_x = Clip(Round(-lo / s_x), 0, 255)``, and the layer reads ``Clip(Round(x / s_x) + z_x, 0, 255) - z_x``
  (layers reading the same ``x`` share it; a constant-zero input, ``s_x = 0``, is outside this);
- its weight becomes the levels ``Clip(round(w / s_w), -127, 127)``, computed in numpy from the
  original weight with ``s_w = max |w| / 127`` per output channel (or per tensor) rounded to float32
  (1 for a zero channel); the output axis is the node's own (MatMul ``[K, N]``: 1; Gemm: 0 with
  transB, else 1; Conv: 0);
- its output is multiplied by ``s_x * (s_w alpha)`` and then its bias (Gemm: ``beta C``; Conv: per
  channel) is added; the node itself runs with alpha = beta = 1 and no bias.

Why on levels and not "the original with dequantized weights and fake-quantized inputs": a float
layer on dequantized values differs from the integer product by float rounding (~1e-7 relative),
and a later layer re-quantizing its input at run time turns such a difference, where ``x / s_x``
is near a half-way point, into a whole level (on the 2-layer transformer encoder, 1 in 2 feeds:
0.7% relative error at the output). Sums of products of levels are integers, exact in float32
while below 2^24 (255 * 127 * K: K up to ~500 at full scale, far more in practice), so this
intent is computed with the same roundings as the integer model: scale product, then bias.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ir.constants import constant_array
from passes.intent import set_constant

LEVELS = 127


def output_axis(node: ir.Node) -> int:
    if node.op_type == "MatMul":
        return 1
    if node.op_type == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    return 0


def levels(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(symmetric int8 levels of ``weight`` as float32, scale per channel of ``axis`` or one, float32)."""
    w = weight.astype(np.float64)
    reduce = None if axis is None else tuple(i for i in range(w.ndim) if i != axis)
    peak = np.abs(w).max(axis=reduce, keepdims=True)
    scale = np.where(peak > 0, peak / LEVELS, 1.0).astype(np.float32)
    return np.clip(np.round(w / scale.astype(np.float64)), -LEVELS, LEVELS).astype(np.float32), scale


def build(original: ir.Model, positions: list[int], per_channel: bool) -> ir.Model:
    """``original`` with the nodes at ``positions`` computed on levels and rescaled."""
    graph = original.graph
    nodes = list(graph)
    inputs: dict[ir.Value, tuple[ir.Value, ir.Value]] = {}
    for position in positions:
        node = nodes[position]
        x = node.inputs[0]
        if x not in inputs:
            inputs[x] = _dynamic_levels(Ops(graph, f"{x.name or 'x'}_intent_{len(inputs)}"), x)
        _on_levels(graph, node, *inputs[x], per_channel)
    graph.sort()
    return original


class Ops:
    """Appends float nodes and scalar constants to ``graph``, named from ``base``."""

    def __init__(self, graph: ir.Graph, base: str):
        self.graph, self.base, self.count = graph, base, 0

    def const(self, array) -> ir.Value:
        array = np.asarray(array, np.float32)
        name = f"{self.base}_c{self.count}"
        self.count += 1
        value = ir.Value(name=name, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(array.shape), const_value=ir.tensor(array, name=name))
        self.graph.register_initializer(value)
        return value

    def __call__(self, kind: str, *inputs: ir.Value, **attributes) -> ir.Value:
        node = ir.node(kind, list(inputs), attributes=attributes, name=f"{self.base}_{self.count}_{kind}")
        node.outputs[0].name = f"{self.base}_{self.count}_{kind.lower()}"
        node.outputs[0].dtype = ir.DataType.FLOAT
        self.count += 1
        self.graph.append(node)
        return node.outputs[0]


def _dynamic_levels(op: Ops, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(``q - z`` as float, the scale ``s``) of ``x`` quantized per tensor to uint8 at run time."""
    zero, top = op.const(0.0), op.const(255.0)
    low = op("Min", op("ReduceMin", x, keepdims=0), zero)
    high = op("Max", op("ReduceMax", x, keepdims=0), zero)
    scale = op("Div", op("Sub", high, low), top)
    point = op("Clip", op("Round", op("Div", op("Neg", low), scale)), zero, top)
    quantized = op("Clip", op("Add", op("Round", op("Div", x, scale)), point), zero, top)
    centred = op("Sub", quantized, point)
    centred.shape = x.shape
    return centred, scale


def _on_levels(graph: ir.Graph, node: ir.Node, centred: ir.Value, x_scale: ir.Value, per_channel: bool) -> None:
    op = Ops(graph, f"{node.name or node.outputs[0].name}_intent")
    weight = constant_array(node.inputs[1])
    axis = output_axis(node)
    q, w_scale = levels(weight, axis if per_channel else None)
    set_constant(node, 1, q)
    node.replace_input_with(0, centred)
    bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if node.op_type == "Gemm":
        w_scale = w_scale.reshape(-1) * np.float32(node.attributes.get_float("alpha", 1.0))
        bias = None if bias is None else bias * np.float32(node.attributes.get_float("beta", 1.0))
        node.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
        node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    elif node.op_type == "Conv":
        w_scale = w_scale.reshape([-1] + [1] * (weight.ndim - 2))
        bias = None if bias is None else bias.reshape([-1] + [1] * (weight.ndim - 2))
    else:
        w_scale = w_scale.reshape(-1)
    if len(node.inputs) > 2:
        node.replace_input_with(2, None)
    out = node.outputs[0]
    users = list(out.uses())
    result = op("Mul", out, op("Mul", x_scale, op.const(w_scale if per_channel else w_scale.reshape(()))))
    if bias is not None:
        result = op("Add", result, op.const(bias.astype(np.float32)))
    result.shape = out.shape
    for user, index in users:
        user.replace_input_with(index, result)
    if out.is_graph_output():
        outputs = graph.outputs
        outputs[list(outputs).index(out)] = result
        name = out.name
        out.name = f"{name}_on_levels"
        result.name = name
