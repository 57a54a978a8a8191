"""fold-batchnorm against numpy: the folded weight and bias are ``W * s`` and ``(b - mean) * s + beta``
with ``s = scale / sqrt(var + epsilon)``, at the default epsilon (no attribute: 1e-5) and at edge
epsilons, where a wrong default or a dropped epsilon changes the numbers."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from conftest import weights_model_text
from ir.constants import constant_array
from passes.base import create

ONNX_DEFAULT_EPSILON = 1e-5  # BatchNormalization's epsilon when the attribute is absent (ONNX spec)


def folded(epsilon: float | None, var: np.ndarray, op: str = "Conv"):
    rng = np.random.default_rng(7)
    channels = var.size
    params = {"scale": rng.uniform(0.5, 2.0, channels), "bias": rng.standard_normal(channels),
              "mean": rng.standard_normal(channels), "var": var}
    attribute = "" if epsilon is None else f" <epsilon = {epsilon!r}>"
    if op == "Conv":
        weights = {"w": rng.standard_normal((channels, 2, 3, 3)), "b": rng.standard_normal(channels), **params}
        signature, layer = "(float[1,2,5,5] x) => (float[1,4,5,5] y)", "t = Conv <pads = [1,1,1,1]> (x, w, b)"
    else:  # Gemm with transB = 1: W is [out, in], the BN scales its rows
        weights = {"w": rng.standard_normal((channels, 3)), "b": rng.standard_normal(channels), **params}
        signature, layer = "(float[2,3] x) => (float[2,4] y)", "t = Gemm <transB = 1> (x, w, b)"
    text = weights_model_text(signature, weights, f"{layer}\ny = BatchNormalization{attribute} (t, scale, bias, mean, var)")
    model = ir.from_onnx_text(text)
    assert create("fold-batchnorm")(model).modified
    (node,) = list(model.graph)
    # the weights as the model holds them (float32), in float64
    arrays = {k: np.asarray(v, np.float32).astype(np.float64) for k, v in weights.items()}
    eps = ONNX_DEFAULT_EPSILON if epsilon is None else epsilon
    s = arrays["scale"] / np.sqrt(arrays["var"] + eps)
    want_w = arrays["w"] * s.reshape(-1, *([1] * (arrays["w"].ndim - 1)))
    want_b = (arrays["b"] - arrays["mean"]) * s + arrays["bias"]
    return constant_array(node.inputs[1]), constant_array(node.inputs[2]), want_w, want_b


VAR = np.array([0.5, 1.0, 2.0, 0.25])


@pytest.mark.parametrize("op", ["Conv", "Gemm"])
@pytest.mark.parametrize(("epsilon", "var"), [
    (None, VAR),                                      # the default epsilon
    (None, np.array([0.0, 1e-6, 1e-5, 3e-5])),        # default epsilon where it dominates the variance
    (1e-3, np.array([0.0, 1e-4, 1e-3, 1.0])),
    (0.5, VAR),
    (1e-12, np.array([1e-9, 1e-6, 1.0, 4.0])),        # a tiny epsilon: the variance alone
])
def test_folded_weight_and_bias_match_numpy(op, epsilon, var):
    w, b, want_w, want_b = folded(epsilon, var, op)
    np.testing.assert_allclose(w, want_w, rtol=2e-6, atol=0)
    np.testing.assert_allclose(b, want_b, rtol=2e-6, atol=1e-6 * np.abs(want_b).max())



def test_two_batchnorms_fold_and_are_counted():
    rng = np.random.default_rng(1)
    weights = {"w1": rng.standard_normal((4, 2, 1, 1)), "w2": rng.standard_normal((4, 4, 1, 1)),
               **{f"{k}{i}": rng.uniform(0.5, 2.0, 4) for i in (1, 2) for k in ("scale", "bias", "mean", "var")}}
    body = "\n".join([
        "a = Conv (x, w1)", "b = BatchNormalization (a, scale1, bias1, mean1, var1)",
        "c = Conv (b, w2)", "y = BatchNormalization (c, scale2, bias2, mean2, var2)"])
    model = ir.from_onnx_text(weights_model_text("(float[1,2,3,3] x) => (float[1,4,3,3] y)", weights, body))
    rewrite = create("fold-batchnorm")
    assert rewrite(model).modified
    assert rewrite.stats["batchnorms folded"] == 2 and [n.op_type for n in model.graph] == ["Conv", "Conv"]
