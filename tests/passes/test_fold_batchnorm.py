"""fold-batchnorm: an inference BatchNormalization folds into the Conv/ConvTranspose/Gemm/MatMul before it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from conftest import apply_and_compare, assert_same_outputs, initializer_text, op_counts, real_model, weights_model_text
from ir import io
from passes.base import create

RNG = np.random.default_rng(0)


def bn_params(channels: int, dtype=np.float32) -> dict[str, np.ndarray]:
    return {
        "scale": RNG.uniform(0.5, 2.0, channels).astype(dtype),
        "bias": RNG.standard_normal(channels).astype(dtype),
        "mean": RNG.standard_normal(channels).astype(dtype),
        "var": RNG.uniform(0.1, 2.0, channels).astype(dtype),
    }


def fold(text: str, pass_name: str = "fold-batchnorm"):
    """Run the pass; return (pass, result, max relative error vs. the model before)."""
    return apply_and_compare(pass_name, text)


BN = "y = BatchNormalization <epsilon = 0.5> (t, scale, bias, mean, var)"


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("group", [1, 2, 4])
def test_conv_then_batchnorm_becomes_one_conv(with_bias, group):
    weights = {"w": RNG.standard_normal((4, 4 // group, 3, 3)).astype(np.float32), **bn_params(4)}
    conv_inputs = "x, w"
    if with_bias:
        weights["b"] = RNG.standard_normal(4).astype(np.float32)
        conv_inputs += ", b"
    text = weights_model_text(
        "(float[1,4,6,6] x) => (float[1,4,6,6] y)", weights, f"t = Conv <pads = [1,1,1,1], group = {group}> ({conv_inputs})\n{BN}"
    )
    rewrite, result, error = fold(text)
    assert result.modified
    assert op_counts(result.model) == {"Conv": 1}
    assert rewrite.stats["batchnorms folded"] == 1
    assert error < 1e-5
    conv = next(iter(result.model.graph))
    assert conv.outputs[0].name == "y"  # the graph output keeps its name
    assert len(conv.inputs) == 3


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_output_channels_are_axis_1_per_group(group):
    # ConvTranspose W is [C_in, C_out/group, k, k]: 4 input channels, 6 output channels.
    weights = {"w": RNG.standard_normal((4, 6 // group, 3, 3)).astype(np.float32), **bn_params(6)}
    text = weights_model_text(
        "(float[1,4,5,5] x) => (float[1,6,11,11] y)", weights, f"t = ConvTranspose <strides = [2,2], group = {group}> (x, w)\n{BN}"
    )
    _, result, error = fold(text)
    assert op_counts(result.model) == {"ConvTranspose": 1}
    assert error < 1e-5


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("with_c", [False, True])
def test_gemm_then_batchnorm_respects_trans_b_and_beta(trans_b, with_c):
    w_shape = (5, 3) if trans_b else (3, 5)
    weights = {"w": RNG.standard_normal(w_shape).astype(np.float32), **bn_params(5)}
    gemm_inputs = "x, w"
    if with_c:
        weights["c"] = RNG.standard_normal(5).astype(np.float32)
        gemm_inputs += ", c"
    text = weights_model_text(
        "(float[2,3] x) => (float[2,5] y)", weights, f"t = Gemm <transB = {trans_b}, alpha = 0.7, beta = 1.5> ({gemm_inputs})\n{BN}"
    )
    _, result, error = fold(text)
    assert op_counts(result.model) == {"Gemm": 1}
    assert error < 1e-5


def test_matmul_then_batchnorm_becomes_matmul_and_bias_add():
    weights = {"w": RNG.standard_normal((3, 5)).astype(np.float32), **bn_params(5)}
    text = weights_model_text("(float[2,3] x) => (float[2,5] y)", weights, f"t = MatMul (x, w)\n{BN}")
    _, result, error = fold(text)
    assert op_counts(result.model) == {"MatMul": 1, "Add": 1}
    assert error < 1e-5


def test_float16_weights_stay_float16():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float16), **bn_params(4, np.float16)}
    text = weights_model_text("(float16[1,3,4,4] x) => (float16[1,4,4,4] y)", weights, f"t = Conv (x, w)\n{BN}")
    _, result, error = fold(text)
    conv = next(iter(result.model.graph))
    assert [conv.inputs[i].const_value.dtype for i in (1, 2)] == [ir.DataType.FLOAT16] * 2
    assert error < 2e-3  # float16 rounding


def test_weights_in_constant_nodes_are_folded():
    # PP-OCR style: the weight comes from a Constant node, not an initializer.
    w = RNG.standard_normal((4, 3, 1, 1)).astype(np.float32)
    text = weights_model_text(
        "(float[1,3,4,4] x) => (float[1,4,4,4] y)",
        bn_params(4),
        f"w = Constant <value = {initializer_text('w', w)}> ()\nt = Conv (x, w)\n{BN}",
    )
    _, result, error = fold(text)
    assert op_counts(result.model) == {"Conv": 1}
    assert error < 1e-5


def test_shared_weight_is_refused_and_counted():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **bn_params(4)}
    text = weights_model_text(
        "(float[1,3,4,4] x) => (float[1,4,4,4] y, float[1,4,4,4] z)",
        weights,
        f"t = Conv (x, w)\nz = Conv (x, w)\n{BN}",
    )
    rewrite, result, _ = fold(text)
    assert not result.modified
    assert rewrite.stats["refused: shared weight"] == 1


def test_conv_output_used_elsewhere_is_not_folded():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **bn_params(4)}
    text = weights_model_text("(float[1,3,4,4] x) => (float[1,4,4,4] y, float[1,4,4,4] t)", weights, f"t = Conv (x, w)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified


def test_batchnorm_after_a_non_linear_op_is_left_alone():
    text = weights_model_text("(float[1,4,4,4] x) => (float[1,4,4,4] y)", bn_params(4), f"t = Relu (x)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified
    assert op_counts(result.model) == {"Relu": 1, "BatchNormalization": 1}


def test_batchnorm_with_non_constant_statistics_is_left_alone():
    params = bn_params(4)
    del params["mean"]
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **params}
    text = weights_model_text("(float[1,3,4,4] x, float[4] mean) => (float[1,4,4,4] y)", weights, f"t = Conv (x, w)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified


def test_matmul_on_3d_input_is_left_alone():
    # BatchNormalization normalizes axis 1, which is not MatMul's feature (last) axis here.
    weights = {"w": RNG.standard_normal((3, 5)).astype(np.float32), **bn_params(2)}
    text = weights_model_text("(float[4,2,3] x) => (float[4,2,5] y)", weights, f"t = MatMul (x, w)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified


def test_second_run_reports_no_change():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **bn_params(4)}
    model = ir.from_onnx_text(weights_model_text("(float[1,3,4,4] x) => (float[1,4,4,4] y)", weights, f"t = Conv (x, w)\n{BN}"))
    assert create("fold-batchnorm")(model).modified
    assert not create("fold-batchnorm")(model).modified


def test_batchnorm_after_a_custom_op_is_left_alone_with_a_note():
    text = weights_model_text(
        "(float[1,4,4,4] x) => (float[1,4,4,4] y)", bn_params(4), f"t = com.example.Magic (x)\n{BN}"
    ).replace('["" : 17]', '["" : 17, "com.example" : 1]')
    model = ir.from_onnx_text(text)
    rewrite = create("fold-batchnorm")
    assert not rewrite(model).modified
    assert any("unknown custom op left alone" in note for note in rewrite.notes)


def test_real_resnet50_loses_every_batchnorm():
    model = real_model("light_resnet50")
    before = io.copy_model(model)
    # What must remain: the nodes on the data path (reachable from the graph input), less the
    # BatchNormalizations; everything else computes constants (the weights' ConstantOfShape nodes).
    data_path, frontier = set(), [v for v in model.graph.inputs if not v.is_initializer()]
    while frontier:
        for user, _ in frontier.pop().uses():
            if user not in data_path:
                data_path.add(user)
                frontier.extend(user.outputs)
    batchnorms = sum(1 for node in data_path if node.op_type == "BatchNormalization")
    for name in ("fold-constants", "fold-batchnorm", "eliminate-dead"):
        create(name)(model)
    counts = op_counts(model)
    assert "BatchNormalization" not in counts and batchnorms > 0
    assert sum(counts.values()) == len(data_path) - batchnorms
    assert_same_outputs(before, model, max_rel=1e-5)


@pytest.mark.real_models
def test_real_ppocr_classifier_loses_every_batchnorm():
    model = real_model("ppocr-cls")
    before = io.copy_model(model)
    create("fold-constants")(model)
    rewrite = create("fold-batchnorm")
    rewrite(model)
    assert rewrite.stats["batchnorms folded"] == 35
    assert "BatchNormalization" not in op_counts(model)
    assert_same_outputs(before, model, max_rel=1e-5)
