"""The intent of ``decompose`` and ``separable``: the original with each factored layer's weight
replaced by the single kernel its chain of factors computes.

A chain whose only bias is on its last layer is one linear map of the layer's input, so the
original node with the *composed* kernel (and the last layer's bias) computes, by the pass's own
definition, what the chain computes. The compositions are written here in numpy (float64, from the
factors cast to the model's weight type, as the rewrite writes them), one ``einsum`` per method,
independently of ``factorize`` (whose ``approximation`` is what chose the ranks):

- ``svd``: ``A [r, C, k...]`` (the kernel) then ``B [N, r, 1...]``: ``W = B A``; Gemm/MatMul
  ``[N, r] @ [r, C]``;
- ``spatial-svd``: ``V [r, C, kh, 1]`` then ``H [N, r, 1, kw]``: ``W[n,c,i,j] = sum_r H[n,r,j] V[r,c,i]``;
- ``tucker``: ``U_in [r_in, C, 1...]``, ``core [r_out, r_in, k...]``, ``U_out [N, r_out, 1...]``:
  ``W = U_out core U_in``;
- ``cp``: ``B [R, C, 1, 1]``, depthwise ``Kh [R, 1, kh, 1]``, depthwise ``Kw [R, 1, 1, kw]``,
  ``A [N, R, 1, 1]``: ``W[n,c,i,j] = sum_r A[n,r] B[r,c] Kh[r,i] Kw[r,j]``;
- ``separable dw-pw``: depthwise ``D [C*R, 1, k...]`` (group C: output ``c*R + m`` reads input
  ``c``) then ``P [N, C*R, 1...]``: ``W[n,c] = sum_m P[n, c*R+m] D[c*R+m]``;
- ``separable pw-dw``: ``P [N*R, C, 1...]`` then grouped ``G [N, R, k...]`` (group N: output ``n``
  reads ``n*R ... n*R+R-1``): ``W[n,c] = sum_m G[n,m] P[n*R+m, c]``.

Why the split per axis is exact with pads, strides and dilations (spatial-svd, cp): the ``kh x 1``
layer pads only the height (with the original top/bottom pads, stride and dilation) and the
``1 x kw`` layer only the width. At a padded column the vertical layer's output is 0 (it has no bias
and reads a zero column), which is what the horizontal layer's own zero padding supplies; so the two
give ``sum_i sum_j Kh[i] Kw[j] x_pad[y*sh + i*dh, x*sw + j*dw]``, one ``kh x kw`` conv with the
original pads. 1x1 layers before or after a kernel commute with zero padding for the same reason (no
bias before the last layer). ``auto_pad`` is refused for the per-axis split (``candidates.applicable``)
and kept on the kernel layer otherwise, where the spatial size it sees is the layer's input size.
So every chain the pass writes composes exactly; no layer is left out of the intent.

Refit layers: the refit rewrites a chain's last layer (weight and bias); the intent composes with
the weight and bias the refit wrote (read from that node at the end of ``call``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ir.constants import weight_array
from ir.errors import InvalidModelError
from passes.intent import set_constant


@dataclasses.dataclass
class Chain:
    """One factored layer: its method, its factors as ``[outputs, inputs, k...]`` (Gemm/MatMul:
    ``[outputs, inputs]``) in chain order, and the last layer's bias ``[N]`` (or None)."""

    method: str
    factors: list[np.ndarray]
    bias: np.ndarray | None


def compose(method: str, factors: list[np.ndarray], inputs: int) -> np.ndarray:
    """The one kernel ``[N, C, k...]`` (Gemm/MatMul: ``[N, C]``) the chain of ``factors`` computes;
    ``inputs`` is C, the original layer's input channels."""
    f = [np.asarray(x, np.float64) for x in factors]
    if method == "svd":
        first, second = f
        return np.einsum("nr,rc...->nc...", second.reshape(second.shape[:2]), first)
    if method == "spatial-svd":
        vertical, horizontal = f
        return np.einsum("nrj,rci->ncij", horizontal[:, :, 0, :], vertical[..., 0])
    if method == "tucker":
        first, core, last = f
        return np.einsum("nr,rs...,sc->nc...", last.reshape(last.shape[:2]), core, first.reshape(first.shape[:2]))
    if method == "cp":
        first, vertical, horizontal, last = f
        return np.einsum("nr,rc,ri,rj->ncij", last[:, :, 0, 0], first[:, :, 0, 0], vertical[:, 0, :, 0], horizontal[:, 0, 0, :])
    if method == "separable dw-pw":
        depthwise, pointwise = f
        n, kernel = pointwise.shape[0], depthwise.shape[2:]
        multiplier = depthwise.shape[0] // inputs
        d = depthwise.reshape((inputs, multiplier, *kernel))  # output c*R + m of the depthwise conv
        return np.einsum("ncm,cm...->nc...", pointwise.reshape(n, inputs, multiplier), d)
    if method == "separable pw-dw":
        pointwise, grouped = f
        n, multiplier = grouped.shape[:2]
        return np.einsum("nm...,nmc->nc...", grouped, pointwise.reshape(n, multiplier, inputs))
    raise InvalidModelError(f"intent: no composition for method '{method}'")


def build(original: ir.Model, chains: dict[int, Chain]) -> ir.Model:
    """``original`` with the node at each position given its chain's composed weight and bias."""
    nodes = list(original.graph)
    for position, chain in chains.items():
        node = nodes[position]
        old = weight_array(node.inputs[1])
        dtype = old.dtype
        composed = compose(chain.method, [x.astype(dtype) for x in chain.factors], inputs=_inputs(node, old))
        if node.op_type == "Conv":
            weight = composed
        elif node.op_type == "Gemm":  # the chain folds alpha and beta in: the intent states them as 1
            node.attributes["transB"] = ir.AttrInt64("transB", 1)
            node.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
            node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
            weight = composed
        else:  # MatMul: x @ B, B is [inputs, outputs]
            weight = composed.T
        set_constant(node, 1, weight.astype(dtype))
        if chain.bias is not None and node.op_type != "MatMul":
            set_constant(node, 2, chain.bias.astype(dtype))
    return original


def _inputs(node: ir.Node, weight: np.ndarray) -> int:
    if node.op_type == "Conv":
        return weight.shape[1]
    if node.op_type == "Gemm" and not node.attributes.get_int("transB", 0):
        return weight.shape[0]
    return weight.shape[1] if node.op_type == "Gemm" else weight.shape[0]
