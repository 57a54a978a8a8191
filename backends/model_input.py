"""Preparing a model for a backend: a private protobuf copy whose graph inputs all have fixed shapes.

Rules:
- ``model`` is an ``onnx_ir.Model`` or an ``onnx.ModelProto``; the caller's model is never modified.
- ``input_shapes`` fixes the named inputs (``fix_input_shapes``: an unknown name, a wrong rank or a
  conflict with a fixed dimension is a ``UsageError``; every dimension must be a positive integer).
- An input that still has a symbolic or unknown dimension is a ``BackendError`` naming it and the
  ``--input-shape`` to pass, with 1 suggested for each unknown dimension: compiled libraries here are
  built for one shape.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import onnx
import onnx_ir as ir

from ir.errors import BackendError, UsageError
from ir.runtime import input_specs
from ir.shapes import fix_input_shapes, has_symbolic_inputs


def prepare_model(
    model: ir.Model | onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> tuple[ir.Model, dict[str, tuple[int, ...]]]:
    """(private IR copy with fixed input shapes, {input name: shape}) for every non-initializer input."""
    copy = _private_copy(model)
    if input_shapes:
        fix_input_shapes(copy, {name: _positive_dims(name, dims) for name, dims in input_shapes.items()})
    symbolic = has_symbolic_inputs(copy)
    specs = input_specs(copy)
    if symbolic:
        name = symbolic[0]
        dims = specs[name][1]
        shown = "x".join("?" if d is None else str(d) for d in dims) or "rank unknown"
        suggested = ",".join(str(d) if isinstance(d, int) else "1" for d in dims) or "1,3,224,224"
        raise BackendError(
            f"input '{name}' has a symbolic shape ({shown}); fix it with --input-shape {name}:{suggested} "
            "(input_shapes= in the API)"
        )
    return copy, {name: tuple(int(d) for d in dims) for name, (_, dims) in specs.items()}


def _private_copy(model: ir.Model | onnx.ModelProto) -> ir.Model:
    if isinstance(model, ir.Model):
        return ir.serde.deserialize_model(ir.serde.serialize_model(model))
    if isinstance(model, onnx.ModelProto):
        # Deserializing builds new IR objects; the caller's protobuf is only read.
        return ir.serde.deserialize_model(model)
    raise UsageError(f"model must be an onnx_ir.Model or onnx.ModelProto, got {type(model).__name__}")


def _positive_dims(name: str, dims: Sequence[int]) -> list[int]:
    values = list(dims)
    if not values or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in values):
        raise UsageError(f"input_shapes['{name}'] = {values!r}: dimensions must be positive integers, e.g. [1, 3, 224, 224]")
    return [int(d) for d in values]
