"""eliminate-common computes each value once and stores each constant tensor once."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from conftest import (
    apply_pass,
    assert_same_outputs,
    assert_same_outputs_in_both_branches,
    model_text,
    op_types,
    then_branch,
)
from passes.base import create


def apply(text: str):
    return apply_pass("eliminate-common", text)


def test_identical_nodes_become_one():
    before, result, common = apply(model_text("a = Relu(x)\n b = Relu(x)\n y = Add(a, b)"))
    assert result.modified
    assert op_types(result.model) == ["Relu", "Add"]
    add = list(result.model.graph)[1]
    assert add.inputs[0] is add.inputs[1]
    assert common.stats == {"common nodes removed": 1}
    assert_same_outputs(before, result.model)


def test_a_duplicated_chain_collapses_in_one_run():
    body = "a1 = Relu(x)\n b1 = Sigmoid(a1)\n a2 = Relu(x)\n b2 = Sigmoid(a2)\n y = Sub(b1, b2)"
    before, result, _ = apply(model_text(body))
    assert op_types(result.model) == ["Relu", "Sigmoid", "Sub"]
    assert_same_outputs(before, result.model)


def test_different_attributes_are_not_merged():
    _, result, _ = apply(model_text("a = LeakyRelu <alpha = 0.1> (x)\n b = LeakyRelu <alpha = 0.2> (x)\n y = Add(a, b)"))
    assert not result.modified


def test_different_input_order_is_not_merged():
    _, result, _ = apply(model_text("r = Relu(x)\n a = Sub(x, r)\n b = Sub(r, x)\n y = Add(a, b)"))
    assert not result.modified


@pytest.mark.parametrize(
    "op",
    ["RandomUniformLike(x)", "RandomNormalLike <seed = 1.0> (x)", "Dropout(x, r, t)"],
)
def test_random_ops_are_never_merged(op):
    text = model_text(f"a = {op}\n b = {op}\n y = Add(a, b)", inits="float r = {0.5}, bool t = {1}")
    _, result, _ = apply(text)
    assert not result.modified


def test_constant_nodes_with_equal_tensors_are_shared_whatever_their_size():
    weights = ", ".join(str(i / 10) for i in range(6))
    body = f"""
        c1 = Constant <value = float[2,3] {{{weights}}}> ()
        c2 = Constant <value = float[2,3] {{{weights}}}> ()
        c3 = Constant <value = float[2,3] {{{weights.replace('0.5', '0.6')}}}> ()
        a = Mul(x, c1)
        b = Mul(x, c2)
        d = Mul(x, c3)
        e = Add(a, b)
        y = Add(e, d)
    """
    before, result, common = apply(model_text(body))
    # c2 is shared with c1, so b duplicates a; c3 holds different numbers and stays.
    assert op_types(result.model) == ["Constant", "Constant", "Mul", "Mul", "Add", "Add"]
    assert common.stats == {"Constant nodes shared": 1, "common nodes removed": 1}
    assert_same_outputs(before, result.model)


def test_duplicate_initializers_are_shared():
    inits = "float[3] w1 = {1, 2, 3}, float[3] w2 = {1, 2, 3}, float[3] w3 = {1, 2, 4}, int64[3] w4 = {1, 2, 3}"
    before, result, common = apply(model_text("a = Mul(x, w1)\n b = Mul(x, w2)\n c = Mul(x, w3)\n d = Add(a, b)\n y = Add(d, c)", inits=inits))
    assert sorted(result.model.graph.initializers) == ["w1", "w3", "w4"]
    assert common.stats["initializers shared"] == 1
    assert op_types(result.model) == ["Mul", "Mul", "Add", "Add"]
    assert_same_outputs(before, result.model)


def test_initializers_that_are_graph_inputs_are_not_shared():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x, float[3] w1, float[3] w2) => (float[2,3] y) <float[3] w1 = {1, 2, 3}, float[3] w2 = {1, 2, 3}> {
        a = Mul(x, w1)
        b = Mul(x, w2)
        y = Add(a, b)
    }
    """
    _, result, _ = apply(text)
    assert not result.modified
    assert sorted(result.model.graph.initializers) == ["w1", "w2"]


def test_duplicate_graph_output_takes_over_the_name_of_the_duplicate():
    before, result, _ = apply(model_text("a = Relu(x)\n y = Relu(x)\n z = Neg(a)", outputs="float[2,3] y, float[2,3] z"))
    assert op_types(result.model) == ["Relu", "Neg"]
    assert [v.name for v in result.model.graph.outputs] == ["y", "z"]
    assert_same_outputs(before, result.model)


def test_two_graph_outputs_computed_alike_both_stay():
    _, result, _ = apply(model_text("y = Relu(x)\n z = Relu(x)", outputs="float[2,3] y, float[2,3] z"))
    assert not result.modified


def test_constants_that_are_graph_outputs_stay():
    body = "c = Constant <value = float[3] {1, 2, 3}> ()\n d = Constant <value = float[3] {1, 2, 3}> ()\n y = Add(x, c)"
    _, result, _ = apply(model_text(body, outputs="float[2,3] y, float[3] c, float[3] d"))
    assert not result.modified


