"""A layer as rows, against ONNX Runtime: for every refittable layer, ``layer_rows(x) @ flat_weight.T +
bias_of`` is the layer's output (``output_rows``) as ONNX Runtime computes it, whatever the strides,
dilations, padding (explicit or ``auto_pad``) and rank; ``write_layer`` gives a layer the weight and bias
it is handed (ONNX Runtime's output after it is ``x W^T + b``); ``feature_count`` is the number of
columns of ``layer_rows``; ``input_grams`` is ``X^T X`` of those rows; ``truncated_session`` computes
what the full model computes for the names asked."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ir import runtime
from passes import reconstruct

RNG = np.random.default_rng(11)


def model_of(nodes, inputs, outputs, initializers, ir_version=8, opset=17) -> ir.Model:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in initializers.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    return ir.serde.deserialize_model(proto)


def tensor(name, shape=None, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def conv_model(channels, spatial, kernel, outputs=3, bias=True, **attributes) -> ir.Model:
    weight = RNG.standard_normal((outputs, channels, *kernel))
    inits = {"w": weight, **({"b": RNG.standard_normal(outputs)} if bias else {})}
    node = helper.make_node("Conv", ["x", "w", *(["b"] if bias else [])], ["y"], **attributes)
    return model_of([node], [tensor("x", [2, channels, *spatial])], [tensor("y")], inits)


def the_node(model: ir.Model) -> ir.Node:
    return next(n for n in model.graph if n.op_type in ("Conv", "Gemm", "MatMul"))


def assert_rows_reproduce_the_layer(model: ir.Model, x: np.ndarray) -> None:
    node = the_node(model)
    if node.attributes.get_string("auto_pad", "NOTSET").startswith("SAME") and node.attributes.get("dilations"):
        # ONNX Runtime refuses dilations with SAME padding; the ONNX reference implementation computes them
        y = ReferenceEvaluator(ir.serde.serialize_model(model)).run(None, {"x": x})[0]
    else:
        y = runtime.run(model, {"x": x})[node.outputs[0].name]
    rows = reconstruct.layer_rows(node, x)
    weight = reconstruct.flat_weight(node)
    got = rows.astype(np.float64) @ weight.T + reconstruct.bias_of(node, weight.shape[0])
    np.testing.assert_allclose(got, reconstruct.output_rows(node, y), rtol=1e-4, atol=1e-4)
    assert rows.shape[1] == weight.shape[1] == reconstruct.feature_count(node)


CONVS = {
    "3x3": ((3, (6, 7), (3, 3)), {}),
    "non-square kernel, asymmetric pads": ((2, (6, 7), (2, 3)), {"pads": [1, 0, 2, 1]}),
    "strides": ((2, (7, 8), (3, 3)), {"strides": [2, 3], "pads": [1, 1, 1, 1]}),
    "dilations": ((2, (7, 8), (2, 3)), {"dilations": [2, 3]}),
    "strides and dilations": ((2, (9, 9), (3, 2)), {"strides": [2, 1], "dilations": [1, 2], "pads": [0, 1, 2, 0]}),
    "SAME_UPPER odd total": ((2, (6, 5), (2, 3)), {"auto_pad": "SAME_UPPER"}),
    "SAME_LOWER odd total": ((2, (6, 5), (2, 3)), {"auto_pad": "SAME_LOWER"}),
    "SAME_UPPER dilated": ((2, (6, 5), (2, 2)), {"auto_pad": "SAME_UPPER", "dilations": [1, 3]}),
    "SAME_LOWER dilated": ((2, (6, 5), (2, 2)), {"auto_pad": "SAME_LOWER", "dilations": [2, 3]}),
    "SAME_UPPER strided": ((2, (7, 8), (3, 3)), {"auto_pad": "SAME_UPPER", "strides": [2, 3]}),
    "SAME_LOWER strided": ((2, (7, 8), (4, 3)), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    "SAME with a stride larger than the kernel": ((2, (5, 7), (1, 2)), {"auto_pad": "SAME_UPPER", "strides": [3, 4]}),
    "SAME_UPPER needing no padding": ((2, (6, 8), (1, 2)), {"auto_pad": "SAME_UPPER", "strides": [3, 4]}),
    "SAME_LOWER needing no padding": ((2, (6, 8), (1, 2)), {"auto_pad": "SAME_LOWER", "strides": [3, 4]}),
    "VALID": ((2, (6, 5), (3, 2)), {"auto_pad": "VALID"}),
    "1-D": ((3, (9,), (3,)), {"strides": [2], "pads": [2, 1]}),
    "1-D SAME_LOWER": ((3, (8,), (4,)), {"auto_pad": "SAME_LOWER"}),
    "3-D": ((2, (4, 5, 3), (2, 3, 1)), {"strides": [1, 2, 1], "pads": [1, 0, 0, 0, 1, 1]}),
}


@pytest.mark.parametrize("case", list(CONVS))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_rows_times_the_flat_weight_are_the_conv_output(case, bias):
    (channels, spatial, kernel), attributes = CONVS[case]
    model = conv_model(channels, spatial, kernel, bias=bias, **attributes)
    assert_rows_reproduce_the_layer(model, RNG.standard_normal((2, channels, *spatial)).astype(np.float32))


@pytest.mark.parametrize("attributes", [{}, {"alpha": 0.5}, {"alpha": 2.0, "beta": 0.25, "transB": 1}, {"transB": 1}])
@pytest.mark.parametrize("bias_shape", [None, (1,), (4,), (1, 4)])
def test_gemm_rows_times_the_flat_weight_are_the_gemm_output(attributes, bias_shape):
    w = RNG.standard_normal((4, 5) if attributes.get("transB") else (5, 4))
    inits = {"w": w, **({"b": RNG.standard_normal(bias_shape)} if bias_shape else {})}
    node = helper.make_node("Gemm", ["x", "w", *(["b"] if bias_shape else [])], ["y"], **attributes)
    model = model_of([node], [tensor("x", [3, 5])], [tensor("y")], inits)
    assert_rows_reproduce_the_layer(model, RNG.standard_normal((3, 5)).astype(np.float32))


def test_matmul_rows_are_the_last_axis_of_any_rank():
    model = model_of([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", [2, 3, 5])], [tensor("y")], {"w": RNG.standard_normal((5, 4))})
    assert not reconstruct.has_bias_input(the_node(model))
    x = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    assert reconstruct.layer_rows(the_node(model), x).shape == (6, 5)
    assert_rows_reproduce_the_layer(model, x)


def refittable(op, weight_shape=(4, 3), weight_input=False, **attributes) -> bool:
    inputs = [tensor("x", [2, 3, 4, 4] if op == "Conv" else [2, 3])] + ([tensor("w", list(weight_shape))] if weight_input else [])
    inits = {} if weight_input else {"w": np.ones(weight_shape)}
    node = helper.make_node(op, ["x", "w"], ["y"], **attributes)
    return reconstruct.is_refittable(next(iter(model_of([node], inputs, [tensor("y")], inits).graph)))


def test_refittable_layers_are_group_1_convs_gemms_without_trans_a_and_matmuls_with_a_constant_2d_weight():
    assert refittable("Conv", (4, 3, 1, 1)) and refittable("Conv", (4, 3, 3, 3), group=1)
    assert not refittable("Conv", (4, 1, 3, 3), group=3)
    assert not refittable("Conv", (4, 3, 1, 1), weight_input=True)
    assert refittable("Gemm", (3, 4)) and refittable("Gemm", (4, 3), transB=1) and refittable("Gemm", (3, 4), transA=0)
    assert not refittable("Gemm", (2, 4), transA=1)
    assert not refittable("Gemm", (3, 4), weight_input=True)
    assert refittable("MatMul", (3, 4))
    assert not refittable("MatMul", (2, 3, 4)) and not refittable("MatMul", (3,))
    assert not refittable("MatMul", (3, 4), weight_input=True)
    assert not refittable("Add", (3,))


def test_feature_count_is_the_number_of_input_features_of_the_weight():
    shapes = {"Conv": ((4, 3, 2, 5), {}), "Gemm": ((3, 4), {}), "MatMul": ((3, 4), {})}
    for op, (shape, attributes) in shapes.items():
        node = helper.make_node(op, ["x", "w"], ["y"], **attributes)
        model = model_of([node], [tensor("x")], [tensor("y")], {"w": np.ones(shape)})
        assert reconstruct.feature_count(the_node(model)) == {"Conv": 30, "Gemm": 3, "MatMul": 3}[op]
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    assert reconstruct.feature_count(the_node(model_of([node], [tensor("x")], [tensor("y")], {"w": np.ones((4, 7))}))) == 7


WRITES = {
    "Conv without bias": (helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), (4, 3, 3, 3), [2, 3, 5, 5]),
    "Conv with bias": (helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 2]), (4, 3, 3, 3), [2, 3, 5, 5]),
    "Gemm alpha beta": (helper.make_node("Gemm", ["x", "w", "b"], ["y"], alpha=2.0, beta=0.5), (3, 4), [2, 3]),
    "Gemm transB": (helper.make_node("Gemm", ["x", "w", "b"], ["y"], alpha=3.0, transB=1), (4, 3), [2, 3]),
    "Gemm without bias": (helper.make_node("Gemm", ["x", "w"], ["y"], alpha=0.5), (3, 4), [2, 3]),
    "MatMul": (helper.make_node("MatMul", ["x", "w"], ["y"]), (3, 4), [2, 3]),
}


@pytest.mark.parametrize("case", list(WRITES))
def test_a_written_layer_computes_the_given_weight_and_bias(case):
    node_proto, weight_shape, x_shape = WRITES[case]
    inits = {"w": RNG.standard_normal(weight_shape), **({"b": np.ones(4)} if "b" in node_proto.input else {})}
    model = model_of([node_proto], [tensor("x", x_shape)], [tensor("y")], inits)
    node = the_node(model)
    features = reconstruct.feature_count(node)
    weight, bias = RNG.standard_normal((4, features)), RNG.standard_normal(4)
    with_bias = reconstruct.has_bias_input(node)
    reconstruct.write_layer(node, weight, bias if with_bias else None)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    want = reconstruct.layer_rows(node, x).astype(np.float64) @ weight.T + (bias if with_bias else 0.0)
    got = reconstruct.output_rows(node, runtime.run(model, {"x": x})["y"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(reconstruct.flat_weight(node), weight, rtol=1e-6)
    assert node.inputs[1].const_value.numpy().dtype == np.float32
    # fresh initializers named after the layer; the replaced ones are gone
    names = {"y_refit_1", "y_refit_2"} if with_bias else {"y_refit_1"}
    assert set(model.graph.initializers) == names and node.inputs[1].name == "y_refit_1"
    if with_bias:
        np.testing.assert_allclose(reconstruct.bias_of(node, 4), bias, rtol=1e-6)
        assert node.inputs[2].name == "y_refit_2" and node.inputs[2].const_value.numpy().dtype == np.float32
    if node.op_type == "Gemm":
        assert node.attributes.get_float("alpha") == 1.0
        assert node.attributes.get_float("beta", 1.0) == 1.0


def test_a_replaced_weight_stays_while_something_else_uses_it():
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="first"), helper.make_node("Gemm", ["x", "w", "b"], ["y"])]
    model = model_of(nodes, [tensor("x", [2, 3])], [tensor("h"), tensor("y")], {"w": np.ones((3, 4)), "b": np.ones(4)})
    first, second = list(model.graph)
    reconstruct.write_layer(first, np.zeros((4, 3)), np.zeros(4))
    assert set(model.graph.initializers) == {"w", "b", "first_refit_1", "first_refit_2"}
    reconstruct.write_layer(second, np.zeros((4, 3)), np.zeros(4))
    assert set(model.graph.initializers) == {"first_refit_1", "first_refit_2", "y_refit_1", "y_refit_2"}


def test_a_replaced_weight_that_is_a_graph_output_stays():
    node = helper.make_node("Gemm", ["x", "w"], ["y"])
    model = model_of([node], [tensor("x", [2, 3])], [tensor("y"), tensor("w", [3, 4])], {"w": np.ones((3, 4))})
    reconstruct.write_layer(the_node(model), np.zeros((4, 3)), None)
    assert set(model.graph.initializers) == {"w", "y_refit_1"}
    np.testing.assert_array_equal(runtime.run(model, {"x": np.ones((2, 3), np.float32)})["w"], np.ones((3, 4)))


def test_written_weights_get_fresh_names():
    model = model_of([helper.make_node("Gemm", ["x", "w"], ["y"])], [tensor("x", [2, 3])], [tensor("y")],
                     {"w": np.ones((3, 4)), "y_refit_1": np.ones(1), "y_refit_1_2": np.ones(1)})
    node = the_node(model)
    reconstruct.write_layer(node, np.zeros((4, 3)), None)
    assert node.inputs[1].name == "y_refit_1_1"  # the first free one of base, base_1, base_2, ...
    reconstruct.write_layer(node, np.ones((4, 3)), None)
    assert node.inputs[1].name == "y_refit_1_3"
    assert set(model.graph.initializers) == {"y_refit_1", "y_refit_1_2", "y_refit_1_3"}
    fresh = model_of([helper.make_node("Gemm", ["x", "w"], ["y"])], [tensor("x", [2, 3])], [tensor("y")], {"w": np.ones((3, 4))})
    reconstruct.write_layer(the_node(fresh), np.zeros((4, 3)), None)
    assert the_node(fresh).inputs[1].name == "y_refit_1"


def old_ir_model() -> ir.Model:
    """IR 3: every initializer is also listed as a graph input."""
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"])
    return model_of([node], [tensor("x", [2, 3]), tensor("w", [3, 4]), tensor("b", [4])], [tensor("y")],
                    {"w": np.ones((3, 4)), "b": np.ones(4)}, ir_version=3, opset=8)


def test_in_an_old_ir_model_new_weights_are_listed_as_graph_inputs_and_old_inputs_stay():
    model = old_ir_model()
    reconstruct.write_layer(the_node(model), np.full((4, 3), 2.0), np.full(4, -1.0))
    inputs = [v.name for v in model.graph.inputs]
    assert inputs == ["x", "w", "b", "y_refit_1", "y_refit_2"]
    assert set(model.graph.initializers) == {"w", "b", "y_refit_1", "y_refit_2"}  # graph inputs are never dropped
    y = runtime.run(model, {"x": np.ones((2, 3), np.float32)})["y"]
    np.testing.assert_allclose(y, np.full((2, 4), 5.0))


def test_new_initializers_are_graph_inputs_only_when_every_initializer_is_one():
    model = old_ir_model()
    assert reconstruct.add_initializer(model.graph, "c", np.ones(2, np.float32)) in model.graph.inputs
    mixed = model_of([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], [tensor("x", [2, 3]), tensor("w", [3, 4])], [tensor("y")],
                     {"w": np.ones((3, 4)), "b": np.ones(4)})
    value = reconstruct.add_initializer(mixed.graph, "c", np.ones((2, 3), np.float16))
    assert value not in mixed.graph.inputs and [v.name for v in mixed.graph.inputs] == ["x", "w"]
    assert value.name == "c" and value.dtype == ir.DataType.FLOAT16 and list(value.shape) == [2, 3]
    np.testing.assert_array_equal(value.const_value.numpy(), np.ones((2, 3), np.float16))
    assert mixed.graph.initializers["c"] is value
    empty = model_of([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [2])], [tensor("y")], {})
    assert reconstruct.add_initializer(empty.graph, "c", np.ones(2, np.float32)) not in empty.graph.inputs
    assert [v.name for v in empty.graph.inputs] == ["x"] and set(empty.graph.initializers) == {"c"}


def two_layer_model() -> ir.Model:
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["c"]), helper.make_node("Gemm", ["z", "w3"], ["d"])]
    inits = {"w1": RNG.standard_normal((3, 2, 3, 3)), "w2": RNG.standard_normal((4, 3, 1, 1)), "b2": RNG.standard_normal(4),
             "w3": RNG.standard_normal((6, 2))}
    return model_of(nodes, [tensor("x", [1, 2, 5, 5]), tensor("z", [3, 6])], [tensor("c"), tensor("d")], inits)


def every_value(model: ir.Model, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every node output of ``model`` on ``feed``, from the whole model run with all of them as outputs."""
    proto = ir.serde.serialize_model(model)
    proto.graph.output.extend(tensor(o) for node in proto.graph.node for o in node.output if o not in {v.name for v in proto.graph.output})
    return runtime.run(proto, {k: v for k, v in feed.items() if k in ("x", "z")})


