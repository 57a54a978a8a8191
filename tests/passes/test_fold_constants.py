"""fold-constants: Constant nodes and initializer inputs become constants; constant subgraphs are evaluated."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from conftest import apply_and_compare, apply_pass, assert_same_outputs, op_counts, real_model, then_branch
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


# -- evaluation under the model's opset ----------------------------------------------------------------
@pytest.mark.parametrize("evaluator", ["reference", "onnxruntime"])
def test_nodes_are_evaluated_under_the_models_opset(evaluator, monkeypatch):
    # Squeeze-11 takes its axes as an attribute; the newest Squeeze ignores it and squeezes both 1s
    from passes.fold import fold_constants

    def unavailable(*args):
        raise NotImplementedError("evaluator not used in this test")

    other = "_evaluate_onnxruntime" if evaluator == "reference" else "_evaluate_reference"
    monkeypatch.setattr(fold_constants, other, unavailable)
    text = """
    <ir_version: 8, opset_import: ["" : 11]>
    g (float[3,1] x) => (float[3,1] y) <float[1,3,1] c = {1.0, 2.0, 3.0}> {
        s = Squeeze <axes = [0]> (c)
        y = Add (x, s)
    }
    """
    _, result, error = fold(text)
    assert op_counts(result.model) == {"Add": 1}
    assert list(next(iter(result.model.graph)).inputs[1].const_value.shape) == [3, 1]
    assert error == 0.0


def test_a_result_of_another_type_than_declared_is_taken_from_onnxruntime(monkeypatch):
    from passes.fold import fold_constants

    def float64_result(node_proto, feeds, opsets, outputs):
        return [np.sqrt(feeds["c"].astype(np.float64))]

    monkeypatch.setattr(fold_constants, "_evaluate_reference", float64_result)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] c = {1.0, 4.0}> {
        r = Sqrt (c)
        y = Add (x, r)
    }
    """
    _, result, error = fold(text)
    constant = next(iter(result.model.graph)).inputs[1]
    assert constant.const_value.dtype == ir.DataType.FLOAT
    assert error == 0.0


def test_a_node_neither_evaluator_computes_is_left_with_a_note(monkeypatch):
    from passes.fold import fold_constants

    def unavailable(*args):
        raise NotImplementedError("no evaluator")

    monkeypatch.setattr(fold_constants, "_evaluate_reference", unavailable)
    monkeypatch.setattr(fold_constants, "_evaluate_onnxruntime", unavailable)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] c = {1.0, 4.0}> {
        r = Sqrt (c)
        y = Add (x, r)
    }
    """
    rewrite, result, _ = fold(text)
    assert op_counts(result.model) == {"Sqrt": 1, "Add": 1}
    assert any("Sqrt node producing r" in note and "could not be evaluated" in note for note in rewrite.notes)


def test_the_reference_evaluator_alone_folds_what_it_computes(monkeypatch):
    from passes.fold import fold_constants

    def unavailable(*args):
        raise NotImplementedError("no ONNX Runtime")

    monkeypatch.setattr(fold_constants, "_evaluate_onnxruntime", unavailable)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y, float s) <float[2] c = {1.0, 4.0}> {
        r = Sqrt (c)
        y = Add (x, r)
        s = ReduceSum <keepdims = 0> (c)
    }
    """
    rewrite, result, error = fold(text)
    assert op_counts(result.model) == {"Add": 1}
    assert rewrite.stats["nodes folded"] == 2
    assert result.model.graph.initializers["s"].const_value.numpy().tolist() == 5.0
    assert error == 0.0


def test_a_numpy_scalar_result_is_stored_as_a_scalar_tensor(monkeypatch):
    from passes.fold import fold_constants

    monkeypatch.setattr(fold_constants, "_evaluate_onnxruntime", lambda *args: (_ for _ in ()).throw(RuntimeError("no ONNX Runtime")))
    monkeypatch.setattr(fold_constants.ReferenceEvaluator, "run", lambda self, names, feeds: [np.float32(5.0)])
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float s) <float[2] c = {1.0, 4.0}> {
        s = ReduceSum <keepdims = 0> (c)
    }
    """
    _, result, _ = fold(text)
    assert result.model.graph.initializers["s"].const_value.numpy().tolist() == 5.0


def test_a_sequence_result_is_not_an_initializer():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] a = {1.0, 2.0}, float[2] b = {3.0, 4.0}, int64 i = {1}> {
        q = SequenceConstruct (a, b)
        e = SequenceAt (q, i)
        y = Add (x, e)
    }
    """
    _, result, error = fold(text)
    assert op_counts(result.model)["SequenceConstruct"] == 1
    assert error == 0.0


