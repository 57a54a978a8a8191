"""``decompose{timing=true}``: a layer whose factorized chain measures slower than itself stays whole.

No assertion depends on measured times: the decision is checked on given times, the timed models on
their outputs."""

from __future__ import annotations

import numpy as np

from ir import cost, runtime
from passes.decompose import candidates, timing
from passes.decompose.layers import describe
from tests.decompose.helpers import chain_model, run_pass
from tests.decompose.test_decompose import max_rel_error


def full_rank_picks(method: str = "tucker"):
    """(layer, full-rank option) for the 3x3 layers of the chain: exact, and more MACs than the layer."""
    model = chain_model()
    cost.analyze(model)
    picks = []
    for node in model.graph:
        layer = describe(node) if node.op_type == "Conv" else None
        if layer is not None and not isinstance(layer, str) and candidates.applicable(layer, method) is None and min(layer.kernel) > 1:
            options = candidates.options(layer, method, None, multiple=1, limit=64, allow_more_macs=True)
            picks.append((layer, max(options, key=lambda o: o.macs)))
    return picks


def test_a_chain_measured_slower_is_left_whole_with_both_times_and_a_faster_one_is_kept():
    (first, first_option), (second, second_option) = full_rank_picks()
    times = {first.name: (0.5, 1.25), second.name: (2.0, 1.0)}  # (layer ms, chain ms)
    kept, slower = timing.faster_only([(first, first_option), (second, second_option)], lambda layer, option: times[layer.name])
    assert kept == [(second, second_option)]
    assert slower == [(first.name, "factorized form measured slower (1.25 ms vs 0.5 ms)")]


def test_the_timed_models_are_the_layer_alone_and_its_chain_alone():
    for layer, option in full_rank_picks():
        whole, chain = timing.layer_models(layer, option)
        assert [n.op_type for n in chain.graph] == ["Conv"] * 3  # tucker: 1x1, kernel, 1x1
        feed = runtime.generate_inputs(whole, seed=3)
        expected, actual = runtime.run(whole, feed)["y"], runtime.run(chain, feed)["y"]
        assert np.max(np.abs(actual - expected)) <= 1e-4 * np.max(np.abs(expected))


def test_with_timing_every_chosen_layer_is_either_rewritten_or_left_whole_as_measured_slower():
    model, reference = chain_model(), chain_model()
    pass_, _ = run_pass("decompose", model, energy=0.999999, method="tucker", round=1, allow_more_macs=True, holdout=0, timing=True)
    rewritten = {row["layer"] for row in pass_.layers}
    slower = {layer for layer, reason in pass_.skipped if reason.startswith("factorized form measured slower (")}
    assert rewritten | slower == {"a", "b", "c"} and not rewritten & slower
    assert pass_.stats["layers left whole: chain measured slower"] == len(slower)
    assert max_rel_error(reference, model, [runtime.generate_inputs(reference, seed=1)]) < 1e-4  # full rank: exact either way


def test_timing_is_off_by_default():
    pass_, _ = run_pass("decompose", chain_model(), energy=0.999999, method="tucker", round=1, allow_more_macs=True, holdout=0)
    assert not any("measured slower" in reason for _, reason in pass_.skipped)
