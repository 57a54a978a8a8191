"""Load and run a graphpress CUDA library with TVM's runtime only. Shipped next to every CUDA library.

A TVM 0.27 CUDA library holds CUDA C source, compiled for the GPU when the library is loaded through
the global function ``tvm_callback_cuda_compile``. The compiler library (``libtvm_compiler.so``,
about 250 MB) registers one; a runtime-only deployment (``TVM_USE_RUNTIME_LIB=1``) must register
its own. This file does, with ``nvcc --fatbin``, and loads ``tvm/lib/libtvm_runtime_cuda.so`` with
``RTLD_GLOBAL`` first so that the CUDA module loader is there.

    python graphpress_cuda.py model.so [--arch sm_90] [--repeat N] [--out DIR] input_0.npy ...

runs ``main`` on GPU 0 and writes ``DIR/output_<i>.npy``. From Python: ``load(path)`` returns a
``tvm.runtime.vm.VirtualMachine``. Needs: ``apache-tvm`` and ``apache-tvm-ffi`` (0.27 / 0.1.14), nvcc on
PATH (or $NVCC), a CUDA driver. Depends on nothing else, so that it can be copied anywhere.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def compile_cuda_source(code: str, arch: str, nvcc: str | None = None) -> bytes:
    """A fatbin for ``arch`` (``sm_90``): SASS for that GPU plus PTX the driver can JIT for newer ones."""
    compiler = nvcc or os.environ.get("NVCC") or shutil.which("nvcc")
    if not compiler:
        raise RuntimeError("nvcc is not on PATH; install the CUDA toolkit or set NVCC")
    with tempfile.TemporaryDirectory(prefix="graphpress-cuda-") as scratch:
        source, fatbin = Path(scratch) / "kernels.cu", Path(scratch) / "kernels.fatbin"
        source.write_text(code)
        command = [compiler, "--fatbin", "-O3", f"-arch={arch}", "-o", str(fatbin), str(source)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"nvcc failed: {done.stderr.strip()[:500]}")
        return fatbin.read_bytes()


def register_compile_callback(arch: str) -> None:
    """Make ``tvm_callback_cuda_compile`` compile with nvcc for ``arch`` (replacing any other)."""
    import tvm_ffi  # noqa: PLC0415 - after the caller chose runtime-only or not

    @tvm_ffi.register_global_func("tvm_callback_cuda_compile", override=True)
    def _compile(code, *_target):  # TVM versions differ in passing the target
        return bytearray(compile_cuda_source(str(code), arch))


def load(library: str | os.PathLike[str], arch: str | None = None, device_id: int = 0):
    """A Relax VirtualMachine for ``library`` on GPU ``device_id``, using TVM's runtime only."""
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")  # only takes effect before tvm is first imported
    import tvm  # noqa: PLC0415

    cuda_runtime = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
    if cuda_runtime.is_file():
        ctypes.CDLL(str(cuda_runtime), mode=ctypes.RTLD_GLOBAL)
    device = tvm.cuda(device_id)
    if not device.exist:
        raise RuntimeError(f"no CUDA GPU {device_id} is visible")
    register_compile_callback(arch or _library_arch(library) or "sm_" + device.compute_version.replace(".", ""))
    from tvm.runtime.vm import VirtualMachine  # noqa: PLC0415 - tvm.relax needs the compiler library

    return VirtualMachine(tvm.runtime.load_module(str(library)), device), device


def _library_arch(library: str | os.PathLike[str]) -> str | None:
    manifest = Path(library).with_suffix(".json")
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("tvm_target", {}).get("arch")
    return None


def main(argv: list[str] | None = None) -> int:
    import numpy as np  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--arch")
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    machine, device = load(args.library, args.arch)
    import tvm  # noqa: PLC0415

    inputs = [tvm.runtime.tensor(np.load(path), device) for path in args.inputs]
    result = machine["main"](*inputs)
    outputs = [result] if hasattr(result, "numpy") else list(result)
    for index, value in enumerate(outputs):
        np.save(Path(args.out) / f"output_{index}.npy", value.numpy())
    if args.repeat > 0:
        machine.set_input("main", *inputs)
        timer = machine.time_evaluator("invoke_stateful", device, number=1, repeat=args.repeat)
        results = sorted(timer("main").results)
        print(f"latency_ms median={results[len(results) // 2] * 1e3:.4f} min={results[0] * 1e3:.4f} runs={args.repeat}")
    print(f"outputs={len(outputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
