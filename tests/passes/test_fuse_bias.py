"""fuse-bias: an Add/Sub of a constant after a layer goes into its bias; MatMul+Add on 2-D becomes Gemm."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from conftest import apply_and_compare, apply_pass, assert_same_outputs, op_counts, weights_model_text
from passes.base import create

RNG = np.random.default_rng(2)


def fuse(text: str):
    """Run fuse-bias; return (pass, result, max relative error vs. the model before)."""
    return apply_and_compare("fuse-bias", text)


CONV_IO = "(float[1,3,6,6] x) => (float[1,4,6,6] y)"


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("op", ["Add (t, a)", "Add (a, t)", "Sub (t, a)"])
def test_per_channel_constant_after_conv_becomes_its_bias(with_bias, op):
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "a": RNG.standard_normal((1, 4, 1, 1))}
    conv_inputs = "x, w"
    if with_bias:
        weights["b"] = RNG.standard_normal(4)
        conv_inputs += ", b"
    rewrite, result, error = fuse(weights_model_text(CONV_IO, weights, f"t = Conv <pads = [1,1,1,1]> ({conv_inputs})\ny = {op}"))
    assert op_counts(result.model) == {"Conv": 1}
    conv = next(iter(result.model.graph))
    assert conv.outputs[0].name == "y"
    assert len(conv.inputs) == 3
    assert rewrite.stats["biases fused"] == 1
    assert error < 1e-5


def test_scalar_after_conv_transpose_becomes_its_bias():
    weights = {"w": RNG.standard_normal((4, 3, 2, 2)), "a": np.array(0.7)}
    text = weights_model_text("(float[1,4,5,5] x) => (float[1,6,10,10] y)", weights, "t = ConvTranspose <strides = [2,2], group = 2> (x, w)\ny = Add (t, a)")
    _, result, error = fuse(text)
    assert op_counts(result.model) == {"ConvTranspose": 1}
    assert error < 1e-5


@pytest.mark.parametrize("with_c", [False, True])
def test_constant_after_gemm_goes_into_c_with_beta_folded(with_c):
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal((1, 5))}
    inputs = "x, w"
    if with_c:
        weights["c"] = RNG.standard_normal(5)
        inputs += ", c"
    text = weights_model_text("(float[2,3] x) => (float[2,5] y)", weights, f"t = Gemm <beta = 0.5> ({inputs})\ny = Add (t, a)")
    _, result, error = fuse(text)
    assert op_counts(result.model) == {"Gemm": 1}
    assert error < 1e-5


def test_constant_after_batchnorm_goes_into_its_bias():
    weights = {"scale": RNG.uniform(0.5, 2, 4), "bias": RNG.standard_normal(4), "mean": RNG.standard_normal(4),
               "var": RNG.uniform(0.5, 2, 4), "a": RNG.standard_normal((4, 1, 1))}
    text = weights_model_text("(float[1,4,3,3] x) => (float[1,4,3,3] y)", weights, "t = BatchNormalization (x, scale, bias, mean, var)\ny = Add (t, a)")
    _, result, error = fuse(text)
    assert op_counts(result.model) == {"BatchNormalization": 1}
    assert error < 1e-5


@pytest.mark.parametrize("bias_shape", [(5,), (1, 5), ()])
@pytest.mark.parametrize("op", ["Add (t, a)", "Add (a, t)", "Sub (t, a)"])
def test_matmul_and_bias_on_2d_inputs_become_gemm(bias_shape, op):
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(bias_shape)}
    text = weights_model_text("(float[2,3] x) => (float[2,5] y)", weights, f"t = MatMul (x, w)\ny = {op}")
    rewrite, result, error = fuse(text)
    assert op_counts(result.model) == {"Gemm": 1}
    assert next(iter(result.model.graph)).outputs[0].name == "y"
    assert rewrite.stats["matmul+add to gemm"] == 1
    assert error < 1e-5


def test_matmul_with_a_non_constant_weight_becomes_gemm_too():
    text = weights_model_text("(float[2,3] x, float[3,5] w) => (float[2,5] y)", {"a": RNG.standard_normal(5)}, "t = MatMul (x, w)\ny = Add (t, a)")
    _, result, error = fuse(text)
    assert op_counts(result.model) == {"Gemm": 1}
    assert error < 1e-5


def test_batched_matmul_and_bias_between_reshapes_become_one_gemm_and_fewer_nodes():
    # x [8,3] viewed as [2,4,3], projected to [2,4,5] plus a bias, then flattened back to [8,5].
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(5),
               "s3": np.array([2, 4, 3]), "s2": np.array([8, 5])}
    body = "v = Reshape (x, s3)\nt = MatMul (v, w)\nb = Add (t, a)\ny = Reshape (b, s2)"
    text = weights_model_text("(float[8,3] x) => (float[8,5] y)", weights, body).replace("float[3] s3", "int64[3] s3").replace("float[2] s2", "int64[2] s2")
    before, result, rewrite = apply_pass("fuse-bias", text)
    assert rewrite.stats["batched matmul+add to gemm"] == 1
    create("merge-consecutive")(result.model)
    create("eliminate-noop")(result.model)
    create("eliminate-dead")(result.model)
    assert [n.op_type for n in result.model.graph] == ["Gemm"]  # the Reshapes cancel out entirely
    assert_same_outputs(before, result.model, max_rel=1e-5)


def test_batched_matmul_with_a_dynamic_batch_keeps_it_as_minus_one():
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(5), "s3": np.array([0, 4, 3])}
    body = "v = Reshape (x, s3)\nt = MatMul (v, w)\ny = Add (t, a)"
    text = weights_model_text("(float[N,12] x) => (float[N,4,5] y)", weights, body).replace("float[3] s3", "int64[3] s3")
    before, result, rewrite = apply_pass("fuse-bias", text)
    create("merge-consecutive")(result.model)
    create("eliminate-dead")(result.model)
    assert [n.op_type for n in result.model.graph] == ["Reshape", "Gemm", "Reshape"]
    unflat = list(result.model.graph)[-1]
    assert ir.convenience.get_const_tensor(unflat.inputs[1]).numpy().tolist() == [-1, 4, 5]
    for n in (1, 3):
        feed = {"x": RNG.standard_normal((n, 12)).astype(np.float32)}
        assert_same_outputs(before, result.model, max_rel=1e-5, feeds=feed)


# Where the rule must not fire --------------------------------------------------------------------


def test_matmul_on_3d_input_without_a_neighbouring_reshape_is_left_alone():
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(5)}
    _, result, _ = fuse(weights_model_text("(float[2,4,3] x) => (float[2,4,5] y)", weights, "t = MatMul (x, w)\ny = Add (t, a)"))
    assert not result.modified


def test_constant_minus_layer_output_is_left_alone():
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "a": RNG.standard_normal((1, 4, 1, 1))}
    _, result, _ = fuse(weights_model_text(CONV_IO, weights, "t = Conv <pads = [1,1,1,1]> (x, w)\ny = Sub (a, t)"))
    assert not result.modified


def test_spatially_varying_constant_is_left_alone():
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "a": RNG.standard_normal((1, 4, 6, 6))}
    _, result, _ = fuse(weights_model_text(CONV_IO, weights, "t = Conv <pads = [1,1,1,1]> (x, w)\ny = Add (t, a)"))
    assert not result.modified


def test_layer_output_that_is_a_graph_output_is_left_alone():
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "a": RNG.standard_normal((1, 4, 1, 1))}
    text = weights_model_text("(float[1,3,6,6] x) => (float[1,4,6,6] y, float[1,4,6,6] t)", weights, "t = Conv <pads = [1,1,1,1]> (x, w)\ny = Add (t, a)")
    _, result, _ = fuse(text)
    assert not result.modified


def test_shared_bias_is_refused_and_counted():
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "v": RNG.standard_normal((4, 3, 3, 3)), "b": RNG.standard_normal(4),
               "a": RNG.standard_normal((1, 4, 1, 1))}
    text = weights_model_text(
        "(float[1,3,6,6] x) => (float[1,4,6,6] y, float[1,4,6,6] z)",
        weights,
        "t = Conv <pads = [1,1,1,1]> (x, w, b)\nz = Conv <pads = [1,1,1,1]> (x, v, b)\ny = Add (t, a)",
    )
    rewrite, result, _ = fuse(text)
    assert not result.modified
    assert rewrite.stats["refused: shared weight"] == 1


def test_second_run_reports_no_change():
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(5)}
    model = ir.from_onnx_text(weights_model_text("(float[2,3] x) => (float[2,5] y)", weights, "t = MatMul (x, w)\ny = Add (t, a)"))
    assert create("fuse-bias")(model).modified
    assert not create("fuse-bias")(model).modified


def test_add_in_a_branch_whose_output_it_is_is_left_alone():
    # The branch output would become the main graph's Conv output: ONNX Runtime rejects a subgraph
    # output that is an outer-scope value.
    weights = {"w": RNG.standard_normal((4, 3, 3, 3)), "a": RNG.standard_normal((1, 4, 1, 1))}
    body = """t = Conv <pads = [1,1,1,1]> (x, w)
    y = If (c) <
        then_branch = then_g () => (float[1,4,6,6] s) { s = Add (t, a) },
        else_branch = else_g () => (float[1,4,6,6] n) { n = Neg (x2) }
    >"""
    text = weights_model_text("(bool c, float[1,3,6,6] x, float[1,4,6,6] x2) => (float[1,4,6,6] y)", weights, body)
    _, result, _ = apply_pass("fuse-bias", text)
    assert not result.modified


def test_matmul_outside_the_branch_of_its_add_is_left_alone():
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(5)}
    body = """t = MatMul (x, w)
    y = If (c) <
        then_branch = then_g () => (float[2,5] r) { s = Add (t, a)  r = Relu (s) },
        else_branch = else_g () => (float[2,5] n) { n = Neg (x2) }
    >"""
    text = weights_model_text("(bool c, float[2,3] x, float[2,5] x2) => (float[2,5] y)", weights, body)
    _, result, _ = apply_pass("fuse-bias", text)
    assert not result.modified


PARALLEL_CONVS = "a = Conv <pads = [1,1,1,1]> (x, w1)\nsa = Add (a, c1)\nb = Conv <pads = [1,1,1,1]> (x, w2)\nsb = Sub (b, c2)\ny = Mul (sa, sb)"


def test_every_bias_fused_in_a_model_is_counted():
    weights = {"w1": RNG.standard_normal((4, 3, 3, 3)), "w2": RNG.standard_normal((4, 3, 3, 3)),
               "c1": RNG.standard_normal((1, 4, 1, 1)), "c2": RNG.standard_normal((1, 4, 1, 1))}
    rewrite, result, error = fuse(weights_model_text(CONV_IO, weights, PARALLEL_CONVS))
    assert result.modified and op_counts(result.model) == {"Conv": 2, "Mul": 1}
    assert rewrite.stats["biases fused"] == 2
    assert error < 1e-5


@pytest.mark.parametrize("opset", [7, 13])
def test_every_matmul_and_add_becomes_gemm_from_opset_7_and_is_counted(opset):
    weights = {"w1": RNG.standard_normal((3, 5)), "w2": RNG.standard_normal((3, 5)), "a1": RNG.standard_normal(5), "a2": RNG.standard_normal(5)}
    body = "t1 = MatMul (x, w1)\ns1 = Add (t1, a1)\nt2 = MatMul (x, w2)\ns2 = Add (t2, a2)\ny = Mul (s1, s2)"
    text = weights_model_text("(float[2,3] x) => (float[2,5] y)", weights, body).replace('"" : 17', f'"" : {opset}')
    rewrite, result, error = fuse(text)
    assert f'"" : {opset}' in text and result.modified  # opset 7: the first Gemm that broadcasts C
    assert op_counts(result.model) == {"Gemm": 2, "Mul": 1}
    assert rewrite.stats["matmul+add to gemm"] == 2
    assert error < 1e-5


def batched(body: str, io: str = "(float[2,4,3] x) => (float[8,5] y)"):
    weights = {"w": RNG.standard_normal((3, 5)), "a": RNG.standard_normal(5), "s2": np.array([8, 5]), "s3": np.array([2, 4, 3]),
               "zero": np.array([0])}
    text = weights_model_text(io, weights, body)
    return text.replace("float[2] s2", "int64[2] s2").replace("float[3] s3", "int64[3] s3").replace("float[1] zero", "int64[1] zero")


@pytest.mark.parametrize(("body", "io", "fused"), [
    # the Add's one consumer is a Reshape (data input): the Gemm's own reshape back merges with it
    ("t = MatMul (x, w)\nb = Add (t, a)\ny = Reshape (b, s2)", "(float[2,4,3] x) => (float[8,5] y)", True),
    # ... its consumer is a Relu, or it also is a graph output: nothing to merge with
    ("t = MatMul (x, w)\nb = Add (t, a)\nr = Relu (b)\ny = Reshape (r, s2)", "(float[2,4,3] x) => (float[8,5] y)", False),
    ("t = MatMul (x, w)\nb = Add (t, a)\ny = Reshape (b, s2)", "(float[2,4,3] x) => (float[8,5] y, float[2,4,5] b)", False),
    # ... it has two Reshape consumers: not one to merge with
    ("t = MatMul (x, w)\nb = Add (t, a)\ny = Reshape (b, s2)\nz = Reshape (b, s2)", "(float[2,4,3] x) => (float[8,5] y, float[8,5] z)", False),
    # the MatMul reads a private Unsqueeze / Flatten output: the flattening merges with it
    ("v = Unsqueeze (x8, zero)\nt = MatMul (v, w)\ny = Add (t, a)", "(float[8,3] x8) => (float[1,8,5] y)", True),
    # ... a view whose output is also a graph output is not private
    ("v = Unsqueeze (x8, zero)\nt = MatMul (v, w)\ny = Add (t, a)", "(float[8,3] x8) => (float[1,8,5] y, float[1,8,3] v)", False),
])
def test_a_batched_matmul_becomes_gemm_only_where_its_reshapes_merge_with_a_neighbour(body, io, fused):
    before, result, rewrite = apply_pass("fuse-bias", batched(body, io))
    assert rewrite.stats["batched matmul+add to gemm"] == (1 if fused else 0)
    assert_same_outputs(before, result.model, max_rel=1e-5)
