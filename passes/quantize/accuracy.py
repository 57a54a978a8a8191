"""Accuracy-driven int8 quantization from Python: keep the most sensitive layers float until a user
metric is within a tolerated drop of its float value.

A pipeline string cannot carry a Python callable, so this mode is a function, not a pass option::

    from passes.quantize.accuracy import quantize_to_metric

    def accuracy(model):            # any callable on an onnx_ir Model, higher is better
        session = ir.runtime.session(model)    # the project's ONNX Runtime helper (``from ir import runtime``)
        ...
        return top1

    result = quantize_to_metric(model, accuracy, max_drop=0.01, feeds=calibration_batches,
                                options={"calibrate": "percentile"})
    result.model, result.kept, result.float_metric, result.metric

Rules:
- ``options`` are the ``quantize`` pass's options (same names, same validation); the input model is
  not modified (a copy is converted to opset 13 when per-channel weights need it).
- Ranges are calibrated on ``options["samples"]`` feeds; per-layer sensitivity (output SQNR with only
  that layer quantized, ``sensitivity.layer_sensitivity``) on the first ``verify_samples`` feeds.
- ``sensitivity.mixed_precision`` with ``sensitivity.metric_budget(float model, metric, max_drop)``:
  layers are kept float most sensitive first, in growing prefixes then a bisection, so the metric is
  evaluated O(log layers) times; the smallest prefix that meets ``metric >= float - max_drop`` wins.
  When even all-float layers miss it (a metric that is noisy on identical models), every layer is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from ir import io
from ir.errors import InvalidModelError, UsageError
from passes.base import build_options
from passes.quantize import qdq, sensitivity
from passes.quantize.quantize import QuantizeOptions, quantizer_for


@dataclasses.dataclass
class MetricResult:
    model: ir.Model  # the quantized model
    kept: list[str]  # labels of the layers kept float, most sensitive first
    float_metric: float
    metric: float  # the metric of ``model``
    sensitivity: dict[str, float]  # per-layer output SQNR (dB) when only that layer is quantized


def quantize_to_metric(model: ir.Model, metric: Callable[[ir.Model], float], max_drop: float,
                       feeds: Sequence[Mapping[str, np.ndarray]], *, options: Mapping[str, Any] | None = None) -> MetricResult:
    if not callable(metric):
        raise UsageError(f"quantize_to_metric: metric must be a callable on a model, got {type(metric).__name__}")
    if not (max_drop >= 0):
        raise UsageError(f"quantize_to_metric: max_drop must be >= 0, got {max_drop}")
    feeds = [dict(f) for f in feeds]
    if not feeds:
        raise UsageError("quantize_to_metric: needs at least one calibration feed")
    opts = build_options("quantize", QuantizeOptions, dict(options or {}))
    work = io.copy_model(model)
    if opts.per_channel:
        try:
            qdq.raise_opset(work, 13)
        except InvalidModelError:
            opts = dataclasses.replace(opts, per_channel=False)
    quantizer = quantizer_for(work, opts)
    if not quantizer.layers:
        raise UsageError("quantize_to_metric: nothing to quantize (no layer of the requested op types)")
    quantizer.calibrate(feeds[: opts.samples])
    check = feeds[: opts.verify_samples]
    scores = sensitivity.layer_sensitivity(quantizer, check)
    float_metric = float(metric(quantizer.reference))
    accept = sensitivity.metric_budget(quantizer.reference, metric, max_drop)
    quantized, kept = sensitivity.mixed_precision(quantizer, scores, accept)
    labels = {layer.index: layer.label for layer in quantizer.layers}
    return MetricResult(quantized, [labels[i] for i in kept], float_metric, float(metric(quantized)),
                        {labels[i]: score for i, score in scores.items()})
