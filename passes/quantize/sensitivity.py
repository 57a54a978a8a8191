"""Where quantization loses accuracy, and mixed precision that keeps the worst layers in float.

Rules:
- ``layer_sensitivity``: for each layer alone, the output SQNR (dB) of the model with only that
  layer quantized (its inputs, weights and output), against the float model. Lower = more sensitive.
- ``layer_drops``: the same ranking from ONE fully quantized model (cheap: one build, one run): the
  relative noise a layer adds is its output's noise-to-signal ratio minus the worst of its inputs'
  (ratios of independent errors add), reported as the dB of that added noise. Lower = more sensitive.
- ``layer_errors``: the per-layer error view of the fully quantized model: SQNR and cosine of each
  layer's output against the same tensor in the float model (errors accumulate along the graph).
- ``mixed_precision``: starting from every layer quantized, keeps layers in float, most sensitive
  first, until ``accept(model)`` holds; the candidates are tried in growing prefixes (1, 2, 4, ...
  layers, then a bisection between the last two prefixes), so it needs O(log layers) evaluations.
- ``fidelity_budget``/``metric_budget`` build the ``accept`` test: output SQNR >= a budget in dB, or
  a user metric (a Python callable on the quantized model, higher is better) within ``max_drop`` of
  its float value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

from ir.fidelity import measure, measure_values
from passes.quantize.planner import Quantizer


def layer_sensitivity(quantizer: Quantizer, feeds: Sequence[dict[str, np.ndarray]]) -> dict[int, float]:
    return {layer.index: measure(quantizer.reference, quantizer.build([layer.index]), feeds)["sqnr_db"] for layer in quantizer.layers}


def layer_drops(quantizer: Quantizer, feeds: Sequence[dict[str, np.ndarray]]) -> dict[int, float]:
    quantized = quantizer.build()
    names = list(dict.fromkeys(n for layer in quantizer.layers for n in (*layer.inputs, layer.raw_output)))
    errors = measure_values(quantizer.reference, quantized, names, feeds)

    def noise(name: str) -> float:
        return 10.0 ** (-errors[name]["sqnr_db"] / 10.0) if name in errors else 0.0

    scores = {}
    for layer in quantizer.layers:
        added = noise(layer.raw_output) - max((noise(n) for n in layer.inputs), default=0.0)
        scores[layer.index] = -10.0 * math.log10(max(added, 1e-20))
    return scores


def layer_errors(quantizer: Quantizer, quantized: ir.Model, feeds: Sequence[dict[str, np.ndarray]]) -> list[dict]:
    names = [layer.raw_output for layer in quantizer.layers]
    errors = measure_values(quantizer.reference, quantized, names, feeds)
    return [{"layer": layer.label, "op": layer.op_type, **errors[layer.raw_output]} for layer in quantizer.layers]


def fidelity_budget(quantizer: Quantizer, feeds, budget_db: float) -> Callable[[ir.Model], bool]:
    return lambda model: measure(quantizer.reference, model, feeds)["sqnr_db"] >= budget_db


def metric_budget(reference: ir.Model, metric: Callable[[ir.Model], float], max_drop: float) -> Callable[[ir.Model], bool]:
    floor = metric(reference) - max_drop
    return lambda model: metric(model) >= floor


def mixed_precision(quantizer: Quantizer, sensitivity: dict[int, float], accept: Callable[[ir.Model], bool],
                    *, source: ir.Model | None = None) -> tuple[ir.Model, list[int]]:
    """(quantized model, layer indices kept in float)."""
    order = sorted(sensitivity, key=sensitivity.__getitem__)
    everything = [layer.index for layer in quantizer.layers]

    def attempt(kept: int) -> tuple[ir.Model, bool]:
        skip = set(order[:kept])
        model = quantizer.build([i for i in everything if i not in skip], source=source)
        return model, accept(model)

    model, ok = attempt(0)
    if ok:
        return model, []
    low, high, best = 0, None, None
    size = 1
    while size <= len(order):
        model, ok = attempt(size)
        if ok:
            high, best = size, model
            break
        low, size = size, size * 2
    if high is None:
        model, _ = attempt(len(order))
        return model, order
    while high - low > 1:
        middle = (low + high) // 2
        model, ok = attempt(middle)
        if ok:
            high, best = middle, model
        else:
            low = middle
    return best, order[:high]
