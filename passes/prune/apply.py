"""Removing channels from a model given, for each group, the channel ids it keeps.

Every action of the channel analysis (``ir.channel_groups``) is applied with the same kept ids: the
weights, biases, BN parameters and per-channel constants are sliced, depthwise ``group`` counts and
shape constants rewritten. A sliced constant becomes a fresh initializer read only by its node, so a
weight shared with another node or stored in a Constant node is never edited in place. Afterwards
unused nodes are removed and shapes re-inferred.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from ir import shapes
from ir.channel_groups import ChannelAnalysis, weight_array, invalidate, kept_indices
from ir.errors import InvalidModelError


def remove_channels(model: ir.Model, analysis: ChannelAnalysis, keep: dict[int, np.ndarray]) -> int:
    """Apply the kept channel ids (sorted, per group id); returns the number of channels removed."""
    keep = {root: np.asarray(sorted(ids), dtype=np.int64) for root, ids in keep.items()}
    removed = sum(analysis.sizes[root] - len(ids) for root, ids in keep.items())
    if not removed:
        return 0
    slices: dict[tuple[ir.Node, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    for action in analysis.actions:
        if not any(analysis.root(s.space) in keep for s in action.layout.segments):
            continue
        indices = kept_indices(action.layout, keep, analysis.root)
        node = action.node
        if action.kind in ("output", "input", "constant"):
            slices[(node, action.index)].append((action.axis, indices))
            if action.kind == "output" and node.op_type in ("Conv", "ConvTranspose", "Gemm"):
                bias = node.inputs[2] if len(node.inputs) > 2 else None
                if bias is not None:
                    array = weight_array(bias)
                    if array.ndim >= 1 and array.shape[-1] == analysis.sizes[action.layout.segments[0].space]:
                        slices[(node, 2)].append((array.ndim - 1, indices))
        elif action.kind == "group":
            node.attributes["group"] = ir.AttrInt64("group", len(indices))
        elif action.kind == "shape":
            slices[(node, action.index)].append((-1 - action.axis, np.asarray([len(indices)])))
    taken = _names(model.graph)
    for (node, index), edits in slices.items():
        array = weight_array(node.inputs[index])
        if array is None:
            raise InvalidModelError(f"pruning: input {index} of {node.op_type} '{node.name}' is not a constant")
        for axis, indices in edits:
            if axis < 0:  # a shape entry, encoded as -1 - position
                array = array.copy()
                array.reshape(-1)[-1 - axis] = indices[0]
            else:
                array = np.take(array, indices, axis=axis)
        _replace_input(node, index, np.ascontiguousarray(array), taken)
    _clean(model)
    return removed


def _names(graph: ir.Graph) -> set[str]:
    taken = set(graph.initializers) | {v.name for v in graph.inputs if v.name}
    taken.update(out.name for node in graph for out in node.outputs if out.name)
    return taken


def _replace_input(node: ir.Node, index: int, array: np.ndarray, taken: set[str]) -> None:
    old = node.inputs[index]
    base = f"{old.name or node.name or node.op_type}_pruned"
    name, counter = base, 0
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    taken.add(name)
    value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(array.dtype)), shape=ir.Shape(array.shape),
                     const_value=ir.tensor(array, name=name))
    as_input = _initializers_are_inputs(node.graph)
    node.graph.register_initializer(value)
    if as_input:
        node.graph.inputs.append(value)  # IR version < 4 requires it
    node.replace_input_with(index, value)


def _initializers_are_inputs(graph: ir.Graph) -> bool:
    inputs = set(graph.inputs)
    return bool(graph.initializers) and all(v in inputs for v in graph.initializers.values())


def _clean(model: ir.Model) -> None:
    common.RemoveUnusedNodesPass()(model)
    outputs = set(model.graph.outputs)
    for node in model.graph:
        for value in node.outputs:
            if value not in outputs:
                value.shape = None  # stale channel counts; inference fills them in again
    invalidate(model)
    shapes.infer(model)
