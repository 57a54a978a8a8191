"""The decompose pass: exactness at full rank, budgets, rounding, refusals, data-aware fitting."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

from ir import cost, fidelity, io, runtime
from ir.errors import UsageError
from passes.base import create
from passes.decompose import budget
from passes.decompose.candidates import Option
from passes.decompose.layers import Layer
from tests.decompose.helpers import chain_model, correlated_feeds, run_pass


def max_rel_error(reference, model, feeds) -> float:
    return max(fidelity.compare(runtime.run(reference, f), runtime.run(model, f))["max_rel"] for f in feeds)


@pytest.mark.parametrize("method", ["svd", "spatial-svd", "tucker"])
def test_every_method_is_exact_at_full_rank(method):
    model, reference = chain_model(), chain_model()
    feeds = correlated_feeds(2, seed=5)
    pass_, result = run_pass("decompose", model, energy=0.999999, method=method, round=1, allow_more_macs=True, holdout=0)
    assert result.modified
    assert {row["method"] for row in pass_.layers} == {method}
    assert max_rel_error(reference, model, feeds) < 1e-4
    onnx.checker.check_model(io.to_proto(model), full_check=True)


def test_cp_recovers_a_kernel_of_low_cp_rank_exactly():
    model, reference = chain_model(cp_rank=8), chain_model(cp_rank=8)
    pass_, _ = run_pass("decompose", model, energy=0.9999, method="cp", candidates=4, holdout=0)
    factorized = {row["layer"]: row["ranks"] for row in pass_.layers}
    assert factorized["a"] == [8] and factorized["b"] == [8]  # the planted rank, the cheapest exact one
    assert max_rel_error(reference, model, correlated_feeds(2, seed=5)) < 1e-3


def test_gemm_and_matmul_are_factorized_by_svd_exactly_at_full_rank():
    rng = np.random.default_rng(0)
    model = with_weights("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[4,24] x) => (float[4,12] y) {
            h = Gemm <alpha = 0.5, beta = 2.0> (x, w1, b1)
            r = Relu(h)
            y = MatMul(r, w2)
        }""", {"w1": rng.standard_normal((24, 20)), "b1": rng.standard_normal(20), "w2": rng.standard_normal((20, 12))})
    reference = io.copy_model(model)
    pass_, _ = run_pass("decompose", model, energy=0.999999, round=1, allow_more_macs=True, holdout=0)
    assert [row["op"] for row in pass_.layers] == ["Gemm", "MatMul"]
    feeds = [{"x": rng.standard_normal((4, 24)).astype(np.float32)} for _ in range(2)]
    assert max_rel_error(reference, model, feeds) < 1e-4


def with_weights(text: str, arrays: dict):
    import onnx_ir as ir

    proto = onnx.parser.parse_model(text)
    for name, array in arrays.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(array, np.float32), name))
    return ir.serde.deserialize_model(proto)


def test_macs_target_is_met_never_with_more_macs_per_layer_and_ranks_are_rounded():
    model = chain_model()
    macs_before = cost.analyze(model).macs
    feeds = correlated_feeds(12, seed=1)
    pass_, result = run_pass("decompose", model, feeds, macs=0.3, calib=8, holdout=4)
    macs_after = cost.analyze(model).macs
    assert result.modified
    assert 1 - macs_after / macs_before >= 0.3
    assert pass_.report["macs_after"] == macs_after  # the per-layer cost formulas agree with ir.cost
    for row in pass_.layers:
        assert row["macs_after"] < row["macs_before"]
        assert all(r % 8 == 0 for r in row["ranks"])
        assert np.isfinite(row["sqnr_db"])
    assert set(pass_.fidelity) >= {"sqnr_db", "cosine"}
    onnx.checker.check_model(io.to_proto(model), full_check=True)


def test_data_aware_choice_and_refit_beat_the_data_free_choice():
    feeds = correlated_feeds(16, seed=2)
    holdout = correlated_feeds(4, seed=3)
    reference = chain_model()
    sqnr = {}
    for label, data in (("data-free", None), ("data-aware", feeds)):
        model = chain_model()
        pass_, _ = run_pass("decompose", model, data, macs=0.5, calib=16, holdout=0)
        from passes.reconstruct import output_sqnr_db

        sqnr[label] = output_sqnr_db(reference, model, holdout)
        if data is None:
            assert any("no calibration data" in note for note in pass_.notes)
    assert sqnr["data-aware"] > sqnr["data-free"] + 3.0, sqnr


