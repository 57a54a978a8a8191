"""fold-scale: fold a multiplication (and, before a Conv, an addition) by a constant into a
neighbouring linear layer's weights.

Ownership: fold-scale owns the multiplicative folds after a layer and every fold before a Conv;
an Add/Sub of a constant *after* a layer is fuse-bias's (it goes into the bias), so the two passes
never compete for the same node.

Rules after a layer (Y = layer output, c a constant, Y's only use is the Mul/Div, Y not a graph output):
- Y * c, c * Y or Y / c after a Conv or ConvTranspose, with c a scalar or broadcasting to
  [1, C, 1, ...] (per output channel): W and B are scaled per output channel (ConvTranspose: W's
  axis 1, per group).
- the same after Gemm (c broadcasts to [1, N]): B's columns (rows with transB=1) and C are scaled.
- the same after MatMul with a constant 2-D weight (c broadcasts along the last axis): W's columns.
- the same after an inference BatchNormalization (c per channel on axis 1): its scale and B.
Division requires every divisor to be non-zero; 1/c is then folded (exact up to rounding).

Rules before a Conv (X = Conv input, produced by a Mul/Div/Add/Sub of Z and a constant c; X's only
use is the Conv, X not a graph output):
- X = Z * c or Z / c with c a scalar or per input channel ([1, C_in, 1, ...]): W[:, i] is scaled by
  c[i] (per group). Exact even with padding: padded zeros stay zero after scaling.
- X = Z + c or Z - c with c a scalar or per input channel, only when the Conv has no padding
  (all pads zero, auto_pad NOTSET or VALID): the bias gains sum(W[o, i, k] * c[i]) (B is created
  when absent). With padding the padded border would not have received c, so it is not folded.
In every case the weight and bias must be constants used by that layer alone ("refused: shared
weight" counts the refusals); they keep their data type (float64 arithmetic, cast back).
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
    Layout,
    UniqueNames,
    add_output_bias,
    bypass_node,
    can_replace,
    channel_vector,
    constant_array,
    constant_operand,
    is_inference_batchnorm,
    output_layout,
    overwrite_constant,
    private_producer,
    rank_of,
    rewritable_graphs,
    scale_output_channels,
    standard_nodes,
    weights_refusal,
)

SCALED_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization")


@register
class FoldScalePass(Pass):
    name = "fold-scale"

    def call(self, model: ir.Model) -> PassResult:
        names = UniqueNames(model)
        folded = 0
        for _, node in standard_nodes(rewritable_graphs(model), self.note):
            if node.op_type in ("Mul", "Div") and self._fold_after_layer(node):
                self.stats["scales folded after a layer"] += 1
                folded += 1
            elif node.op_type == "Conv" and self._fold_before_conv(node, names):
                folded += 1
        return PassResult(model, modified=folded > 0)

    # After a layer -------------------------------------------------------------------------------

    def _fold_after_layer(self, op: ir.Node) -> bool:
        match = _layer_and_constant(op)
        if match is None:
            return False
        layer, layer_output, constant = match
        layout = output_layout(layer)
        if layout is None or (layer.op_type == "BatchNormalization" and not is_inference_batchnorm(layer)):
            return False
        s = channel_vector(constant, layout)
        if s is None:
            return False
        if op.op_type == "Div":
            if np.any(s == 0):
                return False
            s = 1.0 / s
        if not self._weights_writable(layer):
            return False
        scale_output_channels(layer, s)
        bypass_node(op.graph, op, layer_output)
        return True

    # Before a Conv -------------------------------------------------------------------------------

    def _fold_before_conv(self, conv: ir.Node, names: UniqueNames) -> bool:
        x = conv.inputs[0]
        op = private_producer(x, ("Mul", "Div", "Add", "Sub")) if x is not None else None
        if op is None or len(conv.inputs) < 2:
            return False
        weight = constant_array(conv.inputs[1])
        if weight is None or weight.ndim < 3:
            return False
        operand = constant_operand(op)
        if operand is None:
            return False
        z, constant, position = operand
        if op.op_type in ("Div", "Sub") and position == 0:
            return False  # c / Z and c - Z are not a scale or a shift of Z
        groups = conv.attributes.get_int("group", 1)
        in_layout = Layout(weight.shape[1] * groups, weight.ndim, 1)
        if rank_of(z) != weight.ndim:
            return False  # a lower-rank Z would be broadcast up by the Mul/Add itself
        c = channel_vector(constant, in_layout)
        if c is None:
            return False
        if op.op_type in ("Add", "Sub") and not _has_no_padding(conv):
            return False
        if not self._weights_writable(conv):
            return False
        per_filter = _per_filter_input_values(c, weight.shape[0], groups)
        if op.op_type in ("Mul", "Div"):
            if op.op_type == "Div" and np.any(c == 0):
                return False
            factor = per_filter if op.op_type == "Mul" else 1.0 / per_filter
            scaled = weight.astype(np.float64) * factor.reshape(factor.shape + (1,) * (weight.ndim - 2))
            overwrite_constant(conv, 1, scaled)
            self.stats["scales folded into a following conv"] += 1
        else:
            sign = 1.0 if op.op_type == "Add" else -1.0
            spatial = tuple(range(2, weight.ndim))
            shift = (weight.astype(np.float64).sum(axis=spatial) * per_filter).sum(axis=1) * sign
            add_output_bias(conv, shift, names)
            self.stats["shifts folded into a following conv"] += 1
        bypass_node(op.graph, op, z)
        return True

    def _weights_writable(self, layer: ir.Node) -> bool:
        reason = weights_refusal(layer)
        if reason is None:
            return True
        self.stats[f"refused: {reason}"] += 1
        return False


def _layer_and_constant(op: ir.Node):
    """(layer, layer output, constant) when op multiplies or divides a private layer output by a constant."""
    operand = constant_operand(op)
    if operand is None:
        return None
    variable, constant, position = operand
    if op.op_type == "Div" and position == 0:
        return None  # c / Y is not a scale of Y
    layer = private_producer(variable, SCALED_LAYERS)
    if layer is None or not can_replace(op.graph, op.outputs[0], variable):
        return None
    return layer, variable, constant


def _per_filter_input_values(c: np.ndarray, out_channels: int, groups: int) -> np.ndarray:
    """[C_out, C_in/group]: for each filter, the values of c on the input channels it reads."""
    per_group = c.reshape(groups, -1)
    return np.repeat(per_group, out_channels // groups, axis=0)


def _has_no_padding(conv: ir.Node) -> bool:
    auto_pad = conv.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return False
    return all(p == 0 for p in conv.attributes.get_ints("pads", []) or [])
