"""HistogramObserver against references written from its docstring: the window rules on hand-made
batches (exact bin counts from ``np.histogram``), and the ``entropy`` / ``mse`` searches against
brute-force searches that evaluate the documented objective at every candidate."""

from __future__ import annotations

import numpy as np
import pytest

from passes.quantize.observers import HistogramObserver


def observe(batches, bins=2048):
    observer = HistogramObserver(bins=bins)
    for batch in batches:
        observer.update(np.asarray(batch, dtype=np.float64))
    return observer


def assert_counts_are_np_histogram(observer, batches):
    """No test value lies on a bin edge, so the bins must agree exactly with np.histogram's."""
    everything = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1) for b in batches])
    reference, _ = np.histogram(everything, bins=observer.edges())
    assert observer.counts.dtype.kind == "i"  # exact integer counts, whatever merges and moves happened
    np.testing.assert_array_equal(observer.counts, reference)
    assert observer.seen == everything.size


# -- bins and window ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bins", [14, 15, 17])
def test_bins_must_be_even_and_at_least_16(bins):
    with pytest.raises(ValueError, match=r"^bins must be an even number >= 16$"):
        HistogramObserver(bins=bins)


def test_a_first_batch_of_both_signs_spans_from_its_minimum():
    observer = observe([[-1.25, 2.75]], bins=32)  # span 4 over 32 // 4 = 8 bins
    assert observer.width == 0.5 and observer.first == -3
    assert_counts_are_np_histogram(observer, [[-1.25, 2.75]])


def test_a_first_batch_below_one_keeps_its_own_span():
    observer = observe([[0.125, 0.5]], bins=16)  # span [0, 0.5] over 4 bins
    assert observer.width == 0.125 and observer.first == 0


def test_a_batch_filling_the_window_exactly_does_not_coarsen():
    batches = [[0.5, 4.0], [0.25, 15.5, 15.25]]  # width 1; the batch alone spans bins 0..15: 16 bins
    observer = observe(batches, bins=16)
    assert observer.width == 1.0 and observer.first == 0
    assert_counts_are_np_histogram(observer, batches)
    batches.append([16.5])  # bins 0..16: 17 > 16, one merge
    observer.update(np.array(batches[-1]))
    assert observer.width == 2.0 and observer.first == 0
    assert_counts_are_np_histogram(observer, batches)


def test_the_window_moves_up_by_the_fewest_bins():
    batches = [[2.5, 4.0], [16.5, 16.75, 16.5]]  # width 1, occupied bins 2..4, then bin 16: 15 bins in all
    observer = observe(batches, bins=16)
    assert observer.width == 1.0 and observer.first == 16 - 16 + 1  # bin 16 becomes the last one
    assert_counts_are_np_histogram(observer, batches)


def test_the_window_moves_up_onto_the_lowest_occupied_bin_when_the_union_fills_it():
    batches = [[1.5, 4.0], [16.5, 16.5, 16.25]]  # occupied bins 1..16: exactly 16
    observer = observe(batches, bins=16)
    assert observer.width == 1.0 and observer.first == 1
    assert_counts_are_np_histogram(observer, batches)


def test_the_window_moves_down_to_the_batch_lowest_bin():
    batches = [[0.5, 4.0], [-8.5, -8.25]]  # bins -9..4: 14 bins
    observer = observe(batches, bins=16)
    assert observer.width == 1.0 and observer.first == -9
    assert_counts_are_np_histogram(observer, batches)


def test_a_batch_inside_the_window_leaves_it_in_place():
    observer = observe([[0.5, 4.0]], bins=16)
    observer.update(np.array([0.25, 2.5]))
    assert observer.first == 0 and observer.width == 1.0


def test_a_batch_close_to_the_occupied_top_but_too_far_from_its_bottom_coarsens():
    # occupied bins 1..4; bin 18 is within 16 bins of bin 4 but not of bin 1: one merge (width 2)
    batches = [[1.5, 4.0], [18.5, 18.25, 18.75]]
    observer = observe(batches, bins=16)
    assert observer.width == 2.0
    assert_counts_are_np_histogram(observer, batches)


def test_coarsening_stops_at_the_narrowest_width_that_holds_every_value():
    rng = np.random.default_rng(5)
    batches = [rng.uniform(0.0, 1.0, 300), rng.uniform(37.0, 40.0, 200), rng.uniform(-9.0, -8.0, 100)]
    observer = observe(batches, bins=64)
    assert_counts_are_np_histogram(observer, batches)
    lo, hi = np.concatenate(batches).min(), np.concatenate(batches).max()
    half = observer.width / 2
    assert np.floor(hi / half) - np.floor(lo / half) + 1 > observer.bins


