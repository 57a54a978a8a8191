"""The shared rewriting helpers (passes/fold/_rewrite.py) tested directly, each against its docstring:
layouts and channel vectors against numpy broadcasting, weight rewrites against ONNX Runtime's
outputs of the model before, refusals by their reasons."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from conftest import model_text, weights_model_text
from ir import runtime
from passes.fold import _rewrite as rw

RNG = np.random.default_rng(7)


def first_node(model: ir.Model, op_type: str) -> ir.Node:
    return next(node for node in model.graph if node.op_type == op_type)


def outputs(model: ir.Model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return runtime.run(model, feeds)["y"]


# Layouts ------------------------------------------------------------------------------------------

LAYERS = {
    # op text, input, output, weights, expected (channels, rank, axis)
    "Conv": ("y = Conv (x, w, b)", "float[1,3,5,5] x", "float[1,4,3,3] y",
             {"w": RNG.standard_normal((4, 3, 3, 3)), "b": RNG.standard_normal(4)}, (4, 4, 1)),
    "ConvTranspose": ("y = ConvTranspose <group = 2> (x, w, b)", "float[1,4,3,3] x", "float[1,6,4,4] y",
                      {"w": RNG.standard_normal((4, 3, 2, 2)), "b": RNG.standard_normal(6)}, (6, 4, 1)),
    "Gemm": ("y = Gemm <alpha = 1.5, beta = 0.5> (x, w, b)", "float[2,3] x", "float[2,5] y",
             {"w": RNG.standard_normal((3, 5)), "b": RNG.standard_normal(5)}, (5, 2, 1)),
    "GemmT": ("y = Gemm <transB = 1> (x, w, b)", "float[2,3] x", "float[2,5] y",
              {"w": RNG.standard_normal((5, 3)), "b": RNG.standard_normal(5)}, (5, 2, 1)),
    "MatMul": ("y = MatMul (x, w)", "float[2,4,3] x", "float[2,4,5] y", {"w": RNG.standard_normal((3, 5))}, (5, 3, -1)),
    "BatchNormalization": ("y = BatchNormalization (x, w, b, m, v)", "float[2,3,4] x", "float[2,3,4] y",
                           {"w": RNG.standard_normal(3), "b": RNG.standard_normal(3), "m": RNG.standard_normal(3),
                            "v": RNG.uniform(0.5, 2, 3)}, (3, 3, 1)),
}


def layer_model(kind: str) -> tuple[ir.Model, ir.Node]:
    body, x, y, weights, _ = LAYERS[kind]
    model = ir.from_onnx_text(weights_model_text(f"({x}) => ({y})", weights, body))
    op = "Gemm" if kind == "GemmT" else kind
    return model, first_node(model, op)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_output_layout_counts_the_channels_where_the_runtime_puts_them(kind):
    model, node = layer_model(kind)
    feeds = runtime.generate_inputs(model)
    shape = outputs(model, feeds).shape
    channels, rank, axis = LAYERS[kind][4]
    assert rw.output_layout(node) == rw.Layout(channels, rank, axis)
    assert shape[axis] == channels and len(shape) == rank


def test_output_layout_needs_a_constant_floating_point_weight_of_the_layer_rank():
    x = "float[1,3,5,5] x"
    cases = {
        "y = Conv (x, w)": {"w": RNG.standard_normal((4, 3))},  # 2-D weight is not a conv weight
        "y = Gemm (x, w)": {"w": RNG.standard_normal((3, 5, 1))},
        "y = MatMul (x, w)": {"w": RNG.standard_normal((1, 3, 5))},
        "y = Relu (x)": {},
    }
    for body, weights in cases.items():
        model = ir.from_onnx_text(weights_model_text(f"({x}) => (float[1,4,3,3] y)", weights, body))
        assert rw.output_layout(next(iter(model.graph))) is None, body
    integer = ir.from_onnx_text(model_text("y = Conv (x, w)", "float[1,3,5,5] x", "float[1,4,3,3] y",
                                           inits="int64[4,3,1,1] w = {" + ",".join(["1"] * 12) + "}"))
    assert rw.output_layout(next(iter(integer.graph))) is None
    fed = ir.from_onnx_text(model_text("y = Conv (x, w)", "float[1,3,5,5] x, float[4,3,1,1] w", "float[1,4,5,5] y"))
    assert rw.output_layout(next(iter(fed.graph))) is None
    bn_2d_scale = ir.from_onnx_text(weights_model_text(
        "(float[2,3] x) => (float[2,3] y)", {"s": np.ones((3, 1)), "b": np.zeros(3), "m": np.zeros(3), "v": np.ones(3)},
        "y = BatchNormalization (x, s, b, m, v)"))
    assert rw.output_layout(next(iter(bn_2d_scale.graph))) is None


def test_matmul_layout_takes_the_input_rank_when_the_output_rank_is_unknown():
    model = ir.from_onnx_text(weights_model_text("(float[2,4,3] x) => (float[2,4,5] y)", {"w": RNG.standard_normal((3, 5))}, "y = MatMul (x, w)"))
    node = first_node(model, "MatMul")
    node.outputs[0].shape = None
    assert rw.output_layout(node) == rw.Layout(5, 3, -1)
    node.inputs[0].shape = None
    assert rw.output_layout(node) == rw.Layout(5, None, -1)


# Channel vectors against numpy broadcasting -------------------------------------------------------


def broadcast_reference(constant: np.ndarray, layout: rw.Layout, shape: tuple[int, ...]) -> np.ndarray | None:
    """What the docstring promises, derived with numpy: adding the constant to an output of ``shape``
    keeps the shape and gives every element of a channel the same value."""
    try:
        result = np.broadcast_to(constant, shape) if np.broadcast_shapes(constant.shape, shape) == shape else None
    except ValueError:
        return None
    if result is None:
        return None
    moved = np.moveaxis(result, layout.axis, 0).reshape(layout.channels, -1)
    if not (moved == moved[:, :1]).all():
        return None
    return moved[:, 0].astype(np.float64)


@pytest.mark.parametrize("shape", [(), (1,), (4,), (1, 4, 1, 1), (4, 1, 1), (1, 1, 1, 1), (2, 4, 1, 1), (1, 4, 3, 1),
                                   (4, 1), (1, 1, 4), (1, 1, 1, 1, 1), (3,), (1, 3, 1, 1)])
def test_channel_vector_is_the_per_channel_value_of_numpy_broadcasting(shape):
    layout = rw.Layout(4, 4, 1)
    constant = RNG.standard_normal(shape).astype(np.float32)
    expected = broadcast_reference(constant, layout, (2, 4, 3, 3))
    got = rw.channel_vector(constant, layout)
    if expected is None:
        assert got is None
    else:
        assert got.dtype == np.float64 and got.shape == (4,)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(), (1,), (5,), (1, 5), (5, 1), (2, 5), (1, 1, 5), (3,)])
def test_channel_vector_on_the_last_axis(shape):
    layout = rw.Layout(5, 2, -1)
    constant = RNG.standard_normal(shape)
    expected = broadcast_reference(constant, layout, (3, 5))
    got = rw.channel_vector(constant, layout)
    assert (got is None) == (expected is None)
    if expected is not None:
        np.testing.assert_array_equal(got, expected)


def test_channel_vector_of_an_unknown_rank_accepts_only_a_scalar_or_a_last_axis_vector():
    scalar = np.array([2.5], dtype=np.float32)
    np.testing.assert_array_equal(rw.channel_vector(scalar, rw.Layout(3, None, 1)), [2.5, 2.5, 2.5])
    np.testing.assert_array_equal(rw.channel_vector(np.array(2.5), rw.Layout(3, None, -1)), [2.5, 2.5, 2.5])
    vector = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    got = rw.channel_vector(vector, rw.Layout(3, None, -1))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, vector)
    # along axis 1 of an unknown rank a vector may broadcast against the last axis instead
    assert rw.channel_vector(vector, rw.Layout(3, None, 1)) is None
    assert rw.channel_vector(np.ones(2), rw.Layout(3, None, -1)) is None
    assert rw.channel_vector(np.ones((1, 3)), rw.Layout(3, None, -1)) is None
    assert rw.channel_vector(np.ones((1, 1)), rw.Layout(3, None, -1)) is None


# Weight rewrites against the runtime --------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_scale_output_channels_multiplies_each_output_channel(kind):
    model, node = layer_model(kind)
    feeds = runtime.generate_inputs(model)
    before = outputs(model, feeds)
    layout = rw.output_layout(node)
    s = RNG.uniform(0.5, 2.0, layout.channels)
    rw.scale_output_channels(node, s)
    shape = [1] * before.ndim
    shape[layout.axis] = layout.channels
    np.testing.assert_allclose(outputs(model, feeds), before * s.reshape(shape), rtol=1e-5, atol=1e-5)
    assert node.inputs[1].const_value.dtype == ir.DataType.FLOAT


@pytest.mark.parametrize("kind", [kind for kind in sorted(LAYERS) if kind != "MatMul"])
def test_add_output_bias_adds_each_channels_shift(kind):
    model, node = layer_model(kind)
    feeds = runtime.generate_inputs(model)
    before = outputs(model, feeds)
    layout = rw.output_layout(node)
    shift = RNG.standard_normal(layout.channels)
    rw.add_output_bias(node, shift, rw.UniqueNames(model))
    shape = [1] * before.ndim
    shape[layout.axis] = layout.channels
    np.testing.assert_allclose(outputs(model, feeds), before + shift.reshape(shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("body, weights, beta", [
    ("y = Conv (x, w)", {"w": RNG.standard_normal((4, 3, 1, 1))}, None),
    ("y = Gemm <beta = 0.5> (x, w)", {"w": RNG.standard_normal((3, 5))}, 0.5),
    ("y = Gemm <beta = 0.0> (x, w, b)", {"w": RNG.standard_normal((3, 5)), "b": np.full(5, np.nan)}, 0.0),
])
def test_add_output_bias_creates_or_replaces_the_bias(body, weights, beta):
    signature = "(float[1,3,2,2] x) => (float[1,4,2,2] y)" if "Conv" in body else "(float[2,3] x) => (float[2,5] y)"
    model = ir.from_onnx_text(weights_model_text(signature, weights, body))
    node = next(iter(model.graph))
    feeds = runtime.generate_inputs(model)
    # beta = 0 ignores C (even NaN); the reference computes without it
    reference = ir.from_onnx_text(weights_model_text(signature, {"w": weights["w"]}, body.replace(", b)", ")")))
    before = outputs(reference, feeds)
    layout = rw.output_layout(node)
    shift = RNG.standard_normal(layout.channels)
    rw.add_output_bias(node, shift, rw.UniqueNames(model))
    shape = [1] * before.ndim
    shape[layout.axis] = layout.channels
    np.testing.assert_allclose(outputs(model, feeds), before + shift.reshape(shape), rtol=1e-5, atol=1e-5)
    bias = node.inputs[2]
    assert bias.const_value.dtype == ir.DataType.FLOAT and bias.is_initializer()
    if beta is not None:
        assert node.attributes.get_float("beta") == 1.0
    if len(weights) == 1:
        assert bias.name == "y_bias"


def test_a_constant_node_bias_is_lifted_into_an_initializer_when_overwritten():
    text = model_text("b = Constant <value = float[4] {1, 2, 3, 4}> ()\ny = Conv (x, w, b)", "float[1,3,2,2] x", "float[1,4,2,2] y",
                      inits="float[4,3,1,1] w = {" + ",".join(str(v) for v in range(12)) + "}")
    model = ir.from_onnx_text(text)
    feeds = runtime.generate_inputs(model)
    before = outputs(model, feeds)
    conv = first_node(model, "Conv")
    rw.overwrite_constant(conv, 2, np.array([10.0, 20.0, 30.0, 40.0]))
    bias = conv.inputs[2]
    assert bias.is_initializer() and bias.name == "b" and model.graph.initializers["b"] is bias
    assert [node.op_type for node in model.graph] == ["Conv"]
    assert bias.const_value.dtype == ir.DataType.FLOAT and list(bias.shape) == [4]
    np.testing.assert_allclose(outputs(model, feeds), before + np.array([9, 18, 27, 36]).reshape(1, 4, 1, 1), rtol=1e-6)


def test_overwrite_constant_keeps_the_type_and_takes_the_new_shape():
    model = ir.from_onnx_text(weights_model_text("(float[2,3] x) => (float[2,5] y)", {"w": np.ones((3, 5))}, "y = MatMul (x, w)"))
    node = next(iter(model.graph))
    rw.overwrite_constant(node, 1, np.full((3, 5), 0.1, dtype=np.float64))
    value = node.inputs[1]
    assert value.const_value.dtype == ir.DataType.FLOAT and list(value.shape) == [3, 5]
    np.testing.assert_array_equal(value.const_value.numpy(), np.float32(0.1) * np.ones((3, 5), np.float32))
    assert value.const_value.name == "w"


def test_add_constant_registers_an_initializer_with_a_fresh_name_shape_and_type():
    model = ir.from_onnx_text(model_text("y = Relu (x)"))
    names = rw.UniqueNames(model)
    for array in (np.arange(6, dtype=np.int64).reshape(2, 3), np.float32(2.0)):
        value = rw.add_constant(model.graph, names, array, "y")
        assert value.name.startswith("y_") and model.graph.initializers[value.name] is value
        assert value.const_value.name == value.name
        assert value.dtype == ir.DataType.from_numpy(np.asarray(array).dtype)
        assert tuple(value.shape) == np.shape(array)
        np.testing.assert_array_equal(value.const_value.numpy(), array)
    assert model.graph.initializers.keys() == {"y_1", "y_2"}


def test_add_constant_in_a_function_is_a_constant_node_before_the_given_node():
    model = ir.from_onnx_text("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[2,3] x) => (float[2,3] y) { y = local.f (x) }
    <domain: "local", opset_import: ["" : 17]>
    f (a) => (b) { c = Relu (a)
    b = Neg (c) }
    """)
    function = next(iter(model.functions.values()))
    neg = next(node for node in function if node.op_type == "Neg")
    names = rw.UniqueNames(model)
    value = rw.add_constant(function, names, np.array([1.0, 2.0], np.float32), "c", before=neg)
    assert [node.op_type for node in function] == ["Relu", "Constant", "Neg"]
    constant = value.producer()
    assert value.name == "c_1" and constant.name == "c_node"
    np.testing.assert_array_equal(constant.attributes["value"].value.numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match="say which node it goes before"):
        rw.add_constant(function, names, np.zeros(1), "c")