def test_truncated_sessions_compute_what_the_whole_model_computes():
    model = two_layer_model()
    x, z = RNG.standard_normal((1, 2, 5, 5)).astype(np.float32), RNG.standard_normal((3, 6)).astype(np.float32)
    feeds = [{"x": x, "z": z}, {"x": 2 * x, "z": -z, "unused": z}]  # inputs the model does not have are ignored
    wants = [every_value(model, feed) for feed in feeds]
    for names in (["a"], ["r", "a"], ["c"], ["d"], ["c", "d", "a"], ["x", "c"]):
        captured = list(reconstruct.capture_values(model, names + names[:1], feeds))
        assert len(captured) == 2 and all(list(c) == names for c in captured)
        for got, want, feed in zip(captured, wants, feeds):
            for name in names:
                np.testing.assert_allclose(got[name], want.get(name, feed.get(name)), rtol=1e-5, atol=1e-5)
    sess = reconstruct.truncated_session(model, ["a", "d"])
    assert [o.name for o in sess.get_outputs()] == ["a", "d"]


def test_a_truncated_session_keeps_the_weights_a_subgraph_reads():
    then_branch = helper.make_graph([helper.make_node("Add", ["x", "k"], ["t"])], "then", [], [tensor("t")])
    else_branch = helper.make_graph([helper.make_node("Sub", ["x", "k"], ["e"])], "else", [], [tensor("e")])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch)]
    model = model_of(nodes, [tensor("x", [3])], [tensor("y")], {"k": np.array([1.0, 2.0, 3.0]), "zero": np.zeros(())})
    [out] = reconstruct.capture_values(model, ["y"], [{"x": np.ones(3, np.float32)}])
    np.testing.assert_allclose(out["y"], [2.0, 3.0, 4.0])


