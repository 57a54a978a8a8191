"""fold-batchnorm: an inference BatchNormalization folds into the Conv/ConvTranspose/Gemm/MatMul before it."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import io, runtime, shapes
from passes.base import create

RNG = np.random.default_rng(0)
TYPE_NAMES = {np.float32: "float", np.float16: "float16", np.int64: "int64"}


def literal(name: str, array: np.ndarray) -> str:
    """An initializer declaration for ONNX text."""
    type_name = TYPE_NAMES[array.dtype.type]
    dims = ",".join(map(str, array.shape))
    # The text format spells float16 values as their bit patterns.
    raw = array.view(np.uint16) if array.dtype == np.float16 else array
    values = ",".join(repr(v.item()) for v in raw.ravel())
    return f"{type_name}[{dims}] {name} = {{{values}}}"


def bn_params(channels: int, dtype=np.float32) -> dict[str, np.ndarray]:
    return {
        "scale": RNG.uniform(0.5, 2.0, channels).astype(dtype),
        "bias": RNG.standard_normal(channels).astype(dtype),
        "mean": RNG.standard_normal(channels).astype(dtype),
        "var": RNG.uniform(0.1, 2.0, channels).astype(dtype),
    }


def model_text(signature: str, weights: dict[str, np.ndarray], body: str, opset: int = 17) -> str:
    inits = ", ".join(literal(name, array) for name, array in weights.items())
    return f'<ir_version: 8, opset_import: ["" : {opset}]>\ng {signature} <{inits}> {{\n{body}\n}}'


def fold(text: str, pass_name: str = "fold-batchnorm"):
    """Run the pass on the model; return (pass, model after, max relative error vs. the model before)."""
    model = ir.from_onnx_text(text)
    before = io.copy_model(model)
    rewrite = create(pass_name)
    result = rewrite(model)
    feeds = runtime.generate_inputs(before)
    error = runtime.compare(runtime.run(before, feeds), runtime.run(result.model, feeds))["max_rel"]
    return rewrite, result, error


def op_types(model: ir.Model) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph)


BN = "y = BatchNormalization <epsilon = 0.5> (t, scale, bias, mean, var)"


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("group", [1, 2, 4])
def test_conv_then_batchnorm_becomes_one_conv(with_bias, group):
    weights = {"w": RNG.standard_normal((4, 4 // group, 3, 3)).astype(np.float32), **bn_params(4)}
    conv_inputs = "x, w"
    if with_bias:
        weights["b"] = RNG.standard_normal(4).astype(np.float32)
        conv_inputs += ", b"
    text = model_text(
        "(float[1,4,6,6] x) => (float[1,4,6,6] y)", weights, f"t = Conv <pads = [1,1,1,1], group = {group}> ({conv_inputs})\n{BN}"
    )
    rewrite, result, error = fold(text)
    assert result.modified
    assert op_types(result.model) == {"Conv": 1}
    assert rewrite.stats["batchnorms folded"] == 1
    assert error < 1e-5
    conv = next(iter(result.model.graph))
    assert conv.outputs[0].name == "y"  # the graph output keeps its name
    assert len(conv.inputs) == 3


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_output_channels_are_axis_1_per_group(group):
    # ConvTranspose W is [C_in, C_out/group, k, k]: 4 input channels, 6 output channels.
    weights = {"w": RNG.standard_normal((4, 6 // group, 3, 3)).astype(np.float32), **bn_params(6)}
    text = model_text(
        "(float[1,4,5,5] x) => (float[1,6,11,11] y)", weights, f"t = ConvTranspose <strides = [2,2], group = {group}> (x, w)\n{BN}"
    )
    _, result, error = fold(text)
    assert op_types(result.model) == {"ConvTranspose": 1}
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
    text = model_text(
        "(float[2,3] x) => (float[2,5] y)", weights, f"t = Gemm <transB = {trans_b}, alpha = 0.7, beta = 1.5> ({gemm_inputs})\n{BN}"
    )
    _, result, error = fold(text)
    assert op_types(result.model) == {"Gemm": 1}
    assert error < 1e-5


def test_matmul_then_batchnorm_becomes_matmul_and_bias_add():
    weights = {"w": RNG.standard_normal((3, 5)).astype(np.float32), **bn_params(5)}
    text = model_text("(float[2,3] x) => (float[2,5] y)", weights, f"t = MatMul (x, w)\n{BN}")
    _, result, error = fold(text)
    assert op_types(result.model) == {"MatMul": 1, "Add": 1}
    assert error < 1e-5


def test_float16_weights_stay_float16():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float16), **bn_params(4, np.float16)}
    text = model_text("(float16[1,3,4,4] x) => (float16[1,4,4,4] y)", weights, f"t = Conv (x, w)\n{BN}")
    _, result, error = fold(text)
    conv = next(iter(result.model.graph))
    assert [conv.inputs[i].const_value.dtype for i in (1, 2)] == [ir.DataType.FLOAT16] * 2
    assert error < 2e-3  # float16 rounding


def test_weights_in_constant_nodes_are_folded():
    # PP-OCR style: the weight comes from a Constant node, not an initializer.
    w = RNG.standard_normal((4, 3, 1, 1)).astype(np.float32)
    text = model_text(
        "(float[1,3,4,4] x) => (float[1,4,4,4] y)",
        bn_params(4),
        f"w = Constant <value = {literal('w', w)}> ()\nt = Conv (x, w)\n{BN}",
    )
    _, result, error = fold(text)
    assert op_types(result.model) == {"Conv": 1}
    assert error < 1e-5


def test_shared_weight_is_refused_and_counted():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **bn_params(4)}
    text = model_text(
        "(float[1,3,4,4] x) => (float[1,4,4,4] y, float[1,4,4,4] z)",
        weights,
        f"t = Conv (x, w)\nz = Conv (x, w)\n{BN}",
    )
    rewrite, result, _ = fold(text)
    assert not result.modified
    assert rewrite.stats["refused: shared weight"] == 1


def test_conv_output_used_elsewhere_is_not_folded():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **bn_params(4)}
    text = model_text("(float[1,3,4,4] x) => (float[1,4,4,4] y, float[1,4,4,4] t)", weights, f"t = Conv (x, w)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified


def test_batchnorm_after_a_non_linear_op_is_left_alone():
    text = model_text("(float[1,4,4,4] x) => (float[1,4,4,4] y)", bn_params(4), f"t = Relu (x)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified
    assert op_types(result.model) == {"Relu": 1, "BatchNormalization": 1}


def test_batchnorm_with_non_constant_statistics_is_left_alone():
    params = bn_params(4)
    del params["mean"]
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **params}
    text = model_text("(float[1,3,4,4] x, float[4] mean) => (float[1,4,4,4] y)", weights, f"t = Conv (x, w)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified


def test_matmul_on_3d_input_is_left_alone():
    # BatchNormalization normalizes axis 1, which is not MatMul's feature (last) axis here.
    weights = {"w": RNG.standard_normal((3, 5)).astype(np.float32), **bn_params(2)}
    text = model_text("(float[4,2,3] x) => (float[4,2,5] y)", weights, f"t = MatMul (x, w)\n{BN}")
    _, result, _ = fold(text)
    assert not result.modified


def test_second_run_reports_no_change():
    weights = {"w": RNG.standard_normal((4, 3, 1, 1)).astype(np.float32), **bn_params(4)}
    model = ir.from_onnx_text(model_text("(float[1,3,4,4] x) => (float[1,4,4,4] y)", weights, f"t = Conv (x, w)\n{BN}"))
    assert create("fold-batchnorm")(model).modified
    assert not create("fold-batchnorm")(model).modified


def test_batchnorm_after_a_custom_op_is_left_alone_with_a_note():
    text = model_text(
        "(float[1,4,4,4] x) => (float[1,4,4,4] y)", bn_params(4), f"t = com.example.Magic (x)\n{BN}"
    ).replace('["" : 17]', '["" : 17, "com.example" : 1]')
    model = ir.from_onnx_text(text)
    rewrite = create("fold-batchnorm")
    assert not rewrite(model).modified
    assert any("unknown custom op left alone" in note for note in rewrite.notes)


def light_model_path(name: str) -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def test_real_resnet50_loses_every_batchnorm():
    model = io.load(light_model_path("resnet50"))
    before = io.copy_model(model)
    for name in ("fold-constants", "fold-batchnorm", "eliminate-dead"):
        create(name)(model)
    counts = op_types(model)
    assert "BatchNormalization" not in counts
    assert sum(counts.values()) == 123
    feeds = runtime.generate_inputs(before)
    assert runtime.compare(runtime.run(before, feeds), runtime.run(model, feeds))["max_rel"] < 1e-5


@pytest.mark.real_models
def test_real_ppocr_classifier_loses_every_batchnorm():
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")

    model = io.load(Path(rapidocr.__file__).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    shapes.fix_input_shapes(model, {"x": [1, 3, 48, 192]})
    before = io.copy_model(model)
    create("fold-constants")(model)
    rewrite = create("fold-batchnorm")
    rewrite(model)
    assert rewrite.stats["batchnorms folded"] == 35
    assert "BatchNormalization" not in op_types(model)
    feeds = runtime.generate_inputs(before)
    assert runtime.compare(runtime.run(before, feeds), runtime.run(model, feeds))["max_rel"] < 1e-5