def test_control_flow_nodes_are_not_merged_but_their_bodies_are_simplified():
    def branch(tag: str) -> str:
        return f"() => (float[2,3] o{tag}) {{ a{tag} = Relu(x)  b{tag} = Relu(x)  o{tag} = Add(a{tag}, b{tag}) }}"

    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2,3] x) => (float[2,3] y) {{
        i1 = If(c) <then_branch = t1 {branch('1')}, else_branch = e1 () => (float[2,3] e) {{ e = Neg(x) }}>
        i2 = If(c) <then_branch = t2 {branch('2')}, else_branch = e2 () => (float[2,3] f) {{ f = Neg(x) }}>
        y = Add(i1, i2)
    }}
    """
    before, result, _ = apply(text)
    assert result.modified
    model = result.model
    assert op_types(model) == ["If", "If", "Add"]
    first_then = then_branch(model)
    assert [n.op_type for n in first_then] == ["Relu", "Add"]
    assert_same_outputs_in_both_branches(before, model)


def test_custom_domain_nodes_are_left_alone_and_noted():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.acme" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
        a = com.acme.Sample(x)
        b = com.acme.Sample(x)
        y = Add(a, b)
    }
    """
    model = ir.from_onnx_text(text)
    common = create("eliminate-common")
    assert not common(model).modified
    assert any("com.acme" in note and "custom op" in note for note in common.notes)


def test_nothing_to_do_reports_unmodified():
    _, result, common = apply(model_text("a = Relu(x)\n y = Neg(a)"))
    assert not result.modified and not common.stats


def test_every_duplicate_initializer_finds_its_first_copy_and_is_counted():
    # the first initializer is a graph input (skipped); w2/w3 differ from w1 but equal each other
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x, float[3] w0) => (float[2,3] y)
      <float[3] w0 = {1, 2, 3}, float[3] w1 = {1, 2, 3}, float[3] w2 = {4, 5, 6}, float[3] w3 = {4, 5, 6}, float[3] w4 = {4, 5, 6}> {
        a = Mul(x, w0)
        b = Mul(a, w1)
        c = Mul(b, w2)
        d = Mul(c, w3)
        y = Mul(d, w4)
    }
    """
    before, result, common = apply(text)
    assert result.modified  # sharing initializers alone is a modification
    assert sorted(result.model.graph.initializers) == ["w0", "w1", "w2"]
    assert common.stats == {"initializers shared": 2}
    assert_same_outputs(before, result.model)


def test_string_tensors_compare_item_by_item():
    # ["ab", "c"] and ["a", "bc"] have the same concatenated bytes; only the equal lists are shared
    body = ('a = Constant <value = string[2] {"ab", "c"}> ()\n b = Constant <value = string[2] {"a", "bc"}> ()\n'
            ' c = Constant <value = string[2] {"ab", "c"}> ()\n y = Identity(x)')
    _, result, common = apply(model_text(body, outputs="float[2,3] y, string[2] a, string[2] b, string[2] c"))
    assert common.stats.get("Constant nodes shared", 0) == 0  # c is a graph output: it stays...
    body = body.replace("y = Identity(x)", "y = Identity(x)\n k = Concat <axis = 0> (a, b, c)")
    _, result, common = apply(model_text(body, outputs="float[2,3] y, string[6] k"))
    assert common.stats == {"Constant nodes shared": 1}  # ...and once read only by Concat, c is a's copy
    concat = [n for n in result.model.graph if n.op_type == "Concat"][0]
    assert concat.inputs[0] is concat.inputs[2] and concat.inputs[0] is not concat.inputs[1]


def test_nodes_with_list_attributes_merge_and_every_merge_is_counted():
    body = ("a = Transpose <perm = [1, 0]> (x)\n b = Transpose <perm = [1, 0]> (x)\n c = Transpose <perm = [1, 0]> (x)\n"
            " d = Add(a, b)\n e = Add(d, c)\n y = Transpose <perm = [1, 0]> (e)")
    before, result, common = apply(model_text(body))
    assert op_types(result.model) == ["Transpose", "Add", "Add", "Transpose"]
    assert common.stats == {"common nodes removed": 2}
    assert_same_outputs(before, result.model)


def test_nodes_never_merged_and_duplicates_that_must_stay_do_not_end_the_search():
    # a random node and a graph-output duplicate come first; the Relu pair after them still merges
    body = ("n = RandomUniformLike(x)\n y = Neg(x)\n z = Neg(x)\n a = Relu(x)\n b = Relu(x)\n s = Add(a, b)\n w = Add(s, n)")
    _, result, common = apply(model_text(body, outputs="float[2,3] y, float[2,3] z, float[2,3] w"))
    assert common.stats == {"common nodes removed": 1}
    assert op_types(result.model).count("Relu") == 1 and op_types(result.model).count("Neg") == 2
