"""fold-scale: Mul/Div by a constant after a layer, and Mul/Div/Add/Sub before a Conv, fold into weights."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import apply_and_compare, op_counts, weights_model_text

RNG = np.random.default_rng(1)


def fold(text: str):
    """Run fold-scale; return (pass, result, max relative error vs. the model before)."""
    return apply_and_compare("fold-scale", text)


def conv_weights(out_channels=4, in_per_group=3):
    return {"w": RNG.standard_normal((out_channels, in_per_group, 3, 3)), "b": RNG.standard_normal(out_channels)}


# After a layer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "c_shape, op",
    [((1, 4, 1, 1), "Mul (t, c)"), ((4, 1, 1), "Mul (c, t)"), ((), "Mul (t, c)"), ((1, 4, 1, 1), "Div (t, c)"), ((1,), "Div (t, c)")],
)
def test_per_channel_or_scalar_scale_after_conv_goes_into_weight_and_bias(c_shape, op):
    weights = {**conv_weights(), "c": RNG.uniform(0.5, 2.0, c_shape)}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y)", weights, f"t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = {op}")
    rewrite, result, error = fold(text)
    assert op_counts(result.model) == {"Conv": 1}
    assert next(iter(result.model.graph)).outputs[0].name == "y"
    assert rewrite.stats["scales folded after a layer"] == 1
    assert error < 1e-5


def test_scale_after_grouped_conv_transpose():
    weights = {"w": RNG.standard_normal((4, 3, 2, 2)), "c": RNG.uniform(0.5, 2.0, (1, 6, 1, 1))}
    text = weights_model_text("(float[1,4,5,5] x) => (float[1,6,10,10] y)", weights, "t = ConvTranspose <strides = [2,2], group = 2> (x, w)\ny = Mul (t, c)")
    _, result, error = fold(text)
    assert op_counts(result.model) == {"ConvTranspose": 1}
    assert error < 1e-5


@pytest.mark.parametrize("trans_b", [0, 1])
def test_scale_after_gemm_goes_into_columns_and_c(trans_b):
    weights = {"w": RNG.standard_normal((5, 3) if trans_b else (3, 5)), "c": RNG.standard_normal(5), "s": RNG.uniform(0.5, 2, (1, 5))}
    text = weights_model_text("(float[2,3] x) => (float[2,5] y)", weights, f"t = Gemm <transB = {trans_b}, beta = 0.5> (x, w, c)\ny = Mul (t, s)")
    _, result, error = fold(text)
    assert op_counts(result.model) == {"Gemm": 1}
    assert error < 1e-5


def test_scale_after_matmul_on_3d_input_goes_into_weight_columns():
    weights = {"w": RNG.standard_normal((3, 5)), "s": RNG.uniform(0.5, 2, 5)}
    text = weights_model_text("(float[2,4,3] x) => (float[2,4,5] y)", weights, "t = MatMul (x, w)\ny = Mul (t, s)")
    _, result, error = fold(text)
    assert op_counts(result.model) == {"MatMul": 1}
    assert error < 1e-5


def test_scale_after_batchnorm_goes_into_its_scale_and_bias():
    weights = {"scale": RNG.uniform(0.5, 2, 4), "bias": RNG.standard_normal(4), "mean": RNG.standard_normal(4),
               "var": RNG.uniform(0.5, 2, 4), "s": RNG.uniform(0.5, 2, (1, 4, 1, 1))}
    text = weights_model_text("(float[1,4,3,3] x) => (float[1,4,3,3] y)", weights, "t = BatchNormalization (x, scale, bias, mean, var)\ny = Mul (t, s)")
    _, result, error = fold(text)
    assert op_counts(result.model) == {"BatchNormalization": 1}
    assert error < 1e-5


# Before a Conv ------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", [1, 2, 6])
@pytest.mark.parametrize("op", ["Mul (x, c)", "Mul (c, x)", "Div (x, c)"])
def test_per_input_channel_scale_before_a_padded_conv_goes_into_weight(group, op):
    weights = {**conv_weights(6, 6 // group), "c": RNG.uniform(0.5, 2, (1, 6, 1, 1))}
    text = weights_model_text("(float[1,6,5,5] x) => (float[1,6,5,5] y)", weights, f"t = {op}\ny = Conv <pads = [1,1,1,1], group = {group}> (t, w, b)")
    rewrite, result, error = fold(text)
    assert op_counts(result.model) == {"Conv": 1}
    assert rewrite.stats["scales folded into a following conv"] == 1
    assert error < 1e-5


@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("op", ["Add (x, c)", "Add (c, x)", "Sub (x, c)"])
def test_shift_before_an_unpadded_conv_goes_into_bias(group, op):
    weights = {"w": RNG.standard_normal((6, 6 // group, 3, 3)), "c": RNG.standard_normal((1, 6, 1, 1))}
    text = weights_model_text("(float[1,6,5,5] x) => (float[1,6,2,2] y)", weights, f"t = {op}\ny = Conv <strides = [2,2], group = {group}> (t, w)")
    rewrite, result, error = fold(text)
    assert op_counts(result.model) == {"Conv": 1}
    assert rewrite.stats["shifts folded into a following conv"] == 1
    assert error < 1e-5


def test_shift_before_a_padded_conv_is_not_folded():
    # The zero border would not have been shifted: not exact.
    weights = {**conv_weights(), "c": RNG.standard_normal((1, 3, 1, 1))}
    text = weights_model_text("(float[1,3,5,5] x) => (float[1,4,5,5] y)", weights, "t = Add (x, c)\ny = Conv <pads = [1,1,1,1]> (t, w, b)")
    _, result, _ = fold(text)
    assert not result.modified


# Where the rule must not fire --------------------------------------------------------------------


def test_spatially_varying_constant_is_not_folded():
    weights = {**conv_weights(), "c": RNG.uniform(0.5, 2, (1, 4, 6, 6))}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y)", weights, "t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Mul (t, c)")
    _, result, _ = fold(text)
    assert not result.modified


def test_constant_that_would_broadcast_the_output_up_is_not_folded():
    weights = {**conv_weights(), "c": RNG.uniform(0.5, 2, (2, 1, 1, 1))}
    text = weights_model_text("(float[1,3,6,6] x) => (float[2,4,6,6] y)", weights, "t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Mul (t, c)")
    _, result, _ = fold(text)
    assert not result.modified


def test_constant_divided_by_the_layer_output_is_not_folded():
    weights = {**conv_weights(), "c": RNG.uniform(0.5, 2, (1, 4, 1, 1))}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y)", weights, "t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Div (c, t)")
    _, result, _ = fold(text)
    assert not result.modified


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the model itself divides by zero
def test_division_by_zero_is_not_folded():
    weights = {**conv_weights(), "c": np.array([1.0, 0.0, 2.0, 3.0]).reshape(1, 4, 1, 1)}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y)", weights, "t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Div (t, c)")
    _, result, _ = fold(text)
    assert not result.modified


def test_layer_output_with_another_use_is_not_folded():
    weights = {**conv_weights(), "c": RNG.uniform(0.5, 2, (1, 4, 1, 1))}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y, float[1,4,6,6] t)", weights, "t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Mul (t, c)")
    _, result, _ = fold(text)
    assert not result.modified


def test_shared_weight_is_refused_and_counted():
    weights = {**conv_weights(), "c": RNG.uniform(0.5, 2, (1, 4, 1, 1))}
    text = weights_model_text(
        "(float[1,3,6,6] x) => (float[1,4,6,6] y, float[1,4,6,6] z)",
        weights,
        "t = Conv <pads = [1,1,1,1]> (x, w, b)\nz = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Mul (t, c)",
    )
    rewrite, result, _ = fold(text)
    assert not result.modified
    assert rewrite.stats["refused: shared weight"] == 1


def test_add_after_conv_is_left_to_fuse_bias():
    weights = {**conv_weights(), "c": RNG.standard_normal((1, 4, 1, 1))}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y)", weights, "t = Conv <pads = [1,1,1,1]> (x, w, b)\ny = Add (t, c)")
    _, result, _ = fold(text)
    assert not result.modified


PARALLEL_AFTER = "a = Conv <pads = [1,1,1,1]> (x, w1, b1)\nsa = Mul (a, c1)\nb = Conv <pads = [1,1,1,1]> (x, w2, b2)\nsb = Div (b, c2)\ny = Add (sa, sb)"
PARALLEL_BEFORE = "ma = Mul (x, d1)\na = Conv <pads = [1,1,1,1]> (ma, w1, b1)\nmb = Div (x, d2)\nb = Conv <pads = [1,1,1,1]> (mb, w2, b2)\ny = Add (a, b)"


@pytest.mark.parametrize(("body", "stat"), [(PARALLEL_AFTER, "scales folded after a layer"), (PARALLEL_BEFORE, "scales folded into a following conv")])
def test_every_fold_in_a_model_is_counted(body, stat):
    weights = {"w1": RNG.standard_normal((4, 3, 3, 3)), "b1": RNG.standard_normal(4), "w2": RNG.standard_normal((4, 3, 3, 3)),
               "b2": RNG.standard_normal(4), "c1": RNG.uniform(0.5, 2, (1, 4, 1, 1)), "c2": RNG.uniform(0.5, 2, (1, 4, 1, 1)),
               "d1": RNG.uniform(0.5, 2, (1, 3, 1, 1)), "d2": RNG.uniform(0.5, 2, (1, 3, 1, 1))}
    rewrite, result, error = fold(weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y)", weights, body))
    assert result.modified and op_counts(result.model) == {"Conv": 2, "Add": 1}
    assert rewrite.stats[stat] == 2
    assert error < 1e-5


@pytest.mark.parametrize(("auto_pad", "folded"), [("VALID", True), ("SAME_UPPER", False), ("SAME_LOWER", False)])
def test_a_shift_folds_only_before_a_conv_that_pads_nothing(auto_pad, folded):
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "c": RNG.standard_normal((1, 3, 1, 1))}
    size = 4 if auto_pad == "VALID" else 6
    text = weights_model_text(f"(float[1,3,6,6] x) => (float[1,4,{size},{size}] y)", weights,
                              f't = Add (x, c)\ny = Conv <auto_pad = "{auto_pad}"> (t, w)')
    rewrite, result, error = fold(text)
    assert result.modified == folded
    assert op_counts(result.model) == ({"Conv": 1} if folded else {"Add": 1, "Conv": 1})
    assert error < 1e-5


@pytest.mark.parametrize(("body", "io", "c_shape"), [
    ("t = Div (x, c)\ny = Conv <pads = [1,1,1,1]> (t, w, b)", "(float[1,3,6,6] x) => (float[1,4,6,6] y)", "zero"),  # x / 0
    ("t = Div (c, x)\ny = Conv <pads = [1,1,1,1]> (t, w, b)", "(float[1,3,6,6] x) => (float[1,4,6,6] y)", (1, 3, 1, 1)),
    ("t = Sub (c, x)\ny = Conv (t, w, b)", "(float[1,3,6,6] x) => (float[1,4,4,4] y)", (1, 3, 1, 1)),
    ("t = Sub (x, c)\ny = Conv <pads = [1,1,1,1]> (t, w, b)", "(float[1,3,6,6] x) => (float[1,4,6,6] y)", (1, 3, 1, 1)),
    ("t = Mul (x, c)\ny = Conv <pads = [1,1,1,1]> (t, w, b)", "(float[3,6,6] x) => (float[1,4,6,6] y)", (1, 3, 1, 1)),  # Mul broadcasts x up
])
def test_what_is_not_a_scale_or_shift_of_the_conv_input_is_not_folded(body, io, c_shape):
    c = np.array([1.0, 0.0, 2.0]).reshape(1, 3, 1, 1) if c_shape == "zero" else RNG.uniform(0.5, 2, c_shape)
    rewrite, result, error = fold(weights_model_text(io, {**conv_weights(), "c": c}, body))
    assert not result.modified and sum(rewrite.stats.values()) == 0
    assert error < 1e-5


@pytest.mark.parametrize("op", ["Mul (x, c)", "Div (x, c)", "Add (x, c)", "Sub (x, c)"])
def test_scale_or_shift_before_a_1d_conv_folds(op):
    weights = {"w": RNG.standard_normal((4, 3, 3)), "b": RNG.standard_normal(4), "c": RNG.uniform(0.5, 2, (1, 3, 1))}
    rewrite, result, error = fold(weights_model_text("(float[1,3,8] x) => (float[1,4,6] y)", weights, f"t = {op}\ny = Conv (t, w, b)"))
    assert result.modified and op_counts(result.model) == {"Conv": 1}
    assert error < 1e-5
