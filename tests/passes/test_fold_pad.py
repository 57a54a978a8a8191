"""fold-pad folds a constant zero (or -inf) Pad into the pads of the Conv or pool that reads it."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from conftest import apply_pass, assert_same_outputs, op_types
from passes.base import create

CONV_WEIGHTS = "float[2,3,3,3] w = {" + ",".join(str((i % 7 - 3) / 4) for i in range(54)) + "}"


def apply(text: str):
    return apply_pass("fold-pad", text)


def assert_equivalent(before: ir.Model, after: ir.Model) -> None:
    assert_same_outputs(before, after, max_rel=1e-6)


def pad_model(pad: str, consumer: str, output: str, opset: int = 17, inits: str = "") -> str:
    initializers = ", ".join(filter(None, [CONV_WEIGHTS, inits]))
    return f"""
    <ir_version: 8, opset_import: ["" : {opset}]>
    g (float[1,3,6,6] x) => (float{output} y) <{initializers}> {{
        p = {pad}
        y = {consumer}
    }}
    """


def test_pad_folds_into_conv_pads():
    text = pad_model("Pad(x, pads)", "Conv <pads = [1, 1, 1, 1]> (p, w)", "[1,2,9,11]", inits="int64[8] pads = {0, 0, 1, 2, 0, 0, 3, 4}")
    before, result, fold = apply(text)
    assert result.modified
    assert op_types(result.model) == ["Conv"]
    conv = next(iter(result.model.graph))
    assert list(conv.attributes.get_ints("pads")) == [2, 3, 4, 5]
    assert conv.inputs[0].name == "x"
    assert fold.stats == {"Pad folded into Conv": 1}
    assert_equivalent(before, result.model)


def test_pad_folds_into_conv_without_pads():
    text = pad_model("Pad(x, pads, v)", "Conv(p, w)", "[1,2,6,6]", inits="int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}, float v = {0}")
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Conv"]
    assert list(next(iter(result.model.graph)).attributes.get_ints("pads")) == [1, 1, 1, 1]
    assert_equivalent(before, result.model)


def test_pad_attribute_before_opset_11():
    text = pad_model("Pad <pads = [0, 0, 1, 0, 0, 0, 0, 1]> (x)", "Conv(p, w)", "[1,2,5,5]", opset=10)
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Conv"]
    assert_equivalent(before, result.model)


def test_pad_axes_input_opset_18():
    text = pad_model("Pad(x, pads, , axes)", "Conv(p, w)", "[1,2,6,4]", opset=18, inits="int64[2] pads = {1, 1}, int64[1] axes = {-2}")
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Conv"]
    assert list(next(iter(result.model.graph)).attributes.get_ints("pads")) == [1, 0, 1, 0]
    assert_equivalent(before, result.model)


def test_pad_folds_into_average_pool_counting_pads():
    pool = "AveragePool <kernel_shape = [3, 3], count_include_pad = 1> (p)"
    text = pad_model("Pad(x, pads)", pool, "[1,3,6,6]", inits="int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}")
    before, result, _ = apply(text)
    assert op_types(result.model) == ["AveragePool"]
    assert_equivalent(before, result.model)


def test_minus_infinity_pad_folds_into_max_pool():
    text = pad_model(
        "Pad(x, pads, v)", "MaxPool <kernel_shape = [3, 3]> (p)", "[1,3,6,6]", inits="int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}, float v = {-inf}"
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["MaxPool"]
    assert_equivalent(before, result.model)


def test_pad_feeding_two_convs_folds_into_both():
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,6,6] x) => (float[1,2,6,6] y, float[1,2,4,4] z) <{CONV_WEIGHTS}, int64[8] pads = {{0, 0, 1, 1, 0, 0, 1, 1}}> {{
        p = Pad(x, pads)
        y = Conv(p, w)
        z = Conv <strides = [2, 2]> (p, w)
    }}
    """
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Conv", "Conv"]
    assert_equivalent(before, result.model)