def test_a_result_the_ir_cannot_store_is_left_with_a_note(monkeypatch):
    from passes.fold import fold_constants

    record = np.zeros(1, dtype=[("a", np.float32), ("b", np.int8)])  # a structured array: no ONNX type
    monkeypatch.setattr(fold_constants.FoldConstantsPass, "_evaluate", lambda self, node, inputs, opsets: [record])
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1] x) => (float[1] y) <float[1] c = {1.0}> {
        r = Neg (c)
        y = Add (x, r)
    }
    """
    rewrite, result, _ = fold(text)
    assert op_counts(result.model) == {"Neg": 1, "Add": 1}
    assert any("Neg node producing r: result cannot be stored" in note for note in rewrite.notes)


@pytest.mark.parametrize("max_bytes", [None, "8"])
def test_an_unnamed_output_is_skipped_and_the_named_ones_fold(max_bytes):
    # RNN's outputs are optional: Y is left unnamed, Y_h is used
    hidden = 2
    w = np.full((1, hidden, 1), 0.5, np.float32)
    r = np.full((1, hidden, hidden), 0.25, np.float32)
    xs = np.arange(3, dtype=np.float32).reshape(3, 1, 1)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("RNN", ["xs", "w", "r"], ["", "h"], hidden_size=hidden), onnx.helper.make_node("Add", ["x", "h"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, hidden])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, hidden])],
        [onnx.numpy_helper.from_array(a, n) for n, a in (("xs", xs), ("w", w), ("r", r))],
    )
    model = ir.serde.deserialize_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]))
    feeds = {"x": np.zeros((1, 1, hidden), np.float32)}
    want = runtime.run(model, feeds)["y"]
    # Y_h is 1 x 1 x 2 float32: 8 bytes; the unnamed Y is not computed and counts for nothing
    create("fold-constants", {"max_bytes": max_bytes} if max_bytes else {})(model)
    assert op_counts(model) == {"Add": 1}
    np.testing.assert_allclose(runtime.run(model, feeds)["y"], want, rtol=1e-6)


def test_a_folded_initializer_has_the_name_type_and_shape_of_its_tensor():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y, int64[2] s) <float[3] c = {1.0, 2.0, 3.0}> {
        n = Neg (c)
        y = Mul (x, n)
        s = Shape (x)
    }
    """
    _, result, _ = fold(text)
    for name, dtype, shape in (("n", ir.DataType.FLOAT, [3]), ("s", ir.DataType.INT64, [2])):
        value = result.model.graph.initializers[name]
        assert (value.const_value.name, value.dtype, list(value.shape)) == (name, dtype, shape)


# -- max_bytes: refused before evaluation when the declared size says so --------------------------------
SPLIT_TEXT = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[100] x) => (float[100] y) <float[200] c = {VALUES}> {
    a, b = Split <num_outputs = 2> (c)
    s = Add (a, b)
    y = Add (x, s)
}
""".replace("{VALUES}", "{" + ",".join(str(float(v)) for v in range(200)) + "}")


@pytest.mark.parametrize(("max_bytes", "folded"), [(800, True), (799, False)])
def test_max_bytes_counts_every_output_and_refuses_before_evaluating(max_bytes, folded, monkeypatch):
    from passes.fold import fold_constants

    evaluated = []
    real = fold_constants._evaluate_reference

    def spy(node_proto, *args):
        evaluated.append(node_proto.op_type)
        return real(node_proto, *args)

    monkeypatch.setattr(fold_constants, "_evaluate_reference", spy)
    rewrite, result, error = fold(SPLIT_TEXT, max_bytes=str(max_bytes))
    # Split's outputs a and b are 2 x 100 float32: 800 bytes together; the Add of them is 400
    assert ("Split" in evaluated) == folded
    assert ("Split" in op_counts(result.model)) != folded
    assert error == 0.0
    if not folded:
        assert rewrite.stats["refused: over max_bytes"] == 1
        assert any("result of 800 bytes exceeds max_bytes=799" in note for note in rewrite.notes)


def test_a_result_of_unknown_declared_size_is_checked_after_evaluation():
    # NonZero's output length depends on the data: its size is known only once computed
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (int64[N] x) => (int64[N] y) <float[20] c = {1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1}, int64 one = {1}> {
        z = NonZero (c)
        n = Size (z)
        n1 = Add (n, one)
        y = Add (x, n1)
    }
    """
    rewrite, result, _ = fold(text, max_bytes="100")
    assert op_counts(result.model) == {"NonZero": 1, "Size": 1, "Add": 2}
    assert any("NonZero node producing z: result of 160 bytes" in note for note in rewrite.notes)
    rewrite, result, _ = fold(text, max_bytes="160")
    assert op_counts(result.model) == {"Add": 1}


