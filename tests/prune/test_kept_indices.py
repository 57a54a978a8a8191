"""kept_indices / kept_fraction: the indices a layout keeps along its axis, by hand (segment offsets
inside a concatenation, blocks after a Flatten)."""

from __future__ import annotations

import numpy as np

from ir.channel_groups import Layout, Segment, kept_fraction, kept_indices


def root(space: int) -> int:
    return {0: 0, 1: 1, 2: 0}[space]  # space 2 is merged into group 0


THREE = Layout(1, (Segment(0, 4), Segment(1, 3), Segment(2, 4)))


def test_each_segment_is_offset_by_the_lengths_before_it():
    keep = {0: np.array([1, 3]), 1: np.array([0, 2])}
    # segment 0: 1, 3; segment 1 (offset 4): 4, 6; segment 2 (offset 7, same group as 0): 8, 10
    assert kept_indices(THREE, keep, root).tolist() == [1, 3, 4, 6, 8, 10]


def test_a_segment_of_an_unpruned_group_is_kept_whole():
    assert kept_indices(THREE, {1: np.array([2])}, root).tolist() == [0, 1, 2, 3, 6, 7, 8, 9, 10]


def test_blocks_expand_each_channel_to_its_elements():
    layout = Layout(1, (Segment(0, 3), Segment(1, 2)), block=2)
    assert kept_indices(layout, {0: np.array([2]), 1: np.array([1])}, root).tolist() == [4, 5, 8, 9]


def test_an_empty_layout_keeps_nothing():
    indices = kept_indices(Layout(0, ()), {}, root)
    assert indices.dtype == np.int64 and indices.shape == (0,)


def test_kept_fraction_counts_kept_channels_over_all():
    assert kept_fraction(THREE, {0: 1, 1: 3}, root) == (1 + 3 + 1) / 11
    assert kept_fraction(THREE, {}, root) == 1.0
    assert kept_fraction(Layout(0, ()), {0: 1}, root) == 1.0
