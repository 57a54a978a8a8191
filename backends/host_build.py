"""The host CPU backend: libraries for this machine with TVM's LLVM or C code generator.

Rules (key ``host``: ``llvm`` without a foreign ``-mtriple``, and ``c``):
- Import, compile and export as ``backends.tvm_build`` does; tuning (``tune_trials``/``tune_db``)
  goes through ``backends.tuning``; without it CPU builds carry a note that they are untuned.
- The check loads the written library (what ships, not the in-memory module), runs ``main`` with
  ``relax.VirtualMachine`` on deterministic random inputs and compares with ONNX Runtime
  (``backends.tolerance``: the float rule, or the integer rule for a library computing in int8 after
  ``backends.int8_lowering``). It is skipped, with a note, when the library needs CPU features this
  machine lacks (running it would kill the process with SIGILL) or ONNX Runtime cannot run the model.
- ``llvm`` without ``-mcpu`` (and without a foreign triple) builds for this machine's CPU, as
  ``-mcpu=native`` would: LLVM's default CPU for x86-64 has no AVX, so the library would run
  SSE2 kernels beside ONNX Runtime's AVX2/AVX-512 ones. A note names the CPU chosen;
  ``-mcpu=x86-64`` gives a portable library.
- ``measure_repeat`` > 0 measures ``main`` here (when this machine can run it) or on ``remote``.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

from backends.base import BuildRequest, BuildResult, CheckResult, register_backend
from backends.target import TargetSpec
from backends.int8_lowering import lower_to_integer
from backends.tvm_build import (
    TvmBackend,
    captured_output,
    compile_module,
    export_library,
    first_line,
    import_onnx,
    import_tvm,
    lacking_host_features,
    measure_latency,
    run_library,
    tvm_target,
)
from ir.errors import BackendError


class TvmHostBackend(TvmBackend):
    """Builds libraries for this machine's CPU with TVM's LLVM or C code generator."""

    key = "host"
    description = "host llvm targets ('llvm', 'llvm -mcpu=<a CPU this machine can run>', 'c')"

    def build(self, request: BuildRequest) -> BuildResult:
        tvm = import_tvm()
        notes: list[str] = []
        request = dataclasses.replace(request, target=_for_this_cpu(tvm, request.target, notes))
        with captured_output("target", notes):
            target = tvm_target(tvm, request.target)
        start = time.perf_counter()
        module = import_onnx(tvm, request.model, request.input_shapes)
        module, integer = lower_to_integer(tvm, module, notes, weight_blocks=_weight_blocks(request.target))
        executable, tuning = compile_module(tvm, module, target, request, notes)
        library = export_library(executable, request.out_dir, request.name, notes)
        seconds = time.perf_counter() - start
        check = self._check(tvm, target, request, library, notes, integer.integer_ops > 0) if request.check else None
        latency = None
        if request.measure_repeat:
            latency = measure_latency(tvm, request, library, notes, runnable=not self._lacking(tvm, target, request, []))
        return self.result(request, library, seconds=seconds, notes=notes, check=check, latency=latency, tuning=tuning, integer=integer)

    def _lacking(self, tvm: Any, target: Any, request: BuildRequest, notes: list[str]) -> list[str]:
        with captured_output("feature check", notes):
            return lacking_host_features(tvm, target) if request.target.kind == "llvm" else []

    def _check(
        self, tvm: Any, target: Any, request: BuildRequest, library: Path, notes: list[str], integer: bool = False
    ) -> CheckResult | None:
        lacking = self._lacking(tvm, target, request, notes)
        if lacking:
            notes.append(f"check skipped: the library uses CPU features this machine lacks ({', '.join(lacking)})")
            return None

        def run(inputs):
            try:
                return run_library(tvm, library, inputs)
            except Exception as exc:  # a runtime failure surfaces as TVMError or a plain RuntimeError
                raise BackendError(f"the built library {library.name} failed to run: {first_line(exc)}") from exc

        return self.check(request, run, notes, integer=integer)


register_backend(TvmHostBackend())


def _for_this_cpu(tvm: Any, spec: TargetSpec, notes: list[str]) -> TargetSpec:
    """``spec`` with ``-mcpu`` set to this machine's CPU when an ``llvm`` host target names none."""
    if spec.kind != "llvm" or "mcpu" in spec.options:
        return spec
    cpu = tvm.target.codegen.llvm_get_system_cpu()
    notes.append(f"-mcpu defaulted to this machine's CPU ({cpu}); give -mcpu=x86-64 (or another CPU) for a portable library")
    return TargetSpec(spec.kind, {**spec.options, "mcpu": cpu})


def _weight_blocks(spec: TargetSpec) -> tuple[int, int] | None:
    """x86's dot-product instructions read 16 output x 4 input int8 weights (``int8_lowering``)."""
    return (16, 4) if spec.kind == "llvm" and platform.machine().lower() in ("x86_64", "amd64") else None
