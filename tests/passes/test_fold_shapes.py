"""fold-shapes computes shape arithmetic from the known dimensions of partly dynamic shapes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from conftest import apply_pass, assert_same_outputs, ints_of, model_text, op_types
from passes.base import create


def fold_shapes_then_dead(text: str):
    before, result, rewrite = apply_pass("fold-shapes", text)
    create("eliminate-dead")(result.model)
    return before, result, rewrite


def batches(*sizes, rest=(3, 8)):
    return [{"x": np.arange(n * int(np.prod(rest)), dtype=np.float32).reshape(n, *rest)} for n in sizes]


def reshape_target(model: ir.Model) -> list[int]:
    reshape = next(node for node in model.graph if node.op_type == "Reshape")
    return ints_of(reshape.inputs[1])


# Dynamic batch N, static 3x8: the pattern PyTorch exports for x.view(x.size(0), -1)-like code.
SHAPE_CHAIN = """
    s = Shape(x)
    i0 = Constant <value = int64 {0}> ()
    i1 = Constant <value = int64 {1}> ()
    i2 = Constant <value = int64 {2}> ()
    n = Gather(s, i0)
    c = Gather(s, i1)
    w = Gather(s, i2)
    cw = Mul(c, w)
    zero = Constant <value = int64[1] {0}> ()