NOT_FOLDED = {
    "nonzero value before conv": ("Pad(x, pads, v)", "Conv(p, w)", "[1,2,6,6]", "float v = {1.5}"),
    "reflect mode": ("Pad <mode = \"reflect\"> (x, pads)", "Conv(p, w)", "[1,2,6,6]", ""),
    "negative pads": ("Pad(x, npads)", "Conv(p, w)", "[1,2,2,2]", "int64[8] npads = {0, 0, -1, -1, 0, 0, 0, 0}"),
    "conv with auto_pad": ("Pad(x, pads)", "Conv <auto_pad = \"SAME_UPPER\"> (p, w)", "[1,2,8,8]", ""),
    "average pool not counting pads": ("Pad(x, pads)", "AveragePool <kernel_shape = [3, 3]> (p)", "[1,3,6,6]", ""),
    "average pool ceil mode": ("Pad(x, pads)", "AveragePool <kernel_shape = [3, 3], count_include_pad = 1, ceil_mode = 1> (p)", "[1,3,6,6]", ""),
    "zero pad before max pool": ("Pad(x, pads)", "MaxPool <kernel_shape = [3, 3]> (p)", "[1,3,6,6]", ""),
    "pad into relu": ("Pad(x, pads)", "Relu(p)", "[1,3,8,8]", ""),
}


@pytest.mark.parametrize("case", NOT_FOLDED)
def test_pad_is_not_folded(case):
    pad, consumer, output, inits = NOT_FOLDED[case]
    extra = ", ".join(filter(None, ["int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}", inits]))
    _, result, _ = apply(pad_model(pad, consumer, output, inits=extra))
    assert not result.modified
    assert op_types(result.model)[0] == "Pad"


def test_channel_padding_is_not_folded():
    weights = "float[2,4,3,3] w4 = {" + ",".join(["0.1"] * 72) + "}"
    text = pad_model("Pad(x, pads)", "Conv(p, w4)", "[1,2,4,4]", inits=f"int64[8] pads = {{0, 1, 0, 0, 0, 0, 0, 0}}, {weights}")
    _, result, _ = apply(text)
    assert not result.modified


def test_pads_from_a_graph_input_are_not_folded():
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,6,6] x, int64[8] pads) => (float[1,2,A,B] y) <{CONV_WEIGHTS}> {{
        p = Pad(x, pads)
        y = Conv(p, w)
    }}
    """
    _, result, _ = apply(text)
    assert not result.modified


def test_pad_also_read_by_another_node_is_not_folded():
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,6,6] x) => (float[1,2,6,6] y, float[1,3,8,8] z) <{CONV_WEIGHTS}, int64[8] pads = {{0, 0, 1, 1, 0, 0, 1, 1}}> {{
        p = Pad(x, pads)
        y = Conv(p, w)
        z = Relu(p)
    }}
    """
    _, result, _ = apply(text)
    assert not result.modified


