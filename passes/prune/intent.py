"""The intent of ``prune``: the original model with the removed channels masked, refits substituted.

Removing channel ``c`` of a group is, by definition, the original model in which no layer reads
``c``: every *consumer* (a Conv, ConvTranspose, Gemm or MatMul whose input holds the group's
channels) has the weights that read ``c`` zeroed. Whatever carries ``c`` on the way (BN, activations,
residual Adds, Concat segments, Split pieces, depthwise convs, attention heads) then no longer
matters, so the masked original computes exactly what the pruned model computes.

The masks are built here segment by segment (a boolean per channel: is it in its group's kept set)
from the channel analysis' layouts, not with ``kept_indices``, whose index arithmetic (segment
offsets, blocks) is what slices the pruned weights and is one of the things this checks.

After refit, each refitted layer's new weight ``[kept outputs, kept features]`` is written into the
masked original's weight at the kept rows and columns (removed columns stay zero, removed rows keep
their original values: no kept layer reads them).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ir.channel_groups import Layout, weight_array


def channel_mask(layout: Layout, keep: dict[int, np.ndarray], root) -> np.ndarray:
    """A boolean per element of the layout's axis: True where the channel is kept."""
    pieces = []
    for segment in layout.segments:
        kept = keep.get(root(segment.space))
        mine = np.ones(segment.length, bool) if kept is None else np.isin(np.arange(segment.length), kept)
        pieces.append(mine)
    mask = np.concatenate(pieces) if pieces else np.zeros(0, bool)
    return np.repeat(mask, layout.block)


@dataclasses.dataclass
class Refit:
    """A refitted layer: its weight as ``[kept outputs, kept features]`` and bias (or None)."""

    weight: np.ndarray
    bias: np.ndarray | None


@dataclasses.dataclass
class PruneIntent:
    # (node position, weight axis) -> mask over that axis, for every consumer of a pruned group
    input_masks: dict[tuple[int, int], np.ndarray] = dataclasses.field(default_factory=dict)
    # node position -> mask over the output channels, for layers that are also pruned producers
    output_masks: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    refits: dict[int, Refit] = dataclasses.field(default_factory=dict)

    @classmethod
    def record(cls, model: ir.Model, analysis, keep: dict[int, np.ndarray]) -> PruneIntent:
        position = {node: i for i, node in enumerate(model.graph)}
        keep = {root: np.asarray(ids) for root, ids in keep.items()}
        intent = cls()
        for action in analysis.actions:
            if not any(analysis.root(s.space) in keep for s in action.layout.segments):
                continue
            if action.kind == "input":
                intent.input_masks[(position[action.node], action.axis)] = channel_mask(action.layout, keep, analysis.root)
            elif action.kind == "output":
                intent.output_masks[position[action.node]] = channel_mask(action.layout, keep, analysis.root)
        return intent

    def build(self, original: ir.Model) -> ir.Model:
        nodes = list(original.graph)
        masked: dict[int, np.ndarray] = {}
        for (pos, axis), mask in self.input_masks.items():
            weight = masked.get(pos)
            weight = (weight_array(nodes[pos].inputs[1]) if weight is None else weight).copy()
            index = [slice(None)] * weight.ndim
            index[axis] = ~mask
            weight[tuple(index)] = 0
            masked[pos] = weight
        for pos, weight in masked.items():
            _set(nodes[pos], 1, weight)
        for pos, refit in self.refits.items():
            self._substitute(nodes[pos], pos, refit)
        return original

    def _substitute(self, node: ir.Node, pos: int, refit: Refit) -> None:
        flat = _flat(node)  # [outputs, features] after masking
        rows = self.output_masks.get(pos, np.ones(flat.shape[0], bool))
        in_axis = {"Conv": 1, "ConvTranspose": 0}.get(node.op_type)
        columns = np.ones(flat.shape[1], bool)
        for (p, axis), mask in self.input_masks.items():
            if p == pos:
                columns = np.repeat(mask, flat.shape[1] // mask.size) if in_axis is not None else mask
        flat[np.ix_(rows, columns)] = refit.weight
        _write_flat(node, flat)
        if refit.bias is not None:
            bias = _bias(node, flat.shape[0])
            bias[rows] = refit.bias
            if node.op_type == "Gemm":
                node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
            _set(node, 2, bias.astype(np.float32))


def _flat(node: ir.Node) -> np.ndarray:
    """The weight as [outputs, features] (Conv: features are C x kernel; Gemm includes alpha)."""
    weight = weight_array(node.inputs[1]).astype(np.float64)
    if node.op_type == "Conv":
        return weight.reshape(weight.shape[0], -1)
    if node.op_type == "Gemm":
        alpha = node.attributes.get_float("alpha", 1.0)
        return alpha * (weight if node.attributes.get_int("transB", 0) else weight.T)
    return weight.T.copy()


def _write_flat(node: ir.Node, flat: np.ndarray) -> None:
    old = weight_array(node.inputs[1])
    if node.op_type == "Conv":
        weight = flat.reshape(old.shape)
    elif node.op_type == "Gemm":
        node.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
        weight = flat if node.attributes.get_int("transB", 0) else flat.T
    else:
        weight = flat.T
    _set(node, 1, weight.astype(old.dtype))


def _bias(node: ir.Node, outputs: int) -> np.ndarray:
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return np.zeros(outputs)
    bias = weight_array(node.inputs[2]).astype(np.float64).reshape(-1)
    beta = node.attributes.get_float("beta", 1.0) if node.op_type == "Gemm" else 1.0
    return beta * np.broadcast_to(bias, (outputs,)).copy()


def _set(node: ir.Node, index: int, array: np.ndarray) -> None:
    from passes.intent import set_constant

    set_constant(node, index, array)
