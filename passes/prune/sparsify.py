"""sparsify: magnitude (connection) pruning: set the smallest weights of Conv/ConvTranspose/Gemm/MatMul
layers to zero.

Rules:
- Weights are the constant weight input (input 1) of Conv, ConvTranspose, Gemm and MatMul; biases
  and layers with fewer than ``min_size`` weights are left dense.
- ``scope=layer``: every weight loses ``sparsity`` of its entries (smallest |w| first);
  ``scope=global``: one magnitude threshold over all weights, chosen so ``sparsity`` of all
  entries are zero (layers with small weights lose more).
- Shapes do not change: the gain is size after compression (zeros compress) and speed only on
  kernels that exploit sparsity. ``self.stats`` reports the achieved sparsity (x1000) and the
  model's zip-compressed size before and after (``zip_size``).
The pass is lossy; ``holdout`` generated or calibration feeds measure the output error.
Intent (``passes.intent``): the original with each selected weight zeroed where the rule says, the
mask recomputed in numpy from the rule by a threshold (``intended_mask``), not by the pass's
``argsort`` / ``partition``: ``scope=layer``, the entries below the ``count``-th smallest magnitude
``t`` and, of those equal to ``t``, the first ones in storage order until ``count`` are zero;
``scope=global``, every entry below the ``k``-th smallest magnitude of all selected weights.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Literal

import numpy as np
import onnx_ir as ir

from ir import io
from ir.channel_groups import weight_array
from passes.base import Pass, PassResult, layer_costs, layer_row, register
from passes.reconstruct import _set_input

LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class SparsifyOptions:
    sparsity: float = dataclasses.field(default=0.5, metadata={"check": lambda v: 0.0 < v < 1.0, "rule": "in (0, 1)", "doc": "fraction of weights set to zero"})
    scope: Literal["layer", "global"] = dataclasses.field(default="layer", metadata={"doc": "per-layer or one global threshold"})
    min_size: int = dataclasses.field(default=1024, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "smaller weights stay dense"})


def zip_size(model: ir.Model) -> int:
    """Bytes of the serialized model after zlib (deflate, as in .zip) compression at level 6."""
    return len(zlib.compress(io.to_proto(model).SerializeToString(), 6))


@register
class SparsifyPass(Pass):
    name = "sparsify"
    Options = SparsifyOptions
    lossless = False

    def intent(self, original: ir.Model):
        from passes.intent import Intent, substitute_weights

        layers = [(position, node, weight_array(node.inputs[1])) for position, node in enumerate(original.graph) if self._selected(node)]
        everything = np.sort(np.concatenate([np.abs(w).ravel() for _, _, w in layers])) if layers else np.zeros(0)
        intended = {}
        for position, _, weight in layers:
            mask = intended_mask(weight, self.options.sparsity, None if self.options.scope == "layer" else everything)
            intended[(position, 1)] = np.where(mask, weight, 0).astype(weight.dtype)
        return Intent(substitute_weights(original, intended), f"original with the weights below the {self.options.scope} magnitude threshold zeroed")

    def _selected(self, node: ir.Node) -> bool:
        if node.op_type not in LAYERS or len(node.inputs) < 2:
            return False
        weight = weight_array(node.inputs[1])
        return weight is not None and weight.dtype.kind == "f" and weight.size >= self.options.min_size

    def call(self, model: ir.Model) -> PassResult:
        layers = []
        for node in list(model.graph):
            if node.op_type in LAYERS and len(node.inputs) > 1:
                weight = weight_array(node.inputs[1])
                if weight is not None and weight.dtype.kind == "f" and weight.size >= self.options.min_size:
                    layers.append((node, weight))
        if not layers:
            self.note("no weight large enough to sparsify")
            return PassResult(model, modified=False)
        size_before = zip_size(model)
        target = self.options.sparsity
        if self.options.scope == "global":
            magnitudes = np.concatenate([np.abs(w).ravel() for _, w in layers])
            threshold = np.partition(magnitudes, int(target * magnitudes.size))[int(target * magnitudes.size)]
        zeros = total = 0
        costs = layer_costs(model)
        for node, weight in layers:
            if self.options.scope == "layer":
                count = int(target * weight.size)
                order = np.argsort(np.abs(weight), axis=None, kind="stable")[:count]
                mask = np.ones(weight.size, bool)
                mask[order] = False
                mask = mask.reshape(weight.shape)
            else:
                mask = np.abs(weight) >= threshold
            sparse = np.where(mask, weight, 0).astype(weight.dtype)
            _set_input(node, 1, sparse)
            layer_zeros = int(np.count_nonzero(sparse == 0))
            self.layers.append(layer_row(node, f"{layer_zeros / sparse.size:.1%} of weights zero", costs[node], zeros=layer_zeros))
            zeros += layer_zeros
            total += sparse.size
        self.stats["layers sparsified"] = len(layers)
        self.stats["sparsity x1000"] = int(round(1000 * zeros / total))
        self.stats["zip bytes before"] = size_before
        self.stats["zip bytes after"] = zip_size(model)
        self.note(f"{zeros / total:.1%} of {total} weights are zero; zip size {size_before} -> {self.stats['zip bytes after']} bytes")
        return PassResult(model, modified=True)


def intended_mask(weight: np.ndarray, sparsity: float, magnitudes: np.ndarray | None = None) -> np.ndarray:
    """True where the weight is kept. ``magnitudes``: all selected weights' sorted |w| (global scope);
    None: this weight alone loses ``int(sparsity * size)`` entries, ties broken in storage order."""
    size = np.abs(weight)
    if magnitudes is not None:
        return size >= magnitudes[int(sparsity * magnitudes.size)]
    count = int(sparsity * weight.size)
    if count == 0:
        return np.ones(weight.shape, bool)
    threshold = np.sort(size, axis=None)[count - 1]
    drop = size < threshold
    ties = np.flatnonzero(size == threshold)[: count - int(drop.sum())]
    drop.flat[ties] = True
    return ~drop
