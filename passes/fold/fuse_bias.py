"""fuse-bias: move an addition of a constant after a linear layer into the layer's bias.

Ownership: fuse-bias is the only pass that folds an Add/Sub of a constant *after* a layer;
fold-scale owns the multiplications after a layer and the folds before a Conv.

Rules (Y = layer output, Y's only use is the Add/Sub, Y not a graph output, a a constant):
- Conv / ConvTranspose, then Y + a, a + Y or Y - a with a a scalar or broadcasting to [1, C, 1, ...]:
  B += a (or -a); B is created when the layer has none.
- Gemm, then the same with a broadcasting to [1, N]: C becomes beta * C + a and beta becomes 1.
- inference BatchNormalization, then the same with a per channel on axis 1: B += a.
- MatMul(A, W) with A and W both 2-D and a floating-point type, then Y + a (or Y - a) with a a
  1-D bias ([N], [1, N] or a scalar): the pair becomes Gemm(A, W, a). W need not be constant.
  A MatMul on higher-rank inputs is left alone (Gemm is 2-D only).
The existing bias must be a constant used by that layer alone ("refused: shared weight" counts the
refusals); biases keep their data type (float64 arithmetic, cast back). The Add/Sub's output name
is kept when it is a graph output.
The main graph and its subgraphs are visited; model-local functions are not (they cannot hold
initializers). Nodes of non-standard domains are never touched (noted).
"""

from __future__ import annotations

import onnx_ir as ir

from passes.base import Pass, PassResult, is_standard_domain, register
from passes.fold.fold_batchnorm import (
    Layout,
    add_initializer,
    add_output_bias,
    bypass,
    channel_vector,
    constant_array,
    describe,
    is_inference_batchnorm,
    is_private,
    output_layout,
    rewritable_graphs,
    value_rank,
)

BIASED_LAYERS = ("Conv", "ConvTranspose", "Gemm", "BatchNormalization")
GEMM_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16})


@register
class FuseBiasPass(Pass):
    name = "fuse-bias"

    def call(self, model: ir.Model) -> PassResult:
        fused = 0
        gemm_opset = model.opset_imports.get("", 0) >= 7  # Gemm broadcasts C from opset 7
        for graph in rewritable_graphs(model):
            for node in list(graph):
                if node.graph is None:  # removed by an earlier rewrite in this run
                    continue
                if not is_standard_domain(node):
                    self.note(f"{describe(node)} (domain {node.domain}): unknown custom op left alone")
                    continue
                if node.op_type not in ("Add", "Sub"):
                    continue
                if self._fuse_into_bias(node):
                    self.stats["biases fused"] += 1
                    fused += 1
                elif gemm_opset and self._fuse_matmul_into_gemm(node):
                    self.stats["matmul+add to gemm"] += 1
                    fused += 1
        return PassResult(model, modified=fused > 0)

    def _fuse_into_bias(self, op: ir.Node) -> bool:
        match = _layer_output_and_bias(op, BIASED_LAYERS)
        if match is None:
            return False
        layer, layer_output, bias, sign = match
        if layer.op_type == "BatchNormalization" and not is_inference_batchnorm(layer):
            return False
        layout = output_layout(layer)
        if layout is None:
            return False
        shift = channel_vector(bias, layout)
        if shift is None:
            return False
        refusal = _bias_refusal(layer)
        if refusal is not None:
            self.stats[f"refused: {refusal}"] += 1
            return False
        add_output_bias(layer, sign * shift)
        bypass(op, layer_output)
        return True

    def _fuse_matmul_into_gemm(self, op: ir.Node) -> bool:
        match = _layer_output_and_bias(op, ("MatMul",))
        if match is None:
            return False
        matmul, product, bias, sign = match
        a, w = matmul.inputs
        if value_rank(a) != 2 or value_rank(w) != 2 or a.dtype not in GEMM_TYPES:
            return False
        columns = w.shape[1]
        if not isinstance(columns, int) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            return False
        shift = channel_vector(bias, Layout(columns, 2, 1))
        if shift is None:
            return False
        graph = op.graph
        c = add_initializer(graph, f"{product.name}_bias", (sign * shift).astype(bias.dtype))
        gemm = ir.node("Gemm", [a, w, c])  # the graph's name authority gives it a unique name
        graph.insert_before(matmul, gemm)
        gemm.outputs[0].dtype = op.outputs[0].dtype
        gemm.outputs[0].shape = op.outputs[0].shape
        bypass(op, gemm.outputs[0])
        graph.remove(matmul, safe=True)
        return True


def _layer_output_and_bias(op: ir.Node, layer_ops):
    """(layer, its output, constant addend, sign) for Y + a, a + Y or Y - a after one of layer_ops."""
    if len(op.inputs) != 2 or any(v is None for v in op.inputs):
        return None
    first, second = (constant_array(v) for v in op.inputs)
    if second is not None and first is None:
        variable, bias = op.inputs[0], second
    elif first is not None and second is None and op.op_type == "Add":
        variable, bias = op.inputs[1], first
    else:
        return None  # a - Y negates Y: not a bias
    if bias.dtype.kind != "f":
        return None
    layer = variable.producer()
    if layer is None or layer.op_type not in layer_ops or not is_standard_domain(layer):
        return None
    if not is_private(variable) or variable is not layer.outputs[0]:
        return None
    sign = 1.0 if op.op_type == "Add" else -1.0
    return layer, variable, bias, sign


def _bias_refusal(layer: ir.Node) -> str | None:
    """Why the layer's bias cannot be rewritten in place (None when it can, or is absent)."""
    index = 2
    if index >= len(layer.inputs) or layer.inputs[index] is None:
        return None if layer.op_type != "BatchNormalization" else "bias not constant"
    bias = layer.inputs[index]
    array = constant_array(bias)
    if array is None:
        return "bias not constant"
    if array.dtype.kind != "f":
        return "bias not floating point"
    if not is_private(bias):
        return "shared weight"
    return None