def test_fresh_names_skip_every_name_in_the_model_and_count_up():
    model = ir.from_onnx_text(model_text("y_1 = Relu (x)\ny = Neg (y_1)", inits="float[1] y_3 = {0}"))
    names = rw.UniqueNames(model)
    assert [names.fresh("y") for _ in range(3)] == ["y_2", "y_4", "y_5"]
    assert names.fresh("z") == "z"
    assert names.fresh("x") == "x_1"


# Refusals -----------------------------------------------------------------------------------------


def test_weights_refusal_names_the_first_reason():
    shared = ir.from_onnx_text(weights_model_text(
        "(float[2,3] x) => (float[2,5] y, float[2,5] z)", {"w": np.ones((3, 5)), "b": np.ones(5)},
        "y = Gemm (x, w, b)\nz = Gemm (x, w)"))
    assert rw.weights_refusal(next(iter(shared.graph))) == "shared weight"
    bias_fed = ir.from_onnx_text(model_text("y = Gemm (x, w, b)", "float[2,3] x, float[5] b", "float[2,5] y",
                                            inits="float[3,5] w = {" + ",".join(["1"] * 15) + "}"))
    assert rw.weights_refusal(next(iter(bias_fed.graph))) == "weight not constant"
    integer = ir.from_onnx_text(model_text("y = MatMul (x, w)", "float[2,3] x", "float[2,1] y", inits="int64[3,1] w = {1, 2, 3}"))
    assert rw.weights_refusal(next(iter(integer.graph))) == "weight not floating point"
    # MatMul's second input only: a MatMul has no bias
    free = ir.from_onnx_text(weights_model_text("(float[2,3] x) => (float[2,5] y)", {"w": np.ones((3, 5))}, "y = MatMul (x, w)"))
    assert rw.weights_refusal(next(iter(free.graph))) is None
    no_bias = ir.from_onnx_text(weights_model_text("(float[2,3] x) => (float[2,5] y)", {"w": np.ones((3, 5))}, "y = Gemm (x, w)"))
    assert rw.weights_refusal(next(iter(no_bias.graph))) is None
    assert rw.overwrite_refusal(next(iter(free.graph)).inputs[1], "scale") is None
    assert rw.overwrite_refusal(next(iter(bias_fed.graph)).inputs[2], "bias") == "bias not constant"


