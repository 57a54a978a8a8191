"""equalize: cross-layer equalization keeps the outputs and evens out per-channel weight ranges."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir.constants import constant_array
from passes.base import create
from passes.quantize.equalize import per_tensor_sqnr
from tests.quantize.helpers import ort_outputs, run_pipeline, sqnr, with_weights

# MobileNetV2-style inverted residual core: 1x1 expand -> ReLU -> 3x3 depthwise -> Clip(0, inf) -> 1x1 project.
BLOCK = """
<ir_version: 8, opset_import: ["" : 17]>
block (float[1,8,10,10] x) => (float[1,8,10,10] y)
    <float[32,8,1,1] w1 = {W1}, float[32] b1 = {B1}, float[32,1,3,3] w2 = {W2}, float[32] b2 = {B2},
     float[8,32,1,1] w3 = {W3}, float zero = {0}> {
    c1 = Conv (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <group = 32, pads = [1,1,1,1]> (r1, w2, b2)
    r2 = Clip (c2, zero)
    y = Conv (r2, w3)
}
"""


def block_model() -> ir.Model:
    rng = np.random.default_rng(0)
    spread = np.exp(rng.uniform(-2.5, 2.5, 32))  # channel ranges over two orders of magnitude
    return with_weights(BLOCK, {
        "W1": rng.normal(0, 0.3, (32, 8, 1, 1)) * spread[:, None, None, None], "B1": rng.normal(0, 0.1, 32) * spread,
        "W2": rng.normal(0, 0.3, (32, 1, 3, 3)) / spread[:, None, None, None] * np.exp(rng.uniform(-1, 1, 32))[:, None, None, None],
        "B2": rng.normal(0, 0.1, 32), "W3": rng.normal(0, 0.3, (8, 32, 1, 1))})


def ranges(weight: np.ndarray, axis: int) -> np.ndarray:
    return np.abs(np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)).max(axis=1)


def spread(weight: np.ndarray, axis: int = 0) -> float:
    r = ranges(weight, axis)
    return float(r.max() / r.min())


def test_equalization_is_lossless_and_evens_out_channel_ranges():
    model = block_model()
    feeds = [{"x": np.random.default_rng(i).standard_normal((1, 8, 10, 10)).astype(np.float32)} for i in range(2)]
    before = {n.name or n.outputs[0].name: constant_array(n.inputs[1]) for n in model.graph if n.op_type == "Conv"}
    reference = ort_outputs(model, feeds[0])[0]
    # verify="each": the pass manager checks the outputs of this lossless pass against ONNX Runtime.
    result = run_pipeline(model, "equalize", feeds, verify="each")
    (record,) = result.records
    assert record.modified and not record.rolled_back and record.stats["pairs equalized"] == 2
    np.testing.assert_allclose(ort_outputs(result.model, feeds[0])[0], reference, rtol=1e-4, atol=1e-5)
    convs = [n for n in result.model.graph if n.op_type == "Conv"]
    w1, w2, w3 = (constant_array(n.inputs[1]) for n in convs)
    w1_before, w2_before = list(before.values())[:2]
    assert spread(w1) < spread(w1_before) / 10  # measured: 258 -> 3.1 (w2: 315 -> 3.1)
    assert spread(w2) < spread(w2_before) / 10
    # The point of it: per-tensor int8 quantization of each weight loses much less.
    assert per_tensor_sqnr(w1) > per_tensor_sqnr(w1_before) + 15  # measured: 24.6 -> 43.5 dB
    assert per_tensor_sqnr(w2) > per_tensor_sqnr(w2_before) + 15  # measured: 18.7 -> 43.7 dB
    print(f"range spread w1 {spread(w1_before):.1f} -> {spread(w1):.1f}, w2 {spread(w2_before):.1f} -> {spread(w2):.1f}; "
          f"int8 per-tensor SQNR w1 {per_tensor_sqnr(w1_before):.1f} -> {per_tensor_sqnr(w1):.1f} dB, "
          f"w2 {per_tensor_sqnr(w2_before):.1f} -> {per_tensor_sqnr(w2):.1f} dB")


RELU6 = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[1,4,6,6] x) => (float[1,4,6,6] y)
    <float[4,4,1,1] w1 = {W1}, float[4,4,1,1] w2 = {W2}, float lo = {0}, float hi = {6}> {
    c1 = Conv (x, w1)
    r1 = Clip (c1, lo, hi)
    y = Conv (r1, w2)
}
"""


def test_relu6_does_not_commute_with_a_channel_scale_and_is_left_alone():
    rng = np.random.default_rng(0)
    model = with_weights(RELU6, {"W1": rng.normal(0, 1, (4, 4, 1, 1)), "W2": rng.normal(0, 1, (4, 4, 1, 1))})
    pass_ = create("equalize")
    assert not pass_(model).modified
    assert any("ReLU6" in note for note in pass_.notes)


def test_a_weight_shared_with_another_layer_is_not_changed_under_it():
    text = BLOCK.replace("y = Conv (r2, w3)", "y = Conv (r2, w3)\n    z = Conv (x, w1, b1)").replace(
        "=> (float[1,8,10,10] y)", "=> (float[1,8,10,10] y, float[1,32,10,10] z)")
    rng = np.random.default_rng(1)
    model = with_weights(text, {"W1": rng.normal(0, 1, (32, 8, 1, 1)), "B1": rng.normal(0, 1, 32), "W2": rng.normal(0, 1, (32, 1, 3, 3)),
                                "B2": rng.normal(0, 1, 32), "W3": rng.normal(0, 1, (8, 32, 1, 1))})
    feeds = [{"x": rng.standard_normal((1, 8, 10, 10)).astype(np.float32)}]
    reference = ort_outputs(model, feeds[0])
    result = run_pipeline(model, "equalize", feeds, verify="each")
    for want, got in zip(reference, ort_outputs(result.model, feeds[0])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


LINEAR_PAIR = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[1,4,6,6] x) => (float[1,4,6,6] y) <float[8,4,1,1] w1 = {W1}, float[8] b1 = {B1}, float[4,8,3,3] w2 = {W2}> {
    c1 = Conv (x, w1, b1)
    y = Conv <pads = [1,1,1,1]> (c1, w2)
}
"""


def test_a_convolution_read_directly_by_another_is_a_pair_too():
    # MobileNetV2's linear bottleneck: the projection conv feeds the next block's expansion conv.
    rng = np.random.default_rng(2)
    scale = np.exp(rng.uniform(-2, 2, 8))
    model = with_weights(LINEAR_PAIR, {"W1": rng.normal(0, 1, (8, 4, 1, 1)) * scale[:, None, None, None], "B1": rng.normal(0, 1, 8),
                                       "W2": rng.normal(0, 1, (4, 8, 3, 3))})
    feeds = [{"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)}]
    reference = ort_outputs(model, feeds[0])[0]
    result = run_pipeline(model, "equalize", feeds, verify="each")
    assert result.records[0].stats["pairs equalized"] == 1
    np.testing.assert_allclose(ort_outputs(result.model, feeds[0])[0], reference, rtol=1e-4, atol=1e-4)


def test_relu6_min_rewrites_the_clip_with_per_channel_bounds_exactly():
    rng = np.random.default_rng(3)
    scale = np.exp(rng.uniform(-2, 2, 4))
    model = with_weights(RELU6, {"W1": rng.normal(0, 1, (4, 4, 1, 1)) * scale[:, None, None, None], "W2": rng.normal(0, 1, (4, 4, 1, 1))})
    feeds = [{"x": (3 * rng.standard_normal((1, 4, 6, 6))).astype(np.float32)}]  # large enough to hit the bound 6
    reference = ort_outputs(model, feeds[0])[0]
    result = run_pipeline(model, "equalize{relu6=min}", feeds, verify="each")
    (record,) = result.records
    assert record.stats["pairs equalized"] == 1 and record.stats["ReLU6 rewritten as Min(Relu, per-channel bound)"] == 1
    assert [n.op_type for n in result.model.graph if n.op_type != "Constant"] == ["Conv", "Relu", "Min", "Conv"]
    np.testing.assert_allclose(ort_outputs(result.model, feeds[0])[0], reference, rtol=1e-4, atol=1e-4)


def test_equalizing_before_int8_quantization_rescues_the_output():
    calib = [{"x": np.random.default_rng(i).standard_normal((1, 8, 10, 10)).astype(np.float32)} for i in range(8)]
    held_out = [{"x": np.random.default_rng(100 + i).standard_normal((1, 8, 10, 10)).astype(np.float32)} for i in range(2)]
    reference = [ort_outputs(block_model(), f)[0] for f in held_out]
    measured = {}
    for pipeline in ("quantize{per_channel=false}", "equalize,quantize{per_channel=false}", "quantize", "equalize,quantize"):
        model = run_pipeline(block_model(), pipeline, calib).model
        measured[pipeline] = np.mean([sqnr(want, ort_outputs(model, f)[0]) for want, f in zip(reference, held_out)])
    # measured output SQNR: per-tensor weights 4.3 -> 35.7 dB, per-channel weights 9.6 -> 36.2 dB
    assert measured["equalize,quantize{per_channel=false}"] > measured["quantize{per_channel=false}"] + 20
    assert measured["equalize,quantize"] > measured["quantize"] + 15
