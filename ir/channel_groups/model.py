"""The data the channel analysis produces: channel spaces, layouts of values, rewrite actions, groups.

- A *space* is a set of channels created by one layer (a Conv's output channels, a MatMul's output
  features) or by a graph input. Spaces that must be pruned identically (two branches joined by an
  Add, a squeeze-and-excitation gate and the tensor it scales) are merged with union-find; a merged
  class is a *group*, channel ``k`` of every member space is the same channel.
- A *layout* says where a value's channel axis is and which spaces it holds along it: one segment per
  concatenated input (``Concat`` on the channel axis), ``block`` elements per channel after a
  ``Flatten``/``Reshape`` merged the axes behind the channel axis into it.
- An *action* is one edit that removing channels requires (slice a weight, a bias, a BN parameter, a
  per-channel constant, a shape entry, a group count); applying every action with the same kept
  channels gives a consistent model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir


@dataclasses.dataclass(frozen=True)
class Segment:
    space: int
    length: int


@dataclasses.dataclass(frozen=True)
class Layout:
    axis: int  # non-negative axis of the value
    segments: tuple[Segment, ...]
    block: int = 1  # contiguous elements per channel along the axis

    @property
    def channels(self) -> int:
        return sum(s.length for s in self.segments)

    def moved(self, axis: int) -> Layout:
        return dataclasses.replace(self, axis=axis)


@dataclasses.dataclass(frozen=True)
class Action:
    """One edit. ``kind``:
    - ``output``: the layer's output channels (weight axis ``axis``, bias) follow ``layout``;
    - ``input``: the layer's input channels (weight axis ``axis``) follow ``layout``;
    - ``constant``: input ``index`` (a constant) is sliced along its ``axis``;
    - ``group``: the node's ``group`` attribute becomes the kept channel count (depthwise conv);
    - ``shape``: entry ``axis`` of the constant shape at input ``index`` becomes kept channels x block.
    """

    kind: str
    node: ir.Node
    layout: Layout
    index: int = 1
    axis: int = 0


@dataclasses.dataclass
class Group:
    """Channels that are removed together. ``spaces`` are the merged spaces, all ``channels`` long."""

    id: int
    channels: int
    spaces: list[int]
    reasons: list[str]
    producers: list[Action]  # "output" actions: layers whose filters are these channels
    consumers: list[Action]  # "input" actions: layers that read these channels
    followers: list[Action]  # BN parameters, per-channel constants, depthwise convs, shapes

    @property
    def prunable(self) -> bool:
        return not self.reasons and self.channels > 1 and bool(self.producers)


def kept_indices(layout: Layout, keep: dict[int, np.ndarray], root) -> np.ndarray:
    """Indices kept along the layout's axis, given sorted kept channel ids per group root."""
    parts, base = [], 0
    for segment in layout.segments:
        kept = keep.get(root(segment.space))
        ids = np.arange(segment.length) if kept is None else kept
        parts.append(base + ids)
        base += segment.length
    channels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if layout.block == 1:
        return channels
    return (channels[:, None] * layout.block + np.arange(layout.block)[None, :]).reshape(-1)


def kept_fraction(layout: Layout, keep_counts: dict[int, int], root) -> float:
    total = layout.channels
    kept = sum(keep_counts.get(root(s.space), s.length) for s in layout.segments)
    return kept / total if total else 1.0
