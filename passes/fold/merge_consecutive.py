"""merge-consecutive: merge a data-movement node into the node that consumes its output.

A pair is a first node A whose output is read only by a second node B (once, as B's data input) and is
not a graph output; A then goes away. Shapes come from shape inference, run at the start of the pass.

Rules:
- ``Transpose -> Transpose``: one Transpose with the composed permutation; none when the composition
  is the identity (this case also fires when A has other consumers: B alone goes).
- ``Squeeze -> Squeeze`` and ``Unsqueeze -> Unsqueeze``: one node with the combined axes (an input
  from opset 13, an attribute before). Axes must be constant; negative ones need a known rank.
- ``Unsqueeze -> Squeeze`` and ``Squeeze -> Unsqueeze`` of the same axes cancel (also when A has other
  consumers: B alone goes).
- ``Reshape`` after ``Reshape``/``Flatten``/``Squeeze``/``Unsqueeze``: the Reshape (constant target)
  reads A's input directly when its target does not copy a dimension from A's output (no ``0``, or
  ``allowzero=1``); otherwise, when A's output shape is static, B's target is spelled out in full.
- ``Flatten``/``Squeeze``/``Unsqueeze`` after one of those four: when A's output shape is static, the
  pair becomes a single Reshape to the shape B computes from it (unless that has a zero dimension).
- ``Slice -> Squeeze``: a Slice of one element along one axis (constant bounds, step 1, known size),
  whose axis the Squeeze then removes, is a ``Gather`` of that index.
- A ``Transpose`` that moves only dimensions of size 1 (the others, unknown ones included, keep their
  order) leaves the data's flat order as it is: it merges like a view op, as the first node before a
  Reshape (a ``0`` in the Reshape's target at an axis the Transpose moved is spelled out from the
  known dimension, refused when unknown) and on either side of the pairs above that need static shapes.
- ``Slice -> Slice`` on disjoint axes (constant parameters, opset 10+): the second Slice takes the
  first's axes too and reads its input. Applied when every consumer of the first Slice is such a
  Slice (one node fewer, even when it feeds several); the first then goes.

Result shapes are computed from the intermediate's static shape, never read from B's output: a graph
output's declared shape may be wrong, and ONNX Runtime does not check it.

New nodes and constants get names unique in the model; a graph output keeps its name.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ir import shapes
from passes.base import Pass, PassResult, all_graphs, is_standard_domain, register
from passes.fold._rewrite import (
    attribute_ints,
    GraphLike,
    UniqueNames,
    add_constant,
    bypass_node,
    clamp_index,
    constant_ints,
    default_opset,
    input_at,
    is_private,
    known_dims,
    name_base,
    normalize_axes,
    rank_of,
    remove_if_unused,
    replace_value,
    slice_params,
    standard_nodes,
    static_dims,
    transpose_perm,
)

_VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


@register
class MergeConsecutivePass(Pass):
    name = "merge-consecutive"

    def call(self, model: ir.Model) -> PassResult:
        shapes.infer(model)
        self._opset = default_opset(model)
        self._names = UniqueNames(model)
        modified = False
        for graph, node in standard_nodes(all_graphs(model), self.note):
            outcome = self._merge(graph, node)
            if outcome:
                self.stats[outcome] += 1
                modified = True
        return PassResult(model, modified=modified)

    def _merge(self, graph: GraphLike, second: ir.Node) -> str | None:
        """Merge ``second`` with the node producing its data input; a stats label, or None."""
        data = input_at(second, 0)
        first = data.producer() if data is not None else None
        if first is None or not is_standard_domain(first) or data.is_graph_output():
            return None
        pair = (first.op_type, second.op_type)
        if pair == ("Transpose", "Transpose"):
            return self._merge_transposes(graph, first, second)
        if pair == ("Slice", "Slice"):
            return "Slice->Slice merged" if self._merge_slices(graph, first, second) else None
        if pair in (("Unsqueeze", "Squeeze"), ("Squeeze", "Unsqueeze")) and self._cancel(graph, first, second):
            return f"{first.op_type}->{second.op_type} cancelled"
        if not is_private(data):  # second is then its only consumer
            return None
        if pair in (("Squeeze", "Squeeze"), ("Unsqueeze", "Unsqueeze")) and self._combine_axes(graph, first, second):
            return f"{first.op_type}->{second.op_type} merged"
        first_views = first.op_type in _VIEW_OPS or _moves_only_ones(first)
        if first_views and second.op_type == "Reshape" and self._merge_into_reshape(graph, first, second):
            return f"{first.op_type}->Reshape merged"
        second_views = second.op_type in _VIEW_OPS or _moves_only_ones(second)
        if first_views and second_views and self._replace_by_reshape(graph, first, second):
            return f"{first.op_type}->{second.op_type} merged into Reshape"
        if pair == ("Slice", "Squeeze") and self._slice_to_gather(graph, first, second):
            return "Slice->Squeeze merged into Gather"
        return None

    # Transpose -------------------------------------------------------------------------------------

    def _merge_transposes(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> str | None:
        inner, outer = transpose_perm(first), transpose_perm(second)
        if inner is None or outer is None or len(inner) != len(outer):
            return None
        composed = [inner[axis] for axis in outer]
        if composed == list(range(len(composed))):
            if not bypass_node(graph, second, first.inputs[0]):
                return None
            remove_if_unused(graph, first)
            return "Transpose->Transpose cancelled"
        if not is_private(first.outputs[0]):
            return None
        second.attributes["perm"] = ir.AttrInt64s("perm", composed)
        _rewire_and_drop(graph, first, second)
        return "Transpose->Transpose merged"

    # Squeeze / Unsqueeze -----------------------------------------------------------------------------

    def _cancel(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> bool:
        # Unsqueeze axes index its output and Squeeze axes its input: in both orders the two nodes'
        # axes then index the same (larger) tensor, so equal sets undo each other.
        larger = first.outputs[0] if first.op_type == "Unsqueeze" else first.inputs[0]
        first_axes = self._axes(first, rank_of(larger))
        second_axes = self._axes(second, rank_of(larger))
        if first_axes is None or second_axes is None or sorted(first_axes) != sorted(second_axes):
            return False
        if not bypass_node(graph, second, first.inputs[0]):
            return False
        remove_if_unused(graph, first)
        return True

    def _combine_axes(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> bool:
        source_rank = rank_of(first.inputs[0])
        combine = _squeeze_axes if first.op_type == "Squeeze" else _unsqueeze_axes
        combined = combine(self._raw_axes(first), self._raw_axes(second), source_rank)
        if combined is None:
            return False
        self._set_axes(graph, second, combined)
        _rewire_and_drop(graph, first, second)
        return True

    def _axes(self, node: ir.Node, rank: int | None) -> list[int] | None:
        """The node's constant axes made non-negative; None when absent, repeated or unknown."""
        return _normalized(self._raw_axes(node), rank)

    def _raw_axes(self, node: ir.Node) -> list[int] | None:
        if self._opset >= 13:
            return constant_ints(input_at(node, 1))
        return attribute_ints(node, "axes")

    def _set_axes(self, graph: GraphLike, node: ir.Node, axes: list[int]) -> None:
        if self._opset >= 13:
            value = add_constant(graph, self._names, np.array(axes, dtype=np.int64), f"{name_base(node)}_axes", node)
            node.replace_input_with(1, value)
        else:
            node.attributes["axes"] = ir.AttrInt64s("axes", axes)

    # Reshape ---------------------------------------------------------------------------------------

    def _merge_into_reshape(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> bool:
        target = constant_ints(input_at(second, 1))
        if target is None:
            return False
        if second.attributes.get_int("allowzero", 0) == 1 or 0 not in target:
            _rewire_and_drop(graph, first, second)
            return True
        # A 0 copies a dimension of the intermediate: spell the result's dimensions out instead.
        dims = self._result_dims(second, first) or _spelled_out(target, first)
        if dims is None:
            return False
        value = add_constant(graph, self._names, np.array(dims, dtype=np.int64), f"{name_base(second)}_shape", second)
        second.replace_input_with(1, value)
        _rewire_and_drop(graph, first, second)
        return True

    def _replace_by_reshape(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> bool:
        dims = self._result_dims(second, first)
        if dims is None:
            return False
        shape = add_constant(graph, self._names, np.array(dims, dtype=np.int64), f"{name_base(second)}_shape", second)
        return self._substitute(graph, first, second, "Reshape", [first.inputs[0], shape], {})

    def _result_dims(self, second: ir.Node, first: ir.Node) -> list[int] | None:
        """The static shape ``second`` produces from ``first``'s output, computed from the intermediate's
        static shape rather than read from ``second``'s output, whose declared shape (a graph output's)
        may be stale. None when unknown or when it has a zero dimension (Reshape would copy it)."""
        middle = static_dims(first.outputs[0])
        if middle is None:
            return None
        dims = _view_result(second, middle, self._raw_axes(second) if second.op_type != "Flatten" else None)
        return None if dims is None or 0 in dims else dims

    # Slice -> Slice ----------------------------------------------------------------------------------

    def _merge_slices(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> bool:
        if self._opset < 10 or first.outputs[0].is_graph_output():
            return False
        rank = rank_of(first.inputs[0])
        inner = slice_params(first, self._opset, rank)
        if inner is None:
            return False
        consumers = [use.node for use in first.outputs[0].uses()]
        for consumer in consumers:
            if consumer.op_type != "Slice" or not is_standard_domain(consumer) or consumer.graph is not first.graph:
                return False
            if any(use.node is consumer and use.idx != 0 for use in first.outputs[0].uses()):
                return False
            outer = slice_params(consumer, self._opset, rank)
            if outer is None or set(outer[2]) & set(inner[2]):
                return False
        outer = slice_params(second, self._opset, rank)
        parameters = [a + b for a, b in zip(inner, outer)]
        inputs = [first.inputs[0]]
        for values, part in zip(parameters, ("starts", "ends", "axes", "steps")):
            inputs.append(add_constant(graph, self._names, np.array(values, dtype=np.int64), f"{name_base(second)}_{part}", second))
        for index, value in enumerate(inputs):
            if index < len(second.inputs):
                second.replace_input_with(index, value)
            else:
                second.resize_inputs(index + 1)
                second.replace_input_with(index, value)
        remove_if_unused(graph, first)
        return True

    # Slice -> Squeeze --------------------------------------------------------------------------------

    def _slice_to_gather(self, graph: GraphLike, first: ir.Node, second: ir.Node) -> bool:
        dims = known_dims(first.inputs[0])
        params = slice_params(first, self._opset, None if dims is None else len(dims))
        if dims is None or params is None or len(params[0]) != 1:
            return False
        (start,), (end,), (axis,), (step,) = params
        size = dims[axis]
        if size is None or step != 1 or self._axes(second, len(dims)) != [axis]:
            return False
        begin = clamp_index(start, size)
        if clamp_index(end, size) - begin != 1:
            return False
        index = add_constant(graph, self._names, np.array(begin, dtype=np.int64), f"{name_base(second)}_index", second)
        return self._substitute(graph, first, second, "Gather", [first.inputs[0], index], {"axis": axis})

    def _substitute(self, graph: GraphLike, first: ir.Node, second: ir.Node, op_type: str, inputs, attributes) -> bool:
        """Replace the pair by one new node computing ``second``'s (single) output from ``first``'s input."""
        original = second.outputs[0]
        node = ir.node(op_type, inputs, attributes, name=self._names.fresh(f"{name_base(second)}_{op_type.lower()}"))
        result = node.outputs[0]
        result.name = self._names.fresh(f"{original.name or name_base(second)}_{op_type.lower()}")
        result.type, result.shape = original.type, original.shape
        graph.insert_before(second, node)
        # A fresh value made in this graph can always take over, a graph output's name included.
        replace_value(graph, original, result)
        graph.remove(second, safe=True)
        remove_if_unused(graph, first)
        return True


def _moves_only_ones(node: ir.Node) -> bool:
    """A Transpose whose dimensions other than known 1s keep their order: the flat order is unchanged."""
    if node.op_type != "Transpose" or not is_standard_domain(node):
        return False
    dims, perm = known_dims(node.inputs[0]), transpose_perm(node)
    if dims is None or perm is None or sorted(perm) != list(range(len(dims))):
        return False
    moved = [axis for axis in perm if dims[axis] != 1]
    return moved == sorted(moved)


def _spelled_out(target: list[int], first: ir.Node) -> list[int] | None:
    """A Reshape target whose 0s copied dimensions of ``first``'s output, made to read ``first``'s input
    instead: a 0 stays where a Transpose leaves the axis in place, and becomes the known dimension
    elsewhere; None when one is unknown."""
    if first.op_type != "Transpose":
        return None
    perm, dims = transpose_perm(first), known_dims(first.outputs[0])
    if perm is None or dims is None:
        return None
    result = []
    for axis, want in enumerate(target):
        if want != 0:
            result.append(want)
        elif axis < len(dims) and dims[axis] is not None and dims[axis] > 0:
            result.append(dims[axis])
        elif axis < len(perm) and perm[axis] == axis:
            result.append(0)
        else:
            return None
    return result


def _view_result(node: ir.Node, dims: list[int], axes: list[int] | None) -> list[int] | None:
    """The output shape of a Reshape/Flatten/Squeeze/Unsqueeze (or a Transpose) applied to a tensor of
    shape ``dims``."""
    if node.op_type == "Transpose":
        perm = transpose_perm(node)
        return [dims[axis] for axis in perm] if perm is not None and len(perm) == len(dims) else None
    if node.op_type == "Flatten":
        axis = node.attributes.get_int("axis", 1)
        axis = axis + len(dims) if axis < 0 else axis
        return [math.prod(dims[:axis]), math.prod(dims[axis:])] if 0 <= axis <= len(dims) else None
    if node.op_type == "Squeeze":
        if not axes:
            return [dim for dim in dims if dim != 1]
        removed = _normalized(axes, len(dims))
        return None if removed is None else [dim for axis, dim in enumerate(dims) if axis not in removed]
    if node.op_type == "Unsqueeze":
        inserted = _normalized(axes, len(dims) + len(axes or []))
        if inserted is None:
            return None
        result = list(dims)
        for axis in sorted(inserted):
            result.insert(axis, 1)
        return result
    return _reshape_result(node, dims)


def _reshape_result(node: ir.Node, dims: list[int]) -> list[int] | None:
    target = constant_ints(input_at(node, 1))
    if target is None:
        return None
    copies = node.attributes.get_int("allowzero", 0) == 0
    result = [dims[i] if want == 0 and copies and i < len(dims) else want for i, want in enumerate(target)]
    if result.count(-1) > 1:
        return None
    if -1 in result:
        known = math.prod(dim for dim in result if dim != -1)
        if known == 0:
            return None
        result[result.index(-1)] = math.prod(dims) // known
    return result if math.prod(result) == math.prod(dims) else None


def _normalized(axes: list[int] | None, rank: int | None) -> list[int] | None:
    # No axes at all means "every size-1 dimension" for Squeeze: not handled here.
    if not axes:
        return None
    normalized = normalize_axes(axes, rank)
    if normalized is None or len(set(normalized)) != len(normalized):
        return None
    return normalized


def _squeeze_axes(inner: list[int] | None, outer: list[int] | None, source_rank: int | None) -> list[int] | None:
    """Axes of one Squeeze doing Squeeze(inner) then Squeeze(outer) on a tensor of ``source_rank``
    (None when unknown: then only non-negative axes can be placed)."""
    inner = _normalized(inner, source_rank)
    if inner is None:
        return None
    outer = _normalized(outer, None if source_rank is None else source_rank - len(inner))
    if outer is None:
        return None
    # The second Squeeze's axes index what the first one left: map them back to the source.
    bound = source_rank if source_rank is not None else max(inner) + max(outer) + 2
    remaining = [axis for axis in range(bound) if axis not in inner]
    return sorted({*inner, *(remaining[axis] for axis in outer)})


def _unsqueeze_axes(inner: list[int] | None, outer: list[int] | None, source_rank: int | None) -> list[int] | None:
    """Axes of one Unsqueeze doing Unsqueeze(inner) then Unsqueeze(outer) on a tensor of ``source_rank``
    (None when unknown: then only non-negative axes can be placed)."""
    middle_rank = None if source_rank is None else source_rank + len(inner or [])
    inner = _normalized(inner, middle_rank)
    outer = _normalized(outer, None if middle_rank is None else middle_rank + len(outer or []))
    if inner is None or outer is None:
        return None
    # Lay out the middle tensor's axes, insert the second node's new ones, read off every new axis.
    # With the rank unknown, a prefix long enough to hold every axis named gives the same positions.
    length = middle_rank if middle_rank is not None else max(inner + outer) + 1
    layout = ["new" if axis in inner else "old" for axis in range(length)]
    for axis in sorted(outer):
        layout.insert(axis, "new")
    return [axis for axis, kind in enumerate(layout) if kind == "new"]


def _rewire_and_drop(graph: GraphLike, first: ir.Node, second: ir.Node) -> None:
    """``second`` reads ``first``'s data input; ``first`` has no consumer left and goes."""
    second.replace_input_with(0, first.inputs[0])
    remove_if_unused(graph, first)
