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
initializers). Nodes of non-standard domains are never touched (noted).

The module also holds the weight-rewriting helpers that fold-scale and fuse-bias share.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from passes.base import Pass, PassResult, is_standard_domain, register

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@register
class FoldBatchNormPass(Pass):
    name = "fold-batchnorm"

    def call(self, model: ir.Model) -> PassResult:
        folded = 0
        for graph in rewritable_graphs(model):
            for node in list(graph):
                if node.graph is None:  # removed by an earlier rewrite in this run
                    continue
                if not is_standard_domain(node):
                    self.note(f"{describe(node)} (domain {node.domain}): unknown custom op left alone")
                    continue
                if node.op_type == "BatchNormalization" and self._fold(node):
                    folded += 1
        self.stats["batchnorms folded"] += folded
        return PassResult(model, modified=folded > 0)

    def _fold(self, bn: ir.Node) -> bool:
        params = _inference_params(bn)
        if params is None:
            return False
        x = bn.inputs[0]
        producer = x.producer()
        if producer is None or producer.op_type not in LINEAR_OPS or not is_standard_domain(producer):
            return False
        if not is_private(x):
            return False
        layout = output_layout(producer)
        if layout is None or layout.channels != params[0].shape[0]:
            return False
        if layout.axis != 1 and layout.rank != 2:
            return False  # MatMul's features are its last axis; the BatchNormalization's axis is 1
        reason = weights_refusal(producer)
        if reason is not None:
            self.stats[f"refused: {reason}"] += 1
            return False
        scale, bias, mean, var, epsilon = params
        s = scale / np.sqrt(var + epsilon)
        shift = bias - mean * s
        scale_output_channels(producer, s)
        if producer.op_type == "MatMul":
            _replace_with_bias_add(bn, x, shift.astype(constant_array(producer.inputs[1]).dtype))
        else:
            add_output_bias(producer, shift)
            bypass(bn, x)
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


def _replace_with_bias_add(bn: ir.Node, x: ir.Value, shift: np.ndarray) -> None:
    graph = bn.graph
    bias = add_initializer(graph, f"{x.name}_bn_bias", shift)
    add = ir.node("Add", [x, bias])  # the graph's name authority gives it a unique name
    graph.insert_before(bn, add)
    add.outputs[0].dtype = bn.outputs[0].dtype
    add.outputs[0].shape = bn.outputs[0].shape
    bypass(bn, add.outputs[0])


# ---------------------------------------------------------------------------------------------
# Helpers shared by fold-batchnorm, fold-scale and fuse-bias.
# ---------------------------------------------------------------------------------------------


def describe(node: ir.Node) -> str:
    """How a note names a node: by its name, or by its first output when it has none."""
    if node.name:
        return f"node {node.name} ({node.op_type})"
    first = node.outputs[0].name if node.outputs else None
    return f"{node.op_type} node producing {first}" if first else f"unnamed {node.op_type} node"


def rewritable_graphs(model: ir.Model):
    """The main graph and its subgraphs: the graphs that can hold initializers (functions cannot)."""
    yield model.graph
    yield from model.graph.subgraphs()


def is_inference_batchnorm(bn: ir.Node) -> bool:
    """One used output (the running statistics of the training form are not), training_mode=0,
    and spatial=1 (opset < 9: spatial=0 normalizes per element, not per channel)."""
    if len(bn.inputs) != 5 or any(out.uses() or out.is_graph_output() for out in bn.outputs[1:]):
        return False
    return bn.attributes.get_int("training_mode", 0) == 0 and bn.attributes.get_int("spatial", 1) == 1


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents, or None when it is not a constant.

    An initializer that is also a graph input is not a constant: the caller may override it.
    """
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = ir.convenience.get_const_tensor(value)
    except ValueError:  # malformed Constant node
        return None
    if tensor is None:
        return None
    try:
        return tensor.numpy()
    except Exception:  # external data that cannot be read, or an unsupported type
        return None


def is_private(value: ir.Value) -> bool:
    """Used exactly once, and not a graph input or output: it can be rewritten freely."""
    return len(value.uses()) == 1 and not value.is_graph_output() and not value.is_graph_input()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a layer's output channels are: their count, the output's rank (None: unknown) and axis."""

    channels: int
    rank: int | None
    axis: int