def test_pad_that_is_a_graph_output_is_not_folded():
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,6,6] x) => (float[1,2,6,6] y, float[1,3,8,8] p) <{CONV_WEIGHTS}, int64[8] pads = {{0, 0, 1, 1, 0, 0, 1, 1}}> {{
        p = Pad(x, pads)
        y = Conv(p, w)
    }}
    """
    _, result, _ = apply(text)
    assert not result.modified


def test_custom_domain_consumer_is_left_alone():
    text = f"""
    <ir_version: 8, opset_import: ["" : 17, "com.acme" : 1]>
    g (float[1,3,6,6] x) => (float[1,2,6,6] y) <{CONV_WEIGHTS}, int64[8] pads = {{0, 0, 1, 1, 0, 0, 1, 1}}> {{
        p = Pad(x, pads)
        y = com.acme.Conv(p, w)
    }}
    """
    model = ir.from_onnx_text(text)
    fold = create("fold-pad")
    assert not fold(model).modified
    assert any("com.acme" in note for note in fold.notes)


MORE_NOT_FOLDED = {
    "+inf before max pool": ("Pad(x, pads, v)", "MaxPool <kernel_shape = [3, 3]> (p)", "[1,3,6,6]", "float v = {inf}"),
    "-1 before max pool": ("Pad(x, pads, v)", "MaxPool <kernel_shape = [3, 3]> (p)", "[1,3,6,6]", "float v = {-1}"),
    "max pool ceil mode": ("Pad(x, pads, v)", "MaxPool <kernel_shape = [3, 3], ceil_mode = 1> (p)", "[1,3,6,6]", "float v = {-inf}"),
    "batch padding at the end": ("Pad(x, bpads)", "Conv(p, w)", "[2,2,4,4]", "int64[8] bpads = {0, 0, 0, 0, 1, 0, 0, 0}"),
    "batch padding at the start": ("Pad(x, bpads)", "Conv(p, w)", "[2,2,4,4]", "int64[8] bpads = {1, 0, 0, 0, 0, 0, 0, 0}"),
}


@pytest.mark.parametrize("case", MORE_NOT_FOLDED)
def test_pads_and_values_a_consumer_cannot_take_are_not_folded(case):
    pad, consumer, output, inits = MORE_NOT_FOLDED[case]
    extra = ", ".join(filter(None, ["int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}", inits]))
    _, result, _ = apply(pad_model(pad, consumer, output, inits=extra))
    assert not result.modified and op_types(result.model)[0] == "Pad"


def test_a_nonzero_value_attribute_before_opset_11_is_not_folded():
    text = pad_model("Pad <pads = [0, 0, 1, 0, 0, 0, 0, 1], value = 1.0> (x)", "Conv(p, w)", "[1,2,5,5]", opset=10)
    _, result, _ = apply(text)
    assert not result.modified


def test_a_pad_value_from_a_graph_input_is_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,6,6] x, float v) => (float[1,2,6,6] y) <%s, int64[8] pads = {0, 0, 1, 1, 0, 0, 1, 1}> {
        p = Pad(x, pads, v)
        y = Conv(p, w)
    }
    """ % CONV_WEIGHTS
    _, result, _ = apply(text)
    assert not result.modified


def test_pads_input_at_opset_11_and_a_1d_conv_fold_and_each_fold_is_counted():
    text = f"""
    <ir_version: 8, opset_import: ["" : 11]>
    g (float[1,3,6,6] x, float[1,3,6] s) => (float[1,2,6,6] y, float[1,2,6] z)
      <{CONV_WEIGHTS}, float[2,3,3] w1 = {{{", ".join(["0.25", "-0.5", "1"] * 6)}}}, int64[8] pads = {{0, 0, 1, 1, 0, 0, 1, 1}},
       int64[6] pads1 = {{0, 0, 1, 0, 0, 1}}> {{
        p = Pad(x, pads)
        y = Conv(p, w)
        q = Pad(s, pads1)
        z = Conv(q, w1)
    }}
    """
    before, result, fold = apply(text)
    assert op_types(result.model) == ["Conv", "Conv"]
    assert fold.stats == {"Pad folded into Conv": 2}
    assert_equivalent(before, result.model)


def test_pad_axes_on_both_spatial_axes_opset_18():
    text = pad_model("Pad(x, pads, , axes)", "Conv(p, w)", "[1,2,7,5]", opset=18, inits="int64[4] pads = {1, 0, 1, 1}, int64[2] axes = {3, 2}")
    before, result, _ = apply(text)
    # axes (3, 2): begin (W 1, H 0), end (W 1, H 1) -> Conv pads [H begin, W begin, H end, W end]
    assert list(next(iter(result.model.graph)).attributes.get_ints("pads")) == [0, 1, 1, 1]
    assert_equivalent(before, result.model)
