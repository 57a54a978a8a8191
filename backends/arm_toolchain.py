"""The aarch64 toolchain: cross linker, the board's TVM runtime, the C++ runner, and qemu to run it here.

``tools/setup_arm.sh`` installs all of it (Debian ``g++-aarch64-linux-gnu`` and ``qemu-user-static``,
the runtime libraries and headers unpacked from the aarch64 ``apache-tvm``/``apache-tvm-ffi`` wheels).

Rules:
- The runtime folder is ``$GRAPHPRESS_AARCH64_RUNTIME`` when set, else
  ``${XDG_CACHE_HOME:-~/.cache}/graphpress/aarch64/runtime``; it holds ``lib/libtvm_runtime.so``,
  ``lib/libtvm_ffi.so`` and ``include/tvm/ffi``.
- ``find_toolchain()`` never raises: each missing part is named in ``Toolchain.missing`` with what
  installs it, so builds and tests can say why they skip.
- The runner (``backends/runner/graphpress_run.cc``) is compiled once per runtime folder, into
  ``<runtime>/bin``, and copied into every bundle; its rpath is ``$ORIGIN`` so that the bundle's
  folder (library, runner, runtime libraries side by side) runs as it is on the board.
- ``run_under_qemu`` runs the runner with ``qemu-aarch64-static -L /usr/aarch64-linux-gnu`` and
  returns the outputs it wrote, in graph order.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ir.errors import BackendError

CROSS_CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64-static"
SYSROOT = Path("/usr/aarch64-linux-gnu")
RUNNER_SOURCE = Path(__file__).with_name("runner") / "graphpress_run.cc"
RUNTIME_LIBRARIES = ("libtvm_runtime.so", "libtvm_ffi.so")
_SETUP = "run tools/setup_arm.sh"


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """What was found; ``missing`` says what was not and how to get it."""

    cxx: str | None
    qemu: str | None
    runtime: Path
    missing: tuple[str, ...]

    @property
    def can_link(self) -> bool:
        return self.cxx is not None

    @property
    def can_bundle(self) -> bool:
        """Linking plus the runtime: enough to build the runner and ship a bundle."""
        return self.cxx is not None and self.has_runtime

    @property
    def can_run(self) -> bool:
        return self.can_bundle and self.qemu is not None and SYSROOT.is_dir()

    @property
    def has_runtime(self) -> bool:
        return all((self.runtime / "lib" / name).is_file() for name in RUNTIME_LIBRARIES) and (
            self.runtime / "include" / "tvm" / "ffi"
        ).is_dir()


def runtime_dir() -> Path:
    configured = os.environ.get("GRAPHPRESS_AARCH64_RUNTIME")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "graphpress" / "aarch64" / "runtime"


def find_toolchain() -> Toolchain:
    cxx, qemu, runtime = shutil.which(CROSS_CXX), shutil.which(QEMU), runtime_dir()
    missing = []
    if cxx is None:
        missing.append(f"the cross linker {CROSS_CXX} (Debian g++-aarch64-linux-gnu; {_SETUP})")
    if qemu is None:
        missing.append(f"{QEMU} (Debian qemu-user-static; {_SETUP})")
    elif not SYSROOT.is_dir():
        missing.append(f"the aarch64 C library under {SYSROOT} (Debian g++-aarch64-linux-gnu; {_SETUP})")
    found = Toolchain(cxx, qemu, runtime, ())
    if not found.has_runtime:
        missing.append(f"the aarch64 TVM runtime in {runtime} ({_SETUP}, or set GRAPHPRESS_AARCH64_RUNTIME)")
    return dataclasses.replace(found, missing=tuple(missing))


def build_runner(toolchain: Toolchain) -> Path:
    """The aarch64 runner binary, compiled against the runtime when missing or older than its source."""
    if not toolchain.can_bundle:
        raise BackendError(f"cannot build the aarch64 runner: missing {'; '.join(toolchain.missing)}")
    binary = toolchain.runtime / "bin" / "graphpress_run"
    if binary.is_file() and binary.stat().st_mtime >= RUNNER_SOURCE.stat().st_mtime:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
        temporary = Path(scratch) / binary.name
        command = [
            str(toolchain.cxx), "-std=c++17", "-O2", str(RUNNER_SOURCE),
            "-I", str(toolchain.runtime / "include"), "-L", str(toolchain.runtime / "lib"),
            "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN", "-o", str(temporary),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            error = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:300])
            raise BackendError(f"compiling the aarch64 runner failed: {error}")
        os.replace(temporary, binary)
    return binary


def bundle(toolchain: Toolchain, folder: Path) -> list[tuple[str, Path]]:
    """Copy the runner, its source and the runtime libraries into ``folder``: (role, path) pairs."""
    runner = build_runner(toolchain)
    shipped = [("runner", shutil.copy2(runner, folder / runner.name))]
    shipped.append(("runner source", shutil.copy2(RUNNER_SOURCE, folder / RUNNER_SOURCE.name)))
    for name in RUNTIME_LIBRARIES:
        shipped.append(("runtime", shutil.copy2(toolchain.runtime / "lib" / name, folder / name)))
    return [(role, Path(path)) for role, path in shipped]


def run_under_qemu(
    toolchain: Toolchain, folder: Path, library: Path, inputs: Sequence[np.ndarray], *, timeout: float = 600
) -> list[np.ndarray]:
    """Outputs of ``library`` run by the bundle's runner in ``folder`` under qemu."""
    if not toolchain.can_run:
        raise BackendError(f"cannot run aarch64 code here: missing {'; '.join(toolchain.missing)}")
    with tempfile.TemporaryDirectory(prefix="graphpress-qemu-") as scratch:
        paths = []
        for index, array in enumerate(inputs):
            paths.append(Path(scratch) / f"input_{index}.npy")
            np.save(paths[-1], np.ascontiguousarray(array))
        command = [
            str(toolchain.qemu), "-L", str(SYSROOT), str(folder / "graphpress_run"), str(library.resolve()),
            "--out", scratch, *map(str, paths),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"the aarch64 library did not finish under qemu within {timeout:.0f} s") from exc
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise BackendError(f"the aarch64 library failed under qemu: {message[:300]}")
        count = len(list(Path(scratch).glob("output_*.npy")))
        return [np.load(Path(scratch) / f"output_{index}.npy") for index in range(count)]
