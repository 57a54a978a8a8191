"""Shared fixtures: small models written as ONNX text, and helpers to run them."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest

TINY_CONV = """
<ir_version: 8, opset_import: ["" : 17]>
tiny (float[1,3,8,8] x) => (float[1,4,8,8] y) <float[4,3,3,3] w = {WEIGHTS}, float[4] b = {BIAS}> {
    t = Identity(x)
    c = Conv <pads = [1,1,1,1]> (t, w, b)
    y = Relu(c)
}
"""


def tiny_conv_text() -> str:
    weights = ",".join(str(((i * 7) % 11 - 5) / 10) for i in range(4 * 3 * 3 * 3))
    return TINY_CONV.replace("{WEIGHTS}", "{" + weights + "}").replace("{BIAS}", "{0.1, -0.2, 0.3, 0.0}")


@pytest.fixture
def tiny_model() -> ir.Model:
    """Conv+Relu behind a removable Identity, weights as initializers."""
    return ir.from_onnx_text(tiny_conv_text())


@pytest.fixture
def tiny_model_path(tmp_path, tiny_model):
    path = tmp_path / "tiny.onnx"
    ir.save(tiny_model, path)
    return path


def parse_model(text: str) -> ir.Model:
    return ir.serde.deserialize_model(onnx.parser.parse_model(text))
