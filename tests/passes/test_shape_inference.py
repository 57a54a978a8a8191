"""ir.shapes.infer, which the fold passes run before they read shapes: inferred shapes replace old ones."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from conftest import branch_model_text, op_types, then_branch
from ir import io, shapes
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


CUSTOM_DECLARED = """
<ir_version: 8, opset_import: ["" : 17, "com.acme" : 1]>
g (float[N,3] x) => (float[A,B] y) <float[N,2,3] t> {
    t = com.acme.Magic(x)
    r = Relu(t)
    s = Shape(r)
    y = Reshape(r, s)
}
"""


def test_a_custom_op_output_keeps_the_shape_its_file_declares_and_inference_goes_on_from_it(tmp_path):
    path = tmp_path / "declared.onnx"
    ir.save(ir.from_onnx_text(CUSTOM_DECLARED), path)
    model = io.load(path)
    shapes.infer(model)
    assert [str(d) for d in value_named(model.graph, "t").shape] == ["N", "2", "3"]
    assert [str(d) for d in value_named(model.graph, "r").shape] == ["N", "2", "3"]


def test_a_declared_custom_op_shape_changed_after_loading_is_dropped(tmp_path):
    path = tmp_path / "declared.onnx"
    ir.save(ir.from_onnx_text(CUSTOM_DECLARED), path)
    model = io.load(path)
    value_named(model.graph, "t").shape = ir.Shape([4, 4])
    shapes.infer(model)
    assert value_named(model.graph, "t").shape is None


def test_inference_runs_once_while_the_model_is_unchanged_and_again_after_an_edit(monkeypatch):
    calls = []
    original = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = ir.from_onnx_text(branch_model_text("r = Relu(x)  t = Identity(r)"))
    shapes.infer(model)
    shapes.infer(model)
    assert len(calls) == 1
    create("eliminate-noop")(model)  # removes the Identity: a structural change
    shapes.infer(model)
    assert len(calls) == 2
    shapes.invalidate(model)
    shapes.infer(model)
    assert len(calls) == 3
    shapes.infer(model, cached=False)
    assert len(calls) == 4
