"""Graph-rewriting helpers shared by the fold passes (private: not a pass, not registered).

Conventions every helper keeps:

- A *constant* is a value the model cannot change at run time: an initializer that is not a graph
  input, or a ``Constant`` node's output. An initializer listed as a graph input may be fed by the
  caller, so it is not one.
- A dimension is *known* only when it is a non-negative integer; symbolic dimensions count as unknown.
- A rewrite never renames a graph input, an initializer or a value of an enclosing graph. When the
  value it removes is a graph output, the replacement takes over the output's name (and its declared
  type and shape where it has none), so the model's interface stays the same; when the replacement
  cannot take the name, the rewrite is refused before anything changes.
- New names are unique in the whole model (main graph, subgraphs, functions).

Sections: reading the model, walking it, editing it, and the output channels of linear layers
(Conv, ConvTranspose, Gemm, MatMul, BatchNormalization), which fold-batchnorm, fold-scale and
fuse-bias rewrite through their weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import onnx_ir as ir

from ir.constants import constant_array
from passes.base import all_graphs, is_standard_domain

GraphLike = ir.Graph | ir.Function

# ---------------------------------------------------------------------------------------------------
# Reading the model.


def default_opset(model: ir.Model) -> int:
    """The model's ONNX opset version (the default domain)."""
    for domain in ("", "ai.onnx"):
        if domain in model.opset_imports:
            return model.opset_imports[domain]
    return 1


def constant_ints(value: ir.Value | None) -> list[int] | None:
    """A constant integer tensor as a flat list, or None."""
    array = constant_array(value)
    if array is None or array.dtype.kind not in "iu":
        return None
    return [int(v) for v in array.reshape(-1)]


def input_at(node: ir.Node, index: int) -> ir.Value | None:
    """The node's input at ``index``; None when it is absent or left empty."""
    return node.inputs[index] if index < len(node.inputs) else None


def known_dims(value: ir.Value | None) -> list[int | None] | None:
    """The value's dimensions, None for each unknown one; None when even the rank is unknown."""
    if value is None or value.shape is None:
        return None
    return [dim if isinstance(dim, int) and dim >= 0 else None for dim in value.shape]


def static_dims(value: ir.Value | None) -> list[int] | None:
    """The value's shape when every dimension is known."""
    dims = known_dims(value)
    if dims is None or any(dim is None for dim in dims):
        return None
    return dims  # type: ignore[return-value]


def rank_of(value: ir.Value | None) -> int | None:
    return None if value is None or value.shape is None else len(value.shape)


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


def attribute_ints(node: ir.Node, name: str) -> list[int] | None:
    """An INTS attribute as a list, or None when the node does not have it."""
    values = node.attributes.get_ints(name)
    return list(values) if values is not None else None


def transpose_perm(node: ir.Node) -> list[int] | None:
    """A Transpose's permutation; without ``perm`` it reverses the axes, which needs a known rank."""
    perm = attribute_ints(node, "perm")
    if perm is not None:
        return perm
    rank = rank_of(node.inputs[0])
    return list(reversed(range(rank))) if rank is not None else None


def slice_params(node: ir.Node, opset: int, rank: int | None) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """A Slice's constant (starts, ends, axes, steps), axes non-negative; None when not all constant."""
    if opset < 10:
        starts, ends = attribute_ints(node, "starts"), attribute_ints(node, "ends")
        axes, steps = attribute_ints(node, "axes"), None
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


def clamp_index(index: int, size: int) -> int:
    """A Slice start or end (step 1) clamped into [0, size]."""
    if index < 0:
        index += size
    return min(max(index, 0), size)


def constant_operand(node: ir.Node) -> tuple[ir.Value, np.ndarray, int] | None:
    """(the other input, the constant's array, the constant's position) of a binary node with
    exactly one input a floating-point constant; None otherwise."""
    if len(node.inputs) != 2 or any(value is None for value in node.inputs):
        return None
    first, second = (constant_array(value) for value in node.inputs)
    if (first is None) == (second is None):
        return None
    position = 0 if first is not None else 1
    constant = first if first is not None else second
    if constant.dtype.kind != "f":
        return None
    return node.inputs[1 - position], constant, position


def _optional_ints(value: ir.Value | None) -> list[int] | None | bool:
    """An optional constant input: None when absent, False when present but not constant."""
    if value is None:
        return None
    ints = constant_ints(value)
    return False if ints is None else ints


# ---------------------------------------------------------------------------------------------------
# Walking the model.


