"""Shared helpers of the quantization tests: models from ONNX text with generated weights, ORT runs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from passes.calibration import Calibration
from passes.manager import PassContext, PassManager


def with_weights(text: str, arrays: dict[str, np.ndarray]) -> ir.Model:
    """Parse ONNX text whose ``{NAME}`` placeholders are filled with the arrays' values."""
    for name, array in arrays.items():
        text = text.replace("{" + name + "}", "{" + ",".join(f"{v:.6g}" for v in np.asarray(array).reshape(-1)) + "}")
    return ir.serde.deserialize_model(onnx.parser.parse_model(text))


def run_pipeline(model, pipeline, feeds, *, verify="off"):
    context = PassContext(calibration=Calibration.from_iterable(feeds))
    return PassManager(pipeline, verify=verify, strict=True, feeds=feeds[:2], context=context).run(model)


def ort_outputs(model, feed):
    proto = ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def sqnr(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)))
