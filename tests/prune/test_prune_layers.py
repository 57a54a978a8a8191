"""prune-layers: residual blocks found, ranked by contribution, removed under a budget."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from ir import cost, fidelity, io, runtime
from ir.errors import UsageError
from models import builders
from passes.base import create
from passes.calibration import Calibration
from passes.manager import PassContext
from passes.prune.blocks import find_blocks

# Two residual blocks on h; the second one's last conv has zero weight and bias: f(x) == 0 exactly.
TWO_BLOCKS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,3,8,8] x) => (float[1,8,8,8] y) {
    s = Conv <pads = [1,1,1,1]> (x, w0, b0)
    h = Relu(s)
    a1 = Conv <pads = [1,1,1,1]> (h, w1, b1)
    r1 = Relu(a1)
    f1 = Conv <pads = [1,1,1,1]> (r1, w2, b2)
    h1 = Add(h, f1)
    a2 = Conv <pads = [1,1,1,1]> (h1, w3, b3)
    r2 = Relu(a2)
    f2 = Conv <pads = [1,1,1,1]> (r2, zero_w, zero_b)
    h2 = Add(f2, h1)
    y = Relu(h2)
}
"""


def two_blocks() -> ir.Model:
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(TWO_BLOCKS)
    arrays = {"w0": rng.standard_normal((8, 3, 3, 3)) * 0.3, "b0": rng.standard_normal(8) * 0.1}
    for w, b in (("w1", "b1"), ("w2", "b2"), ("w3", "b3")):
        arrays[w], arrays[b] = rng.standard_normal((8, 8, 3, 3)) * 0.2, rng.standard_normal(8) * 0.1
    arrays["zero_w"], arrays["zero_b"] = np.zeros((8, 8, 3, 3)), np.zeros(8)
    for name, array in arrays.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return ir.serde.deserialize_model(proto)


def run(model: ir.Model, feeds=None, **options):
    pass_ = create("prune-layers", {k: str(v) for k, v in options.items()})
    if feeds is not None:
        pass_.context = PassContext(calibration=Calibration.from_iterable(feeds))
    return pass_, pass_(model)


def feeds_for(model: ir.Model, n: int) -> list[dict[str, np.ndarray]]:
    return [runtime.generate_inputs(model, seed=10 + i) for i in range(n)]


def assert_valid(model: ir.Model, feed) -> dict[str, np.ndarray]:
    onnx.checker.check_model(io.to_proto(model), full_check=True)
    outputs = runtime.run(model, feed)
    assert all(np.all(np.isfinite(v)) for v in outputs.values())
    return outputs


def test_exactly_one_budget_is_required():
    with pytest.raises(UsageError, match="exactly one of blocks"):
        create("prune-layers", {})
    with pytest.raises(UsageError, match="exactly one of blocks"):
        create("prune-layers", {"blocks": "1", "macs": "0.2"})
    with pytest.raises(UsageError, match="criterion"):
        create("prune-layers", {"blocks": "1", "criterion": "random"})


def test_finds_both_planted_blocks_whichever_input_is_the_skip():
    blocks, rejected = find_blocks(two_blocks())
    assert [(b.add.outputs[0].name, b.skip.name, len(b.nodes)) for b in blocks] == [("h1", "h", 3), ("h2", "h1", 3)]
    assert not rejected


@pytest.mark.parametrize("criterion", ["ratio", "output"])
def test_planted_zero_block_is_removed_with_float_error_only(criterion):
    model = two_blocks()
    before = io.copy_model(model)
    feeds = feeds_for(model, 4)
    pass_, result = run(model, feeds, blocks=1, criterion=criterion, calib=2, holdout=2)
    assert result.modified
    assert [row["layer"] for row in pass_.layers] == ["Add -> 'h2'"]
    assert {n.outputs[0].name for n in model.graph} == {"s", "h", "a1", "r1", "f1", "h1", "y"}
    removed = pass_.layers[0]
    assert removed["contribution"] == 0.0 and "ranks 1 of 2" in removed["why"]
    for feed in feeds:
        assert fidelity.compare(runtime.run(before, feed), assert_valid(model, feed))["max_rel"] < 1e-6


def test_protected_block_is_kept_and_the_next_one_goes():
    model = two_blocks()
    pass_, _ = run(model, feeds_for(model, 2), blocks=1, protect="zero*|f2", holdout=0)
    assert pass_.stats["blocks protected"] == 1
    assert [row["layer"] for row in pass_.layers] == ["Add -> 'h1'"]


def test_resnet50_projection_shortcuts_are_not_blocks():
    blocks, rejected = find_blocks(builders.build("resnet50", image_size=64))
    assert len(blocks) == 12  # 16 bottlenecks, 4 of them with a downsample shortcut
    assert len(rejected) == 4
    assert all("projection shortcut" in reason for reason in rejected.values())


def test_mobilenetv2_macs_budget_removes_least_contributing_blocks():
    model = builders.build("mobilenetv2", image_size=64)
    feeds = feeds_for(model, 4)
    macs_before = cost.analyze(model).macs
    pass_, result = run(model, feeds, macs=0.1, calib=2, holdout=2)
    macs_after = cost.analyze(model).macs
    assert result.modified and pass_.stats["blocks found"] == 10  # inverted residuals with stride 1, same width
    assert 1 - macs_after / macs_before >= 0.1
    assert pass_.stats["macs after"] == macs_after
    removed = [float(f"{row['contribution']:.6g}") for row in pass_.layers]
    kept = [float(re.search(r"contribution (\S+)", reason).group(1)) for _, reason in pass_.skipped]
    assert kept and max(removed) <= min(kept)
    out = assert_valid(model, feeds[0])
    assert out["output"].shape == (1, 1000)
    assert 0 < pass_.fidelity["cosine"] < 1


def test_asking_for_more_blocks_than_exist_removes_all_and_says_so():
    model = two_blocks()
    pass_, _ = run(model, feeds_for(model, 2), blocks=5, holdout=0)
    assert pass_.stats["blocks removed"] == 2
    assert any("only 2 of the 5 blocks" in note for note in pass_.notes)


def test_pipeline_string_round_trips():
    from passes.pipeline import parse

    text = "prune-layers{blocks=2,criterion=output,protect=layer1.*|layer4.*}"
    assert str(parse(text)) == text
