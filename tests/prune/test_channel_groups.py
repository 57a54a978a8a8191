"""Channel dependency analysis: groups, reasons for unprunable groups, and pruning every prunable
group by 30% gives a valid model (onnx checker, ONNX Runtime) with the expected shapes that computes
what the original computes with the removed channels' consumer weights zeroed (``passes.prune.intent``:
values, through every residual, concat, split, depthwise and head mapping the models have)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import channel_groups, fidelity, io, runtime, shapes
from ir.channel_groups import weight_array, describe_groups
from models import builders, zoo
from passes.prune.apply import remove_channels
from passes.prune.intent import PruneIntent

LIGHT = ["light_densenet121", "light_inception_v1", "light_inception_v2", "light_squeezenet", "light_resnet50", "light_shufflenet"]
PPOCR = ["ppocr-det", "ppocr-rec", "ppocr-cls"]


def load(name: str) -> ir.Model:
    if name in builders.BUILDERS:
        return builders.build(name, image_size=64 if name != "transformer_encoder" else 224)
    model = io.load(zoo.model_path(name))
    shapes.fix_input_shapes(model, zoo.default_input_shapes(name))
    return model


def prune_all_by_30_percent(model: ir.Model):
    """Keep the first 70% of every prunable group; return the expected out-channel count per conv."""
    analysis = channel_groups.analyze(model)
    keep = {g.id: np.arange(g.channels - int(0.3 * g.channels)) for g in analysis.groups() if g.prunable}
    expected = {}
    for group in analysis.groups():
        for action in group.producers:
            if action.node.op_type == "Conv":
                expected[action.node] = len(keep.get(group.id, range(group.channels)))
    feeds = runtime.generate_inputs(model, seed=0)
    before = runtime.run(model, feeds)
    masked = PruneIntent.record(model, analysis, keep).build(io.copy_model(model))
    removed = remove_channels(model, analysis, keep)
    return keep, removed, expected, feeds, before, masked


def check_pruned(name: str) -> dict:
    model = load(name)
    keep, removed, expected, feeds, before, masked = prune_all_by_30_percent(model)
    assert keep, f"{name}: no prunable group"
    assert removed > 0
    onnx.checker.check_model(io.to_proto(model), full_check=True)
    after = runtime.run(model, feeds)
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    for node, channels in expected.items():
        assert channels == weight_array(node.inputs[1]).shape[0], f"{name}: {node.name} has the wrong out-channel count"
    error = fidelity.compare(runtime.run(masked, feeds), after)
    assert error["max_rel"] <= 1e-4 or error["max_abs"] <= 1e-6, f"{name}: pruned outputs differ from the masked original: {error}"
    return {"groups": len(keep), "removed": removed}


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2", "vgg16"])
def test_builders_prune_every_prunable_group(name):
    check_pruned(name)


@pytest.mark.parametrize("name", LIGHT)
def test_light_models_prune_every_prunable_group(name):
    if name == "light_shufflenet":
        # Grouped 1x1 convolutions and channel shuffles: nothing is provably prunable; say why.
        reasons = " ".join(r for g in describe_groups(load(name)) for r in g["reasons"])
        assert "group=" in reasons
        return
    check_pruned(name)


@pytest.mark.real_models
@pytest.mark.parametrize("name", PPOCR)
def test_ppocr_models_prune_every_prunable_group(name):
    pytest.importorskip("rapidocr_onnxruntime")
    result = check_pruned(name)
    assert result["groups"] >= 10


def test_resnet_residual_add_couples_the_branches():
    analysis = channel_groups.analyze(load("resnet18"))
    residual = [g for g in analysis.groups() if len(g.producers) >= 3]
    # Stage 1 of ResNet-18: the stem conv and both blocks' second convs share the 64 channels.
    assert residual and all(g.prunable for g in residual)
    assert {len(g.producers) for g in residual} >= {3}


def test_mobilenet_depthwise_conv_follows_its_input_channels():
    analysis = channel_groups.analyze(load("mobilenetv2"))
    kinds = [a.kind for g in analysis.groups() for a in g.followers]
    assert "group" in kinds  # depthwise convolutions get a new group count
    pruned = load("mobilenetv2")
    prune_all_by_30_percent(pruned)
    for node in pruned.graph:
        if node.op_type == "Conv" and node.attributes.get_int("group", 1) > 1:
            assert node.attributes.get_int("group") == weight_array(node.inputs[1]).shape[0]


def test_graph_input_and_output_are_never_pruned():
    rows = describe_groups(load("resnet18"))
    reasons = [r for row in rows for r in row["reasons"]]
    assert any("graph input" in r for r in reasons)
    assert any("graph output" in r for r in reasons)
    assert all(row["reasons"] for row in rows if not row["prunable"])


def test_lrn_and_softmax_over_channels_make_groups_unprunable():
    reasons = [r for row in describe_groups(load("light_inception_v1")) for r in row["reasons"]]
    assert any("LRN" in r and "mixes neighbouring channels" in r for r in reasons)


def test_analysis_is_cached_until_the_graph_changes():
    model = load("resnet18")
    first = channel_groups.analyze(model)
    assert channel_groups.analyze(model) is first
    prune_all_by_30_percent(model)
    assert channel_groups.analyze(model) is not first


CONCAT_SE_FLATTEN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,3,8,8] x) => (float[1,5] y) {
    a = Conv <pads = [1,1,1,1]> (x, wa)
    b = Conv <pads = [1,1,1,1]> (x, wb)
    rb = Relu(b)
    p = GlobalAveragePool(rb)
    s1 = Conv(p, ws1)
    s2 = Relu(s1)
    s3 = Conv(s2, ws2)
    gate = HardSigmoid(s3)
    e = Mul(rb, gate)
    c = Concat <axis = 1> (a, e)
    q = MaxPool <kernel_shape = [4,4], strides = [4,4]> (c)
    f = Flatten(q)
    y = Gemm <transB = 1> (f, wf)
}
"""


