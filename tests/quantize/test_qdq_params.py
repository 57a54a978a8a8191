"""Quantization parameters against hand-computed numbers, and observers against numpy references
(``np.histogram``, ``np.percentile``)."""

from __future__ import annotations

import numpy as np
import pytest

from passes.quantize import qdq
from passes.quantize.observers import HistogramObserver


# -- activation_params ------------------------------------------------------------------------------
@pytest.mark.parametrize(("lo", "hi", "scale", "zero"), [
    (-1.0, 3.0, 4.0 / 255, 64),     # -lo / scale = 63.75 -> 64
    (0.5, 2.0, 2.0 / 255, 0),       # the range is widened to contain zero: [0, 2]
    (-2.0, -0.5, 2.0 / 255, 255),   # [-2, 0]: zero sits on the top level
    (-0.2, 51.0, 51.2 / 255, 1),    # 0.2 / (51.2 / 255) = 0.996 -> 1
])
def test_uint8_activation_scale_spans_255_steps(lo, hi, scale, zero):
    got_scale, got_zero = qdq.activation_params(lo, hi, "uint8", symmetric=False)
    assert got_zero.dtype == np.uint8 and int(got_zero) == zero
    assert got_scale == np.float32(scale)  # 255 steps between the ends, not 256


def test_int8_symmetric_uses_127_levels_each_side_and_zero_point_0():
    scale, zero = qdq.activation_params(-1.0, 3.0, "int8", symmetric=True)
    assert scale == np.float32(3.0 / 127) and zero.dtype == np.int8 and int(zero) == 0
    scale, _ = qdq.activation_params(-5.0, 2.0, "int8", symmetric=True)
    assert scale == np.float32(5.0 / 127)


def test_int8_asymmetric_zero_point_is_shifted_by_128():
    scale, zero = qdq.activation_params(-1.0, 3.0, "int8", symmetric=False)
    assert scale == np.float32(4.0 / 255)
    assert zero.dtype == np.int8 and int(zero) == -64  # round(-128 + 63.75) = round(-64.25)
    _, zero = qdq.activation_params(0.0, 1.0, "int8", symmetric=False)
    assert int(zero) == -128
    _, zero = qdq.activation_params(-1.0, 0.0, "int8", symmetric=False)
    assert int(zero) == 127


@pytest.mark.parametrize("dtype,symmetric", [("uint8", False), ("int8", True), ("int8", False)])
def test_an_all_zero_range_gets_scale_1(dtype, symmetric):
    scale, zero = qdq.activation_params(0.0, 0.0, dtype, symmetric)
    assert scale == np.float32(1.0) and int(zero) == 0


def test_the_uint8_grid_ends_are_within_half_a_step_of_the_range_ends():
    for lo, hi in ((-1.0, 3.0), (-0.37, 8.1), (-6.0, 0.01)):
        scale, zero = qdq.activation_params(lo, hi, "uint8", symmetric=False)
        # level q means (q - zero) * scale: level 0 and level 255 are the range's ends, rounded
        assert abs((0 - int(zero)) * scale - min(lo, 0)) <= 0.5001 * scale
        assert abs((255 - int(zero)) * scale - max(hi, 0)) <= 0.5001 * scale


# -- symmetric_weight / dequantize --------------------------------------------------------------------
def test_per_channel_symmetric_weight_by_hand():
    w = np.array([[1.0, -2.0, 0.5], [0.5, 0.25, -0.125], [0.0, 0.0, 0.0]], np.float32)
    q, scale = qdq.symmetric_weight(w, axis=0)
    np.testing.assert_array_equal(scale, np.float32([2.0 / 127, 0.5 / 127, 1.0]))  # an all-zero row: scale 1
    # 1 / (2/127) = 63.5 -> 64 (round half to even), 0.5 / (2/127) = 31.75 -> 32
    np.testing.assert_array_equal(q, np.array([[64, -127, 32], [127, 64, -32], [0, 0, 0]], np.int8))
    assert q.dtype == np.int8 and scale.dtype == np.float32


def test_per_channel_weight_on_axis_1_and_per_tensor():
    w = np.array([[4.0, -1.0], [-8.0, 0.5]], np.float32)
    q, scale = qdq.symmetric_weight(w, axis=1)
    np.testing.assert_array_equal(scale, np.float32([8.0 / 127, 1.0 / 127]))
    np.testing.assert_array_equal(q, [[64, -127], [-127, 64]])  # 4 / (8/127) = 63.5 -> 64
    q, scale = qdq.symmetric_weight(w, axis=None)
    assert scale.shape == () and scale == np.float32(8.0 / 127)
    np.testing.assert_array_equal(q, [[64, -16], [-127, 8]])  # -1 / (8/127) = -15.875, 0.5 -> 7.94


