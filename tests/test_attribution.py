"""Specification of passes.attribution: the output error of a lossy change, per pass and per layer."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
import pytest

from ir import io
from passes.attribution import AttributionInstrument, held_back_feeds, layer_errors
from passes.calibration import Calibration
from passes.manager import PassManager

THREE_CONVS = """<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4,8,8] x) => (float[1,4,8,8] y) <float[4,4,3,3] w1 = {0.0}, float[4,4,3,3] w2 = {0.0}, float[4,4,3,3] w3 = {0.0}> {
    a = Conv <pads = [1,1,1,1]> (x, w1)
    ra = Relu (a)
    b = Conv <pads = [1,1,1,1]> (ra, w2)
    rb = Relu (b)
    y = Conv <pads = [1,1,1,1]> (rb, w3)
}"""


def three_convs() -> ir.Model:
    model = ir.from_onnx_text(THREE_CONVS)
    rng = np.random.default_rng(0)
    for node in model.graph:
        node.name = node.outputs[0].name
    for name in ("w1", "w2", "w3"):
        model.graph.initializers[name].const_value = ir.tensor(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3, name=name)
    return model


def perturbed(model: ir.Model, weight: str, scale: float) -> ir.Model:
    copy = io.copy_model(model)
    array = copy.graph.initializers[weight].const_value.numpy()
    noise = np.random.default_rng(1).standard_normal(array.shape).astype(np.float32) * scale * np.abs(array).mean()
    copy.graph.initializers[weight].const_value = ir.tensor(array + noise, name=weight)
    return copy


def feeds(n: int = 3) -> list[dict]:
    rng = np.random.default_rng(2)
    return [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(n)]


def test_the_one_changed_layer_is_ranked_first_and_the_layers_before_it_introduce_nothing():
    model = three_convs()
    rows = layer_errors(model, perturbed(model, "w2", 0.2), feeds())
    # Only the rewritten layer has a row: the others carry the error on, they introduce none.
    assert [row["layer"] for row in rows] == ["b"]
    assert rows[0]["share"] == 1.0 and math.isinf(rows[0]["input_sqnr_db"])
    assert 10 < rows[0]["introduced_sqnr_db"] < 30
    assert rows[0]["introduced_sqnr_db"] == pytest.approx(rows[0]["sqnr_db"])  # the first error: all its own


def test_two_changed_layers_share_the_noise_and_the_larger_change_ranks_first():
    model = three_convs()
    after = perturbed(perturbed(model, "w1", 0.05), "w3", 0.4)
    rows = layer_errors(model, after, feeds())
    assert [r["layer"] for r in rows[:2]] == ["y", "a"]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_the_instrument_measures_a_lossy_pass_own_and_cumulative_error():
    import dataclasses

    from passes.base import Pass, PassResult, register

    @register
    class NoisyWeights(Pass):
        """test-noisy-weights: adds noise to the weight named by `weight`."""

        name = "test-noisy-weights"
        lossless = False

        @dataclasses.dataclass(frozen=True)
        class Options:
            weight: str = "w2"

        def call(self, model):
            noisy = perturbed(model, self.options.weight, 0.2)
            model.graph.initializers[self.options.weight].const_value = noisy.graph.initializers[self.options.weight].const_value
            return PassResult(model, modified=True)

    model = three_convs()
    instrument = AttributionInstrument(feeds())
    result = PassManager("test-noisy-weights{weight=w2},fold,test-noisy-weights{weight=w1}", instruments=[instrument], feeds=feeds()).run(model)
    lossy = [r for r in result.records if r.name == "test-noisy-weights"]
    first, second = lossy[0].attribution, lossy[1].attribution
    assert first["own"]["sqnr_db"] == pytest.approx(first["cumulative"]["sqnr_db"])
    assert second["cumulative"]["sqnr_db"] < min(first["own"]["sqnr_db"], second["own"]["sqnr_db"])
    assert first["layers"][0]["layer"] == "b" and second["layers"][0]["layer"] == "a"
    assert all(r.attribution is None for r in result.records if r.name != "test-noisy-weights")


def test_held_back_feeds_are_the_last_ones_and_say_whether_calibration_saw_them():
    def arrays(n):
        return Calibration.from_iterable([{"x": np.full((1,), i, np.float32)} for i in range(n)], source=f"{n} arrays")

    held, text = held_back_feeds(arrays(40), 4)
    assert [int(f["x"][0]) for f in held] == [36, 37, 38, 39] and text == "the last 4 of 40 samples of 40 arrays (held back from calibration)"
    held, text = held_back_feeds(arrays(10), 4)
    assert [int(f["x"][0]) for f in held] == [6, 7, 8, 9] and "also used for calibration" in text
    held, text = held_back_feeds(arrays(3), 4)
    assert len(held) == 3 and text == "3 arrays"


def test_a_pruned_layer_counts_its_removed_channels_as_error_and_its_refitted_consumer_wins_some_back():
    from tests.prune.test_prune import chain_model, correlated_feeds, run_prune

    before = chain_model()
    after = io.copy_model(before)
    run_prune(after, correlated_feeds(24, 1), ratio=0.5, round=1, importance="l1")
    rows = layer_errors(before, after, correlated_feeds(4, 7))
    by_layer = {row["layer"]: row for row in rows}
    assert [row["layer"] for row in rows] == ["a", "b", "y"]  # a lost the most of its output first
    assert by_layer["a"]["change"] == "weight [8, 4, 3, 3] -> [4, 4, 3, 3]" and math.isinf(by_layer["a"]["input_sqnr_db"])
    assert by_layer["a"]["sqnr_db"] < 10  # half its channels are gone
    # The last Conv was refitted by least squares: its output is closer to the original than its input.
    assert by_layer["y"]["sqnr_db"] > by_layer["y"]["input_sqnr_db"] and by_layer["y"]["introduced"] == 0.0


def test_channels_that_remain_are_matched_to_the_original_ones():
    from passes.attribution import match_channels

    rng = np.random.default_rng(0)
    reference = rng.standard_normal((2, 6, 5, 5))
    kept = [4, 0, 3]
    pruned = reference[:, kept] + 0.01 * rng.standard_normal((2, 3, 5, 5))
    assert match_channels(reference, pruned).tolist() == kept
    assert match_channels(reference, rng.standard_normal((2, 3, 5, 5))) is None  # nothing alike
    assert match_channels(reference, reference[:, :, :4]) is None  # not a channel change


def test_the_report_joins_the_pass_rows_by_layer_and_keeps_layers_it_could_not_match():
    from passes.app.attribution_report import markdown, summary
    from passes.manager import PassRecord

    own = {"sqnr_db": 20.0, "cosine": 0.99, "max_abs": 0.1, "max_rel": 0.1, "feeds": 4}
    record = PassRecord("decompose", "decompose{rank=8}", 0, 0.1, True)
    record.layers = [{"layer": "conv1", "op": "Conv", "action": "svd rank 8", "sqnr_db": 25.0},
                     {"layer": "conv9", "op": "Conv", "action": "svd rank 4", "sqnr_db": 12.0}]
    record.attribution = {"own": own, "cumulative": own, "layers": [
        {"layer": "conv1", "op": "Conv", "change": "weight [8, 4, 3, 3] -> [8, 4, 1, 3]", "sqnr_db": 24.0, "input_sqnr_db": math.inf,
         "introduced": 10 ** -2.4, "introduced_sqnr_db": 24.0, "share": 1.0}]}
    data = summary([record], own, "4 held-back feeds", random_inputs=False)
    rows = data["passes"][0]["layers"]
    assert [r["layer"] for r in rows] == ["conv9", "conv1"]  # 12 dB introduced is worse than 24 dB
    assert rows[1]["action"] == "svd rank 8" and rows[1]["pass_sqnr_db"] == 25.0 and rows[1]["sqnr_db"] == 24.0
    assert rows[0]["share"] is None and "measured by the pass" in rows[0]["note"]
    text = "\n".join(markdown({"error_attribution": data}))
    assert "| `conv9` | Conv | svd rank 4 | 12.0 dB | - | 12.0 dB |" in text
