"""Which layers a low-rank pass can rewrite, their geometry, and the cost of each factorized form.

``describe(node)`` returns a ``Layer`` or the reason the node is left alone (one line naming the
node). Rules:
- Conv with a constant weight, group=1, known input and output shapes: 1-D, 2-D and 3-D kernels.
  Grouped and depthwise convolutions are refused (each group already is a small dense layer; a
  depthwise filter mixes no channels, so there is no channel rank to cut).
- Gemm with a constant 2-D B, transA=0 and a bias of one value or one per output; MatMul whose second
  input is a constant 2-D weight. The weight is taken as ``[outputs, inputs]`` with alpha folded in.
- Weights must be floating point.

MACs are per inference at the model's fixed shapes, counted like ``ir.cost`` (one MAC per weight
element per output position; the 1x1 layer in front of a strided kernel runs at the input resolution).
Params include the bias, which the last layer of a chain keeps.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx_ir as ir

from ir.constants import weight_array
from ir.cost import static_dims
from passes.reconstruct import bias_of, flat_weight


@dataclasses.dataclass
class Layer:
    node: ir.Node
    kind: str  # "conv", "gemm" or "matmul"
    weight: np.ndarray  # conv: [N, C, k...]; gemm/matmul: [N, C]
    bias: np.ndarray | None  # [N]
    in_spatial: tuple[int, ...] = ()
    out_spatial: tuple[int, ...] = ()
    rows: int = 1  # gemm/matmul: rows of the input (product of its leading dims)
    batch: int = 1  # conv: the batch dimension

    @property
    def name(self) -> str:
        return self.node.name or self.node.outputs[0].name

    @property
    def outputs(self) -> int:
        return self.weight.shape[0]

    @property
    def inputs(self) -> int:
        return self.weight.shape[1]

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def kernel_size(self) -> int:
        return math.prod(self.kernel)

    @property
    def positions_in(self) -> int:
        return self.batch * math.prod(self.in_spatial) if self.kind == "conv" else self.rows

    @property
    def positions_out(self) -> int:
        return self.batch * math.prod(self.out_spatial) if self.kind == "conv" else self.rows

    @property
    def bias_params(self) -> int:
        return self.outputs if self.bias is not None else 0

    @property
    def macs(self) -> int:
        return self.outputs * self.inputs * self.kernel_size * self.positions_out

    @property
    def params(self) -> int:
        return self.weight.size + self.bias_params

    def attribute_ints(self, name: str, default: int) -> list[int]:
        attr = self.node.attributes.get(name)
        dims = len(self.kernel)
        return list(attr.value) if attr is not None else [default] * (2 * dims if name == "pads" else dims)

    @property
    def auto_pad(self) -> str:
        return self.node.attributes.get_string("auto_pad", "NOTSET")

    # -- costs of the factorized forms: (macs, params) -------------------------------------------
    def svd_cost(self, rank: int) -> tuple[int, int]:
        n, c, k = self.outputs, self.inputs, self.kernel_size
        return (c * k * rank + rank * n) * self.positions_out, c * k * rank + rank * n + self.bias_params

    def spatial_cost(self, rank: int) -> tuple[int, int]:
        n, c = self.outputs, self.inputs
        kh, kw = self.kernel
        out_h, out_w = self.out_spatial
        middle = self.batch * out_h * self.in_spatial[1]  # after the kh x 1 conv: output rows, input columns
        return c * kh * rank * middle + rank * kw * n * self.batch * out_h * out_w, c * kh * rank + rank * kw * n + self.bias_params

    def tucker_cost(self, rank_out: int, rank_in: int) -> tuple[int, int]:
        n, c, k = self.outputs, self.inputs, self.kernel_size
        macs = c * rank_in * self.positions_in + rank_in * rank_out * k * self.positions_out + rank_out * n * self.positions_out
        return macs, c * rank_in + rank_in * rank_out * k + rank_out * n + self.bias_params

    def cp_cost(self, rank: int) -> tuple[int, int]:
        n, c = self.outputs, self.inputs
        kh, kw = self.kernel
        out_h, out_w = self.out_spatial
        macs = c * rank * self.positions_in + self.batch * (rank * kh * out_h * self.in_spatial[1] + rank * (kw + n) * out_h * out_w)
        return macs, c * rank + rank * (kh + kw) + rank * n + self.bias_params

    def decouple_cost(self, rank: int) -> tuple[int, int]:
        n, c, k = self.outputs, self.inputs, self.kernel_size
        return c * rank * (k + n) * self.positions_out, c * rank * (k + n) + self.bias_params

    def decouple_pw_dw_cost(self, rank: int) -> tuple[int, int]:
        n, c, k = self.outputs, self.inputs, self.kernel_size
        return n * rank * c * self.positions_in + n * rank * k * self.positions_out, n * rank * (c + k) + self.bias_params


def describe(node: ir.Node) -> Layer | str:
    """The node as a ``Layer``, or why it is left alone."""
    label = f"{node.op_type} '{node.name or node.outputs[0].name}'"
    weight = weight_array(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None:
        return f"{label}: the weight is not a constant"
    if weight.dtype.kind != "f":
        return f"{label}: the weight is not floating point ({weight.dtype})"
    if node.op_type == "Conv":
        return _describe_conv(node, weight, label)
    if weight.ndim != 2:
        return f"{label}: the weight is not 2-D"
    if node.op_type == "Gemm" and node.attributes.get_int("transA", 0):
        return f"{label}: transA=1"
    if node.op_type == "MatMul" and weight_array(node.inputs[0]) is not None:
        return f"{label}: both inputs are constant"
    x = static_dims(node.inputs[0])
    if x is None:
        return f"{label}: the input shape is not known"
    matrix = flat_weight(node)  # [outputs, inputs]
    bias = None
    if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
        c = weight_array(node.inputs[2])
        if c is None or c.size not in (1, matrix.shape[0]):
            return f"{label}: the bias C is not a constant of one value or one per output"
        bias = bias_of(node, matrix.shape[0])
    return Layer(node, node.op_type.lower(), matrix, bias, rows=math.prod(x[:-1]))


def _describe_conv(node: ir.Node, weight: np.ndarray, label: str) -> Layer | str:
    group = node.attributes.get_int("group", 1)
    if group > 1:
        if group == weight.shape[0] and weight.shape[1] == 1:
            return f"{label}: depthwise convolution (a filter per channel mixes no channels: no channel rank to cut)"
        return f"{label}: grouped convolution (group={group}): each group is already a small dense layer"
    if weight.ndim < 3 or weight.ndim > 5:
        return f"{label}: {weight.ndim - 2}-D kernels are not handled (1-D to 3-D are)"
    x, y = static_dims(node.inputs[0]), static_dims(node.outputs[0])
    if x is None or y is None or len(x) != weight.ndim or len(y) != weight.ndim:
        return f"{label}: the input or output shape is not known"
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        if weight_array(node.inputs[2]) is None:
            return f"{label}: the bias is not a constant"
        bias = bias_of(node, weight.shape[0])
    return Layer(node, "conv", weight.astype(np.float64), bias, tuple(x[2:]), tuple(y[2:]), batch=x[0])
