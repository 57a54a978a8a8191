"""Specification of the drawn graph: ir.graph_layout, ir.graph_view, ir.graph_html, ir.inspect_html."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx_ir as ir

from ir import diff, diff_html, graph_layout, graph_view, io
from ir.inspect_html import render_model_page

OPSET = '<ir_version: 8, opset_import: ["" : 17]>'


def model(text: str, **weights) -> ir.Model:
    result = ir.from_onnx_text(f"{OPSET}\n{text}")
    for node in result.graph:
        node.name = node.outputs[0].name
    rng = np.random.default_rng(0)
    for name, shape in weights.items():
        result.graph.initializers[name].const_value = ir.tensor(rng.standard_normal(shape).astype(np.float32), name=name)
    return result


CHAIN = """g (float[1,8] x) => (float[1,8] y) {
    r = Relu (x)
    n = Neg (r)
    y = Sigmoid (n)
}"""

WITHOUT_NEG = """g (float[1,8] x) => (float[1,8] y) {
    r = Relu (x)
    y = Sigmoid (r)
}"""

CONV_RELU = """g (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {0.0}, float[4] b = {0.0}> {
    c = Conv <pads = [1,1,1,1]> (x, w, b)
    y = Relu (c)
}"""


def long_chain(ops: list[str]) -> str:
    lines, previous = [], "x"
    for i, op in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        lines.append(f"    {out} = {op} ({previous})")
        previous = out
    return "g (float[1,8] x) => (float[1,8] y) {\n" + "\n".join(lines) + "\n}"


# --- layout ------------------------------------------------------------------------------------


def test_a_chain_is_laid_out_top_to_bottom_in_one_column():
    layout = graph_layout.layered_layout(["a", "b", "c"], [("a", "b"), ("b", "c")])
    assert layout.y["a"] < layout.y["b"] < layout.y["c"]
    assert layout.x["a"] == layout.x["b"] == layout.x["c"]
    assert layout.ranks == 3


def test_branches_of_a_diamond_share_a_rank_side_by_side_and_the_join_sits_between():
    layout = graph_layout.layered_layout(["s", "l", "r", "j"], [("s", "l"), ("s", "r"), ("l", "j"), ("r", "j")], slot=100)
    assert layout.y["l"] == layout.y["r"]
    assert abs(layout.x["l"] - layout.x["r"]) >= 100  # one slot apart, no overlap
    assert min(layout.x["l"], layout.x["r"]) <= layout.x["j"] <= max(layout.x["l"], layout.x["r"])


def test_a_side_input_is_pulled_down_next_to_its_consumer():
    # 'side' feeds only the last node: longest-path ranking alone would put it at the top.
    nodes = ["a", "b", "c", "side", "d"]
    layout = graph_layout.layered_layout(nodes, [("a", "b"), ("b", "c"), ("c", "d"), ("side", "d")])
    assert layout.y["side"] == layout.y["c"]


def test_two_thousand_nodes_lay_out_without_overlap_in_a_rank():
    # A DenseNet-like block: every node reads all earlier ones in its block of 10.
    nodes = [f"n{i}" for i in range(2000)]
    edges = [(f"n{j}", f"n{i}") for i in range(1, 2000) for j in range(max(i - 10 * ((i % 10) > 0), (i // 10) * 10), i)]
    edges += [(f"n{i - 1}", f"n{i}") for i in range(1, 2000)]
    layout = graph_layout.layered_layout(nodes, edges, slot=150)
    by_rank: dict[int, list[int]] = {}
    for node in nodes:
        by_rank.setdefault(layout.y[node], []).append(layout.x[node])
    for xs in by_rank.values():
        xs.sort()
        assert all(b - a >= 149 for a, b in zip(xs, xs[1:]))


# --- what is drawn -----------------------------------------------------------------------------


def test_diff_view_colours_the_removed_node_and_the_rewired_consumer_and_aligns_matched_nodes():
    before, after = model(CHAIN), model(WITHOUT_NEG)
    view = graph_view.diff_view(before, after, diff.structural_diff(before, after))
    states = {node.name: (node.state, node.sides) for node in view.nodes}
    assert states["n"] == ("removed", "a")
    assert states["y"] == ("changed", "ab")  # Sigmoid now reads Relu
    assert states["r"] == ("same", "ab")
    assert states["x"] == ("same", "ab")  # the graph input, drawn once per side
    sigmoid = next(node for node in view.nodes if node.name == "y")
    assert any("rewired" in line for line in sigmoid.details["changes"])
    assert ("in:x", "a0") in view.edges_a and ("a0", "a2") in view.edges_b  # after: Relu -> Sigmoid
    # Matched nodes have one key, so one position: the same height in both panels.
    assert len({node.key for node in view.nodes}) == len(view.nodes)


def test_added_nodes_are_drawn_on_the_after_side_only():
    before, after = model(WITHOUT_NEG), model(CHAIN)
    view = graph_view.diff_view(before, after, diff.structural_diff(before, after))
    added = [node for node in view.nodes if node.state == "added"]
    assert [(node.op, node.sides) for node in added] == [("Neg", "b")]
    keys = [node.key for node in view.nodes]
    assert keys.index(added[0].key) < keys.index(next(n.key for n in view.nodes if n.op == "Sigmoid"))


def test_unchanged_runs_collapse_into_one_box_that_lists_its_nodes():
    ops = ["Relu", "Neg", "Abs", "Relu", "Neg", "Abs", "Sigmoid"]
    before = model(long_chain(ops))
    after = io.copy_model(before)
    for node in after.graph:
        if node.name == "y":
            node.op_type = "Tanh"  # different op: the last node is removed and a Tanh added
    view = graph_view.diff_view(before, after, diff.structural_diff(before, after))
    runs = [node for node in view.nodes if node.state == "collapsed"]
    assert len(runs) == 1
    # The Abs next to the change reads into a different node in each model, so it stays visible.
    assert runs[0].op == "5 unchanged"
    assert [m["op"] for m in runs[0].details["members"]] == ops[:5]
    assert {node.state for node in view.nodes if node.state != "collapsed"} >= {"removed", "added"}


def test_node_details_hold_attributes_weight_statistics_and_cost():
    before = model(CONV_RELU, w=(4, 3, 3, 3), b=(4,))
    view = graph_view.model_view(before)
    conv = next(node for node in view.nodes if node.op == "Conv")
    details = conv.details["a"]
    assert details["attributes"]["pads"] == "[1, 1, 1, 1]"
    weight = details["inputs"][1]["weight"]
    w = before.graph.initializers["w"].const_value.numpy()
    assert weight["shape"] == [4, 3, 3, 3]
    assert np.isclose(weight["min"], w.min()) and np.isclose(weight["std"], w.std())
    assert details["inputs"][0]["type"] == "float32[1,3,8,8]"
    assert details["cost"]["params"] == 4 * 27 + 4
    assert details["cost"]["macs"] == 4 * 27 * 64
    assert conv.heat == 1.0  # the only node with MACs
    assert next(node for node in view.nodes if node.op == "Relu").heat == 0.0


def _graph_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_diff_page_draws_both_panels_with_full_paths_and_stays_self_contained():
    before, after = model(CHAIN), model(WITHOUT_NEG)
    after.graph.node(0).name = "r</script><b>"
    result = diff.structural_diff(before, after)
    paths = ("/models/a/chain.onnx", "/models/b/chain.onnx")
    page = diff_html.render_html(result, title=diff_html.diff_title(paths), models=(before, after), paths=paths)
    assert "<title>/models/a/chain.onnx vs /models/b/chain.onnx</title>" in page
    assert "<code>/models/a/chain.onnx</code>" in page and "<code>/models/b/chain.onnx</code>" in page
    assert page.count('<g class="n removed"') == 1 and page.count('<g class="n changed"') == 2  # one per side
    data = _graph_data(page)  # the JSON survives a name that closes a script tag
    assert any(node["name"] == "r -> r</script><b>" for node in data.values())  # renamed: both names
    for external in ("<link", "src=", "href=", "http", "@import", "url("):
        assert external not in page


def test_diff_title_names_the_pipeline_between_the_models():
    after = model(WITHOUT_NEG)
    after.metadata_props["graphpress.pipeline"] = "fold"
    assert diff_html.diff_title(("/a/m.onnx", "/b/m.onnx"), after) == "/a/m.onnx -> fold -> /b/m.onnx"


def test_inspect_page_shows_where_the_macs_and_weights_are():
    conv = model(CONV_RELU, w=(4, 3, 3, 3), b=(4,))
    page = render_model_page(conv, "/models/conv.onnx")
    assert "<h1>/models/conv.onnx</h1>" in page
    assert "Where the MACs are" in page and "Where the weights are" in page
    assert "100.0%" in page  # the Conv holds every MAC and every weight
    data = _graph_data(page)
    assert data["a0"]["mac_share"] == 1.0
    assert 'fill="#e65100"' in page  # the deepest heat colour on the Conv
