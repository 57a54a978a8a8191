"""The aarch64 Linux backend: cross-compile with TVM, link with aarch64-linux-gnu-g++, ship a bundle.

Rules:
- Key ``cross-aarch64``: ``llvm`` targets whose triple is aarch64 Linux (``-mcpu=cortex-a72`` alone
  implies it). Other foreign triples stay unsupported.
- The library is linked with ``tvm.support.cc.cross_compiler("aarch64-linux-gnu-g++")``; a missing
  cross linker is a one-line ``BackendError`` saying how to install it.
- The bundle is ``out_dir`` itself: ``<name>.so``, the ``graphpress_run`` runner compiled against
  the aarch64 TVM runtime, its C++ source, and ``libtvm_runtime.so`` + ``libtvm_ffi.so``. Copy the
  folder to the board and run ``./graphpress_run ./<name>.so --out . input_0.npy ...``. Without the
  aarch64 runtime only the library is written, with a note.
- The check runs the bundle under ``qemu-aarch64-static`` and compares with ONNX Runtime on this
  machine; without qemu it is skipped with a note naming what is missing.
- Latency is measured only on a real device (``remote``, TVM's RPC); emulated time means nothing.
- Tuning needs measurement on the device, so it needs ``remote``; building MetaSchedule's candidates
  for aarch64 (a cross-linking builder) is not supported yet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backends import arm_toolchain
from backends.base import BuildRequest, BuildResult, CheckResult, register_backend
from backends.int8_lowering import lower_to_integer
from backends.tvm_build import TvmBackend, artifact, compile_module, export_library, import_onnx, import_tvm, measure_latency, tvm_target, write_manifest
from ir.errors import BackendError


class TvmAarch64Backend(TvmBackend):
    key = "cross-aarch64"
    description = "aarch64 Linux by cross-compilation ('rpi4', 'arm-a72', 'arm-a55', 'llvm -mcpu=cortex-a72')"

    def build(self, request: BuildRequest) -> BuildResult:
        tvm = import_tvm()
        if request.tuning is not None and request.tuning.trials > 0:
            raise BackendError(
                "tuning for aarch64 is not supported yet: MetaSchedule would need a cross-linking builder; "
                "build untuned, or tune on the board itself with a host target"
            )
        toolchain = arm_toolchain.find_toolchain()
        if not toolchain.can_link:
            raise BackendError(f"cross-compiling for {request.target.triple} needs {toolchain.missing[0]}")
        notes: list[str] = []
        target = tvm_target(tvm, request.target)
        start = time.perf_counter()
        module = import_onnx(tvm, request.model, request.input_shapes)
        module, integer = lower_to_integer(tvm, module, notes, signed_activations=True)  # sdot: int8 x int8
        executable, tuning = compile_module(tvm, module, target, request, notes)
        from tvm.support import cc  # noqa: PLC0415 - needs tvm

        fcompile = cc.cross_compiler(toolchain.cxx)
        library = export_library(executable, request.out_dir, request.name, notes, fcompile=fcompile)
        artifacts = [artifact("library", library), artifact("manifest", write_manifest(request, library))]
        if toolchain.can_bundle:
            artifacts += [artifact(role, path) for role, path in arm_toolchain.bundle(toolchain, request.out_dir)]
        else:
            notes.append(f"runner not shipped: missing {'; '.join(toolchain.missing)}")
        seconds = time.perf_counter() - start
        check = self._check(toolchain, request, library, notes, integer.integer_ops > 0) if request.check else None
        latency = None
        if request.measure_repeat:
            latency = measure_latency(tvm, request, library, notes, runnable=False)
        return self.result(
            request, library, seconds=seconds, notes=notes, artifacts=artifacts, check=check, latency=latency, tuning=tuning, integer=integer
        )

    def _check(
        self, toolchain: Any, request: BuildRequest, library: Path, notes: list[str], integer: bool = False
    ) -> CheckResult | None:
        if not toolchain.can_run:
            notes.append(f"check skipped: cannot run aarch64 code here (missing {'; '.join(toolchain.missing)})")
            return None
        result = self.check(request, lambda inputs: arm_toolchain.run_under_qemu(toolchain, request.out_dir, library, inputs), notes, integer=integer)
        if result is not None:
            notes.append("checked under qemu-aarch64-static against ONNX Runtime on this machine")
        return result


register_backend(TvmAarch64Backend())
