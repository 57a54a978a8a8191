"""Accuracy-driven quantization from Python: a user metric and a tolerated drop decide which layers stay float."""

from __future__ import annotations

import numpy as np
import pytest

from ir import runtime
from ir.errors import UsageError
from passes.quantize.accuracy import quantize_to_metric
from tests.quantize.helpers import with_weights

# Three dense layers. Layer 1 writes one activation channel 300x larger than the rest, which the
# per-tensor uint8 input of layer 2 cannot resolve: l2 is by far the most sensitive layer.
MLP = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[64,32] x) => (float[64,10] y) <float[32,64] w1 = {W1}, float[64,64] w2 = {W2}, float[64,10] w3 = {W3}> {
    h1 = MatMul (x, w1)
    r1 = Relu (h1)
    h2 = MatMul (r1, w2)
    r2 = Relu (h2)
    y = MatMul (r2, w3)
}
"""


def mlp():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.2, (32, 64)), rng.normal(0, 0.15, (64, 64))
    w1[:, 5] *= 300.0
    w2[5] /= 300.0
    return with_weights(MLP, {"W1": w1, "W2": w2, "W3": rng.normal(0, 0.15, (64, 10))})


def batches(n, seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((64, 32)).astype(np.float32)} for _ in range(n)]


TEST = batches(4, seed=123)


def agreement_with(reference_model):
    """Top-1 agreement with the float model's predictions on held-out batches (float model: 1.0)."""
    labels = [np.argmax(runtime.run(runtime.session(reference_model), f)["y"], axis=-1) for f in TEST]

    def metric(model):
        session = runtime.session(model)
        return float(np.mean([np.mean(np.argmax(runtime.run(session, f)["y"], axis=-1) == want) for f, want in zip(TEST, labels)]))
    return metric


def test_the_most_sensitive_layers_stay_float_until_the_metric_is_within_tolerance():
    model = mlp()
    metric = agreement_with(model)
    everything = quantize_to_metric(model, metric, max_drop=1.0, feeds=batches(8, seed=1))
    assert everything.kept == [] and everything.metric < 0.97  # fully quantized: measured 0.41

    result = quantize_to_metric(model, metric, max_drop=0.03, feeds=batches(8, seed=1))
    order = sorted(result.sensitivity, key=result.sensitivity.get)
    assert order[0].endswith("-> h2") and order[-1].endswith("-> y")  # measured SQNR: h2 1.5, h1 1.7, y 40.8 dB
    assert result.kept == order[: len(result.kept)] and 1 <= len(result.kept) < 3
    assert result.float_metric == 1.0 and result.metric >= result.float_metric - 0.03  # measured 0.992, h2 and h1 kept
    quantized_layers = sum(n.op_type == "DequantizeLinear" and n.inputs[0].const_value is not None for n in result.model.graph)
    assert quantized_layers == 3 - len(result.kept)  # one int8 weight per quantized layer
    assert model.graph.node(0).op_type == "MatMul" and len(list(model.graph)) == 5  # input model untouched


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(UsageError, match="metric must be a callable"):
        quantize_to_metric(mlp(), 0.9, max_drop=0.01, feeds=batches(1, 0))
    with pytest.raises(UsageError, match="option 'calibrate'"):
        quantize_to_metric(mlp(), lambda m: 1.0, max_drop=0.01, feeds=batches(1, 0), options={"calibrate": "magic"})
