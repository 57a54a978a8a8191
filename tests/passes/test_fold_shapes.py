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


# -- reading shape pieces: the ops the reader looks through ------------------------------------------
def dims_folded_into(text: str, value: str):
    """Run fold-shapes; the contents of the constant that now feeds the graph output ``value``'s Identity,
    or None when that input is still computed."""
    _, result, _ = apply_pass("fold-shapes", text)
    identity = next(node for node in result.model.graph if node.outputs[0].name == value)
    source = identity.inputs[0]
    return ints_of(source) if source.const_value is not None else None


# x's dimensions are [N, 3, 8, 5]: only dimension 0 is dynamic.
X_DIMS = [None, 3, 8, 5]


@pytest.mark.parametrize(
    ("start", "end", "axis", "step"),
    [(1, 3, None, None), (1, 10, 0, None), (-3, -1, -1, None), (3, 0, 0, -1), (-1, 0, 0, -2), (2, 2, 0, 1), (0, 2, 0, 1), (3, -10, 0, -1)],
)
def test_a_slice_of_a_shape_is_read_like_a_python_slice_of_its_dimensions(start, end, axis, step):
    optional = (f", axes" if axis is not None or step is not None else "") + (", steps" if step is not None else "")
    inits = [f"int64[1] starts = {{{start}}}", f"int64[1] ends = {{{end}}}"]
    if axis is not None or step is not None:
        inits.append(f"int64[1] axes = {{{0 if axis is None else axis}}}")
    if step is not None:
        inits.append(f"int64[1] steps = {{{step}}}")
    text = model_text(
        f"s = Shape(x)\n p = Slice(s, starts, ends{optional})\n o = Identity(p)",
        "float[N,3,8,5] x", "int64[K] o", inits=", ".join(inits),
    )
    want = X_DIMS[slice(start, end, step)]
    got = dims_folded_into(text, "o")
    assert got == (want if None not in want else None)


def test_a_slice_with_step_zero_is_not_read():
    text = model_text(
        "s = Shape(x)\n p = Slice(s, starts, ends, axes, steps)\n o = Identity(p)",
        "float[N,3,8,5] x", "int64[K] o",
        # p's type is declared: shape inference rejects step 0, and the declared type then stays
        inits="int64[2] p, int64[1] starts = {1}, int64[1] ends = {3}, int64[1] axes = {0}, int64[1] steps = {0}",
    )
    assert dims_folded_into(text, "o") is None


def test_a_slice_with_computed_bounds_is_not_read():
    text = model_text(
        "s = Shape(x)\n b = Shape(v)\n p = Slice(s, b, ends)\n o = Identity(p)", "float[N,3,8,5] x, float[M] v", "int64[K] o",
        inits="int64[1] ends = {3}",
    )
    assert dims_folded_into(text, "o") is None


def test_a_slice_with_attributes_before_opset_10_is_read():
    text = model_text(
        "s = Shape(x)\n p = Slice <starts = [1], ends = [3]> (s)\n o = Identity(p)", "float[N,3,8,5] x", "int64[K] o", opset=9,
    )
    assert dims_folded_into(text, "o") == [3, 8]


@pytest.mark.parametrize("op", ["Identity(s)", "Squeeze(s1, zero)", "Reshape(s1, flat)", "Unsqueeze(s, zero)"])
def test_identity_squeeze_and_reshape_keep_the_flat_order_of_the_elements(op):
    text = model_text(
        f"s = Shape(x)\n s1 = Unsqueeze(s, zero)\n p = {op}\n g = Gather(p, last)\n o = Identity(g)",
        "float[N,3,8] x", "int64 o", inits="int64[1] zero = {0}, int64[1] flat = {-1}, int64 last = {-1}",
    )
    # Gather(..., -1) of a flat [N, 3, 8] reads its last element
    if op.startswith("Unsqueeze"):
        # Unsqueeze's output is [1, 3]: a 2-D Gather of it is not a shape piece
        assert dims_folded_into(text, "o") is None
    else:
        assert dims_folded_into(text, "o") == 8


