"""quantize states its intent: the original with float fake quantization (Div, Round, Clip, ...) where
the QDQ model quantizes, weights and biases rounded in numpy; the manager checks the QDQ model (run
by ONNX Runtime's QuantizeLinear/DequantizeLinear kernels, unfused) against it."""

from __future__ import annotations

import numpy as np
import pytest

import passes.quantize  # noqa: F401
from ir import runtime
from models import builders
from passes.calibration import Calibration
from passes.manager import PassContext, PassManager


def run(pipeline: str):
    """``pipeline`` after ``fold`` (which folds the BatchNormalizations into Conv biases) on ResNet-18."""
    model = builders.build("resnet18", image_size=32)
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    calibration = Calibration.from_iterable([runtime.generate_inputs(model, seed=10 + s) for s in range(4)])
    records = PassManager(f"fold,{pipeline}", feeds=feeds, context=PassContext(calibration=calibration)).run(model).records
    (record,) = [r for r in records if r.name == "quantize"]
    return record


@pytest.mark.parametrize("pipeline", [
    "quantize{samples=4,calibrate=minmax}",
    "quantize{samples=4,activations=int8,per_channel=false}",
    "quantize{samples=4,bias_correction=true}",
])
def test_quantized_resnet_computes_its_intent(pipeline):
    record = run(pipeline)
    assert record.modified and not record.rolled_back, record.failure
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-4


def test_a_wrong_bias_scale_is_rolled_back_and_named(monkeypatch):
    """A planted bug: biases quantized with twice the input scale times the weight scale."""
    from passes.quantize import planner, qdq

    original = qdq.quantized_bias
    monkeypatch.setattr(planner.qdq, "quantized_bias", lambda bias, input_scale, weight_scale: original(bias, 2 * input_scale, weight_scale))
    record = run("quantize{samples=4,calibrate=minmax}")
    assert record.rolled_back and "does not compute its intent" in record.failure
    assert "fake quantization" in record.failure
