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
- MatMul(A, W) with A of rank 3 or more ([..., K], leading dimensions known but for at most one) and W
  2-D, then the same bias: ``Reshape(A, [-1, K]) -> Gemm(·, W, a) -> Reshape([..., N])``, but only
  where a neighbour absorbs one of the two Reshapes, so the graph gets no more nodes: A comes from
  a Reshape/Flatten/Squeeze/Unsqueeze that nothing else reads, or the sum goes only to a Reshape.
  (merge-consecutive then merges each absorbed pair.) A MatMul in another graph than the Add is left
  alone (Gemm replaces both nodes in one graph).
The existing bias must be a constant used by that layer alone ("refused: shared weight" counts the
refusals); biases keep their data type (float64 arithmetic, cast back). The Add/Sub's output name
is kept when it is a graph output.
The main graph and its subgraphs are visited; model-local functions are not (they cannot hold
initializers). A layer may sit in an enclosing graph, except when the node that goes is a subgraph
output: its name cannot move to an outer value. Nodes of non-standard domains are never touched
(noted).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ir import shapes
from passes.base import Pass, PassResult, register
from passes.fold._rewrite import (
    Layout,
    UniqueNames,
    add_constant,
    add_output_bias,
    bypass_node,
    can_replace,
    channel_vector,
    constant_operand,
    input_at,
    is_inference_batchnorm,
    is_private,
    known_dims,
    output_layout,
    overwrite_refusal,
    private_producer,
    rank_of,
    rewritable_graphs,
    standard_nodes,
)

BIASED_LAYERS = ("Conv", "ConvTranspose", "Gemm", "BatchNormalization")
GEMM_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16})


@register
class FuseBiasPass(Pass):
    name = "fuse-bias"

    def call(self, model: ir.Model) -> PassResult:
        shapes.infer(model)  # the batched MatMul rule reads ranks and dimensions
        names = UniqueNames(model)
        fused = 0
        gemm_opset = model.opset_imports.get("", 0) >= 7  # Gemm broadcasts C from opset 7
        for _, node in standard_nodes(rewritable_graphs(model), self.note):
            if node.op_type not in ("Add", "Sub"):
                continue
            if self._fuse_into_bias(node, names):
                self.stats["biases fused"] += 1
                fused += 1
            elif gemm_opset and self._fuse_matmul_into_gemm(node, names):
                self.stats["matmul+add to gemm"] += 1
                fused += 1
        return PassResult(model, modified=fused > 0)

    def _fuse_into_bias(self, op: ir.Node, names: UniqueNames) -> bool:
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
        if not can_replace(op.graph, op.outputs[0], layer_output):
            return False  # the Add's graph output name cannot move onto a value of another graph
        add_output_bias(layer, sign * shift, names)
        bypass_node(op.graph, op, layer_output)
        return True

    def _fuse_matmul_into_gemm(self, op: ir.Node, names: UniqueNames) -> bool:
        match = _layer_output_and_bias(op, ("MatMul",))
        if match is None:
            return False
        matmul, product, bias, sign = match
        if matmul.graph is not op.graph:
            return False  # the Gemm replaces both nodes, so they must be in one graph
        a, w = matmul.inputs
        if rank_of(a) is not None and rank_of(a) > 2 and rank_of(w) == 2 and a.dtype in GEMM_TYPES:
            return self._fuse_batched_matmul(op, matmul, product, bias, sign, names)
        if rank_of(a) != 2 or rank_of(w) != 2 or a.dtype not in GEMM_TYPES:
            return False
        columns = w.shape[1]
        if not isinstance(columns, int) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            return False
        shift = channel_vector(bias, Layout(columns, 2, 1))
        if shift is None:
            return False
        graph = op.graph
        c = add_constant(graph, names, (sign * shift).astype(bias.dtype), f"{product.name}_bias")
        gemm = ir.node("Gemm", [a, w, c])  # the graph's name authority gives it a unique name
        graph.insert_before(matmul, gemm)
        gemm.outputs[0].dtype = op.outputs[0].dtype
        gemm.outputs[0].shape = op.outputs[0].shape
        bypass_node(graph, op, gemm.outputs[0])
        graph.remove(matmul, safe=True)
        return True


    def _fuse_batched_matmul(self, op: ir.Node, matmul: ir.Node, product: ir.Value, bias, sign: float, names: UniqueNames) -> bool:
        a, w = matmul.inputs
        dims = known_dims(a)
        columns = w.shape[1] if w.shape is not None else None
        inner = w.shape[0] if w.shape is not None else None
        if dims is None or not isinstance(columns, int) or not isinstance(inner, int) or dims[-1] not in (None, inner):
            return False
        leading = dims[:-1]
        if sum(d is None for d in leading) > 1 or any(d == 0 for d in leading):
            return False
        if bias.ndim > 1 and any(d != 1 for d in bias.shape[:-1]):
            return False
        shift = channel_vector(bias.reshape(bias.shape[-1:]) if bias.ndim else bias, Layout(columns, 2, 1))
        if shift is None or not (_absorbs_reshape(a, downstream=False) or _absorbs_reshape(op.outputs[0], downstream=True)):
            return False
        graph = op.graph
        flat = add_constant(graph, names, np.array([-1, inner], dtype=np.int64), f"{product.name}_rows")
        unflat = add_constant(graph, names, np.array([d if d is not None else -1 for d in leading] + [columns], dtype=np.int64), f"{product.name}_unflat")
        c = add_constant(graph, names, (sign * shift).astype(bias.dtype), f"{product.name}_bias")
        rows = ir.node("Reshape", [a, flat])
        gemm = ir.node("Gemm", [rows.outputs[0], w, c])
        back = ir.node("Reshape", [gemm.outputs[0], unflat])
        for node in (rows, gemm, back):
            graph.insert_before(matmul, node)
        rows.outputs[0].dtype = gemm.outputs[0].dtype = back.outputs[0].dtype = op.outputs[0].dtype
        back.outputs[0].shape = op.outputs[0].shape
        bypass_node(graph, op, back.outputs[0])
        graph.remove(matmul, safe=True)
        self.stats["batched matmul+add to gemm"] += 1
        return True


def _absorbs_reshape(value: ir.Value, downstream: bool) -> bool:
    """Whether a Reshape put right after (downstream) or right before ``value``'s consumer would merge
    with a neighbour: the value's producer is a private view op, or its one consumer is a Reshape."""
    if downstream:
        uses = value.uses()
        return (len(uses) == 1 and not value.is_graph_output() and uses[0].node.op_type == "Reshape"
                and uses[0].idx == 0 and uses[0].node.graph is not None)
    producer = value.producer()
    return (producer is not None and producer.op_type in _VIEW_OPS and producer.domain in ("", "ai.onnx")
            and is_private(value))


_VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _layer_output_and_bias(op: ir.Node, layer_ops):
    """(layer, its output, constant addend, sign) for Y + a, a + Y or Y - a after one of layer_ops."""
    operand = constant_operand(op)
    if operand is None:
        return None
    variable, bias, position = operand
    if op.op_type == "Sub" and position == 0:
        return None  # a - Y negates Y: not a bias
    layer = private_producer(variable, layer_ops)
    if layer is None:
        return None
    sign = 1.0 if op.op_type == "Add" else -1.0
    return layer, variable, bias, sign


def _bias_refusal(layer: ir.Node) -> str | None:
    """Why the layer's bias cannot be rewritten in place (None when it can, or is absent)."""
    bias = input_at(layer, 2)
    if bias is None:
        return None if layer.op_type != "BatchNormalization" else "bias not constant"
    return overwrite_refusal(bias, "bias")
