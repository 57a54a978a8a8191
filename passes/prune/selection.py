"""Choosing how many and which channels each group keeps, toward a global target.

- ``CostModel`` predicts MACs and parameters after pruning from per-node costs (``ir.cost``): a layer
  whose input and output channels are kept at fractions ``fi`` and ``fo`` keeps ``fi * fo`` of its
  weights (its bias keeps ``fo``); one whose input and output are the same channels (depthwise
  Conv, BN) keeps ``fo``.
- ``select`` ranks the channels of all prunable groups by (normalized) importance and finds, by
  bisection on a global threshold, the smallest removal that meets the target: a fraction of the
  channels, of the MACs or of the parameters. Per group at most ``max_layer_ratio`` of the channels
  go, and the kept count is rounded up to a multiple of ``round`` features (never below one
  multiple, never above the group size; a head of 32 features already is one). ``uniform=True``
  instead removes ``ratio`` of every group.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ir import cost as ir_cost
from ir.channel_groups import ChannelAnalysis, Group, kept_fraction


class CostModel:
    def __init__(self, model: ir.Model, analysis: ChannelAnalysis):
        summary = ir_cost.analyze(model, infer_shapes=False)
        self.analysis = analysis
        self.macs = summary.macs
        self.params = summary.params
        self.terms = []  # (macs, params, input layout or None, output layout or None)
        for node, cost in zip(model.graph, summary.per_node):
            macs, params = cost.macs or 0, 0 if cost.constant else cost.params
            if not macs and not params:
                continue
            layout_in = analysis.layouts.get(node.inputs[0]) if node.inputs and node.inputs[0] is not None else None
            layout_out = analysis.layouts.get(node.outputs[0]) if node.outputs else None
            if layout_in is not None and layout_out is not None and layout_in.segments == layout_out.segments:
                layout_in = None
            if layout_in is None and layout_out is None:
                continue
            if layout_in is not None and layout_out is not None:
                # Only the weight matrix shrinks with both; a bias shrinks with the output channels alone.
                weight = ir_cost.static_dims(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
                weight_params = min(params, math.prod(weight)) if weight is not None else params
                self.terms.append((0, params - weight_params, None, layout_out))
                params = weight_params
            self.terms.append((macs, params, layout_in, layout_out))

    def after(self, keep_counts: dict[int, int]) -> tuple[float, float]:
        """Predicted (macs, params) with ``keep_counts[group id]`` channels kept."""
        macs, params = float(self.macs), float(self.params)
        root = self.analysis.root
        for term_macs, term_params, layout_in, layout_out in self.terms:
            factor = 1.0
            if layout_in is not None:
                factor *= kept_fraction(layout_in, keep_counts, root)
            if layout_out is not None:
                factor *= kept_fraction(layout_out, keep_counts, root)
            macs -= term_macs * (1 - factor)
            params -= term_params * (1 - factor)
        return macs, params


def kept_count(group: Group, removed: int, max_layer_ratio: float, multiple: int) -> int:
    removed = min(removed, int(math.floor(group.channels * max_layer_ratio)))
    keep = max(group.channels - removed, 1)
    # ``multiple`` counts features: a group whose channels are blocks (attention heads of dh
    # features) needs fewer of them per multiple.
    unit = max((a.layout.block for a in group.producers), default=1)
    multiple = max(1, math.ceil(multiple / unit))
    if multiple > 1:
        keep = min(group.channels, max(multiple, int(math.ceil(keep / multiple)) * multiple))
    return keep


def select(
    groups: list[Group],
    scores: dict[int, np.ndarray],
    cost: CostModel,
    *,
    target: str,
    amount: float,
    max_layer_ratio: float,
    multiple: int,
    uniform: bool = False,
) -> dict[int, np.ndarray]:
    """Kept channel ids per pruned group (groups that keep everything are left out)."""
    orders = {g.id: np.argsort(scores[g.id], kind="stable") for g in groups}
    if uniform:
        counts = {g.id: kept_count(g, int(round(g.channels * amount)), max_layer_ratio, multiple) for g in groups}
    else:
        counts = _bisect(groups, scores, cost, target, amount, max_layer_ratio, multiple)
    keep = {}
    for group in groups:
        count = counts[group.id]
        if count < group.channels:
            keep[group.id] = np.sort(orders[group.id][group.channels - count :])
    return keep


def _counts_at(groups, scores, threshold, max_layer_ratio, multiple) -> dict[int, int]:
    return {g.id: kept_count(g, int(np.count_nonzero(scores[g.id] < threshold)), max_layer_ratio, multiple) for g in groups}


def _reduction(groups, counts, cost: CostModel, target: str) -> float:
    if target == "ratio":
        total = sum(g.channels for g in groups)
        return sum(g.channels - counts[g.id] for g in groups) / max(total, 1)
    macs, params = cost.after(counts)
    return 1 - macs / cost.macs if target == "macs" else 1 - params / cost.params


def _bisect(groups, scores, cost, target, amount, max_layer_ratio, multiple) -> dict[int, int]:
    candidates = np.unique(np.concatenate([scores[g.id] for g in groups] + [np.array([np.inf])]))
    low, high = 0, len(candidates) - 1  # threshold index: remove scores strictly below candidates[i]
    if _reduction(groups, _counts_at(groups, scores, candidates[high], max_layer_ratio, multiple), cost, target) < amount:
        return _counts_at(groups, scores, candidates[high], max_layer_ratio, multiple)  # the caps bind first
    while low < high:
        middle = (low + high) // 2
        counts = _counts_at(groups, scores, candidates[middle], max_layer_ratio, multiple)
        if _reduction(groups, counts, cost, target) >= amount:
            high = middle
        else:
            low = middle + 1
    return _counts_at(groups, scores, candidates[low], max_layer_ratio, multiple)
