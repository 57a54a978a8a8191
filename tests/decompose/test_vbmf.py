"""Empirical VBMF: the data-free rank estimate, and ``decompose{vbmf=true}`` choosing ranks by it."""

from __future__ import annotations

import numpy as np
import pytest

from ir.errors import UsageError
from passes.base import create
from passes.decompose import vbmf
from passes.decompose.driver import NO_DATA
from tests.decompose.helpers import chain_model, run_pass
from tests.decompose.test_decompose import with_weights


def low_rank_plus_noise(rows: int, columns: int, rank: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, columns))
    return signal + noise * rng.standard_normal((rows, columns))


@pytest.mark.parametrize("rows, columns, rank, noise", [(64, 128, 5, 0.1), (128, 64, 12, 0.3), (32, 288, 8, 0.05), (200, 200, 20, 0.5)])
def test_vbmf_recovers_the_rank_of_a_low_rank_product_in_gaussian_noise(rows, columns, rank, noise):
    assert vbmf.evbmf_rank(low_rank_plus_noise(rows, columns, rank, noise, seed=rank)) == rank


def test_vbmf_keeps_one_component_of_pure_noise_and_every_row_of_a_single_row():
    assert vbmf.evbmf_rank(np.random.default_rng(0).standard_normal((64, 64))) == 1
    assert vbmf.evbmf_rank(np.ones((1, 9))) == 1


def test_decompose_vbmf_without_data_takes_the_planted_ranks_and_says_it_is_data_free():
    model = chain_model(cp_rank=4)  # a and b: 3x3 kernels of CP rank 4, so every unfolding has rank 4
    pass_, result = run_pass("decompose", model, vbmf=True, round=1, holdout=0)
    assert result.modified
    assert NO_DATA in pass_.notes and any("Empirical VBMF" in note for note in pass_.notes)
    estimates = pass_.report["vbmf_ranks"]
    assert estimates["a"]["svd"] == [4] and estimates["b"]["tucker"] == [4, 4]
    rows = {row["layer"]: row for row in pass_.layers}
    for name in ("a", "b"):
        assert rows[name]["ranks"] == estimates[name][rows[name]["method"]]  # round=1: the estimate itself
        assert rows[name]["predicted_sqnr_db"] > 60  # the planted rank is exact


def test_vbmf_ranks_are_rounded_up_to_the_grid():
    pass_, _ = run_pass("decompose", chain_model(cp_rank=4), vbmf=True, round=8, holdout=0)
    assert {row["layer"]: row["ranks"][0] for row in pass_.layers}["a"] == 8


def test_a_layer_whose_vbmf_rank_is_above_every_cheaper_rank_is_left_whole_with_the_estimate():
    # a 16 -> 16 3x3 conv of rank 12: svd is cheaper below rank 14.4, so with round=8 only rank 8 is
    # an option, and it is below the estimate
    weight = low_rank_plus_noise(16, 144, 12, 0.01, seed=1).reshape(16, 16, 3, 3)
    model = with_weights("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,16,8,8] x) => (float[1,16,8,8] y) {
            y = Conv <pads = [1,1,1,1]> (x, w)
        }""", {"w": weight})
    pass_, result = run_pass("decompose", model, vbmf=True, method="svd", round=8, holdout=0)
    assert not result.modified
    assert dict(pass_.skipped)["y"] == "left whole: no factorization at or above the VBMF rank (svd 12) costs fewer MACs"


def test_vbmf_is_a_target_of_its_own_and_not_for_cp():
    with pytest.raises(UsageError, match="exactly one of"):
        create("decompose", {"vbmf": "true", "macs": "0.3"})
    with pytest.raises(UsageError, match="not cp"):
        create("decompose", {"vbmf": "true", "method": "cp"})
