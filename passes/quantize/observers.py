"""Streaming statistics of activations and the quantization ranges derived from them.

``HistogramObserver`` keeps a histogram of every value it has seen in bounded memory, whatever the
number of batches:

- bins have one width ``w`` and are anchored at zero: bin ``k`` covers ``[k w, (k + 1) w)``, so zero
  is always a bin edge and merging never blurs the sign of a value;
- at most ``bins`` consecutive bins are kept. When a batch does not fit, the width doubles and pairs
  of bins merge exactly (bin ``k`` goes to ``floor(k / 2)``) until it fits; the window then moves
  by the fewest bins that bring the batch in (it stays put while the batch falls inside it);
- the exact minimum and maximum are tracked next to the histogram.

Ranges (``observed_range(method)``) always contain zero, so zero is exactly representable:

- ``minmax``: the exact minimum and maximum;
- ``percentile``: the ``percentile`` and ``100 - percentile`` quantiles of the histogram;
- ``entropy``: the threshold ``t`` minimizing the KL divergence between the histogram of ``|x|``
  and its quantized version (TensorRT's calibration), giving ``[max(min, -t), min(max, t)]``; ``t``
  clips less than 0.01% of the values;
- ``mse``: the range ``[r min, r max]`` (``r`` on a grid in (0, 1]) minimizing the expected squared
  error of quantizing the histogram: rounding error ``step^2 / 12`` inside, clipping error outside.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["minmax", "percentile", "entropy", "mse"]
METHODS = ("minmax", "percentile", "entropy", "mse")
DEFAULT_BINS = 2048


class HistogramObserver:
    """Histogram of a tensor's values across batches, bounded to ``bins`` bins."""

    def __init__(self, bins: int = DEFAULT_BINS):
        if bins < 16 or bins % 2:
            raise ValueError("bins must be an even number >= 16")
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.int64)
        self.first = 0  # index k of counts[0]
        self.width = 0.0
        self.min = np.inf
        self.max = -np.inf
        self.seen = 0

    def update(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.seen += x.size
        if self.width == 0.0:
            span = max(hi, 0.0) - min(lo, 0.0)
            # A quarter of the bins covers the first batch, leaving room before the first merge.
            self.width = span / (self.bins // 4) if span > 0 else 1e-8
            self.first = int(np.floor(min(lo, 0.0) / self.width))
        k_lo, k_hi = self._index(lo), self._index(hi)
        while k_hi - k_lo + 1 > self.bins or not self._fits_after_move(k_lo, k_hi):
            self._coarsen()
            k_lo, k_hi = self._index(lo), self._index(hi)
        self._move_window(k_lo, k_hi)
        index = np.floor(x / self.width).astype(np.int64) - self.first
        self.counts += np.bincount(np.clip(index, 0, self.bins - 1), minlength=self.bins)

    def _index(self, value: float) -> int:
        return int(np.floor(value / self.width))

    def _occupied(self) -> tuple[int, int] | None:
        nonzero = np.flatnonzero(self.counts)
        if nonzero.size == 0:
            return None
        return self.first + int(nonzero[0]), self.first + int(nonzero[-1])

    def _fits_after_move(self, k_lo: int, k_hi: int) -> bool:
        occupied = self._occupied()
        if occupied is not None:
            k_lo, k_hi = min(k_lo, occupied[0]), max(k_hi, occupied[1])
        return k_hi - k_lo + 1 <= self.bins

    def _coarsen(self) -> None:
        """Double the bin width; bin k merges into bin floor(k / 2)."""
        ks = self.first + np.arange(self.bins)
        merged = np.floor_divide(ks, 2)
        new_first = int(merged[0])
        counts = np.zeros(self.bins, dtype=np.int64)
        np.add.at(counts, merged - new_first, self.counts)
        self.counts, self.first, self.width = counts, new_first, self.width * 2

    def _move_window(self, k_lo: int, k_hi: int) -> None:
        occupied = self._occupied()
        lo = k_lo if occupied is None else min(k_lo, occupied[0])
        hi = k_hi if occupied is None else max(k_hi, occupied[1])
        if lo >= self.first and hi < self.first + self.bins:
            return
        new_first = lo if lo < self.first else hi - self.bins + 1
        counts = np.zeros(self.bins, dtype=np.int64)
        shift = self.first - new_first
        src = np.flatnonzero(self.counts)
        counts[src + shift] = self.counts[src]
        self.counts, self.first = counts, new_first

    # -- ranges -------------------------------------------------------------------------------------
    def edges(self) -> np.ndarray:
        return (self.first + np.arange(self.bins + 1)) * self.width

    def centers(self) -> np.ndarray:
        return (self.first + np.arange(self.bins) + 0.5) * self.width

    def observed_range(self, method: Method = "minmax", *, levels: int = 256, percentile: float = 99.99) -> tuple[float, float]:
        if self.seen == 0:
            return 0.0, 0.0
        lo, hi = min(self.min, 0.0), max(self.max, 0.0)
        if method == "minmax" or hi - lo == 0.0:
            return lo, hi
        if method == "percentile":
            result = self._percentile_range(percentile)
        elif method == "entropy":
            result = self._entropy_range(levels)
        elif method == "mse":
            result = self._mse_range(levels)
        else:
            raise ValueError(f"unknown calibration method {method!r}")
        return float(min(max(result[0], lo), 0.0)), float(max(min(result[1], hi), 0.0))

    def _percentile_range(self, percentile: float) -> tuple[float, float]:
        cdf = np.cumsum(self.counts) / self.counts.sum()
        edges = self.edges()
        tail = (100.0 - percentile) / 100.0
        low = edges[int(np.searchsorted(cdf, tail, side="left"))]
        high = edges[int(np.searchsorted(cdf, 1.0 - tail, side="left")) + 1]
        return float(low), float(high)

    def _mse_range(self, levels: int) -> tuple[float, float]:
        """Each end on its own grid: error[a, b] = clipping below a + clipping above b + rounding."""
        centers, counts = self.centers(), self.counts.astype(np.float64)
        used = counts > 0
        centers, counts = centers[used], counts[used]
        ratios = np.linspace(0.02, 1.0, 50)
        lows, highs = min(self.min, 0.0) * ratios, max(self.max, 0.0) * ratios
        below = centers[None, :] < lows[:, None]
        above = centers[None, :] > highs[:, None]
        low_error = np.sum(below * counts * (centers - lows[:, None]) ** 2, axis=1)
        high_error = np.sum(above * counts * (centers - highs[:, None]) ** 2, axis=1)
        inside = counts.sum() - (below @ counts)[:, None] - (above @ counts)[None, :]
        step = (highs[None, :] - lows[:, None]) / (levels - 1)
        error = low_error[:, None] + high_error[None, :] + inside * step * step / 12.0
        a, b = np.unravel_index(np.argmin(error), error.shape)
        return float(lows[a]), float(highs[b])

    def _entropy_range(self, levels: int) -> tuple[float, float]:
        """KL-optimal symmetric threshold on the histogram of |x| (Migacz, TensorRT 2017)."""
        magnitude_bins = 2048
        top = max(abs(self.min), abs(self.max))
        edges = np.linspace(0.0, top, magnitude_bins + 1)
        # A bin's center can lie beyond the largest |value| (half a bin at most): count it in the last bin,
        # or np.histogram drops it and the extreme values escape the 0.01% clipping limit.
        magnitude = np.histogram(np.minimum(np.abs(self.centers()), top), bins=edges,
                                 weights=self.counts.astype(np.float64))[0]
        # Non-negative data uses all levels for [0, t]; signed data half of them for each side.
        target = levels if self.min >= 0.0 else levels // 2
        best_t, best_kl = top, np.inf
        # KL divergence ignores how far clipped mass moves: a saturated ReLU6's spike at 6 costs
        # nothing when moved to 3. Never clip more than 0.01% of the values.
        tail = np.cumsum(magnitude[::-1])[::-1] / max(magnitude.sum(), 1.0)
        first = max(target, int(np.searchsorted(-tail, -1e-4, side="right")))
        for stop in range(first, magnitude_bins + 1, 16):
            reference = magnitude[:stop].copy()
            reference[stop - 1] += magnitude[stop:].sum()
            if reference.sum() == 0:
                continue
            starts = np.unique(np.linspace(0, stop, target + 1).astype(np.int64)[:-1])
            lengths = np.diff(np.append(starts, stop))
            present = (magnitude[:stop] > 0).astype(np.float64)
            sums = np.add.reduceat(magnitude[:stop], starts)
            nonzero = np.add.reduceat(present, starts)
            # Each quantization level spreads its mass evenly over the bins that held values.
            candidate = np.repeat(sums / np.maximum(nonzero, 1.0), lengths) * present
            kl = _kl_divergence(reference, candidate)
            if kl < best_kl:
                best_kl, best_t = kl, edges[stop]
        return -best_t, best_t


def _kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / max(q.sum(), 1e-300)
    mask = p > 0
    q_masked = np.where(q[mask] > 0, q[mask], 1e-12)
    return float(np.sum(p[mask] * np.log(p[mask] / q_masked)))
