"""Model-level errors of factorization options and plans, measured cheaply on a few calibration feeds.

A layer's measured error (``Option.error``: relative noise power of the layer's own output) says
nothing about how much of that noise reaches the model's outputs: an early layer's error may be
washed out by later ReLUs and normalization, the classifier's goes straight to the logits, and a
layer followed by a scale-up is amplified. Two uses, both with ``ModelProbe``:

- Sensitivity (``weights``): per layer, one probe option (``probe_option``: the option at the median
  saving of the given ones) is put into the model alone and the model's relative output noise power
  is measured; the layer's sensitivity is ``model error / layer error`` of that option. Multiplying a
  layer's option errors by it (``Option.sensitivity``) turns them into estimates of the model error
  each option causes, which can be summed across layers (to first order, independent noises add).
  A layer whose probe is exact (error ~ 0) gets the median sensitivity of the others (1 when none).
- Plans (``ModelProbe.error``): a whole plan (one option or none per layer) is put into the model and
  its model error measured, so that candidate plans can be compared by what they do to the outputs.

``ModelProbe`` builds one ONNX Runtime session of a copy of the model in which the weight of every
candidate layer is a graph input (Gemm in the canonical form ``transB=1, alpha=1, beta=1`` with its
folded bias, MatMul's ``[inputs, outputs]``): an option is tried by feeding its *composed* kernel
(``passes.decompose.intent.compose``: exactly what its chain computes, with the layer's own bias)
in place of the original, without rewriting or refitting anything. The reference is the same
session with every original weight. Model error: noise over signal power summed over all float
outputs and feeds (``passes.reconstruct.output_sqnr_db``'s measure, as a ratio).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from ir import io, runtime
from passes.decompose.candidates import Option
from passes.decompose.intent import compose
from passes.decompose.layers import Layer
from passes.reconstruct import NormalEquations

EXACT = 1e-12  # a probe error below this says nothing about the layer's sensitivity


def composed_weight(option: Option) -> np.ndarray:
    """The single kernel ``[N, C, k...]`` (Gemm/MatMul ``[N, C]``) the option's chain computes."""
    return compose(option.method, [np.asarray(w) for w, _ in option.steps()], inputs=option.layer.inputs)


def _prefix(method: str, factors: list[np.ndarray], inputs: int) -> np.ndarray | None:
    """The kernel ``[features, C, k...]`` from the layer's input patch to the input features of the
    chain's last layer (at one output position), in the order of the last factor's flattened
    ``[N, features]``; None where the last layer is not a dense layer (grouped)."""
    f = [np.asarray(x, np.float64) for x in factors]
    if method == "tucker":
        first, core, _ = f
        return np.einsum("rs...,sc->rc...", core, first.reshape(first.shape[:2]))
    if method == "cp":
        first, vertical, horizontal, _ = f
        return np.einsum("rc,ri,rj->rcij", first[:, :, 0, 0], vertical[:, 0, :, 0], horizontal[:, 0, 0, :])
    if method == "spatial-svd":  # feature (r, j): the vertical layer's output r at horizontal offset j
        vertical = f[0][..., 0]  # [r, C, kh]
        r, c, kh = vertical.shape
        kw = f[1].shape[-1]
        prefix = np.zeros((r, kw, c, kh, kw))
        for j in range(kw):
            prefix[:, j, :, :, j] = vertical
        return prefix.reshape(r * kw, c, kh, kw)
    if method == "separable dw-pw":
        depthwise = f[0]  # [C*R, 1, k...]: output c*R + m reads input c
        multiplier = depthwise.shape[0] // inputs
        prefix = np.zeros((depthwise.shape[0], inputs, *depthwise.shape[2:]))
        for c in range(inputs):
            prefix[c * multiplier : (c + 1) * multiplier, c] = depthwise[c * multiplier : (c + 1) * multiplier, 0]
        return prefix
    return None  # svd: the whitened SVD is already the least-squares fit on the rows; pw-dw: grouped last layer


def refit_last(option: Option, rows: np.ndarray | None, ridge: float, target: np.ndarray | None = None) -> Option:
    """The option with its chain's last layer refit by least squares to the original layer's outputs
    on the layer's sampled input ``rows`` (the original model's), and its error measured again: what
    the driver's refit will do in the compressed model, here from the original inputs, without
    running the model. Fit on the even rows, error measured on the odd ones (an in-sample error
    would flatter wide last layers); kept only when that error is lower. The option itself where
    there is nothing to refit (svd: its whitened SVD already is the least-squares fit on the rows;
    a grouped last layer) or where the last layer has more than a quarter as many inputs as there
    are rows (too few rows for an honest fit; the driver's refit, on every row, still applies)."""
    if rows is None or option.method == "svd":
        return option
    steps = option.steps()
    factors = [np.asarray(w) for w, _ in steps]
    outputs = option.layer.outputs
    if factors[-1].size // outputs > len(rows) // 4:
        return option
    prefix = _prefix(option.method, factors, option.layer.inputs)
    if prefix is None:
        return option
    x = np.asarray(rows, np.float32)
    features = (x @ prefix.reshape(prefix.shape[0], -1).T.astype(np.float32)).astype(np.float64)
    if target is None:  # the layer's outputs on the rows, shared by its options
        target = x.astype(np.float64) @ option.layer.weight.reshape(outputs, -1).T
    fit, check = slice(0, None, 2), slice(1, None, 2)
    equations = NormalEquations(features.shape[1], outputs)  # the same ridge least squares as every refit
    equations.add(features[fit], target[fit])
    last = equations.solve(ridge).T  # [N, features]
    signal = max(float(np.sum(target[check] ** 2)), 1e-300)
    before = float(np.sum((features[check] @ factors[-1].reshape(outputs, -1).T - target[check]) ** 2)) / signal
    error = float(np.sum((features[check] @ last.T - target[check]) ** 2)) / signal
    if not error < before:
        return option
    refit = [*steps[:-1], (last.reshape(factors[-1].shape).astype(factors[-1].dtype), steps[-1][1])]
    return dataclasses.replace(option, error=error, steps=lambda refit=refit: refit)


