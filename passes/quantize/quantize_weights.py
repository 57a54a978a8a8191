"""quantize-weights: int4 / int2 block-wise weight-only quantization, optionally with GPTQ rounding.

Rules:
- Weights of Conv, Gemm and MatMul (constant float; MatMul and Gemm 2-D) become int4 tensors with one
  float scale per ``block_size`` consecutive input features of each output channel, decoded by a
  standard ``DequantizeLinear`` with ``axis`` and ``block_size`` (opset 21; the model is converted
  when its opset is lower). Conv weights are stored as ``[outputs, C kh kw]`` and reshaped back.
  Activations stay float: the model computes in float on dequantized weights (the gain is size).
- ``bits=2`` keeps the levels -1, 0, 1 (ternary weights with block scales), stored in int4 (ONNX
  Runtime has no int2 DequantizeLinear); experimental. ``bits=2,twn=true``: TWN ternary weights
  instead (threshold 0.7 mean|w|, one scale per output channel); ``bits=1``: binary weights
  (sign times the per-channel mean |w|); both in ``lowbit``, stored as int4 with one block per
  channel, ignoring ``block_size`` and ``rounding``; experimental.
- ``rounding=gptq`` rounds with GPTQ (``gptq``) from each layer's input second moment ``X^T X``,
  gathered on calibration data from the float model (streamed; at most 4096 rows per feed);
  grouped Conv layers fall back to round-to-nearest. ``rounding=nearest`` needs no data.
- ``format=matmulnbits``: each MatMul with a constant 2-D weight becomes one ONNX Runtime
  ``com.microsoft::MatMulNBits`` node holding the same 4-bit levels and scales (``matmulnbits``);
  Conv, Gemm and ``bits`` other than 4 keep the DequantizeLinear form and the pass notes which and
  why; the opset is raised to 21 only when some layer keeps that form. ``format=dequantize``
  (default) is standard ONNX only.
- The output error on calibration data is noted.
- Intent (``passes.intent``): the original (at the raised opset) with each weight replaced by its
  levels times their block scales, computed in numpy, whatever storage (DequantizeLinear + Reshape,
  MatMulNBits) the layer got.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import onnx_ir as ir

from ir import activations, fidelity, io
from ir.constants import constant_array
from ir.errors import InvalidModelError, UsageError
from passes.base import Pass, PassResult, layer_costs, layer_row, register
from passes.prune.reconstruct import flat_weight, layer_rows
from passes.quantize import gptq, lowbit, matmulnbits, qdq

MAX_ROWS = 4096


@dataclasses.dataclass(frozen=True)
class WeightOnlyOptions:
    bits: Literal[4, 2, 1] = dataclasses.field(default=4, metadata={"doc": "weight bits (2 = ternary, 1 = binary; experimental)"})
    block_size: int = dataclasses.field(default=32, metadata={
        "check": lambda v: v >= 16 and v & (v - 1) == 0, "rule": "a power of two >= 16", "doc": "input features per scale"})
    rounding: Literal["nearest", "gptq"] = dataclasses.field(default="gptq", metadata={"doc": "round to nearest or GPTQ"})
    samples: int = dataclasses.field(default=16, metadata={"check": lambda v: v >= 1, "rule": ">= 1", "doc": "calibration feeds for GPTQ"})
    damp: float = dataclasses.field(default=0.01, metadata={"check": lambda v: 0 < v < 1, "rule": "in (0, 1)", "doc": "GPTQ dampening"})
    twn: bool = dataclasses.field(default=False, metadata={"doc": "bits=2 only: TWN ternary with per-channel scales"})
    format: Literal["dequantize", "matmulnbits"] = dataclasses.field(default="dequantize", metadata={
        "doc": "DequantizeLinear (standard ONNX) or ONNX Runtime's MatMulNBits for MatMul"})

    def __post_init__(self):
        if self.twn and self.bits != 2:
            raise UsageError(f"pass 'quantize-weights': option 'twn' needs bits=2, got bits={self.bits}")

    @property
    def per_channel_levels(self) -> bool:
        return self.bits == 1 or self.twn


def _layers(model: ir.Model) -> list[ir.Node]:
    chosen = []
    for node in model.graph:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
            continue
        weight = constant_array(node.inputs[1])
        if weight is None or weight.dtype != np.float32:
            continue
        if node.op_type in ("Gemm", "MatMul") and weight.ndim != 2:
            continue
        if node.op_type == "Gemm" and (node.attributes.get_int("transA", 0) or node.attributes.get_float("alpha", 1.0) != 1.0):
            continue
        chosen.append(node)
    return chosen


@register
class QuantizeWeightsPass(Pass):
    name = "quantize-weights"
    Options = WeightOnlyOptions
    lossless = False

    def intent(self, original: ir.Model):
        from passes.intent import Intent, substitute_weights

        if self._raised_to:
            qdq.raise_opset(original, self._raised_to)
        return Intent(substitute_weights(original, self._intended), "original with dequantized weights (levels x block scales)")

    def call(self, model: ir.Model) -> PassResult:
        self._intended: dict[tuple[int, int], np.ndarray] = {}
        self._raised_to = None
        if not _layers(model):
            return PassResult(model, modified=False)
        before = qdq.default_opset(model)
        try:
            if any(map(self._keeps_dequantize, _layers(model))) and qdq.raise_opset(model, 21):
                self._raised_to = 21
                self.note(f"opset raised from {before} to 21: block-wise int4 DequantizeLinear")
        except InvalidModelError as exc:
            self.note(f"not quantized: {exc}")
            return PassResult(model, modified=False)
        reference = io.copy_model(model)
        layers = _layers(model)
        costs = layer_costs(model)
        opts = self.options
        action = f"int{opts.bits} weights" + ("" if opts.bits == 1 or opts.twn else f", blocks of {opts.block_size}") + (f", {opts.rounding} rounding" if opts.bits == 4 else "")
        self.layers = [layer_row(node, action, costs[node]) for node in layers]
        feeds = self._feeds(model)
        gptq_rounding = self.options.rounding == "gptq" and not self.options.per_channel_levels
        hessians = input_moments(model, layers, feeds) if gptq_rounding else {}
        writer = qdq.GraphWriter(model.graph, self.name)
        positions = {node: i for i, node in enumerate(model.graph)}
        self._position = positions
        for node in layers:
            self._quantize(writer, node, hessians.get(node))
        for name, value in list(model.graph.initializers.items()):
            if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
                del model.graph.initializers[name]
        qdq.drop_unused_constants(model.graph)
        model.graph.sort()
        self.fidelity = fidelity.measure(reference, model, feeds[:4])
        self.note("error on %d calibration feeds: %s" % (len(feeds[:4]), fidelity.describe(self.fidelity)))
        return PassResult(model, modified=True)

    def _keeps_dequantize(self, node: ir.Node) -> bool:
        opts = self.options
        return opts.format != "matmulnbits" or matmulnbits.unsupported(node, opts.bits, opts.per_channel_levels) is not None

    def _feeds(self, model: ir.Model) -> list:
        warning = "GPTQ on generated random inputs: pass real calibration data for meaningful rounding"
        return self.calibration_feeds(model, self.options.samples, warning=warning if self.options.rounding == "gptq" else None)

    def _quantize(self, writer: qdq.GraphWriter, node: ir.Node, hessian: np.ndarray | None) -> None:
        opts = self.options
        weight = constant_array(node.inputs[1])
        flat = flat_weight(node)  # [outputs, features]
        block_size = opts.block_size
        if opts.per_channel_levels:  # one block spanning the row: a scale per output channel
            q, scales = lowbit.binary(flat) if opts.bits == 1 else lowbit.ternary(flat)
            block_size = flat.shape[1]
            self.stats["layers binarized" if opts.bits == 1 else "layers ternarized (TWN)"] += 1
            self.stats["packed bytes at 1 or 2 bits"] += -(-q.size * opts.bits // 8) + scales.size * 4
        elif hessian is not None:
            q, scales = gptq.gptq(flat, hessian, opts.bits, opts.block_size, opts.damp)
            self.stats["layers rounded with GPTQ"] += 1
        else:
            q, scales = gptq.round_to_nearest(flat, opts.bits, opts.block_size)
            self.stats["layers rounded to nearest"] += 1
        base = node.inputs[1].name or f"{node.outputs[0].name}_weight"
        self._intended[(self._position[node], 1)] = _dequantized(node, weight.shape, q, scales, block_size)
        self.stats["float bytes"] += weight.nbytes
        if opts.format == "matmulnbits":
            reason = matmulnbits.unsupported(node, opts.bits, opts.per_channel_levels)
            if reason is None:  # same levels and scales, packed for ONNX Runtime
                matmulnbits.replace(writer, node, q, scales, block_size, base)
                self.stats["layers as MatMulNBits"] += 1
                self.stats["quantized bytes"] += -(-q.shape[0] * scales.shape[1] * block_size // 2) + scales.size * 4
                return
            self.note(f"kept DequantizeLinear for {node.name or base}: {reason}")
        transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and not node.attributes.get_int("transB", 0))
        stored, scale, axis = (q.T, scales.T, 0) if transposed else (q, scales, 1)
        int4 = ir.tensor(np.ascontiguousarray(stored), dtype=ir.DataType.INT4)
        zero = ir.tensor(np.zeros(scale.shape, np.int8), dtype=ir.DataType.INT4)
        inputs = [self._tensor(writer, f"{base}_int4", int4), writer.constant(f"{base}_scale", scale.astype(np.float32)),
                  self._tensor(writer, f"{base}_zero_point", zero)]
        value = writer.node("DequantizeLinear", inputs, base, ir.DataType.FLOAT, ir.Shape(stored.shape), {"axis": axis, "block_size": block_size})
        if node.op_type == "Conv":
            shape = writer.constant(f"{base}_shape", np.array(weight.shape, np.int64))
            value = writer.node("Reshape", [value, shape], base, ir.DataType.FLOAT, ir.Shape(weight.shape))
        node.replace_input_with(1, value)
        self.stats["quantized bytes"] += -(-stored.size // 2) + scale.size * 4

    @staticmethod
    def _tensor(writer: qdq.GraphWriter, base: str, tensor) -> ir.Value:
        name = writer.fresh(base)
        tensor.name = name
        value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape), const_value=tensor)
        writer.graph.register_initializer(value)
        return value


def _dequantized(node: ir.Node, shape, q: np.ndarray, scales: np.ndarray, block_size: int) -> np.ndarray:
    """The float weight the layer means: each level times its block's scale, in the weight's own layout
    (``q`` is ``[outputs, features]``, ``scales`` ``[outputs, blocks]``)."""
    flat = q.astype(np.float32) * np.repeat(scales.astype(np.float32), block_size, axis=1)[:, : q.shape[1]]
    if node.op_type == "Conv":
        return flat.reshape(shape)
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        return flat
    return np.ascontiguousarray(flat.T)


def input_moments(model: ir.Model, layers: list[ir.Node], feeds: list) -> dict[ir.Node, np.ndarray]:
    """``X^T X`` of each (group=1) layer's input rows over the feeds, from the float model."""
    eligible = [n for n in layers if n.op_type != "Conv" or n.attributes.get_int("group", 1) == 1]
    names = list(dict.fromkeys(n.inputs[0].name for n in eligible))
    moments: dict[ir.Node, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for arrays in activations.capture(model, names, feeds):
        for node in eligible:
            rows = layer_rows(node, arrays[node.inputs[0].name]).astype(np.float64)
            if rows.shape[0] > MAX_ROWS:
                rows = rows[rng.choice(rows.shape[0], MAX_ROWS, replace=False)]
            moments[node] = moments.get(node, 0.0) + rows.T @ rows
    return moments
