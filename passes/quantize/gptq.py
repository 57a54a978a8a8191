"""Block-wise symmetric low-bit rounding of a weight matrix: round-to-nearest or GPTQ.

The weight is ``W [outputs, features]`` (rows are output channels, as ``passes.reconstruct.flat_weight``
gives it); each row is cut into blocks of ``block_size`` consecutive features that share one scale
(``max |w| / levels`` with ``levels = 2^(bits-1) - 1``).

GPTQ (Frantar et al. 2023, the closed form of Optimal Brain Quantization): with ``H = X^T X`` the
layer input's second moment on calibration data (plus ``damp`` x its mean diagonal), features are
quantized one at a time and the rounding error of feature ``i`` is pushed onto the not yet quantized
features through the upper Cholesky factor ``U`` of ``H^-1``: ``W[:, j] -= e U[i, j] / U[i, i]``,
which minimizes ``||X W^T - X Q^T||^2`` greedily. Updates are applied lazily in chunks of 128
features (one matrix product per chunk). A block's scale is chosen when its first feature is reached,
from the already-updated weights.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

CHUNK = 128


def block_scales(w: np.ndarray, block_size: int, levels: int) -> np.ndarray:
    """[outputs, blocks] scales of a [outputs, features] matrix."""
    blocks = -(-w.shape[1] // block_size)
    padded = np.zeros((w.shape[0], blocks * block_size))
    padded[:, : w.shape[1]] = np.abs(w)
    peak = padded.reshape(w.shape[0], blocks, block_size).max(axis=2)
    return np.where(peak > 0, peak / levels, 1.0)


def round_to_nearest(w: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(integer levels [outputs, features], scales [outputs, blocks])."""
    levels = 2 ** (bits - 1) - 1
    scales = block_scales(w, block_size, levels)
    expanded = np.repeat(scales, block_size, axis=1)[:, : w.shape[1]]
    return np.clip(np.round(w / expanded), -levels, levels).astype(np.int8), scales


def gptq(w: np.ndarray, hessian: np.ndarray, bits: int, block_size: int, damp: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ rounding; same outputs as ``round_to_nearest``."""
    levels = 2 ** (bits - 1) - 1
    w = w.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += np.eye(h.shape[0]) * damp * float(np.mean(np.diag(h)))
    try:
        upper = scipy.linalg.cholesky(scipy.linalg.cho_solve(scipy.linalg.cho_factor(h), np.eye(h.shape[0])), lower=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return round_to_nearest(w, bits, block_size)
    features = w.shape[1]
    q = np.zeros(w.shape, dtype=np.int8)
    scales = np.zeros((w.shape[0], -(-features // block_size)))
    for start in range(0, features, CHUNK):
        stop = min(start + CHUNK, features)
        chunk = w[:, start:stop].copy()
        errors = np.zeros_like(chunk)
        for i in range(stop - start):
            column = start + i
            if column % block_size == 0:
                block = np.concatenate([chunk[:, i:], w[:, stop:]], axis=1)[:, :block_size]
                peak = np.abs(block).max(axis=1)
                scales[:, column // block_size] = np.where(peak > 0, peak / levels, 1.0)
            scale = scales[:, column // block_size]
            levels_i = np.clip(np.round(chunk[:, i] / scale), -levels, levels)
            q[:, column] = levels_i
            error = (chunk[:, i] - levels_i * scale) / upper[column, column]
            chunk[:, i + 1 :] -= np.outer(error, upper[column, column + 1 : stop])
            errors[:, i] = error
        w[:, stop:] -= errors @ upper[start:stop, stop:]
    return q, scales


def dequantized(q: np.ndarray, scales: np.ndarray, block_size: int) -> np.ndarray:
    return q * np.repeat(scales, block_size, axis=1)[:, : q.shape[1]]
