"""merge-consecutive merges pairs of data-movement nodes whose intermediate nobody else reads."""

from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir
import pytest

from conftest import (
    apply_pass,
    assert_same_outputs,
    assert_same_outputs_in_both_branches,
    branch_model_text,
    ints_of,
    model_text,
    op_types,
    then_branch,
)
from passes.base import create


def apply(text: str):
    return apply_pass("merge-consecutive", text)


# --- Reshape -------------------------------------------------------------------------------------------


def test_reshape_then_reshape_becomes_one_reshape():
    text = model_text(
        "a = Reshape(x, s1)\n b = Reshape(a, s2)\n y = Relu(b)",
        "float[2,3,4] x",
        "float[4,6] y",
        inits="int64[2] s1 = {6, 4}, int64[2] s2 = {4, -1}",
    )
    before, result, merge = apply(text)
    assert result.modified
    assert op_types(result.model) == ["Reshape", "Relu"]
    reshape = next(iter(result.model.graph))
    assert reshape.inputs[0].name == "x" and ints_of(reshape.inputs[1]) == [4, -1]
    assert merge.stats == {"Reshape->Reshape merged": 1}
    assert_same_outputs(before, result.model)


def test_reshape_copying_a_dimension_gets_the_static_shape():
    # The second Reshape's 0 copies a dimension of the intermediate (6), not of x (2).
    text = model_text(
        "a = Reshape(x, s1)\n y = Reshape(a, s2)",
        "float[2,3,4] x",
        "float[6,2,2] y",
        inits="int64[2] s1 = {6, 4}, int64[3] s2 = {0, 2, 2}",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Reshape"]
    assert ints_of(next(iter(result.model.graph)).inputs[1]) == [6, 2, 2]
    assert result.model.graph.outputs[0].name == "y"
    assert_same_outputs(before, result.model)


def test_reshape_copying_a_symbolic_dimension_is_kept():
    text = model_text(
        "a = Reshape(x, s1)\n y = Reshape(a, s2)",
        "float[N,3,4] x",
        "float[A,B,C] y",
        inits="int64[2] s1 = {-1, 4}, int64[3] s2 = {0, 2, 2}",
    )
    _, result, _ = apply(text)
    assert not result.modified


@pytest.mark.parametrize("first", ["Flatten <axis = 1> (x)", "Squeeze(x, ax)", "Unsqueeze(x, ax)"])
def test_view_op_then_reshape_becomes_one_reshape(first):
    text = model_text(
        f"a = {first}\n y = Reshape(a, s)",
        "float[2,1,6] x",
        "float[3,4] y",
        inits="int64[1] ax = {1}, int64[2] s = {3, 4}",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Reshape"]
    assert_same_outputs(before, result.model)


@pytest.mark.parametrize(
    ("second", "result"),
    [("Flatten <axis = 2> (a)", "[4,6]"), ("Squeeze(a, ax)", "[4,3,2]"), ("Unsqueeze(a, ax)", "[4,1,1,3,2]")],
)
def test_reshape_then_view_op_becomes_one_reshape(second, result):
    text = model_text(
        f"a = Reshape(x, s)\n y = {second}",
        "float[2,3,4] x",
        f"float{result} y",
        inits="int64[1] ax = {1}, int64[4] s = {4, 1, 3, 2}",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Reshape"]
    assert result.model.graph.outputs[0].name == "y"
    assert_same_outputs(before, result.model)


def test_intermediate_with_two_consumers_is_not_merged():
    text = model_text(
        "a = Reshape(x, s1)\n b = Reshape(a, s2)\n c = Relu(a)\n y = Add(b, c)",
        "float[2,3] x",
        "float[3,2] y",
        inits="int64[2] s1 = {3, 2}, int64[2] s2 = {3, 2}",
    )
    _, result, _ = apply(text)
    assert op_types(result.model) == ["Reshape", "Reshape", "Relu", "Add"]


def test_intermediate_graph_output_is_not_merged():
    text = model_text(
        "a = Reshape(x, s1)\n y = Reshape(a, s2)",
        "float[2,3] x",
        "float[3,2] a, float[6] y",
        inits="int64[2] s1 = {3, 2}, int64[1] s2 = {6}",
    )
    _, result, _ = apply(text)
    assert not result.modified


# --- Transpose -----------------------------------------------------------------------------------------


def test_transposes_compose():
    text = model_text(
        "a = Transpose <perm = [0, 2, 1]> (x)\n y = Transpose <perm = [1, 0, 2]> (a)",
        "float[2,3,4] x",
        "float[4,2,3] y",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Transpose"]
    transpose = next(iter(result.model.graph))
    assert list(transpose.attributes.get_ints("perm")) == [2, 0, 1]
    assert transpose.outputs[0].name == "y"
    assert_same_outputs(before, result.model)


def test_transposes_that_cancel_disappear_and_the_output_keeps_its_name():
    text = model_text(
        "r = Relu(x)\n a = Transpose <perm = [1, 2, 0]> (r)\n y = Transpose <perm = [2, 0, 1]> (a)",
        "float[2,3,4] x",
        "float[2,3,4] y",
    )
    before, result, merge = apply(text)
    assert op_types(result.model) == ["Relu"]
    assert result.model.graph.outputs[0].name == "y"
    assert merge.stats == {"Transpose->Transpose cancelled": 1}
    assert_same_outputs(before, result.model)


def test_cancelling_transpose_goes_even_when_the_first_is_shared():
    text = model_text(
        "a = Transpose(x)\n b = Transpose(a)\n c = Relu(a)\n y = Add(b, x)",
        "float[2,3] x",
        "float[3,2] c, float[2,3] y",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Transpose", "Relu", "Add"]
    assert_same_outputs(before, result.model)


# --- Squeeze / Unsqueeze ---------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 13])
def test_squeezes_combine(opset):
    first, second = _squeeze_calls(opset, "Squeeze", [0, -1], [1])
    text = model_text(f"a = {first}\n y = {second}", "float[1,2,1,3,1] x", "float[2,3] y", opset=opset, inits=_axes_inits(opset, [0, -1], [1]))
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Squeeze"]
    assert _axes_of(next(iter(result.model.graph)), opset) == [0, 2, 4]
    assert_same_outputs(before, result.model)


@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueezes_combine(opset):
    first, second = _squeeze_calls(opset, "Unsqueeze", [0, -1], [2])
    text = model_text(f"a = {first}\n y = {second}", "float[2,3] x", "float[1,2,1,3,1] y", opset=opset, inits=_axes_inits(opset, [0, -1], [2]))
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Unsqueeze"]
    assert _axes_of(next(iter(result.model.graph)), opset) == [0, 2, 4]
    assert_same_outputs(before, result.model)


@pytest.mark.parametrize(("inner", "outer"), list(itertools.product([[0], [2], [-1], [0, 3]], [[0], [1], [-1], [1, 2]])))
def test_unsqueeze_combinations_match_onnx_runtime(inner, outer):
    # Rank 2 input, inner inserts len(inner), outer len(outer): use symbolic output to skip declaring it.
    first, second = _squeeze_calls(13, "Unsqueeze", inner, outer)
    rank = 2 + len(inner) + len(outer)
    text = model_text(f"a = {first}\n y = {second}", "float[2,3] x", f"float[{','.join('?' * rank)}] y", inits=_axes_inits(13, inner, outer))
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Unsqueeze"]
    assert_same_outputs(before, result.model)


@pytest.mark.parametrize(("inner", "outer"), [([0], [1]), ([2], [-1]), ([-1], [0]), ([0, 4], [1]), ([-3], [0, 3])])
def test_squeeze_combinations_match_onnx_runtime(inner, outer):
    first, second = _squeeze_calls(13, "Squeeze", inner, outer)
    rank = 5 - len(inner) - len(outer)
    text = model_text(f"a = {first}\n y = {second}", "float[1,2,1,3,1] x", f"float[{','.join('?' * rank)}] y", inits=_axes_inits(13, inner, outer))
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Squeeze"]
    assert_same_outputs(before, result.model)


@pytest.mark.parametrize(("first_op", "second_op", "shape"), [("Unsqueeze", "Squeeze", "float[2,3] x"), ("Squeeze", "Unsqueeze", "float[2,1,3] x")])
@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_and_unsqueeze_of_the_same_axes_cancel(first_op, second_op, shape, opset):
    first, second = _squeeze_calls(opset, first_op, [1], [-2], second_op)
    body = f"r = Relu(x)\n a = {first.replace('(x', '(r')}\n y = {second}"
    text = model_text(body, shape, shape.replace(" x", " y"), opset=opset, inits=_axes_inits(opset, [1], [-2]))
    before, result, merge = apply(text)
    assert op_types(result.model) == ["Relu"]
    assert result.model.graph.outputs[0].name == "y"
    assert merge.stats == {f"{first_op}->{second_op} cancelled": 1}
    assert_same_outputs(before, result.model)


def test_unsqueeze_then_squeeze_of_other_axes_becomes_a_reshape():
    first, second = _squeeze_calls(13, "Unsqueeze", [0], [2], "Squeeze")
    text = model_text(f"a = {first}\n y = {second}", "float[2,1,3] x", "float[1,2,3] y", inits=_axes_inits(13, [0], [2]))
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Reshape"]
    assert_same_outputs(before, result.model)


def test_squeeze_without_axes_and_unknown_shape_is_left_alone():
    # Which dimensions Squeeze() removes depends on N at run time.
    text = model_text("a = Squeeze(x)\n y = Squeeze(a, ax)", "float[N,1,3,1] x", "float[3] y", inits="int64[1] ax = {0}")
    _, result, _ = apply(text)
    assert not result.modified


def _squeeze_calls(opset, first_op, inner, outer, second_op=None):
    second_op = second_op or first_op
    if opset >= 13:
        return f"{first_op}(x, ax1)", f"{second_op}(a, ax2)"
    return f"{first_op} <axes = {inner}> (x)", f"{second_op} <axes = {outer}> (a)"


def _axes_inits(opset, inner, outer):
    if opset < 13:
        return ""
    return f"int64[{len(inner)}] ax1 = {{{', '.join(map(str, inner))}}}, int64[{len(outer)}] ax2 = {{{', '.join(map(str, outer))}}}"


def _axes_of(node: ir.Node, opset: int) -> list[int]:
    if opset >= 13:
        return ints_of(node.inputs[1])
    return list(node.attributes.get_ints("axes"))


# --- Slice -> Squeeze --------------------------------------------------------------------------------------


def test_slice_of_one_element_then_squeeze_becomes_gather():
    text = model_text(
        "a = Slice(x, s, e, ax)\n y = Squeeze(a, ax)",
        "float[3,2,4] x",
        "float[2,4] y",
        inits="int64[1] s = {-2}, int64[1] e = {2}, int64[1] ax = {0}",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Gather"]
    gather = next(iter(result.model.graph))
    assert gather.attributes.get_int("axis") == 0 and ints_of(gather.inputs[1]) == 1
    assert result.model.graph.outputs[0].name == "y"
    assert_same_outputs(before, result.model)


def test_slice_of_two_elements_is_not_a_gather():
    text = model_text(
        "a = Slice(x, s, e, ax)\n y = Relu(a)",
        "float[3,2,4] x",
        "float[2,2,4] y",
        inits="int64[1] s = {0}, int64[1] e = {2}, int64[1] ax = {0}",
    )
    _, result, _ = apply(text)
    assert not result.modified


# --- Transpose moving only size-1 axes ------------------------------------------------------------------


def test_transpose_moving_only_ones_then_reshape_reads_the_transpose_input():
    # [T,2,1,H] -> [T,1,2,H] keeps the flat order (an LSTM's output, batch 1); T is dynamic.
    text = model_text(
        "a = Transpose <perm = [0, 2, 1, 3]> (x)\n b = Reshape(a, s)\n y = Relu(b)",
        "float[T,2,1,4] x", "float[T,1,8] y", inits="int64[3] s = {0, 0, -1}",
    )
    before, result, merge = apply(text)
    assert op_types(result.model) == ["Reshape", "Relu"]
    reshape = next(iter(result.model.graph))
    # The first 0 copies T, which the Transpose left in place; the second copied the moved 1.
    assert reshape.inputs[0].name == "x" and ints_of(reshape.inputs[1]) == [0, 1, -1]
    assert merge.stats == {"Transpose->Reshape merged": 1}
    for steps in (1, 3):
        feed = {"x": np.arange(steps * 8, dtype=np.float32).reshape(steps, 2, 1, 4)}
        assert_same_outputs(before, result.model, feeds=feed)


def test_transpose_that_reorders_real_axes_is_not_a_view():
    text = model_text(
        "a = Transpose <perm = [0, 2, 1]> (x)\n b = Reshape(a, s)\n y = Relu(b)",
        "float[1,2,3] x", "float[6] y", inits="int64[1] s = {-1}",
    )
    _, result, _ = apply(text)
    assert op_types(result.model) == ["Transpose", "Reshape", "Relu"]


def test_unknown_dimension_counts_as_a_real_axis():
    # Whether N is 1 is unknown: moving it past the 2 might reorder data.
    text = model_text(
        "a = Transpose <perm = [1, 0, 2]> (x)\n b = Reshape(a, s)\n y = Relu(b)",
        "float[N,2,3] x", "float[K] y", inits="int64[1] s = {-1}",
    )
    _, result, _ = apply(text)
    assert op_types(result.model) == ["Transpose", "Reshape", "Relu"]


def test_unsqueeze_then_transpose_of_ones_becomes_one_reshape():
    text = model_text(
        "a = Unsqueeze(x, ax)\n b = Transpose <perm = [1, 0, 2]> (a)\n y = Relu(b)",
        "float[2,3] x", "float[2,1,3] y", inits="int64[1] ax = {0}",
    )
    before, result, _ = apply(text)
    assert op_types(result.model) == ["Reshape", "Relu"]
    assert ints_of(next(iter(result.model.graph)).inputs[1]) == [2, 1, 3]
    assert_same_outputs(before, result.model)


# --- Slice -> Slice ----------------------------------------------------------------------------------------


def test_slices_on_disjoint_axes_merge_into_each_consumer():
    # YOLOv5's Focus layer: rows 0::2 then columns 0::2 and 1::2.
    text = model_text(
        "r = Slice(x, z, big, two, two)\n a = Slice(r, z, big, three, two)\n b = Slice(r, one, big, three, two)\n"
        " y = Concat <axis = 1> (a, b)",
        "float[1,3,4,6] x", "float[1,6,2,3] y",
        inits="int64[1] z = {0}, int64[1] one = {1}, int64[1] two = {2}, int64[1] three = {3}, int64[1] big = {9223372036854775807}",
    )
    before, result, merge = apply(text)
    assert op_types(result.model) == ["Slice", "Slice", "Concat"]
    first = next(iter(result.model.graph))
    assert first.inputs[0].name == "x" and ints_of(first.inputs[3]) == [2, 3] and ints_of(first.inputs[4]) == [2, 2]
    assert merge.stats == {"Slice->Slice merged": 2}
    assert_same_outputs(before, result.model)


def test_slices_on_the_same_axis_are_left_alone():
    text = model_text(
        "r = Slice(x, one, big, two)\n y = Slice(r, one, big, two)",
        "float[2,3,8] x", "float[2,3,6] y", inits="int64[1] one = {1}, int64[1] two = {2}, int64[1] big = {100}",
    )
    _, result, _ = apply(text)
    assert op_types(result.model) == ["Slice", "Slice"]


def test_a_slice_with_another_consumer_is_not_merged():
    text = model_text(
        "r = Slice(x, z, one, zero)\n a = Slice(r, z, one, two)\n b = Relu(r)\n y = Add(a, b)",
        "float[2,3,4] x", "float[1,3,4] y",
        inits="int64[1] z = {0}, int64[1] one = {1}, int64[1] zero = {0}, int64[1] two = {2}",
    )
    _, result, _ = apply(text)
    assert op_types(result.model).count("Slice") == 2


# --- Names, custom ops, nothing to do ------------------------------------------------------------------


def test_new_nodes_and_values_get_unique_names():
    # Two pairs in a graph whose names invite collisions with what the pass would generate.
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4] x) => (float[1,24] y, float[1,24] z) <int64[1] ax = {1}> {
        [p1] a = Unsqueeze(x, ax)
        [p2] y = Flatten <axis = 0> (a)
        [p3] b = Unsqueeze(x, ax)
        [p2_reshape] z = Flatten <axis = 0> (b)
    }
    """
    before, result, _ = apply(text)
    model = result.model
    assert op_types(model) == ["Reshape", "Reshape"]
    names = [node.name for node in model.graph]
    assert len(set(names)) == len(names)
    values = [v.name for node in model.graph for v in node.outputs] + list(model.graph.initializers)
    assert len(set(values)) == len(values)
    assert [v.name for v in model.graph.outputs] == ["y", "z"]
    assert_same_outputs(before, model)


def test_custom_domain_pair_is_left_alone():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.acme" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
        a = com.acme.Transpose <perm = [1, 0]> (x)
        y = Transpose <perm = [1, 0]> (a)
    }
    """
    model = ir.from_onnx_text(text)
    merge = create("merge-consecutive")
    assert not merge(model).modified
    assert any("com.acme" in note for note in merge.notes)


def test_nothing_to_do_reports_unmodified():
    text = model_text("a = Relu(x)\n y = Transpose(a)", "float[2,3] x", "float[3,2] y")
    _, result, merge = apply(text)
    assert not result.modified and not merge.stats


def test_pair_inside_if_branch_is_merged():
    text = branch_model_text("r = Relu(x)  a = Transpose <perm = [1, 0]> (r)  t = Transpose <perm = [1, 0]> (a)")
    before, result, _ = apply(text)
    assert result.modified
    model = result.model
    branch = then_branch(model)
    assert [n.op_type for n in branch] == ["Relu"]
    assert branch.outputs[0].name == "t"
    assert_same_outputs_in_both_branches(before, model)


@pytest.mark.parametrize(
    ("op", "shapes", "inner", "outer"),
    [("Unsqueeze", ("float[2,3] x", "float[1,2,1,3] y"), 0, 2), ("Squeeze", ("float[1,2,1,3] x", "float[2,3] y"), 0, 1)],
)
def test_pair_inside_a_function_of_unknown_rank_is_merged(op, shapes, inner, outer):
    # Function inputs carry no shapes: non-negative axes can still be combined; new axes are Constants.
    text = f"""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g ({shapes[0]}) => ({shapes[1]}) {{
        y = local.f(x)
    }}
    <domain: "local", opset_import: ["" : 17]>
    f (a) => (b) {{
        k0 = Constant <value = int64[1] {{{inner}}}> ()
        k1 = Constant <value = int64[1] {{{outer}}}> ()
        t = {op}(a, k0)
        b = {op}(t, k1)
    }}
    """
    before, result, _ = apply(text)
    assert result.modified
    model = result.model
    function = next(iter(model.functions.values()))
    assert [n.op_type for n in function].count(op) == 1
    assert_same_outputs(before, model)


# -- the shape a view op gives a tensor, against numpy ------------------------------------------------------
VIEW_DIMS = [2, 3, 4, 5]
RESHAPE_TARGETS = [[6, 20], [0, -1], [2, 0, 0, 5], [-1], [0, 3, -1, 1], [5, -1, 0], [5, 0, 8]]


def view_nodes():
    targets = ", ".join(f"int64[{len(t)}] s{i} = {{{', '.join(map(str, t))}}}" for i, t in enumerate(RESHAPE_TARGETS))
    body = "\n".join(f"r{i} = Reshape(x, s{i})" for i in range(len(RESHAPE_TARGETS)))
    body += "\nf0 = Flatten <axis = 0> (x)\nf1 = Flatten (x)\nf2 = Flatten <axis = -1> (x)\nf3 = Flatten <axis = 4> (x)"
    body += "\nt0 = Transpose <perm = [3, 1, 0, 2]> (x)\ny = Identity(x)"
    text = f'<ir_version: 8, opset_import: ["" : 17]>\ng (float[2,3,4,5] x) => (float[2,3,4,5] y) <{targets}> {{\n{body}\n}}'
    return {node.outputs[0].name: node for node in ir.from_onnx_text(text).graph}


def test_reshape_flatten_and_transpose_results_are_numpy_shapes():
    from passes.fold.merge_consecutive import _view_result

    nodes, data = view_nodes(), np.empty(VIEW_DIMS)
    for i, target in enumerate(RESHAPE_TARGETS):
        spelled = [VIEW_DIMS[k] if want == 0 else want for k, want in enumerate(target)]
        assert _view_result(nodes[f"r{i}"], VIEW_DIMS, None) == list(data.reshape(spelled).shape), target
    for name, axis in (("f0", 0), ("f1", 1), ("f2", 3), ("f3", 4)):
        assert _view_result(nodes[name], VIEW_DIMS, None) == [int(np.prod(VIEW_DIMS[:axis])), int(np.prod(VIEW_DIMS[axis:]))]
    assert _view_result(nodes["t0"], VIEW_DIMS, None) == list(np.transpose(data, [3, 1, 0, 2]).shape)


@pytest.mark.parametrize("axes", [[1], [-1], [0, 2], [3, -4]])
def test_squeeze_and_unsqueeze_results_are_numpy_shapes(axes):
    from passes.fold.merge_consecutive import _view_result

    text = '<ir_version: 8, opset_import: ["" : 11]>\ng (float[1,3,1,5] x) => (float[1,3,1,5] y) {\nq = Squeeze <axes = [0]> (x)\nu = Unsqueeze <axes = [0]> (x)\ny = Identity(x)\n}'
    nodes = {node.outputs[0].name: node for node in ir.from_onnx_text(text).graph}
    data = np.empty([2, 3, 4, 5])
    assert _view_result(nodes["u"], [2, 3, 4, 5], axes) == list(np.expand_dims(data, [a % (4 + len(axes)) for a in axes]).shape)
    ones = np.empty([1, 3, 1, 1])
    squeezable = [a for a in axes if ones.shape[a] == 1]
    if squeezable == axes:
        assert _view_result(nodes["q"], [1, 3, 1, 1], axes) == list(np.squeeze(ones, tuple(axes)).shape)
    assert _view_result(nodes["q"], [1, 3, 1, 1], None) == [3]


@pytest.mark.parametrize("opset", [10, 13])
def test_a_slice_with_default_axes_and_steps_takes_the_merged_parameters(opset):
    # the second Slice has only starts and ends (axis 0, step 1 by default): it grows to five inputs
    text = model_text(
        "r = Slice(x, one, big, two, two)\n y = Slice(r, one, big)",
        "float[3,4,6] x", "float[2,4,3] y", opset=opset,
        inits="int64[1] one = {1}, int64[1] two = {2}, int64[1] big = {9223372036854775807}",
    )
    before, result, merge = apply(text)
    assert op_types(result.model) == ["Slice"] and merge.stats == {"Slice->Slice merged": 1}
    merged = next(iter(result.model.graph))
    assert [ints_of(merged.inputs[k]) for k in (1, 3, 4)] == [[1, 1], [2, 0], [2, 1]]
    assert_same_outputs(before, result.model)


def test_a_slice_that_is_a_graph_output_or_read_as_a_parameter_is_not_merged():
    inits = "int64[1] z = {0}, int64[1] one = {1}, int64[1] two = {2}, int64[1] big = {100}"
    text = model_text("r = Slice(x, z, one, z)\n y = Slice(r, z, one, two)", "float[2,3,4] x", "float[1,3,1] y, float[1,3,4] r", inits=inits)
    _, result, _ = apply(text)
    assert op_types(result.model) == ["Slice", "Slice"]
    text = model_text("e = Slice(s, z, one, z)\n y = Slice(x, z, e, two)", "float[2,3,4] x, int64[2] s", "float[2,3,A] y", inits=inits)
    _, result, _ = apply(text)
    assert op_types(result.model) == ["Slice", "Slice"]
