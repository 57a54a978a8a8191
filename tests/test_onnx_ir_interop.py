"""graphpress passes are onnx_ir in-place passes: they run inside onnx_ir's own PassManager, mixed with
onnx_ir's built-in passes, on a model loaded with ``onnx_ir.load``."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
import pytest

from ir import fidelity, runtime
from models import zoo
from passes.base import create

BN_AFTER_CONV = """
<ir_version: 8, opset_import: ["" : 17]>
bn (float[1,2,4,4] x) => (float[1,2,4,4] y) <float[2,2,1,1] w = {1.0, 0.5, -0.5, 2.0}, float[2] s = {2.0, 0.5},
    float[2] b = {0.1, -0.1}, float[2] m = {0.3, -0.2}, float[2] v = {1.5, 0.25}> {
    c = Conv(x, w)
    t = Identity(c)
    n = BatchNormalization(t, s, b, m, v)
    y = Relu(n)
}
"""


def test_graphpress_and_onnx_ir_passes_share_one_onnx_ir_pass_manager():
    model = ir.from_onnx_text(BN_AFTER_CONV)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    expected = runtime.run(ir.from_onnx_text(BN_AFTER_CONV), {"x": x})["y"]
    manager = ir.passes.PassManager([
        common.IdentityEliminationPass(),  # onnx_ir's own
        create("fold-batchnorm"),  # graphpress's
        common.RemoveUnusedNodesPass(),
        create("eliminate-dead"),
    ])
    result = manager(model)
    assert result.modified
    assert [node.op_type for node in result.model.graph] == ["Conv", "Relu"]
    np.testing.assert_allclose(runtime.run(result.model, {"x": x})["y"], expected, rtol=1e-5, atol=1e-6)


def test_a_graphpress_pass_called_on_its_own_reports_whether_it_changed_the_model():
    model = ir.from_onnx_text(BN_AFTER_CONV)
    assert create("eliminate-noop")(model).modified
    assert not create("eliminate-noop")(model).modified


@pytest.mark.real_models
@pytest.mark.skipif(not zoo.available("ppocr-cls"), reason=zoo.REAL_MODELS_HINT)
def test_a_real_model_loaded_by_onnx_ir_folds_in_onnx_ir_s_pass_manager():
    from models.ocr_data import calibration_arrays

    model = ir.load(zoo.model_path("ppocr-cls"))
    model.graph.inputs[0].shape = ir.Shape([1, 3, 48, 192])
    (feed,) = calibration_arrays("cls", 1, seed=0)
    expected = runtime.run(model, feed)
    names = ["fold-constants", "eliminate-noop", "merge-consecutive", "fold-batchnorm", "eliminate-common", "eliminate-dead"]
    before = len(model.graph)
    result = ir.passes.PassManager([create(name) for name in names], steps=3)(model)
    assert len(result.model.graph) < before / 2
    assert fidelity.compare(expected, runtime.run(result.model, feed))["max_rel"] <= 1e-4
