"""Huffman code lengths and the coded size of a symbol stream (the third stage of Deep Compression)."""

from __future__ import annotations

import heapq

import numpy as np


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Optimal prefix-code length (bits) of each symbol with a non-zero count; 0 for absent symbols.
    A stream of a single distinct symbol costs 1 bit per symbol."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(counts.size, dtype=np.int64)
    present = [int(i) for i in np.flatnonzero(counts)]
    if len(present) == 1:
        lengths[present[0]] = 1
        return lengths
    heap = [(int(counts[i]), i, [i]) for i in present]
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, t1, s1 = heapq.heappop(heap)
        c2, t2, s2 = heapq.heappop(heap)
        for symbol in s1 + s2:
            lengths[symbol] += 1
        heapq.heappush(heap, (c1 + c2, min(t1, t2), s1 + s2))
    return lengths


def coded_bits(indices: np.ndarray, symbols: int) -> int:
    counts = np.bincount(np.asarray(indices).reshape(-1), minlength=symbols)
    return int(np.sum(counts * code_lengths(counts)))
