"""prune states its intent: the original with the removed channels' consumer weights zeroed (and the
refitted weights substituted); the pass manager checks the pruned model against it and rolls back a
pass whose index mapping is wrong (a planted concat-offset bug)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import ir.channel_groups as channel_groups_package
import ir.channel_groups.model as channel_groups_model
import passes.prune.apply as prune_apply
from ir import runtime
from ir.channel_groups import Layout, Segment
from passes.calibration import Calibration
from passes.manager import PassContext, PassManager
from passes.prune.intent import channel_mask

CONCAT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,3,10,10] x) => (float[1,5,10,10] y) {
    a = Conv <pads = [1,1,1,1]> (x, wa, ba)
    ra = Relu(a)
    b = Conv <pads = [1,1,1,1]> (x, wb, bb)
    rb = Relu(b)
    c = Concat <axis = 1> (ra, rb)
    y = Conv (c, wc, bc)
}
"""


def concat_model(seed=0) -> ir.Model:
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(CONCAT)
    arrays = {"wa": rng.standard_normal((8, 3, 3, 3)), "ba": rng.standard_normal(8) * 0.1,
              "wb": rng.standard_normal((16, 3, 3, 3)), "bb": rng.standard_normal(16) * 0.1,
              "wc": rng.standard_normal((5, 24, 1, 1)), "bc": rng.standard_normal(5) * 0.1}
    for name, array in arrays.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return ir.serde.deserialize_model(proto)


def offsetless_kept_indices(layout, keep, root):
    """The planted bug: concatenated segments mapped without their offset (``ids``, not ``base + ids``)."""
    parts = []
    for segment in layout.segments:
        kept = keep.get(root(segment.space))
        parts.append(np.arange(segment.length) if kept is None else kept)
    channels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if layout.block == 1:
        return channels
    return (channels[:, None] * layout.block + np.arange(layout.block)[None, :]).reshape(-1)


@pytest.fixture
def planted_concat_bug(monkeypatch):
    for module in (channel_groups_model, channel_groups_package, prune_apply):
        monkeypatch.setattr(module, "kept_indices", offsetless_kept_indices)


def run(model, pipeline, strict=False):
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    calibration = Calibration.from_iterable([runtime.generate_inputs(model, seed=10 + s) for s in range(12)])
    return PassManager(pipeline, feeds=feeds, context=PassContext(calibration=calibration), strict=strict).run(model)


def test_channel_mask_marks_kept_channels_segment_by_segment():
    layout = Layout(1, (Segment(0, 4), Segment(1, 3)), block=2)
    mask = channel_mask(layout, {0: np.array([1, 3]), 1: np.array([0])}, root=lambda s: s)
    # segment 0 keeps channels 1 and 3, segment 1 (offset 4) keeps its channel 0; two elements each
    assert mask.tolist() == [False, False, True, True, False, False, True, True, True, True, False, False, False, False]


@pytest.mark.parametrize("reconstruct", ["false", "true"])
def test_pruned_concat_model_matches_its_intent(reconstruct):
    result = run(concat_model(), f"prune{{ratio=0.5,round=1,uniform=true,reconstruct={reconstruct}}}")
    (record,) = result.records
    assert record.modified and not record.rolled_back, record.failure
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-5
    assert result.final_error["max_rel"] > 1e-2  # lossy: the compression error is still reported


def test_planted_concat_offset_bug_is_rolled_back_and_named(planted_concat_bug):
    result = run(concat_model(), "prune{ratio=0.5,round=1,uniform=true,reconstruct=false}")
    (record,) = result.records
    assert record.rolled_back and record.intent is None
    assert "does not compute its intent" in record.failure
    assert "consumer weights zeroed" in record.failure


def det_crops(folder):
    """96 x 96 crops of a rendered page that hold text (on random noise the detector's output is ~0,
    which any model matches within the absolute tolerance)."""
    from models import ocr_data

    page = ocr_data.calibration_arrays("det", 1)[0]["x"]
    crops = [page[:, :, y : y + 96, x : x + 96] for y, x in ((0, 160), (160, 160), (320, 160), (320, 320))]
    np.savez(folder, x=np.concatenate(crops))
    return folder


@pytest.mark.real_models
def test_cli_names_prune_when_the_concat_offset_is_planted_in_ppocr_det(tmp_path, capsys, monkeypatch):
    pytest.importorskip("rapidocr_onnxruntime")
    from models import zoo
    from passes.app.cli import main

    calib = det_crops(tmp_path / "crops.npz")
    # uniform, round=1: every group loses 10%, including the four 24-channel segments the neck concatenates
    args = ["optimize", str(zoo.model_path("ppocr-det")), "--input-shape", "x:1,3,96,96", "--calib", str(calib),
            "--passes", "prune{ratio=0.1,uniform=true,round=1,reconstruct=false}"]
    assert main([*args, "-o", str(tmp_path / "good")]) == 0
    (good,) = [r for r in json.loads((tmp_path / "good" / "report.json").read_text())["passes"] if r["name"] == "prune"]
    assert good["intent"] == "verified" and not good["rolled_back"]
    assert good["intent_error"]["max_rel"] < 1e-4
    assert "intent verified" in (tmp_path / "good" / "report.md").read_text()

    for module in (channel_groups_model, channel_groups_package, prune_apply):
        monkeypatch.setattr(module, "kept_indices", offsetless_kept_indices)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "rolled-back")]) == 0
    (bad,) = [r for r in json.loads((tmp_path / "rolled-back" / "report.json").read_text())["passes"] if r["name"] == "prune"]
    assert bad["rolled_back"] and "does not compute its intent" in bad["failure"]
    assert bad["intent_error"]["max_abs"] > 0.1  # detection probabilities off by far more than rounding
    assert main([*args, "--strict", "-o", str(tmp_path / "strict")]) == 1
    message = capsys.readouterr().err
    assert "prune" in message and "does not compute its intent" in message