def output_layout(node: ir.Node) -> Layout | None:
    """The output-channel layout of Conv, ConvTranspose, Gemm, MatMul (2-D constant weight) and
    BatchNormalization, or None when the node is not one of them or its weight is not constant."""
    op = node.op_type
    if op == "BatchNormalization":
        scale = constant_array(node.inputs[1]) if len(node.inputs) > 1 else None
        if scale is None or scale.ndim != 1:
            return None
        return Layout(scale.shape[0], value_rank(node.inputs[0]), 1)
    if len(node.inputs) < 2:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.dtype.kind != "f":
        return None
    if op == "Conv" and weight.ndim >= 3:
        return Layout(weight.shape[0], weight.ndim, 1)
    if op == "ConvTranspose" and weight.ndim >= 3:
        return Layout(weight.shape[1] * node.attributes.get_int("group", 1), weight.ndim, 1)
    if op == "Gemm" and weight.ndim == 2:
        trans_b = node.attributes.get_int("transB", 0)
        return Layout(weight.shape[0] if trans_b else weight.shape[1], 2, 1)
    if op == "MatMul" and weight.ndim == 2:
        # With a 2-D weight the output has A's rank (a 1-D A gives a 1-D output).
        rank = value_rank(node.outputs[0])
        return Layout(weight.shape[1], rank if rank is not None else value_rank(node.inputs[0]), -1)
    return None


def value_rank(value: ir.Value | None) -> int | None:
    if value is None or value.shape is None:
        return None
    return len(value.shape)


def weight_inputs(node: ir.Node) -> list[ir.Value]:
    """The constant inputs a channel rewrite of this node overwrites (weight and bias)."""
    indices = (1,) if node.op_type == "MatMul" else (1, 2)  # BatchNormalization: scale and B
    return [node.inputs[i] for i in indices if i < len(node.inputs) and node.inputs[i] is not None]


def weights_refusal(node: ir.Node) -> str | None:
    """Why the node's weights cannot be rewritten in place, or None when they can."""
    for value in weight_inputs(node):
        array = constant_array(value)
        if array is None:
            return "weight not constant"
        if array.dtype.kind != "f":
            return "weight not floating point"
        if not is_private(value):
            return "shared weight"
    return None


def channel_vector(constant: np.ndarray, layout: Layout) -> np.ndarray | None:
    """The constant as one float64 value per channel, when it broadcasts along the channel axis
    only and cannot change the output's shape; None otherwise."""
    channels = layout.channels
    if layout.rank is None:
        # Unknown rank: only a scalar, or a 1-D vector along the last axis, is safe.
        if constant.ndim > 1:
            return None
        if constant.size == 1:
            return np.full(channels, constant.reshape(()).astype(np.float64))
        if layout.axis == -1 and constant.shape == (channels,):
            return constant.astype(np.float64)
        return None
    if constant.ndim > layout.rank:
        return None
    dims = (1,) * (layout.rank - constant.ndim) + constant.shape
    axis = layout.axis % layout.rank
    if any(d != 1 for i, d in enumerate(dims) if i != axis) or dims[axis] not in (1, channels):
        return None
    flat = constant.reshape(-1).astype(np.float64)
    return np.broadcast_to(flat, (channels,)).copy() if flat.size == 1 else flat


