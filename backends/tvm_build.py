"""Compiling ONNX models into libraries with Apache TVM 0.27, and the host CPU backend.

``compile_model`` is the entry point for every target: it parses the target, picks the backend
registered for what the target builds (``backends.base``), fixes input shapes and hands over. Every
backend planned (ARM cross-compilation, CUDA, BYOC accelerators, MetaSchedule tuning) goes through TVM,
so this module also holds the steps they share: importing ONNX into Relax, turning TVM's failures
into one-line ``BackendError`` messages, exporting atomically and checking against ONNX Runtime.

Rules of the host backend (``llvm`` without a foreign ``-mtriple``, and ``c``):
- Import with ``relax.frontend.onnx.from_onnx(proto, shape_dict=<fixed shapes>,
  keep_params_in_input=False)``, compile with ``tvm.compile(mod, target=Target(<dict form>))``.
- ``-mcpu`` must name a CPU LLVM knows for the triple; LLVM would silently build for ``generic``.
- The library is written to a temporary file in ``out_dir`` and renamed to ``<name>.so``, so a failed
  or interrupted build never leaves a truncated library under the final name.
- The check loads the written library (what ships, not the in-memory module), runs ``main`` with
  ``relax.VirtualMachine`` on deterministic random inputs and compares with ONNX Runtime
  (``backends.numeric_check``). It is skipped, with a note, when the library needs CPU features this
  machine lacks (running it would kill the process with SIGILL) or ONNX Runtime cannot run the model.
- Everything TVM and LLVM print is captured; recognised warnings become notes, the rest is logged at
  debug level on this module's logger.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from backends.base import Backend, BuildRequest, BuildResult, CheckResult, backend_for, register_backend
from backends.model_input import prepare_model
from backends.native_output import Capture, captured
from backends.numeric_check import compare_outputs
from backends.target import TargetSpec, parse_target
from ir import runtime
from ir.errors import BackendError, GraphpressError, ModelSaveError, UsageError

_LOG = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_FOLD_HINT = "run the fold pipeline with fixed input shapes (--input-shape) first"
# Feature names that are instruction sets: a library using one the host lacks dies with SIGILL.
# (LLVM's feature lists also hold tuning hints such as 'fast-gather' that are harmless to lack.)
_ISA_PREFIXES = (
    "avx", "amx", "sse", "ssse3", "fma", "f16c", "bmi", "vaes", "vpclmulqdq", "gfni", "sha", "aes",
    "pclmul", "popcnt", "lzcnt", "movbe", "adx", "xop", "tbm", "neon", "sve", "sme", "dotprod", "i8mm",
    "bf16", "fullfp16", "fp16fml",
)  # fmt: skip
_UNTUNED_NOTE = "untuned build: TVM's default CPU pipeline applies no schedules (MetaSchedule tuning is not wired in yet)"


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
) -> BuildResult:
    """Compile ``model`` for ``target`` into ``out_dir/<name>.so``; check it against ONNX Runtime."""
    spec = target if isinstance(target, TargetSpec) else parse_target(target)
    if not _NAME.fullmatch(name):
        raise UsageError(f"library name '{name}' must be a file stem of letters, digits, '_', '.', '-' (e.g. 'model')")
    if not (rtol >= 0 and atol >= 0):
        raise UsageError(f"tolerances must be non-negative numbers, got rtol={rtol}, atol={atol}")
    backend = backend_for(spec)  # before any work: an unsupported target fails at once
    prepared, shapes = prepare_model(model, input_shapes)
    request = BuildRequest(prepared, spec, Path(out_dir), shapes, name=name, check=check, rtol=rtol, atol=atol)
    return backend.build(request)


class TvmHostBackend(Backend):
    """Builds libraries for this machine's CPU with TVM's LLVM or C code generator."""

    key = "host"
    description = "host llvm targets ('llvm', 'llvm -mcpu=<a CPU this machine can run>', 'c')"

    def build(self, request: BuildRequest) -> BuildResult:
        tvm = import_tvm()
        notes: list[str] = [_UNTUNED_NOTE]
        with _native_output("target", notes):
            target = tvm_target(tvm, request.target)
        start = time.perf_counter()
        module = import_onnx(tvm, request.model, request.input_shapes)
        with _native_output("compile", notes):
            try:
                executable = tvm.compile(module, target=target)
            except Exception as exc:  # TVM raises many unrelated types (TVMError, InternalError, ...)
                raise BackendError(f"TVM could not compile the model for '{request.target.text}': {first_line(exc)}") from exc
        library = export_library(executable, request.out_dir, request.name, notes)
        seconds = time.perf_counter() - start
        result_check = self._check(tvm, target, request, library, notes) if request.check else None
        return BuildResult(
            target=request.target.text,
            library=library,
            size_bytes=library.stat().st_size,
            compile_seconds=seconds,
            check=result_check,
            backend=f"tvm-{self.key}",
            notes=tuple(notes),
        )

    def _check(
        self, tvm: Any, target: Any, request: BuildRequest, library: Path, notes: list[str]
    ) -> CheckResult | None:
        with _native_output("feature check", notes):
            lacking = lacking_host_features(tvm, target) if request.target.kind == "llvm" else []
        if lacking:
            notes.append(f"check skipped: the library uses CPU features this machine lacks ({', '.join(lacking)})")
            return None
        try:
            feeds = runtime.generate_inputs(request.model, seed=0)
            reference = runtime.run(request.model, feeds)
        except GraphpressError as exc:
            notes.append(f"check skipped: {exc}")
            return None
        try:
            outputs = run_library(tvm, library, list(feeds.values()))
        except Exception as exc:  # a runtime failure surfaces as TVMError or a plain RuntimeError
            raise BackendError(f"the built library {library.name} failed to run: {first_line(exc)}") from exc
        result = compare_outputs(reference, outputs, rtol=request.rtol, atol=request.atol)
        if not result.passed:
            notes.append(
                f"outputs differ from ONNX Runtime: max abs error {result.max_abs_error:.3g}, max rel error "
                f"{result.max_rel_error:.3g} (worst output '{result.worst_output}'; rtol {request.rtol:g}, atol {request.atol:g})"
            )
        return result


def import_tvm() -> Any:
    """The ``tvm`` module with the Relax ONNX frontend loaded, or a BackendError saying what to install."""
    try:
        import tvm  # noqa: PLC0415 - optional and slow to import: only when a build is asked for
        import tvm.relax.frontend.onnx  # noqa: F401, PLC0415 - not imported by 'import tvm'
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise BackendError(f"TVM is not installed (missing module '{missing}'); install the extra: pip install 'graphpress[tvm]'") from exc
    return tvm


def tvm_target(tvm: Any, spec: TargetSpec) -> Any:
    """``tvm.target.Target`` for ``spec``; an ``-mcpu`` LLVM does not know is a BackendError."""
    try:
        target = tvm.target.Target(spec.to_tvm_dict())
    except Exception as exc:  # TVM reports bad options as ValueError or TVMError
        raise BackendError(f"TVM rejects target '{spec.text}': {first_line(exc)}") from exc
    cpu = spec.options.get("mcpu")
    if spec.kind == "llvm" and isinstance(cpu, str):
        codegen = tvm.target.codegen
        triple = spec.triple or codegen.llvm_get_system_triple()
        if not codegen.llvm_is_valid_cpu(cpu, triple):
            raise BackendError(
                f"-mcpu={cpu} is not a CPU LLVM {codegen.llvm_version_major()} knows for {triple}; "
                f"this machine is -mcpu={codegen.llvm_get_system_cpu()}"
            )
    return target


def import_onnx(tvm: Any, model: ir.Model, shapes: Mapping[str, tuple[int, ...]]) -> Any:
    """Relax IRModule of ``model`` with weights bound; importer failures become one-line BackendErrors."""
    proto = ir.serde.serialize_model(model)
    with captured() as log:
        try:
            shape_dict = {name: list(dims) for name, dims in shapes.items()}
            return tvm.relax.frontend.onnx.from_onnx(proto, shape_dict=shape_dict, keep_params_in_input=False)
        except Exception as exc:  # the importer raises whatever its converters raise
            failure = exc
            # The importer's half-built BlockBuilder lives on in the traceback's frames, and its C++
            # destructor logs a warning; release it now, inside the capture, not at interpreter exit.
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
    _log_native("ONNX import", log)
    raise BackendError(import_failure_message(failure, log)) from failure


def import_failure_message(exc: BaseException, log: Capture) -> str:
    """Say which op the importer failed on, why, and what usually fixes it."""
    unsupported = re.search(r"not supported for frontend ONNX: (.+)", str(exc))
    if unsupported:
        return f"TVM's ONNX importer does not support {unsupported.group(1).strip()}; rewrite those ops, or {_FOLD_HINT} if they compute shapes"
    op = re.search(r"Error converting operator (\w+)", log.text)
    where = f" at {op.group(1)}" if op else ""
    return f"TVM's ONNX importer failed{where}: {first_line(exc)}; {_FOLD_HINT}"


def export_library(executable: Any, out_dir: Path, name: str, notes: list[str]) -> Path:
    """Write ``out_dir/<name>.so`` atomically: link inside a temporary folder there, then rename."""
    final = out_dir / f"{name}.so"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # A folder rather than a temporary file: the linker then creates the library with the usual
        # permissions, and the rename stays on one file system.
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out_dir) as scratch:
            temporary = Path(scratch) / final.name
            with _native_output("export", notes):
                try:
                    executable.export_library(str(temporary))
                except Exception as exc:  # the linker's failure arrives as whatever TVM's cc wrapper raises
                    raise BackendError(
                        f"linking {final.name} failed: {first_line(exc)}; a host C++ compiler (g++ or $CXX) is needed"
                    ) from exc
            os.replace(temporary, final)
    except OSError as exc:
        raise ModelSaveError(f"cannot write {final}: {exc.strerror or exc}") from exc
    return final


def run_library(tvm: Any, library: Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Outputs of the library's ``main`` on ``inputs``, flattened in graph order."""
    device = tvm.cpu()
    with _native_output("run", []):
        machine = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
        result = machine["main"](*(tvm.runtime.tensor(array, device) for array in inputs))
    return _flatten(result)


