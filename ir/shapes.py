"""Shape and type inference, and fixing input shapes.

Rules:
- ``infer`` runs ONNX's shape inference (with data propagation, so Shape->Gather->Concat chains get
  values) and copies the results into the IR's values: every node output of the main graph and of
  its subgraphs (If/Loop/Scan bodies) gets the inferred type and shape, and a node output that
  inference says nothing about loses its shape (its type stays), so that a shape made stale by a
  rewrite cannot survive. Graph inputs and initializers keep theirs; model-local functions are not
  touched (inference does not report their values). Existing value_info is cleared first because
  ONNX Runtime ignores stale entries but other tools trust them. The exception: outputs of nodes of
  non-ONNX domains (``com.microsoft``'s contrib ops, custom ops), which ONNX inference cannot type,
  keep the shape the model file declares for them in its value_info, as recorded by
  ``remember_declared`` when the model was loaded (``ir.io.load`` does), as long as it is unchanged;
  inference propagates from there (without it everything after such a node loses its shape). A shape
  set on such a value in any other way cannot be confirmed and is dropped. When inference fails as a
  whole (e.g. on a model it cannot read), nothing changes.
- ``infer`` is cached: it records a fingerprint of the model's structure (every node, its inputs, its
  attributes, every initializer's tensor and the graph inputs' shapes, by identity) and returns at
  once when the fingerprint still matches, so passes that each start with ``infer`` share one run
  while nothing changed. ``invalidate`` forgets it, for a caller that edits in place what the
  fingerprint cannot see (e.g. a value inside an attribute's list); ``infer(model, cached=False)``
  always runs.
- ``fix_input_shapes`` replaces the dimensions of the named graph inputs. Naming an input that does not
  exist, or giving a rank that differs from a declared one, is a ``UsageError``. Dimensions not fixed
  stay symbolic.
- ``parse_input_shapes`` reads the command-line form ``name:1,3,224,224`` (repeatable; ``;`` separates
  several in one argument).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnx_ir as ir

from ir.errors import UsageError


def parse_input_shapes(specs: Iterable[str]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        for item in filter(None, (s.strip() for s in spec.split(";"))):
            name, sep, dims = item.rpartition(":")
            if not sep or not name:
                raise UsageError(f"--input-shape '{item}': expected NAME:D1,D2,... e.g. input:1,3,224,224")
            try:
                values = [int(d) for d in dims.split(",") if d.strip()]
            except ValueError:
                raise UsageError(f"--input-shape '{item}': dimensions must be integers") from None
            if any(v <= 0 for v in values):
                raise UsageError(f"--input-shape '{item}': dimensions must be positive")
            shapes[name] = values
    return shapes


def fix_input_shapes(model: ir.Model, shapes: Mapping[str, list[int]]) -> None:
    inputs = {v.name: v for v in model.graph.inputs}
    for name, dims in shapes.items():
        if name not in inputs:
            known = ", ".join(n for n in inputs if n not in model.graph.initializers) or "none"
            raise UsageError(f"--input-shape: the model has no input '{name}' (inputs: {known})")
        value = inputs[name]
        if value.shape is not None and len(value.shape) != len(dims):
            raise UsageError(
                f"--input-shape {name}: rank {len(dims)} given, but the input has rank {len(value.shape)} ({_dims_text(value.shape)})"
            )
        if value.shape is not None:
            for declared, given in zip(value.shape, dims):
                if isinstance(declared, int) and declared >= 0 and declared != given:
                    raise UsageError(f"--input-shape {name}: dimension {declared} is fixed in the model, got {given}")
        value.shape = ir.Shape(dims)


def has_symbolic_inputs(model: ir.Model) -> list[str]:
    """Names of non-initializer inputs whose shape is unknown or has a symbolic dimension."""
    names = []
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        if value.shape is None or not all(isinstance(d, int) and d >= 0 for d in value.shape):
            names.append(value.name)
    return names


_CACHE_KEY = "graphpress.inferred_shapes"
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def infer(model: ir.Model, *, cached: bool = True) -> ir.Model:
    """Infer shapes and types in place: node outputs of the main graph and its subgraphs."""
    if cached and model.meta.get(_CACHE_KEY) == fingerprint(model):
        return model
    proto = ir.serde.serialize_model(model)
    _keep_declared_only(model, proto.graph)
    _drop_large_tensor_data(proto.graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # inference is best-effort: models with custom ops may not infer
        return model
    _copy_inferred(model.graph, inferred.graph)
    model.meta[_CACHE_KEY] = fingerprint(model)
    return model


def invalidate(model: ir.Model) -> None:
    """Forget the cached inference: the next ``infer`` runs."""
    model.meta.pop(_CACHE_KEY, None)


def fingerprint(model: ir.Model) -> int:
    """A hash of what shapes depend on, by object identity: cheap (no serialization), and any node,
    input, attribute or initializer tensor replaced changes it."""
    parts: list = []
    for graph in (model.graph, *model.graph.subgraphs()):
        parts.append(tuple((value.name, tuple(value.shape) if value.shape is not None else None) for value in graph.inputs))
        parts.append(tuple(id(value.const_value) for value in graph.initializers.values()))
        for node in graph:
            parts.append((id(node), node.op_type, node.domain, tuple(map(id, node.inputs)), tuple(map(id, node.outputs)),
                          tuple(map(id, node.attributes.values()))))
    return hash(tuple(parts))


_DECLARED_KEY = "graphpress.declared_shape"


def remember_declared(model: ir.Model) -> None:
    """Record the shapes the model declares for outputs of non-ONNX-domain nodes of its main graph
    (call right after loading; ``infer`` keeps them while they are unchanged)."""
    for value in _custom_outputs(model.graph):
        if value.shape is not None:
            value.meta[_DECLARED_KEY] = _dims_key(value.shape)


def _custom_outputs(graph: ir.Graph):
    return (value for node in graph if node.domain not in STANDARD_DOMAINS for value in node.outputs)


def _dims_key(shape: ir.Shape) -> tuple:
    return tuple(str(dim) for dim in shape)


def _keep_declared_only(model: ir.Model, graph: onnx.GraphProto) -> None:
    """Drop every value_info entry except the declared shapes of custom-op outputs (see ``infer``)."""
    declared = {value.name for value in _custom_outputs(model.graph)
                if value.shape is not None and value.meta.get(_DECLARED_KEY) == _dims_key(value.shape)}
    kept = [info for info in graph.value_info if info.name in declared]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _copy_inferred(graph: ir.Graph, proto: onnx.GraphProto) -> None:
    """Copy the inferred types and shapes of ``proto`` (the inferred form of ``graph``) into it.

    Serialization keeps node order and attributes, so a node and its proto pair up by position and
    a subgraph by its attribute's name, whatever the names of their values.
    """
    infos = {info.name: info for info in (*proto.value_info, *proto.output)}
    if len(proto.node) != len(graph):
        return  # not the graph it was serialized from: pair nothing rather than pair wrongly
    for node, node_proto in zip(graph, proto.node):
        for value in node.outputs:
            _set_type_and_shape(value, infos.get(value.name))
        for attribute_proto in node_proto.attribute:
            attribute = node.attributes.get(attribute_proto.name)
            if attribute is None or attribute.is_ref():
                continue
            if attribute_proto.type == onnx.AttributeProto.GRAPH:
                _copy_inferred(attribute.value, attribute_proto.g)
            elif attribute_proto.type == onnx.AttributeProto.GRAPHS:
                for subgraph, subgraph_proto in zip(attribute.value, attribute_proto.graphs):
                    _copy_inferred(subgraph, subgraph_proto)


def _set_type_and_shape(value: ir.Value, info: onnx.ValueInfoProto | None) -> None:
    if info is None or not info.type.HasField("tensor_type"):
        value.shape = None
        return
    tensor_type = info.type.tensor_type
    if tensor_type.elem_type:
        value.dtype = ir.DataType(tensor_type.elem_type)
    if tensor_type.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]
        value.shape = ir.Shape(dims)
    else:
        value.shape = None


# Inference needs the values of small integer tensors (shapes, axes) but only the type of weights;
# dropping weight bytes keeps it fast and keeps models over 2 GB under protobuf's limit.
_KEEP_DATA_ELEMENTS = 1024


def _drop_large_tensor_data(graph: onnx.GraphProto) -> None:
    tensors = list(graph.initializer)
    tensors += [a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if np.prod(tensor.dims, dtype=np.int64) > _KEEP_DATA_ELEMENTS:
            tensor.ClearField("raw_data")
            for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                tensor.ClearField(field)
            tensor.ClearField("external_data")
            tensor.data_location = onnx.TensorProto.DEFAULT


def _dims_text(shape: ir.Shape) -> str:
    return "x".join(str(d) for d in shape)