def test_fewer_bits_and_a_minimum_scale():
    w = np.array([[0.7, -0.36, 0.03]], np.float32)
    q, scale = qdq.symmetric_weight(w, axis=0, bits=4)
    assert scale == np.float32(0.1)  # 0.7 / 7 levels
    np.testing.assert_array_equal(q, [[7, -4, 0]])  # -3.6 -> -4, 0.3 -> 0
    q, scale = qdq.symmetric_weight(w, axis=0, minimum_scale=0.01)
    assert scale == np.float32(0.01)
    np.testing.assert_array_equal(q, [[70, -36, 3]])


def test_dequantize_multiplies_levels_by_their_channel_scale():
    q = np.array([[1, -2], [3, 4]], np.int8)
    np.testing.assert_array_equal(qdq.dequantize(q, np.float32([0.5, 2.0]), axis=0), [[0.5, -1.0], [6.0, 8.0]])
    np.testing.assert_array_equal(qdq.dequantize(q, np.float32([0.5, 2.0]), axis=1), [[0.5, -4.0], [1.5, 8.0]])
    np.testing.assert_array_equal(qdq.dequantize(q, np.float32(0.25), axis=None), [[0.25, -0.5], [0.75, 1.0]])


# -- quantized_bias -----------------------------------------------------------------------------------
def test_bias_scale_is_input_scale_times_weight_scale():
    levels, scale, clipped = qdq.quantized_bias(np.float32([1.0, -0.5, 0.0123]), 0.1, np.float32([0.02, 0.05, 0.001]))
    np.testing.assert_allclose(scale, np.float32([0.002, 0.005, 0.0001]), rtol=1e-6)
    np.testing.assert_array_equal(levels, [500, -100, 123])
    assert levels.dtype == np.int32 and scale.dtype == np.float32 and clipped == 0


def test_bias_with_a_per_tensor_weight_scale_and_clipping_to_int32():
    levels, scale, clipped = qdq.quantized_bias(np.float32([3e6, -3e6, 1.0]), 1e-3, np.float32(1e-3))
    assert scale.shape == () and np.isclose(scale, 1e-6, rtol=1e-6)
    assert clipped == 2
    assert levels.tolist() == [np.iinfo(np.int32).max, np.iinfo(np.int32).min, 1000000]


def test_bias_exactly_at_the_int32_limit_is_not_clipped():
    limit = float(np.iinfo(np.int32).max)
    levels, _, clipped = qdq.quantized_bias(np.array([limit, -limit - 1]), 1.0, np.float32(1.0))
    assert clipped == 0 and levels.tolist() == [np.iinfo(np.int32).max, np.iinfo(np.int32).min]


# -- observers against numpy ----------------------------------------------------------------------------
def batches(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(4001) * 2 + 0.5, rng.standard_normal(3000) * 6 - 1, rng.laplace(size=5000)]


def test_histogram_matches_np_histogram_on_its_own_edges_after_merges():
    observer = HistogramObserver(bins=128)
    data = batches()
    for batch in data:
        observer.update(batch)
    everything = np.concatenate(data)
    assert observer.width > 0 and observer.counts.sum() == everything.size
    reference, _ = np.histogram(everything, bins=observer.edges())
    # np.histogram closes the last bin on the right; the observer's bins are [k w, (k+1) w)
    assert np.abs(observer.counts - reference).sum() <= 1
    assert observer.edges()[0] <= everything.min() and observer.edges()[-1] >= everything.max()
    # zero is a bin edge
    assert np.any(np.isclose(observer.edges(), 0.0, atol=1e-12 * observer.width))


def test_minmax_range_is_the_exact_extremes_widened_to_zero():
    observer = HistogramObserver(bins=64)
    observer.update(np.array([0.5, 2.0, 3.25]))
    assert observer.observed_range("minmax") == (0.0, 3.25)
    observer.update(np.array([-1.5]))
    assert observer.observed_range("minmax") == (-1.5, 3.25)


@pytest.mark.parametrize("percentile", [99.0, 99.9, 99.99])
def test_percentile_range_is_the_histogram_bin_holding_np_percentile(percentile):
    """The range ends are the outer edges of the bins holding the inverted-CDF quantiles (12001
    samples: no quantile falls exactly on a sample count)."""
    observer = HistogramObserver(bins=2048)
    data = batches(1)
    for batch in data:
        observer.update(batch)
    everything = np.concatenate(data)
    lo, hi = observer.observed_range("percentile", percentile=percentile)
    want_lo, want_hi = np.percentile(everything, [100 - percentile, percentile], method="inverted_cdf")
    assert lo <= want_lo < lo + observer.width
    assert hi - observer.width < want_hi <= hi


