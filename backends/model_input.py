"""Preparing a model for a backend: a private IR copy whose graph inputs all have fixed shapes.

Rules:
- ``model`` is an ``onnx_ir.Model`` or an ``onnx.ModelProto``; the caller's model is never modified.
- ``input_shapes`` fixes the named inputs (``fix_input_shapes``: an unknown name, a wrong rank or a
  conflict with a fixed dimension is a ``UsageError``; every dimension must be a positive integer).
- An input that still has a symbolic or unknown dimension is a ``BackendError`` naming it and the
  ``--input-shape`` to pass (fixed dimensions filled in, 1 for a leading batch, the symbol's name or
  ``D<i>`` for the others): the libraries built here are compiled for one shape.
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
        raise BackendError(_symbolic_message(symbolic[0], specs[symbolic[0]][1]))
    return copy, {name: tuple(int(d) for d in dims) for name, (_, dims) in specs.items()}


def _symbolic_message(name: str, dims: list[int | str | None]) -> str:
    shown = ", ".join("?" if d is None else str(d) for d in dims) if dims else "rank unknown"
    suggested = ",".join(_suggested_dim(index, dim) for index, dim in enumerate(dims)) or "1,3,224,224"
    return (
        f"input '{name}' has a symbolic shape [{shown}]; give it sizes with --input-shape {name}:{suggested} "
        "(positive integers; input_shapes= in the API)"
    )


def _suggested_dim(index: int, dim: int | str | None) -> str:
    if isinstance(dim, int):
        return str(dim)
    if index == 0:
        return "1"  # a leading symbolic dimension is almost always the batch
    if isinstance(dim, str) and dim.isidentifier():
        return dim  # a readable symbol ('height') tells the user more than a placeholder
    return f"D{index}"


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