def scale_output_channels(node: ir.Node, s: np.ndarray) -> None:
    """Multiply the node's output channel c by s[c], through its weight and bias."""
    op = node.op_type
    weight_value = node.inputs[1]
    weight = constant_array(weight_value).astype(np.float64)
    if op == "Conv":
        weight = weight * s.reshape((-1,) + (1,) * (weight.ndim - 1))
    elif op == "ConvTranspose":
        groups = node.attributes.get_int("group", 1)
        grouped = weight.reshape((groups, weight.shape[0] // groups) + weight.shape[1:])
        factor = s.reshape((groups, 1, -1) + (1,) * (weight.ndim - 2))
        weight = (grouped * factor).reshape(weight.shape)
    elif op == "Gemm" and node.attributes.get_int("transB", 0):
        weight = weight * s[:, None]
    elif op in ("Gemm", "MatMul"):
        weight = weight * s[None, :]
    elif op == "BatchNormalization":
        weight = weight * s
    overwrite_constant(node, 1, weight)
    bias_index = 2
    if op != "MatMul" and bias_index < len(node.inputs) and node.inputs[bias_index] is not None:
        bias = constant_array(node.inputs[bias_index]).astype(np.float64)
        overwrite_constant(node, bias_index, bias * s)


def add_output_bias(node: ir.Node, shift: np.ndarray) -> None:
    """Add shift[c] to the node's output channel c through its bias (created when absent).

    Not for MatMul, which has no bias input.
    """
    op = node.op_type
    bias_value = node.inputs[2] if len(node.inputs) > 2 else None
    if op == "Gemm":
        beta = node.attributes.get_float("beta", 1.0)
        current = constant_array(bias_value)
        # beta scales C; fold it in so that the new C holds the whole additive term.
        new_bias = shift if current is None or beta == 0.0 else beta * current.astype(np.float64) + shift
        node.attributes["beta"] = ir.Attr("beta", ir.AttributeType.FLOAT, 1.0)
    else:
        current = constant_array(bias_value)
        new_bias = shift if current is None else current.astype(np.float64) + shift
    if bias_value is None:
        dtype = constant_array(node.inputs[1]).dtype
        name = f"{node.outputs[0].name}_bias"
        created = add_initializer(node.graph, name, new_bias.astype(dtype))
        if len(node.inputs) < 3:
            node.resize_inputs(3)
        node.replace_input_with(2, created)
    else:
        overwrite_constant(node, 2, new_bias)


def overwrite_constant(node: ir.Node, index: int, array: np.ndarray) -> None:
    """Give the node's index-th input (a private constant) new contents of the same data type."""
    value = as_initializer(node.inputs[index])
    dtype = constant_array(value).dtype
    value.const_value = ir.tensor(np.ascontiguousarray(array.astype(dtype)), name=value.name)
    value.shape = ir.Shape(array.shape)


def as_initializer(value: ir.Value) -> ir.Value:
    """The value itself when it is an initializer; a Constant node's output is lifted into one."""
    if value.is_initializer():
        return value
    constant = value.producer()
    graph = constant.graph
    tensor = ir.convenience.get_const_tensor(value)
    lifted = ir.Value(name=value.name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape), const_value=tensor)
    graph.register_initializer(lifted)
    value.replace_all_uses_with(lifted)
    graph.remove(constant, safe=True)
    return lifted


def add_initializer(graph: ir.Graph, base_name: str, array: np.ndarray) -> ir.Value:
    name = fresh_name(graph, base_name)
    value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(array.dtype)), shape=ir.Shape(array.shape),
                     const_value=ir.tensor(np.ascontiguousarray(array), name=name))
    graph.register_initializer(value)
    return value


def fresh_name(graph: ir.Graph, base: str) -> str:
    taken = set(graph.initializers) | {v.name for v in graph.inputs}
    taken.update(out.name for node in graph for out in node.outputs)
    name, counter = base, 0
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    return name


def bypass(node: ir.Node, kept: ir.Value) -> None:
    """Remove a single-output node, its consumers reading ``kept`` instead.

    When the node's output is a graph output, ``kept`` takes over its name (and type, where
    ``kept`` has none) so the model's interface stays the same.
    """
    removed = node.outputs[0]
    if removed.is_graph_output():
        name = removed.name
        removed.name = None
        kept.name = name
        if kept.type is None:
            kept.type = removed.type
        if kept.shape is None:
            kept.shape = removed.shape
    removed.replace_all_uses_with(kept, replace_graph_outputs=True)
    node.graph.remove(node, safe=True)