def test_input_grams_are_x_transpose_x_of_the_layer_rows_over_all_feeds():
    model = two_layer_model()
    conv1, _, conv2, gemm = list(model.graph)
    feeds = [{"x": RNG.standard_normal((1, 2, 5, 5)).astype(np.float32), "z": RNG.standard_normal((3, 6)).astype(np.float32)}
             for _ in range(3)]
    grams = reconstruct.input_grams(model, [conv1, conv2, gemm, list(model.graph)[1]], feeds)
    assert list(grams) == [conv1, conv2, gemm]
    everything = [runtime.run(model_of([helper.make_node("Identity", ["x"], ["x_"])], [tensor("x", [1, 2, 5, 5])], [tensor("x_")], {}),
                              {"x": f["x"]}) for f in feeds]
    rows = np.concatenate([reconstruct.layer_rows(conv1, e["x_"]) for e in everything]).astype(np.float64)
    np.testing.assert_allclose(grams[conv1].xtx, rows.T @ rows, rtol=1e-5, atol=1e-4)
    assert grams[conv1].rows == 75 and grams[conv1].xtx.shape == (18, 18) and grams[conv1].xty.shape == (18, 0)  # no targets
    z = np.concatenate([f["z"] for f in feeds]).astype(np.float64)
    np.testing.assert_allclose(grams[gemm].xtx, z.T @ z, rtol=1e-5, atol=1e-4)
    assert grams[gemm].rows == 9 and grams[conv2].rows == 75 and grams[conv2].xtx.shape == (3, 3)
    # wider layers are left out; nothing refittable: nothing
    assert list(reconstruct.input_grams(model, [conv1, conv2, gemm], feeds, max_features=6)) == [conv2, gemm]
    assert list(reconstruct.input_grams(model, [conv1, conv2, gemm], feeds, max_features=3)) == [conv2]
    assert reconstruct.input_grams(model, [list(model.graph)[1]], feeds) == {}


