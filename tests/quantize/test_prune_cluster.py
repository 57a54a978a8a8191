"""The combined compression pipeline `prune{...},cluster{...}` end to end, from Python and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from ir import cost
from tests.quantize.helpers import ort_outputs, run_pipeline, sqnr, with_weights

REPO = Path(__file__).resolve().parents[2]

CNN = """
<ir_version: 8, opset_import: ["" : 17]>
cnn (float[1,3,16,16] x) => (float[1,10] y)
    <float[32,3,3,3] w1 = {W1}, float[32] b1 = {B1}, float[32,32,3,3] w2 = {W2}, float[32] b2 = {B2},
     float[32,32,3,3] w3 = {W3}, float[32] b3 = {B3}, float[10,32] wf = {WF}, float[10] bf = {BF}> {
    c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
    r1 = Relu (c1)
    c2 = Conv <pads = [1,1,1,1]> (r1, w2, b2)
    r2 = Relu (c2)
    c3 = Conv <pads = [1,1,1,1]> (r2, w3, b3)
    r3 = Relu (c3)
    p = GlobalAveragePool (r3)
    f = Flatten (p)
    y = Gemm <transB = 1> (f, wf, bf)
}
"""

PIPELINE = "prune{ratio=0.25},cluster{clusters=16}"


def cnn() -> ir.Model:
    rng = np.random.default_rng(0)
    shapes = {"W1": (32, 3, 3, 3), "B1": (32,), "W2": (32, 32, 3, 3), "B2": (32,), "W3": (32, 32, 3, 3), "B3": (32,), "WF": (10, 32), "BF": (10,)}
    return with_weights(CNN, {k: rng.normal(0, 0.3 if k.startswith("W") else 0.05, s) for k, s in shapes.items()})


def feeds(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def test_prune_then_cluster_through_the_pass_manager():
    model = cnn()
    reference = ort_outputs(model, feeds(1, seed=5)[0])[0]
    before = cost.analyze(model).params
    result = run_pipeline(model, PIPELINE, feeds(8), verify="each")
    prune, cluster = result.records
    assert prune.modified and cluster.modified and not result.failures
    assert cluster.stats["weights clustered"] == 2  # w2 and w3 (w1 and wf are under min_size)
    graph = result.model.graph
    assert any(n.op_type == "Gather" for n in graph)
    convs = [n for n in graph if n.op_type == "Conv"]
    assert [c.outputs[0].shape[1] for c in convs] != [32, 32, 32]  # channels were removed
    assert cost.analyze(result.model).params < before
    proto = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(proto, full_check=True)
    assert sqnr(reference, ort_outputs(proto, feeds(1, seed=5)[0])[0]) > 5
    assert result.model.metadata_props["graphpress.pipeline"] == PIPELINE


def test_prune_then_cluster_from_the_command_line(tmp_path):
    path = tmp_path / "cnn.onnx"
    ir.save(cnn(), path)
    np.save(tmp_path / "calib.npy", np.concatenate([f["x"] for f in feeds(8)]))
    command = [sys.executable, "-m", "passes", "optimize", str(path), "--passes", PIPELINE, "--calib", str(tmp_path / "calib.npy"),
               "-o", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pipeline"] == PIPELINE
    model = onnx.load(tmp_path / "out" / "cnn.onnx")
    assert any(n.op_type == "Gather" for n in model.graph.node)
    ort_outputs(model, feeds(1)[0])
