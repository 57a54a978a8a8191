"""Shape and type inference, and fixing input shapes.

Rules:
- ``infer`` runs ONNX's shape inference (with data propagation, so Shape->Gather->Concat chains get
  values) and copies the results into the IR's values; existing value_info is cleared first because
  ONNX Runtime ignores stale entries but other tools trust them.
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


def infer(model: ir.Model) -> ir.Model:
    """Infer shapes and types in place (values of the main graph; subgraphs keep theirs)."""
    proto = ir.serde.serialize_model(model)
    del proto.graph.value_info[:]
    _drop_large_tensor_data(proto.graph)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # inference is best-effort: models with custom ops may not infer
        return model
    infos = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    for node in model.graph:
        for value in node.outputs:
            info = infos.get(value.name)
            if info is None or not info.type.HasField("tensor_type"):
                continue
            tensor_type = info.type.tensor_type
            if tensor_type.elem_type:
                value.dtype = ir.DataType(tensor_type.elem_type)
            if tensor_type.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]
                value.shape = ir.Shape(dims)
    return model


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
