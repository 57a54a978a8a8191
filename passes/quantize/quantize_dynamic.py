"""quantize-dynamic: int8 weights, activations quantized at run time; standard ONNX, no calibration data.

Rules (the form ONNX Runtime's ``quantize_dynamic`` writes, so ORT runs it with integer kernels):
- Layers: MatMul with a constant 2-D float weight ``[K, N]`` (any-rank input), Gemm (``transA=0``,
  constant weight, ``transB`` handled by storing the weight transposed) and, with ``Conv`` in ``ops``,
  Conv with a constant float weight. Anything else (attention ``MatMul`` of two activations, ...)
  stays float.
- Weights: symmetric int8 (levels -127..127, zero point 0), one scale per output channel
  (``per_channel=true``) or per tensor. The zero point is a scalar 0 either way: ORT's ConvInteger
  accepts only a per-tensor weight zero point, and with symmetric weights the per-channel scales
  are applied after the integer product, in float.
- Activations: ``DynamicQuantizeLinear(x) -> (x_q uint8, x_scale, x_zero_point)`` computed per tensor
  at run time, shared by every layer reading ``x``.
- ``y = Cast(MatMulInteger(x_q, W_q, x_zp, 0) or ConvInteger(...), float) * (x_scale * w_scale)``,
  then ``+ bias`` (Gemm: ``beta * C``; Conv: the bias reshaped to ``[C, 1, ...]``); Gemm's ``alpha``
  goes into the weight scale.
- Opset 11 at least (DynamicQuantizeLinear); a lower opset is converted first (noted).
- ``ops`` and ``exclude`` are ``|``-separated. ``exclude`` lists node names, output names or op types kept in float. The output error on
  calibration data (generated inputs when none is given) is noted.
- Intent (``passes.quantize.dynamic_intent``): the original (converted to opset 11 when the pass
  converted it) with each quantized layer reading its input fake-quantized by float ops and its
  weight dequantized in numpy.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx_ir as ir

from ir import fidelity, io
from ir.constants import constant_array
from ir.errors import InvalidModelError
from passes.base import Pass, PassResult, layer_costs, layer_row, register
from passes.quantize import qdq

DYNAMIC_OPS = ("MatMul", "Gemm", "Conv")


def _names(text: str) -> set[str]:
    # "|" separates names inside a pipeline string, where "," ends the option; "," works from Python.
    return {t.strip() for t in re.split(r"[|,]", text) if t.strip()}


def _ops_valid(text: str) -> bool:
    return bool(_names(text)) and _names(text) <= set(DYNAMIC_OPS)


@dataclasses.dataclass(frozen=True)
class DynamicOptions:
    ops: str = dataclasses.field(default="MatMul|Gemm", metadata={
        "check": _ops_valid, "rule": "a |-separated list of MatMul, Gemm, Conv", "doc": "op types to quantize"})
    per_channel: bool = dataclasses.field(default=True, metadata={"doc": "one weight scale per output channel"})
    exclude: str = dataclasses.field(default="", metadata={"doc": "|-separated node names, output names or op types kept float"})


def _eligible(node: ir.Node, ops: set[str]) -> np.ndarray | None:
    """The layer's weight as ``[outputs, ...]`` (output channel first), or None if it stays float."""
    if node.op_type not in ops or len(node.inputs) < 2 or node.inputs[0] is None:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.dtype != np.float32 or node.inputs[0].dtype not in (None, ir.DataType.FLOAT):
        return None
    if node.op_type == "MatMul":
        return weight.T if weight.ndim == 2 else None
    if node.op_type == "Gemm":
        if node.attributes.get_int("transA", 0) or weight.ndim != 2:
            return None
        if len(node.inputs) > 2 and node.inputs[2] is not None and constant_array(node.inputs[2]) is None:
            return None
        return weight if node.attributes.get_int("transB", 0) else weight.T
    if len(node.inputs) > 2 and node.inputs[2] is not None and constant_array(node.inputs[2]) is None:
        return None
    return weight if weight.ndim >= 3 else None