@pytest.mark.parametrize("evaluator", ["reference", "onnxruntime"])
def test_string_results_fold_into_string_initializers(evaluator, monkeypatch):
    # constant strings read back as numpy bytes arrays; the pass used to crash on the folded result
    from passes.fold import fold_constants

    def unavailable(*args):
        raise NotImplementedError("evaluator not used in this test")

    monkeypatch.setattr(fold_constants, "_evaluate_onnxruntime" if evaluator == "reference" else "_evaluate_reference", unavailable)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (string[4] y) <string[2] a = {"ab", "cd"}> {
        y = Concat <axis = 0> (a, a)
    }
    """
    before, result, _ = apply_pass("fold-constants", text)
    assert op_counts(result.model) == {}
    feeds = {"x": np.zeros(2, np.float32)}
    assert runtime.run(result.model, feeds)["y"].tolist() == runtime.run(before, feeds)["y"].tolist() == ["ab", "cd", "ab", "cd"]


def test_a_string_matrix_keeps_its_shape():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (string[2,2] y) <string[1,2] a = {"ab", "cd"}> {
        y = Concat <axis = 0> (a, a)
    }
    """
    before, result, _ = apply_pass("fold-constants", text)
    feeds = {"x": np.zeros(2, np.float32)}
    assert runtime.run(result.model, feeds)["y"].tolist() == runtime.run(before, feeds)["y"].tolist() == [["ab", "cd"], ["ab", "cd"]]


def test_an_empty_result_keeps_its_element_type():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] c = {1.0, 2.0}, int64[1] s = {1}, int64[1] e = {1}> {
        z = Slice (c, s, e)
        k = Concat <axis = 0> (x, z)
        y = Identity (k)
    }
    """
    _, result, error = fold(text)
    assert result.model.graph.initializers["z"].const_value.dtype == ir.DataType.FLOAT
    assert error == 0.0


def test_every_refusal_is_counted():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[100] x) => (float[100] y) <int64[1] n = {100}> {
        a = ConstantOfShape <value = float[1] {1.0}> (n)
        b = ConstantOfShape <value = float[1] {2.0}> (n)
        s = Add (a, b)
        y = Add (x, s)
    }
    """
    rewrite, result, _ = fold(text, max_bytes="399")
    assert rewrite.stats["refused: over max_bytes"] == 2
    rewrite, result, _ = fold(text, max_bytes="400")
    assert op_counts(result.model) == {"Add": 1} and rewrite.stats["nodes folded"] == 3


# -- what is never folded, and what is reported -----------------------------------------------------
def test_an_if_whose_branches_are_constant_is_still_not_folded():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
        cond = Constant <value = bool c_t = {1}> ()
        k = If (cond) <
            then_branch = then_g () => (float[2] a) { a = Constant <value = float[2] {1.0, 2.0}> () },
            else_branch = else_g () => (float[2] b) { b = Constant <value = float[2] {3.0, 4.0}> () }
        >
        y = Add (x, k)
    }
    """
    model = ir.from_onnx_text(text)
    create("fold-constants")(model)
    assert op_counts(model) == {"If": 1, "Add": 1}


def test_a_constant_that_is_a_graph_output_stays_a_constant_node():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y, float[2] k) {
        k = Constant <value = float[2] {1.0, 2.0}> ()
        y = Neg (x)
    }
    """
    rewrite, result, _ = fold(text)
    assert op_counts(result.model) == {"Constant": 1, "Neg": 1}
    assert rewrite.stats["constants lifted"] == 0 and not result.modified


def test_a_constant_with_two_values_is_not_lifted_and_noted():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Constant", [], ["k"], value_float=1.0, value_int=2), onnx.helper.make_node("Add", ["x", "k"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3])],
    )
    model = ir.serde.deserialize_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]))
    rewrite = create("fold-constants")
    rewrite(model)
    assert op_counts(model)["Constant"] == 1
    assert rewrite.stats["constants lifted"] == 0
    assert any("Constant node producing k: not lifted" in note for note in rewrite.notes)


def test_lifting_a_single_constant_is_a_change():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) {
        k = Constant <value = float[2] {1.0, 2.0}> ()
        y = Add (x, k)
    }
    """
    _, result, _ = fold(text)
    assert result.modified and op_counts(result.model) == {"Add": 1}


@pytest.mark.parametrize(("ir_version", "raised"), [(3, True), (4, False)])
def test_the_ir_version_is_raised_only_below_4(ir_version, raised):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2]) for n in ("x", "w")],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        [onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")],
    )
    model = ir.serde.deserialize_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 9)], ir_version=ir_version))
    rewrite = create("fold-constants")
    rewrite(model)
    assert model.ir_version == 4
    assert any(f"IR version raised from {ir_version} to 4" in note for note in rewrite.notes) == raised


def test_every_folded_shape_is_counted():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (int64[2] s, int64 n) { s = Shape (x)
        n = Size (x) }
    """
    rewrite, _, _ = fold(text)
    assert rewrite.stats["shapes folded"] == 2


def test_an_empty_shape_slice_is_an_int64_vector():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (int64[0] s) { s = Shape <start = 2> (x) }
    """
    _, result, _ = fold(text)
    value = result.model.graph.initializers["s"].const_value
    assert value.dtype == ir.DataType.INT64 and list(value.shape) == [0]
