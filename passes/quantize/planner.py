"""Static int8 QDQ quantization, step by step: choose layers, calibrate, build the QDQ graph.

Rules:
- A *layer* is a node whose op type is in ``ops`` and that can be quantized: Conv/ConvTranspose with a
  constant float weight, Gemm with a constant 2-D B (transA=0, alpha=1), MatMul with float inputs
  (constant 2-D weight or two activations), Add/Mul on a 4-D feature map (a constant operand becomes
  uint8 per tensor; on 3-D sequences they stay float: transformer residuals and decomposed LayerNorm
  feed normalizations that amplify the rounding), or any other listed op (Concat, pooling, ...) whose
  inputs are all float activations. Every other node stays float; ``float_reasons`` says why.
- A layer's float activation inputs are quantized, and so is its output, because ONNX Runtime fuses
  ``DQ -> op -> Q`` into an integer kernel (QLinearConv, QLinearAdd, QLinearMul, ...) only when
  the output is quantized too. MatMul/Gemm are the exception: ORT runs them in integers with a float
  output, so their output is quantized only when a quantized layer reads it (logits stay float).
  When the output's only reader is a Relu, or a Clip with a constant minimum >= 0, the activation's
  output is quantized instead (unless it is a graph output): ONNX Runtime then drops the activation
  (its Q already clips) and fuses the layer. A graph output nobody else reads is never quantized.
- Scales and zero points are scalars (ORT fuses nothing with a one-element vector), and a tensor made
  by a value-preserving op (MaxPool, Flatten, Reshape, ...) from a quantized tensor reuses that
  tensor's scale, so ORT runs the op on the 8-bit values.
- Weights: symmetric int8 per output channel (Conv axis 0, ConvTranspose axis 1 when group=1, Gemm
  axis 0 with transB=1 else 1, MatMul axis 1), or per tensor. Biases of Conv/Gemm: int32 with scale
  input scale x weight scale.
- Statistics are gathered once, on the float model, for every tensor any layer may quantize
  (``observers.HistogramObserver``, streaming), so ``build(layers)`` can quantize any subset of
  layers (mixed precision, sensitivity) without recalibrating.
- Bias correction (``correct_biases``) adds to each Conv/Gemm bias the mean output error its own
  weight rounding causes, from the input channel means on calibration data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx_ir as ir

from ir import activations, io
from ir.constants import constant_array
from passes.quantize import qdq
from passes.quantize.qdq import is_private
from passes.quantize.observers import HistogramObserver

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
ELEMENTWISE = ("Add", "Mul")  # quantized on 4-D feature maps only, constant operands allowed
FUSED_ACTIVATIONS = ("Relu", "Clip")


@dataclasses.dataclass(frozen=True)
class Settings:
    calibrate: str = "entropy"
    activations: str = "uint8"
    symmetric_activations: bool = True
    per_channel: bool = True
    percentile: float = 99.99
    bins: int = 2048
    ops: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool")


@dataclasses.dataclass
class Layer:
    index: int  # position in the graph's node order (stable across copies)
    label: str
    op_type: str
    inputs: list[str]  # activation inputs to quantize
    output: str  # the tensor quantized after the layer (the fused activation's output when there is one)
    raw_output: str  # the op's own output
    weight_axis: int | None = None  # None: per tensor; only for constant weights
    constants: list[int] = dataclasses.field(default_factory=list)  # constant operands of Add/Mul (uint8 per tensor)

    def quantized(self) -> tuple[str, ...]:
        """The activations this layer quantizes: its inputs, and its output except for MatMul/Gemm,
        which ONNX Runtime runs in integers with a float output (MatMulIntegerToFloat, QGemm); their
        output is quantized only when a quantized reader asks for it, so logits before a float
        Add/Softmax keep full precision."""
        return (*self.inputs,) if self.op_type in ("MatMul", "Gemm") else (*self.inputs, self.output)


def node_label(node: ir.Node, index: int) -> str:
    return node.name or f"#{index} {node.op_type} -> {node.outputs[0].name}"


class Quantizer:
    def __init__(self, model: ir.Model, settings: Settings, exclude: Sequence[str] = ()):
        self.model = model
        self.reference = model  # the float model fidelity is measured against (bias correction edits self.model)
        self.settings = settings
        self.layers: list[Layer] = []
        self.float_reasons: dict[str, list[str]] = {}
        self.observers: dict[str, HistogramObserver] = {}
        self.clipped_biases = self.widened_channels = 0
        excluded = set(exclude)
        for index, node in enumerate(model.graph):
            label = node_label(node, index)
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                continue
            if excluded & {node.name, node.op_type, node.outputs[0].name}:
                self._float(node, "excluded by the user")
                continue
            if node.op_type not in settings.ops:
                self._float(node, "not a quantized op type (ops option)")
                continue
            reason = _refusal(node)
            if reason:
                self._float(node, reason)
                continue
            inputs = [v.name for v in node.inputs if v is not None and constant_array(v) is None]
            if node.op_type in WEIGHTED and node.op_type != "MatMul":
                inputs = inputs[:1]
            constants = [i for i, v in enumerate(node.inputs) if node.op_type in ELEMENTWISE and constant_array(v) is not None]
            raw = node.outputs[0]
            self.layers.append(Layer(index, label, node.op_type, inputs, _fused_output(raw).name, raw.name,
                                     _weight_axis(node, settings.per_channel), constants))

        self.same_scale = _same_scale(model.graph, set(self.tensors()))

    def _float(self, node: ir.Node, reason: str) -> None:
        self.float_reasons.setdefault(f"{node.op_type}: {reason}", []).append(node.name or node.outputs[0].name)

    # -- calibration ------------------------------------------------------------------------------
    def tensors(self) -> list[str]:
        return list(dict.fromkeys(name for layer in self.layers for name in layer.quantized()))

    def calibrate(self, feeds: Iterable[dict[str, np.ndarray]], progress: Callable[[int], None] | None = None) -> int:
        names = self.tensors()
        for name in names:
            self.observers.setdefault(name, HistogramObserver(self.settings.bins))
        batches = 0
        for arrays in activations.capture(self.model, names, feeds):
            for name, array in arrays.items():
                self.observers[name].update(array)
            batches += 1
            if progress is not None:
                progress(batches)
        return batches

    def params(self, name: str) -> tuple[np.float32, np.ndarray]:
        s = self.settings
        name = self.same_scale.get(name, name)
        lo, hi = self.observers[name].observed_range(s.calibrate, levels=256, percentile=s.percentile)
        return qdq.activation_params(lo, hi, s.activations, s.symmetric_activations)

    # -- building ---------------------------------------------------------------------------------
    def build(self, layers: Iterable[int] | None = None, *, source: ir.Model | None = None) -> ir.Model:
        """A QDQ copy of the model (or of ``source``, same node order) quantizing the given layer indices."""
        chosen = {layer.index for layer in self.layers} if layers is None else set(layers)
        model = io.copy_model(source or self.model)
        nodes = list(model.graph)
        writer = qdq.GraphWriter(model.graph, "quantize")
        tensors: dict[str, ir.Value] = {}
        values = {v.name: v for node in nodes for v in node.outputs}
        values.update({v.name: v for v in model.graph.inputs})
        self.clipped_biases = self.widened_channels = 0
        for layer in self.layers:
            if layer.index not in chosen:
                continue
            node = nodes[layer.index]
            for name in layer.quantized():
                tensors[name] = values[name]
            if layer.op_type in WEIGHTED and constant_array(node.inputs[1]) is not None:
                self._quantize_weights(writer, node, layer)
            for position in layer.constants:
                # What ONNX Runtime's quantizer does for a constant Add/Mul operand: uint8 over its
                # own range, so the node becomes QLinearAdd/QLinearMul.
                array = constant_array(node.inputs[position]).astype(np.float32)
                scale, zero = qdq.activation_params(float(array.min()), float(array.max()), "uint8", False)
                q = np.clip(np.round(array / scale) + zero.astype(np.int32), 0, 255).astype(np.uint8)
                base = node.inputs[position].name or f"{layer.raw_output}_operand"
                node.replace_input_with(position, writer.dequantized_constant(base, q, scale, zero, None))
        for name, value in tensors.items():
            # A graph output nobody else reads stays float: a Q/DQ pair there would be dead, and a
            # layer whose output feeds both a Q and the graph output cannot be fused by ONNX Runtime.
            if name in self.observers and value.uses():
                scale, zero = self.params(name)
                writer.fake_quantize(value, scale, zero)
        for name, value in list(model.graph.initializers.items()):
            if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
                del model.graph.initializers[name]  # float weights replaced by their int8 form
        qdq.drop_unused_constants(model.graph)
        model.graph.sort()
        return model

    def _quantize_weights(self, writer: qdq.GraphWriter, node: ir.Node, layer: Layer) -> None:
        weight = constant_array(node.inputs[1])
        base = node.inputs[1].name or f"{layer.raw_output}_weight"
        bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if bias is not None and (layer.op_type not in ("Conv", "Gemm") or layer.inputs[0] not in self.observers):
            bias = None
        q, scale = qdq.symmetric_weight(weight, layer.weight_axis)
        if bias is not None and layer.op_type == "Gemm" and bias.size != scale.size:
            bias = None  # a broadcast C (scalar or per-row) has no per-channel int32 form
        if bias is not None:
            input_scale, _ = self.params(layer.inputs[0])
            # A channel whose weights are tiny next to its bias would overflow the int32 bias:
            # widen that channel's weight scale just enough (what ONNX Runtime's quantizer does too).
            needed = np.abs(bias.reshape(-1)).max() if scale.ndim == 0 else np.abs(bias.reshape(-1))
            floor = (needed / (float(input_scale) * qdq.BIAS_LIMIT)).astype(np.float32)
            if np.any(floor > scale):
                q, scale = qdq.symmetric_weight(weight, layer.weight_axis, minimum_scale=floor)
                self.widened_channels += int(np.count_nonzero(floor > scale * 0.999999))
        zero = np.zeros(scale.shape, np.int8)
        node.replace_input_with(1, writer.dequantized_constant(base, q, scale, zero, layer.weight_axis))
        if bias is None:
            return
        levels, bias_scale, clipped = qdq.quantized_bias(bias.reshape(-1), input_scale, scale)
        self.clipped_biases += clipped
        axis = 0 if bias_scale.ndim else None
        node.replace_input_with(2, writer.dequantized_constant(node.inputs[2].name or f"{base}_bias", levels.reshape(bias.shape), bias_scale, np.zeros(bias_scale.shape, np.int32), axis))

    # -- bias correction --------------------------------------------------------------------------
    def correct_biases(self, feeds: Sequence[dict[str, np.ndarray]]) -> int:
        """Shift Conv/Gemm biases of ``self.model`` by the mean error their weight rounding causes;
        returns the number of layers corrected.

        The error of a layer's output channel o is ``sum_c (W - Q(W))[o, c, ...] E[x_c]`` (input
        channel means from the float model), so each layer is corrected for its own rounding only
        and corrections do not compound along the graph (Nagel et al. 2019, bias correction).
        """
        targets = [layer for layer in self.layers if layer.op_type in ("Conv", "Gemm") and layer.weight_axis in (0, 1)]
        if not targets:
            return 0
        if self.reference is self.model:
            self.reference = io.copy_model(self.model)
        nodes = list(self.model.graph)
        names = list(dict.fromkeys(nodes[layer.index].inputs[0].name for layer in targets))
        sums: dict[str, np.ndarray] = {}
        count = 0
        for arrays in activations.capture(self.model, names, feeds):
            for name, array in arrays.items():
                axis = 1 if array.ndim > 2 else -1
                moved = np.moveaxis(array.astype(np.float64), axis, 0)
                sums[name] = sums.get(name, 0.0) + moved.reshape(moved.shape[0], -1).mean(axis=1)
            count += 1
        corrected = 0
        for layer in targets:
            node = nodes[layer.index]
            weight = constant_array(node.inputs[1]).astype(np.float64)
            q, scale = qdq.symmetric_weight(weight, layer.weight_axis)
            error = weight - qdq.dequantize(q, scale, layer.weight_axis)
            mean = sums[node.inputs[0].name] / max(count, 1)
            if layer.op_type == "Gemm":
                matrix = error.T if node.attributes.get_int("transB", 0) else error  # [K, N]
                shift = mean @ matrix
            else:
                groups = node.attributes.get_int("group", 1)
                per_input = error.reshape(error.shape[0], error.shape[1], -1).sum(axis=2)  # [O, C/g]
                channel_means = mean.reshape(groups, -1)  # [g, C/g]
                group_of = np.arange(error.shape[0]) // (error.shape[0] // groups)
                shift = np.sum(per_input * channel_means[group_of], axis=1)
            if _add_bias(node, shift):
                corrected += 1
        return corrected


PASS_THROUGH = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def _same_scale(graph: ir.Graph, quantized: set[str]) -> dict[str, str]:
    """Quantized tensors made by a value-preserving op (MaxPool, Flatten, Reshape, ...) from another
    quantized tensor take that tensor's scale: ONNX Runtime then drops the DQ -> op -> Q around the
    op and runs it on the 8-bit values (its own quantizer shares the scale the same way)."""
    result: dict[str, str] = {}
    for node in graph:
        out = node.outputs[0] if node.outputs else None
        if out is None or out.name not in quantized or node.op_type not in PASS_THROUGH or not node.inputs:
            continue
        source = node.inputs[0].name
        source = result.get(source, source)
        if source in quantized:
            result[out.name] = source
    return result


def _refusal(node: ir.Node) -> str | None:
    floats = [v for v in node.inputs if v is not None]
    if any(v.dtype not in (None, ir.DataType.FLOAT) for v in floats) or node.outputs[0].dtype not in (None, ir.DataType.FLOAT):
        return "not float32"
    if node.op_type in ("Conv", "ConvTranspose"):
        weight = constant_array(node.inputs[1])
        if weight is None:
            return "weight is not a constant"
    elif node.op_type == "Gemm":
        weight = constant_array(node.inputs[1])
        if weight is None or weight.ndim != 2:
            return "B is not a constant 2-D weight"
        if node.attributes.get_int("transA", 0) or node.attributes.get_float("alpha", 1.0) != 1.0:
            return "transA or alpha != 1"
    elif node.op_type == "MatMul":
        weight = constant_array(node.inputs[1])
        if weight is not None and weight.ndim != 2:
            return "constant weight is not 2-D"
        if constant_array(node.inputs[0]) is not None:
            return "constant first operand"
    elif node.op_type in ELEMENTWISE:
        if all(constant_array(v) is not None for v in floats):
            return "constant operands"
        shape = node.outputs[0].shape
        if shape is None or len(shape) != 4:
            # Sequence arithmetic (transformer residuals, decomposed LayerNorm) feeds normalizations
            # that amplify its rounding error; ONNX Runtime's gain is in convolutional networks.
            return "not on a 4-D feature map"
    elif any(constant_array(v) is not None for v in floats):
        return "constant operand"
    if len(node.outputs) != 1:
        return "more than one output"
    return None


def _weight_axis(node: ir.Node, per_channel: bool) -> int | None:
    if not per_channel:
        return None
    op = node.op_type
    if op == "Conv":
        return 0
    if op == "ConvTranspose":
        return 1 if node.attributes.get_int("group", 1) == 1 else None
    if op == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    if op == "MatMul" and constant_array(node.inputs[1]) is not None:
        return 1
    return None


def _fused_output(value: ir.Value) -> ir.Value:
    """The activation output that ONNX Runtime can fold into the layer's Q, or the value itself."""
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return value
    reader = uses[0][0]
    if reader.outputs[0].is_graph_output():
        return value  # ONNX Runtime cannot drop an activation whose output the caller reads
    if reader.op_type == "Relu":
        return reader.outputs[0]
    if reader.op_type == "Clip" and len(reader.inputs) > 1 and reader.inputs[1] is not None:
        low = constant_array(reader.inputs[1])
        if low is not None and low.size == 1 and float(low.reshape(())) >= 0.0:
            return reader.outputs[0]
    return value


def _add_bias(node: ir.Node, shift: np.ndarray) -> bool:
    """Add ``shift`` to a Conv/Gemm output through its bias (created when absent) when it is private."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None:
        current = constant_array(bias)
        if current is None or not is_private(bias) or current.size != shift.size:
            return False
    weight = constant_array(node.inputs[1])
    current = 0.0 if bias is None else constant_array(bias).astype(np.float64)
    if node.op_type == "Gemm" and bias is not None:
        current = current * node.attributes.get_float("beta", 1.0)
        node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    new = (current + shift).astype(weight.dtype)
    qdq.set_constant_input(node, 2, new.reshape(-1), f"{node.outputs[0].name}_bias_corrected")
    return True
