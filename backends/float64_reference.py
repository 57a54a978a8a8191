"""A float64 evaluation of an ONNX graph: the exact answer that float32 libraries are judged against.

Rules:
- The graph is copied with every float32 tensor made float64: initializers, ``Constant`` and
  ``ConstantOfShape`` tensors, ``Cast(to=float)`` (to double), graph inputs/outputs and value_info,
  subgraphs included. Float32 feeds are widened to float64.
- It runs on ``onnx.reference.ReferenceEvaluator`` (numpy): it takes any dtype, unlike ONNX Runtime,
  whose CPU kernels (Conv among them) exist for float32 only.
- Outputs come back in float64, keyed by output name. ``Float64Unavailable`` says why when the
  evaluator cannot run the graph (an op it lacks, a custom domain); the caller falls back to a fixed
  tolerance then.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, numpy_helper


class Float64Unavailable(Exception):
    """The graph cannot be evaluated in float64 here; the message says why."""


def evaluate(model: ir.Model | onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of ``model`` on ``feeds``, computed in float64."""
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415 - imported only for a check

    proto = ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model
    widened = widen_to_float64(proto)
    inputs = {name: (a.astype(np.float64) if a.dtype == np.float32 else a) for name, a in feeds.items()}
    try:
        outputs = ReferenceEvaluator(widened).run(None, inputs)
    except Exception as exc:  # the evaluator raises whatever its numpy kernels raise
        raise Float64Unavailable(" ".join(str(exc).split())[:200] or type(exc).__name__) from exc
    return {value.name: np.asarray(array) for value, array in zip(widened.graph.output, outputs)}


def widen_to_float64(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` computing in float64 wherever it computed in float32."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    _widen_graph(copy.graph)
    for function in copy.functions:
        for node in function.node:
            _widen_node(node)
    return copy


def _widen_graph(graph: onnx.GraphProto) -> None:
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            graph.initializer[index].CopyFrom(_widen_tensor(tensor))
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in graph.node:
        _widen_node(node)


def _widen_node(node: onnx.NodeProto) -> None:
    for attribute in node.attribute:
        if attribute.name == "to" and attribute.type == onnx.AttributeProto.INT and attribute.i == TensorProto.FLOAT:
            attribute.i = TensorProto.DOUBLE
        elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
            attribute.t.CopyFrom(_widen_tensor(attribute.t))
        elif attribute.type == onnx.AttributeProto.GRAPH:
            _widen_graph(attribute.g)
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            for graph in attribute.graphs:
                _widen_graph(graph)


def _widen_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)
