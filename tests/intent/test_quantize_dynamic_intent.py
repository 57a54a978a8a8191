"""quantize-dynamic states its intent: the original with each quantized layer reading its input
fake-quantized by float ops (what DynamicQuantizeLinear defines) and its weight dequantized in numpy;
the pass manager checks the integer model (MatMulInteger / ConvInteger) against it."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import passes.quantize.quantize_dynamic as quantize_dynamic
from ir import runtime
from models import builders
from passes.manager import PassManager
from passes.quantize.dynamic_intent import levels

# A strided, padded Conv; a Gemm with transB, alpha and beta; two MatMuls reading one input.
LAYERS = """
<ir_version: 8, opset_import: ["" : 13]>
net (float[2,3,8,8] x) => (float[2,5] y, float[2,7] z) {
    c = Conv <pads = [1,0,1,2], strides = [2,1]> (x, wc, bc)
    r = Relu (c)
    f = Flatten (r)
    g = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (f, wg, bg)
    y = Relu (g)
    m1 = MatMul (g, wm1)
    m2 = MatMul (g, wm2)
    z = Add (m1, m2)
}
"""


def layers_model() -> ir.Model:
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(LAYERS)
    arrays = {"wc": rng.normal(0, 0.3, (6, 3, 3, 3)), "bc": rng.normal(0, 0.1, 6), "wg": rng.normal(0, 0.05, (5, 192)),
              "bg": rng.normal(0, 0.1, 5), "wm1": rng.normal(0, 0.5, (5, 7)), "wm2": rng.normal(0, 0.5, (5, 7))}
    arrays["wm2"][:, 3] = 0.0  # a zero output channel: scale 1, levels 0
    for name, array in arrays.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return ir.serde.deserialize_model(proto)


def run(model, pipeline):
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    result = PassManager(pipeline, feeds=feeds).run(model)
    (record,) = result.records
    return record, result


def test_weight_levels_are_symmetric_on_per_channel_scales():
    weight = np.array([[1.27, -0.5], [0.0, 0.0], [-2.54, 0.009]], np.float32)
    q, scale = levels(weight, axis=0)
    assert q.tolist() == [[127, -50], [0, 0], [-127, 0]]  # 0.009 is under half a level (0.01)
    np.testing.assert_allclose(scale.reshape(-1), [0.01, 1.0, 0.02], rtol=1e-6)  # a zero channel: scale 1
    q, scale = levels(weight, axis=None)
    assert q[0].tolist() == [64, -25] and np.isclose(scale.item(), 0.02)  # one scale: 2.54 / 127


@pytest.mark.parametrize("pipeline", ["quantize-dynamic{ops=Conv|Gemm|MatMul}", "quantize-dynamic{ops=Conv|Gemm|MatMul,per_channel=false}",
                                      "quantize-dynamic"])
def test_integer_model_computes_its_intent(pipeline):
    record, result = run(layers_model(), pipeline)
    assert record.modified and not record.rolled_back, record.failure
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-4
    assert result.final_error["max_rel"] > 1e-4  # lossy: the intent is not the float model


def test_transformer_encoder_computes_its_intent():
    record, _ = run(builders.build("transformer_encoder"), "quantize-dynamic")
    assert record.stats["MatMul layers quantized"] == 12
    assert record.intent == "verified", record.failure
    assert record.intent_error["max_rel"] <= 1e-4


def test_per_channel_scales_computed_per_tensor_are_rolled_back_and_named(monkeypatch):
    """A planted bug: the weight scales ignore the channel axis (one scale per tensor)."""
    original = quantize_dynamic.qdq.symmetric_weight
    monkeypatch.setattr(quantize_dynamic.qdq, "symmetric_weight", lambda weight, axis, **kw: original(weight, None, **kw))
    record, _ = run(layers_model(), "quantize-dynamic{ops=Conv|Gemm|MatMul}")
    assert record.rolled_back and "does not compute its intent" in record.failure
    assert "dynamically fake-quantized inputs" in record.failure
