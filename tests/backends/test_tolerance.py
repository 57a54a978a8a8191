"""Specification of the library check (``backends.tolerance``): float libraries judged against a float64
evaluation next to ONNX Runtime, int8 libraries within one quantization step of ONNX Runtime.

A correct build of PP-OCRv4 rec (6625-class softmax, ~6e-5 relative from ONNX Runtime, which a fixed
1e-4 rule once failed on other inputs) matches; a build given a model with one wrong kernel is caught.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from real_models import folded_ppocr

from backends import compile_model
from backends.float64_reference import evaluate
from backends.tolerance import FACTOR, judge_float
from ir import runtime

pytestmark = pytest.mark.tvm


def small_resnet18() -> ir.Model:
    from models.builders import build  # noqa: PLC0415

    return build("resnet18", image_size=32)


def _library_outputs(model, out_dir, shapes=None):
    """Outputs of ``model`` compiled for llvm, on the check's own inputs (seed 0)."""
    from backends.tvm_build import import_tvm, run_library  # noqa: PLC0415

    result = compile_model(model, "llvm", out_dir, input_shapes=shapes, check=False)
    feeds = runtime.generate_inputs(model, seed=0) if shapes is None else _feeds(model, shapes)
    return run_library(import_tvm(), result.library, list(feeds.values())), feeds


def _feeds(model, shapes):
    from backends.model_input import prepare_model  # noqa: PLC0415

    return runtime.generate_inputs(prepare_model(model, shapes)[0], seed=0)


def _one_channel_scaled(model: ir.Model, factor: float) -> ir.Model:
    """A copy whose fourth Conv has its first output channel's weights times ``factor``: a wrong kernel."""
    copy = ir.serde.deserialize_model(ir.serde.serialize_model(model))
    weight = [node for node in copy.graph if node.op_type == "Conv"][3].inputs[1]
    values = weight.const_value.numpy().copy()
    values[0] *= factor
    weight.const_value = ir.tensor(values, name=weight.name)
    return copy


def test_float64_evaluation_is_closer_to_the_truth_than_float32():
    model = small_resnet18()
    feeds = runtime.generate_inputs(model, seed=0)
    exact = evaluate(model, feeds)["output"]
    assert exact.dtype == np.float64
    error = np.abs(runtime.run(model, feeds)["output"] - exact).max() / np.abs(exact).max()
    assert 0 < error < 1e-5  # ONNX Runtime's float32 rounding, seen from float64


def test_rule_allows_a_small_multiple_of_onnx_runtimes_own_error():
    exact = {"y": np.linspace(-1, 1, 101)}
    ort = {"y": (exact["y"] + 1e-5).astype(np.float32)}
    near = [exact["y"] + (FACTOR - 1) * 1e-5]
    far = [exact["y"] + (FACTOR + 1) * 1e-5]
    assert judge_float(ort, exact, near).passed
    assert not judge_float(ort, exact, far).passed
    assert judge_float(ort, exact, far).rule == "float64"


def test_a_correct_resnet18_build_matches_and_says_by_which_rule(tmp_path):
    result = compile_model(small_resnet18(), "llvm", tmp_path)
    assert result.check.passed, result.notes
    assert result.check.rule == "float64"
    assert result.check.library_vs_exact <= FACTOR * max(result.check.ort_vs_exact, 2e-6)


def test_a_wrong_kernel_is_caught(tmp_path):
    model = small_resnet18()
    outputs, feeds = _library_outputs(_one_channel_scaled(model, 1.01), tmp_path)  # 1% off in one channel
    from backends.tolerance import check_library  # noqa: PLC0415

    result = check_library(model, feeds, outputs, rtol=1e-4, atol=1e-5, integer=False, notes=[])
    assert not result.passed
    assert result.library_vs_exact > 10 * FACTOR * result.ort_vs_exact  # caught by a wide margin


@pytest.mark.slow  # the default suite compiles and checks rec in tests/test_real_models.py
@pytest.mark.real_models
def test_ppocr_rec_compiled_for_llvm_matches(tmp_path):
    model, shapes = folded_ppocr("ppocr-rec")
    result = compile_model(model, "llvm", tmp_path, input_shapes=shapes, name="rec")
    assert result.check.passed, result.notes
    assert result.check.rule == "float64"
    assert result.check.max_rel_error > 1e-5  # TVM really is further from ONNX Runtime than float32 noise


def test_a_quantized_model_is_checked_by_the_integer_rule(tmp_path):
    from backends.report import TargetReport, report_dict  # noqa: PLC0415
    from passes.manager import PassManager  # noqa: PLC0415

    model = small_resnet18()
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    quantized = PassManager("fold,quantize{samples=2,verify_samples=1}", verify="off", feeds=feeds).run(model).model
    result = compile_model(quantized, "llvm", tmp_path)
    assert (result.integer.integer_ops, result.integer.float_ops) == (21, 0)  # 20 Conv + the final Gemm
    assert result.check.rule == "int8" and result.check.passed, result.notes
    data = report_dict(TargetReport("llvm", tmp_path, result))
    assert (data["integer_ops"], data["float_ops"]) == (21, 0)


def test_a_float64_evaluation_far_from_onnx_runtime_is_not_trusted(monkeypatch):
    from backends import float64_reference  # noqa: PLC0415
    from backends.tolerance import check_library  # noqa: PLC0415

    model = small_resnet18()
    feeds = runtime.generate_inputs(model, seed=0)
    ort = runtime.run(model, feeds)["output"]
    monkeypatch.setattr(float64_reference, "evaluate", lambda m, f: {"output": ort.astype(np.float64) + 0.01 * np.abs(ort).max()})
    notes: list[str] = []
    result = check_library(model, feeds, [ort], rtol=1e-4, atol=1e-5, integer=False, notes=notes)
    assert result.rule == "rtol/atol" and result.passed
    assert "float64 evaluation differs from ONNX Runtime" in notes[0]