"""


def test_a_static_dimension_gathered_from_a_partly_dynamic_shape_becomes_a_constant():
    text = model_text(
        SHAPE_CHAIN + "w1 = Unsqueeze(w, zero)\n y = Expand(x, w1)",
        "float[N,3,8] x", "float[N,3,8] y",
    )
    before, result, rewrite = fold_shapes_then_dead(text)
    assert result.modified
    assert op_types(result.model) == ["Expand"]
    assert ints_of(next(iter(result.model.graph)).inputs[1]) == [8]
    assert rewrite.stats["Unsqueeze computed from known dimensions"] == 1
    for feed in batches(1, 4):
        assert_same_outputs(before, result.model, feeds=feed)


def test_a_reshape_target_copies_the_dynamic_batch_and_spells_out_the_rest():
    # y = Reshape(x, [N, 3*8]): N is dimension 0 of x itself, so 0 copies it.
    text = model_text(
        SHAPE_CHAIN + "n1 = Unsqueeze(n, zero)\n cw1 = Unsqueeze(cw, zero)\n t = Concat <axis = 0> (n1, cw1)\n y = Reshape(x, t)",
        "float[N,3,8] x", "float[N,24] y",
    )
    before, result, rewrite = fold_shapes_then_dead(text)
    assert op_types(result.model) == ["Reshape"]
    assert reshape_target(result.model) == [0, 24]
    assert rewrite.stats["Reshape target made constant"] == 1
    for feed in batches(1, 5):
        assert_same_outputs(before, result.model, feeds=feed)


def test_one_unknown_element_becomes_minus_one_when_every_other_is_known_positive():
    # y = Reshape(x, [N*3, 8]): N*3 is unknown, 8 is known.
    text = model_text(
        SHAPE_CHAIN + "nc = Mul(n, c)\n nc1 = Unsqueeze(nc, zero)\n w1 = Unsqueeze(w, zero)\n t = Concat <axis = 0> (nc1, w1)\n y = Reshape(x, t)",
        "float[N,3,8] x", "float[M,8] y",
    )
    before, result, _ = fold_shapes_then_dead(text)
    assert op_types(result.model) == ["Reshape"]
    assert reshape_target(result.model) == [-1, 8]
    for feed in batches(2, 3):
        assert_same_outputs(before, result.model, feeds=feed)


def test_minus_one_is_refused_beside_a_copied_dimension_that_may_be_zero():
    # Reshape(x, [N, M*8]) with N and M dynamic: [0, -1] would fail on an empty batch, where the
    # original gives an empty result; the target stays computed.
    text = model_text(
        SHAPE_CHAIN + "m = Gather(s, i1)\n mw = Mul(m, w)\n n1 = Unsqueeze(n, zero)\n mw1 = Unsqueeze(mw, zero)\n"
        " t = Concat <axis = 0> (n1, mw1)\n y = Reshape(x, t)",
        "float[N,M,8] x", "float[N,K] y",
    )
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert "Reshape target made constant" not in rewrite.stats
    reshape = next(node for node in result.model.graph if node.op_type == "Reshape")
    assert reshape.inputs[1].producer().op_type == "Concat"


def test_a_concat_of_every_dimension_of_one_shape_is_that_shape():
    text = model_text(
        SHAPE_CHAIN + "n1 = Unsqueeze(n, zero)\n c1 = Unsqueeze(c, zero)\n w1 = Unsqueeze(w, zero)\n"
        " t = Concat <axis = 0> (n1, c1, w1)\n y = ConstantOfShape(t)",
        "float[N,M,K] x", "float[N,M,K] y",
    )
    before, result, rewrite = fold_shapes_then_dead(text)
    assert op_types(result.model) == ["Shape", "ConstantOfShape"]
    assert rewrite.stats["Concat of dimensions became Shape"] == 1
    assert_same_outputs(before, result.model, feeds={"x": np.zeros((2, 3, 4), np.float32)})


def test_consecutive_dimensions_become_shape_with_start_and_end():
    text = model_text(
        SHAPE_CHAIN + "c1 = Unsqueeze(c, zero)\n w1 = Unsqueeze(w, zero)\n t = Concat <axis = 0> (c1, w1)\n y = ConstantOfShape(t)",
        "float[N,M,K] x", "float[M,K] y",
    )
    before, result, _ = fold_shapes_then_dead(text)
    shape = next(iter(result.model.graph))
    assert (shape.op_type, shape.attributes.get_int("start"), shape.attributes.get_int("end")) == ("Shape", 1, 3)
    assert_same_outputs(before, result.model, feeds={"x": np.zeros((2, 3, 4), np.float32)})


def test_a_dynamic_dimension_of_another_tensor_beside_a_minus_one_stays_computed():
    # Element 0 is v's dynamic dimension 0, not x's; element 1 is already -1: no constant can say it.
    text = model_text(
        "s = Shape(v)\n i0 = Constant <value = int64[1] {0}> ()\n n = Gather(s, i0)\n t = Concat <axis = 0> (n, m1)\n"
        " r = Reshape(x, t)\n y = Relu(r)",
        "float[2,3,4] x, float[N,24] v", "float[A,B] y", inits="int64[1] m1 = {-1}",
    )
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert "Reshape target made constant" not in rewrite.stats


def test_the_declared_shape_of_a_graph_output_is_never_read():
    # y is a graph output declared [N, 99] (wrong); Shape(y) must not fold from it.
    text = model_text(
        "y = Relu(x)\n s = Shape(y)\n i1 = Constant <value = int64 {1}> ()\n z = Gather(s, i1)",
        "float[N,3] x", "float[N,99] y, int64 z",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_integer_arithmetic_on_data_is_not_mistaken_for_a_shape():
    text = model_text(
        "a = Mul(x, x)\n y = Add(a, x)", "int64[N,3] x", "int64[N,3] y",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


# -- the element arithmetic the pass reads shapes with, against numpy broadcasting ----------------------
@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize(("left", "right"), [([6, 4, 3], [2, 5, 7]), ([6, 4, 3], [2]), ([5], [6, 4, 3]), ([7], [2])])
def test_elementwise_shape_arithmetic_broadcasts_like_numpy(op_type, left, right):
    from passes.fold.fold_shapes import _elementwise

    numpy_op = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op_type]
    assert _elementwise(op_type, [left, right]) == numpy_op(np.array(left), np.array(right)).tolist()


def test_elementwise_shape_arithmetic_keeps_unknown_elements_unknown_and_refuses_mismatches():
    from passes.fold.fold_shapes import UNKNOWN, _elementwise

    assert _elementwise("Mul", [[2, UNKNOWN, 3], [4]]) == [8, UNKNOWN, 12]
    assert _elementwise("Add", [[2, 3], [1, 2, 3]]) is None  # lengths 2 and 3 do not broadcast
    assert _elementwise("Add", [[2, 3], None]) is None and _elementwise("Add", [None, [2, 3]]) is None
    assert _elementwise("Add", [[2, 3]]) is None


@pytest.mark.parametrize("rank", [0, 1, 4])
@pytest.mark.parametrize("axis", [-6, -4, -1, 0, 2, 4, 7])
def test_shape_start_and_end_clamp_like_python_slice_bounds(axis, rank):
    from passes.fold.fold_shapes import _clamp_axis

    assert _clamp_axis(axis, rank) == slice(axis, None).indices(rank)[0]
