"""Split / Slice on the channel axis, attention heads and channel shuffles in the channel analysis.

A Split or Slice whose pieces fall on segment boundaries (undoing a Concat) keeps the channels
prunable and gets its sizes / offsets rewritten; a piece inside one layer's channels and a shuffle
stay unprunable with a reason that says so. Attention heads are pruned whole."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import channel_groups, fidelity, io, runtime
from ir.channel_groups import weight_array, describe_groups
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
        assert fidelity.compare(runtime.run(before, feed), runtime.run(model, feed))["max_rel"] < 1e-5
    u, v = (next(n for n in model.graph if n.outputs[0].name == name) for name in ("u", "v"))
    assert weight_array(u.inputs[1]).shape[1] == 3 and weight_array(v.inputs[1]).shape[1] == 4
    if text is SPLIT:
        split = next(n for n in model.graph if n.op_type == "Split")
        assert weight_array(split.inputs[1]).tolist() == [3, 4]


def test_split_inside_one_layers_channels_is_unprunable_with_a_reason():
    groups = describe_groups(model_from(INSIDE))
    conv = next(g for g in groups if g["channels"] == 10)
    assert not conv["prunable"]
    assert "splits the channel axis inside one layer's channels" in conv["reasons"][0]


def test_transformer_mlp_hidden_features_and_heads_prune():
    model = load("transformer_encoder")
    groups = describe_groups(model)
    hidden = [g for g in groups if g["prunable"] and g["channels"] == 512]
    assert len(hidden) == 2 and all(g["consumers"] == [g["consumers"][0]] and "linear2" in g["consumers"][0] for g in hidden)
    heads = [g for g in groups if g["prunable"] and g["channels"] == 4]
    assert len(heads) == 2 and all("out_proj" in g["consumers"][0] for g in heads)
    # The residual stream reaches the graph input and output: never pruned, and it says so.
    assert all(not g["prunable"] and g["reasons"] for g in groups if g["channels"] == 128)
    check_pruned("transformer_encoder")


def test_shufflenet_says_grouped_conv_and_shuffle():
    reasons = " ".join(r for g in describe_groups(load("light_shufflenet")) for r in g["reasons"])
    assert "(group=" in reasons and "couples channels group-wise" in reasons
    analysis = channel_groups.analyze(load("light_shufflenet"))
    every_reason = " ".join(r for reasons in analysis.reasons.values() for r in reasons)
    assert "Reshape 'n9' mixes the channel axis with other axes (e.g. the merge ending a channel shuffle)" in every_reason


def test_attention_heads_are_pruned_whole_and_a_planted_dead_head_goes_with_float_error_only():
    model = load("transformer_encoder")
    # Head 2 of layer 0 reads nothing: zero query/key/value columns -> uniform weights over zero values.
    head = slice(64, 96)
    for name in ("q_proj", "k_proj", "v_proj"):
        for kind in ("weight", "bias"):
            init = model.graph.initializers[f"layers.0.self_attn.{name}.{kind}"]
            array = init.const_value.numpy().copy()
            array[..., head] = 0.0
            init.const_value = ir.tensor(array, name=init.name)
    heads = [g for g in describe_groups(model) if g["channels"] == 4]
    assert len(heads) == 2 and all(len(g["producers"]) == 3 for g in heads)  # q, k, v together
    before = io.copy_model(model)
    feeds = [runtime.generate_inputs(model, seed=i) for i in range(2)]
    pass_ = create("prune", {"ratio": "0.0009", "importance": "l1", "reconstruct": "false", "holdout": "0", "round": "8"})
    pass_(model)
    assert pass_.stats["channels removed"] == 1  # one head (of 1032 prunable units), the planted one
    q = next(n for n in model.graph if n.name == "layers.0.self_attn.q_proj/MatMul")
    out = next(n for n in model.graph if n.name == "layers.0.self_attn.out_proj/MatMul")
    assert weight_array(q.inputs[1]).shape == (128, 96) and weight_array(out.inputs[1]).shape == (96, 128)
    onnx.checker.check_model(io.to_proto(model), full_check=True)
    for feed in feeds:
        assert fidelity.compare(runtime.run(before, feed), runtime.run(model, feed))["max_rel"] < 1e-5


@pytest.mark.real_models
def test_ppocr_rec_fused_qkv_heads_say_why():
    pytest.importorskip("rapidocr_onnxruntime")
    model = load("ppocr-rec")
    create("fold-constants", {})(model)  # its Reshape targets are computed from Shape until folded
    reasons = [r for g in describe_groups(model) for r in g["reasons"]]
    assert any("splits the channel axis into 3 x 8 x 15 (attention heads" in r for r in reasons)


# -- ir.channel_groups.offsets on a hand-made layout: segments of 4, 6 and 2 channels on axis 1 --------
def test_pieces_hold_whole_segments_or_nothing():
    from ir.channel_groups import offsets
    from ir.channel_groups.model import Layout, Segment

    layout = Layout(1, (Segment(0, 4), Segment(1, 6), Segment(2, 2)))
    assert offsets.boundaries(layout) == [0, 4, 10, 12]
    assert offsets.segments_between(layout, 4, 12) == layout.segments[1:]
    assert offsets.segments_between(layout, 0, 4) == layout.segments[:1]
    assert offsets.segments_between(layout, 2, 10) is None  # cuts through the first segment
    assert offsets.segments_between(layout, 4, 4) is None  # an empty piece holds no segment
    assert offsets.segments_between(layout, 10, 4) is None
    before_b = offsets.prefix(layout, 10)
    assert before_b == Layout(1, layout.segments[:2]) and before_b.channels == 10


# -- why a Reshape ends channel tracking (the reason shown to the user) ---------------------------------
SPLITS = "splits the channel axis into {} (attention heads or a channel shuffle) in a way whole heads cannot be tracked"
MIXES = "mixes the channel axis with other axes (e.g. the merge ending a channel shuffle): the new channel order is not modeled"


@pytest.mark.parametrize(("in_dims", "out_dims", "axis", "reason"), [
    ([1, 12, 8, 8], [1, 3, 4, 8, 8], 1, SPLITS.format("3 x 4")),                 # a shuffle's first Reshape
    ([1, 197, 768], [1, 197, 3, 4, 64], 2, SPLITS.format("3 x 4 x 64")),         # fused q/k/v heads
    ([2, 6, 5], [2, 2, 3, 5], 1, SPLITS.format("2 x 3")),                       # a batch of 2 before C
    ([1, 3, 4, 8, 8], [1, 12, 8, 8], 2, MIXES),                                 # the shuffle's merge back
    ([2, 6], [12], 1, MIXES),                                                   # C merged with the batch
    ([1, 12, 64], [1, 8, 96], 1, MIXES),                                         # C cut across factors
    ([3, 4, 5], [3, 2, 10], 1, MIXES),                                          # C's factors run past it
    ([2, 3, 12], [2, 3, 3, 4], 2, SPLITS.format("3 x 4")),                      # two axes before C
], ids=["shuffle-split", "fused-qkv", "batch-of-2", "shuffle-merge", "merged-with-batch", "cut-across-factors", "factors-past-c",
        "two-axes-before-c"])
def test_reshape_reasons_name_the_split_factors_or_the_mixing(in_dims, out_dims, axis, reason):
    from ir.channel_groups.analysis import _reshape_reason

    assert _reshape_reason("Reshape r", in_dims, out_dims, axis) == f"Reshape r {reason}"
