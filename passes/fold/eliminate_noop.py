"""eliminate-noop: remove nodes that hand their data input through unchanged.

Shapes and types come from ``value.shape`` / ``value.dtype``; shape inference runs at the start of the
pass so that they are current. A dimension counts only when it is a known integer. Inputs such as
``pads`` or ``starts`` count only when they are constants the model cannot override (an initializer
that is not a graph input, or a ``Constant`` node's output).

Rules; each removes the node and makes its consumers read its data input instead:

- ``Identity``.
- ``Dropout`` in inference: its mask output unused, and ``training_mode`` absent or a constant false
  (opset 12+), or the ratio a constant 0; before opset 7, ``is_test=1``.
- ``Reshape`` whose target equals the input shape, position by position (a ``0`` copies the input
  dimension unless ``allowzero=1``; a single ``-1`` is allowed when every other dimension matches).
- ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze``, ``Expand`` whose static output shape equals
  their static input shape (these ops never reorder data); not for a graph output, whose shape is
  declared rather than inferred.
- ``Flatten`` of a rank-2 tensor with ``axis=1``.
- ``Transpose`` with the identity permutation, or one that moves only dimensions of size 1 and keeps
  the (static) shape.
- ``Cast`` to the input's own type; ``CastLike`` to a tensor of the input's own type.
- ``Pad`` whose pads are all zero (any mode).
- ``Slice`` that takes the whole tensor: on every sliced axis, of known size, start 0, end at or past
  the size, step 1.
- ``Expand`` to a shape the input already has: every target dimension is 1 or equals the input's.
- ``Concat`` of one input; ``Split`` into one output.
- ``Add``/``Sub`` of a constant zero, ``Mul``/``Div`` by a constant one, when broadcasting the
  constant leaves the other operand's shape unchanged (``x - 0`` and ``x / 1`` only with the constant
  second).

Graph outputs keep their names: when the removed node's output is a graph output, the value that
replaces it takes the name, unless that value is a graph input, a graph output, an initializer or a
value of an enclosing graph; then the node stays. Squeeze/Unsqueeze pairs that cancel are the work of
``merge-consecutive``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

from ir import shapes
from passes.base import Pass, PassResult, all_graphs, register
from passes.fold._rewrite import (
    attribute_ints,
    bypass_node,
    clamp_index,
    constant_array,
    constant_ints,
    default_opset,
    input_at,
    known_dims,
    outputs_unused,
    rank_of,
    slice_params,
    standard_nodes,
    static_dims,
    transpose_perm,
)

# Ops that only change how the data is viewed, never its order.
_VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"})


@register
class EliminateNoopPass(Pass):
    name = "eliminate-noop"

    def call(self, model: ir.Model) -> PassResult:
        shapes.infer(model)
        opset = default_opset(model)
        modified = False
        for graph, node in standard_nodes(all_graphs(model), self.note):
            passthrough = _noop_input(node, opset)
            if passthrough is not None and bypass_node(graph, node, passthrough):
                self.stats[f"{node.op_type} removed"] += 1
                modified = True
        return PassResult(model, modified=modified)


def _noop_input(node: ir.Node, opset: int) -> ir.Value | None:
    """The input that ``node`` passes through unchanged, or None when it is not a no-op."""
    data = input_at(node, 0)
    if data is None:
        return None
    if node.op_type in _ARITHMETIC:
        return _arithmetic_passthrough(node)
    # A graph output's shape is declared, not inferred, and may be wrong: only inferred ones count.
    if node.op_type in _VIEW_OPS and not node.outputs[0].is_graph_output() and _same_static_shape(data, node.outputs[0]):
        return data
    is_noop = _PREDICATES.get(node.op_type)
    return data if is_noop is not None and is_noop(node, opset) else None


def _same_static_shape(a: ir.Value, b: ir.Value) -> bool:
    dims = static_dims(a)
    return dims is not None and dims == static_dims(b)


def _is_identity(node: ir.Node, opset: int) -> bool:
    return True


def _is_inference_dropout(node: ir.Node, opset: int) -> bool:
    if not outputs_unused(node.outputs[1:]):
        return False
    if opset < 7:
        return node.attributes.get_int("is_test", 0) == 1
    if opset < 12:
        return True  # opsets 7-11 have no training mode: Dropout is an identity in inference
    ratio = input_at(node, 1)
    training_mode = input_at(node, 2)
    if training_mode is None:
        return True
    training = constant_array(training_mode)
    if training is not None and not training.any():
        return True
    ratio_value = constant_array(ratio)
    return ratio_value is not None and not ratio_value.any()


def _is_same_shape_reshape(node: ir.Node, opset: int) -> bool:
    target = constant_ints(input_at(node, 1))
    dims = known_dims(node.inputs[0])
    if target is None or dims is None or len(target) != len(dims):
        return False
    copies_zero = node.attributes.get_int("allowzero", 0) == 0
    unmatched = [i for i, (want, have) in enumerate(zip(target, dims)) if not (want == have or (want == 0 and copies_zero))]
    # A single -1 resolves to the input's dimension when every other dimension matches.
    return not unmatched or (len(unmatched) == 1 and target[unmatched[0]] == -1)


def _is_matrix_flatten(node: ir.Node, opset: int) -> bool:
    return rank_of(node.inputs[0]) == 2 and node.attributes.get_int("axis", 1) in (1, -1)


def _is_identity_transpose(node: ir.Node, opset: int) -> bool:
    perm = transpose_perm(node)
    if perm is None:
        return False
    if perm == list(range(len(perm))):
        return True
    # Moving only size-1 dimensions keeps the data order: a no-op when the shape is unchanged too.
    dims = static_dims(node.inputs[0])
    if dims is None or len(dims) != len(perm):
        return False
    moved = [axis for axis in perm if dims[axis] != 1]
    return moved == sorted(moved) and [dims[axis] for axis in perm] == dims


def _is_same_type_cast(node: ir.Node, opset: int) -> bool:
    source = node.inputs[0].dtype
    if source is None:
        return False
    if node.op_type == "CastLike":
        like = input_at(node, 1)
        return like is not None and like.dtype == source
    return node.attributes.get_int("to", -1) == source.value


def _is_zero_pad(node: ir.Node, opset: int) -> bool:
    if opset < 11:
        pads = attribute_ints(node, "pads")
        pads = pads if pads is not None else attribute_ints(node, "paddings")
    else:
        pads = constant_ints(input_at(node, 1))
    return pads is not None and not any(pads)


def _is_whole_slice(node: ir.Node, opset: int) -> bool:
    dims = known_dims(node.inputs[0])
    params = slice_params(node, opset, None if dims is None else len(dims))
    if params is None or dims is None:
        return False
    for start, end, axis, step in zip(*params):
        size = dims[axis]
        if size is None or step != 1:
            return False
        if clamp_index(start, size) != 0 or clamp_index(end, size) != size:
            return False
    return True


def _is_same_shape_expand(node: ir.Node, opset: int) -> bool:
    target = constant_ints(input_at(node, 1))
    return target is not None and _broadcast_keeps_shape(target, node.inputs[0])


def _is_single_concat(node: ir.Node, opset: int) -> bool:
    return len(node.inputs) == 1


def _is_single_split(node: ir.Node, opset: int) -> bool:
    return len(node.outputs) == 1


# Arithmetic identities: (op, neutral element, operand positions the constant may take).
_ARITHMETIC = {"Add": (0, (0, 1)), "Sub": (0, (1,)), "Mul": (1, (0, 1)), "Div": (1, (1,))}


def _arithmetic_passthrough(node: ir.Node) -> ir.Value | None:
    neutral, positions = _ARITHMETIC[node.op_type]
    if len(node.inputs) != 2:
        return None
    for position in positions:
        constant = constant_array(node.inputs[position])
        other = node.inputs[1 - position]
        if constant is None or other is None or other.dtype is None:
            continue
        if np.all(constant == neutral) and _broadcast_keeps_shape(constant.shape, other):
            return other
    return None


def _broadcast_keeps_shape(shape: Sequence[int], value: ir.Value) -> bool:
    """Whether broadcasting ``value`` with a tensor of ``shape`` leaves value's shape as it is: every
    dimension of ``shape`` is 1 or equals value's (known) dimension it aligns with."""
    dims = known_dims(value)
    if dims is None or len(shape) > len(dims):
        return False
    aligned = dims[len(dims) - len(shape) :]
    return all(want == 1 or want == have for want, have in zip(shape, aligned))


# Ops that pass their data input (input 0) through when the predicate holds.
_PREDICATES: dict[str, Callable[[ir.Node, int], bool]] = {
    "Identity": _is_identity,
    "Dropout": _is_inference_dropout,
    "Reshape": _is_same_shape_reshape,
    "Flatten": _is_matrix_flatten,
    "Transpose": _is_identity_transpose,
    "Cast": _is_same_type_cast,
    "CastLike": _is_same_type_cast,
    "Pad": _is_zero_pad,
    "Slice": _is_whole_slice,
    "Expand": _is_same_shape_expand,
    "Concat": _is_single_concat,
    "Split": _is_single_split,
}
