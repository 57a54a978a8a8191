"""fold-shapes: compute shape arithmetic from the dimensions shape inference knows, in partly dynamic shapes.

fold-constants folds a shape computation once every dimension it reads is static. A model with one
dynamic dimension (a batch or sequence length, or a shape behind an op ONNX inference cannot type)
keeps its ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains, although most of the numbers
they compute are known. Shape inference runs at the start of the pass.

The pass reads a small integer tensor (a shape, or a piece of one) element by element: constants,
``Shape(x)`` (with start/end) whose element j is x's dimension j, and what ``Gather`` (axis 0, constant
indices), ``Slice`` (constant bounds), ``Concat`` (axis 0), ``Unsqueeze``/``Squeeze``/``Reshape``/
``Identity``, integer ``Cast`` and elementwise ``Mul``/``Add``/``Sub`` (operands of equal length, or one
of length 1) make of them. A number outside the range of its value's type (int32 or int64) is not
known: ONNX Runtime wraps it around. The dimensions of a graph output are never read: its declared shape may be
wrong, and ONNX Runtime does not check it.

Rules:
1. An integer node whose every output element is a known number becomes an int constant of the shape
   inference gives it, e.g. ``Gather(Shape(x), 1)`` when x's dimension 1 is static and dimension 0 is
   not. (The chain behind it is left for eliminate-dead.)
2. A Reshape whose target is computed, not constant, gets a constant target when each element k can be
   spelled out:
   - a known number;
   - ``0`` when it is dimension k of the Reshape's own data (Reshape's 0 copies it; not with
     ``allowzero=1``);
   - the Reshape output's dimension k when shape inference knows it;
   - ``-1`` for at most one element left, when the target holds no -1 already and every other element
     is a known positive number (so that -1 can only resolve to the value it replaces, also on an
     empty tensor).
   A known 0 in the target with ``allowzero=0`` copies too; it counts as known positive only when
   the data's dimension k is.
3. A Concat (axis 0) whose elements are, in order, the consecutive dimensions a..b-1 of one
   ``Shape(x)`` is ``Shape(x)`` itself (with start=a, end=b from opset 15; before, only the whole
   shape).
Nodes of non-standard domains are never touched. The main graph and its subgraphs are visited.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ir import shapes
from passes.base import Pass, PassResult, register
from passes.fold._rewrite import (
    GraphLike,
    UniqueNames,
    add_constant,
    constant_ints,
    default_opset,
    input_at,
    known_dims,
    name_base,
    normalize_axes,
    rewritable_graphs,
    slice_params,
    standard_nodes,
    static_dims,
)

_INTEGER_OPS = frozenset({"Shape", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast", "Mul", "Add", "Sub"})
_INTEGER_TYPES = frozenset({ir.DataType.INT64, ir.DataType.INT32})
# Shape tensors are short; a longer integer tensor is data, not a shape.
_MAX_ELEMENTS = 64
_MAX_DEPTH = 12


@dataclasses.dataclass(frozen=True)
class Dim:
    """Dimension ``index`` of ``value``, not known statically."""

    value: ir.Value
    index: int


UNKNOWN = None  # an element nothing is known about
Element = int | Dim | None


@register
class FoldShapesPass(Pass):
    name = "fold-shapes"

    def call(self, model: ir.Model) -> PassResult:
        shapes.infer(model)
        self._opset = default_opset(model)
        self._names = UniqueNames(model)
        self._memo: dict[int, list[Element] | None] = {}
        modified = False
        for graph, node in standard_nodes(rewritable_graphs(model), self.note):
            if node.op_type == "Reshape" and constant_ints(input_at(node, 1)) is None:
                modified |= self._constant_target(graph, node)
            elif node.op_type == "Concat" and self._concat_to_shape(graph, node):
                modified = True
            elif node.op_type in _INTEGER_OPS and self._to_constant(graph, node):
                modified = True
        return PassResult(model, modified=modified)

    # Rule 1 ----------------------------------------------------------------------------------------

    def _to_constant(self, graph: GraphLike, node: ir.Node) -> bool:
        output = node.outputs[0]
        if len(node.outputs) != 1 or output.dtype not in _INTEGER_TYPES or output.is_graph_output() or not output.uses():
            return False
        dims = static_dims(output)
        elements = self._elements(output)
        if dims is None or len(dims) > 1 or elements is None or not all(isinstance(e, int) for e in elements):
            return False
        if int(np.prod(dims)) != len(elements):
            return False
        array = np.array(elements, dtype=output.dtype.numpy()).reshape(dims)
        constant = add_constant(graph, self._names, array, f"{output.name or name_base(node)}_value", node)
        output.replace_all_uses_with(constant)
        self.stats[f"{node.op_type} computed from known dimensions"] += 1
        return True

    # Rule 2 ----------------------------------------------------------------------------------------

    def _constant_target(self, graph: GraphLike, node: ir.Node) -> bool:
        data, target_value = node.inputs[0], node.inputs[1]
        elements = self._elements(target_value)
        output_dims = known_dims(node.outputs[0]) if not node.outputs[0].is_graph_output() else None
        if elements is None:
            return False
        copies = node.attributes.get_int("allowzero", 0) == 0
        data_dims = known_dims(data) if not data.is_graph_output() else None
        target: list[int | None] = []
        positive: list[bool] = []
        for k, element in enumerate(elements):
            data_dim = data_dims[k] if data_dims is not None and k < len(data_dims) else None
            if isinstance(element, Dim) and copies and element.value is data and element.index == k:
                element = 0
            if isinstance(element, int):
                if element == 0 and copies:  # copies data's dimension k
                    target.append(0)
                    positive.append(data_dim is not None and data_dim > 0)
                else:
                    target.append(element)
                    positive.append(element > 0)
                continue
            known = output_dims[k] if output_dims is not None and len(output_dims) == len(elements) else None
            target.append(known)
            positive.append(known is not None and known > 0)
        missing = [k for k, value in enumerate(target) if value is None]
        if len(missing) > 1:
            return False
        if missing:
            (k,) = missing
            if -1 in target or not all(ok for j, ok in enumerate(positive) if j != k):
                return False
            target[k] = -1
        shape = add_constant(graph, self._names, np.array(target, dtype=np.int64), f"{name_base(node)}_shape", node)
        node.replace_input_with(1, shape)
        self.stats["Reshape target made constant"] += 1
        return True

    # Rule 3 ----------------------------------------------------------------------------------------

    def _concat_to_shape(self, graph: GraphLike, node: ir.Node) -> bool:
        output = node.outputs[0]
        if node.attributes.get_int("axis", 0) not in (0, -1) or output.is_graph_output() or output.dtype != ir.DataType.INT64:
            return False
        elements = self._elements(output)
        if not elements or not all(isinstance(e, Dim) for e in elements):
            return False
        source = elements[0].value
        start = elements[0].index
        if any(e.value is not source or e.index != start + i for i, e in enumerate(elements)):
            return False
        end = start + len(elements)
        rank = len(source.shape) if source.shape is not None else None
        whole = start == 0 and rank == end
        if not whole and self._opset < 15:
            return False
        attributes = {} if whole else {"start": start, "end": end}
        shape_node = ir.node("Shape", [source], attributes, name=self._names.fresh(f"{name_base(node)}_shape"))
        shape_node.outputs[0].name = self._names.fresh(f"{output.name}_shape")
        shape_node.outputs[0].dtype = ir.DataType.INT64
        shape_node.outputs[0].shape = output.shape
        graph.insert_before(node, shape_node)
        output.replace_all_uses_with(shape_node.outputs[0])
        self.stats["Concat of dimensions became Shape"] += 1
        return True

    # Reading integer tensors element by element ----------------------------------------------------

    def _elements(self, value: ir.Value | None, depth: int = 0) -> list[Element] | None:
        """The flat elements of a small integer tensor; None when even their number is unknown."""
        if value is None or depth > _MAX_DEPTH:
            return None
        key = id(value)
        if key not in self._memo:
            self._memo[key] = _in_range(self._read(value, depth), value.dtype)
        return self._memo[key]

    def _read(self, value: ir.Value, depth: int) -> list[Element] | None:
        ints = constant_ints(value)
        if ints is not None:
            return ints if len(ints) <= _MAX_ELEMENTS else None
        node = value.producer()
        if node is None or node.op_type not in _INTEGER_OPS or node.domain not in ("", "ai.onnx") or value is not node.outputs[0]:
            return None
        if node.op_type == "Shape":
            return self._shape_elements(node)
        if value.dtype not in _INTEGER_TYPES:
            return None
        inputs = [self._elements(v, depth + 1) if v is not None else None for v in node.inputs]
        first = inputs[0] if inputs else None
        if node.op_type in ("Unsqueeze", "Squeeze", "Reshape", "Identity"):
            return first  # the flat order is unchanged
        if node.op_type == "Cast":
            return first if input_at(node, 0) is not None and node.inputs[0].dtype in _INTEGER_TYPES else None
        if node.op_type == "Concat":
            if node.attributes.get_int("axis", 0) not in (0, -1) or any(part is None for part in inputs):
                return None
            return [element for part in inputs for element in part]
        if node.op_type == "Gather":
            return self._gather(node, first)
        if node.op_type == "Slice":
            return self._slice(node, first)
        return _elementwise(node.op_type, inputs)

    def _shape_elements(self, node: ir.Node) -> list[Element] | None:
        source = node.inputs[0]
        dims = known_dims(source)
        if dims is None or source.is_graph_output():
            return None
        rank = len(dims)
        start = _clamp_axis(node.attributes.get_int("start", 0), rank)
        end = _clamp_axis(node.attributes.get_int("end", rank), rank)
        return [dims[j] if dims[j] is not None else Dim(source, j) for j in range(start, end)]

    def _gather(self, node: ir.Node, data: list[Element] | None) -> list[Element] | None:
        indices = constant_ints(input_at(node, 1))
        if data is None or indices is None or node.attributes.get_int("axis", 0) != 0:
            return None
        picked = normalize_axes(indices, len(data))
        return None if picked is None else [data[i] for i in picked]

    def _slice(self, node: ir.Node, data: list[Element] | None) -> list[Element] | None:
        if data is None:
            return None
        params = slice_params(node, self._opset, 1)
        if params is None or len(params[0]) != 1 or params[2] != [0] or params[3][0] == 0:
            return None
        (start,), (end,), _, (step,) = params
        return data[slice(*slice(start, end, step).indices(len(data)))]


def _elementwise(op_type: str, inputs: list[list[Element] | None]) -> list[Element] | None:
    if len(inputs) != 2 or inputs[0] is None or inputs[1] is None:
        return None
    left, right = inputs
    if len(left) != len(right) and 1 not in (len(left), len(right)):
        return None
    length = max(len(left), len(right))
    left = left * length if len(left) == 1 else left
    right = right * length if len(right) == 1 else right
    compute = {"Mul": lambda a, b: a * b, "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b}[op_type]
    return [compute(a, b) if isinstance(a, int) and isinstance(b, int) else UNKNOWN for a, b in zip(left, right)]


def _in_range(elements: list[Element] | None, dtype: ir.DataType | None) -> list[Element] | None:
    """The elements, a number outside the value's integer type made unknown: the reader computes with
    Python ints, where ONNX Runtime wraps around (an int32 Cast of 3000000000, an int32 product)."""
    if elements is None or dtype not in _INTEGER_TYPES:
        return elements
    info = np.iinfo(dtype.numpy())
    return [e if not isinstance(e, int) or info.min <= e <= info.max else UNKNOWN for e in elements]


def _clamp_axis(axis: int, rank: int) -> int:
    # Shape's start/end clamp like Python slicing bounds.
    if axis < 0:
        axis += rank
    return min(max(axis, 0), rank)
