"""equalize: cross-layer equalization (Nagel et al. 2019, data-free quantization), lossless in float.

Rules:
- A pair is ``Conv1 -> act -> Conv2`` in the main graph where ``act`` is Relu, Clip with a constant
  lower bound 0 and no upper bound, or nothing; both weights are constant float; Conv1's output (and
  the activation's) is read only by the next node of the pair and is not a graph output; Conv2 is
  a plain convolution (group 1) or depthwise (group = channels, one filter per channel), so input
  channel ``i`` of Conv2 reads exactly output channel ``i`` of Conv1. Depthwise convolutions take
  part on both sides, so ``1x1 -> dw -> 1x1`` (MobileNetV2) is two chained pairs.
- For each pair, with ``r1_i = max |W1[i]|`` (output channel i of Conv1) and ``r2_i = max |W2[:, i]|``
  (input channel i of Conv2), ``s_i = sqrt(r1_i r2_i) / r2_i``; Conv1's output channel i (weights and
  bias) is divided by ``s_i`` and Conv2's input channel i multiplied by ``s_i``, after which both
  ranges equal ``sqrt(r1_i r2_i)``. A positive scale commutes with ReLU and ``max(x, 0)``, so outputs
  are unchanged up to float rounding. Channels with a zero range keep ``s_i = 1``.
- Clip with lower bound 0 and a finite upper bound ``c`` (ReLU6) does not commute with a per-channel
  scale. ``relu6=skip`` (default) leaves the pair alone and notes it; ``relu6=min`` equalizes it and
  rewrites the Clip as ``Min(Relu(x), c / s)`` with a per-channel bound, which is exact (DFQ instead
  replaces ReLU6 by ReLU, which changes the model); the price is one extra node that runtimes do not
  fuse into the convolution as they fuse Clip.
- Chained pairs influence each other, so all pairs are equalized repeatedly, up to ``iterations``
  rounds or until every scale is within ``1e-3`` of 1.
- New weights are fresh initializers, so a weight shared with another node is never changed under it.
- Stats: pairs equalized, rounds; the note gives the mean per-tensor int8 weight SQNR before and after.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import onnx_ir as ir

from ir.constants import constant_array
from passes.base import Pass, PassResult, register
from passes.quantize import qdq


@dataclasses.dataclass(frozen=True)
class EqualizeOptions:
    iterations: int = dataclasses.field(default=20, metadata={
        "check": lambda v: v >= 1, "rule": ">= 1", "doc": "rounds over all pairs (chained pairs need several)"})
    relu6: Literal["skip", "min"] = dataclasses.field(default="skip", metadata={
        "doc": "Clip(0, c) between the pair: skip it, or equalize and rewrite it as Min(Relu(x), c/s)"})


@dataclasses.dataclass
class Pair:
    first: ir.Node
    second: ir.Node
    depthwise: bool  # the second conv is depthwise: input channel i is its filter i
    clip: ir.Node | None = None  # a Clip(0, c) between them, rewritten with per-channel bounds
    high: float = 0.0


def _single_reader(value: ir.Value) -> ir.Node | None:
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0][0]


def _float_weight(node: ir.Node) -> np.ndarray | None:
    if node.op_type != "Conv" or len(node.inputs) < 2:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.dtype != np.float32 or weight.ndim < 3:
        return None
    if len(node.inputs) > 2 and node.inputs[2] is not None and constant_array(node.inputs[2]) is None:
        return None
    return weight


def _commutes(node: ir.Node) -> str | None:
    """None when a positive per-channel scale passes through ``node``, else why not."""
    if node.op_type == "Relu":
        return None
    if node.op_type == "Clip" and "min" in node.attributes:  # opset < 11: bounds are attributes
        if node.attributes.get_float("min") != 0.0:
            return "Clip whose lower bound is not 0"
        return "Clip with an upper bound (ReLU6) does not commute with a channel scale" if np.isfinite(node.attributes.get_float("max", np.inf)) else None
    if node.op_type == "Clip":
        if len(node.inputs) < 2 or node.inputs[1] is None:
            return "Clip without a lower bound"
        low = constant_array(node.inputs[1])
        if low is None or low.size != 1 or float(low.reshape(-1)[0]) != 0.0:  # exporters write [1]-shaped bounds too
            return "Clip whose lower bound is not a constant 0"
        high = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if len(node.inputs) > 2 and node.inputs[2] is not None and (high is None or np.isfinite(high).all()):
            return "Clip with an upper bound (ReLU6) does not commute with a channel scale"
        return None
    return f"{node.op_type} between the convolutions"


def _upper_bound(node: ir.Node) -> float | None:
    """The finite upper bound c of a Clip(x, 0, c), else None."""
    if node.op_type != "Clip":
        return None
    if "max" in node.attributes:
        low, high = node.attributes.get_float("min", -np.inf), node.attributes.get_float("max")
    else:
        bounds = [constant_array(v) if v is not None else None for v in (list(node.inputs) + [None, None])[1:3]]
        if any(b is None or b.size != 1 for b in bounds):
            return None
        low, high = (float(b.reshape(-1)[0]) for b in bounds)
    return high if low == 0.0 and np.isfinite(high) and high > 0 else None


def find_pairs(graph: ir.Graph, note, relu6: str = "skip") -> list[Pair]:
    pairs = []
    for first in graph:
        w1 = _float_weight(first)
        if w1 is None:
            continue
        between = _single_reader(first.outputs[0])
        if between is None:
            continue
        second, link = between, first.outputs[0]  # link: the value the second conv reads
        clip, high = None, 0.0
        if between.op_type != "Conv":
            reason = _commutes(between)
            if reason is not None and relu6 == "min" and _upper_bound(between) is not None:
                clip, high, reason = between, _upper_bound(between), None
            if reason is not None:
                if between.op_type == "Clip":
                    note(f"{first.name}: not equalized: {reason}" + (" (relu6=min rewrites it exactly)" if "ReLU6" in reason else ""))
                continue
            second, link = _single_reader(between.outputs[0]), between.outputs[0]
            if second is None or second.op_type != "Conv":
                continue
        w2 = _float_weight(second)
        if w2 is None or second.inputs[0] is not link:
            continue
        group = second.attributes.get_int("group", 1)
        channels = w1.shape[0]
        if group == 1 and w2.shape[1] == channels:
            pairs.append(Pair(first, second, depthwise=False, clip=clip, high=high))
        elif group == channels and w2.shape[0] == channels and w2.shape[1] == 1:
            pairs.append(Pair(first, second, depthwise=True, clip=clip, high=high))
    return pairs


def channel_scales(w1: np.ndarray, w2: np.ndarray, depthwise: bool) -> np.ndarray:
    r1 = np.abs(w1.reshape(w1.shape[0], -1)).max(axis=1).astype(np.float64)
    r2 = (np.abs(w2.reshape(w2.shape[0], -1)).max(axis=1) if depthwise
          else np.abs(np.moveaxis(w2, 1, 0).reshape(w2.shape[1], -1)).max(axis=1)).astype(np.float64)
    ok = (r1 > 0) & (r2 > 0)
    return np.where(ok, np.sqrt(r1 * r2) / np.where(ok, r2, 1.0), 1.0)


def per_tensor_sqnr(weight: np.ndarray, axis: int = 0) -> float:
    """Mean over the channels along ``axis`` of each channel's SQNR (dB) under one symmetric per-tensor
    int8 scale: small channels drowned by the largest one are what equalization rescues."""
    q, scale = qdq.symmetric_weight(weight, None)
    w = np.moveaxis(weight.astype(np.float64), axis, 0).reshape(weight.shape[axis], -1)
    noise = np.sum((w - np.moveaxis(q, axis, 0).reshape(w.shape) * np.float64(scale)) ** 2, axis=1)
    signal = np.sum(w**2, axis=1)
    keep = signal > 0
    return float(np.mean(10 * np.log10(signal[keep] / np.maximum(noise[keep], 1e-30))))


@register
class EqualizePass(Pass):
    name = "equalize"
    Options = EqualizeOptions
    lossless = True

    def call(self, model: ir.Model) -> PassResult:
        pairs = find_pairs(model.graph, self.note, self.options.relu6)
        if not pairs:
            return PassResult(model, modified=False)
        weights: dict[ir.Node, np.ndarray] = {}
        biases: dict[ir.Node, np.ndarray] = {}
        for pair in pairs:
            for node in (pair.first, pair.second):
                if node not in weights:
                    weights[node] = constant_array(node.inputs[1]).astype(np.float64)
                    if len(node.inputs) > 2 and node.inputs[2] is not None:
                        biases[node] = constant_array(node.inputs[2]).astype(np.float64)
        before = np.mean([per_tensor_sqnr(w) for w in weights.values()])
        rounds = 0
        total = {id(pair): 1.0 for pair in pairs}  # the product of a pair's scales over the rounds
        for rounds in range(1, self.options.iterations + 1):
            largest = 0.0
            for pair in pairs:
                w1, w2 = weights[pair.first], weights[pair.second]
                s = channel_scales(w1, w2, pair.depthwise)
                largest = max(largest, float(np.abs(np.log(s)).max()))
                total[id(pair)] = total[id(pair)] * s
                shape1 = (-1,) + (1,) * (w1.ndim - 1)
                weights[pair.first] = w1 / s.reshape(shape1)
                if pair.first in biases:
                    biases[pair.first] = biases[pair.first] / s
                shape2 = shape1 if pair.depthwise else (1, -1) + (1,) * (w2.ndim - 2)
                weights[pair.second] = w2 * s.reshape(shape2)
            if largest < 1e-3:
                break
        writer = qdq.GraphWriter(model.graph, self.name)
        for node, weight in weights.items():
            base = node.inputs[1].name or f"{node.name}_weight"
            node.replace_input_with(1, writer.constant(f"{base}_equalized", weight.astype(np.float32)))
            if node in biases:
                node.replace_input_with(2, writer.constant(f"{node.inputs[2].name or node.name}_equalized",
                                                           biases[node].astype(np.float32)))
        for pair in pairs:
            if pair.clip is not None:
                self._clip_to_min(writer, pair, total[id(pair)], weights[pair.first].ndim)
        qdq.drop_unused_constants(model.graph)
        model.graph.sort()
        after = np.mean([per_tensor_sqnr(constant_array(n.inputs[1])) for n in weights])
        self.stats["pairs equalized"] += len(pairs)
        self.stats["rounds"] = rounds
        self.note(f"mean per-channel SQNR of per-tensor int8 weights of the {len(weights)} equalized layers: {before:.1f} dB -> {after:.1f} dB")
        return PassResult(model, modified=True)

    def _clip_to_min(self, writer: qdq.GraphWriter, pair: Pair, scales: np.ndarray, rank: int) -> None:
        """Clip(x, 0, c) on channels divided by s == Min(Relu(x), c / s), with a per-channel bound."""
        clip = pair.clip
        x, out = clip.inputs[0], clip.outputs[0]
        bound = (pair.high / np.asarray(scales, np.float64)).reshape((-1,) + (1,) * (rank - 2))
        bound = writer.constant(f"{clip.name or out.name}_bound", bound.astype(np.float32))
        relu = writer.node("Relu", [x], clip.name or out.name, ir.DataType.FLOAT, x.shape)
        result = writer.node("Min", [relu, bound], clip.name or out.name, ir.DataType.FLOAT, out.shape)
        out.replace_all_uses_with(result)
        writer.graph.remove(clip, safe=True)
        self.stats["ReLU6 rewritten as Min(Relu, per-channel bound)"] += 1
