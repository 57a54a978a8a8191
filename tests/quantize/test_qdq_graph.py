"""The graph side of ``passes/quantize/qdq.py``: opset conversion, the placement helpers and
``GraphWriter`` (fresh names, initializers, Q/DQ nodes), on small models from ONNX text, checked
against hand-computed values and ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir.errors import InvalidModelError
from passes.quantize import qdq
from tests.quantize.helpers import ort_outputs


def parse(text: str) -> ir.Model:
    return ir.serde.deserialize_model(onnx.parser.parse_model(text))


def node_named(graph: ir.Graph, name: str) -> ir.Node:
    return next(node for node in graph if node.name == name)


RELU_CONV = """<ir_version: {ir}, opset_import: ["" : {opset}, "com.example" : 2]>
g (float[1, 1, 3, 3] x) => (float[1, 2, 3, 3] y) <float[2, 1, 1, 1] w = {{1, -2}}> {{
    c = Conv(x, w)
    y = Relu(c)
}}"""


# -- default_opset / raise_opset -----------------------------------------------------------------
def test_default_opset_reads_the_default_domain_then_ai_onnx_then_1():
    assert qdq.default_opset(parse(RELU_CONV.format(ir=8, opset=12))) == 12
    model = parse(RELU_CONV.format(ir=8, opset=12))
    model.opset_imports.clear()
    assert qdq.default_opset(model) == 1
    model.opset_imports["ai.onnx"] = 9
    assert qdq.default_opset(model) == 9
    model.opset_imports[""] = 14  # the default domain wins over "ai.onnx"
    assert qdq.default_opset(model) == 14
    assert isinstance(qdq.default_opset(model), int)


def test_raise_opset_leaves_a_model_at_or_above_the_minimum_alone():
    model = parse(RELU_CONV.format(ir=8, opset=13))
    graph = model.graph
    assert qdq.raise_opset(model, 13) is False
    assert qdq.raise_opset(model, 11) is False
    assert model.graph is graph and model.opset_imports == {"": 13, "com.example": 2} and model.ir_version == 8


def test_raise_opset_converts_in_place_and_keeps_the_function():
    model = parse(RELU_CONV.format(ir=4, opset=11))
    x = np.random.default_rng(0).standard_normal((1, 1, 3, 3)).astype(np.float32)
    expected = ort_outputs(model, {"x": x})[0]
    assert qdq.raise_opset(model, 13) is True
    assert model.opset_imports[""] == 13 and qdq.default_opset(model) == 13
    assert model.graph.opset_imports is model.opset_imports  # the model's dict is its graph's
    assert model.opset_imports.get("com.example") == 2  # other domains are kept
    assert model.ir_version == 7  # raised to what opset 13 needs, not beyond
    assert [node.op_type for node in model.graph] == ["Conv", "Relu"]
    np.testing.assert_array_equal(ort_outputs(model, {"x": x})[0], expected)


def test_raise_opset_declares_the_ir_version_of_the_new_opset():
    # onnx.version_converter keeps the old IR version; opset 21 (and its INT4 type) needs IR 10
    model = parse(RELU_CONV.format(ir=8, opset=17))
    assert qdq.raise_opset(model, 21) is True
    assert (model.opset_imports[""], model.ir_version) == (21, 10)
    model = parse(RELU_CONV.format(ir=4, opset=9))
    assert qdq.raise_opset(model, 11) is True
    assert (model.opset_imports[""], model.ir_version) == (11, 6)


def test_raise_opset_keeps_a_newer_ir_version():
    model = parse(RELU_CONV.format(ir=9, opset=11))
    assert qdq.raise_opset(model, 13) is True
    assert model.ir_version == 9


def test_raise_opset_reports_the_first_line_of_the_converters_error(monkeypatch):
    model = parse(RELU_CONV.format(ir=8, opset=11))

    def refuse(proto, target):
        assert target == 13 and proto.opset_import[0].version == 11
        raise RuntimeError("no adapter for Foo\nstack trace line")

    monkeypatch.setattr(onnx.version_converter, "convert_version", refuse)
    with pytest.raises(InvalidModelError) as error:
        qdq.raise_opset(model, 13)
    assert str(error.value) == "cannot convert the model from opset 11 to 13: no adapter for Foo"
    assert isinstance(error.value.__cause__, RuntimeError)


# -- is_private / drop_unused_constants / set_constant_input ---------------------------------------
SHARED = """<ir_version: 8, opset_import: ["" : 13]>
g (float[2] x) => (float[2] y, float[2] b) <float[2] k = {1, 2}, float[2] unused = {3, 4}> {
    a = Relu(x)
    b = Neg(a)
    c = Abs(b)
    d = Add(c, k)
    e = Mul(d, d)
    y = Sigmoid(e)
}"""


def test_a_private_value_is_read_once_and_is_no_graph_input_or_output():
    graph = parse(SHARED).graph
    values = {v.name: v for node in graph for v in node.outputs}
    assert qdq.is_private(values["a"])  # read once by Neg
    assert qdq.is_private(values["c"])
    assert not qdq.is_private(values["b"])  # a graph output, read once
    assert not qdq.is_private(values["d"])  # read twice (by one node)
    assert not qdq.is_private(values["y"])  # never read
    assert not qdq.is_private(graph.inputs[0])  # a graph input, read once
    assert qdq.is_private(graph.initializers["k"])


CONSTANTS = """<ir_version: 8, opset_import: ["" : 13]>
g (float[2] x, float[2] fed) => (float[2] y, float[2] out_init, float[2] out_const)
  <float[2] used = {1, 2}, float[2] unused = {3, 4}, float[2] fed = {5, 6}, float[2] out_init = {7, 8}> {
    kept = Constant<value = float[2] {1, 1}>()
    dropped = Constant<value = float[2] {2, 2}>()
    out_const = Constant<value = float[2] {3, 3}>()
    s = Add(x, used)
    t = Add(s, kept)
    unread = Relu(t)
    y = Identity(t)
}"""


def test_drop_unused_constants_removes_only_unread_initializers_and_constant_nodes():
    graph = parse(CONSTANTS).graph
    qdq.drop_unused_constants(graph)
    assert sorted(graph.initializers) == ["fed", "out_init", "used"]  # a graph input or output stays
    assert [node.outputs[0].name for node in graph] == ["kept", "out_const", "s", "t", "unread", "y"]


def test_set_constant_input_adds_a_fresh_initializer_and_grows_the_inputs():
    model = parse("""<ir_version: 8, opset_import: ["" : 13]>
        g (float[4] x) => (float[2] y) <int64[1] starts = {1}> { y = Slice(x, starts, starts) }""")
    node = next(iter(model.graph))
    qdq.set_constant_input(node, 1, np.array([0], np.int64), "starts")  # the name is taken: starts_1
    qdq.set_constant_input(node, 2, np.array([2], np.int64), "ends")
    qdq.set_constant_input(node, 4, np.array([1], np.int64), "steps")  # past the end: inputs 3 is left empty
    assert [v.name if v is not None else None for v in node.inputs] == ["x", "starts_1", "ends", None, "steps"]
    assert node.inputs[2].const_value.numpy().tolist() == [2]
    assert model.graph.initializers["steps"] is node.inputs[4]
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(ort_outputs(model, {"x": x})[0], [0, 1])


# -- GraphWriter -----------------------------------------------------------------------------------
NAMED = """<ir_version: 8, opset_import: ["" : 13]>
g (float[2] x) => (float[2] y) <float[2] w = {1, 2}> {
    a = Relu(x)
    y = Add(a, w)
}"""


def named_graph() -> ir.Graph:
    graph = parse(NAMED).graph
    next(iter(graph)).name = "node_a"
    return graph


def test_fresh_names_avoid_inputs_initializers_outputs_and_node_names():
    writer = qdq.GraphWriter(named_graph(), "tag")
    assert writer.fresh("x") == "x_1"
    assert writer.fresh("w") == "w_1"
    assert writer.fresh("a") == "a_1"
    assert writer.fresh("node_a") == "node_a_1"
    assert writer.fresh("y") == "y_1"
    assert writer.fresh("new") == "new"
    assert writer.fresh("new") == "new_1"  # a name given out is taken
    assert writer.fresh("new") == "new_2"
    assert writer.fresh("x") == "x_2"


def test_constant_registers_an_initializer_with_the_arrays_type_shape_and_values():
    graph = named_graph()
    writer = qdq.GraphWriter(graph, "tag")
    scalar = writer.constant("w", np.float32(0.5))
    assert scalar.name == "w_1" and graph.initializers["w_1"] is scalar
    assert scalar.dtype == ir.DataType.FLOAT and scalar.shape == ir.Shape([])  # a 0-d scale stays 0-d
    assert scalar.const_value.numpy().shape == () and scalar.const_value.name == "w_1"
    transposed = np.arange(6, dtype=np.int8).reshape(2, 3).T  # not C-contiguous
    value = writer.constant("codes", transposed)
    assert value.dtype == ir.DataType.INT8 and value.shape == ir.Shape([3, 2])
    np.testing.assert_array_equal(value.const_value.numpy(), transposed)
    assert value.const_value.numpy().flags["C_CONTIGUOUS"]


def test_node_appends_a_tagged_node_with_fresh_names_type_and_shape():
    graph = named_graph()
    writer = qdq.GraphWriter(graph, "mytag")
    x = graph.inputs[0]
    out = writer.node("Relu", [x], "a", ir.DataType.FLOAT, ir.Shape([2]))
    node = out.producer()
    assert list(graph)[-1] is node and node.name == "a_Relu" and out.name == "a_relu"
    assert node.metadata_props["graphpress.rule"] == "mytag" and node.domain == ""
    assert out.dtype == ir.DataType.FLOAT and out.shape == ir.Shape([2]) and list(node.inputs) == [x]
    again = writer.node("Relu", [out], "a", ir.DataType.FLOAT, ir.Shape([2]), {"unused": 1}, domain="com.example")
    assert again.producer().name == "a_Relu_1" and again.name == "a_relu_1"
    assert again.producer().domain == "com.example" and again.producer().attributes["unused"].value == 1
    q = writer.node("QuantizeLinear", [x, writer.constant("s", np.float32(1))], "x", ir.DataType.UINT8, ir.Shape([2]))
    dq = writer.node("DequantizeLinear", [q, writer.constant("s", np.float32(1))], "x", ir.DataType.FLOAT, None)
    assert (q.name, dq.name, q.dtype, dq.shape) == ("x_q", "x_dq", ir.DataType.UINT8, None)


def dq_model(q, scale, zero, axis, block_size=None, opset=21):
    graph = ir.Graph([], [], nodes=[], opset_imports={"": opset}, name="g")
    out = qdq.GraphWriter(graph, "tag").dequantized_constant("w", q, scale, zero, axis, block_size)
    graph.outputs.append(out)
    return ir.Model(graph, ir_version=10), out


def test_dequantized_constant_per_tensor_has_no_axis():
    q = np.array([[-3, 5], [7, -1]], np.int8)
    model, out = dq_model(q, np.float32(0.5), np.array(0, np.int8), axis=1)  # a scalar scale: no axis attribute
    node = out.producer()
    assert node.op_type == "DequantizeLinear" and "axis" not in node.attributes and "block_size" not in node.attributes
    assert [v.name for v in node.inputs] == ["w_quantized", "w_scale", "w_zero_point"]
    assert out.name == "w_dq" and out.dtype == ir.DataType.FLOAT and out.shape == ir.Shape([2, 2])
    np.testing.assert_array_equal(ort_outputs(model, {})[0], q * np.float32(0.5))


def test_dequantized_constant_per_channel_sets_the_axis():
    q = np.array([[-3, 5], [7, -1]], np.int8)
    scale = np.array([0.5, 2.0], np.float32)
    model, out = dq_model(q, scale, np.zeros(2, np.int8), axis=1)
    assert out.producer().attributes["axis"].value == 1
    np.testing.assert_array_equal(ort_outputs(model, {})[0], q * scale[None, :])
    model, out = dq_model(q, scale, np.zeros(2, np.int8), axis=0)
    assert out.producer().attributes["axis"].value == 0
    np.testing.assert_array_equal(ort_outputs(model, {})[0], q * scale[:, None])
    _, out = dq_model(q, scale, np.zeros(2, np.int8), axis=None)
    assert "axis" not in out.producer().attributes


def test_dequantized_constant_block_wise_sets_block_size():
    q = np.array([[1, 2, 3, 4], [-1, -2, -3, -4]], np.int8)
    scale = np.array([[1.0, 0.5], [2.0, 0.25]], np.float32)  # one scale per 2 elements along axis 1
    model, out = dq_model(q, scale, np.zeros((2, 2), np.int8), axis=1, block_size=2)
    attributes = out.producer().attributes
    assert attributes["axis"].value == 1 and attributes["block_size"].value == 2
    np.testing.assert_array_equal(ort_outputs(model, {})[0], q * np.repeat(scale, 2, axis=1))
    _, out = dq_model(q, scale[:, 0], np.zeros(2, np.int8), axis=0, block_size=0)
    assert "block_size" not in out.producer().attributes


FAKE = """<ir_version: 8, opset_import: ["" : 13]>
g (float[4] x) => (float[4] y, float[4] z) {
    a = Relu(x)
    y = Neg(a)
    z = Abs(a)
}"""


def test_fake_quantize_rewires_every_reader_through_one_q_dq_pair():
    model = parse(FAKE)
    graph = model.graph
    a = next(iter(graph)).outputs[0]
    a.shape = ir.Shape([4])
    dq = qdq.GraphWriter(graph, "quantize").fake_quantize(a, np.float32(0.5), np.array(10, np.uint8))
    q = dq.producer().inputs[0]
    assert q.producer().op_type == "QuantizeLinear" and dq.producer().op_type == "DequantizeLinear"
    assert list(q.producer().inputs)[0] is a and [user.op_type for user, _ in a.uses()] == ["QuantizeLinear"]
    assert sorted(user.op_type for user, _ in dq.uses()) == ["Abs", "Neg"]
    assert (q.name, dq.name) == ("a_q", "a_dq")
    assert list(q.producer().inputs)[1:] == list(dq.producer().inputs)[1:]  # the same scale and zero point
    assert [v.name for v in list(dq.producer().inputs)[1:]] == ["a_scale", "a_zero_point"]
    assert q.dtype == ir.DataType.UINT8 and dq.dtype == ir.DataType.FLOAT
    assert q.shape == ir.Shape([4]) and dq.shape == ir.Shape([4])  # the shape of the value
    assert q.producer().metadata_props["graphpress.rule"] == "quantize"
    x = np.array([-1.0, 0.26, 1.0, 200.0], np.float32)
    # relu, then levels round(a / 0.5) + 10 clipped to [0, 255], back: (level - 10) * 0.5
    expected = (np.clip(np.round(np.maximum(x, 0) / 0.5) + 10, 0, 255) - 10) * 0.5
    y, z = ort_outputs(model, {"x": x})
    np.testing.assert_array_equal(y, -expected)
    np.testing.assert_array_equal(z, expected)


def test_fake_quantize_of_an_unnamed_untyped_value_uses_value_and_float():
    graph = ir.Graph([], [], nodes=[], opset_imports={"": 13}, name="g")
    value = ir.Value(name=None)
    writer = qdq.GraphWriter(graph, "t")
    dq = writer.fake_quantize(value, np.float32(1), np.array(0, np.int8))
    assert dq.name == "value_dq" and dq.dtype == ir.DataType.FLOAT
    assert dq.producer().inputs[0].dtype == ir.DataType.INT8
    scale = dq.producer().inputs[1]
    assert scale.name == "value_scale" and scale.const_value.numpy().dtype == np.float32 and scale.shape == ir.Shape([])


@pytest.mark.parametrize("scale", [0.25, np.float64(0.25), np.array([0.25])[0]])
def test_fake_quantize_stores_the_scale_as_a_float32_scalar(scale):
    graph = parse(FAKE).graph
    a = next(iter(graph)).outputs[0]
    dq = qdq.GraphWriter(graph, "quantize").fake_quantize(a, scale, np.array(0, np.uint8))
    stored = dq.producer().inputs[1]
    assert stored.dtype == ir.DataType.FLOAT and stored.shape == ir.Shape([])
    assert stored.const_value.numpy().dtype == np.float32 and stored.const_value.numpy() == np.float32(0.25)
