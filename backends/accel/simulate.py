"""C simulation: the generated C++ built with the host compiler and run layer by layer.

``build_simulator(folder)`` compiles ``accel_core.cpp`` and ``host_driver.c`` (``-DACCEL_NO_MAIN``)
into ``libaccel_sim.so`` with ``g++``/``gcc``; ``Simulator`` loads it with ctypes and runs one layer's
instructions on an int8 tensor. ``build_testbench`` builds ``accel_host`` (the driver's ``main``).
A missing compiler or a failed compile is a one-line ``BackendError``.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ir.errors import BackendError


def _compiler(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackendError(f"the C simulation needs '{name}' (the host C/C++ compiler); install it (apt-get install g++)")
    return path


def _run(command: list[str], folder: Path) -> None:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        first = next((line for line in lines if "error" in line), lines[0])
        raise BackendError(f"compiling the generated C++ failed: {' '.join(command[:2])}...: {first}")


def syntax_check(folder: Path) -> None:
    """``g++ -fsyntax-only`` on the kernel and ``gcc -fsyntax-only`` on the driver."""
    _run([_compiler("g++"), "-fsyntax-only", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-label", "accel_core.cpp"], folder)
    _run([_compiler("gcc"), "-fsyntax-only", "-Wall", "-Werror", "host_driver.c"], folder)


def build_simulator(folder: Path) -> Path:
    cxx, cc = _compiler("g++"), _compiler("gcc")
    _run([cxx, "-O2", "-fPIC", "-c", "accel_core.cpp", "-o", "accel_core.pic.o"], folder)
    _run([cc, "-O2", "-fPIC", "-DACCEL_NO_MAIN", "-c", "host_driver.c", "-o", "host_driver.pic.o"], folder)
    _run([cxx, "-shared", "accel_core.pic.o", "host_driver.pic.o", "-o", "libaccel_sim.so"], folder)
    for name in ("accel_core.pic.o", "host_driver.pic.o"):
        (folder / name).unlink(missing_ok=True)  # the HLS project keeps sources and the two programs only
    return folder / "libaccel_sim.so"


def build_testbench(folder: Path) -> Path:
    _run(["make", "-s", "accel_host"] if shutil.which("make") else [_compiler("g++"), "-O2", "-x", "c++", "accel_core.cpp",
          "-x", "c++", "host_driver.c", "-o", "accel_host"], folder)
    return folder / "accel_host"


class Simulator:
    """The compiled kernel and driver, loaded in this process, with the program in ``folder``."""

    def __init__(self, folder: Path, library: Path | None = None):
        self._lib = ctypes.CDLL(str(library or folder / "libaccel_sim.so"))
        self._lib.accel_open.restype = ctypes.c_void_p
        self._lib.accel_open.argtypes = [ctypes.c_char_p]
        self._lib.accel_run_layer.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for name in ("accel_layer_input_elems", "accel_layer_output_elems"):
            getattr(self._lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._program = self._lib.accel_open(str(folder).encode())
        if not self._program:
            raise BackendError(f"the simulator could not load the program in {folder}")

    def run_layer(self, index: int, x: np.ndarray, out_shape) -> np.ndarray:
        x = np.ascontiguousarray(x, np.int8)
        if x.size != self._lib.accel_layer_input_elems(self._program, index):
            raise BackendError(f"layer {index}: input has {x.size} elements, the program expects another size")
        out = np.zeros(out_shape, np.int8)
        self._lib.accel_run_layer(self._program, index, x.ctypes.data, out.ctypes.data)
        return out