@pytest.mark.parametrize("attributes, extra_output, expected", [
    ("", "", True), ("<training_mode = 0>", "", True), ("<training_mode = 1>", "", False),
    ("<spatial = 1>", "", True), ("<spatial = 0>", "", False), ("", ", rm", False),
])
def test_inference_batchnorm(attributes, extra_output, expected):
    opset = 8 if "spatial" in attributes else 15
    signature = f"(float[2,3] x) => (float[2,3] y{', float[3] rm' if extra_output else ''})"
    weights = {"s": np.ones(3), "b": np.zeros(3), "m": np.zeros(3), "v": np.ones(3)}
    model = ir.from_onnx_text(weights_model_text(signature, weights, f"y{extra_output} = BatchNormalization {attributes} (x, s, b, m, v)", opset=opset))
    assert rw.is_inference_batchnorm(next(iter(model.graph))) is expected


def test_a_batchnorm_whose_running_mean_is_read_is_not_inference():
    weights = {"s": np.ones(3), "b": np.zeros(3), "m": np.zeros(3), "v": np.ones(3)}
    model = ir.from_onnx_text(weights_model_text("(float[2,3] x) => (float[2,3] y)", weights,
                                                 "t, rm, rv = BatchNormalization (x, s, b, m, v)\ny = Add (t, rm)", opset=9))
    assert rw.is_inference_batchnorm(first_node(model, "BatchNormalization")) is False
    unused = ir.from_onnx_text(weights_model_text("(float[2,3] x) => (float[2,3] y)", weights,
                                                  "y, rm, rv = BatchNormalization (x, s, b, m, v)", opset=9))
    assert rw.is_inference_batchnorm(first_node(unused, "BatchNormalization")) is True


