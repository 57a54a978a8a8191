"""The CUDA backend: compile for an NVIDIA architecture, on a machine with or without a GPU.

Rules:
- Key ``cuda``: ``cuda -arch=sm_NN`` (presets ``cuda-sm80``, ``cuda-sm90``); the host code is
  ``llvm`` for this machine. TVM's default GPU pipeline (DLight schedules) is used; MetaSchedule
  tuning needs a GPU to measure on, so it needs a GPU here or a remote device.
- Compiling needs no GPU and no nvcc: the library holds CUDA C source, which is compiled for the
  GPU when the library is loaded (``tvm_callback_cuda_compile``).
- Shipped beside ``<name>.so``: ``<name>.json`` (target and inputs) and ``graphpress_cuda.py``, the
  runtime-only loading glue (``backends/cuda_loader.py``: nvcc ``--fatbin`` callback, loads
  ``libtvm_runtime_cuda.so`` first).
- The check runs on GPU 0 when this machine has one (through the glue's callback) and compares with
  ONNX Runtime on the CPU; without a GPU it is skipped with a note, as is the latency.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from backends import cuda_loader
from backends.base import BuildRequest, BuildResult, CheckResult, Latency, register_backend
from backends.tvm_build import (
    TvmBackend,
    artifact,
    compile_module,
    export_library,
    first_line,
    import_onnx,
    import_tvm,
    measure_latency,
    write_manifest,
)
from ir import runtime
from ir.errors import BackendError

GLUE_NAME = "graphpress_cuda.py"


class TvmCudaBackend(TvmBackend):
    key = "cuda"
    description = "NVIDIA GPUs ('cuda -arch=sm_80', 'cuda-sm90'; compiling needs no GPU)"

    def build(self, request: BuildRequest) -> BuildResult:
        tvm = import_tvm()
        if request.tuning is not None and request.tuning.trials > 0 and request.remote is None and not has_gpu(tvm):
            raise BackendError("tuning for CUDA needs a GPU to measure on: this machine has none (give a remote device)")
        try:
            target = tvm.target.Target(request.target.to_tvm_dict(), host={"kind": "llvm"})
        except Exception as exc:  # TVM reports bad options as ValueError or TVMError
            raise BackendError(f"TVM rejects target '{request.target.text}': {first_line(exc)}") from exc
        notes: list[str] = []
        start = time.perf_counter()
        module = import_onnx(tvm, request.model, request.input_shapes)
        executable, tuning = compile_module(tvm, module, target, request, notes)
        library = export_library(executable, request.out_dir, request.name, notes)
        manifest = write_manifest(request, library)
        glue = Path(shutil.copy2(Path(cuda_loader.__file__), request.out_dir / GLUE_NAME))
        seconds = time.perf_counter() - start
        gpu = has_gpu(tvm)
        check = None
        if request.check:
            check = self._check(tvm, request, library, notes) if gpu else None
            if not gpu:
                notes.append("check skipped: no CUDA GPU on this machine (compiled only)")
        latency: Latency | None = None
        if request.measure_repeat:
            if request.remote is not None:
                latency = measure_latency(tvm, request, library, notes, runnable=False)
            elif gpu:
                latency = self._measure(tvm, request, library)
            else:
                notes.append("latency not measured: no CUDA GPU on this machine")
        artifacts = (artifact("library", library), artifact("manifest", manifest), artifact("loading glue", glue))
        return self.result(request, library, seconds=seconds, notes=notes, artifacts=artifacts, check=check, latency=latency, tuning=tuning)

    def _machine(self, tvm: Any, request: BuildRequest, library: Path) -> tuple[Any, Any]:
        arch = str(request.target.options.get("arch") or "")
        cuda_loader.register_compile_callback(arch or "sm_" + tvm.cuda(0).compute_version.replace(".", ""))
        device = tvm.cuda(0)
        return tvm.relax.VirtualMachine(tvm.runtime.load_module(str(library)), device), device

    def _check(self, tvm: Any, request: BuildRequest, library: Path, notes: list[str]) -> CheckResult | None:
        def run(inputs):
            try:
                machine, device = self._machine(tvm, request, library)
                result = machine["main"](*(tvm.runtime.tensor(a, device) for a in inputs))
            except Exception as exc:  # TVMError, RuntimeError from nvcc
                raise BackendError(f"the CUDA library {library.name} failed to run: {first_line(exc)}") from exc
            return [result.numpy()] if hasattr(result, "numpy") else [item.numpy() for item in result]

        return self.check(request, run, notes)

    def _measure(self, tvm: Any, request: BuildRequest, library: Path) -> Latency:
        machine, device = self._machine(tvm, request, library)
        feeds = runtime.generate_inputs(request.model, seed=0)
        machine.set_input("main", *(tvm.runtime.tensor(a, device) for a in feeds.values()))
        timer = machine.time_evaluator("invoke_stateful", device, number=1, repeat=request.measure_repeat)
        seconds = list(timer("main").results)
        return Latency(float(np.median(seconds)) * 1e3, float(np.min(seconds)) * 1e3, len(seconds), "host GPU 0")


def has_gpu(tvm: Any) -> bool:
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # no CUDA runtime at all: TVM raises while probing  # noqa: BLE001
        return False


register_backend(TvmCudaBackend())