def test_an_integer_cast_passes_the_elements_through():
    text = model_text(
        "s = Shape(x)\n c = Cast <to = 6> (s)\n g = Gather(c, i1)\n o = Identity(g)\n y = Relu(x)",
        "float[N,3,8] x", "int32 o, float[N,3,8] y", inits="int64 i1 = {1}",
    )
    before, result, rewrite = apply_pass("fold-shapes", text)
    identity = next(node for node in result.model.graph if node.op_type == "Identity")
    assert ints_of(identity.inputs[0]) == 3
    assert identity.inputs[0].const_value.dtype == ir.DataType.INT32  # the type shape inference gives the Gather
    assert_same_outputs(before, result.model, feeds={"x": np.ones((2, 3, 8), np.float32)})


def test_a_cast_from_a_type_other_than_int32_or_int64_is_not_read():
    # uint64 18446744073709551615 is -1 once cast to int64: the reader does not do the wrap-around.
    text = model_text(
        "c = Cast <to = 7> (u)\n o = Identity(c)", "float[2] x", "int64[1] o", inits="uint64[1] u = {18446744073709551615}",
    )
    assert dims_folded_into(text, "o") is None


def test_an_int64_to_int32_cast_out_of_range_is_left_alone():
    # ONNX Runtime wraps 3000000000 to -1294967296; the pass does not compute it (it used to crash).
    text = model_text(
        "c = Cast <to = 6> (big)\n g = Gather(c, i0)\n o = Identity(g)", "float[2] x", "int32 o",
        inits="int64[1] big = {3000000000}, int64 i0 = {0}",
    )
    before, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified
    assert_same_outputs(before, result.model, feeds={"x": np.zeros(2, np.float32)})


