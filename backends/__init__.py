"""Backends: compiling optimized ONNX models into libraries for targets (TVM 0.27).

Importing this package does not import TVM; building does. Public API:

- ``parse_target(spec) -> TargetSpec``: what users type for ``--target``, in TVM's dictionary form;
- ``compile_model(model, target, out_dir, ...) -> BuildResult``: build and check a library, tuned
  with ``tune_trials``/``tune_db``, measured with ``measure_repeat`` (here or on ``remote``);
- ``list_targets()``: the presets, what builds each and whether it can build on this machine;
- ``backends.report``: building one model for several targets and a per-target report;
- ``backends.remote``: measuring a library on a device through TVM's RPC;
- ``Backend``, ``register_backend``, ``backend_for``: the registry that picks a builder per target
  (a backend is one module that registers itself; the registry imports every module of this package).
"""

from backends.base import Backend, BuildRequest, BuildResult, CheckResult, backend_for, build_key, register_backend
from backends.target import PRESETS, TargetSpec, parse_target
from backends.dispatch import compile_model
from backends.host_build import TvmHostBackend
from backends.cross_build import TvmAarch64Backend
from backends.cuda_build import TvmCudaBackend
from backends.targets_table import TargetRow, list_targets

__all__ = [
    "PRESETS",
    "Backend",
    "BuildRequest",
    "BuildResult",
    "CheckResult",
    "TargetSpec",
    "TargetRow",
    "TvmAarch64Backend",
    "TvmCudaBackend",
    "TvmHostBackend",
    "list_targets",
    "backend_for",
    "build_key",
    "compile_model",
    "parse_target",
    "register_backend",
]