def test_after_a_batch_of_zeros_later_batches_still_get_fine_bins():
    batches = [np.zeros(10), np.linspace(0.01, 1.0, 100)]
    observer = observe(batches, bins=64)
    assert 1.0 / 64 <= observer.width < 2.0 / 64  # the narrowest power-of-two width holding [0, 1]
    assert_counts_are_np_histogram(observer, batches)


def test_low_precision_inputs_are_binned_like_their_float64_values():
    values = np.float16([0.001, 0.5, 3.0, 900.0, 1000.0])
    observer = HistogramObserver(bins=16)
    observer.update(np.float16([0.001, 0.004]))  # width 1e-3: 1000 / width overflows float16
    observer.update(values)
    assert_counts_are_np_histogram(observer, [np.float16([0.001, 0.004]).astype(np.float64), values.astype(np.float64)])


def test_float32_inputs_are_binned_at_float64_precision():
    """Values whose float32 quotient by the width rounds up onto the next bin edge stay in their bin."""
    observer = observe([[0.0, 0.4]], bins=16)  # width 0.1
    near_edges = [v for k in range(1, 16) for v in np.float32(k * 0.1) - np.arange(8) * np.float32(3e-8)
                  if np.floor(np.float64(v) / 0.1) != np.floor(np.float32(v) / np.float32(0.1))]
    assert near_edges  # the precondition: float32 division would move these values
    observer.update(np.array(near_edges, dtype=np.float32))
    float64_twin = observe([[0.0, 0.4], np.array(near_edges, dtype=np.float32).astype(np.float64)], bins=16)
    np.testing.assert_array_equal(observer.counts, float64_twin.counts)


def test_a_single_value_has_a_range():
    observer = observe([[3.0]], bins=16)
    assert observer.observed_range("minmax") == (0.0, 3.0)
    assert observer.observed_range("percentile", percentile=99.0)[1] > 0.0


def test_a_percentile_range_of_data_spanning_exactly_one_clips_the_rare_top():
    data = [np.concatenate([np.full(5000, 0.25), [1.0]])]  # range [0, 1]: not a degenerate range
    lo, hi = observe(data).observed_range("percentile", percentile=99.9)
    assert lo == 0.0 and hi < 0.5


# -- entropy: the KL search, evaluated stop by stop ---------------------------------------------------
def kl_divergence_reference(p, q):
    """KL(p || q) of two unnormalized histograms; an empty q bin where p has mass costs log(p / 1e-12)."""
    p = p / p.sum()
    total_q = q.sum()
    result = 0.0
    for p_i, q_i in zip(p, q):
        if p_i > 0:
            q_i = q_i / total_q if q_i > 0 else 1e-12
            result += p_i * np.log(p_i / q_i)
    return result


