"""The in-memory IR: a small facade over onnx_ir with graphpress's loading, saving and analyses.

Everything in graphpress works on ``onnx_ir.Model``; protobuf appears only at the edges
(ONNX Runtime sessions, the TVM importer, the onnx checker).
"""

from __future__ import annotations

import onnx_ir as _ir

from ir.errors import (
    BackendError,
    GraphpressError,
    InvalidModelError,
    ModelLoadError,
    ModelSaveError,
    PassFailedError,
    UsageError,
)

Model = _ir.Model
Graph = _ir.Graph
Node = _ir.Node
Value = _ir.Value
Tensor = _ir.Tensor
DataType = _ir.DataType

__all__ = [
    "BackendError",
    "DataType",
    "Graph",
    "GraphpressError",
    "InvalidModelError",
    "Model",
    "ModelLoadError",
    "ModelSaveError",
    "Node",
    "PassFailedError",
    "Tensor",
    "UsageError",
    "Value",
]