def test_input_grams_sample_large_feeds_to_max_rows_per_batch_without_repeating_a_row():
    rows = reconstruct.MAX_ROWS_PER_BATCH + 50
    model = model_of([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", [rows, 64])], [tensor("y")], {"w": np.ones((64, 2))})
    node = the_node(model)
    # row i is one-hot at i % 64: the diagonal of X^T X counts the sampled rows of each residue
    x = np.eye(64, dtype=np.float32)[np.arange(rows) % 64]
    gram = reconstruct.input_grams(model, [node], [{"x": x}, {"x": x}])[node]
    assert gram.rows == 2 * reconstruct.MAX_ROWS_PER_BATCH
    counts = np.diag(gram.xtx)
    assert counts.sum() == 2 * reconstruct.MAX_ROWS_PER_BATCH and np.all(counts <= 2 * np.bincount(np.arange(rows) % 64))
    assert np.count_nonzero(gram.xtx - np.diag(counts)) == 0
    np.testing.assert_array_equal(gram.xtx, reconstruct.input_grams(model, [node], [{"x": x}, {"x": x}], seed=0)[node].xtx)
    assert not np.array_equal(gram.xtx, reconstruct.input_grams(model, [node], [{"x": x}, {"x": x}], seed=1)[node].xtx)


def test_dependencies_are_found_past_missing_optional_inputs_and_graph_inputs():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["n"]), helper.make_node("Clip", ["a", "", "m"], ["c"]),
             helper.make_node("Sum", ["x", "m", "n", "c"], ["d"])]
    model = model_of(nodes, [tensor("x", [3])], [tensor("d")], {"m": np.ones(())})
    relu, neg, clip, total = list(model.graph)
    assert clip.inputs[1] is None
    assert reconstruct._depends_on(clip, {relu}) and not reconstruct._depends_on(clip, {neg})
    # inputs without a producer (a graph input, an initializer) come first: the walk goes on past them
    assert reconstruct._depends_on(total, {neg}) and reconstruct._depends_on(total, {relu}) and reconstruct._depends_on(total, {clip})
    assert not reconstruct._depends_on(total, set())
