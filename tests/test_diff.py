"""Specification of ir.diff (structural and numeric model differences) and ir.diff_html."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import numpy as np
import onnx_ir as ir
import pytest

from ir import diff, diff_html, io

OPSET = '<ir_version: 8, opset_import: ["" : 17]>'

CHAIN = """g (float[1,8] x) => (float[1,8] y) {
    r = Relu (x)
    n = Neg (r)
    y = Sigmoid (n)
}"""

CONV = """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
    y = Conv <pads = [1,1,1,1]> (x, w)
}"""


def model(text: str, *, named: bool = True, seed: int = 0, **weights: tuple[int, ...]) -> ir.Model:
    """A model from ONNX text. Nodes get their first output's name unless ``named`` is False;
    ``weights`` give the shapes of initializers to fill with random values."""
    result = ir.from_onnx_text(f"{OPSET}\n{text}")
    for node in result.graph:
        node.name = node.outputs[0].name if named else ""
    rng = np.random.default_rng(seed)
    for name, shape in weights.items():
        values = rng.standard_normal(shape).astype(np.float32)
        result.graph.initializers[name].const_value = ir.tensor(values, name=name)
    return result


def labels(refs) -> list[str]:
    return [ref.label for ref in refs]


# --- structural diff ---------------------------------------------------------------------------


def test_a_model_against_its_copy_has_no_difference():
    before = model(CONV, w=(4, 3, 3, 3))
    result = diff.structural_diff(before, io.copy_model(before))
    assert result.is_empty()
    assert result.matched_by_name == 1
    assert result.histogram_delta() == {}
    assert all(row["delta"] == 0 for row in result.cost.values())
    assert json.loads(json.dumps(result.to_dict()))["empty"] is True


@pytest.mark.parametrize("named", [True, False], ids=["by-name", "by-structure"])
def test_removing_a_node_reports_it_and_the_rewired_consumer(named):
    before = model(CHAIN, named=named)
    after = model(
        """g (float[1,8] x) => (float[1,8] y) {
            r = Relu (x)
            y = Sigmoid (r)
        }""",
        named=named,
    )
    result = diff.structural_diff(before, after)
    assert [ref.op_type for ref in result.removed_nodes] == ["Neg"]
    assert result.added_nodes == []
    (change,) = result.changed_nodes
    assert change.before.op_type == "Sigmoid"
    assert change.attributes == {} and change.weights == []
    (rewired,) = change.rewired
    assert rewired.position == 0
    assert rewired.before.startswith("Neg ") and rewired.after.startswith("Relu ")
    assert result.histogram_delta() == {"Neg": -1}
    assert result.cost["nodes"]["delta"] == -1


def repeated_blocks(length: int, skip: tuple[int, ...] = ()) -> ir.Model:
    """An unnamed chain Relu, Neg, Sigmoid, Abs, Tanh, Relu, ... of ``length`` nodes, minus ``skip``."""
    ops = ["Relu", "Neg", "Sigmoid", "Abs", "Tanh"]
    lines, previous = [], "x"
    for i in range(length):
        if i not in skip:
            lines.append(f"v{i} = {ops[i % len(ops)]} ({previous})")
            previous = f"v{i}"
    body = "\n".join([*lines, f"y = Identity ({previous})"])
    return model(f"g (float[1,8] x) => (float[1,8] y) {{\n{body}\n}}", named=False)


def test_removals_inside_repeated_blocks_are_not_mistaken_for_shifted_blocks():
    # A greedy longest-block alignment (difflib) pairs the middle blocks one period off here and
    # reports about ten removed and nine added nodes; the shortest edit script finds the two removals.
    result = diff.structural_diff(repeated_blocks(40), repeated_blocks(40, skip=(10, 30)))
    assert [(ref.index, ref.op_type) for ref in result.removed_nodes] == [(10, "Relu"), (30, "Relu")]
    assert result.added_nodes == []
    assert [change.before.index for change in result.changed_nodes] == [11, 31]  # their consumers, rewired


def test_align_returns_a_longest_common_subsequence():
    a, b = "abcabba", "cbabac"  # Myers' example: the longest common subsequences have 4 elements
    pairs = diff.align(list(a), list(b))
    assert len(pairs) == 4
    assert all(a[i] == b[j] for i, j in pairs)
    assert pairs == sorted(pairs) and len({i for i, _ in pairs}) == len({j for _, j in pairs}) == 4
    assert diff.align([], list("ab")) == []
    # Past max_edits the greedy fallback still returns a common subsequence.
    pairs = diff.align(list(a), list(b), max_edits=1)
    assert all(a[i] == b[j] for i, j in pairs)


def test_adding_a_node_reports_only_the_addition():
    before = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
            y = Conv <pads = [1,1,1,1]> (x, w)
        }""",
        named=False,
        w=(4, 3, 3, 3),
    )
    after = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
            c = Conv <pads = [1,1,1,1]> (x, w)
            y = Relu (c)
        }""",
        named=False,
        w=(4, 3, 3, 3),
    )
    result = diff.structural_diff(before, after)
    assert [ref.op_type for ref in result.added_nodes] == ["Relu"]
    assert result.removed_nodes == [] and result.changed_nodes == []
    assert result.histogram_delta() == {"Relu": 1}
    assert result.cost["flops"]["delta"] == 4 * 8 * 8


def test_changing_a_weight_shape_reports_the_weight_and_the_initializer():
    before = model(CONV, w=(4, 3, 3, 3))
    after = model(
        """g (float[1,3,8,8] x) => (float[1,2,8,8] y) <float[2,3,3,3] w = {0.0}> {
            y = Conv <pads = [1,1,1,1]> (x, w)
        }""",
        w=(2, 3, 3, 3),
    )
    result = diff.structural_diff(before, after)
    assert result.added_nodes == [] and result.removed_nodes == []
    (change,) = result.changed_nodes
    assert change.rewired == [] and change.attributes == {}
    (weight,) = change.weights
    assert (weight.position, weight.before, weight.after) == (1, "weight FLOAT[4,3,3,3]", "weight FLOAT[2,3,3,3]")
    ((old, new),) = result.initializers.changed
    assert (old.name, old.shape, new.shape) == ("w", [4, 3, 3, 3], [2, 3, 3, 3])
    ((old_out, new_out),) = result.outputs.changed
    assert (old_out.shape, new_out.shape) == ([1, 4, 8, 8], [1, 2, 8, 8])
    assert result.cost["params"]["delta"] == -54
    assert result.cost["macs"]["delta"] == -2 * 64 * 27


def test_changed_attributes_are_listed_with_old_and_new_values():
    before = model(CONV, w=(4, 3, 3, 3))
    after = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}> {
            y = Conv <pads = [2,2,0,0], strides = [1,1]> (x, w)
        }""",
        w=(4, 3, 3, 3),
    )
    (change,) = diff.structural_diff(before, after).changed_nodes
    assert change.attributes == {"pads": ("[1, 1, 1, 1]", "[2, 2, 0, 0]"), "strides": (None, "[1, 1]")}


