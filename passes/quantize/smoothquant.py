"""smoothquant: migrate activation outliers into the weights (Xiao et al. 2023), lossless in float.

Rules:
- A *site* is a float value ``X`` (main graph) read as input 0 by at least one MatMul with a constant
  2-D weight ``W[in, out]`` or Gemm (``transA=0``) with a constant weight; all such readers share one
  scale vector, so the q/k/v projections of one LayerNorm output are smoothed together.
- Per input channel ``j``: ``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` with ``max|X_j|`` over
  ``samples`` calibration feeds (the last axis of ``X``) and ``max|W_j|`` over row ``j`` of every
  reader's weight; ``s_j = 1`` where either is 0. Every reader's weight row ``j`` is multiplied by
  ``s_j`` (a fresh initializer) and ``X`` is divided by ``s``:
  - folded into ``X``'s producer when every reader of ``X`` is a smoothed layer and ``X`` is not a
    graph output: LayerNormalization over the last axis (gamma and beta / s); Mul by a constant
    (the constant / s, broadcast over the last axis); Add of a constant bias whose other operand is
    a MatMul/Gemm with a constant weight read only there (weight columns and bias / s);
    MatMul/Gemm with a constant weight (output columns / s, and a Gemm's bias);
  - otherwise a ``Mul(X, 1/s)`` is inserted in front of the smoothed layers only.
- Scales come from the float model, so the model computes the same function (up to float rounding);
  the point is that afterwards both activations and weights have tamer ranges for int8.
- Without calibration data, the ranges come from generated random inputs, and the pass says so.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from ir import activations
from ir.constants import constant_array
from passes.base import Pass, PassResult, register
from passes.quantize import qdq

MIN_SCALE = 1e-5


@dataclasses.dataclass(frozen=True)
class SmoothQuantOptions:
    alpha: float = dataclasses.field(default=0.5, metadata={
        "check": lambda v: 0.0 <= v <= 1.0, "rule": "in [0, 1]", "doc": "migration strength: 0 = none, 1 = all onto the weights"})
    samples: int = dataclasses.field(default=16, metadata={"check": lambda v: v >= 1, "rule": ">= 1", "doc": "calibration feeds for the activation ranges"})


def _weight_rows(node: ir.Node) -> np.ndarray | None:
    """The layer's weight as ``[in, out]`` (row j multiplies input channel j), None if not smoothable."""
    if len(node.inputs) < 2 or node.inputs[0] is None:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.dtype != np.float32 or weight.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return weight
    if node.op_type == "Gemm" and not node.attributes.get_int("transA", 0):
        return weight.T if node.attributes.get_int("transB", 0) else weight
    return None


def find_sites(graph: ir.Graph) -> dict[ir.Value, list[ir.Node]]:
    sites: dict[ir.Value, list[ir.Node]] = {}
    for node in graph:
        if node.op_type in ("MatMul", "Gemm") and _weight_rows(node) is not None and node.inputs[0] is not node.inputs[1]:
            sites.setdefault(node.inputs[0], []).append(node)
    # A constant X (both operands constant) is fold-constants' business, not an activation.
    return {x: layers for x, layers in sites.items() if x.dtype in (None, ir.DataType.FLOAT) and constant_array(x) is None}


