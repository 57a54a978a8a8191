"""The integer arithmetic of a quantized layer, stated once, with a numpy reference.

Every backend that computes QDQ layers in integers (TVM's int8 lowering, ``backends.int8_lowering``;
an accelerator) computes exactly this, and tests compare bit for bit with the functions here.

A quantized layer is the QDQ chain ``Q(act(op(DQ(x), DQ(w)) + DQ(b)))`` with
``DQ(v) = (v - zero_point) * scale``:

- ``x``: activations, uint8 with zero point ``zx`` (or int8 with ``zx = 0``), one scale ``sx``;
- ``w``: int8 weights, symmetric (zero point 0), scale ``sw[c]`` per output channel ``c``;
- ``b``: int32 bias with scale ``sx * sw[c]`` and zero point 0 (what ``quantize`` writes);
- ``op``: Conv (any groups, strides, dilations, padding) or MatMul/Gemm; ``act``: none, Relu, or
  Clip with constant bounds;
- the output: uint8/int8 with zero point ``zy`` and scale ``sy``.

Integer computation:

1. ``acc[c] = sum(x_q * w_q) - zx * sum(w_q[c]) + b_q[c]`` in int32 (int8 x int8 or uint8 x int8
   products, accumulated in int32). Padding pads ``x_q`` with ``zx``, the quantized zero, so the
   zero-point correction ``zx * sum(w_q[c])`` is one constant per channel, folded into the bias.
2. Requantization, float scale multiply as ONNX QLinearConv specifies and ONNX Runtime's MLAS
   computes: ``M[c] = float32(float32(sx * sw[c]) / sy)``;
   ``y_q = clip(round_half_even(float32(acc) * M[c]) + zy, lo, hi)`` where ``[lo, hi]`` is the
   output type's range, narrowed by the activation: Relu raises ``lo`` to ``zy``, Clip(a, b) to
   ``[Q(a), Q(b)]`` (exact: quantization is monotonic, so it commutes with clipping).
3. A layer whose output is not quantized (a final Gemm producing logits) keeps the int32
   accumulation and dequantizes it: ``y = float32(acc) * float32(sx * sw[c])``.

Integer-only hardware replaces step 2 by a fixed-point multiplier: ``M = m * 2**-shift`` with
``2**30 <= m < 2**31``, ``y_q = clip(((acc * m + 2**(shift - 1)) >> shift) + zy, lo, hi)`` in 64-bit
integers (rounding half up); ``requantize_fixed_point`` computes it, and tests measure how often it
differs from the float rule.
"""

from __future__ import annotations

import numpy as np

RANGES = {"uint8": (0, 255), "int8": (-128, 127)}


def multiplier(scale_x: float, scale_w: np.ndarray, scale_y: float) -> np.ndarray:
    """``M[c] = float32(float32(sx * sw[c]) / sy)``, in the order ONNX Runtime computes it."""
    product = np.float32(scale_x) * np.asarray(scale_w, dtype=np.float32)
    return (product / np.float32(scale_y)).astype(np.float32)


def requantize(acc: np.ndarray, scale: np.ndarray, zero_point: int, low: int, high: int, dtype: str) -> np.ndarray:
    """``clip(round_half_even(float32(acc) * scale) + zero_point, low, high)`` as ``dtype``."""
    scaled = acc.astype(np.float32) * np.asarray(scale, dtype=np.float32)
    return np.clip(np.rint(scaled) + np.float32(zero_point), low, high).astype(dtype)


def fixed_point(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, shift) with ``scale ~= m * 2**-shift``, ``2**30 <= m < 2**31`` (integer-only hardware)."""
    mantissa, exponent = np.frexp(np.asarray(scale, dtype=np.float64))
    m = np.round(mantissa * 2.0**31).astype(np.int64)
    shift = 31 - exponent.astype(np.int64)
    overflow = m == 2**31
    return np.where(overflow, m // 2, m), np.where(overflow, shift - 1, shift)


def requantize_fixed_point(acc: np.ndarray, scale: np.ndarray, zero_point: int, low: int, high: int, dtype: str) -> np.ndarray:
    """Step 2 with a fixed-point multiplier and rounding half up, as integer-only hardware does it."""
    m, shift = fixed_point(scale)
    product = acc.astype(np.int64) * m
    rounded = (product + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(rounded + zero_point, low, high).astype(dtype)


def activation_range(dtype: str, zero_point: int, scale: float, act: str | None, bounds=(None, None)) -> tuple[int, int]:
    """The output range ``[lo, hi]`` of step 2 for activation ``act`` (None, "relu", "clip")."""
    low, high = RANGES[dtype]
    if act == "relu":
        low = max(low, zero_point)
    elif act == "clip":
        a, b = bounds
        if a is not None:
            low = max(low, int(np.rint(np.float32(a) / np.float32(scale))) + zero_point)
        if b is not None:
            high = min(high, int(np.rint(np.float32(b) / np.float32(scale))) + zero_point)
    return low, high


def conv_accumulate(
    x_q: np.ndarray, zero_x: int, w_q: np.ndarray, bias_q: np.ndarray | None, *,
    strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups: int = 1,
) -> np.ndarray:  # fmt: skip
    """Step 1 for an NCHW Conv (pads: top, left, bottom, right); int32 [N, OC, OH, OW]."""
    top, left, bottom, right = pads
    x = np.pad(x_q.astype(np.int64), ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=zero_x) - zero_x
    n, _, height, width = x.shape
    out_channels, per_group, kh, kw = w_q.shape
    dh, dw = dilations
    oh = (height - dh * (kh - 1) - 1) // strides[0] + 1
    ow = (width - dw * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n, out_channels, oh, ow), dtype=np.int64)
    per_out = out_channels // groups
    w = w_q.astype(np.int64)
    for g in range(groups):
        xg = x[:, g * per_group:(g + 1) * per_group]
        wg = w[g * per_out:(g + 1) * per_out]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh: i * dh + strides[0] * (oh - 1) + 1: strides[0],
                           j * dw: j * dw + strides[1] * (ow - 1) + 1: strides[1]]  # fmt: skip
                out[:, g * per_out:(g + 1) * per_out] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if bias_q is not None:
        out += bias_q.astype(np.int64).reshape(1, -1, 1, 1)
    return _int32(out)


def matmul_accumulate(x_q: np.ndarray, zero_x: int, w_q: np.ndarray, bias_q: np.ndarray | None) -> np.ndarray:
    """Step 1 for ``x [..., K] @ w [K, N]``; int32 [..., N]."""
    out = (x_q.astype(np.int64) - zero_x) @ w_q.astype(np.int64)
    if bias_q is not None:
        out += bias_q.astype(np.int64)
    return _int32(out)


def _int32(values: np.ndarray) -> np.ndarray:
    if values.size and (values.max() > np.iinfo(np.int32).max or values.min() < np.iinfo(np.int32).min):
        raise OverflowError("the int32 accumulator overflows")
    return values.astype(np.int32)
