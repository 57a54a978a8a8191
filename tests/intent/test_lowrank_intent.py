"""decompose and separable state their intent: the original with each factored layer's weight
replaced by the one kernel its factors compose to (numpy), with the last factor's bias; the pass
manager checks the factored model against it and rolls back a rewrite that writes a factor wrong."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import passes.decompose.rewrite as rewrite
from ir import io, runtime
from passes.calibration import Calibration
from passes.decompose.intent import compose
from passes.manager import PassContext, PassManager
from tests.decompose.helpers import chain_model, correlated_feeds

# Asymmetric pads, a stride and a dilation on one axis each: what the per-axis split must honour.
CONVS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,16,16] x) => (float[1,12,9,13] y) {
    a = Conv <pads = [1,0,2,1], strides = [2,1], dilations = [1,2]> (x, wa, ba)
    ra = Relu(a)
    y = Conv <pads = [1,1,1,1]> (ra, wb, bb)
}
"""
DENSE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4,24] x) => (float[4,12] y) {
    h = Gemm <alpha = 0.5, beta = 2.0> (x, w1, b1)
    r = Relu(h)
    y = MatMul(r, w2)
}
"""


def with_arrays(text: str, arrays: dict[str, np.ndarray]) -> ir.Model:
    proto = onnx.parser.parse_model(text)
    for name, array in arrays.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(array, np.float32), name))
    return ir.serde.deserialize_model(proto)


def with_weights(text: str, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> ir.Model:
    rng = np.random.default_rng(seed)
    scale = {name: 0.1 if len(shape) == 1 else np.sqrt(2.0 / np.prod(shape[1:])) for name, shape in shapes.items()}
    return with_arrays(text, {name: rng.standard_normal(shape) * scale[name] for name, shape in shapes.items()})


def convs_model() -> ir.Model:
    return with_weights(CONVS, {"wa": (24, 8, 3, 3), "ba": (24,), "wb": (12, 24, 3, 3), "bb": (12,)})


def dense_model() -> ir.Model:
    return with_weights(DENSE, {"w1": (24, 20), "b1": (20,), "w2": (20, 12)})


def dense_feeds(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Inputs in a 6-dimensional subspace (what a data-aware factorization exploits), plus noise."""
    mix = np.random.default_rng(1234).standard_normal((6, 24))
    rng = np.random.default_rng(seed)
    return [{"x": (rng.standard_normal((4, 6)) @ mix + 0.05 * rng.standard_normal((4, 24))).astype(np.float32)} for _ in range(n)]


def run(model: ir.Model, pipeline: str, *, data: bool):
    """The pipeline's single record; ``data``: real (not generated) calibration data, so the ranks
    are chosen on it and the chains' last layers are refit."""
    if model.graph.inputs[0].shape[0] == 4:
        feeds, calibration = dense_feeds(2, seed=5), dense_feeds(20, seed=6)
    else:
        feeds, calibration = correlated_feeds(2, seed=5), correlated_feeds(20, seed=6)
    context = PassContext(calibration=Calibration.from_iterable(calibration)) if data else None
    result = PassManager(pipeline, feeds=feeds, context=context).run(model)
    (record,) = result.records
    return record, result


LOW_RANK = [
    (convs_model, "decompose{energy=0.8,method=svd,round=1}"),
    (convs_model, "decompose{energy=0.8,method=spatial-svd,round=1,allow_more_macs=true}"),
    (convs_model, "decompose{energy=0.8,method=tucker,round=1,allow_more_macs=true}"),
    (convs_model, "decompose{energy=0.8,method=cp,round=1,candidates=4,allow_more_macs=true}"),
    (chain_model, "decompose{energy=0.8,method=cp,round=1,candidates=4,allow_more_macs=true}"),  # 1x3 dilated, pads [0,2,0,2]
    (chain_model, "decompose{macs=0.3}"),
    (dense_model, "decompose{energy=0.8,method=svd,round=1}"),
    (convs_model, "separable{rank=2,allow_more_macs=true}"),
    (convs_model, "separable{rank=2,order=pw-dw,allow_more_macs=true}"),
]


