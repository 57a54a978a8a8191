"""Split / Slice on the channel axis, attention heads and channel shuffles in the channel analysis.

A Split or Slice whose pieces fall on segment boundaries (undoing a Concat) keeps the channels
prunable and gets its sizes / offsets rewritten; a piece inside one layer's channels, a head split
and a shuffle stay unprunable with a reason that says so."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import passes.prune  # noqa: F401  (registers the pruning passes)
from ir import channel_groups, io, runtime
from ir.channel_groups import constant_array, describe_groups
from models import builders
from passes.base import create
from passes.calibration import Calibration
from passes.manager import PassContext
from tests.prune.test_channel_groups import check_pruned, load

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'
# a (4 channels) and b (6 channels) are concatenated, then taken apart again by Split or Slice.
SPLIT = HEADER + """g (float[1,3,8,8] x) => (float[1,5,8,8] y) <int64[2] sizes = {4, 6}> {
    a = Conv <pads = [1,1,1,1]> (x, wa, ba)
    b = Conv <pads = [1,1,1,1]> (x, wb, bb)
    c = Concat <axis = 1> (a, b)
    r = Relu(c)
    p, q = Split <axis = 1> (r, sizes)
    u = Conv (p, wu, bu)
    v = Conv (q, wv, bv)
    y = Add(u, v)
}"""
SLICE = HEADER + """g (float[1,3,8,8] x) => (float[1,5,8,8] y) <int64[1] s0 = {0}, int64[1] e0 = {4}, int64[1] s1 = {4},
        int64[1] e1 = {9223372036854775807}, int64[1] ax = {1}> {
    a = Conv <pads = [1,1,1,1]> (x, wa, ba)
    b = Conv <pads = [1,1,1,1]> (x, wb, bb)
    c = Concat <axis = 1> (a, b)
    r = Relu(c)
    p = Slice(r, s0, e0, ax)
    q = Slice(r, s1, e1, ax)
    u = Conv (p, wu, bu)
    v = Conv (q, wv, bv)
    y = Add(u, v)
}"""
# One conv's 10 channels split 4 + 6: a piece inside one layer's channels.
INSIDE = HEADER + """g (float[1,3,8,8] x) => (float[1,5,8,8] y) <int64[2] sizes = {4, 6}> {
    c = Conv <pads = [1,1,1,1]> (x, wc, bc)
    p, q = Split <axis = 1> (c, sizes)
    u = Conv (p, wu, bu)
    v = Conv (q, wv, bv)
    y = Add(u, v)
}"""


def model_from(text: str, zero: dict[str, tuple[int, ...]] = {}) -> ir.Model:
    """Random weights; channels listed in ``zero`` are exactly zero after the Relu (weight 0, bias -1)."""
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(text)
    shapes = {"wa": (4, 3, 3, 3), "wb": (6, 3, 3, 3), "wc": (10, 3, 3, 3), "wu": (5, 4, 1, 1), "wv": (5, 6, 1, 1)}
    used = {i for node in proto.graph.node for i in node.input}
    for name, shape in shapes.items():
        if name not in used:
            continue
        weight, bias = rng.standard_normal(shape) * 0.3, rng.standard_normal(shape[0]) * 0.1
        for channel in zero.get(name, ()):
            weight[channel], bias[channel] = 0.0, -1.0
        proto.graph.initializer.append(onnx.numpy_helper.from_array(weight.astype(np.float32), name))
        proto.graph.initializer.append(onnx.numpy_helper.from_array(bias.astype(np.float32), "b" + name[1:]))
    return ir.serde.deserialize_model(proto)


def prunable_sizes(model: ir.Model) -> list[int]:
    return sorted(g["channels"] for g in describe_groups(model) if g["prunable"])


@pytest.mark.parametrize("text", [SPLIT, SLICE], ids=["split", "slice"])
def test_pieces_on_concat_boundaries_stay_prunable(text):
    assert prunable_sizes(model_from(text)) == [4, 6]


@pytest.mark.parametrize("text", [SPLIT, SLICE], ids=["split", "slice"])
def test_planted_zero_channels_behind_a_split_go_with_float_error_only(text):
    model = model_from(text, zero={"wa": (1,), "wb": (0, 4)})
    before = io.copy_model(model)
    feeds = [runtime.generate_inputs(model, seed=i) for i in range(3)]
    pass_ = create("prune", {"ratio": "0.3", "importance": "l1", "reconstruct": "false", "holdout": "0", "round": "1"})
    pass_.context = PassContext(calibration=Calibration.from_iterable(feeds))
    pass_(model)
    assert pass_.stats["channels removed"] == 3  # 30% of 10: the three planted channels
    onnx.checker.check_model(io.to_proto(model), full_check=True)
    for feed in feeds:
        assert runtime.compare(runtime.run(before, feed), runtime.run(model, feed))["max_rel"] < 1e-5
    u, v = (next(n for n in model.graph if n.outputs[0].name == name) for name in ("u", "v"))
    assert constant_array(u.inputs[1]).shape[1] == 3 and constant_array(v.inputs[1]).shape[1] == 4
    if text is SPLIT:
        split = next(n for n in model.graph if n.op_type == "Split")
        assert constant_array(split.inputs[1]).tolist() == [3, 4]


def test_split_inside_one_layers_channels_is_unprunable_with_a_reason():
    groups = describe_groups(model_from(INSIDE))
    conv = next(g for g in groups if g["channels"] == 10)
    assert not conv["prunable"]
    assert "splits the channel axis inside one layer's channels" in conv["reasons"][0]


def test_transformer_mlp_hidden_features_prune_and_heads_say_why():
    model = load("transformer_encoder")
    groups = describe_groups(model)
    hidden = [g for g in groups if g["prunable"]]
    assert len(hidden) == 2 and all(len(g["consumers"]) == 1 and "MatMul" in g["consumers"][0] for g in hidden)
    reasons = " ".join(r for g in groups for r in g["reasons"])
    assert "splits the channel axis into 4 x 32 (attention heads or a channel shuffle)" in reasons
    check_pruned("transformer_encoder")


def test_shufflenet_says_grouped_conv_and_shuffle():
    reasons = " ".join(r for g in describe_groups(load("light_shufflenet")) for r in g["reasons"])
    assert "(group=" in reasons and "couples channels group-wise" in reasons
    analysis = channel_groups.analyze(load("light_shufflenet"))
    every_reason = " ".join(r for reasons in analysis.reasons.values() for r in reasons)
    assert "Reshape 'n7' splits the channel axis into 4 x 28 (attention heads or a channel shuffle)" in every_reason