# Reading ------------------------------------------------------------------------------------------


def slice_node(inputs: str, inits: str, opset: int = 17, attributes: str = ""):
    model = ir.from_onnx_text(model_text(f"y = Slice {attributes} ({inputs})", "float[4,6,8] x", "float[2,3] y", opset=opset, inits=inits))
    return next(iter(model.graph))


def test_slice_params_reads_constant_inputs_and_fills_the_defaults():
    inits = "int64[2] s = {1, 0}, int64[2] e = {3, -1}, int64[2] a = {-1, 0}, int64[2] t = {2, 1}"
    assert rw.slice_params(slice_node("x, s, e, a, t", inits), 17, 3) == ([1, 0], [3, -1], [2, 0], [2, 1])
    assert rw.slice_params(slice_node("x, s, e", inits), 17, 3) == ([1, 0], [3, -1], [0, 1], [1, 1])
    assert rw.slice_params(slice_node("x, s, e, a", inits), 17, None) is None  # -1 with an unknown rank
    assert rw.slice_params(slice_node("x, s, e, , t", inits), 17, None) == ([1, 0], [3, -1], [0, 1], [2, 1])


def test_slice_params_refuses_inputs_that_are_not_constant_or_disagree():
    model = ir.from_onnx_text(model_text("y = Slice (x, s, e, a)", "float[4,6,8] x, int64[1] a", "float[2,3] y",
                                         inits="int64[1] s = {1}, int64[1] e = {3}"))
    assert rw.slice_params(next(iter(model.graph)), 17, 3) is None
    model = ir.from_onnx_text(model_text("y = Slice (x, s, e, a, t)", "float[4,6,8] x, int64[1] t", "float[2,3] y",
                                         inits="int64[1] s = {1}, int64[1] e = {3}, int64[1] a = {0}"))
    assert rw.slice_params(next(iter(model.graph)), 17, 3) is None
    assert rw.slice_params(slice_node("x, s, e", "int64[2] s = {1, 0}, int64[1] e = {3}"), 17, 3) is None
    assert rw.slice_params(slice_node("x, s, e, a", "int64[1] s = {1}, int64[1] e = {3}, int64[2] a = {0, 1}"), 17, 3) is None
    assert rw.slice_params(slice_node("x, s, e, a, t", "int64[1] s = {1}, int64[1] e = {3}, int64[1] a = {0}, int64[2] t = {1, 1}"), 17, 3) is None
    model = ir.from_onnx_text(model_text("y = Slice (x, s, e)", "float[4,6,8] x, int64[1] e", "float[2,3] y", inits="int64[1] s = {1}"))
    assert rw.slice_params(next(iter(model.graph)), 17, 3) is None