def test_entropy_and_mse_ranges_clip_outliers_but_keep_the_bulk():
    rng = np.random.default_rng(3)
    bulk = rng.standard_normal(200_000)
    observer = HistogramObserver()
    observer.update(np.concatenate([bulk, [40.0, -40.0]]))  # two outliers far outside the bulk
    for method in ("entropy", "mse"):
        lo, hi = observer.observed_range(method)
        assert -40.0 < lo < -2.0 and 2.0 < hi < 40.0, method
        inside = np.mean((bulk >= lo) & (bulk <= hi))
        assert inside >= 0.999, method


def test_an_empty_observer_and_non_finite_values():
    observer = HistogramObserver(bins=16)
    assert observer.observed_range("percentile") == (0.0, 0.0)
    observer.update(np.array([np.nan, np.inf, -np.inf]))
    assert observer.seen == 0 and observer.observed_range() == (0.0, 0.0)
    observer.update(np.array([1.0, np.nan, 2.0]))
    assert observer.seen == 2 and observer.observed_range() == (0.0, 2.0)
    with pytest.raises(ValueError):
        HistogramObserver(bins=15)


# -- rounding against the scale the model stores (float32) -----------------------------------------------
def test_weight_levels_round_against_the_stored_float32_scale():
    # a peak whose scale peak / 127 rounds up to float32: half a stored step is then exactly 0.5 stored
    # steps but just above 0.5 unrounded steps, so the two conventions round it differently
    peaks = (np.float32(p) for p in np.linspace(0.3, 3.0, 200))
    peak = next(p for p in peaks if np.float64(np.float32(np.float64(p) / 127)) > np.float64(p) / 127)
    scale32 = np.float32(np.float64(peak) / 127)
    half_step = np.float32(np.float64(scale32) * 0.5)
    q, scale = qdq.symmetric_weight(np.array([[peak, half_step]], np.float32), axis=0)
    assert scale[0] == scale32
    assert q[0, 1] == 0  # 0.5 rounds half to even; against the unrounded scale it would be 0.5000001 -> 1


def test_bias_levels_round_against_the_stored_float32_bias_scale():
    candidates = (np.float32(w / 997) for w in range(1, 400))
    weight_scale = next(w for w in candidates if np.float64(np.float32(0.1 * np.float64(w))) > 0.1 * np.float64(w))
    scale32 = np.float32(0.1 * np.float64(weight_scale))
    bias = np.array([2.5 * np.float64(scale32)])  # exactly 2.5 stored steps
    levels, scale, _ = qdq.quantized_bias(bias, 0.1, np.array([weight_scale]))
    assert scale[0] == scale32 and levels[0] == 2  # 2.5 -> 2 (half to even); against the unrounded scale 2.5000001 -> 3


def test_dequantized_values_are_float32():
    assert qdq.dequantize(np.array([1, -2], np.int8), np.float32([0.5, 2.0]), axis=0).dtype == np.float32


def test_first_batch_sets_a_quarter_of_the_bins_over_its_span_from_zero():
    observer = HistogramObserver(bins=18)  # 18 // 4 = 4 bins (not 4.5) over [0, 2]
    observer.update(np.array([[0.5, 2.0], [1.0, 1.5]]))  # any shape; all positive: the span starts at zero
    assert observer.width == 2.0 / 4 and observer.first == 0 and observer.seen == 4
    np.testing.assert_allclose(observer.centers(), (observer.edges()[:-1] + observer.edges()[1:]) / 2)


def test_far_apart_batches_merge_bins_and_lose_no_value():
    observer = HistogramObserver(bins=32)
    batches_ = [np.linspace(0.0, 1.0, 50), np.linspace(1000.0, 1001.0, 70), np.linspace(-3.0, -2.0, 30)]
    for batch in batches_:
        observer.update(batch)
    everything = np.concatenate(batches_)
    assert observer.seen == everything.size and observer.counts.sum() == everything.size
    reference, _ = np.histogram(everything, bins=observer.edges())
    assert np.abs(observer.counts - reference).sum() <= 1


def test_negative_data_ranges_end_at_zero_and_unknown_methods_are_refused():
    observer = HistogramObserver(bins=64)
    observer.update(-np.linspace(0.5, 4.0, 100))
    for method in ("minmax", "percentile", "entropy", "mse"):
        lo, hi = observer.observed_range(method)
        assert hi == 0.0 and -4.0 <= lo < 0.0, method
    with pytest.raises(ValueError, match="unknown calibration method 'median'"):
        observer.observed_range("median")
