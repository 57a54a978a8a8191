"""The verifier run between passes.

Structural checks, always:
- every node input is a graph input, an initializer, the output of an earlier node, or a value
  captured from an enclosing graph (topological order, no dangling values);
- node names are unique (ONNX Runtime rejects duplicates, the onnx checker does not);
- the onnx checker accepts the model (skipped for models whose weights exceed protobuf's 2 GB limit).

Numerical check, for passes that promise equivalence: the model's outputs on fixed feeds are compared
with the pipeline input's outputs, computed once with ONNX Runtime (``ir.fidelity.compare``). The
relative error is the largest absolute difference divided by each output's largest magnitude; the check passes when it is at most
``tolerance``, or when the absolute difference is at most ``atol`` (float32 rounding in a rewritten
layer can exceed ``tolerance`` on an output whose values are all tiny, e.g. a sigmoid map near zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnx_ir as ir

from ir import fidelity, io, runtime
from ir.errors import InvalidModelError


def structural_problems(model: ir.Model) -> list[str]:
    problems = _order_problems(model.graph, known=set())
    names: dict[str, int] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.name and node.op_type != "Constant":
            names[node.name] = names.get(node.name, 0) + 1
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        problems.append(f"duplicate node names: {', '.join(duplicates[:5])}")
    if not problems and io.tensor_bytes(model) < io.EXTERNAL_THRESHOLD:
        try:
            onnx.checker.check_model(_checkable_proto(model))
        except onnx.checker.ValidationError as exc:
            problems.append(f"onnx checker: {_first_line(exc)}")
    return problems


def _checkable_proto(model: ir.Model) -> onnx.ModelProto:
    """The model as a proto the checker can judge in memory.

    The checker resolves external data against the working directory; external weights become graph
    inputs of the same type instead, which keeps every node's type check and needs no file.
    """
    proto = io.to_proto(model)
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        proto.graph.initializer.remove(tensor)
        proto.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return proto


def _order_problems(graph: ir.Graph, known: set[int]) -> list[str]:
    available = set(known)
    available.update(id(v) for v in graph.inputs)
    available.update(id(v) for v in graph.initializers.values())
    problems = []
    for node in graph:
        for value in node.inputs:
            if value is not None and id(value) not in available:
                where = f"node '{node.name or node.op_type}' ({node.op_type})"
                if value.producer() is None:
                    problems.append(f"{where} reads '{value.name}', which nothing produces")
                else:
                    problems.append(f"{where} reads '{value.name}' before it is produced (cycle or wrong order)")
                return problems
        for attr in node.attributes.values():
            subgraphs = [attr.value] if attr.type == ir.AttributeType.GRAPH else attr.value if attr.type == ir.AttributeType.GRAPHS else []
            for subgraph in subgraphs:
                problems += _order_problems(subgraph, available)
        available.update(id(v) for v in node.outputs)
    for value in graph.outputs:
        if id(value) not in available:
            problems.append(f"graph output '{value.name}' is not produced")
    return problems


def check_structure(model: ir.Model) -> None:
    problems = structural_problems(model)
    if problems:
        raise InvalidModelError(problems[0])


class NumericReference:
    """Outputs of the pipeline's input model on fixed feeds, to compare every later model against."""

    def __init__(self, model: ir.Model, feeds: Sequence[dict[str, np.ndarray]], *, tolerance: float = 1e-4, atol: float = 1e-6):
        self.feeds = list(feeds)
        self.tolerance = tolerance
        self.atol = atol
        sess = runtime.session(model)
        self.outputs = [runtime.run(sess, feed) for feed in self.feeds]

    def compare(self, model: ir.Model) -> dict[str, float]:
        sess = runtime.session(model)
        worst = {"max_abs": 0.0, "max_rel": 0.0}
        for feed, reference in zip(self.feeds, self.outputs):
            error = fidelity.compare(reference, runtime.run(sess, feed))
            if "missing" in error or "shape_mismatch" in error:
                return error
            worst = {k: max(worst[k], error[k]) for k in worst}
        return worst

    def passes(self, error: dict[str, float]) -> bool:
        return error.get("max_rel", float("inf")) <= self.tolerance or error.get("max_abs", float("inf")) <= self.atol


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
