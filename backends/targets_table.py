"""The targets a user can name, what builds each, and whether it can build (and be checked) here.

``python -m passes targets`` prints ``list_targets()``. This module does not import TVM: it looks
for the ``tvm`` package, the cross toolchain and a GPU without loading them.

Rules:
- One row per preset, in ``PRESETS`` order (an alias such as ``rpi4`` is its own row).
- ``builds_here`` is whether ``compile_model`` can produce the library on this machine; ``checks_here``
  whether it can also run it here to compare with ONNX Runtime (qemu for aarch64, a GPU for CUDA);
  ``reason`` names what is missing when either is false.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil

from backends import arm_toolchain
from backends.base import backend_for, build_key
from backends.target import PRESETS, parse_target
from ir.errors import BackendError


@dataclasses.dataclass(frozen=True)
class TargetRow:
    name: str
    text: str  # canonical --target text
    tvm: dict[str, object]  # what tvm.target.Target receives
    builder: str  # the backend's description, or why none builds it
    builds_here: bool
    checks_here: bool
    reason: str  # what is missing, "" when nothing is


def list_targets() -> list[TargetRow]:
    has_tvm = importlib.util.find_spec("tvm") is not None
    toolchain = arm_toolchain.find_toolchain()
    rows = []
    for name, text in PRESETS.items():
        spec = parse_target(text)
        try:
            builder = backend_for(spec).description
        except BackendError as exc:
            rows.append(TargetRow(name, spec.text, spec.to_tvm_dict(), str(exc), False, False, "no backend"))
            continue
        missing: list[str] = [] if has_tvm else ["apache-tvm (pip install 'graphpress[tvm]')"]
        key = build_key(spec)
        builds = has_tvm
        checks = has_tvm
        if key.startswith("cross-aarch64"):
            builds = builds and toolchain.can_link
            checks = builds and toolchain.can_run
            missing += list(toolchain.missing)
        elif key == "accel":  # C simulation: the host C/C++ compiler, not TVM
            builds = checks = shutil.which("g++") is not None and shutil.which("gcc") is not None
            missing = [] if builds else ["g++ and gcc (the C simulation's host compiler)"]
        elif key == "cuda":
            gpu = shutil.which("nvidia-smi") is not None
            checks = checks and gpu
            if not gpu:
                missing.append("a CUDA GPU (compile only here)")
        rows.append(TargetRow(name, spec.text, spec.to_tvm_dict(), builder, builds, checks, "; ".join(missing)))
    return rows


def format_targets(rows: list[TargetRow]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"{'name':<11} {'build':<6} {'check':<6} target"]
    for row in rows:
        lines.append(f"{row.name:<11} {'yes' if row.builds_here else 'no':<6} {'yes' if row.checks_here else 'no':<6} {row.text}")
        if row.reason:
            lines.append(f"{'':<25}missing: {row.reason}")
    return "\n".join(lines)