def test_an_added_bias_is_an_added_input():
    before = model(CONV, w=(4, 3, 3, 3))
    after = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}, float[4] b = {0.0}> {
            y = Conv <pads = [1,1,1,1]> (x, w, b)
        }""",
        w=(4, 3, 3, 3),
        b=(4,),
    )
    (change,) = diff.structural_diff(before, after).changed_nodes
    (added,) = change.inputs
    assert (added.position, added.kind, added.before, added.after) == (2, "added", "(none)", "weight FLOAT[4]")


def test_weight_values_are_compared_only_on_request():
    before = model(CONV, w=(4, 3, 3, 3))
    after = model(CONV, w=(4, 3, 3, 3), seed=1)
    assert diff.structural_diff(before, after).is_empty()
    (change,) = diff.structural_diff(before, after, compare_weight_values=True).changed_nodes
    (weight,) = change.weights
    assert weight.after == "weight FLOAT[4,3,3,3] (values changed)"


def test_a_changed_subgraph_is_an_attribute_change_of_its_node():
    branching = """g (bool cond, float[2] x) => (float[2] y) {
        y = If (cond) <
            then_branch = then_g () => (float[2] a) { a = Relu (x) },
            else_branch = else_g () => (float[2] b) { b = Abs (x) }
        >
    }"""
    result = diff.structural_diff(model(branching), model(branching.replace("a = Relu", "a = Neg")))
    (change,) = result.changed_nodes
    assert change.attributes == {"then_branch": ("graph of 1 nodes (Relu)", "graph of 1 nodes (Neg)")}
    assert result.histogram_delta() == {"Neg": 1, "Relu": -1}


def test_renamed_nodes_match_by_structure_and_are_not_changes():
    before = model(CHAIN)
    after = io.copy_model(before)
    for node in after.graph:
        node.name = f"renamed_{node.name}"
    result = diff.structural_diff(before, after)
    assert result.is_empty()
    assert (result.matched_by_name, result.matched_by_structure) == (0, 3)


def test_a_weight_moved_from_initializer_to_constant_node_is_not_a_change():
    before = model(CONV, named=False, w=(4, 3, 3, 3))
    after = model(
        """g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
            w = Constant <value = float[4,3,3,3] {0.0}> ()
            y = Conv <pads = [1,1,1,1]> (x, w)
        }""",
        named=False,
    )
    result = diff.structural_diff(before, after)
    assert [ref.op_type for ref in result.added_nodes] == ["Constant"]
    assert result.changed_nodes == []
    assert [info.name for info in result.initializers.removed] == ["w"]


def test_graph_input_and_output_changes():
    before = model(CHAIN)
    after = model(
        """g (float[2,8] x) => (float[2,8] y, float[2,8] r) {
            r = Relu (x)
            n = Neg (r)
            y = Sigmoid (n)
        }"""
    )
    result = diff.structural_diff(before, after)
    ((old_in, new_in),) = result.inputs.changed
    assert (old_in.name, old_in.text, new_in.text) == ("x", "FLOAT[1,8]", "FLOAT[2,8]")
    assert [info.name for info in result.outputs.added] == ["r"]


# --- numeric diff ------------------------------------------------------------------------------


def test_numeric_diff_of_a_model_against_itself_is_exact():
    conv = model(CONV, w=(4, 3, 3, 3))
    report = diff.numeric_diff(conv, io.copy_model(conv))
    metrics = report["y"]
    assert metrics["status"] == "ok"
    assert (metrics["max_abs"], metrics["max_rel"]) == (0.0, 0.0)
    assert metrics["cosine"] == pytest.approx(1.0)
    assert metrics["sqnr_db"] == math.inf
    assert diff.json_safe(report)["y"]["sqnr_db"] == "inf"
    json.dumps(diff.json_safe(report), allow_nan=False)


def test_numeric_diff_of_a_scaled_weight_is_its_relative_error_in_db():
    before = model(CONV, w=(4, 3, 3, 3))
    after = io.copy_model(before)
    weight = after.graph.initializers["w"]
    weight.const_value = ir.tensor(weight.const_value.numpy() * np.float32(1.001), name="w")
    metrics = diff.numeric_diff(before, after, seed=3)["y"]
    # Every output is scaled by 1.001: relative error 1e-3, SQNR = -20 log10(1e-3) = 60 dB.
    assert metrics["max_rel"] == pytest.approx(1e-3, rel=1e-2)
    assert metrics["sqnr_db"] == pytest.approx(60.0, abs=0.1)
    assert metrics["cosine"] == pytest.approx(1.0, abs=1e-9)


def test_numeric_diff_uses_given_feeds_and_reports_outputs_present_in_one_model():
    before = model(CHAIN)
    after = model(
        """g (float[1,8] x) => (float[1,8] z) {
            r = Relu (x)
            n = Neg (r)
            z = Sigmoid (n)
        }"""
    )
    feeds = {"x": np.ones((1, 8), np.float32)}
    report = diff.numeric_diff(before, after, feeds)
    assert report == {"y": {"status": "missing in second model"}, "z": {"status": "only in second model"}}


# --- HTML --------------------------------------------------------------------------------------


class _TagChecker(HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def test_html_report_is_self_contained_well_formed_and_escapes_names():
    before = model(CHAIN)
    after = model(
        """g (float[1,8] x) => (float[1,8] y) {
            r = Relu (x)
            y = Sigmoid (r)
        }"""
    )
    after.graph.node(0).name = "relu<b>&"
    result = diff.structural_diff(before, after)
    numeric = diff.numeric_diff(before, before)
    page = diff_html.render_html(result, numeric, title="chain <diff>")

    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert page.startswith("<!DOCTYPE html>")
    assert "relu&lt;b&gt;&amp;" in page and "relu<b>" not in page
    assert "<title>chain &lt;diff&gt;</title>" in page
    assert "<code>Neg</code>" in page  # the removed node's row
    assert "&infin;" in page  # SQNR of identical outputs
    for external in ("<script", "<link", "src=", "href=", "http"):
        assert external not in page
    # Rows: summary (header + 8), numeric (header + 1), histogram (header + 3 ops),
    # removed (header + 1), changed (header + 1: Sigmoid rewired; Relu renamed by structure).
    assert checker.rows == 9 + 2 + 4 + 2 + 2


def test_html_collapses_long_node_lists():
    before = model(CHAIN)
    after = io.copy_model(before)
    for i in range(diff_html.COLLAPSE_ABOVE + 1):
        after.graph.append(ir.node("Relu", [after.graph.inputs[0]], name=f"extra{i}"))
    page = diff_html.render_html(diff.structural_diff(before, after))
    assert f"<summary>show {diff_html.COLLAPSE_ABOVE + 1} nodes</summary>" in page


def test_html_of_identical_models_says_so():
    conv = model(CONV, w=(4, 3, 3, 3))
    page = diff_html.render_html(diff.structural_diff(conv, io.copy_model(conv)))
    assert "structurally identical" in page
