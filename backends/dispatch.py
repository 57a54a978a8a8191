"""``compile_model``: the one entry point for every target.

It parses the target (unless given a parsed ``TargetSpec``), validates the options, picks the
backend registered for what the target builds (``backends.base.backend_for``) before any work, fixes
the input shapes (``backends.model_input``) and hands a ``BuildRequest`` to the backend.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import onnx
import onnx_ir as ir

from backends.base import BuildRequest, BuildResult, RemoteDevice, backend_for
from backends.model_input import prepare_model
from backends.target import TargetSpec, parse_target
from backends.tuning import validate_tuning
from ir.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def compile_model(
    model: ir.Model | onnx.ModelProto,
    target: str | Sequence[str] | TargetSpec,
    out_dir: str | os.PathLike[str],
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    check: bool = True,
    name: str = "model",
    rtol: float = 1e-4,
    atol: float = 1e-5,
    tune_trials: int | str | None = None,
    tune_db: str | os.PathLike[str] | None = None,
    tune_progress: Callable[[int, int], None] | None = None,
    measure_repeat: int = 0,
    remote: RemoteDevice | None = None,
) -> BuildResult:
    """Compile ``model`` for ``target`` into ``out_dir/<name>.so``; check it against ONNX Runtime.

    ``tune_trials``/``tune_db`` turn on MetaSchedule tuning (``backends.tuning``); ``tune_progress``
    receives (done, total) trials. ``measure_repeat`` > 0 measures the library's latency (median of
    that many runs) where it can run: on this machine, or on ``remote`` through TVM's RPC.
    """
    spec = target if isinstance(target, TargetSpec) else parse_target(target)
    if not _NAME.fullmatch(name):
        raise UsageError(f"library name '{name}' must be a file stem of letters, digits, '_', '.', '-' (e.g. 'model')")
    if not (rtol >= 0 and atol >= 0):
        raise UsageError(f"tolerances must be non-negative numbers, got rtol={rtol}, atol={atol}")
    if isinstance(measure_repeat, bool) or not isinstance(measure_repeat, int) or measure_repeat < 0:
        raise UsageError(f"measure_repeat must be a non-negative integer, got {measure_repeat!r}")
    tuning = validate_tuning(tune_trials, tune_db)
    if tuning is not None and tune_progress is not None:
        tuning = dataclasses.replace(tuning, progress=tune_progress)
    backend = backend_for(spec)  # before any work: an unsupported target fails at once
    prepared, shapes = prepare_model(model, input_shapes)
    request = BuildRequest(
        prepared, spec, Path(out_dir), shapes, name=name, check=check, rtol=rtol, atol=atol,
        tuning=tuning, remote=remote, measure_repeat=measure_repeat,
    )  # fmt: skip
    return backend.build(request)
