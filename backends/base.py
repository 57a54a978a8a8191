"""The backend contract and registry: which builder produces a library for which target.

A backend is keyed by what it builds, derived from the target by ``build_key``:

- ``host``: CPU code for this machine (``llvm`` without a foreign triple, ``c``);
- ``cross-<arch>``: CPU code for another machine (``llvm -mtriple=aarch64-linux-gnu`` gives
  ``cross-aarch64``), which needs a cross linker and runs its check elsewhere;
- ``cuda``: GPU code.

A backend registers itself when its module is imported (``register_backend`` at module level), and
the registry imports every module of the ``backends`` package and of its subpackages on first use,
so a new backend is one new file: ``host`` (``host_build``), ``cross-aarch64`` (``cross_build``),
``cuda`` (``cuda_build``). An accelerator partitioned through BYOC would use its own target kind and
key; MetaSchedule tuning is an option of a request (a budget and a database), honoured by the
backends that support it, not a key of its own, because every target can be tuned.

Rules:
- ``backend_for(spec)`` returns the backend registered for the spec's key, or raises a one-line
  ``BackendError`` that says what is not supported yet and which builds are supported now.
- Registering a second backend for a key is a ``UsageError``; ``replace=True`` swaps it on purpose.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import onnx_ir as ir

from backends.target import TargetSpec
from ir.errors import BackendError, UsageError


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """What to build: a model (a private copy whose inputs all have fixed shapes), for a target.

    ``input_shapes`` holds the shape of every non-initializer input; the library goes to
    ``out_dir/<name>.so``; ``check`` asks for a comparison with ONNX Runtime within ``rtol``/``atol``.
    ``tuning`` asks for MetaSchedule tuning; ``measure_repeat`` > 0 for a latency measurement, on
    ``remote`` when given (TVM's RPC), else on this machine where the library can run.
    """

    model: ir.Model
    target: TargetSpec
    out_dir: Path
    input_shapes: Mapping[str, tuple[int, ...]]
    name: str = "model"
    check: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5
    tuning: TuningRequest | None = None
    remote: RemoteDevice | None = None
    measure_repeat: int = 0


@dataclasses.dataclass(frozen=True)
class TuningRequest:
    """MetaSchedule tuning: ``trials`` measured candidates in all (0: only apply what ``database`` holds).

    ``database`` is a folder holding a MetaSchedule JSON database; it is created when missing and
    grows with every run, so a model (or another model with the same operators) tuned once is not
    tuned again. ``progress(done, total)`` is called after each batch of measured candidates.
    """

    trials: int
    database: Path | None = None
    trials_per_task: int = 0  # > 0: the budget is this many trials for each task to tune (trials is ignored)
    progress: Callable[[int, int], None] | None = dataclasses.field(default=None, compare=False)
    weight_prepack: bool = False  # let tuned schedules choose the weights' layout (backends.tuning)


@dataclasses.dataclass(frozen=True)
class RemoteDevice:
    """A device reached through TVM's RPC: a server at ``host:port``, or a tracker there when ``key`` is set."""

    host: str
    port: int
    key: str | None = None
    timeout_seconds: int = 60

    @property
    def text(self) -> str:
        return f"{self.key}@{self.host}:{self.port} (tracker)" if self.key else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> RemoteDevice:
        """``HOST:PORT`` names an RPC server, ``KEY@HOST:PORT`` a tracker and the device key to ask it for."""
        key, _, address = text.rpartition("@")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or (_ and not key):
            raise UsageError(f"--rpc '{text}': expected HOST:PORT (an RPC server) or KEY@HOST:PORT (a tracker), e.g. 127.0.0.1:9190")
        return cls(host, int(port), key or None)


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A file a build produced for the device: its role (``library``, ``runner``, ``runtime``, ...)."""

    role: str
    path: Path
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class Latency:
    """Measured latency of the library's ``main``: where (``host``, ``rpc <address>``) and how."""

    median_ms: float
    min_ms: float
    runs: int
    where: str


@dataclasses.dataclass(frozen=True)
class TuningSummary:
    """What tuning did: tasks found, taken from the database, given a measured schedule now, trials, seconds.

    Tasks that neither the database nor this run's budget reached keep TVM's default schedule.
    """

    tasks: int
    tasks_from_database: int
    tasks_tuned: int
    trials: int
    seconds: float
    database: Path | None


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The built library against ONNX Runtime on the same deterministic random inputs.

    ``max_abs_error`` is the largest absolute difference over all outputs; ``max_rel_error`` is the
    largest of each output's absolute difference divided by that output's largest magnitude.
    ``rule`` says how it was judged (``backends.tolerance``): ``float64`` (both against a float64
    evaluation), ``int8`` (within one quantization step), or ``rtol/atol``: an output passes when its
    absolute difference is at most ``atol + rtol * magnitude``.
    """

    max_abs_error: float
    max_rel_error: float
    passed: bool
    rtol: float
    atol: float
    worst_output: str
    rule: str = "rtol/atol"  # or "float64" / "int8" (backends.tolerance)
    detail: str = ""
    library_vs_exact: float | None = None
    ort_vs_exact: float | None = None


@dataclasses.dataclass(frozen=True)
class IntegerSummary:
    """How a build computes its Conv/MatMul/Gemm (``backends.int8_lowering``): in integers or in float.

    ``by_op`` counts per Relax op and arithmetic (``"conv2d int"``); ``float_reasons`` gives
    (reason, count) for the quantized-looking layers left in float and for the QDQ element-wise layers
    (Add, pooling, ...) that keep float arithmetic; float layers of the ONNX model
    that were never quantized count as ``float_ops`` without a reason.
    """

    integer_ops: int
    float_ops: int
    by_op: Mapping[str, int] = dataclasses.field(default_factory=dict)
    float_reasons: tuple[tuple[str, int], ...] = ()


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """A built library: where it is, how long it took, and how it compared with ONNX Runtime.

    ``compile_seconds`` is the wall time from ONNX to the library on disk (import, compile, link);
    ``check`` is None when the check was not requested or could not run (``notes`` says why).
    ``artifacts`` lists every file shipped for the device, the library first; ``latency`` is set when
    a measurement was asked for and could run; ``tuning`` when MetaSchedule ran or was applied.
    """

    target: str
    library: Path
    size_bytes: int
    compile_seconds: float
    check: CheckResult | None
    backend: str
    notes: tuple[str, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    latency: Latency | None = None
    tuning: TuningSummary | None = None
    integer: IntegerSummary | None = None
    details: Mapping[str, object] | None = None  # backend-specific report fields (the accelerator's)


class Backend(abc.ABC):
    """Builds libraries for the targets of one build key."""

    key: ClassVar[str] = ""
    description: ClassVar[str] = ""  # what it builds, for "supported now: ..." messages

    @property
    def label(self) -> str:
        """The ``backend`` of its results (``tvm-host``)."""
        return self.key

    @abc.abstractmethod
    def build(self, request: BuildRequest) -> BuildResult:
        """Compile ``request.model`` for ``request.target``; raise ``BackendError`` on failure."""

    def result(
        self, request: BuildRequest, library: Path, *, seconds: float, notes: Sequence[str], artifacts: Sequence[Artifact] = (),
        check: CheckResult | None = None, latency: Latency | None = None, tuning: TuningSummary | None = None,
        integer: IntegerSummary | None = None,
    ) -> BuildResult:
        """The ``BuildResult`` of a library on disk; ``artifacts`` default to the library alone."""
        size = library.stat().st_size
        return BuildResult(
            target=request.target.text, library=library, size_bytes=size, compile_seconds=seconds, check=check, backend=self.label,
            notes=tuple(notes), artifacts=tuple(artifacts) or (Artifact("library", library, size),), latency=latency, tuning=tuning,
            integer=integer,
        )  # fmt: skip


_REGISTRY: dict[str, Backend] = {}
_LOADED: set[str] = set()


def _load_backends() -> None:
    """Import every module of this package and of its subpackages; each registers the backends it defines."""
    package = sys.modules[__package__]
    for module in pkgutil.walk_packages(package.__path__, prefix=f"{__package__}."):
        if module.name not in _LOADED and not module.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(module.name)
            _LOADED.add(module.name)


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    if not backend.key:
        raise UsageError(f"backend {type(backend).__name__} has no key; set the class attribute 'key'")
    if backend.key in _REGISTRY and not replace:
        existing = type(_REGISTRY[backend.key]).__name__
        raise UsageError(f"a backend for '{backend.key}' is already registered ({existing}); pass replace=True to swap it")
    _REGISTRY[backend.key] = backend
    return backend


def registered_backends() -> dict[str, Backend]:
    _load_backends()
    return dict(_REGISTRY)


def build_key(spec: TargetSpec) -> str:
    """What building ``spec`` means: ``host``, ``cross-<arch>``, ``cuda``, or the target kind."""
    if spec.is_host():
        return "host"
    if spec.is_cross():
        arch = (spec.triple or "unknown").split("-")[0]
        return f"cross-{arch}"
    return spec.kind


def backend_for(spec: TargetSpec) -> Backend:
    _load_backends()
    key = build_key(spec)
    if key in _REGISTRY:
        return _REGISTRY[key]
    supported = "; ".join(b.description for b in _REGISTRY.values()) or "none (no backend is registered)"
    if spec.is_cross():
        what = f"cross-compiling for {spec.triple}"
    elif spec.is_cuda():
        what = f"compiling for CUDA ('{spec.text}')"
    else:
        what = f"compiling for '{spec.text}'"
    raise BackendError(f"{what} is not supported yet; supported now: {supported}")
