"""fold-batchnorm: fold inference-mode BatchNormalization into the layer that produces its input.

An inference BatchNormalization computes ``y = s * (x - mean) + B`` per channel (axis 1) with
``s = scale / sqrt(var + epsilon)``. When ``x`` comes from a linear layer whose output channels are
that same axis, ``s`` scales the layer's weights and ``B - mean * s`` becomes (part of) its bias.

Rules (X is the BatchNormalization's input, P the node producing X):
- P = Conv: W[o] *= s[o] (W's axis 0 is the output channel); bias = B_conv * s + B - mean * s,
  created when P has no bias. Grouped and depthwise convolutions are covered by the same formula.
- P = ConvTranspose: the output channel o of group g is W[g * C_in/group + i, j] with
  o = g * C_out/group + j, so W is scaled along axis 1 within each group; bias as for Conv.
- P = Gemm with 2-D output: the feature axis is 1, i.e. the columns of B (the rows when transB=1);
  C becomes beta * C * s + B - mean * s and beta becomes 1 (C is created when absent).
- P = MatMul with a constant 2-D weight and a 2-D output: the weight's columns are scaled and the
  BatchNormalization is replaced by ``Add(X, B - mean * s)`` (fuse-bias may then make a Gemm).
The fold happens only when:
- the BatchNormalization is in inference form: one used output, training_mode=0, spatial=1;
- scale, B, mean and var are constants (initializers or Constant nodes, not graph inputs);
- X has exactly one use (the BatchNormalization) and is not a graph output;
- P's weight and bias are constants used by P alone; a weight shared with another node is refused
  and counted as "refused: shared weight".
A BatchNormalization whose input comes from anything else (a Concat, a Relu, a graph input) is left
as it is (fold-scale and fuse-bias may still fold a following Mul or Add into it). Weights keep
their data type: the arithmetic is done in float64 and cast back.
The main graph and its subgraphs are visited; model-local functions are not (they cannot hold
initializers). A layer may sit in an enclosing graph, except when the node that goes is a subgraph
output: its name cannot move to an outer value. Nodes of non-standard domains are never touched
(noted).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from passes.base import Pass, PassResult, register
from passes.fold._rewrite import (
    UniqueNames,
    add_constant,
    add_output_bias,
    bypass_node,
    can_replace,
    constant_array,
    is_inference_batchnorm,
    output_layout,
    private_producer,
    rewritable_graphs,
    scale_output_channels,
    standard_nodes,
    weights_refusal,
)

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@register
class FoldBatchNormPass(Pass):
    name = "fold-batchnorm"

    def call(self, model: ir.Model) -> PassResult:
        names = UniqueNames(model)
        folded = 0
        for _, node in standard_nodes(rewritable_graphs(model), self.note):
            if node.op_type == "BatchNormalization" and self._fold(node, names):
                folded += 1
        self.stats["batchnorms folded"] += folded
        return PassResult(model, modified=folded > 0)

    def _fold(self, bn: ir.Node, names: UniqueNames) -> bool:
        params = _inference_params(bn)
        if params is None:
            return False
        x = bn.inputs[0]
        producer = private_producer(x, LINEAR_OPS)
        if producer is None:
            return False
        layout = output_layout(producer)
        if layout is None or layout.channels != params[0].shape[0]:
            return False
        if layout.axis != 1 and layout.rank != 2:
            return False  # MatMul's features are its last axis; the BatchNormalization's axis is 1
        if producer.op_type != "MatMul" and not can_replace(bn.graph, bn.outputs[0], x):
            return False  # the BatchNormalization's graph output name cannot move onto x
        reason = weights_refusal(producer)
        if reason is not None:
            self.stats[f"refused: {reason}"] += 1
            return False
        scale, bias, mean, var, epsilon = params
        s = scale / np.sqrt(var + epsilon)
        shift = bias - mean * s
        scale_output_channels(producer, s)
        if producer.op_type == "MatMul":
            _replace_with_bias_add(bn, x, shift.astype(constant_array(producer.inputs[1]).dtype), names)
        else:
            add_output_bias(producer, shift, names)
            bypass_node(bn.graph, bn, x)
        return True


def _inference_params(bn: ir.Node):
    """(scale, B, mean, var, epsilon) in float64 for an inference-form BatchNormalization, else None."""
    if not is_inference_batchnorm(bn) or any(v is None for v in bn.inputs):
        return None
    arrays = [constant_array(v) for v in bn.inputs[1:]]
    if any(a is None or a.ndim != 1 or a.dtype.kind != "f" for a in arrays):
        return None
    if len({a.shape for a in arrays}) != 1:
        return None
    epsilon = bn.attributes.get_float("epsilon", 1e-5)
    return (*(a.astype(np.float64) for a in arrays), epsilon)


def _replace_with_bias_add(bn: ir.Node, x: ir.Value, shift: np.ndarray, names: UniqueNames) -> None:
    graph = bn.graph
    bias = add_constant(graph, names, shift, f"{x.name}_bn_bias")
    add = ir.node("Add", [x, bias])  # the graph's name authority gives it a unique name
    graph.insert_before(bn, add)
    add.outputs[0].dtype = bn.outputs[0].dtype
    add.outputs[0].shape = bn.outputs[0].shape
    bypass_node(graph, bn, add.outputs[0])
