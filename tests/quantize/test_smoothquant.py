"""smoothquant: lossless rescaling that moves activation outliers into the weights before int8."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ir.constants import constant_array
from models import builders
from tests.quantize.helpers import ort_outputs, run_pipeline, sqnr, with_weights

# A pre-LN MLP block (without its residual, so that the error is the block's own): the LayerNorm output is read only by the first projection, so the scale folds
# into gamma/beta; the ReLU output gets an inserted Mul. Four LayerNorm channels are outliers (x100),
# the pattern SmoothQuant was made for.
MLP = """
<ir_version: 8, opset_import: ["" : 17]>
block (float[2,16,64] x) => (float[2,16,64] y)
    <float[64] g = {G}, float[64] beta = {BETA}, float[64,128] w1 = {W1}, float[128] b1 = {B1},
     float[128,64] w2 = {W2}, float[64] b2 = {B2}> {
    n = LayerNormalization <axis = -1> (x, g, beta)
    h = MatMul (n, w1)
    hb = Add (h, b1)
    r = Relu (hb)
    o = MatMul (r, w2)
    y = Add (o, b2)
}
"""


def mlp_model() -> ir.Model:
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.8, 1.2, 64)
    outliers = [3, 17, 40, 61]
    gamma[outliers] *= 100.0
    w1 = rng.normal(0, 1 / 8, (64, 128))
    w1[outliers] /= 100.0  # as in LLMs: huge in a few channels, yet not what the output is made of
    return with_weights(MLP, {"G": gamma, "BETA": rng.normal(0, 0.05, 64), "W1": w1,
                              "B1": rng.normal(0, 0.02, 128), "W2": rng.normal(0, 1 / 11.3, (128, 64)), "B2": rng.normal(0, 0.02, 64)})


def feeds(n, shape=(2, 16, 64), seed=0, name="x"):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def test_scale_folds_into_layernorm_and_outputs_are_unchanged():
    calib = feeds(4)
    model = mlp_model()
    reference = ort_outputs(model, calib[0])[0]
    result = run_pipeline(model, "smoothquant", calib, verify="each")  # the manager verifies the lossless pass
    (record,) = result.records
    assert record.modified and not record.rolled_back
    assert record.stats["sites smoothed (folded into LayerNormalization)"] == 1
    assert record.stats["sites smoothed (Mul inserted)"] == 1
    np.testing.assert_allclose(ort_outputs(result.model, calib[0])[0], reference, rtol=1e-4, atol=1e-4)
    (ln,) = [n for n in result.model.graph if n.op_type == "LayerNormalization"]
    gamma = constant_array(ln.inputs[1])
    assert gamma.max() / gamma.min() < 5  # measured 1.55, was ~140: the outliers moved into w1


def test_smoothing_before_int8_quantization_reduces_the_error():
    calib, held_out = feeds(8), feeds(2, seed=99)
    errors = {}
    for pipeline in ("quantize{ops=MatMul}", "smoothquant,quantize{ops=MatMul}"):
        model = mlp_model()
        reference = [ort_outputs(model, f)[0] for f in held_out]
        result = run_pipeline(model, pipeline, calib)
        errors[pipeline] = np.mean([sqnr(ref, ort_outputs(result.model, f)[0]) for ref, f in zip(reference, held_out)])
    print(errors)
    assert errors["smoothquant,quantize{ops=MatMul}"] > errors["quantize{ops=MatMul}"] + 20  # measured: 5.0 -> 34.2 dB


def test_transformer_encoder_q_k_v_share_one_scale_and_stay_exact():
    model = builders.build("transformer_encoder")
    calib = feeds(2, shape=(1, 32, 128), name="input")
    reference = ort_outputs(model, calib[0])[0]
    result = run_pipeline(model, "smoothquant{alpha=0.6}", calib, verify="each")
    (record,) = result.records
    assert record.modified and not record.rolled_back
    # Per layer: q/k/v read one LayerNorm output (one site, three layers), out_proj, linear1, linear2.
    assert record.stats["layers smoothed"] == 2 * 6
    np.testing.assert_allclose(ort_outputs(result.model, calib[0])[0], reference, rtol=1e-3, atol=1e-4)


CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
chain (float[8,16] x) => (float[8,8] y)
    <float[16,32] w0 = {W0}, float[32] b0 = {B0}, float[24,32] wg = {WG}, float[24] bg = {BG}, float[24] c = {C}, float[24,8] w2 = {W2}> {
    h = MatMul (x, w0)
    a = Add (h, b0)
    g = Gemm <transB = 1> (a, wg, bg)
    m = Mul (g, c)
    y = MatMul (m, w2)
}
"""


def test_every_fold_site_kind_stays_exact():
    rng = np.random.default_rng(4)
    model = with_weights(CHAIN, {"W0": rng.normal(0, 1, (16, 32)) * np.exp(rng.uniform(-2, 2, 32)), "B0": rng.normal(0, 1, 32),
                                 "WG": rng.normal(0, 1, (24, 32)), "BG": rng.normal(0, 1, 24), "C": np.exp(rng.uniform(-2, 2, 24)),
                                 "W2": rng.normal(0, 1, (24, 8))})
    calib = feeds(4, shape=(8, 16))
    reference = ort_outputs(model, calib[0])[0]
    result = run_pipeline(model, "smoothquant{alpha=0.8}", calib, verify="each")
    stats = result.records[0].stats
    assert stats["sites smoothed (Mul inserted)"] == 1  # x is a graph input: nothing to fold into
    assert stats["sites smoothed (folded into MatMul+Add)"] == 1  # a: into w0's columns and b0
    assert stats["sites smoothed (folded into Mul)"] == 1  # m: into c
    np.testing.assert_allclose(ort_outputs(result.model, calib[0])[0], reference, rtol=1e-4, atol=1e-3)