def test_slice_params_before_opset_10_reads_attributes():
    node = slice_node("x", "", opset=9, attributes="<starts = [1, 2], ends = [3, 4], axes = [2, -3]>")
    assert rw.slice_params(node, 9, 3) == ([1, 2], [3, 4], [2, 0], [1, 1])
    node = slice_node("x", "", opset=9, attributes="<starts = [1], ends = [3]>")
    assert rw.slice_params(node, 9, 3) == ([1], [3], [0], [1])
    assert rw.slice_params(slice_node("x", "", opset=9, attributes="<starts = [1]>"), 9, 3) is None


def test_constant_ints_and_known_dims():
    model = ir.from_onnx_text(model_text("y = Relu (x)", "float[2,N,3] x", inits="int64[2,2] i = {1, 2, 3, 4}, float[2] f = {1, 2}"))
    assert rw.constant_ints(model.graph.initializers["i"]) == [1, 2, 3, 4]
    assert all(isinstance(v, int) for v in rw.constant_ints(model.graph.initializers["i"]))
    assert rw.constant_ints(model.graph.initializers["f"]) is None
    assert rw.constant_ints(None) is None
    x = model.graph.inputs[0]
    assert rw.known_dims(x) == [2, None, 3] and rw.static_dims(x) is None
    x.shape = ir.Shape([2, 0, 3])
    assert rw.known_dims(x) == [2, 0, 3] and rw.static_dims(x) == [2, 0, 3]
    x.shape = None
    assert rw.known_dims(x) is None and rw.known_dims(None) is None and rw.rank_of(x) is None