def probe_option(options: Sequence[Option], kind: str = "macs") -> Option | None:
    """The option at the median saving: representative of the options the budget weighs."""
    if not options:
        return None
    ordered = sorted(options, key=lambda o: (o.layer.macs - o.macs) if kind == "macs" else (o.layer.params - o.params))
    return ordered[len(ordered) // 2]


class ModelProbe:
    def __init__(self, model: ir.Model, layers: Sequence[Layer], feeds: Sequence[Mapping[str, np.ndarray]]):
        self.layers = list(layers)
        self.feeds = [dict(f) for f in feeds]
        self.runs = 0
        copy = io.copy_model(model)
        positions = {node: i for i, node in enumerate(model.graph)}
        nodes = list(copy.graph)
        self._names: list[str] = []
        self._dtypes: list[np.dtype] = []
        self._transpose: list[bool] = []
        for index, layer in enumerate(self.layers):
            node = nodes[positions[layer.node]]
            dtype = np.dtype(layer.node.inputs[1].dtype.numpy()) if layer.node.inputs[1].dtype is not None else np.dtype(np.float32)
            transpose = layer.kind == "matmul"
            shape = layer.weight.T.shape if transpose else layer.weight.shape
            value = ir.Value(name=f"__probe_weight_{index}", type=ir.TensorType(ir.DataType.from_numpy(dtype)), shape=ir.Shape(shape))
            copy.graph.inputs.append(value)
            node.replace_input_with(1, value)
            if layer.kind == "gemm":  # the canonical form of Layer.weight / Layer.bias
                node.attributes["transB"] = ir.AttrInt64("transB", 1)
                node.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
                node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
                if layer.bias is not None:
                    bias = ir.Value(name=f"__probe_bias_{index}", const_value=ir.tensor(layer.bias.astype(dtype)),
                                    type=ir.TensorType(ir.DataType.from_numpy(dtype)), shape=ir.Shape(layer.bias.shape))
                    copy.graph.register_initializer(bias)
                    node.replace_input_with(2, bias)
            self._names.append(value.name)
            self._dtypes.append(dtype)
            self._transpose.append(transpose)
        self._originals = [self._cast(i, layer.weight) for i, layer in enumerate(self.layers)]
        self._index = {id(layer.node): i for i, layer in enumerate(self.layers)}
        self._session = runtime.session(copy, optimize=True)
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._reference = self._run({})
        self.signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for outs in self._reference for r in outs)

    def _cast(self, index: int, weight: np.ndarray) -> np.ndarray:
        weight = weight.T if self._transpose[index] else weight
        return np.ascontiguousarray(weight, dtype=self._dtypes[index])

    def _run(self, replaced: Mapping[int, np.ndarray]) -> list[list[np.ndarray]]:
        weights = {name: replaced.get(i, self._originals[i]) for i, name in enumerate(self._names)}
        self.runs += 1
        found = []
        for feed in self.feeds:
            outputs = self._session.run(self._outputs, {**feed, **weights})
            found.append([o for o in outputs if o.dtype.kind == "f"])
        return found

    def error(self, options: Sequence[Option]) -> float:
        """Relative noise power of the model's outputs with each of ``options`` in its layer."""
        replaced = {self._index[id(o.layer.node)]: self._cast(self._index[id(o.layer.node)], composed_weight(o)) for o in options}
        if not replaced:
            return 0.0
        noise = 0.0
        for want, got in zip(self._reference, self._run(replaced)):
            for a, b in zip(want, got):
                d = (a.astype(np.float64) - b).reshape(-1)
                d = d[np.isfinite(d)]
                noise += float(d @ d)
        return noise / self.signal if self.signal > 0 else (0.0 if noise == 0 else math.inf)


def weights(probe: ModelProbe, probes: Sequence[Option | None]) -> tuple[list[float], list[dict]]:
    """Per layer (aligned with ``probes``): its sensitivity, and a report row per measured layer."""
    ratios: list[float | None] = []
    rows = []
    for option in probes:
        if option is None:
            ratios.append(None)
            continue
        model_error = probe.error([option])
        ratio = model_error / option.error if option.error > EXACT else None
        ratios.append(ratio)
        rows.append({"layer": option.layer.name, "probe": option.action, "layer_error": option.error, "model_error": model_error,
                     "sensitivity": ratio})
    known = [r for r in ratios if r is not None and np.isfinite(r)]
    fallback = float(np.median(known)) if known else 1.0
    return [fallback if r is None or not np.isfinite(r) else float(r) for r in ratios], rows


def to_db(error: float) -> float:
    return 10 * math.log10(1 / error) if error > 0 else math.inf
