"""The steps every TVM backend shares (TVM 0.27).

Importing ONNX into Relax, compiling (tuned through ``backends.tuning`` when asked), exporting the
library atomically, running and timing it, turning TVM's failures into one-line ``BackendError``
messages, and ``TvmBackend``: the base class of the TVM backends, whose ``check`` compares a built
library's outputs with ONNX Runtime and whose ``result`` assembles the ``BuildResult``.

- Import with ``relax.frontend.onnx.from_onnx(proto, shape_dict=<fixed shapes>,
  keep_params_in_input=False)``, compile with ``tvm.compile(mod, target=Target(<dict form>))``.
- ``-mcpu`` must name a CPU LLVM knows for the triple; LLVM would silently build for ``generic``.
- The library is written to a temporary file in ``out_dir`` and renamed to ``<name>.so``, so a failed
  or interrupted build never leaves a truncated library under the final name.
- Everything TVM and LLVM print is captured; recognised warnings become notes, the rest is logged at
  debug level on this module's logger. MetaSchedule's own log goes to ``<tune-db>/logs``.
- ``measure_repeat`` > 0 times ``main`` with TVM's ``time_evaluator`` (median of that many runs, one
  call each, after a warm-up) on this machine, or on ``remote`` through ``backends.remote``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from backends.base import Artifact, Backend, BuildRequest, CheckResult, Latency, TuningSummary
from backends.native_output import Capture, captured
from backends.target import TargetSpec
from backends.tolerance import check_library
from backends.tuning import tune_and_compile
from ir import runtime
from ir.errors import BackendError, GraphpressError, ModelSaveError

_LOG = logging.getLogger(__name__)
_FOLD_HINT = "run the fold pipeline with fixed input shapes (--input-shape) first"
# Feature names that are instruction sets: a library using one the host lacks dies with SIGILL.
# (LLVM's feature lists also hold tuning hints such as 'fast-gather' that are harmless to lack.)
_ISA_PREFIXES = (
    "avx", "amx", "sse", "ssse3", "fma", "f16c", "bmi", "vaes", "vpclmulqdq", "gfni", "sha", "aes",
    "pclmul", "popcnt", "lzcnt", "movbe", "adx", "xop", "tbm", "neon", "sve", "sme", "dotprod", "i8mm",
    "bf16", "fullfp16", "fp16fml",
)  # fmt: skip
_UNTUNED_NOTE = "untuned build: TVM's default CPU pipeline applies no schedules; tune with --tune-trials N"


class TvmBackend(Backend):
    """A backend that builds with TVM: its results are labelled ``tvm-<key>``."""

    @property
    def label(self) -> str:
        return f"tvm-{self.key}"

    def check(
        self, request: BuildRequest, run: Callable[[list[np.ndarray]], Sequence[np.ndarray]], notes: list[str], *, integer: bool = False
    ) -> CheckResult | None:
        """``run``'s outputs on deterministic random inputs against ONNX Runtime's, by the float rule or,
        for a library computing in integers, the integer rule (``backends.tolerance``); None, with a
        note, when ONNX Runtime cannot run the model."""
        try:
            feeds = runtime.generate_inputs(request.model, seed=0)
            runtime.session(request.model)  # a model ONNX Runtime cannot load is not checked
        except GraphpressError as exc:
            notes.append(f"check skipped: {exc}")
            return None
        outputs = run(list(feeds.values()))
        try:
            result = check_library(request.model, feeds, outputs, rtol=request.rtol, atol=request.atol, integer=integer, notes=notes)
        except GraphpressError as exc:
            notes.append(f"check skipped: {exc}")
            return None
        if not result.passed:
            notes.append(
                f"outputs differ from ONNX Runtime: max abs error {result.max_abs_error:.3g}, max rel error "
                f"{result.max_rel_error:.3g} (worst output '{result.worst_output}'; {result.detail or f'rtol {request.rtol:g}, atol {request.atol:g}'})"
            )
        return result


def compile_module(
    tvm: Any, module: Any, target: Any, request: BuildRequest, notes: list[str], export: Any = None
) -> tuple[Any, TuningSummary | None]:
    """(executable, tuning summary): tuned through MetaSchedule when asked, else TVM's default pipeline."""
    if request.tuning is not None:
        with _meta_schedule_quiet():
            executable, summary = tune_and_compile(tvm, module, target, request.tuning, request.remote, export)
        notes.append(
            f"tuned: {summary.tasks} tasks, {summary.tasks_from_database} from the database, "
            f"{summary.trials} trials in {summary.seconds:.0f} s"
        )
        return executable, summary
    if request.target.kind in ("llvm", "c"):
        notes.append(_UNTUNED_NOTE)
    with captured_output("compile", notes):
        try:
            return tvm.compile(module, target=target), None
        except Exception as exc:  # TVM raises many unrelated types (TVMError, InternalError, ...)
            raise BackendError(f"TVM could not compile the model for '{request.target.text}': {first_line(exc)}") from exc


