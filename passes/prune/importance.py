"""Channel importance per group: higher means more important. One score per channel of the group.

Criteria:
- ``l1`` / ``l2``: the L1 / L2 norm of each channel's filter, summed over the group's producers
  (the layers whose output channels the group is).
- ``bn``: |gamma| of the BatchNormalizations that follow the group (network slimming); groups without
  one fall back to ``l1`` (the caller notes it).
- ``activation``: mean |activation| per channel on calibration data, measured at the inputs of the
  group's consumers; the fraction of exact zeros is returned alongside for the report.
- ``reconstruction``: ThiNet-style greedy selection. For each consumer, ``M[c, d]`` is the inner
  product of the consumer-output contributions of input channels ``c`` and ``d`` on calibration data
  (from the normal equations ``X^T X`` and the weight), so removing a set R adds output error
  ``1_R^T M 1_R``. Channels are removed greedily, each time the one adding the least error; a
  channel's score is the total error, relative to the consumers' output energy, once it is removed.
  Scores are therefore comparable across layers.
``normalize`` divides magnitude-like scores by their group mean so that a global threshold can rank
channels of different layers (the reconstruction score is already relative).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx_ir as ir

from ir.channel_groups import ChannelAnalysis, Group, weight_array
from passes.prune.reconstruct import MAX_ROWS_PER_BATCH, capture_values, NormalEquations, flat_weight, is_refittable, layer_rows


def weight_norms(group: Group, order: int) -> np.ndarray:
    scores = np.zeros(group.channels)
    for action in group.producers:
        weight = weight_array(action.node.inputs[action.index]).astype(np.float64)
        # One row per channel; a channel that is a block (an attention head) spans block rows.
        rows = np.moveaxis(weight, action.axis, 0).reshape(action.layout.channels, -1)
        scores += np.abs(rows).sum(1) if order == 1 else np.sqrt((rows**2).sum(1))
    return scores


def bn_scales(group: Group) -> np.ndarray | None:
    scores = np.zeros(group.channels)
    found = False
    for action in group.followers:
        node = action.node
        if node.op_type == "BatchNormalization" and action.index == 1 and len(action.layout.segments) == 1:
            scores += np.abs(weight_array(node.inputs[1]).astype(np.float64))
            found = True
    return scores if found else None


def activation_stats(model: ir.Model, analysis: ChannelAnalysis, groups: list[Group], feeds: Iterable[dict]) -> dict[int, dict[str, np.ndarray]]:
    """Per group: ``mean_abs`` and ``zero_fraction`` per channel, at the inputs of its consumers."""
    wanted = {g.id for g in groups}
    consumers = [a for g in groups for a in g.consumers]
    consumers = list({id(a): a for a in consumers}.values())
    stats = {gid: {"mean_abs": np.zeros(analysis.sizes[gid]), "zero_fraction": np.zeros(analysis.sizes[gid]), "count": np.zeros(1)} for gid in wanted}
    names = list(dict.fromkeys(a.node.inputs[0].name for a in consumers))
    if not names:
        return {}
    for arrays in capture_values(model, names, feeds):
        for action in consumers:
            x = arrays[action.node.inputs[0].name]
            layout = action.layout
            moved = np.moveaxis(x, layout.axis, 0).reshape(layout.channels, layout.block, -1)
            flat = moved.reshape(layout.channels, -1)
            sums = {"mean_abs": np.abs(flat).mean(1), "zero_fraction": (flat == 0).mean(1), "count": None}
            base = 0
            for segment in layout.segments:
                root = analysis.root(segment.space)
                if root in stats:
                    for key in ("mean_abs", "zero_fraction"):
                        stats[root][key] += sums[key][base : base + segment.length]
                    stats[root]["count"] += 1 / len(layout.segments)
                base += segment.length
    return {gid: {k: v / max(s["count"][0], 1e-12) for k, v in s.items() if k != "count"} for gid, s in stats.items()}


def reconstruction_scores(model: ir.Model, analysis: ChannelAnalysis, groups: list[Group], feeds: Iterable[dict], seed: int = 0) -> dict[int, np.ndarray]:
    """ThiNet-style greedy scores per group (see module docstring)."""
    feeds = list(feeds)
    wanted = {g.id for g in groups}
    consumers = list({id(a): a for g in groups for a in g.consumers if is_refittable(a.node) and _features(a.node) <= MAX_FEATURES}.values())
    if not consumers:
        return {}
    systems: dict[int, NormalEquations] = {}
    rng = np.random.default_rng(seed)
    names = list(dict.fromkeys(a.node.inputs[0].name for a in consumers))
    for arrays in capture_values(model, names, feeds):
        for action in consumers:
            rows = layer_rows(action.node, arrays[action.node.inputs[0].name])
            if rows.shape[0] > MAX_ROWS_PER_BATCH:
                rows = rows[rng.choice(rows.shape[0], MAX_ROWS_PER_BATCH, replace=False)]
            systems.setdefault(id(action), NormalEquations(rows.shape[1], 0)).add(rows)
    interactions = {gid: np.zeros((analysis.sizes[gid],) * 2) for gid in wanted}
    energy = {gid: 0.0 for gid in wanted}
    for action in consumers:
        weight = flat_weight(action.node)  # [outputs, channels * block]
        gram = systems[id(action)].xtx
        channels = action.layout.channels
        block = weight.shape[1] // channels  # kernel positions, or flattened features per channel
        coupling = (weight.T @ weight) * gram
        m = coupling.reshape(channels, block, channels, block).sum(axis=(1, 3))
        base = 0
        for segment in action.layout.segments:
            root = analysis.root(segment.space)
            if root in interactions:
                part = slice(base, base + segment.length)
                interactions[root] += m[part, part]
                energy[root] += float(m.sum())
            base += segment.length
    return {gid: _greedy_scores(interactions[gid]) / max(energy[gid], 1e-30) for gid in wanted if energy[gid] > 0}


MAX_FEATURES = 8192  # X^T X of a wider layer (e.g. VGG's 25088-feature Gemm) would not fit in memory


def _features(node: ir.Node) -> int:
    shape = weight_array(node.inputs[1]).shape
    return int(np.prod(shape[1:])) if node.op_type == "Conv" else shape[0] if node.op_type == "MatMul" or not node.attributes.get_int("transB", 0) else shape[1]


def _greedy_scores(m: np.ndarray) -> np.ndarray:
    n = m.shape[0]
    remaining = np.ones(n, bool)
    cross = np.zeros(n)
    diag = np.diag(m).copy()
    scores = np.zeros(n)
    total = 0.0
    for _ in range(n):
        increase = np.where(remaining, diag + 2 * cross, np.inf)
        pick = int(np.argmin(increase))
        total = max(total + increase[pick], scores.max() if _ else 0.0)
        scores[pick] = total
        remaining[pick] = False
        cross += m[:, pick]
    return scores


def normalize(scores: np.ndarray) -> np.ndarray:
    mean = float(scores.mean())
    return scores / mean if mean > 0 else scores
