"""The intent of ``quantize``: the float model with fake quantization where the QDQ model quantizes.

Built from the original model and the *placement* the produced model declares (which values a
QuantizeLinear reads, with which scale and zero point; which constants a DequantizeLinear replaces):

- each quantized activation ``x`` gets float ops ``q = Clip(Round(x / s) + z, lo, hi)``,
  ``y = (q - z) * s`` (``lo, hi`` the storage type's range), and every node reading ``x`` reads ``y``
  (a graph output keeps ``x``);
- each weight becomes ``Clip(round(w / s), -L, L) * s`` computed in numpy from the *original* float
  weight (``L`` = 127: symmetric weights never use -128), per channel along the DequantizeLinear axis;
- each int32 bias becomes ``round(b / (s_x s_w)) (s_x s_w)`` with the scale recomputed from the input's
  and the weight's scales (not read from the model), clipped to int32;
- each uint8 constant operand (Add/Mul) becomes ``(Clip(round(a / s) + z, 0, 255) - z) s``.

So the check covers the weight, bias and operand rounding, the bias scale rule and that the pass
changed nothing else (a mis-wired reader, a dropped node); activation scales themselves come from the
model (their calibration is tested against references in ``tests/quantize``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ir.errors import InvalidModelError
from passes.intent import set_constant
from ir.constants import constant_array

RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
INT32 = np.iinfo(np.int32)


def placement(produced: ir.Model):
    """({activation name: (scale, zero)}, {(reader's first output name, input index): (scale, zero, axis)})."""
    activations, constants = {}, {}
    for node in produced.graph:
        if node.op_type == "QuantizeLinear":
            activations[node.inputs[0].name] = (constant_array(node.inputs[1]), constant_array(node.inputs[2]))
        elif node.op_type == "DequantizeLinear" and constant_array(node.inputs[0]) is not None:
            axis = node.attributes.get_int("axis", 1)
            for user, index in node.outputs[0].uses():
                constants[(user.outputs[0].name, index)] = (constant_array(node.inputs[1]), constant_array(node.inputs[2]), axis)
    return activations, constants


def build(original: ir.Model, produced: ir.Model, float_source: ir.Model | None = None) -> ir.Model:
    """The intent model (``original``, edited). ``float_source``: where float constants are read from
    when the pass means other float values than the original's (bias correction), same node order."""
    activations, constants = placement(produced)
    by_output = {node.outputs[0].name: node for node in original.graph if node.outputs}
    source = by_output if float_source is None else {n.outputs[0].name: n for n in float_source.graph if n.outputs}
    for (name, index), (scale, zero, axis) in constants.items():
        if name not in by_output:
            raise InvalidModelError(f"intent: the quantized model's '{name}' is not in the original")
        array = constant_array(source[name].inputs[index])
        if zero.dtype == np.int32:
            input_scale = activations[by_output[name].inputs[0].name][0]
            scale = (np.float64(input_scale) * constants[(name, 1)][0].astype(np.float64)).astype(np.float32)
            levels = np.clip(np.round(array.astype(np.float64) / _shaped(scale, axis, array.ndim)), INT32.min, INT32.max)
            value = levels * _shaped(scale, axis, array.ndim)
        elif zero.dtype == np.int8 and index == 1:  # a weight: symmetric
            shaped = _shaped(scale, axis, array.ndim)
            value = np.clip(np.round(array.astype(np.float64) / shaped.astype(np.float64)), -127, 127).astype(np.float32) * shaped
        else:
            lo, hi = RANGES[zero.dtype]
            levels = np.clip(np.round(array / scale) + zero.astype(np.float32), lo, hi)
            value = (levels - zero.astype(np.float32)) * scale
        set_constant(by_output[name], index, np.asarray(value, np.float32))
    values = {v.name: v for node in original.graph for v in node.outputs}
    values.update({v.name: v for v in original.graph.inputs})
    for name, (scale, zero) in activations.items():
        if name not in values:
            raise InvalidModelError(f"intent: the quantized activation '{name}' is not in the original")
        _fake_quantize(original.graph, values[name], scale, zero)
    original.graph.sort()
    return original


def _shaped(scale: np.ndarray, axis: int, rank: int) -> np.ndarray:
    return scale if scale.ndim == 0 else scale.reshape([-1 if i == axis % rank else 1 for i in range(rank)])


def _fake_quantize(graph: ir.Graph, value: ir.Value, scale: np.ndarray, zero: np.ndarray) -> None:
    users = list(value.uses())
    lo, hi = RANGES[zero.dtype]
    base = f"{value.name}_intent"

    def const(suffix, number):
        array = np.asarray(number, np.float32)
        out = ir.Value(name=f"{base}_{suffix}", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(()),
                       const_value=ir.tensor(array, name=f"{base}_{suffix}"))
        graph.register_initializer(out)
        return out

    s, z = const("scale", scale), const("zero", zero.astype(np.float32))
    steps = [("Div", [value, s]), ("Round", [None]), ("Add", [None, z]),
             ("Clip", [None, const("lo", lo), const("hi", hi)]), ("Sub", [None, z]), ("Mul", [None, s])]
    current = value
    for op, inputs in steps:
        node = ir.node(op, [current if v is None else v for v in inputs], name=f"{base}_{op}")
        graph.append(node)
        current = node.outputs[0]
        current.name, current.dtype, current.shape = f"{base}_{op.lower()}", ir.DataType.FLOAT, value.shape
    for user, index in users:
        user.replace_input_with(index, current)
