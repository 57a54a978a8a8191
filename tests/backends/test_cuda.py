"""Specification of the CUDA backend: compiling for an architecture without a GPU, the shipped
runtime-only loading glue, and (only where a GPU is present) outputs matching ONNX Runtime.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from backends import compile_model
from backends import cuda_loader

pytestmark = pytest.mark.tvm


def tiny_cnn():
    from test_backends import conv_relu_gemm  # noqa: PLC0415

    return conv_relu_gemm()


@pytest.fixture(scope="module")
def tvm():
    return pytest.importorskip("tvm")


@pytest.fixture(scope="module")
def gpu(tvm):
    from backends.cuda_build import has_gpu  # noqa: PLC0415

    return has_gpu(tvm)


@pytest.mark.parametrize("target", ["cuda-sm80", "cuda -arch=sm_90"])
def test_compiles_for_an_architecture_and_ships_the_loading_glue(tvm, gpu, tmp_path, target):
    result = compile_model(tiny_cnn(), target, tmp_path, name="tiny")
    assert result.backend == "tvm-cuda"
    assert {a.role: a.path.name for a in result.artifacts} == {
        "library": "tiny.so", "manifest": "tiny.json", "loading glue": "graphpress_cuda.py",
    }  # fmt: skip
    source = result.library.read_bytes()
    assert b"__global__" in source  # CUDA C, compiled for the GPU when loaded
    manifest = json.loads((tmp_path / "tiny.json").read_text())
    assert manifest["tvm_target"]["arch"] == result.target.split("=")[1]
    if gpu:
        assert result.check is not None and result.check.passed, result.notes
    else:
        assert result.check is None
        assert "check skipped: no CUDA GPU on this machine (compiled only)" in result.notes


def test_tuning_without_a_gpu_is_refused(tvm, gpu, tmp_path):
    if gpu:
        pytest.skip("this machine has a GPU")
    from ir.errors import BackendError  # noqa: PLC0415

    with pytest.raises(BackendError, match="tuning for CUDA needs a GPU"):
        compile_model(tiny_cnn(), "cuda-sm80", tmp_path, tune_trials=4)


def test_the_glue_compiles_the_librarys_cuda_source_into_a_fatbin(tvm, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    import tvm.relax.frontend.onnx  # noqa: PLC0415, F401

    module = tvm.relax.frontend.onnx.from_onnx(tiny_cnn(), keep_params_in_input=False)
    executable = tvm.compile(module, target=tvm.target.Target({"kind": "cuda", "arch": "sm_80"}, host={"kind": "llvm"}))
    source = next(m.inspect_source() for m in _modules(executable.mod) if "__global__" in m.inspect_source())
    fatbin = cuda_loader.compile_cuda_source(source, "sm_80")
    assert fatbin[:4] == bytes.fromhex("50ed55ba")  # the fatbin magic number, little-endian


def test_the_glue_is_self_contained(tmp_path):
    glue = tmp_path / "graphpress_cuda.py"
    shutil.copy2(cuda_loader.__file__, glue)
    done = subprocess.run([sys.executable, str(glue), "--help"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0 and "runtime only" in done.stdout


def test_the_glue_runs_the_library_on_a_gpu_with_the_runtime_only(tvm, gpu, tmp_path):
    if not gpu:
        pytest.skip("no CUDA GPU on this machine: CUDA is compile-only here")
    import numpy as np  # noqa: PLC0415

    result = compile_model(tiny_cnn(), "cuda-sm80", tmp_path, name="tiny", check=False)
    np.save(tmp_path / "x.npy", np.ones((1, 3, 8, 8), dtype=np.float32))
    env = {"TVM_USE_RUNTIME_LIB": "1"}
    command = [sys.executable, "graphpress_cuda.py", result.library.name, "x.npy", "--arch", "sm_80"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={**__import__("os").environ, **env}, check=False)
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "output_0.npy").shape == (1, 10)


def _modules(module):
    yield module
    for child in module.imports:
        yield from _modules(child)