def lacking_host_features(tvm: Any, target: Any) -> list[str]:
    """Instruction-set features ``target`` enables that this machine's CPU does not have."""
    codegen = tvm.target.codegen
    host = tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})
    extra = codegen.llvm_get_cpu_features(target) - codegen.llvm_get_cpu_features(host)
    return sorted(feature for feature in extra if feature.startswith(_ISA_PREFIXES))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message that is not blank or a traceback header, at most 300 characters."""
    lines = (part.strip() for part in str(exc).splitlines())
    line = next((part for part in lines if part and not part.startswith("Traceback")), type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."


@contextlib.contextmanager
def _native_output(phase: str, notes: list[str]) -> Iterator[None]:
    try:
        with captured() as log:
            yield
    finally:
        _log_native(phase, log)
        _note_ignored_features(log, notes)


def _note_ignored_features(log: Capture, notes: list[str]) -> None:
    for line in log.lines():
        ignored = re.search(r"'([+-][\w.-]+)' is not a recognized feature", line)
        if ignored:
            note = f"LLVM ignored -mattr feature {ignored.group(1)}: not a feature of this target"
            if note not in notes:
                notes.append(note)


def _log_native(phase: str, log: Capture) -> None:
    if log.text.strip():
        _LOG.debug("TVM output during %s:\n%s", phase, "\n".join(log.lines()))


def _flatten(value: Any) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [array for item in value for array in _flatten(item)]


register_backend(TvmHostBackend())