def test_known_elements_that_overflow_int64_are_not_folded():
    text = model_text(
        "m = Mul(big, big)\n o = Identity(m)", "float[2] x", "int64[1] o", inits="int64[1] big = {4294967296}",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


@pytest.mark.parametrize(("axis", "read"), [(0, True), (-1, True)])
def test_a_concat_on_axis_0_or_minus_1_joins_the_elements(axis, read):
    text = model_text(
        f"s = Shape(x)\n p = Slice(s, one, three)\n t = Concat <axis = {axis}> (p, seven)\n o = Identity(t)",
        "float[N,3,8] x", "int64[3] o", inits="int64[1] one = {1}, int64[1] three = {3}, int64[1] seven = {7}",
    )
    assert dims_folded_into(text, "o") == [3, 8, 7]


def test_a_concat_on_axis_1_interleaves_and_is_not_read_as_a_join():
    # Concat<axis=1>([[1],[2]], [[3],[4]]) is [[1,3],[2,4]]: flat [1,3,2,4], not [1,2,3,4]
    text = model_text(
        "c = Concat <axis = 1> (a, b)\n t = Reshape(c, flat)\n y = ConstantOfShape(t)",
        "float[2] x", "float[1,3,2,4] y", inits="int64[2,1] a = {1,2}, int64[2,1] b = {3,4}, int64[1] flat = {4}",
    )
    before, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified
    assert_same_outputs(before, result.model, feeds={"x": np.zeros(2, np.float32)})


@pytest.mark.parametrize(("size", "read"), [(64, True), (65, False)])
def test_a_constant_of_more_than_64_elements_is_data_not_a_shape(size, read):
    values = ",".join(str(v) for v in range(1, size + 1))
    text = model_text("g = Gather(c, i2)\n o = Identity(g)", "float[2] x", "int64 o", inits=f"int64[{size}] c = {{{values}}}, int64 i2 = {{2}}")
    assert dims_folded_into(text, "o") == (3 if read else None)


def test_a_custom_domain_op_is_not_read_even_with_a_standard_name():
    # q = com.example.Mul(s, s) keeps the type its value_info declares; it is not ONNX Mul.
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[N,3] x) => (float[A,B] y) <int64[2] q> {
        s = Shape(x)
        q = com.example.Mul(s, s)
        y = Reshape(x, q)
    }
    """
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert not result.modified
    assert any("unknown custom op left alone" in note for note in rewrite.notes)


def test_div_is_not_read():
    text = model_text(
        "s = Shape(x)\n d = Div(s, two)\n g = Gather(d, i1)\n o = Identity(g)", "float[N,4] x", "int64 o",
        inits="int64[1] two = {2}, int64 i1 = {1}",
    )
    assert dims_folded_into(text, "o") is None


@pytest.mark.parametrize(("index", "want"), [("int64 i = {-1}", 8), ("int64[2] i = {-1, 1}", [8, 3])])
def test_gather_takes_negative_indices_from_the_end(index, want):
    text = model_text("s = Shape(x)\n g = Gather(s, i)\n o = Identity(g)", "float[N,3,8] x", "int64 o" if "[" not in index else "int64[2] o", inits=index)
    assert dims_folded_into(text, "o") == want


@pytest.mark.parametrize("case", ["index out of range", "computed indices", "data not readable", "axis 1"])
def test_gather_is_read_only_on_axis_0_with_constant_indices_in_range(case):
    body, inputs, inits = {
        "index out of range": ("s = Shape(x)\n g = Gather(s, i)", "float[N,3,8] x", "int64 i = {3}"),
        "computed indices": ("s = Shape(x)\n i = Shape(v)\n g = Gather(s, i)", "float[N,3,8] x, float[M] v", ""),
        "data not readable": ("g = Gather(t, i)", "float[N,3,8] x, int64[3] t", "int64 i = {1}"),
        # [[2],[3],[4]] gathered on axis 1 at 0 is [2, 3, 4], not its element 0
        "axis 1": ("g = Gather <axis = 1> (d, i)", "float[N,3,8] x", "int64[3,1] d = {2,3,4}, int64 i = {0}"),
    }[case]
    text = model_text(body + "\n o = Identity(g)", inputs, "int64[K] o", inits=inits)
    assert dims_folded_into(text, "o") is None


def test_a_gathered_scalar_dimension_stays_a_scalar_of_the_output_name():
    text = model_text(SHAPE_CHAIN + "o = Identity(c)", "float[N,3,8] x", "int64 o")
    _, result, rewrite = apply_pass("fold-shapes", text)
    constant = next(node for node in result.model.graph if node.op_type == "Identity").inputs[0]
    assert constant.name == "c_value"
    assert constant.const_value.numpy().shape == () and ints_of(constant) == 3
    assert rewrite.stats["Gather computed from known dimensions"] == 2  # c and w (n is dynamic)


@pytest.mark.parametrize(("start", "end"), [(1, None), (None, 2), (-2, None), (1, -1)])
def test_shape_start_and_end_pick_the_dimensions_read(start, end):
    attributes = ", ".join(f"{name} = {value}" for name, value in (("start", start), ("end", end)) if value is not None)
    text = model_text(
        f"s = Shape <{attributes}> (x)\n g = Gather(s, ends)\n o = Identity(g)", "float[5,3,8] x", "int64[2] o", inits="int64[2] ends = {0, -1}",
    )
    picked = [5, 3, 8][start:end]
    assert dims_folded_into(text, "o") == [picked[0], picked[-1]]


def test_a_graph_outputs_declared_dimension_is_not_read_by_its_consumers():
    # y is a graph output (its declared shape may be wrong); Shape(y) is not read even when its
    # result feeds a node that is not an output.
    text = model_text(
        "y = Relu(x)\n s = Shape(y)\n i1 = Constant <value = int64 {1}> ()\n z = Gather(s, i1)\n zero = Constant <value = int64[1] {0}> ()\n"
        " z1 = Unsqueeze(z, zero)\n e = Expand(x, z1)",
        "float[N,3] x", "float[N,3] y, float[N,3] e",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_an_integer_node_nobody_reads_or_a_graph_output_is_not_replaced():
    text = model_text(
        "s = Shape(x)\n c = Gather(s, i1)\n w = Gather(s, i2)\n c1 = Unsqueeze(c, zero)\n e = Expand(x, c1)",
        "float[N,3,8] x", "int64 c, float[N,3,8] e", inits="int64 i1 = {1}, int64 i2 = {2}, int64[1] zero = {0}",
    )
    # c is a graph output (and read by the Unsqueeze); w is read by nobody
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert set(rewrite.stats) == {"Unsqueeze computed from known dimensions"}


def test_only_scalars_and_vectors_are_computed():
    text = model_text(
        "s = Shape(x)\n s2 = Reshape(s, two_by_one)\n y = Tile(v, s2)", "float[2,3] x, float[4] v", "float[8] y",
        inits="int64[2] two_by_one = {2, 1}",
    )
    # s2 is [[2], [3]]: a 2-D integer tensor is data, not a shape piece (and Tile rejects it anyway)
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert "Reshape computed from known dimensions" not in rewrite.stats


def test_a_chain_is_read_through_12_nodes_but_not_13():
    from ir import shapes
    from passes.fold.fold_shapes import FoldShapesPass

    def read_through(count: int):
        body = "v0 = Shape(x)\n" + "".join(f" v{i + 1} = Identity(v{i})\n" for i in range(count))
        model = ir.from_onnx_text(model_text(body, "float[4,3] x", f"int64[2] v{count}"))
        shapes.infer(model)
        reader = create("fold-shapes")
        assert isinstance(reader, FoldShapesPass)
        reader._memo = {}
        return reader._elements(model.graph.outputs[0])

    assert read_through(12) == [4, 3]
    assert read_through(13) is None


# -- rule 2: a Reshape's computed target made constant ------------------------------------------------
def test_a_reshape_whose_target_is_constant_already_is_left_alone():
    text = model_text("y = Reshape(x, t)", "float[N,3,8] x", "float[N,24] y", inits="int64[2] t = {0, 24}")
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_making_a_reshape_target_constant_is_reported_as_a_change_and_counted():
    # two Reshapes: the first gets a constant target, the second cannot (its target is a graph input)
    text = model_text(
        SHAPE_CHAIN + "n1 = Unsqueeze(n, zero)\n cw1 = Unsqueeze(cw, zero)\n t = Concat <axis = 0> (n1, cw1)\n r = Reshape(x, t)\n"
        " y = Reshape(r, q)\n r2 = Reshape(x, t)\n z = Relu(r2)",
        "float[N,3,8] x, int64[2] q", "float[A,B] y, float[N,24] z",
    )
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert result.modified
    assert rewrite.stats["Reshape target made constant"] == 2
    targets = [node.inputs[1] for node in result.model.graph if node.op_type == "Reshape"]
    assert [ints_of(t) if t.const_value is not None else t.name for t in targets] == [[0, 24], "q", [0, 24]]


def test_only_the_reshape_rule_applying_still_reports_a_change():
    # the second Reshape (target q, a graph input) comes last and changes nothing
    text = model_text(
        "s = Shape(x)\n i0 = Constant <value = int64[1] {0}> ()\n n = Gather(s, i0)\n t = Concat <axis = 0> (n, m1)\n r = Reshape(x, t)\n y = Reshape(r, q)",
        "float[N,24] x, int64[2] q", "float[A,B] y", inits="int64[1] m1 = {24}",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert result.modified and reshape_target(result.model) == [0, 24]


def test_a_target_longer_than_the_datas_rank_copies_only_within_it():
    # Reshape(x[N,24], [N, 3, 8]) : N is x's dimension 0 -> 0; 3 and 8 stay (x has no dimension 2)
    text = model_text(
        "s = Shape(x)\n i0 = Constant <value = int64[1] {0}> ()\n n = Gather(s, i0)\n t = Concat <axis = 0> (n, three, eight)\n y = Reshape(x, t)",
        "float[N,24] x", "float[N,3,8] y", inits="int64[1] three = {3}, int64[1] eight = {8}",
    )
    before, result, _ = apply_pass("fold-shapes", text)
    assert reshape_target(result.model) == [0, 3, 8]
    for n in (1, 3):
        assert_same_outputs(before, result.model, feeds={"x": np.arange(n * 24, dtype=np.float32).reshape(n, 24)})


def test_with_allowzero_a_dimension_of_the_data_is_not_spelled_as_zero():
    # allowzero=1: 0 means an empty dimension, so N stays unknown; 24 is known positive, so N becomes -1
    text = model_text(
        "s = Shape(x)\n i0 = Constant <value = int64[1] {0}> ()\n n = Gather(s, i0)\n t = Concat <axis = 0> (n, m1)\n y = Reshape <allowzero = 1> (x, t)",
        "float[N,24] x", "float[N,24] y", inits="int64[1] m1 = {24}", opset=14,
    )
    before, result, _ = apply_pass("fold-shapes", text)
    assert reshape_target(result.model) == [-1, 24]
    assert_same_outputs(before, result.model, feeds={"x": np.ones((2, 24), np.float32)})


def test_with_allowzero_a_known_zero_is_not_positive_and_blocks_minus_one():
    text = model_text(
        "s = Shape(x)\n i0 = Constant <value = int64[1] {0}> ()\n n = Gather(s, i0)\n t = Concat <axis = 0> (n, z)\n y = Reshape <allowzero = 1> (x, t)",
        "float[N,0] x", "float[N,0] y", inits="int64[1] z = {0}", opset=14,
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_a_known_one_is_not_a_copy_and_counts_as_positive():
    # Reshape(x[N,3,8], [N*3*8, 1]): 1 is kept as 1 (not read as a copy of x's dimension 1), and it is
    # positive, so the unknown N*24 becomes -1
    text = model_text(
        SHAPE_CHAIN + "ncw = Mul(n, cw)\n ncw1 = Unsqueeze(ncw, zero)\n t = Concat <axis = 0> (ncw1, one)\n y = Reshape(x, t)",
        "float[N,3,8] x", "float[M,1] y", inits="int64[1] one = {1}",
    )
    before, result, _ = apply_pass("fold-shapes", text)
    assert reshape_target(result.model) == [-1, 1]
    for feed in batches(2, 3):
        assert_same_outputs(before, result.model, feeds=feed)


@pytest.mark.parametrize(("first", "accepted"), [(0, False), (1, True), (2, True)])
def test_a_copied_dimension_counts_as_positive_only_when_the_datas_dimension_is(first, accepted):
    # Reshape(x[first,N,4], [0, N*4]): -1 for N*4 is safe only when the copied dimension is not 0
    text = model_text(
        "s = Shape(x)\n i1 = Constant <value = int64 {1}> ()\n i2 = Constant <value = int64 {2}> ()\n m = Gather(s, i1)\n w = Gather(s, i2)\n"
        " mw = Mul(m, w)\n zero = Constant <value = int64[1] {0}> ()\n mw1 = Unsqueeze(mw, zero)\n t = Concat <axis = 0> (zero, mw1)\n y = Reshape(x, t)",
        f"float[{first},N,4] x", "float[A,B] y",
    )
    before, result, _ = apply_pass("fold-shapes", text)
    reshape = next(node for node in result.model.graph if node.op_type == "Reshape")
    assert (reshape.inputs[1].const_value is not None) == accepted
    if accepted:
        assert reshape_target(result.model) == [0, -1]
        assert_same_outputs(before, result.model, feeds={"x": np.ones((first, 5, 4), np.float32)})


def test_a_data_that_is_a_graph_output_has_no_trusted_dimensions():
    # r is also a graph output: its declared shape is not read, so the copied 0 is not known positive
    text = model_text(
        "r = Relu(x)\n s = Shape(x)\n i1 = Constant <value = int64 {1}> ()\n m = Gather(s, i1)\n zero = Constant <value = int64[1] {0}> ()\n"
        " m1 = Unsqueeze(m, zero)\n t = Concat <axis = 0> (zero, m1)\n y = Reshape(r, t)",
        "float[2,N] x", "float[2,N] r, float[A,B] y",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_two_unknown_elements_leave_the_target_computed():
    # Reshape(x[N,M,8], [N*3?...]): N*2 and M*4 are both unknown: only one can be -1
    text = model_text(
        "s = Shape(x)\n i0 = Constant <value = int64 {0}> ()\n i1 = Constant <value = int64 {1}> ()\n n = Gather(s, i0)\n m = Gather(s, i1)\n"
        " n2 = Mul(n, two)\n m4 = Mul(m, four)\n zero = Constant <value = int64[1] {0}> ()\n a = Unsqueeze(n2, zero)\n b = Unsqueeze(m4, zero)\n"
        " t = Concat <axis = 0> (a, b)\n y = Reshape(x, t)",
        "float[N,M,8] x", "float[A,B] y", inits="int64 two = {2}, int64 four = {4}",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_a_reshape_target_that_cannot_be_read_is_left_alone():
    text = model_text("t = Abs(q)\n y = Reshape(x, t)", "float[N,24] x, int64[2] q", "float[A,B] y")
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_the_minus_one_refusal_reports_no_change():
    # Reshape(x[N,M], [N, M*2]): N copies (0) but may be 0, so M*2 cannot be -1; nothing else folds
    text = model_text(
        "s = Shape(x)\n n = Gather(s, i0)\n m = Gather(s, i1)\n m2 = Mul(m, two)\n t = Concat <axis = 0> (n, m2)\n y = Reshape(x, t)",
        "float[N,M] x", "float[A,B] y", inits="int64[1] i0 = {0}, int64[1] i1 = {1}, int64[1] two = {2}",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def _reshape_with_inferred_output(output_dims, graph_output=False):
    """Reshape(x[2,3,8], [len(v), len(u)]) where shape inference is taken to know the output is
    ``output_dims`` (set on the Reshape's output after inference, as a shape inference that knew more
    would leave it)."""
    from ir import shapes

    body = (
        "sv = Shape(v)\n su = Shape(u)\n t = Concat <axis = 0> (sv, su)\n r = Reshape(x, t)\n"
        + ("y = Identity(r)" if not graph_output else "y = Reshape(x, t)")
    )
    model = ir.from_onnx_text(model_text(body, "float[2,3,8] x, float[V] v, float[U] u", "float[A,B] y"))
    shapes.infer(model)
    reshape = next(node for node in model.graph if node.op_type == "Reshape" and (node.outputs[0].is_graph_output() == graph_output))
    reshape.outputs[0].shape = ir.Shape(output_dims)
    rewrite = create("fold-shapes")
    return model, rewrite(model), reshape


@pytest.mark.parametrize(("first", "want"), [(6, [6, -1]), (1, [1, -1]), (0, None)])
def test_an_unknown_element_takes_the_output_dimension_shape_inference_knows(first, want):
    _, result, reshape = _reshape_with_inferred_output([first, "B"])
    if want is None:  # a known 0 is not positive: the other element cannot be -1
        assert reshape.inputs[1].const_value is None
    else:
        assert ints_of(reshape.inputs[1]) == want


def test_the_known_output_dimensions_are_used_only_when_the_rank_matches():
    _, result, reshape = _reshape_with_inferred_output([6, 8, 1])
    assert reshape.inputs[1].const_value is None


def test_the_output_dimensions_of_a_graph_output_reshape_are_not_trusted():
    model, result, reshape = _reshape_with_inferred_output([6, 8], graph_output=True)
    assert reshape.inputs[1].const_value is None


# -- rule 3: a Concat of consecutive dimensions becomes Shape ---------------------------------------
def concat_of_dims(dims: str, inputs: str = "float[N,M,K] x", opset: int = 17, axis: int = 0, extra: str = "", outputs: str = "float[A,B,C] y") -> str:
    """t = Concat of x's dimensions at ``dims`` (comma-separated indices), then y = ConstantOfShape(t)."""
    picks = "".join(f" d{i} = Gather(s, i{i})\n" for i in map(int, dims.split(",")))
    names = ", ".join(f"d{i}" for i in map(int, dims.split(",")))
    inits = ", ".join(f"int64[1] i{i} = {{{i}}}" for i in range(4))
    return model_text(f"s = Shape(x)\n{picks} t = Concat <axis = {axis}> ({names})\n{extra or 'y = ConstantOfShape(t)'}", inputs, outputs, opset=opset, inits=inits)


