"""Backends: compiling optimized ONNX models into libraries for targets (TVM 0.27).

Importing this package does not import TVM; building does. Public API:

- ``parse_target(spec) -> TargetSpec``: what users type for ``--target``, in TVM's dictionary form;
- ``compile_model(model, target, out_dir, ...) -> BuildResult``: build and check a library;
- ``Backend``, ``register_backend``, ``backend_for``: the registry that picks a builder per target.
"""

from backends.base import Backend, BuildRequest, BuildResult, CheckResult, backend_for, build_key, register_backend
from backends.target import PRESETS, TargetSpec, parse_target
from backends.tvm_build import TvmHostBackend, compile_model

__all__ = [
    "PRESETS",
    "Backend",
    "BuildRequest",
    "BuildResult",
    "CheckResult",
    "TargetSpec",
    "TvmHostBackend",
    "backend_for",
    "build_key",
    "compile_model",
    "parse_target",
    "register_backend",
]