def rewritable_graphs(model: ir.Model) -> Iterator[ir.Graph]:
    """The main graph and its subgraphs: the graphs that can hold initializers (functions cannot)."""
    yield model.graph
    yield from model.graph.subgraphs()


def standard_nodes(graphs: Iterable[GraphLike], note: Callable[[str], None]) -> Iterator[tuple[GraphLike, ir.Node]]:
    """(graph, node) for each node of a standard domain in ``graphs``; custom ops are noted and skipped.

    The graphs and their nodes are listed before the walk, so a rewrite may add or remove nodes as it
    goes; a node that an earlier rewrite removed is skipped.
    """
    for graph in list(graphs):
        for node in list(graph):
            if node.graph is None:
                continue
            if not is_standard_domain(node):
                note(f"{describe(node)} (domain {node.domain}): unknown custom op left alone")
                continue
            yield graph, node


def describe(node: ir.Node) -> str:
    """How a note names a node: by its name, or by its first output when it has none."""
    if node.name:
        return f"node {node.name} ({node.op_type})"
    first = node.outputs[0].name if node.outputs else None
    return f"{node.op_type} node producing {first}" if first else f"unnamed {node.op_type} node"


def name_base(node: ir.Node) -> str:
    """A readable stem for names derived from the node: its name, its first output's, or its op."""
    return node.name or (node.outputs[0].name if node.outputs else None) or node.op_type


# ---------------------------------------------------------------------------------------------------
# Editing the model.


def is_private(value: ir.Value) -> bool:
    """Used exactly once, and not a graph input or output: its one consumer may rewrite it freely."""
    return len(value.uses()) == 1 and not value.is_graph_output() and not value.is_graph_input()


def private_producer(value: ir.Value, op_types: Iterable[str]) -> ir.Node | None:
    """The standard-domain node (one of ``op_types``) whose first output is ``value``, when that value
    is private (see ``is_private``); None otherwise."""
    producer = value.producer()
    if producer is None or producer.op_type not in op_types or not is_standard_domain(producer):
        return None
    if not is_private(value) or value is not producer.outputs[0]:
        return None
    return producer


def outputs_unused(values: Iterable[ir.Value]) -> bool:
    return all(not value.uses() and not value.is_graph_output() for value in values)


def can_replace(graph: GraphLike, old: ir.Value, new: ir.Value) -> bool:
    """Whether ``new`` can stand in for ``old`` everywhere, graph outputs included."""
    if not old.is_graph_output():
        return True
    # ``new`` must take ``old``'s name; a graph input, output or initializer has a name of its own
    # that callers rely on, and a value of an enclosing graph is not this graph's to rename (ONNX
    # Runtime also rejects a subgraph output that is an outer-scope value).
    producer = new.producer()
    if producer is None or producer.graph is not _inner_graph(graph):
        return False
    return not (new.is_graph_input() or new.is_graph_output() or new.is_initializer())


def can_replace_values(graph: GraphLike, olds: Iterable[ir.Value], news: Iterable[ir.Value]) -> bool:
    """``can_replace`` for pairs of values; two graph outputs may not share one replacement."""
    olds, news = list(olds), list(news)
    outputs = [(old, new) for old, new in zip(olds, news) if old.is_graph_output()]
    if len({id(new) for _, new in outputs}) < len(outputs):
        return False
    return all(can_replace(graph, old, new) for old, new in zip(olds, news))


def replace_value(graph: GraphLike, old: ir.Value, new: ir.Value) -> bool:
    """Make every user of ``old`` read ``new``. Returns False, changing nothing, when it cannot.

    When ``old`` is a graph output, ``new`` takes its place and its name; ``old`` (about to be removed
    with its node) loses the name.
    """
    if not can_replace(graph, old, new):
        return False
    if old.is_graph_output():
        name = old.name
        old.name = None
        new.name = name
        # Tools (the checker among them) expect a graph output to declare its type and shape.
        if new.type is None:
            new.type = old.type
        if new.shape is None:
            new.shape = old.shape
        outputs = graph.outputs
        for index, output in enumerate(outputs):
            if output is old:
                outputs[index] = new
    ir.convenience.replace_all_uses_with(old, new)
    return True


def bypass_node(graph: GraphLike, node: ir.Node, replacement: ir.Value) -> bool:
    """Remove a node whose first output equals ``replacement``; its other outputs must be unused.
    Returns False, changing nothing, when it cannot."""
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


def _inner_graph(graph: GraphLike) -> ir.Graph:
    return graph.graph if isinstance(graph, ir.Function) else graph


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


