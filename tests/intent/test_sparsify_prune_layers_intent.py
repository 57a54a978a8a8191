"""sparsify and prune-layers state their intent: the original with the weights below the magnitude
threshold zeroed (the mask recomputed from the rule), and the original in which each removed block's
Add adds zero; the pass manager checks the produced model against it and rolls back a planted bug."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import passes.prune.prune_layers as prune_layers
import passes.prune.sparsify as sparsify
from ir import runtime
from passes.calibration import Calibration
from passes.manager import PassContext, PassManager
from passes.prune.sparsify import intended_mask

RESIDUAL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4,8,8] x) => (float[1,8,8,8] y) {
    s = Conv <pads = [1,1,1,1]> (x, w0, b0)
    h = Relu(s)
    a1 = Conv <pads = [1,1,1,1]> (h, w1, b1)
    r1 = Relu(a1)
    f1 = Conv <pads = [1,1,1,1]> (r1, w2, b2)
    h1 = Add(h, f1)
    a2 = Conv <pads = [1,1,1,1]> (h1, w3, b3)
    r2 = Relu(a2)
    f2 = Conv <pads = [1,1,1,1]> (r2, w4, b4)
    h2 = Add(f2, h1)
    y = Relu(h2)
}
"""


def residual_model(step: float | None = None) -> ir.Model:
    """``step``: weights rounded to multiples of it, so that many magnitudes tie."""
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model(RESIDUAL)
    arrays = {"w0": rng.standard_normal((8, 4, 3, 3)) * 0.3, "b0": rng.standard_normal(8) * 0.1}
    for i in range(1, 5):
        arrays[f"w{i}"], arrays[f"b{i}"] = rng.standard_normal((8, 8, 3, 3)) * 0.15, rng.standard_normal(8) * 0.1
    for name, array in arrays.items():
        if step is not None and name.startswith("w"):
            array = np.round(array / step) * step
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return ir.serde.deserialize_model(proto)


def run(model, pipeline):
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    calibration = Calibration.from_iterable([runtime.generate_inputs(model, seed=10 + s) for s in range(8)])
    result = PassManager(pipeline, feeds=feeds, context=PassContext(calibration=calibration)).run(model)
    (record,) = result.records
    return record, result


def test_the_layer_mask_breaks_ties_in_storage_order():
    weight = np.array([[0.5, -0.1], [0.1, 0.3]])
    # two of four go: -0.1 and 0.1 tie, both below 0.3
    assert intended_mask(weight, 0.5).tolist() == [[True, False], [False, True]]
    # one of four goes: of the tied pair the first in storage order
    assert intended_mask(weight, 0.25).tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("pipeline", ["sparsify{sparsity=0.6,min_size=16}", "sparsify{sparsity=0.6,min_size=16,scope=global}"])
@pytest.mark.parametrize("step", [None, 0.05], ids=["distinct", "tied"])
def test_sparsified_model_computes_its_intent(pipeline, step):
    record, result = run(residual_model(step), pipeline)
    assert record.modified and not record.rolled_back, record.failure
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-5
    assert result.final_error["max_rel"] > 1e-2


def test_a_sparsified_weight_written_with_its_channels_reversed_is_rolled_back(monkeypatch):
    original = sparsify._set_input
    monkeypatch.setattr(sparsify, "_set_input", lambda node, index, array: original(node, index, np.ascontiguousarray(array[::-1])))
    record, _ = run(residual_model(), "sparsify{sparsity=0.6,min_size=16}")
    assert record.rolled_back and "does not compute its intent" in record.failure
    assert "magnitude threshold zeroed" in record.failure


@pytest.mark.parametrize("blocks", [1, 2])
def test_model_without_blocks_computes_its_intent(blocks):
    record, result = run(residual_model(), f"prune-layers{{blocks={blocks},calib=4,holdout=0}}")
    assert record.modified and not record.rolled_back, record.failure
    assert record.stats["blocks removed"] == blocks
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-5
    assert result.final_error["max_rel"] > 1e-2


def test_a_block_rewired_to_its_branch_instead_of_its_skip_is_rolled_back(monkeypatch):
    """A planted bug: the block finder swaps the skip and the branch output."""
    original = prune_layers.find_blocks

    def swapped(model):
        blocks, rejected = original(model)
        return [dataclasses.replace(b, skip=b.branch_output, branch_output=b.skip) for b in blocks], rejected

    monkeypatch.setattr(prune_layers, "find_blocks", swapped)
    record, _ = run(residual_model(), "prune-layers{blocks=1,calib=4,holdout=0}")
    assert record.rolled_back and "does not compute its intent" in record.failure
    assert "adding zero instead of its branch" in record.failure
