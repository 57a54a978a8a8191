"""Weights that passes write hold no subnormal floats: they are flushed to zero.

A factorization or a least-squares refit of a trained weight that already holds subnormals spreads
them, and x86 kernels take a slow path on every product with one (the factorized PP-OCRv4
recognizer ran at 1.81x the original's latency before this rule: ``docs/bench_subnormals.md``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from passes.reconstruct import add_initializer, flush_subnormals
from tests.decompose.helpers import chain_model, correlated_feeds, run_pass

SUBNORMAL32 = np.float32(1e-40)


def subnormal_count(array: np.ndarray) -> int:
    return int(np.sum((array != 0) & (np.abs(array) < np.finfo(array.dtype).tiny)))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_subnormals_become_zero_and_every_other_value_stays(dtype):
    info = np.finfo(dtype)
    subnormal = info.tiny / 4
    array = np.array([0.0, subnormal, -subnormal, info.tiny, -info.tiny, 1.5, -3.0, info.max], dtype)
    flushed = flush_subnormals(array)
    assert flushed.dtype == dtype
    np.testing.assert_array_equal(flushed, np.array([0, 0, 0, info.tiny, -info.tiny, 1.5, -3.0, info.max], dtype))
    assert subnormal_count(array) == 2 and subnormal_count(flushed) == 0


def test_integer_arrays_and_arrays_without_subnormals_are_returned_as_they_are():
    integers = np.array([0, 1, -5], np.int8)
    normal = np.array([0.0, 1.0, -2.5], np.float32)
    assert flush_subnormals(integers) is integers
    assert flush_subnormals(normal) is normal


def test_a_new_initializer_stores_zero_for_a_subnormal():
    graph = ir.Graph([], [], nodes=[], name="g")
    value = add_initializer(graph, "w", np.array([SUBNORMAL32, 2.0], np.float32))
    np.testing.assert_array_equal(value.const_value.numpy(), np.array([0.0, 2.0], np.float32))


def test_decompose_writes_no_subnormal_weight_from_a_weight_that_holds_them():
    model = chain_model(seed=3)
    for name in ("w2", "w4"):  # trained weights with a share of subnormals, as in PP-OCRv4 rec
        weight = model.graph.initializers[name].const_value.numpy().copy()
        weight.reshape(-1)[::2] = SUBNORMAL32  # without the flush, b's first factor keeps 2304 of them
        model.graph.initializers[name].const_value = ir.tensor(weight, name=name)
    original = set(model.graph.initializers)
    feeds = correlated_feeds(20, seed=1)
    pass_, result = run_pass("decompose", model, feeds, macs=0.3, calib=16, holdout=4, method="svd")
    assert "b" in {row["layer"] for row in pass_.layers}  # the layer of w2 was factorized
    written = [v.const_value.numpy() for name, v in model.graph.initializers.items() if name not in original]
    assert written and sum(subnormal_count(a) for a in written) == 0