@register
class SmoothQuantPass(Pass):
    name = "smoothquant"
    Options = SmoothQuantOptions
    lossless = True

    def call(self, model: ir.Model) -> PassResult:
        sites = find_sites(model.graph)
        if not sites:
            return PassResult(model, modified=False)
        peaks = self._activation_peaks(model, list(sites))
        writer = qdq.GraphWriter(model.graph, self.name)
        alpha = self.options.alpha
        for x, layers in sites.items():
            w_peak = np.max([np.abs(_weight_rows(n)).max(axis=1) for n in layers], axis=0).astype(np.float64)
            x_peak = peaks[x.name].astype(np.float64)
            if x_peak.shape != w_peak.shape:  # X's last axis is not the features (e.g. a broadcast 1-wide input)
                self.note(f"{x.name}: not smoothed: activation channels {x_peak.shape} do not match weight rows {w_peak.shape}")
                continue
            ok = (x_peak > 0) & (w_peak > 0)
            s = np.where(ok, x_peak**alpha / np.where(ok, w_peak, 1.0) ** (1.0 - alpha), 1.0)
            s = np.maximum(s, MIN_SCALE)
            for node in layers:
                self._scale_rows(writer, node, s)
            how = self._fold_into_producer(writer, x, layers, s)
            if how is None:
                inverse = writer.constant(f"{x.name}_smooth_scale", (1.0 / s).astype(np.float32))
                smoothed = writer.node("Mul", [x, inverse], x.name or "x", ir.DataType.FLOAT, x.shape)
                for node in layers:
                    node.replace_input_with(0, smoothed)
                how = "Mul inserted"
            self.stats[f"sites smoothed ({how})"] += 1
            self.stats["layers smoothed"] += len(layers)
            self.note(f"{x.name}: activation range spread {_spread(x_peak):.1f} -> {_spread(x_peak / s):.1f} ({how})")
        qdq.drop_unused_constants(model.graph)
        model.graph.sort()
        return PassResult(model, modified=any(self.stats.values()))

    def _activation_peaks(self, model: ir.Model, values: list[ir.Value]) -> dict[str, np.ndarray]:
        feeds = self.calibration_feeds(
            model, self.options.samples, warning="activation ranges from generated random inputs: pass real calibration data (--calib)"
        )
        peaks: dict[str, np.ndarray] = {}
        names = [v.name for v in values]
        for arrays in activations.capture(model, names, feeds):
            for name in names:
                a = np.abs(arrays[name].reshape(-1, arrays[name].shape[-1])).max(axis=0)
                peaks[name] = a if name not in peaks else np.maximum(peaks[name], a)
        return peaks

    @staticmethod
    def _scale_rows(writer: qdq.GraphWriter, node: ir.Node, s: np.ndarray) -> None:
        weight = constant_array(node.inputs[1])
        transposed = node.op_type == "Gemm" and node.attributes.get_int("transB", 0)
        scaled = weight * (s[None, :] if transposed else s[:, None])
        node.replace_input_with(1, writer.constant(f"{node.inputs[1].name or node.name}_smoothed", scaled.astype(np.float32)))

    def _fold_into_producer(self, writer: qdq.GraphWriter, x: ir.Value, layers: list[ir.Node], s: np.ndarray) -> str | None:
        """Divide ``x`` by ``s`` inside its producer; the fold's name, or None when it cannot be done exactly."""
        producer = x.producer()
        if producer is None or x.is_graph_output() or {n for n, _ in x.uses()} != set(layers) or producer.graph is not x.graph:
            return None
        op = producer.op_type
        if op == "LayerNormalization":
            rank = len(x.shape) if x.shape is not None else None
            axis = producer.attributes.get_int("axis", -1)
            if not (axis == -1 or (rank is not None and axis == rank - 1)):
                return None
            for index in (1, 2):
                if not _divide_constant_input(writer, producer, index, s, required=index == 1):
                    return None
            return "folded into LayerNormalization"
        if op == "Mul":
            for index in (1, 0):
                value = producer.inputs[index]
                array = constant_array(value)
                if array is not None and array.ndim <= 1 and array.size in (1, s.size):
                    producer.replace_input_with(index, writer.constant(f"{value.name}_smoothed", (array / s).astype(np.float32)))
                    return "folded into Mul"
            return None
        if op == "Add":
            for index in (1, 0):
                bias, other = producer.inputs[index], producer.inputs[1 - index]
                array = constant_array(bias)
                linear = other.producer() if other is not None else None
                if (array is None or array.ndim > 1 or array.size not in (1, s.size) or linear is None
                        or len(other.uses()) != 1 or other.is_graph_output() or not _divides_output_columns(linear, s.size)):
                    continue
                _divide_output_columns(writer, linear, s)
                producer.replace_input_with(index, writer.constant(f"{bias.name}_smoothed", (array / s).astype(np.float32)))
                return "folded into MatMul+Add"
            return None
        if op in ("MatMul", "Gemm") and _divides_output_columns(producer, s.size):
            _divide_output_columns(writer, producer, s)
            return f"folded into {op}"
        return None


def _divide_constant_input(writer: qdq.GraphWriter, node: ir.Node, index: int, s: np.ndarray, *, required: bool) -> bool:
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        return not required
    array = constant_array(value)
    if array is None or array.ndim > 1 or array.size not in (1, s.size):
        return False
    node.replace_input_with(index, writer.constant(f"{value.name}_smoothed", (array / s).astype(np.float32)))
    return True


def _divides_output_columns(node: ir.Node, size: int) -> bool:
    if node.op_type not in ("MatMul", "Gemm") or _weight_rows(node) is None or _weight_rows(node).shape[1] != size:
        return False
    if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = constant_array(node.inputs[2])
        return bias is not None and bias.size in (1, size) and bias.ndim <= 1
    return True


def _divide_output_columns(writer: qdq.GraphWriter, node: ir.Node, s: np.ndarray) -> None:
    weight = constant_array(node.inputs[1])
    transposed = node.op_type == "Gemm" and node.attributes.get_int("transB", 0)
    scaled = weight / (s[:, None] if transposed else s[None, :])
    node.replace_input_with(1, writer.constant(f"{node.inputs[1].name}_smoothed", scaled.astype(np.float32)))
    if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = constant_array(node.inputs[2])
        node.replace_input_with(2, writer.constant(f"{node.inputs[2].name}_smoothed", (bias / s).astype(np.float32)))


def _spread(peaks: np.ndarray) -> float:
    positive = peaks[peaks > 0]
    return float(positive.max() / positive.min()) if positive.size else 1.0