@pytest.mark.parametrize("data", [False, True], ids=["data-free", "refit"])
@pytest.mark.parametrize(("build", "pipeline"), LOW_RANK)
def test_factored_model_computes_its_intent(build, pipeline, data):
    record, result = run(build(), pipeline, data=data)
    assert record.modified and not record.rolled_back, record.failure
    method = pipeline.split("method=")[1].split(",")[0] if "method=" in pipeline else "separable" if "separable" in pipeline else ""
    assert record.layers and all(row["method"].startswith(method) for row in record.layers)
    assert record.intent == "verified"
    assert record.intent_error["max_rel"] <= 1e-5
    assert result.final_error["max_rel"] > 1e-3  # lossy: the intent is not just the input model
    if data and "pw-dw" not in pipeline:
        assert record.stats["layers refit"] >= 1  # the intent composed the refit weights


def test_composing_a_kh_by_1_then_1_by_kw_pair_equals_one_conv_with_the_original_pads():
    """The per-axis split with asymmetric pads, a stride and a dilation, run by ONNX Runtime."""
    rng = np.random.default_rng(3)
    vertical, horizontal = rng.standard_normal((5, 3, 3, 1)), rng.standard_normal((4, 5, 1, 3))
    pair = with_arrays("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,3,9,10] x) => (float[1,4,5,8] y) {
            v = Conv <pads = [1,0,2,0], strides = [2,1], dilations = [1,1]> (x, wv)
            y = Conv <pads = [0,2,0,0], strides = [1,1], dilations = [1,2]> (v, wh)
        }""", {"wv": vertical, "wh": horizontal})
    one = with_arrays("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,3,9,10] x) => (float[1,4,5,8] y) {
            y = Conv <pads = [1,2,2,0], strides = [2,1], dilations = [1,2]> (x, w)
        }""", {"w": compose("spatial-svd", [vertical.astype(np.float32), horizontal.astype(np.float32)], inputs=3)})
    x = {"x": rng.standard_normal((1, 3, 9, 10)).astype(np.float32)}
    a, b = runtime.run(pair, x)["y"], runtime.run(one, x)["y"]
    assert a.shape == b.shape == (1, 4, 5, 8)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def planted(monkeypatch, fault):
    """Plant ``fault(base name, array) -> array`` in the initializers the rewrite writes."""
    original = rewrite.add_initializer
    monkeypatch.setattr(rewrite, "add_initializer", lambda graph, base, array: original(graph, base, fault(base, array)))


def drop_bias(base, array):
    return np.zeros_like(array) if base.endswith("_b") else array


def flip_kernel_layer(base, array):
    """The factor holding a kernel written upside down (a correlation kernel written as a convolution's)."""
    return np.ascontiguousarray(array[:, :, ::-1]) if array.ndim == 4 and array.shape[2] > 1 else array


@pytest.mark.parametrize("fault", [drop_bias, flip_kernel_layer])
@pytest.mark.parametrize("pipeline", [p for build, p in LOW_RANK if build is not dense_model])
def test_a_rewrite_that_writes_a_factor_wrong_is_rolled_back_and_named(monkeypatch, pipeline, fault):
    planted(monkeypatch, fault)
    record, result = run(convs_model(), pipeline, data=False)
    assert record.rolled_back and record.intent is None
    assert "does not compute its intent" in record.failure
    assert "composition of its factors" in record.failure
    assert not any("/" in node.name for node in result.model.graph)  # the input model, unfactored


def test_a_gemm_chain_that_loses_alpha_is_rolled_back(monkeypatch):
    """The dense chain's first factor written without the folded alpha (0.5): twice too large."""
    planted(monkeypatch, lambda base, array: array * 2 if base.endswith("svd_0_w") else array)
    record, _ = run(dense_model(), "decompose{energy=0.8,method=svd,round=1}", data=False)
    assert record.rolled_back and "does not compute its intent" in record.failure


@pytest.mark.parametrize("pipeline", ["decompose{macs=0.3}", "separable{macs=0.3}"])
def test_the_report_says_intent_verified(tmp_path, pipeline):
    from passes.app.cli import main

    source = tmp_path / "convs.onnx"
    io.save(convs_model(), source)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.stack([f["x"] for f in correlated_feeds(20, seed=6)]))
    out = tmp_path / "out"
    assert main(["optimize", str(source), "--passes", pipeline, "--calib", str(calib), "-o", str(out)]) == 0
    (record,) = [r for r in json.loads((out / "report.json").read_text())["passes"] if r["name"] == pipeline.split("{")[0]]
    assert record["modified"] and not record["rolled_back"], record["failure"]
    assert record["intent"] == "verified"
    assert "intent verified" in (out / "report.md").read_text()