@pytest.mark.parametrize("axes, rank, expected", [
    ([0, -1], 3, [0, 2]), ([-3], 3, [0]), ([-4], 3, None), ([3], 3, None), ([2], 3, [2]),
    ([5], None, [5]), ([-1], None, None), ([], 2, []),
])
def test_normalize_axes_like_numpy(axes, rank, expected):
    assert rw.normalize_axes(axes, rank) == expected
    if expected is not None and rank is not None:
        assert expected == [list(range(rank))[a] for a in axes]  # Python's own negative indexing


def test_transpose_perm_defaults_to_reversing_a_known_rank():
    model = ir.from_onnx_text(model_text("y = Transpose (x)", "float[2,3,4] x", "float[4,3,2] y"))
    node = next(iter(model.graph))
    assert rw.transpose_perm(node) == [2, 1, 0]
    node.inputs[0].shape = None
    assert rw.transpose_perm(node) is None


def test_constant_operand_needs_exactly_one_floating_point_constant():
    model = ir.from_onnx_text(model_text("a = Mul (x, c)\nb = Mul (c, x)\nd = Mul (c, c)\ne = Mul (x, x)\ng = Mul (x, i)\ny = Add (a, b)",
                                         "float[2,3] x", inits="float[3] c = {1, 2, 3}, int64[1] i = {2}"))
    nodes = {node.outputs[0].name: node for node in model.graph}
    other, array, position = rw.constant_operand(nodes["a"])
    assert other.name == "x" and position == 1
    np.testing.assert_array_equal(array, [1, 2, 3])
    other, _, position = rw.constant_operand(nodes["b"])
    assert other.name == "x" and position == 0
    for name in "deg":
        assert rw.constant_operand(nodes[name]) is None


