"""ir.shapes.infer, which the fold passes run before they read shapes: inferred shapes replace old ones."""

from __future__ import annotations

import onnx_ir as ir

from conftest import branch_model_text, op_types, then_branch
from ir import shapes
from passes.base import create

CUSTOM_THEN_RESHAPE = """
<ir_version: 8, opset_import: ["" : 17, "com.acme" : 1]>
g (float[N,3] x) => (float[A,B] y) <int64[2] s = {2, 3}> {
    t = com.acme.Magic(x)
    y = Reshape(t, s)
}
"""


def value_named(graph: ir.Graph, name: str) -> ir.Value:
    return next(value for node in graph for value in node.outputs if value.name == name)


def test_a_shape_inference_cannot_confirm_is_dropped_and_the_type_kept():
    model = ir.from_onnx_text(CUSTOM_THEN_RESHAPE)
    magic = value_named(model.graph, "t")
    magic.shape, magic.dtype = ir.Shape([2, 3]), ir.DataType.FLOAT  # e.g. left by an earlier rewrite
    shapes.infer(model)
    assert magic.shape is None
    assert magic.dtype == ir.DataType.FLOAT


def test_graph_inputs_keep_their_shapes():
    model = ir.from_onnx_text(CUSTOM_THEN_RESHAPE)
    shapes.infer(model)
    assert [str(dim) for dim in model.graph.inputs[0].shape] == ["N", "3"]


def test_values_inside_subgraphs_are_inferred():
    text = branch_model_text("r = Relu(x)  t = Identity(r)")
    model = ir.from_onnx_text(text)
    shapes.infer(model)
    relu = value_named(then_branch(model), "r")
    assert relu.shape == ir.Shape([2, 3]) and relu.dtype == ir.DataType.FLOAT


def test_a_stale_shape_does_not_make_a_reshape_look_like_a_noop():
    # Magic's real output shape is unknown: a Reshape of it to [2, 3] may well change its shape.
    model = ir.from_onnx_text(CUSTOM_THEN_RESHAPE)
    value_named(model.graph, "t").shape = ir.Shape([2, 3])
    assert not create("eliminate-noop")(model).modified
    assert op_types(model) == ["Magic", "Reshape"]
