"""Channel dependency groups: which channels of which layers must be removed together (cached).

``analyze(model)`` infers shapes, runs the analysis (rules in ``ir.channel_groups.analysis``) and
caches the result on the model until its node structure changes (or ``invalidate(model)``).
``describe_groups(model)`` is the data behind ``passes inspect --groups``: one dict per group with its
channel count, whether it is prunable, the reasons when it is not, and its layers.
"""

from __future__ import annotations

import weakref

import onnx_ir as ir

from ir import shapes
from ir.channel_groups.analysis import ChannelAnalysis, analyze_model, node_label
from ir.constants import weight_array, is_weight, static_shape
from ir.channel_groups.model import Action, Group, Layout, Segment, kept_fraction, kept_indices

__all__ = [
    "Action", "ChannelAnalysis", "Group", "Layout", "Segment", "analyze", "weight_array", "describe_groups",
    "invalidate", "is_weight", "kept_fraction", "kept_indices", "node_label", "static_shape",
]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(model: ir.Model) -> int:
    return hash(tuple((id(node), *(id(v) for v in node.inputs)) for node in model.graph))


def analyze(model: ir.Model, *, infer_shapes: bool = True) -> ChannelAnalysis:
    """The channel analysis of the model's main graph, cached while its nodes and edges are unchanged."""
    fingerprint = _fingerprint(model)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    if infer_shapes:
        shapes.infer(model)
    analysis = analyze_model(model)
    _CACHE[model] = (fingerprint, analysis)
    return analysis


def invalidate(model: ir.Model) -> None:
    _CACHE.pop(model, None)


def describe_groups(model: ir.Model) -> list[dict]:
    """One dict per group: id, channels, prunable, reasons, producers, consumers, followers (labels)."""
    rows = []
    for group in analyze(model).groups():
        if not group.producers and not group.consumers:
            continue
        rows.append({
            "id": group.id,
            "channels": group.channels,
            "prunable": group.prunable,
            "reasons": list(group.reasons) or ([] if group.prunable else ["fewer than two channels"] if group.channels <= 1 else ["no layer produces these channels"]),
            "producers": [node_label(a.node) for a in group.producers],
            "consumers": [node_label(a.node) for a in group.consumers],
            "followers": sorted({node_label(a.node) for a in group.followers}),
        })
    return rows
