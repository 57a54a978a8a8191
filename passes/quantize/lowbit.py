"""Binary and ternary weights with one scale per output channel (experimental modes of ``quantize-weights``).

Rules, for a weight flattened to ``[outputs, features]`` (row i = output channel i):
- binary (BinaryConnect/XNOR-Net style): ``w_i ~ alpha_i * sign(w_i)`` with ``alpha_i = mean |w_i|``,
  the scale that minimizes ``||w_i - alpha_i b_i||^2`` for ``b_i = sign(w_i)``; zero counts as +1.
- ternary (TWN, Li et al. 2016): threshold ``delta_i = 0.7 * mean |w_i|``; levels
  ``t = sign(w) * (|w| > delta_i)`` in {-1, 0, 1}; ``alpha_i`` = mean |w| over the kept entries (the
  least-squares scale for that support); a row with nothing above the threshold keeps scale 1, levels 0.
The levels are int8 arrays for the caller to store (``quantize-weights`` stores them as int4 behind
a standard DequantizeLinear: ONNX Runtime has no 1- or 2-bit DequantizeLinear); scales are ``[outputs, 1]``.
"""

from __future__ import annotations

import numpy as np

TWN_THRESHOLD = 0.7


def binary(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    levels = np.where(flat >= 0, 1, -1).astype(np.int8)
    scales = np.abs(flat).mean(axis=1, keepdims=True)
    return levels, np.where(scales > 0, scales, 1.0).astype(np.float32)


def ternary(flat: np.ndarray, threshold: float = TWN_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(flat)
    delta = threshold * magnitude.mean(axis=1, keepdims=True)
    kept = magnitude > delta
    levels = (np.sign(flat) * kept).astype(np.int8)
    count = kept.sum(axis=1, keepdims=True)
    scales = np.where(count > 0, (magnitude * kept).sum(axis=1, keepdims=True) / np.maximum(count, 1), 1.0)
    return levels, np.where(scales > 0, scales, 1.0).astype(np.float32)
