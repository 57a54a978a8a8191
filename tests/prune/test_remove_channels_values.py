"""remove_channels on one producer kind at a time (Gemm, ConvTranspose, depthwise Conv, each with a
bias): the pruned model computes what the original computes with the removed channels' consumer
weights zeroed, and the removed count is right."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import channel_groups, fidelity, io, runtime
from passes.prune.apply import remove_channels
from passes.prune.intent import PruneIntent

HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'
MODELS = {
    "gemm": (HEADER + """g (float[2,5] x) => (float[2,3] y) {
        h = Gemm <transB = 1> (x, w1, b1)
        r = Relu(h)
        y = Gemm (r, w2, b2)
    }""", {"w1": (8, 5), "b1": (8,), "w2": (8, 3), "b2": (3,)}),
    "conv_transpose": (HEADER + """g (float[1,3,4,4] x) => (float[1,2,9,9] y) {
        h = ConvTranspose <strides = [2,2]> (x, w1, b1)
        r = Relu(h)
        y = Conv (r, w2, b2)
    }""", {"w1": (3, 8, 3, 3), "b1": (8,), "w2": (2, 8, 1, 1), "b2": (2,)}),
    "depthwise": (HEADER + """g (float[1,3,6,6] x) => (float[1,2,6,6] y) {
        h = Conv (x, w1, b1)
        d = Conv <group = 8, pads = [1,1,1,1]> (h, wd, bd)
        r = Relu(d)
        y = Conv (r, w2, b2)
    }""", {"w1": (8, 3, 1, 1), "b1": (8,), "wd": (8, 1, 3, 3), "bd": (8,), "w2": (2, 8, 1, 1), "b2": (2,)}),
}


def build(name: str) -> ir.Model:
    text, shapes = MODELS[name]
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(3)
    for weight, shape in shapes.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), weight))
    return ir.serde.deserialize_model(proto)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pruned_layer_kinds_match_the_masked_original(name):
    model = build(name)
    analysis = channel_groups.analyze(model)
    (group,) = [g for g in analysis.groups() if g.prunable]
    keep = {group.id: np.array([0, 2, 5, 7])}
    feeds = runtime.generate_inputs(model, seed=0)
    masked = PruneIntent.record(model, analysis, keep).build(io.copy_model(model))
    assert remove_channels(model, analysis, keep) == group.channels - 4
    error = fidelity.compare(runtime.run(masked, feeds), runtime.run(model, feeds))
    assert error["max_rel"] <= 1e-5, error
    if name == "depthwise":
        depthwise = [n for n in model.graph if n.attributes.get_int("group", 1) > 1]
        assert [n.attributes.get_int("group") for n in depthwise] == [4]


def test_keeping_every_channel_changes_nothing():
    model = build("gemm")
    analysis = channel_groups.analyze(model)
    (group,) = [g for g in analysis.groups() if g.prunable]
    assert remove_channels(model, analysis, {group.id: np.arange(group.channels)}) == 0