def test_describe_and_name_base():
    model = ir.from_onnx_text(model_text("y = Relu (x)"))
    node = next(iter(model.graph))
    assert rw.describe(node) == "Relu node producing y" and rw.name_base(node) == "y"
    node.name = "r"
    assert rw.describe(node) == "node r (Relu)" and rw.name_base(node) == "r"
    nameless = ir.node("Relu", [model.graph.inputs[0]])
    nameless.outputs[0].name = None
    assert rw.describe(nameless) == "unnamed Relu node" and rw.name_base(nameless) == "Relu"
    no_outputs = ir.Node("", "Foo", [], num_outputs=0)
    assert rw.describe(no_outputs) == "unnamed Foo node" and rw.name_base(no_outputs) == "Foo"


def test_remove_if_unused_removes_only_a_node_nothing_reads():
    model = ir.from_onnx_text(model_text("a = Relu (x)\nb = Neg (x)\ny = Abs (b)"))
    nodes = {node.outputs[0].name: node for node in model.graph}
    assert rw.remove_if_unused(model.graph, None) is False
    assert rw.remove_if_unused(model.graph, nodes["b"]) is False
    assert rw.remove_if_unused(model.graph, nodes["y"]) is False  # a graph output
    assert rw.remove_if_unused(model.graph, nodes["a"]) is True
    assert [node.op_type for node in model.graph] == ["Neg", "Abs"]
    assert rw.remove_if_unused(model.graph, nodes["a"]) is False  # already removed


def test_private_producer_is_the_single_use_first_output_of_a_listed_op():
    model = ir.from_onnx_text(model_text("a = Relu (x)\nb = Neg (a)\nc = Neg (b)\nd = Neg (b)\ny = Add (c, d)"))
    values = {node.outputs[0].name: node.outputs[0] for node in model.graph}
    assert rw.private_producer(values["a"], ["Relu"]) is values["a"].producer()
    assert rw.private_producer(values["a"], ["Neg"]) is None
    assert rw.private_producer(values["b"], ["Neg"]) is None  # read twice
    assert rw.private_producer(values["y"], ["Add"]) is None  # a graph output
    assert rw.private_producer(model.graph.inputs[0], ["Relu"]) is None


def test_two_graph_outputs_cannot_share_one_replacement():
    model = ir.from_onnx_text(model_text("t = Relu (x)\ny = Neg (t)\nz = Abs (t)", outputs="float[2,3] y, float[2,3] z"))
    y, z = model.graph.outputs
    t = next(iter(model.graph)).outputs[0]
    assert rw.can_replace_values(model.graph, [y, z], [t, t]) is False
    assert rw.can_replace_values(model.graph, [y], [t]) is True
    assert rw.can_replace_values(model.graph, [y, z], [t, model.graph.inputs[0]]) is False