def shape_nodes(model: ir.Model) -> list[tuple[int | None, int | None]]:
    return [(n.attributes.get_int("start"), n.attributes.get_int("end")) for n in model.graph if n.op_type == "Shape"]


@pytest.mark.parametrize(
    ("dims", "opset", "want"),
    [
        ("0,1,2", 13, [(None, None), (None, None)]),  # the whole shape: Shape(x), at any opset
        ("0,1,2", 15, [(None, None), (None, None)]),
        ("0,1", 15, [(None, None), (0, 2)]),  # a prefix is not the whole shape
        ("1,2", 15, [(None, None), (1, 3)]),
        ("1", 15, [(None, None), (1, 2)]),  # a single dimension
        ("1,2", 14, [(None, None)]),  # start/end need opset 15
    ],
)
def test_consecutive_dimensions_become_one_shape(dims, opset, want):
    before, result, rewrite = apply_pass("fold-shapes", concat_of_dims(dims, opset=opset))
    assert shape_nodes(result.model) == want
    assert result.modified == (len(want) == 2)
    x = np.zeros((2, 3, 4), np.float32)
    assert_same_outputs(before, result.model, feeds={"x": x})


def test_a_concat_on_axis_minus_1_becomes_shape_too():
    before, result, _ = apply_pass("fold-shapes", concat_of_dims("1,2", axis=-1))
    assert shape_nodes(result.model) == [(None, None), (1, 3)]


