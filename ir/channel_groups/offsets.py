"""Split and Slice on the channel axis: which whole segments each piece holds.

A piece ``[start, end)`` of a layout's channel axis keeps its channels tracked only when both ends
fall on segment boundaries (e.g. a Split that undoes a Concat, a Slice that takes one branch's
channels back): the piece then holds exactly those segments, and after pruning its offsets are the
kept channel counts of the segments before each end. A piece that cuts through one layer's channels
would need a finer group than that layer's, and is refused by the caller (never guessed).
"""

from __future__ import annotations

from ir.channel_groups.model import Layout, Segment


def boundaries(layout: Layout) -> list[int]:
    """Channel offsets where segments start, plus the total: ``[0, len0, len0 + len1, ..., C]``."""
    offsets = [0]
    for segment in layout.segments:
        offsets.append(offsets[-1] + segment.length)
    return offsets


def segments_between(layout: Layout, start: int, end: int) -> tuple[Segment, ...] | None:
    """The segments exactly covering ``[start, end)``, or None when an end cuts through a segment."""
    offsets = boundaries(layout)
    if start not in offsets or end not in offsets or start >= end:
        return None
    return layout.segments[offsets.index(start) : offsets.index(end)]


def prefix(layout: Layout, end: int) -> Layout:
    """The layout of the channels before offset ``end`` (a segment boundary): kept count = new offset."""
    return Layout(layout.axis, layout.segments[: boundaries(layout).index(end)])
