"""Intents: the exact model a lossy pass means to produce, checked like a lossless pass.

A lossy pass is not equivalent to its input, so comparing outputs with the input model proves
nothing about whether it computed what it claims. Each lossy pass therefore states its *intent*: a
model built from the model before the pass (``original``) by an independent, simple construction
that is, by the pass's own definition, exactly what it produces. The pass manager compares the
produced model with the intent on the verification feeds, with the lossless tolerance; a mismatch
rolls the pass back and names it, as a broken lossless pass is (``PassManager._verify``). The
compression error against the input model is still measured and reported: the intent check says the
pass did what it says, the error says what that costs.

The API: ``Pass.intent(original) -> Intent | None``. ``original`` is a fresh copy of the model the
pass was given (the pass may edit it); ``None`` means the pass states no intent (the report says
"intent not stated"). A pass records during ``call`` whatever its intent needs (kept channels,
codebooks, the weights it means to substitute), keyed by node *position* in the graph it was given:
positions survive the copy, names may be empty.

Constructions (in the passes' ``intent`` methods):
- ``prune`` before refit: the original with the removed channels' *consumer* weights zeroed
  (``passes.prune.intent``): a mask per consumer built segment by segment from the groups' kept
  channel sets, independent of the index arithmetic that slices the pruned weights;
- ``prune`` after refit: that masked original with each refitted layer's weight scattered back into
  the kept rows and columns (zeros in the removed columns);
- ``cluster``: the original with each clustered weight replaced by ``codebook[index]`` (numpy);
- ``quantize-weights``: the original with each weight replaced by its levels times its block scales
  (numpy), whatever storage (DequantizeLinear, MatMulNBits) the pass chose;
- ``quantize``: the original with float fake-quantization (``round(x / s) + z``, clipped, then
  ``(q - z) * s``, as float ONNX ops) on each activation the produced model quantizes, and each weight
  and bias rounded in numpy on the produced scales (``passes.quantize.intent``). Verification
  sessions run with ONNX Runtime's graph optimizations off (``ir.runtime``), so this compares the
  QDQ model's reference semantics, not the fused integer kernels a runtime may substitute;
- ``decompose`` / ``separable``: the original with each factored layer's weight replaced by the one
  kernel its chain of factors composes to (numpy ``einsum`` per method), and the last factor's bias
  (``passes.decompose.intent``); a refit last factor enters with the weight the refit wrote;
- ``sparsify``: the original with each selected weight zeroed below its magnitude threshold, the
  mask recomputed from the rule (``sparsify.intended_mask``);
- ``prune-layers``: the original with each removed block's Add adding zero instead of its branch
  (the branch input found by the intent itself);
- ``quantize-dynamic``: each quantized layer computed in float on the integer levels of its input
  (DynamicQuantizeLinear's definition as float ops) and weight (numpy), then rescaled and biased
  (``passes.quantize.dynamic_intent``; on levels, so the roundings are the integer model's).

Helpers here build the common case: ``substitute_weights(original, {(position, input): array})``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir


WeightKey = tuple[int, int]  # (node position in the graph the pass was given, input index)


@dataclasses.dataclass
class Intent:
    """The exact model a lossy pass means to produce, and one line saying how it was built."""

    model: ir.Model
    construction: str


def substitute_weights(original: ir.Model, weights: Mapping[WeightKey, np.ndarray]) -> ir.Model:
    """``original`` with input ``index`` of the node at ``position`` replaced by a fresh initializer."""
    nodes = list(original.graph)
    for (position, index), array in weights.items():
        set_constant(nodes[position], index, array)
    return original


def set_constant(node: ir.Node, index: int, array: np.ndarray) -> None:
    """Give input ``index`` of ``node`` a fresh initializer holding ``array`` (others sharing the old
    value keep it)."""
    graph = node.graph
    taken = set(graph.initializers) | {v.name for v in graph.inputs if v.name}
    base = f"{node.name or node.op_type}_intent_{index}"
    name, counter = base, 0
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    array = np.ascontiguousarray(array)
    value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(array.dtype)), shape=ir.Shape(array.shape),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    if graph.initializers and all(v in set(graph.inputs) for v in graph.initializers.values() if v is not value):
        graph.inputs.append(value)  # IR version < 4 lists initializers as inputs
    if len(node.inputs) <= index:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, value)


def compare(intent: Intent, model: ir.Model, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """Worst max abs / max relative error of ``model`` against the intent over the feeds."""
    from passes.verify import NumericReference

    return NumericReference(intent.model, feeds).compare(model)
