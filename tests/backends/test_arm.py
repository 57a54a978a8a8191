"""Specification of the aarch64 backend: cross-compiled libraries, the shipped bundle, and outputs
under qemu-aarch64-static matching ONNX Runtime on this machine.

Needs tools/setup_arm.sh (cross linker, qemu, aarch64 TVM runtime); skips, saying what is missing, without.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from real_models import builder_model, folded_ppocr

from backends import compile_model
from backends.arm_toolchain import find_toolchain
from ir.errors import BackendError

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def emulated():
    pytest.importorskip("tvm")
    toolchain = find_toolchain()
    if not toolchain.can_run:
        pytest.skip(f"aarch64 emulation unavailable (run tools/setup_arm.sh): missing {'; '.join(toolchain.missing)}")
    return toolchain


def tiny_cnn():
    from test_backends import conv_relu_gemm  # noqa: PLC0415 - the shared tiny model

    return conv_relu_gemm()


def assert_matches(result, max_rel=1e-4):
    assert result.check is not None, result.notes
    assert result.check.passed, result.notes
    assert result.check.max_rel_error < max_rel
    assert "checked under qemu-aarch64-static against ONNX Runtime on this machine" in result.notes


def test_cortex_a72_alone_builds_an_aarch64_bundle_that_matches_onnxruntime(emulated, tmp_path):
    result = compile_model(tiny_cnn(), "llvm -mcpu=cortex-a72", tmp_path, name="tiny")
    assert result.backend == "tvm-cross-aarch64"
    assert_matches(result)
    shipped = {a.path.name: a.role for a in result.artifacts}
    assert shipped == {
        "tiny.so": "library",
        "tiny.json": "manifest",
        "graphpress_run": "runner",
        "graphpress_run.cc": "runner source",
        "libtvm_runtime.so": "runtime",
        "libtvm_ffi.so": "runtime",
    }
    assert all(a.size_bytes == a.path.stat().st_size > 0 for a in result.artifacts)
    assert result.artifacts[0].path == result.library
    elf = subprocess.run(["file", "-b", str(result.library)], capture_output=True, text=True, check=False).stdout
    assert not elf or "aarch64" in elf.lower()
    manifest = json.loads((tmp_path / "tiny.json").read_text())
    assert manifest["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 3, 8, 8]}]
    assert manifest["tvm_target"]["mtriple"] == "aarch64-linux-gnu"


def test_the_bundled_runner_reports_latency_and_writes_npy_outputs(emulated, tmp_path):
    result = compile_model(tiny_cnn(), "arm-a55", tmp_path, name="m")
    np.save(tmp_path / "x.npy", np.ones((1, 3, 8, 8), dtype=np.float32))
    command = [emulated.qemu, "-L", "/usr/aarch64-linux-gnu", "./graphpress_run", "./m.so", "--repeat", "2", "x.npy"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "latency_ms median=" in done.stdout and "runs=2" in done.stdout and "outputs=1" in done.stdout
    assert np.load(tmp_path / "output_0.npy").shape == (1, 10)
    assert result.check is not None and result.check.passed


def test_the_runner_rejects_a_wrong_input_file_in_one_line(emulated, tmp_path):
    compile_model(tiny_cnn(), "rpi4", tmp_path, name="m", check=False)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    command = [emulated.qemu, "-L", "/usr/aarch64-linux-gnu", "./graphpress_run", "./m.so", "bad.npy"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == "graphpress_run: bad.npy is not a .npy file"


def test_latency_is_not_measured_under_emulation(emulated, tmp_path):
    result = compile_model(tiny_cnn(), "rpi4", tmp_path, check=False, measure_repeat=3)
    assert result.latency is None
    assert any(note.startswith("latency not measured") for note in result.notes)


def test_tuning_an_aarch64_target_is_refused_with_a_reason(emulated, tmp_path):
    with pytest.raises(BackendError, match="tuning for aarch64 is not supported yet"):
        compile_model(tiny_cnn(), "rpi4", tmp_path, tune_trials=8)


@pytest.mark.real_models
def test_ppocr_cls_folded_runs_on_aarch64_like_onnxruntime(emulated, tmp_path):
    model, shapes = folded_ppocr("ppocr-cls")
    assert_matches(compile_model(model, "rpi4", tmp_path, input_shapes=shapes, name="cls"))


def test_resnet18_runs_on_aarch64_like_onnxruntime(emulated, tmp_path):
    assert_matches(compile_model(builder_model("resnet18"), "rpi4", tmp_path, name="resnet18"))


@pytest.mark.real_models
def test_ppocr_rec_folded_runs_on_aarch64_like_onnxruntime(emulated, tmp_path):
    model, shapes = folded_ppocr("ppocr-rec")
    assert_matches(compile_model(model, "arm-a72", tmp_path, input_shapes=shapes, name="rec"))


def test_without_the_aarch64_runtime_only_the_library_is_shipped_and_the_note_says_why(tmp_path, monkeypatch):
    pytest.importorskip("tvm")
    if not find_toolchain().can_link:
        pytest.skip("the cross linker aarch64-linux-gnu-g++ is missing (run tools/setup_arm.sh)")
    monkeypatch.setenv("GRAPHPRESS_AARCH64_RUNTIME", str(tmp_path / "no-runtime"))
    result = compile_model(tiny_cnn(), "rpi4", tmp_path / "out", name="m")
    assert [a.role for a in result.artifacts] == ["library", "manifest"]
    assert result.check is None
    assert any(note.startswith("runner not shipped: missing the aarch64 TVM runtime") for note in result.notes)
    assert any(note.startswith("check skipped: cannot run aarch64 code here") for note in result.notes)