def build_concat_model() -> ir.Model:
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(CONCAT_SE_FLATTEN)
    shapes_ = {"wa": (4, 3, 3, 3), "wb": (6, 3, 3, 3), "ws1": (3, 6, 1, 1), "ws2": (6, 3, 1, 1), "wf": (5, 40)}
    for name, shape in shapes_.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    return ir.serde.deserialize_model(proto)


def test_concat_segments_squeeze_excitation_and_flatten_into_gemm():
    model = build_concat_model()
    analysis = channel_groups.analyze(model)
    by_producer = {a.node.outputs[0].name: g for g in analysis.groups() for a in g.producers}
    # Each Conv before the Concat is its own group; the squeeze-and-excitation gate (Mul by a
    # HardSigmoid of a pooled branch) couples its last Conv with the branch it scales.
    assert by_producer["a"].prunable and by_producer["b"].prunable
    assert by_producer["a"].id != by_producer["b"].id
    assert by_producer["s3"].id == by_producer["b"].id
    assert any(a.node.outputs[0].name == "s1" for a in by_producer["b"].consumers)
    gemm_inputs = [a for a in by_producer["a"].consumers if a.node.op_type == "Gemm"]
    assert gemm_inputs and gemm_inputs[0].layout.block == 4  # each channel is a 2x2 block of features
    keep = {by_producer["a"].id: np.array([0, 2]), by_producer["b"].id: np.array([1, 2, 3, 5])}
    feeds = runtime.generate_inputs(model)
    remove_channels(model, analysis, keep)
    onnx.checker.check_model(io.to_proto(model), full_check=True)
    wf = next(n for n in model.graph if n.op_type == "Gemm").inputs[1].const_value.numpy()
    assert wf.shape == (5, 24)
    assert runtime.run(model, feeds)["y"].shape == (1, 5)
