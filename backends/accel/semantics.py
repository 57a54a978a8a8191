"""The integer semantics of one offloaded layer, stated once, and an independent numpy reference of it.

This is the integer-only-hardware form of the arithmetic ``backends.integer_semantics`` states for every
integer backend (the same accumulation, zero-point folding, activation ranges and fixed-point multiplier
with rounding half up); TVM's int8 lowering computes that module's float-scale form, which ONNX Runtime
computes too. The two forms differ by one step on a few outputs, measured in ``docs/bench_accel.md``.

A layer is the QDQ pattern ``DQ(x) , DQ(w) [, DQ(b)] -> Conv | Gemm | MatMul [-> Relu | Clip] -> Q``.
Its integer meaning, which the accelerator, the generated C++ and ``reference_layer`` all compute:

1. Operands. Activations are 8-bit with a zero point; weights are int8, symmetric (zero point 0,
   per tensor or per output channel). A ``uint8`` tensor is carried as ``int8`` by subtracting 128
   from its values and its zero point, which changes no result (``x - zx`` is unchanged).
2. Accumulate in int32: ``acc[m, n] = bias[n] + sum_k (x[m, k] - zx) * w[n, k]`` where ``x`` is the
   im2col matrix of the input (Conv) or the input rows (Gemm/MatMul), ``bias`` the int32 bias whose
   scale is ``sx * sw[n]`` (0 when there is none). Spatial padding reads ``zx`` (the real value 0).
   The hardware multiplies ``x * w`` (int8 x int8) and folds ``-zx * sum_k w[n, k]`` into the bias.
3. Requantize by a fixed-point multiplier and shift per output channel (integer-only hardware):
   ``M[n] = sx * sw[n] / sy`` (float64 of the float32 scales) is written ``m0[n] * 2**-s[n]`` with
   ``2**30 <= m0 < 2**31``; then ``y = zy + ((acc * m0 + 2**(s - 1)) >> s)`` with a 64-bit product and
   an arithmetic shift (round half up).
4. Activation and saturation: ``y = clamp(y, lo, hi)``; ``lo, hi`` is the storage range (-128..127)
   narrowed by the activation: ReLU gives ``lo = max(lo, zy)``, Clip(a, b) gives ``lo = max(lo, Q(a))``,
   ``hi = min(hi, Q(b))``. This is exact: Q is monotone, so ``Q(relu(v)) = max(Q(v), zy)``.

ONNX's QLinearConv (and ONNX Runtime's fused kernels) requantize with a float scale and round half
to even instead: ``y = zy + rint(float32(acc) * float32(M))``. ``reference_layer(..., rounding=
"float")`` computes that form, so the difference between the two is measured, not assumed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


@dataclasses.dataclass
class IntLayer:
    """One offloaded layer in integer form (see the module docstring for what it computes).

    ``kind`` is ``conv`` (NCHW input, ``weight`` [N, C/group, KH, KW]) or ``rows`` (input rows
    [M, K] in row-major order, ``weight`` [N, K]). Zero points and ``lo``/``hi`` are in the carried
    int8 domain; ``x_unsigned``/``y_unsigned`` say whether the model's tensors are uint8.
    """

    name: str
    op: str
    kind: str
    weight: np.ndarray  # int8
    bias: np.ndarray  # int32 [N]
    x_zero: int
    y_zero: int
    lo: int
    hi: int
    x_scale: float
    w_scale: np.ndarray  # float32 [N]
    y_scale: float
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    x_unsigned: bool
    y_unsigned: bool
    group: int = 1
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    activation: str = ""
    input_name: str = ""
    output_name: str = ""
    nodes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return int(self.weight.shape[0])

    @property
    def k(self) -> int:
        """Reduction length of one group's GEMM."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def m(self) -> int:
        """Output rows of the GEMM: output pixels times batch (conv) or input rows (rows)."""
        if self.kind == "conv":
            return int(self.out_shape[0] * self.out_shape[2] * self.out_shape[3])
        return int(np.prod(self.in_shape[:-1]))

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n

    def multipliers(self) -> tuple[np.ndarray, np.ndarray]:
        return requant_params(self.real_multipliers())

    def real_multipliers(self) -> np.ndarray:
        return np.float64(self.x_scale) * self.w_scale.astype(np.float64) / np.float64(self.y_scale)


