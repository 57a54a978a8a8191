"""One-dimensional k-means: optimal on a fine histogram by dynamic programming, then refined on the data.

1-D k-means has an exact solution: optimal clusters are contiguous runs of the sorted values, so
``D[k][i] = min_j D[k-1][j] + cost(j, i)`` (Wang and Song, Ckmeans.1d.dp, 2011). The DP runs on a
histogram of ``bins`` equal-width bins (points weighted by their counts; all distinct values when
there are fewer), vectorized over ``j`` and ``i`` (O(k bins^2)), and Lloyd iterations on the raw
values then move each centroid to the exact mean of its cluster. Results are deterministic.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BINS = 512


def kmeans_1d(values: np.ndarray, k: int, *, bins: int = DEFAULT_BINS, refine: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(sorted centroids [<= k], index of the centroid of each value, same shape as ``values``)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    distinct = np.unique(x)
    if distinct.size <= k:
        return distinct, np.searchsorted(distinct, x).reshape(np.shape(values))
    if distinct.size <= bins:
        points, weights = distinct, np.bincount(np.searchsorted(distinct, x)).astype(np.float64)
    else:
        counts, edges = np.histogram(x, bins=bins)
        sums = np.histogram(x, bins=edges, weights=x)[0]
        used = counts > 0
        points, weights = sums[used] / counts[used], counts[used].astype(np.float64)
    centroids = _optimal_centroids(points, weights, min(k, points.size))
    for _ in range(refine):
        index = _assign(x, centroids)
        sums = np.bincount(index, weights=x, minlength=centroids.size)
        sizes = np.bincount(index, minlength=centroids.size)
        updated = np.where(sizes > 0, sums / np.maximum(sizes, 1), centroids)
        if np.allclose(updated, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.sort(updated)
    return centroids, _assign(x, centroids).reshape(np.shape(values))


def _assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(midpoints, x)


def _optimal_centroids(points: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    n = points.size
    w = np.concatenate([[0.0], np.cumsum(weights)])
    s = np.concatenate([[0.0], np.cumsum(weights * points)])
    q = np.concatenate([[0.0], np.cumsum(weights * points * points)])
    j = np.arange(n)[:, None]  # cluster covers points j .. i (inclusive)
    i = np.arange(n)[None, :]
    count = w[i + 1] - w[j]
    total = s[i + 1] - s[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = q[i + 1] - q[j] - np.where(count > 0, total * total / count, 0.0)
    cost = np.where(j <= i, np.maximum(cost, 0.0), np.inf)
    best = cost[0].copy()  # one cluster over points 0..i
    starts = np.zeros((k, n), dtype=np.int64)
    for level in range(1, k):
        # candidate: clusters over 0..j-1 (best[j-1]) plus one cluster over j..i
        previous = np.concatenate([[np.inf], best[:-1]])[:, None]
        total_cost = previous + cost
        starts[level] = np.argmin(total_cost, axis=0)
        best = total_cost[starts[level], np.arange(n)]
    centroids = []
    end = n - 1
    for level in range(k - 1, -1, -1):
        start = starts[level][end] if level else 0
        centroids.append((s[end + 1] - s[start]) / (w[end + 1] - w[start]))
        end = start - 1
        if end < 0:
            break
    return np.sort(np.array(centroids))
