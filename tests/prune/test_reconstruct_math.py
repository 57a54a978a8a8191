"""The least-squares pieces of ``passes.reconstruct`` against numpy: the ridge solution in closed form,
batch accumulation, the error without data, the output rows and bias a layer computes, and the SQNR."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from passes import reconstruct
from passes.reconstruct import NormalEquations

RNG = np.random.default_rng(7)


def data(rows=200, features=6, targets=3):
    x = RNG.standard_normal((rows, features)) * np.array([1, 2, 0.5, 3, 1, 0.1])[:features]
    y = x @ RNG.standard_normal((features, targets)) + 0.05 * RNG.standard_normal((rows, targets))
    return x.astype(np.float32), y.astype(np.float32)


def test_batches_accumulate_the_normal_equations_of_all_rows():
    x, y = data()
    whole, parts, merged = NormalEquations(6, 3), NormalEquations(6, 3), NormalEquations(6, 3)
    whole.add(x, y)
    parts.add(x[:70], y[:70])
    parts.add(x[70:], y[70:])
    other = NormalEquations(6, 3)
    other.add(x[70:], y[70:])
    merged.add(x[:70], y[:70])
    merged += other
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for equations in (whole, parts, merged):
        np.testing.assert_allclose(equations.xtx, x64.T @ x64, rtol=1e-5)
        np.testing.assert_allclose(equations.xty, x64.T @ y64, rtol=1e-5, atol=1e-4)
        assert equations.yty == pytest.approx(np.sum(y64**2), rel=1e-9) and equations.rows == 200


def test_error_is_the_squared_residual_without_the_data():
    x, y = data()
    equations = NormalEquations(6, 3)
    equations.add(x, y)
    w = RNG.standard_normal((6, 3))
    want = np.sum((x.astype(np.float64) @ w - y) ** 2)
    assert equations.error(w) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("unregularized", [(), (5,)])
@pytest.mark.parametrize("with_prior", [False, True])
def test_solve_is_the_closed_form_ridge_solution_with_a_relative_ridge(unregularized, with_prior):
    x, y = data()
    equations = NormalEquations(6, 3)
    equations.add(x, y)
    ridge = 0.05
    x64 = x.astype(np.float64)
    r = ridge * np.trace(x64.T @ x64) / 6
    penalty = np.full(6, r)
    penalty[list(unregularized)] = r * 1e-6
    prior = RNG.standard_normal((6, 3)) if with_prior else np.zeros((6, 3))
    want = np.linalg.solve(x64.T @ x64 + np.diag(penalty), x64.T @ y + penalty[:, None] * prior)
    got = equations.solve(ridge, unregularized, prior if with_prior else None)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # X^T X is summed from float32 products
    np.testing.assert_allclose(equations.penalty(ridge, unregularized), penalty, rtol=1e-5)


def test_a_singular_system_still_gets_the_least_squares_solution():
    x = np.ones((10, 2), np.float32)  # two identical features: X^T X singular, no ridge
    equations = NormalEquations(2, 1)
    equations.add(x, 2 * np.ones((10, 1), np.float32))
    w = equations.solve(0.0)
    np.testing.assert_allclose(x @ w, 2.0, rtol=1e-6)


def test_an_all_zero_input_gets_a_unit_ridge_scale():
    equations = NormalEquations(3, 1)
    equations.add(np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32))
    np.testing.assert_allclose(equations.penalty(0.5), [0.5, 0.5, 0.5])


def layer(op: str, bias: bool, **attributes):
    attrs = ", ".join(f"{k} = {v}" for k, v in attributes.items())
    shapes = {"Conv": ("float[1,2,3,3] x", "float[4,2,1,1] w = {" + ", ".join(str(i) for i in range(8)) + "}", "float[1,4,3,3] y"),
              "Gemm": ("float[2,3] x", "float[3,4] w = {" + ", ".join(str(i) for i in range(12)) + "}", "float[2,4] y")}[op]
    inits = shapes[1] + (", float[4] b = {1, -2, 3, -4}" if bias else "")
    text = (f'<ir_version: 8, opset_import: ["" : 17]>\ng ({shapes[0]}) => ({shapes[2]}) <{inits}> '
            f'{{ y = {op} {f"<{attrs}>" if attrs else ""} (x, w{", b" if bias else ""}) }}')
    return next(iter(ir.from_onnx_text(text).graph))


@pytest.mark.parametrize(("op", "bias", "attributes", "want"), [
    ("Conv", True, {}, [1, -2, 3, -4]),
    ("Conv", False, {}, [0, 0, 0, 0]),
    ("Gemm", True, {"beta": 0.5}, [0.5, -1, 1.5, -2]),
    ("Gemm", True, {}, [1, -2, 3, -4]),
])
def test_the_bias_a_layer_adds_includes_gemm_beta(op, bias, attributes, want):
    node = layer(op, bias, **attributes)
    assert reconstruct.has_bias_input(node)
    np.testing.assert_array_equal(reconstruct.bias_of(node, 4), want)


def test_output_rows_put_channels_last():
    y = RNG.standard_normal((2, 4, 3, 5))
    np.testing.assert_array_equal(reconstruct.output_rows(layer("Conv", False), y), np.transpose(y, (0, 2, 3, 1)).reshape(-1, 4))
    z = RNG.standard_normal((2, 7, 4))
    np.testing.assert_array_equal(reconstruct.output_rows(layer("Gemm", False), z), z.reshape(14, 4))


def scaled_model(factor: float, offset: float = 0.0) -> ir.Model:
    text = ('<ir_version: 8, opset_import: ["" : 17]>\ng (float[2,3] x) => (float[2,3] y, int64[2] s) '
            f'<float f = {{{factor}}}, float o = {{{offset}}}> {{ m = Mul(x, f)\n y = Add(m, o)\n s = Shape(x) }}')
    return ir.from_onnx_text(text)


def test_output_sqnr_is_signal_over_noise_power_of_the_float_outputs_in_db():
    feeds = [{"x": RNG.standard_normal((2, 3)).astype(np.float32)} for _ in range(3)]
    signal = sum(float(np.sum(f["x"].astype(np.float64) ** 2)) for f in feeds)
    noise = sum(float(np.sum((0.1 * f["x"].astype(np.float64)) ** 2)) for f in feeds)
    sqnr = reconstruct.output_sqnr_db(scaled_model(1.0), scaled_model(1.1), feeds)
    assert sqnr == pytest.approx(10 * np.log10(signal / noise), abs=1e-4)  # 20 dB; the int64 shape is not scored
    assert reconstruct.output_sqnr_db(scaled_model(1.0), scaled_model(1.0), feeds) == float("inf")