def requant_params(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m0 int32, s int32) per channel with real ~= m0 * 2**-s, 2**30 <= m0 < 2**31, 1 <= s <= 62."""
    real = np.asarray(real, np.float64)
    if np.any(real <= 0) or not np.all(np.isfinite(real)):
        raise ValueError("requantization multipliers must be positive and finite")
    fraction, exponent = np.frexp(real)  # real = fraction * 2**exponent, fraction in [0.5, 1)
    m0 = np.round(fraction * 2.0**31).astype(np.int64)
    carry = m0 == 2**31
    m0 = np.where(carry, m0 // 2, m0)
    exponent = exponent + carry
    shift = 31 - exponent.astype(np.int64)
    # Outside 1..62 the form cannot hold: tiny multipliers round to 0 anyway, huge ones never occur.
    too_small = shift > 62
    m0 = np.where(too_small, np.round(np.minimum(real, 1.0) * 2.0**62).astype(np.int64), m0)
    shift = np.clip(shift, 1, 62)
    return m0.astype(np.int32), shift.astype(np.int32)


def accumulate(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """int64 accumulators [N, M] (conv: M in (batch, oh, ow) order; rows: M in row order)."""
    x = x.astype(np.int64) - layer.x_zero
    w = layer.weight.astype(np.int64)
    if layer.kind == "rows":
        rows = x.reshape(-1, layer.in_shape[-1])
        return w @ rows.T + layer.bias.astype(np.int64)[:, None]
    batch, channels, height, width = layer.in_shape
    top, left, bottom, right = layer.pads
    # Padding with 0 after subtracting zx is padding the stored tensor with zx.
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    _, _, out_h, out_w = layer.out_shape
    (sh, sw), (dh, dw) = layer.strides, layer.dilations
    n_per_group, c_per_group = layer.n // layer.group, channels // layer.group
    out = np.zeros((layer.n, batch, out_h, out_w), np.int64)
    for g in range(layer.group):
        xs = padded[:, g * c_per_group:(g + 1) * c_per_group]
        ws = w[g * n_per_group:(g + 1) * n_per_group]
        for i in range(ws.shape[2]):
            for j in range(ws.shape[3]):
                window = xs[:, :, i * dh: i * dh + sh * (out_h - 1) + 1: sh, j * dw: j * dw + sw * (out_w - 1) + 1: sw]
                out[g * n_per_group:(g + 1) * n_per_group] += np.einsum("bchw,nc->nbhw", window, ws[:, :, i, j])
    return out.reshape(layer.n, -1) + layer.bias.astype(np.int64)[:, None]


def requantize(layer: IntLayer, acc: np.ndarray, rounding: str = "fixed") -> np.ndarray:
    """int8 [N, M] from int64 accumulators: ``fixed`` (integer hardware) or ``float`` (QLinearConv)."""
    if rounding == "fixed":
        m0, shift = layer.multipliers()
        m0 = m0.astype(np.int64)[:, None]
        shift = shift.astype(np.int64)[:, None]
        scaled = (acc * m0 + (np.int64(1) << (shift - 1))) >> shift
    elif rounding == "float":
        scale = ((np.float32(layer.x_scale) * layer.w_scale.astype(np.float32)) / np.float32(layer.y_scale)).astype(np.float32)
        scaled = np.rint(acc.astype(np.float32) * scale[:, None]).astype(np.int64)
    else:
        raise ValueError(f"rounding must be 'fixed' or 'float', got {rounding!r}")
    return np.clip(scaled + layer.y_zero, layer.lo, layer.hi).astype(np.int8)


def reference_layer(layer: IntLayer, x: np.ndarray, rounding: str = "fixed") -> np.ndarray:
    """The layer's int8 output (carried domain, the model's output layout) for int8 input ``x``."""
    y = requantize(layer, accumulate(layer, x), rounding)
    if layer.kind == "rows":
        return y.T.reshape(layer.out_shape)
    batch, _, out_h, out_w = layer.out_shape
    return y.reshape(layer.n, batch, out_h, out_w).transpose(1, 0, 2, 3).copy()


def to_carried(values: np.ndarray, unsigned: bool) -> np.ndarray:
    """A model tensor (uint8 or int8) in the carried int8 domain."""
    return (values.astype(np.int16) - 128).astype(np.int8) if unsigned else values.astype(np.int8)


def from_carried(values: np.ndarray, unsigned: bool) -> np.ndarray:
    """The carried int8 domain back to the model's storage type."""
    return (values.astype(np.int16) + 128).astype(np.uint8) if unsigned else values.astype(np.int8)
