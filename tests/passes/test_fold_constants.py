"""fold-constants: Constant nodes and initializer inputs become constants; constant subgraphs are evaluated."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from conftest import apply_and_compare, assert_same_outputs, op_counts, real_model, then_branch
from ir import io, runtime
from ir.errors import UsageError
from passes.base import create


def fold(text: str, **options):
    """Run fold-constants; return (pass, result, max relative error vs. the model before)."""
    return apply_and_compare("fold-constants", text, **options)


def test_constant_nodes_become_initializers_of_the_same_name():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
        w = Constant <value = float[3] w_t = {1.0, 2.0, 3.0}> ()
        k = Constant <value_int = 2> ()
        y = Mul (x, w)
    }
    """
    rewrite, result, error = fold(text)
    assert op_counts(result.model) == {"Mul": 1}
    assert result.model.graph.initializers["w"].const_value.numpy().tolist() == [1.0, 2.0, 3.0]
    assert rewrite.stats["constants lifted"] == 2
    assert error == 0.0


def test_initializers_listed_as_inputs_become_constants_and_ir_version_4():
    # The IR < 4 convention: every initializer is also a graph input.
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2]) for n in ("x", "w")],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        [onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")],
    )
    model = ir.serde.deserialize_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 9)], ir_version=3))
    rewrite = create("fold-constants")
    assert rewrite(model).modified
    assert [v.name for v in model.graph.inputs] == ["x"]
    assert model.ir_version == 4
    assert rewrite.stats["initializer inputs removed"] == 1
    assert any("keep_initializer_inputs" in note for note in rewrite.notes)
    assert runtime.run(model, {"x": np.zeros(2, np.float32)})["y"].tolist() == [1.0, 2.0]


def test_keep_initializer_inputs_leaves_them_overridable():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1.0, 2.0}> {
        n = Neg (w)
        y = Add (x, n)
    }
    """
    _, result, _ = fold(text, keep_initializer_inputs="true")
    assert not result.modified
    assert [v.name for v in result.model.graph.inputs] == ["x", "w"]
    assert op_counts(result.model) == {"Neg": 1, "Add": 1}


def test_shape_chain_of_a_static_input_folds_into_a_constant_reshape():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4] x) => (float[2,12] y) {
        s = Shape (x)
        i0 = Constant <value = int64[1] i0_t = {0}> ()
        d0 = Gather <axis = 0> (s, i0)
        m = Constant <value = int64[1] m_t = {-1}> ()
        shape = Concat <axis = 0> (d0, m)
        y = Reshape (x, shape)
    }
    """
    rewrite, result, error = fold(text)
    assert op_counts(result.model) == {"Reshape": 1}
    reshape = next(iter(result.model.graph))
    assert reshape.inputs[1].const_value.numpy().tolist() == [2, -1]
    assert rewrite.stats["shapes folded"] == 1
    assert error == 0.0


def test_shape_with_start_end_and_size_of_static_values_fold():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4] x) => (int64[2] s, int64 n) {
        s = Shape <start = 1> (x)
        n = Size (x)
    }
    """
    _, result, _ = fold(text)
    assert len(result.model.graph) == 0
    outputs = {v.name: v.const_value.numpy().tolist() for v in result.model.graph.outputs}
    assert outputs == {"s": [3, 4], "n": 24}  # graph outputs keep their names


def test_shape_of_a_dynamic_value_is_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,3] x) => (int64[2] s) { s = Shape (x) }
    """
    _, result, _ = fold(text)
    assert not result.modified


def test_folded_values_keep_their_data_type():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float16[3] x) => (float16[3] y) {
        c = Constant <value = float[3] c_t = {0.1, 0.2, 0.3}> ()
        h = Cast <to = 10> (c)
        start = Constant <value_int = 0> ()
        limit = Constant <value_int = 3> ()
        delta = Constant <value_int = 1> ()
        r = Range (start, limit, delta)
        rh = Cast <to = 10> (r)
        s = Add (h, rh)
        y = Add (x, s)
    }
    """
    _, result, error = fold(text)
    assert op_counts(result.model) == {"Add": 1}
    constant = next(iter(result.model.graph)).inputs[1]
    assert constant.const_value.dtype == ir.DataType.FLOAT16
    assert error == 0.0


def test_random_ops_are_never_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
        c = Constant <value = float[2] c_t = {1.0, 2.0}> ()
        r = RandomUniformLike (c)
        y = Add (x, r)
    }
    """
    model = ir.from_onnx_text(text)
    create("fold-constants")(model)
    assert op_counts(model) == {"RandomUniformLike": 1, "Add": 1}