@register
class QuantizeDynamicPass(Pass):
    name = "quantize-dynamic"
    Options = DynamicOptions
    lossless = False

    def intent(self, original: ir.Model):
        from passes.intent import Intent
        from passes.quantize.dynamic_intent import build

        if not self._positions:
            return None
        qdq.raise_opset(original, 11)  # as the pass did: the positions are the converted graph's
        return Intent(build(original, self._positions, self.options.per_channel),
                      "original with quantized layers reading dynamically fake-quantized inputs and dequantized weights")

    def call(self, model: ir.Model) -> PassResult:
        self._positions: list[int] = []
        ops, exclude = _names(self.options.ops), _names(self.options.exclude)
        layers = [n for n in model.graph if _eligible(n, ops) is not None
                  and not ({n.name, n.op_type, *(o.name for o in n.outputs)} & exclude)]
        if not layers:
            self.note("nothing to quantize: no layer of the requested op types with a constant float weight")
            return PassResult(model, modified=False)
        before = qdq.default_opset(model)
        try:
            if qdq.raise_opset(model, 11):
                self.note(f"opset raised from {before} to 11: DynamicQuantizeLinear")
                layers = [n for n in model.graph if _eligible(n, ops) is not None
                          and not ({n.name, n.op_type, *(o.name for o in n.outputs)} & exclude)]
        except InvalidModelError as exc:
            self.note(f"not quantized: {exc}")
            return PassResult(model, modified=False)
        reference = io.copy_model(model)
        costs = layer_costs(model)
        action = "int8 weights (per channel), dynamic int8 activations" if self.options.per_channel else "int8 weights, dynamic int8 activations"
        self.layers = [layer_row(node, action, costs[node]) for node in layers]
        position = {node: i for i, node in enumerate(model.graph)}
        self._positions = [position[node] for node in layers]
        writer = qdq.GraphWriter(model.graph, self.name)
        quantized_inputs: dict[ir.Value, tuple[ir.Value, ir.Value, ir.Value]] = {}
        for node in layers:
            x = node.inputs[0]
            if x not in quantized_inputs:
                quantized_inputs[x] = self._dynamic_quantize(writer, x)
            self._rewrite(writer, node, _eligible(node, ops), *quantized_inputs[x])
        qdq.drop_unused_constants(model.graph)
        model.graph.sort()
        self._report(reference, model)
        return PassResult(model, modified=True)

    @staticmethod
    def _dynamic_quantize(writer: qdq.GraphWriter, x: ir.Value):
        node = ir.node("DynamicQuantizeLinear", [x], num_outputs=3, name=writer.fresh(f"{x.name}_DynamicQuantizeLinear"))
        node.metadata_props["graphpress.rule"] = writer.tag
        writer.graph.append(node)
        q, scale, zero = node.outputs
        for value, suffix, dtype, shape in ((q, "quantized", ir.DataType.UINT8, x.shape), (scale, "scale", ir.DataType.FLOAT, ir.Shape([])),
                                            (zero, "zero_point", ir.DataType.UINT8, ir.Shape([]))):
            value.name = writer.fresh(f"{x.name}_{suffix}")
            value.dtype, value.shape = dtype, shape
        return q, scale, zero

    def _rewrite(self, writer: qdq.GraphWriter, node: ir.Node, weight: np.ndarray, x_q, x_scale, x_zero) -> None:
        op = node.op_type
        out = node.outputs[0]
        base = node.name or out.name
        q, w_scale = qdq.symmetric_weight(weight, 0 if self.options.per_channel else None)
        if op == "Gemm":
            w_scale = (w_scale * np.float32(node.attributes.get_float("alpha", 1.0))).astype(np.float32)
        stored = q.T if op in ("MatMul", "Gemm") else q  # MatMulInteger reads B as [K, N]
        w_value = writer.constant(f"{node.inputs[1].name or base}_quantized", np.ascontiguousarray(stored))
        w_zero = writer.constant(f"{base}_weight_zero_point", np.array(0, np.int8))
        if op == "Conv":
            attributes = {name: attr for name, attr in node.attributes.items()}
            integer = writer.node("ConvInteger", [x_q, w_value, x_zero, w_zero], base, ir.DataType.INT32, out.shape, attributes)
            channel_shape = [-1] + [1] * (weight.ndim - 2)
        else:
            integer = writer.node("MatMulInteger", [x_q, w_value, x_zero, w_zero], base, ir.DataType.INT32, out.shape)
            channel_shape = [-1]
        as_float = writer.node("Cast", [integer], base, ir.DataType.FLOAT, out.shape, {"to": int(ir.DataType.FLOAT)})
        scale_value = writer.constant(f"{base}_weight_scale", w_scale.reshape(channel_shape) if w_scale.ndim else w_scale)
        combined = writer.node("Mul", [x_scale, scale_value], f"{base}_scale", ir.DataType.FLOAT, None)
        result = writer.node("Mul", [as_float, combined], base, ir.DataType.FLOAT, out.shape)
        bias = constant_array(node.inputs[2]) if op in ("Gemm", "Conv") and len(node.inputs) > 2 and node.inputs[2] is not None else None
        if bias is not None:
            if op == "Gemm":
                bias = bias * np.float32(node.attributes.get_float("beta", 1.0))
            else:
                bias = bias.reshape(channel_shape)
            result = writer.node("Add", [result, writer.constant(f"{base}_bias", bias.astype(np.float32))], base, ir.DataType.FLOAT, out.shape)
        if out.is_graph_output():  # keep the graph output's name: it is the model's interface
            name = out.name
            out.name = writer.fresh(f"{name}_float")
            out.replace_all_uses_with(result, replace_graph_outputs=True)
            result.name = name
        else:
            out.replace_all_uses_with(result)
        writer.graph.remove(node, safe=True)
        self.stats[f"{op} layers quantized"] += 1
        self.stats["float weight bytes"] += weight.nbytes
        self.stats["int8 weight bytes"] += q.size + w_scale.size * 4

    def _report(self, reference: ir.Model, model: ir.Model) -> None:
        calibration = getattr(self.context, "calibration", None)
        generated = calibration is None or calibration.generated
        feeds = self.calibration_feeds(model, 4, generated=2)
        self.fidelity = fidelity.measure(reference, model, feeds)
        where = "generated random inputs" if generated else "calibration feeds"
        self.note(f"error on {len(feeds)} {where}: " + fidelity.describe(self.fidelity))