def measure_latency(tvm: Any, request: BuildRequest, library: Path, notes: list[str], *, runnable: bool) -> Latency | None:
    """Median latency of ``main`` over ``request.measure_repeat`` runs, here or on ``request.remote``."""
    feeds = runtime.generate_inputs(request.model, seed=0)
    if request.remote is not None:
        from backends.remote import measure_remote  # noqa: PLC0415 - RPC only when asked

        return measure_remote(library, list(feeds.values()), request.remote, repeat=request.measure_repeat).latency
    if not runnable:
        notes.append("latency not measured: this machine cannot run the library (give a remote device)")
        return None
    device = tvm.cpu()
    with captured_output("measure", []):
        machine = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
        inputs = [tvm.runtime.tensor(array, device) for array in feeds.values()]
        machine.set_input("main", *inputs)
        timer = machine.time_evaluator("invoke_stateful", device, number=1, repeat=request.measure_repeat, min_repeat_ms=0)
        seconds = list(timer("main").results)
    return Latency(float(np.median(seconds)) * 1e3, float(np.min(seconds)) * 1e3, len(seconds), "host")


def artifact(role: str, path: Path) -> Artifact:
    return Artifact(role, path, path.stat().st_size)


@contextlib.contextmanager
def _meta_schedule_quiet() -> Iterator[None]:
    """MetaSchedule prints every task's table at INFO; keep that in its log files (<tune-db>/logs).

    Its console handler takes the level of its logger when tuning starts, so a WARNING level set
    here silences the console and leaves the files complete. The terminal is not captured: a
    progress bar drawn by the caller stays visible.
    """
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    saved = logger.level
    logger.setLevel(logging.WARNING)
    # MetaSchedule rebuilds its logging with dictConfig, naming every handler already on its logger;
    # a handler someone else attached (unnamed, or not in its config) makes that fail. Detach those
    # while tuning.
    foreign = [h for h in logger.handlers if not (h.get_name() or "").startswith(logger.name + ".")]
    for handler in foreign:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(saved)
        for handler in foreign:
            logger.addHandler(handler)


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


def export_library(executable: Any, out_dir: Path, name: str, notes: list[str], fcompile: Any = None) -> Path:
    """Write ``out_dir/<name>.so`` atomically: link inside a temporary folder there, then rename.

    ``fcompile`` is TVM's linker wrapper (``tvm.support.cc.cross_compiler(...)`` for cross targets).
    """
    final = out_dir / f"{name}.so"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # A folder rather than a temporary file: the linker then creates the library with the usual
        # permissions, and the rename stays on one file system.
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out_dir) as scratch:
            temporary = Path(scratch) / final.name
            with captured_output("export", notes):
                try:
                    if fcompile is None:
                        executable.export_library(str(temporary))
                    else:
                        executable.export_library(str(temporary), fcompile=fcompile)
                except Exception as exc:  # the linker's failure arrives as whatever TVM's cc wrapper raises
                    linker = "the cross linker" if fcompile is not None else "a host C++ compiler (g++ or $CXX)"
                    raise BackendError(f"linking {final.name} failed: {first_line(exc)}; {linker} is needed") from exc
            os.replace(temporary, final)
    except OSError as exc:
        raise ModelSaveError(f"cannot write {final}: {exc.strerror or exc}") from exc
    return final


def run_library(tvm: Any, library: Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Outputs of the library's ``main`` on ``inputs``, flattened in graph order."""
    device = tvm.cpu()
    with captured_output("run", []):
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
def captured_output(phase: str, notes: list[str]) -> Iterator[None]:
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




def write_manifest(request: BuildRequest, library: Path) -> Path:
    """``<name>.json`` beside the library: the target and the inputs ``main`` takes, in order."""
    inputs = runtime.input_specs(request.model)
    manifest = {
        "library": library.name,
        "target": request.target.text,
        "tvm_target": request.target.to_tvm_dict(),
        "inputs": [{"name": name, "dtype": str(np.dtype(dtype)), "shape": list(request.input_shapes[name])} for name, (dtype, _) in inputs.items()],
    }
    path = library.with_suffix(".json")
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
