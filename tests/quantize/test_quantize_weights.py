"""int4/int2 block-wise weight-only quantization and GPTQ rounding."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from passes.calibration import Calibration
from passes.manager import PassContext, PassManager
from passes.quantize import gptq

MATMUL = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[1,64,128] x) => (float[1,64,96] y) <float[128,96] w = {WEIGHTS}> {
    y = MatMul(x, w)
}
"""


def matmul_model() -> ir.Model:
    weights = np.random.default_rng(0).normal(0, 0.1, 128 * 96)
    return ir.serde.deserialize_model(onnx.parser.parse_model(MATMUL.replace("{WEIGHTS}", "{" + ",".join(f"{v:.5f}" for v in weights) + "}")))


def correlated_feeds(n=4):
    rng = np.random.default_rng(1)
    mixing = rng.standard_normal((128, 128)) * np.linspace(0.05, 3.0, 128)  # correlated, uneven features
    return [{"x": (rng.standard_normal((1, 64, 128)) @ mixing).astype(np.float32)} for _ in range(n)]


def run(model, pipeline, feeds):
    context = PassContext(calibration=Calibration.from_iterable(feeds))
    return PassManager(pipeline, verify="off", strict=True, context=context).run(model)


def output(model, feed):
    proto = ir.serde.serialize_model(model).SerializeToString()
    return ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_int4_blockwise_dequantize_is_standard_onnx_and_gptq_beats_rounding_to_nearest():
    feeds = correlated_feeds()
    test_feed = correlated_feeds(6)[5]
    reference = output(matmul_model(), test_feed)
    errors = {}
    for rounding in ("nearest", "gptq"):
        result = run(matmul_model(), f"quantize-weights{{rounding={rounding},block_size=32}}", feeds)
        model = result.model
        onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)
        assert model.opset_imports[""] == 21
        (dq,) = [n for n in model.graph if n.op_type == "DequantizeLinear"]
        assert dq.inputs[0].dtype == ir.DataType.INT4 and dq.attributes.get_int("block_size") == 32
        assert dq.inputs[1].const_value.shape == (128 // 32, 96)
        errors[rounding] = np.mean((output(model, test_feed) - reference) ** 2)
    assert errors["gptq"] < 0.95 * errors["nearest"]


def test_gptq_levels_stay_in_range_and_two_bits_is_ternary():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 64))
    x = rng.standard_normal((256, 64))
    q, scales = gptq.gptq(w, x.T @ x, bits=2, block_size=16)
    assert set(np.unique(q)) <= {-1, 0, 1} and scales.shape == (8, 4)
    q4, _ = gptq.round_to_nearest(w, bits=4, block_size=16)
    assert q4.min() >= -7 and q4.max() <= 7