@pytest.mark.parametrize("dims", ["0,2", "1,0", "2,1"])
def test_dimensions_out_of_order_or_repeated_stay_a_concat(dims):
    before, result, _ = apply_pass("fold-shapes", concat_of_dims(dims))
    assert shape_nodes(result.model) == [(None, None)] and not result.modified


def test_dimensions_of_two_tensors_stay_a_concat():
    text = model_text(
        "s = Shape(x)\n sv = Shape(v)\n a = Gather(s, i0)\n b = Gather(sv, i1)\n t = Concat <axis = 0> (a, b)\n y = ConstantOfShape(t)",
        "float[N,M] x, float[P,Q] v", "float[A,B] y", inits="int64[1] i0 = {0}, int64[1] i1 = {1}",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_a_concat_of_known_numbers_becomes_a_constant_not_a_shape():
    text = model_text(
        "s = Shape(x)\n a = Gather(s, i1)\n t = Concat <axis = 0> (a, seven)\n y = ConstantOfShape(t)",
        "float[N,3] x", "float[3,7] y", inits="int64[1] i1 = {1}, int64[1] seven = {7}",
    )
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert rewrite.stats["Concat computed from known dimensions"] == 1


def test_a_concat_that_is_a_graph_output_or_int32_stays():
    # t32: the dimensions cast to int32, a Shape would give int64
    text = concat_of_dims(
        "1,2", extra="c1 = Cast <to = 6> (d1)\n c2 = Cast <to = 6> (d2)\n t32 = Concat <axis = 0> (c1, c2)\n y = Identity(t32)",
        outputs="int32[2] y, int64[2] t",
    )
    before, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified
    assert_same_outputs(before, result.model, feeds={"x": np.zeros((2, 3, 4), np.float32)})


def test_the_new_shape_is_named_after_the_concat_and_keeps_its_inferred_shape():
    before, result, rewrite = apply_pass("fold-shapes", concat_of_dims("1,2"))
    shape = next(node for node in result.model.graph if node.op_type == "Shape" and node.attributes.get_int("start") == 1)
    assert (shape.name, shape.outputs[0].name) == ("t_shape", "t_shape_1")
    assert shape.outputs[0].dtype == ir.DataType.INT64 and list(shape.outputs[0].shape) == [2]


def test_two_concats_of_dimensions_are_counted():
    text = concat_of_dims("1,2", extra="y = ConstantOfShape(t)\n t2 = Concat <axis = 0> (d1, d2)\n z = ConstantOfShape(t2)", outputs="float[A,B] y, float[A,B] z")
    _, result, rewrite = apply_pass("fold-shapes", text)
    assert rewrite.stats["Concat of dimensions became Shape"] == 2


@pytest.mark.parametrize(
    ("body", "inits"),
    [
        # int64 -> int32 -> int64: ONNX Runtime keeps the low 32 bits, 5
        ("a = Cast <to = 6> (big)\n b = Cast <to = 7> (a)", "int64[1] big = {4294967301}"),
        # an int32 product that wraps around
        ("a = Mul(k, k)\n b = Cast <to = 7> (a)", "int32[1] k = {70000}"),
    ],
)
def test_numbers_that_wrap_around_in_their_type_are_not_computed(body, inits):
    text = model_text(f"{body}\n y = Expand(x, b)", "float[N] x", "float[M] y", inits=inits)
    _, result, _ = apply_pass("fold-shapes", text)
    expand = next(node for node in result.model.graph if node.op_type == "Expand")
    assert expand.inputs[1].const_value is None


@pytest.mark.parametrize(("value", "read"), [(2147483647, True), (-2147483648, True), (2147483648, False), (-2147483649, False)])
def test_an_int32_cast_is_read_within_the_int32_range(value, read):
    text = model_text(
        "c = Cast <to = 6> (v)\n g = Gather(c, i0)\n o = Identity(g)", "float[2] x", "int32 o", inits=f"int64[1] v = {{{value}}}, int64 i0 = {{0}}",
    )
    assert dims_folded_into(text, "o") == (value if read else None)


def test_a_reshape_target_gathered_on_axis_1_is_not_read_as_axis_0():
    # Gather<axis=1>([[2],[3],[4]], 0) is [2, 3, 4]; read as axis 0 it would be [2]
    text = model_text(
        "t = Gather <axis = 1> (d, i0)\n y = Reshape(x, t)", "float[2,3,4] x", "float[2,3,4] y", inits="int64[3,1] d = {2,3,4}, int64 i0 = {0}",
    )
    _, result, _ = apply_pass("fold-shapes", text)
    assert not result.modified


def test_a_computed_constant_is_named_after_the_value_it_replaces_not_the_node():
    model = ir.from_onnx_text(model_text(SHAPE_CHAIN + "o = Identity(c)", "float[N,3,8] x", "int64 o"))
    for node in model.graph:
        node.name = f"node_{node.outputs[0].name}"
    create("fold-shapes")(model)
    identity = next(node for node in model.graph if node.op_type == "Identity")
    assert identity.inputs[0].name == "c_value"