def test_if_with_a_constant_condition_is_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
        cond = Constant <value = bool c_t = {1}> ()
        y = If (cond) <
            then_branch = then_g () => (float[2] a) { a = Identity (x) },
            else_branch = else_g () => (float[2] b) { b = Neg (x) }
        >
    }
    """
    model = ir.from_onnx_text(text)
    create("fold-constants")(model)
    assert op_counts(model) == {"If": 1}


def test_nodes_inside_subgraphs_fold():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool cond, float[2] x) => (float[2] y) {
        y = If (cond) <
            then_branch = then_g () => (float[2] a) {
                c = Constant <value = float[2] c_t = {1.0, 2.0}> ()
                n = Neg (c)
                a = Add (x, n)
            },
            else_branch = else_g () => (float[2] b) { b = Identity (x) }
        >
    }
    """
    model = ir.from_onnx_text(text)
    create("fold-constants")(model)
    branch = then_branch(model)
    assert [node.op_type for node in branch] == ["Add"]
    feeds = {"cond": np.array(True), "x": np.ones(2, np.float32)}
    assert runtime.run(model, feeds)["y"].tolist() == [0.0, -1.0]


def test_results_over_max_bytes_stay_nodes():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1000,1000] x) => (float[1000,1000] y) {
        shape = Constant <value = int64[2] s_t = {1000, 1000}> ()
        big = ConstantOfShape <value = float[1] v = {1.0}> (shape)
        y = Add (x, big)
    }
    """
    rewrite, result, _ = fold(text, max_bytes="100000")
    assert op_counts(result.model) == {"ConstantOfShape": 1, "Add": 1}
    assert rewrite.stats["refused: over max_bytes"] == 1
    assert any("max_bytes" in note for note in rewrite.notes)


def test_custom_ops_are_left_alone_with_a_note():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
        c = Constant <value = float[2] c_t = {1.0, 2.0}> ()
        z = com.example.Magic (c)
        y = Add (x, z)
    }
    """
    model = ir.from_onnx_text(text)
    rewrite = create("fold-constants")
    rewrite(model)
    assert op_counts(model) == {"Magic": 1, "Add": 1}
    assert any("unknown custom op left alone" in note for note in rewrite.notes)


def test_second_run_reports_no_change():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
        w = Constant <value = float[3] w_t = {1.0, 2.0, 3.0}> ()
        n = Neg (w)
        y = Mul (x, n)
    }
    """
    model = ir.from_onnx_text(text)
    assert create("fold-constants")(model).modified
    assert not create("fold-constants")(model).modified


def test_negative_max_bytes_is_rejected():
    with pytest.raises(UsageError, match="max_bytes"):
        create("fold-constants", {"max_bytes": "-1"})


def test_onnxruntime_evaluates_what_the_reference_evaluator_cannot(monkeypatch):
    from passes.fold import fold_constants

    def unavailable(*args):
        raise NotImplementedError("op not in the reference evaluator")

    monkeypatch.setattr(fold_constants, "_evaluate_reference", unavailable)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] c = {1.0, 4.0}> {
        r = Sqrt (c)
        y = Add (x, r)
    }
    """
    _, result, error = fold(text)
    assert op_counts(result.model) == {"Add": 1}
    assert error == 0.0


@pytest.mark.real_models
def test_real_ppocr_recognizer_shape_chains_fold_once_the_input_shape_is_fixed():
    model = real_model("ppocr-rec")
    before = io.copy_model(model)
    constant_nodes = op_counts(before).get("Constant", 0)
    rewrite = create("fold-constants")
    assert rewrite(model).modified
    counts = op_counts(model)
    assert "Constant" not in counts and "Shape" not in counts and "Cast" not in counts
    assert constant_nodes > 0 and rewrite.stats["constants lifted"] == constant_nodes  # every one, once
    assert_same_outputs(before, model)


@pytest.mark.parametrize(("start", "end"), [(None, None), (0, None), (None, 2), (-2, None), (1, -1), (-10, 10), (3, 1)])
def test_shape_start_and_end_fold_to_the_python_slice_of_the_dimensions(start, end):
    dims = [2, 3, 4, 5]
    want = dims[start:end]
    attributes = ", ".join(f"{name} = {value}" for name, value in (("start", start), ("end", end)) if value is not None)
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4,5] x) => (int64[{len(want)}] s, int64 n) {{
        s = Shape {f"<{attributes}>" if attributes else ""} (x)
        n = Size (x)
    }}
    """
    _, result, _ = fold(text)
    outputs = {v.name: v.const_value.numpy().tolist() for v in result.model.graph.outputs}
    assert outputs == {"s": want, "n": int(np.prod(dims))}
