"""cluster and quantize-weights state their intent (the original with each weight replaced by the
numpy decoding of what the pass stored: codebook[index], levels x block scales); the pass manager
checks the produced model against it."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import passes.cluster  # noqa: F401
import passes.quantize  # noqa: F401
from ir import runtime
from passes.calibration import Calibration
from passes.manager import PassContext, PassManager

LAYERS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3,8,8] x) => (float[2,5] y) {
    c = Conv <pads = [1,1,1,1]> (x, wc, bc)
    r = Relu(c)
    p = GlobalAveragePool(r)
    f = Flatten(p)
    m = MatMul(f, wm)
    y = Gemm <transB = 1> (m, wg, bg)
}
"""


def layers_model(seed=0) -> ir.Model:
    rng = np.random.default_rng(seed)
    proto = onnx.parser.parse_model(LAYERS)
    arrays = {"wc": rng.standard_normal((64, 3, 3, 3)), "bc": rng.standard_normal(64) * 0.1,
              "wm": rng.standard_normal((64, 48)), "wg": rng.standard_normal((5, 48)), "bg": rng.standard_normal(5)}
    for name, array in arrays.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(array.astype(np.float32), name))
    return ir.serde.deserialize_model(proto)


def run(pipeline: str):
    model = layers_model()
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    calibration = Calibration.from_iterable([runtime.generate_inputs(model, seed=10 + s) for s in range(4)])
    (record,) = PassManager(pipeline, feeds=feeds, context=PassContext(calibration=calibration)).run(model).records
    return record


@pytest.mark.parametrize("pipeline", [
    "cluster{clusters=4,min_size=16}",
    "cluster{clusters=4,min_size=16,per_channel=true}",
    "cluster{clusters=4,min_size=16,mode=float}",
    "quantize-weights{rounding=nearest,block_size=16}",
    "quantize-weights{rounding=gptq,block_size=16}",
    "quantize-weights{rounding=nearest,block_size=16,format=matmulnbits}",
    "quantize-weights{bits=2,twn=true}",
])
def test_weight_passes_compute_their_intent(pipeline):
    record = run(pipeline)
    assert record.modified and not record.rolled_back, record.failure
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-5


def test_a_wrong_decode_is_rolled_back_and_named(monkeypatch):
    """A planted bug: the per-tensor cluster decode reads the codebook one entry off."""
    from passes.cluster import cluster

    original = cluster.GraphWriter.constant

    def shifted(self, base, array):
        if base.endswith("_codebook"):
            array = np.roll(array, 1)
        return original(self, base, array)

    monkeypatch.setattr(cluster.GraphWriter, "constant", shifted)
    record = run("cluster{clusters=4,min_size=16}")
    assert record.rolled_back and "does not compute its intent" in record.failure
    assert "codebook[index]" in record.failure
