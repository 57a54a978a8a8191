"""Specification of weight prepacking in tuning: the tuned library still matches ONNX Runtime and
keeps its interface (the layout rewrite of the bound weights is folded at compile time)."""

from __future__ import annotations

import onnx_ir as ir
import pytest
from test_backends import conv_relu_gemm

pytestmark = [pytest.mark.tvm, pytest.mark.slow]  # MetaSchedule imports tvm.s_tir.tensor_intrin (30-110 s)


def test_a_prepacked_tuned_library_matches_onnx_runtime(tmp_path):
    from backends import tvm_build  # noqa: PLC0415
    from backends.base import TuningRequest  # noqa: PLC0415
    from backends.tolerance import check_library  # noqa: PLC0415
    from backends.tuning import tune_and_compile  # noqa: PLC0415
    from ir import runtime  # noqa: PLC0415

    tvm = tvm_build.import_tvm()
    model = ir.serde.deserialize_model(conv_relu_gemm())
    module = tvm_build.import_onnx(tvm, model, {"x": (1, 3, 8, 8)})
    target = tvm.target.Target({"kind": "llvm"})
    executable, summary = tune_and_compile(tvm, module, target, TuningRequest(trials=4, database=tmp_path / "db", weight_prepack=True))
    assert summary.trials > 0
    library = tmp_path / "m.so"
    executable.export_library(str(library))
    feeds = runtime.generate_inputs(model, seed=0)
    outputs = tvm_build.run_library(tvm, library, list(feeds.values()))  # the same single input: no weights to pass
    assert check_library(model, feeds, outputs, rtol=1e-4, atol=1e-5, integer=False, notes=[]).passed