def test_layers_that_cannot_be_factorized_are_skipped_with_their_reason():
    rng = np.random.default_rng(0)
    model = with_weights("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,16,8,8] x, float[16,16,3,3] wx) => (float[1,16,8,8] y) {
            d = Conv <group = 16, pads = [1,1,1,1]> (x, wd)
            g2 = Conv <group = 4, pads = [1,1,1,1]> (d, wg)
            v = Conv <pads = [1,1,1,1]> (g2, wx)
            y = Conv (v, w1)
        }""", {name: rng.standard_normal(shape) for name, shape in {"wd": (16, 1, 3, 3), "wg": (16, 4, 3, 3), "w1": (16, 16, 1, 1)}.items()})
    pass_, _ = run_pass("decompose", model, macs=0.2, holdout=0)
    reasons = dict(pass_.skipped)
    assert "depthwise" in reasons["d"]
    assert "grouped convolution (group=4)" in reasons["g2"]
    assert "not a constant" in reasons["v"]
    assert "costs fewer MACs" in reasons["y"]  # 16 -> r -> 16 through 1x1 pays only below rank 8
    assert not pass_.layers


def test_spatial_svd_refuses_a_kernel_with_a_side_of_one():
    model = chain_model()
    pass_, _ = run_pass("decompose", model, energy=0.9, method="spatial-svd", holdout=0)
    reasons = dict(pass_.skipped)
    assert "kernel of at least 2 in both axes" in reasons["c"]
    assert "larger than 1x1" in reasons["y"]


def test_cp_leaves_a_1xk_kernel_to_the_other_methods():
    pass_, _ = run_pass("decompose", chain_model(), energy=0.9, method="cp", holdout=0)
    assert "cp needs a kernel of at least 2 in both axes" in dict(pass_.skipped)["c"]


def test_options_are_validated():
    with pytest.raises(UsageError, match="exactly one of macs, params, ratio, energy"):
        create("decompose", {})
    with pytest.raises(UsageError, match="method"):
        create("decompose", {"macs": "0.3", "method": "qr"})
    from passes.pipeline import parse

    text = "decompose{macs=0.3,method=tucker,round=16}"
    assert str(parse(text)) == text


def test_the_budget_choice_is_the_least_total_error_meeting_the_target():
    """The knapsack against brute force on random curves (5 layers, 4 options each)."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        per_layer = []
        for i in range(5):
            layer = Layer(node=None, kind="gemm", weight=np.zeros((10, 100)), bias=None, rows=1)
            macs = sorted(rng.integers(50, 999, 4))
            errors = sorted(rng.random(4), reverse=True)  # cheaper: larger error
            per_layer.append([Option(layer, "svd", (m,), int(m), 0, float(e), list) for m, e in zip(macs, errors)])
        needed = 0.4 * sum(o[0].layer.macs for o in per_layer)
        chosen, reached = budget.choose_for_target(per_layer, "macs", needed)
        assert reached
        best = min(sum(o.error for o in combo if o is not None)
                   for combo in itertools.product(*[[None, *opts] for opts in per_layer])
                   if sum(budget.saving(o, "macs") for o in combo if o is not None) >= needed)
        total = sum(o.error for o in chosen if o is not None)
        assert sum(budget.saving(o, "macs") for o in chosen if o is not None) >= needed
        assert total <= best + 0.02  # exact up to the rounding of savings into bins


def test_whitened_svd_of_a_layer_with_more_outputs_than_inputs_matches_its_output_error_at_every_rank():
    from passes.decompose.factorize import WhitenedSVD, relative_error

    rng = np.random.default_rng(4)
    weight = rng.standard_normal((300, 40))  # like a classifier: many outputs, few inputs
    rows = (rng.standard_normal((256, 40)) @ rng.standard_normal((40, 40))).astype(np.float32)
    svd = WhitenedSVD(weight, rows)
    for rank in (1, 8, 25, 40):
        assert relative_error(weight, svd.at(rank).approximation, rows) == pytest.approx(svd.errors()[rank], abs=1e-6)
    assert svd.errors()[40] == 0.0 and relative_error(weight, svd.at(40).approximation) < 1e-20  # full rank: exact
