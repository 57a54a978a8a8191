"""The measured-time check of ``timing=true``: a layer stays whole when its chain runs slower.

MACs are a proxy: a chain of thin layers can cost fewer MACs and still run slower (more kernels to
launch, channel counts the blocked kernels handle badly). With ``timing=true`` each chosen layer is
timed alone against its factorized chain alone, as two one-layer ONNX Runtime sessions
(``layer_models``: the layer's input as the only graph input, its weights as initializers; the chain
made by the same ``rewrite.replace`` the pass uses), optimized as the model would be, one thread,
the median of ``RUNS`` runs after a warm-up on one random input. ``faster_only`` keeps the options
whose chain is not slower and gives the others the reason ``factorized form measured slower
(x ms vs y ms)``; the measurement is a parameter, so that the decision can be checked on given
times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

from ir import cost, runtime
from ir.constants import weight_array
from passes.decompose.candidates import Option
from passes.decompose.layers import Layer, describe
from passes.decompose.rewrite import replace

RUNS = 7


def faster_only(picked: Sequence[tuple[Layer, Option]], measure: Callable[[Layer, Option], tuple[float, float]]
                ) -> tuple[list[tuple[Layer, Option]], list[tuple[str, str]]]:
    """(the picks whose chain is not slower, (layer, reason) for the others); ``measure`` gives
    (the layer's ms, the chain's ms)."""
    kept, slower = [], []
    for layer, option in picked:
        whole_ms, chain_ms = measure(layer, option)
        if chain_ms > whole_ms:
            slower.append((layer.name, f"factorized form measured slower ({chain_ms:.3g} ms vs {whole_ms:.3g} ms)"))
        else:
            kept.append((layer, option))
    return kept, slower


def measure(layer: Layer, option: Option) -> tuple[float, float]:
    whole, chain = layer_models(layer, option)
    feed = runtime.generate_inputs(whole, seed=0)
    return median_ms(whole, feed), median_ms(chain, feed)


def layer_models(layer: Layer, option: Option) -> tuple[ir.Model, ir.Model]:
    """The layer alone, and its factorized chain alone (same input and output names)."""
    return _alone(layer), _alone(layer, option)


def _alone(layer: Layer, option: Option | None = None) -> ir.Model:
    node = layer.node
    source = node.inputs[0]
    x = ir.Value(name="x", type=source.type, shape=source.shape)
    inputs = [x]
    initializers = []
    for index, value in enumerate(node.inputs[1:], start=1):
        if value is None:
            inputs.append(None)
            continue
        array = weight_array(value)
        constant = ir.Value(name=f"w{index}", type=ir.TensorType(ir.DataType.from_numpy(array.dtype)), shape=ir.Shape(array.shape),
                            const_value=ir.tensor(np.ascontiguousarray(array), name=f"w{index}"))
        inputs.append(constant)
        initializers.append(constant)
    copy = ir.Node("", node.op_type, inputs, attributes=[ir.Attr(a.name, a.type, a.value) for a in node.attributes.values()], name="layer")
    copy.outputs[0].name = "y"
    copy.outputs[0].type, copy.outputs[0].shape = node.outputs[0].type, node.outputs[0].shape
    opsets = dict(node.graph.opset_imports) if node.graph is not None else {"": 17}
    graph = ir.Graph([x], [copy.outputs[0]], nodes=[copy], initializers=initializers, opset_imports=opsets, name="layer")
    model = ir.Model(graph, ir_version=10)
    if option is not None:
        cost.analyze(model)
        alone = describe(copy)
        assert isinstance(alone, Layer), alone  # the same node, so describe accepts it again
        replace(alone, option.method.split()[0], option.steps())
    return model


def median_ms(model: ir.Model, feed: dict[str, np.ndarray], runs: int = RUNS) -> float:
    session = runtime.session(model, optimize=True, threads=1)
    session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
