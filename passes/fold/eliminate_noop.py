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

The module also holds the graph-editing helpers the other fold passes share (``replace_value``,
``bypass_node``, ``UniqueNames``, constant readers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx_ir as ir

from ir import shapes
from passes.base import Pass, PassResult, all_graphs, is_standard_domain, register

GraphLike = ir.Graph | ir.Function

# ---------------------------------------------------------------------------------------------------
# Helpers shared by the fold passes.


def default_opset(model: ir.Model) -> int:
    """The model's ONNX opset version (the default domain)."""
    for domain in ("", "ai.onnx"):
        if domain in model.opset_imports:
            return model.opset_imports[domain]
    return 1


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The data of a value the model cannot change at run time, or None.

    An initializer that is also a graph input can be overridden by the caller, so it does not count.
    """
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = ir.convenience.get_const_tensor(value)
    except ValueError:  # a malformed Constant node: not ours to judge
        return None
    return None if tensor is None else tensor.numpy()


def constant_ints(value: ir.Value | None) -> list[int] | None:
    array = constant_array(value)
    if array is None or array.dtype.kind not in "iu":
        return None
    return [int(v) for v in array.reshape(-1)]


def input_at(node: ir.Node, index: int) -> ir.Value | None:
    """The node's input at ``index``; None when it is absent or left empty."""
    return node.inputs[index] if index < len(node.inputs) else None


def known_dims(value: ir.Value) -> list[int | None] | None:
    """The value's dimensions, None for each unknown one; None when even the rank is unknown."""
    if value.shape is None:
        return None
    return [dim if isinstance(dim, int) and dim >= 0 else None for dim in value.shape]


def static_dims(value: ir.Value) -> list[int] | None:
    """The value's shape when every dimension is a known integer."""
    dims = known_dims(value)
    if dims is None or any(dim is None for dim in dims):
        return None
    return dims  # type: ignore[return-value]


def rank_of(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def normalize_axes(axes: Iterable[int], rank: int | None) -> list[int] | None:
    """Axes made non-negative; None when a negative axis meets an unknown rank or one is out of range."""
    result = []
    for axis in axes:
        if axis < 0:
            if rank is None:
                return None
            axis += rank
        if axis < 0 or (rank is not None and axis >= rank):
            return None
        result.append(axis)
    return result


def _replaceable_by(graph: GraphLike, old: ir.Value, new: ir.Value) -> bool:
    """Whether ``new`` can stand in for ``old`` everywhere, graph outputs included."""
    if not old.is_graph_output():
        return True
    # ``new`` must take ``old``'s name; a graph input, output or initializer has a name of its own
    # that callers rely on, and a value from an enclosing graph is not this graph's to rename.
    producer = new.producer()
    if producer is None or producer.graph is not _inner_graph(graph):
        return False
    return not (new.is_graph_input() or new.is_graph_output() or new.is_initializer())


def _inner_graph(graph: GraphLike) -> ir.Graph:
    return graph.graph if isinstance(graph, ir.Function) else graph


def can_replace_values(graph: GraphLike, olds: Iterable[ir.Value], news: Iterable[ir.Value]) -> bool:
    news = list(news)
    olds = list(olds)
    if len({id(new) for new, old in zip(news, olds) if old.is_graph_output()}) < sum(old.is_graph_output() for old in olds):
        return False  # two graph outputs would need the same replacement value
    return all(_replaceable_by(graph, old, new) for old, new in zip(olds, news))


def replace_value(graph: GraphLike, old: ir.Value, new: ir.Value) -> bool:
    """Make every user of ``old`` read ``new``. Returns False, changing nothing, when it cannot.

    When ``old`` is a graph output, ``new`` takes its place and its name; ``old`` (about to be removed
    with its node) loses the name.
    """
    if not _replaceable_by(graph, old, new):
        return False
    if old.is_graph_output():
        name = old.name
        old.name = None
        new.name = name
        # Tools (the checker among them) expect a graph output to declare its type and shape.
        new.type = new.type or old.type
        new.shape = new.shape or old.shape
        outputs = graph.outputs
        for index, output in enumerate(outputs):
            if output is old:
                outputs[index] = new
    ir.convenience.replace_all_uses_with(old, new)
    return True


def outputs_unused(values: Iterable[ir.Value]) -> bool:
    return all(not value.uses() and not value.is_graph_output() for value in values)


def bypass_node(graph: GraphLike, node: ir.Node, replacement: ir.Value) -> bool:
    """Remove a node whose first output equals ``replacement``; its other outputs must be unused."""
    if not outputs_unused(node.outputs[1:]):
        return False
    if not replace_value(graph, node.outputs[0], replacement):
        return False
    graph.remove(node, safe=True)
    return True


def remove_if_unused(graph: GraphLike, node: ir.Node | None) -> bool:
    """Remove a node left without users by a rewrite (e.g. the first of a merged pair)."""
    if node is None or node.graph is None or not outputs_unused(node.outputs):
        return False
    graph.remove(node, safe=True)
    return True


class UniqueNames:
    """Fresh node and value names, unique across the whole model (main graph, subgraphs, functions)."""

    def __init__(self, model: ir.Model):
        self.taken: set[str] = set()
        for graph in all_graphs(model):
            values: list[ir.Value] = [*graph.inputs, *graph.outputs]
            if isinstance(graph, ir.Graph):
                values.extend(graph.initializers.values())
            for node in graph:
                if node.name:
                    self.taken.add(node.name)
                values.extend(node.outputs)
            self.taken.update(value.name for value in values if value.name)

    def fresh(self, base: str) -> str:
        name, counter = base, 1
        while name in self.taken:
            name = f"{base}_{counter}"
            counter += 1
        self.taken.add(name)
        return name


def add_constant(graph: GraphLike, names: UniqueNames, array: np.ndarray, base: str, before: ir.Node) -> ir.Value:
    """A new constant: an initializer in a graph, a Constant node (before ``before``) in a function."""
    name = names.fresh(base)
    tensor = ir.tensor(array, name=name)
    if isinstance(graph, ir.Graph):
        value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(array.shape), const_value=tensor)
        graph.register_initializer(value)
        return value
    constant = ir.node("Constant", [], {"value": tensor}, name=names.fresh(f"{base}_node"))
    constant.outputs[0].name = name
    graph.insert_before(before, constant)
    return constant.outputs[0]


# ---------------------------------------------------------------------------------------------------
# The pass.

# Ops that only change how the data is viewed, never its order.
_VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"})


@register
class EliminateNoopPass(Pass):
    name = "eliminate-noop"

    def call(self, model: ir.Model) -> PassResult:
        shapes.infer(model)
        opset = default_opset(model)
        modified = False
        for graph in list(all_graphs(model)):
            for node in list(graph):
                if node.graph is None:
                    continue  # removed earlier in this walk
                if not is_standard_domain(node):
                    self.note(f"node {node.name or node.op_type} (domain {node.domain}): unknown custom op left alone")
                    continue
                passthrough = noop_input(node, opset)
                if passthrough is not None and bypass_node(graph, node, passthrough):
                    self.stats[f"{node.op_type} removed"] += 1
                    modified = True
        return PassResult(model, modified=modified)


def noop_input(node: ir.Node, opset: int) -> ir.Value | None:
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
    rank = rank_of(node.inputs[0])
    perm_attr = node.attributes.get_ints("perm")
    perm = list(perm_attr) if perm_attr is not None else (list(reversed(range(rank))) if rank is not None else None)
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
        pads = node.attributes.get_ints("pads", node.attributes.get_ints("paddings"))
        pads = list(pads) if pads is not None else None
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


def slice_params(node: ir.Node, opset: int, rank: int | None) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """A Slice's constant (starts, ends, axes, steps), axes non-negative; None when not all constant."""
    if opset < 10:
        starts, ends = _attr_list(node, "starts"), _attr_list(node, "ends")
        axes, steps = _attr_list(node, "axes"), None
    else:
        starts, ends = constant_ints(input_at(node, 1)), constant_ints(input_at(node, 2))
        axes, steps = _optional_ints(input_at(node, 3)), _optional_ints(input_at(node, 4))
        if axes is False or steps is False:
            return None
    if starts is None or ends is None or len(starts) != len(ends):
        return None
    axes = normalize_axes(axes if axes is not None else range(len(starts)), rank)
    steps = steps if steps is not None else [1] * len(starts)
    if axes is None or len(axes) != len(starts) or len(steps) != len(starts):
        return None
    return starts, ends, axes, steps  # type: ignore[return-value]


def _attr_list(node: ir.Node, name: str) -> list[int] | None:
    values = node.attributes.get_ints(name)
    return list(values) if values is not None else None


def _optional_ints(value: ir.Value | None) -> list[int] | None | bool:
    """An optional constant input: None when absent, False when present but not constant."""
    if value is None:
        return None
    ints = constant_ints(value)
    return False if ints is None else ints


def clamp_index(index: int, size: int) -> int:
    """A Slice start or end (step 1) clamped into [0, size]."""
    if index < 0:
        index += size
    return min(max(index, 0), size)


def _is_same_shape_expand(node: ir.Node, opset: int) -> bool:
    target = constant_ints(input_at(node, 1))
    dims = known_dims(node.inputs[0])
    if target is None or dims is None or len(target) > len(dims):
        return False
    aligned = dims[len(dims) - len(target) :]
    return all(want == 1 or want == have for want, have in zip(target, aligned))


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


def _broadcast_keeps_shape(constant_shape: tuple[int, ...], value: ir.Value) -> bool:
    dims = known_dims(value)
    if dims is None or len(constant_shape) > len(dims):
        return False
    aligned = dims[len(dims) - len(constant_shape) :]
    return all(want == 1 or want == have for want, have in zip(constant_shape, aligned))


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