def add_constant(graph: GraphLike, names: UniqueNames, array: np.ndarray, base: str, before: ir.Node | None = None) -> ir.Value:
    """A new constant: an initializer in a graph, a Constant node (before ``before``) in a function."""
    name = names.fresh(base)
    # Not np.ascontiguousarray: it turns a scalar into a one-element vector.
    tensor = ir.tensor(np.asarray(array, order="C"), name=name)
    if isinstance(graph, ir.Graph):
        value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(array.shape), const_value=tensor)
        graph.register_initializer(value)
        return value
    if before is None:
        raise ValueError("a constant in a function is a Constant node: say which node it goes before")
    constant = ir.node("Constant", [], {"value": tensor}, name=names.fresh(f"{base}_node"))
    constant.outputs[0].name = name
    graph.insert_before(before, constant)
    return constant.outputs[0]


def overwrite_constant(node: ir.Node, index: int, array: np.ndarray) -> None:
    """Give the node's index-th input (a private constant) new contents, keeping its data type."""
    value = _as_initializer(node.inputs[index])
    dtype = constant_array(value).dtype
    value.const_value = ir.tensor(np.asarray(array.astype(dtype), order="C"), name=value.name)
    value.shape = ir.Shape(array.shape)


def _as_initializer(value: ir.Value) -> ir.Value:
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


# ---------------------------------------------------------------------------------------------------
# Output channels of linear layers. Weights are rewritten in float64 and cast back to their type.


def is_inference_batchnorm(bn: ir.Node) -> bool:
    """One used output (the running statistics of the training form are not), training_mode=0,
    and spatial=1 (opset < 9: spatial=0 normalizes per element, not per channel)."""
    if len(bn.inputs) != 5 or any(out.uses() or out.is_graph_output() for out in bn.outputs[1:]):
        return False
    return bn.attributes.get_int("training_mode", 0) == 0 and bn.attributes.get_int("spatial", 1) == 1


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
        scale = constant_array(input_at(node, 1))
        if scale is None or scale.ndim != 1:
            return None
        return Layout(scale.shape[0], rank_of(node.inputs[0]), 1)
    weight = constant_array(input_at(node, 1))
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
        rank = rank_of(node.outputs[0])
        return Layout(weight.shape[1], rank if rank is not None else rank_of(node.inputs[0]), -1)
    return None


def weights_refusal(node: ir.Node) -> str | None:
    """Why the layer's weight and bias cannot be rewritten in place, or None when they can."""
    indices = (1,) if node.op_type == "MatMul" else (1, 2)  # BatchNormalization: scale and B
    for value in (input_at(node, i) for i in indices):
        reason = None if value is None else overwrite_refusal(value, "weight")
        if reason is not None:
            return reason
    return None


def overwrite_refusal(value: ir.Value, what: str) -> str | None:
    """Why ``overwrite_constant`` may not give the value (a layer's ``what``) new contents; None when
    it may: a floating-point constant that no other node reads."""
    array = constant_array(value)
    if array is None:
        return f"{what} not constant"
    if array.dtype.kind != "f":
        return f"{what} not floating point"
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
    """Multiply the layer's output channel c by s[c], through its weight and bias."""
    op = node.op_type
    weight = constant_array(node.inputs[1]).astype(np.float64)
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
    bias = input_at(node, 2)
    if op != "MatMul" and bias is not None:
        overwrite_constant(node, 2, constant_array(bias).astype(np.float64) * s)


def add_output_bias(node: ir.Node, shift: np.ndarray, names: UniqueNames) -> None:
    """Add shift[c] to the layer's output channel c through its bias (created when absent).

    Not for MatMul, which has no bias input.
    """
    bias = input_at(node, 2)
    current = constant_array(bias)
    if node.op_type == "Gemm":
        beta = node.attributes.get_float("beta", 1.0)
        # beta scales C; fold it in so that the new C holds the whole additive term.
        new_bias = shift if current is None or beta == 0.0 else beta * current.astype(np.float64) + shift
        node.attributes["beta"] = ir.Attr("beta", ir.AttributeType.FLOAT, 1.0)
    else:
        new_bias = shift if current is None else current.astype(np.float64) + shift
    if bias is not None:
        overwrite_constant(node, 2, new_bias)
        return
    dtype = constant_array(node.inputs[1]).dtype
    created = add_constant(node.graph, names, new_bias.astype(dtype), f"{node.outputs[0].name}_bias", before=node)
    if len(node.inputs) < 3:
        node.resize_inputs(3)
    node.replace_input_with(2, created)
