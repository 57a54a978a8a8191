"""quantize-weights{format=matmulnbits}: ONNX Runtime's MatMulNBits holding the same int4 levels."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from models import builders
from passes.calibration import Calibration
from passes.manager import PassContext, PassManager
from passes.quantize import gptq, matmulnbits


def parsed(text: str, **weights: np.ndarray) -> ir.Model:
    for name, array in weights.items():
        text = text.replace("{" + name + "}", "{" + ",".join(f"{v:.6f}" for v in array.ravel()) + "}")
    return ir.serde.deserialize_model(onnx.parser.parse_model(text))


def matmul_model(k: int, n: int = 48) -> ir.Model:
    w = np.random.default_rng(0).normal(0, 0.1, (k, n))
    return parsed(f"""
<ir_version: 8, opset_import: ["" : 17]>
net (float[1,8,{k}] x) => (float[1,8,{n}] y) <float[{k},{n}] w = {{W}}> {{
    y = MatMul(x, w)
}}
""", W=w)


def run(model, pipeline, feeds):
    context = PassContext(calibration=Calibration.from_iterable(feeds))
    return PassManager(pipeline, verify="off", strict=True, context=context).run(model)


def output(model, feed, float_accuracy=False):
    """``float_accuracy``: ONNX Runtime fuses int4 DequantizeLinear + MatMul into its own MatMulNBits
    with int8 activations (accuracy level 4) by default; level 0 keeps that product in float."""
    options = ort.SessionOptions()
    if float_accuracy:
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    proto = ir.serde.serialize_model(model).SerializeToString()
    return ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_pack_round_trips_levels_and_pads_the_last_block_with_zeros():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (5, 40))  # [N, K], K = 40 not a multiple of 16
    q, scales = gptq.round_to_nearest(w, bits=4, block_size=16)
    packed, flat = matmulnbits.pack(q, scales, 16)
    assert packed.dtype == np.uint8 and packed.shape == (5, 3, 8) and flat.shape == (15,)
    np.testing.assert_array_equal(matmulnbits.unpack(packed, flat, 40), gptq.dequantized(q, scales.astype(np.float32), 16).T)
    assert np.all(packed.reshape(5, -1)[:, 20:] == 0x88)  # padding: code 8 (level 0) in both nibbles


@pytest.mark.parametrize("k", [64, 72])
def test_matmulnbits_matches_the_dequantize_form(k):
    feeds = [{"x": np.random.default_rng(i).normal(0, 1, (1, 8, k)).astype(np.float32)} for i in range(2)]
    forms = {}
    for form in ("dequantize", "matmulnbits"):
        result = run(matmul_model(k), f"quantize-weights{{format={form},rounding=nearest,block_size=16}}", feeds)
        forms[form] = result.model
    model = forms["matmulnbits"]
    (node,) = list(model.graph)
    assert (node.domain, node.op_type) == ("com.microsoft", "MatMulNBits")
    assert {a: node.attributes.get_int(a) for a in ("K", "N", "bits", "block_size")} == {"K": k, "N": 48, "bits": 4, "block_size": 16}
    assert node.inputs[1].dtype == ir.DataType.UINT8 and node.inputs[1].shape == ir.Shape([48, -(-k // 16), 8])
    assert all(v.dtype != ir.DataType.FLOAT or v.shape.rank() == 1 for v in model.graph.initializers.values())  # no float weight
    assert model.opset_imports["com.microsoft"] == 1 and model.opset_imports[""] == 17  # no DequantizeLinear: opset kept
    exact_weight = matmulnbits.unpack(node.inputs[1].const_value.numpy(), node.inputs[2].const_value.numpy(), k)
    for feed in feeds:
        nbits, dq = output(model, feed), output(forms["dequantize"], feed, float_accuracy=True)
        assert np.max(np.abs(nbits - dq)) <= 1e-5 * np.max(np.abs(dq))
        exact = feed["x"].astype(np.float64) @ exact_weight
        assert np.max(np.abs(nbits - exact)) <= 1e-5 * np.max(np.abs(exact))


def test_transformer_matmuls_with_constant_weights_all_become_matmulnbits():
    model = builders.build("transformer_encoder")
    weighted = sum(n.op_type == "MatMul" and n.inputs[1].const_value is not None for n in model.graph)
    feed = {"input": np.random.default_rng(0).normal(0, 1, (1, 32, 128)).astype(np.float32)}
    result = PassManager("quantize-weights{format=matmulnbits,rounding=gptq}", verify="each",
                         context=PassContext(calibration=Calibration.from_iterable([feed]))).run(model)
    assert not result.records[0].rolled_back and result.records[0].failure is None  # verified against the float model
    ops = [n.op_type for n in result.model.graph]
    assert ops.count("MatMulNBits") == weighted == 12
    assert "DequantizeLinear" not in ops
    assert all(n.inputs[1].const_value is None for n in result.model.graph if n.op_type == "MatMul")  # scores, attention x V
    dequantize = run(builders.build("transformer_encoder"), "quantize-weights{format=dequantize,rounding=gptq}", [feed]).model
    nbits, dq = output(result.model, feed), output(dequantize, feed, float_accuracy=True)
    assert np.max(np.abs(nbits - dq)) <= 1e-5 * np.max(np.abs(dq))  # the same GPTQ levels and scales


def test_conv_keeps_dequantize_linear_and_says_why():
    rng = np.random.default_rng(0)
    model = parsed("""
<ir_version: 8, opset_import: ["" : 17]>
net (float[1,4,8,8] x) => (float[1,8,8,6] y) <float[8,6] m = {M}, float[8,4,3,3] c = {C}> {
    h = Conv <pads = [1,1,1,1]> (x, c)
    t = Transpose <perm = [0,2,3,1]> (h)
    y = MatMul(t, m)
}
""", M=rng.normal(0, 1, 48), C=rng.normal(0, 1, 288))
    feed = {"x": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)}
    result = run(model, "quantize-weights{format=matmulnbits,rounding=nearest,block_size=16}", [feed])
    ops = [n.op_type for n in result.model.graph]
    assert ops.count("MatMulNBits") == 1 and ops.count("DequantizeLinear") == 1
    (dq,) = [n for n in result.model.graph if n.op_type == "DequantizeLinear"]
    assert dq.outputs[0].uses()[0][0].op_type == "Reshape"  # the Conv weight's reshape back
    (record,) = result.records
    assert any("kept DequantizeLinear" in note and "Conv" in note for note in record.notes), record.notes
    assert np.all(np.isfinite(output(result.model, feed)))