def entropy_candidates_reference(observer, levels):
    """{threshold: KL} of every candidate of the documented search (TensorRT's calibration)."""
    values = np.abs(observer.centers())[observer.counts > 0]
    weights = observer.counts[observer.counts > 0]
    top = max(abs(observer.min), abs(observer.max))
    edges = np.linspace(0.0, top, 2048 + 1)
    magnitude = np.zeros(2048)
    for value, weight in zip(np.minimum(values, top), weights):  # every value counts, the largest in the last bin
        magnitude[min(int(np.searchsorted(edges, value, side="right")) - 1, 2047)] += weight
    target = levels if observer.min >= 0.0 else levels // 2
    total = magnitude.sum()
    # the first stop clipping less than 0.01% of the values, then every 16th
    first = next(s for s in range(2049) if magnitude[s:].sum() / total < 1e-4)
    candidates = {}
    for stop in range(max(first, target), 2048 + 1, 16):
        p = magnitude[:stop].copy()
        p[-1] += magnitude[stop:].sum()
        q = np.zeros(stop)
        for j in range(target):
            chunk = slice(j * stop // target, (j + 1) * stop // target)
            held = magnitude[chunk] > 0
            if held.any():
                q[chunk] = np.where(held, magnitude[chunk].sum() / held.sum(), 0.0)
        candidates[float(edges[stop])] = kl_divergence_reference(p, q)
    return candidates


def signed_heavy_tail():
    rng = np.random.default_rng(11)
    return [rng.laplace(size=30_000) * 0.7, [9.0, -7.5, 12.0]]


def relu_with_zeros():
    rng = np.random.default_rng(12)
    return [np.maximum(rng.standard_normal(30_000) * 1.5, 0.0), [15.0]]


def sparse_levels():
    rng = np.random.default_rng(13)
    return [rng.geometric(0.15, 8000).astype(np.float64) * rng.choice([-0.3, 0.3], 8000)]


def shifted_positive():
    rng = np.random.default_rng(14)
    return [0.5 + rng.exponential(1.0, 20_000), [30.0]]


def small_signed():
    rng = np.random.default_rng(15)
    return [rng.standard_normal(20_000) * 0.1, [0.9, -0.2]]


def far_from_zero():
    rng = np.random.default_rng(18)
    return [5.0 + rng.exponential(0.3, 20_000), rng.uniform(8.0, 12.0, 30)]


def bimodal():
    rng = np.random.default_rng(19)
    return [rng.normal(-1.0, 0.2, 10_000), rng.normal(2.0, 0.5, 3000), rng.uniform(-6.0, 9.0, 60)]


def single_outliers():
    rng = np.random.default_rng(16)
    return [rng.standard_normal(5000), rng.uniform(4.0, 25.0, 40)]


DATA = {"signed_heavy_tail": signed_heavy_tail, "relu_with_zeros": relu_with_zeros, "sparse_levels": sparse_levels,
        "shifted_positive": shifted_positive, "small_signed": small_signed, "single_outliers": single_outliers,
        "far_from_zero": far_from_zero, "bimodal": bimodal}


@pytest.mark.parametrize("levels", [256, 16])
@pytest.mark.parametrize("data", ["signed_heavy_tail", "relu_with_zeros", "sparse_levels", "single_outliers"])
def test_entropy_threshold_has_the_smallest_kl_divergence_of_the_search(data, levels):
    observer = observe(DATA[data]())
    candidates = entropy_candidates_reference(observer, levels)
    best = min(candidates.values())
    kwargs = {} if levels == 256 else {"levels": levels}
    lo, hi = observer.observed_range("entropy", **kwargs)
    threshold = hi if observer.min >= 0.0 else max(-lo, hi)
    chosen = [t for t in candidates if t == threshold or (observer.min < 0 and -t == lo)]
    assert chosen, f"{threshold} is not a candidate threshold"
    assert candidates[chosen[0]] <= best + 1e-12 * abs(best)
    # the first of equally good thresholds; the range is the threshold cut to the data
    t = min(t for t, kl in candidates.items() if kl <= best + 1e-12 * abs(best))
    assert (lo, hi) == (max(-t, min(observer.min, 0.0)), min(t, max(observer.max, 0.0)))


def test_entropy_never_clips_one_value_in_ten_thousand():
    """Exactly 0.01% of the values beyond the bulk is not "less than 0.01%": the outlier stays in range."""
    rng = np.random.default_rng(17)
    observer = observe([rng.standard_normal(9999), [50.0]])
    assert observer.observed_range("entropy")[1] == 50.0
    observer = observe([rng.standard_normal(20_000), [50.0]])  # one in twenty thousand may be clipped
    assert observer.observed_range("entropy")[1] < 10.0


# -- mse: the documented error at every grid point ----------------------------------------------------
def mse_error_reference(observer, low, high, levels):
    """Expected squared error of quantizing the histogram (values at their bin centers) on [low, high]."""
    centers, counts = observer.centers(), observer.counts.astype(np.float64)
    step = (high - low) / (levels - 1)
    clipped_low = np.where(centers < low, (centers - low) ** 2, 0.0)
    clipped_high = np.where(centers > high, (centers - high) ** 2, 0.0)
    rounding = np.where((centers >= low) & (centers <= high), step * step / 12.0, 0.0)
    return float(np.sum(counts * (clipped_low + clipped_high + rounding)))


@pytest.mark.parametrize("levels", [256, 16])
@pytest.mark.parametrize("data", ["signed_heavy_tail", "shifted_positive", "small_signed", "single_outliers", "far_from_zero", "bimodal"])
def test_mse_range_has_the_smallest_expected_error_on_the_grid(data, levels):
    observer = observe(DATA[data]())
    lo0, hi0 = min(observer.min, 0.0), max(observer.max, 0.0)
    ratios = np.linspace(0.02, 1.0, 50)
    errors = {(a, b): mse_error_reference(observer, lo0 * a, hi0 * b, levels) for a in ratios for b in ratios}
    best = min(errors.values())
    kwargs = {} if levels == 256 else {"levels": levels}
    lo, hi = observer.observed_range("mse", **kwargs)
    a_s = [a for a in ratios if lo0 * a == lo] if lo0 < 0 else list(ratios)
    b_s = [b for b in ratios if hi0 * b == hi]
    assert a_s and b_s, f"({lo}, {hi}) is not on the grid"
    chosen = min(errors[a, b] for a in a_s for b in b_s)
    assert chosen <= best * (1 + 1e-9)
