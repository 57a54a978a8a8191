"""eliminate-dead removes what no graph output depends on: nodes, initializers, functions."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from conftest import apply_pass, assert_same_outputs, branch_model_text, op_types, then_branch
from passes.base import create


def apply(text: str):
    return apply_pass("eliminate-dead", text)


def test_a_dead_chain_goes_in_one_run():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
        y = Relu(x)
        a = Sigmoid(x)
        b = Neg(a)
        c = Add(a, b)
    }
    """
    before, result, dead = apply(text)
    assert result.modified
    assert op_types(result.model) == ["Relu"]
    assert dead.stats["nodes removed"] == 3
    assert_same_outputs(before, result.model)


def test_a_node_with_one_used_output_stays_whole():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4,3] x) => (float[2,3] y) {
        y, unused = Split <axis = 0, num_outputs = 2> (x)
    }
    """
    _, result, _ = apply(text)
    assert not result.modified
    assert op_types(result.model) == ["Split"]


def test_unused_initializers_go_but_graph_input_initializers_stay():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x, float[3] overridable) => (float[2,3] y) <float[3] w = {1, 2, 3}, float[3] unused = {4, 5, 6}, float[3] overridable = {0, 0, 0}> {
        y = Mul(x, w)
    }
    """
    before, result, dead = apply(text)
    assert sorted(result.model.graph.initializers) == ["overridable", "w"]
    assert dead.stats["initializers removed"] == 1
    feeds = {"x": np.ones((2, 3), np.float32), "overridable": np.zeros(3, np.float32)}
    assert_same_outputs(before, result.model, feeds=feeds)


def test_dead_nodes_inside_a_subgraph_go():
    text = branch_model_text("t = Relu(x)  unused = Neg(x)")
    model = ir.from_onnx_text(text)
    assert create("eliminate-dead")(model).modified
    branch = then_branch(model)
    assert [n.op_type for n in branch] == ["Relu"]


def test_values_used_only_inside_a_subgraph_are_alive():
    text = branch_model_text("t = Relu(s)", before_if="s = Sigmoid(x)")
    _, result, _ = apply(text)
    assert not result.modified
    assert op_types(result.model) == ["Sigmoid", "If"]


def test_unused_functions_and_their_opsets_go():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
        y = Relu(x)
    }
    <domain: "local", opset_import: ["" : 17]>
    f (a) => (b) {
        b = Neg(a)
    }
    """
    _, result, dead = apply(text)
    assert result.modified
    assert not result.model.functions
    assert dead.stats["functions removed"] == 1
    assert "local" not in result.model.opset_imports


def test_called_functions_stay():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
        y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 17]>
    f (a) => (b) {
        b = Neg(a)
    }
    """
    _, result, _ = apply(text)
    assert not result.modified
    assert len(result.model.functions) == 1


def test_nothing_to_do_reports_unmodified():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) <float[3] w = {1, 2, 3}> {
        y = Mul(x, w)
    }
    """
    _, result, _ = apply(text)
    assert not result.modified
