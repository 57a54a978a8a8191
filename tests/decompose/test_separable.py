"""The separable pass (Network Decoupling), and both low-rank passes in pipelines through the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from ir import cost, fidelity, io, runtime
from ir.errors import UsageError
from passes.base import create
from passes.reconstruct import output_sqnr_db
from tests.decompose.helpers import chain_model, correlated_feeds, run_pass


@pytest.mark.parametrize("order", ["dw-pw", "pw-dw"])
def test_full_rank_is_exact_against_onnx_runtime(order):
    model, reference = chain_model(), chain_model()
    pass_, _ = run_pass("separable", model, rank=9, order=order, allow_more_macs=True, holdout=0)
    assert {row["layer"] for row in pass_.layers} == {"a", "b", "c"}  # every conv with a kernel larger than 1x1
    ops = [n.op_type for n in model.graph]
    assert ops.count("Conv") == 7  # each of the three became two convs: the R branches collapsed
    for feed in correlated_feeds(2, seed=4):
        assert fidelity.compare(runtime.run(reference, feed), runtime.run(model, feed))["max_rel"] < 1e-4
    onnx.checker.check_model(io.to_proto(model), full_check=True)


def test_the_collapsed_pair_is_a_depthwise_conv_with_multiplier_r_and_a_pointwise_conv():
    model = chain_model()
    run_pass("separable", model, rank=2, holdout=0)
    convs = {n.name: n for n in model.graph if n.op_type == "Conv"}
    depthwise, pointwise = convs["b/separable_0"], convs["b/separable_1"]
    assert depthwise.attributes.get_int("group") == 32
    assert depthwise.inputs[1].shape.dims == (64, 1, 3, 3)  # 32 channels x multiplier 2
    assert list(depthwise.attributes["strides"].value) == [2, 2]
    assert pointwise.inputs[1].shape.dims == (32, 64, 1, 1)


def test_macs_target_is_met_and_the_refit_lowers_the_error_below_full_rank():
    feeds, holdout = correlated_feeds(16, seed=2), correlated_feeds(4, seed=3)
    reference = chain_model()
    macs_before = cost.analyze(reference).macs
    sqnr = {}
    for refit in (False, True):
        model = chain_model()
        pass_, _ = run_pass("separable", model, feeds, macs=0.4, refit=refit, calib=16, holdout=0)
        assert 1 - cost.analyze(model).macs / macs_before >= 0.4
        assert all(row["macs_after"] < row["macs_before"] for row in pass_.layers)
        sqnr[refit] = output_sqnr_db(reference, model, holdout)
    assert sqnr[True] > sqnr[False], sqnr


def test_options_are_validated():
    with pytest.raises(UsageError, match="exactly one of macs, rank, energy"):
        create("separable", {})
    with pytest.raises(UsageError, match="order"):
        create("separable", {"rank": "2", "order": "sideways"})


@pytest.mark.parametrize("pipeline", ["fold,decompose{macs=0.3},quantize", "separable{macs=0.3},quantize"])
def test_low_rank_passes_compose_with_quantize_through_the_cli(tmp_path, pipeline):
    from passes.app.cli import main

    source = tmp_path / "chain.onnx"
    io.save(chain_model(), source)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.stack([f["x"] for f in correlated_feeds(20, seed=6)]))  # [samples, 1, 8, 16, 16]
    out = tmp_path / "out"
    assert main(["optimize", str(source), "--passes", pipeline, "--calib", str(calib), "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    records = {record["name"]: record for record in report["passes"]}
    low_rank = records["decompose" if "decompose" in pipeline else "separable"]
    assert low_rank["modified"] and not low_rank["failure"]
    assert low_rank["stats"]["macs after"] <= 0.7 * low_rank["stats"]["macs before"]
    assert records["quantize"]["modified"]
    optimized = onnx.load(out / "chain.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in optimized.graph.node)
    assert any("/" in n.name and n.op_type == "Conv" for n in optimized.graph.node)  # a factorized layer
