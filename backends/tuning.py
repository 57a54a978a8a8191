"""MetaSchedule tuning of a Relax module, with a persistent database reused across runs and models.

TVM 0.27's default CPU pipeline schedules nothing (FACTS.md: about 30x slower than ONNX Runtime), so
tuning is what makes a CPU library fast. This module wraps ``tvm.s_tir.meta_schedule``.

Rules:
- Tasks are the fused TIR functions of the module (``extract_tasks``, structural equality). A task
  whose workload already has a tuning record in the database is not tuned again: it is taken from the
  database. The trial budget goes to the remaining tasks only; ``trials=0`` tunes nothing and
  applies what the database holds.
- The database is a MetaSchedule JSON database in ``database`` (created when missing). Without one,
  a temporary folder is used and dropped after the build.
- ``trials_per_task`` > 0 sets the budget to that many trials for each task left to tune.
- Each batch measures the budget divided by the number of tasks (8 to 64 candidates), so that a
  small budget still reaches most tasks rather than spending itself on the first; a small budget
  also gets a smaller evolutionary search per batch (``_search_strategy``).
- Candidates are built in this process (``_in_process_builder``) and measured by MetaSchedule's
  local runner, or on the remote device.
- ``progress(done, total)`` is called after every measured batch (``total`` is the trial budget).
- Measurement runs locally in MetaSchedule's worker processes, or on a remote device through an RPC
  tracker (``RemoteDevice`` with a ``key``); cross targets need the remote device.
- A CPU target without ``-num-cores`` gets this machine's physical core count (MetaSchedule needs it).
- The library is compiled with ``compile_relax``: tuned functions from the database, the rest with
  the default pipeline (DLight fallbacks on GPUs).
- ``weight_prepack`` (off by default: it made one 3x3 conv 2.6x faster at 32 trials, but ResNet-50
  at 8 trials per task slower, docs/int8_tvm.md) marks the constant weights of every fused function layout-free
  (``AttachAttrLayoutFreeBuffers``) before tasks are extracted, so that MetaSchedule's ``RewriteLayout``
  may store them in the layout its tiles read; after the database is applied, the rewrite is split
  off (``SplitLayoutRewritePreproc``) and folded into the constants at compile time, so the library's
  interface does not change (the weights are bound, not inputs).
"""

from __future__ import annotations

import contextlib
import re
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends.base import RemoteDevice, TuningRequest, TuningSummary
from ir.errors import BackendError, UsageError

_TRIALS_PER_BATCH = 64
_MIN_BATCH = 8


def validate_tuning(trials: int | str | None, database: str | Path | None) -> TuningRequest | None:
    """A ``TuningRequest`` for ``--tune-trials``/``--tune-db``, or None when neither is given.

    ``trials`` is the whole budget (an integer) or ``"Nx"``: N trials for each task to tune."""
    if trials is None and database is None:
        return None
    per_task = 0
    if isinstance(trials, str) and re.fullmatch(r"[0-9]+x", trials.strip()):
        per_task, trials = int(trials.strip()[:-1]), 0
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 0):
        raise UsageError(f"--tune-trials must be a non-negative integer (the whole budget) or Nx (N trials per task), got {trials!r}")
    path = Path(database) if database is not None else None
    if path is not None and path.exists() and not path.is_dir():
        raise UsageError(f"--tune-db {path} is a file; give a folder (it is created when missing)")
    return TuningRequest(trials=trials or 0, database=path, trials_per_task=per_task)


def tune_and_compile(
    tvm: Any, module: Any, target: Any, tuning: TuningRequest, remote: RemoteDevice | None = None, export: Any = None
) -> tuple[Any, TuningSummary]:
    """(executable compiled with the tuned schedules, what tuning did)."""
    ms = _meta_schedule()
    from backends import x86_intrinsics  # noqa: PLC0415 - needs tvm

    x86_intrinsics.register()  # before any task is extracted or any tuned schedule is applied
    target = _with_core_count(tvm, target)
    start = time.perf_counter()
    with _database_folder(tuning.database) as folder:
        database = ms.database.JSONDatabase(work_dir=str(folder))
        tasks = ms.relax_integration.extract_tasks(_fused(tvm, module, target, tuning.weight_prepack), target)
        pending = [task for task in tasks if not _has_record(database, task, target)]
        trials = 0
        if tuning.trials_per_task > 0:
            # A whole-model budget spread over a count of tasks not known in advance leaves some
            # tasks without a single measured candidate; an untuned conv runs TVM's naive default
            # schedule, which alone can take most of the model's time (int8 ResNet-50: 613 ms of 1.9 s).
            tuning = dataclasses.replace(tuning, trials=tuning.trials_per_task * len(pending))
        if pending and tuning.trials > 0:
            trials = _tune(ms, pending, target, folder, database, tuning, remote, export)
        try:
            if tuning.weight_prepack:
                executable = _compile_prepacked(tvm, database, module, target)
            else:
                executable = ms.relax_integration.compile_relax(database, module, target, params=None)
        except Exception as exc:  # TVM raises TVMError, InternalError, ValueError...
            raise BackendError(f"TVM could not compile the tuned model for '{target}': {_first_line(exc)}") from exc
    summary = TuningSummary(
        tasks=len(tasks),
        tasks_from_database=len(tasks) - len(pending),
        tasks_tuned=sum(_has_record(database, task, target) for task in pending) if trials else 0,
        trials=trials,
        seconds=time.perf_counter() - start,
        database=tuning.database,
    )
    return executable, summary


def _tune(
    ms: Any, tasks: list[Any], target: Any, folder: Path, database: Any, tuning: TuningRequest,
    remote: RemoteDevice | None, export: Any,
) -> int:  # fmt: skip
    strategy = _search_strategy(ms, tuning.trials, len(tasks))
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, work_dir=str(folder), strategy=strategy, seed=0)
    counter = _ProgressCallback(ms, tuning.trials, tuning.progress)
    builder = _in_process_builder(ms, export)
    runner: Any = "local"
    if remote is not None:
        if not remote.key:
            raise UsageError(f"tuning on a remote device needs an RPC tracker and a device key (--rpc-key), got {remote.text}")
        config = ms.runner.RPCConfig(
            tracker_host=remote.host, tracker_port=remote.port, tracker_key=remote.key,
            session_timeout_sec=remote.timeout_seconds,
        )  # fmt: skip
        runner = ms.runner.RPCRunner(rpc_config=config)
    try:
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=str(folder),
            max_trials_global=tuning.trials,
            num_trials_per_iter=_batch_size(tuning.trials, len(contexts)),
            builder=builder,
            runner=runner,
            database=database,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), counter],
        )
    except Exception as exc:
        raise BackendError(f"MetaSchedule tuning failed: {_first_line(exc)}") from exc
    return counter.done


def _search_strategy(ms: Any, trials: int, tasks: int) -> Any:
    """MetaSchedule's evolutionary search, its effort scaled to the trials each task will get.

    The default search evolves 512 candidates for 4 generations with the cost model before each batch
    it measures: right when a task gets hundreds of trials, but on 2 cores it costs about a minute
    per batch, so a small budget (a few batches per task) spent most of its time searching rather
    than measuring. Up to 32 trials per task the population is 128 and it evolves 2 generations.
    """
    if trials >= 32 * max(tasks, 1):
        return "evolutionary"
    return ms.search_strategy.EvolutionarySearch(population_size=128, init_min_unmeasured=32, genetic_num_iters=2)


def _in_process_builder(ms: Any, export: Any) -> Any:
    """A MetaSchedule builder that compiles candidates in this process, one after the other.

    MetaSchedule's LocalBuilder starts a fresh pool of worker processes for every batch (against a
    memory leak in long-lived workers), and each worker spends about 15 s importing TVM before its
    first build: on a 2-core machine that start-up, not building, was most of the tuning time (a
    whole-model budget spent minutes per task). Candidates are small TIR functions that compile in a
    fraction of a second, so building them here is far faster; a candidate that fails to build is
    reported as a failed build, as the LocalBuilder would.
    """
    from tvm.ir.utils import derived_object  # noqa: PLC0415
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func  # noqa: PLC0415

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    path = _worker_func(None, export, item.mod, item.target, _serialize_params(item.params))
                    results.append(ms.builder.BuilderResult(path, None))
                except Exception as exc:  # noqa: BLE001 - TVM raises many types; the candidate is dropped
                    results.append(ms.builder.BuilderResult(None, f"in-process build failed: {_first_line(exc)}"))
            return results

    return InProcessBuilder()


def _compile_prepacked(tvm: Any, database: Any, module: Any, target: Any) -> Any:
    """``compile_relax`` with layout-free weights: apply the database, fold the weights' layout rewrite."""
    relax = tvm.relax

    @tvm.transform.module_pass(opt_level=3)
    def pipeline(mod: Any, _ctx: Any) -> Any:
        mod = _fused(tvm, mod, target, True)
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        mod = tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(), relax.transform.FoldConstant()])(mod)
        try:
            lowering = [*relax.pipeline.dataflow_lower_passes(target), *relax.pipeline.finalize_passes(target)]
        except (ValueError, AttributeError):  # TVM 0.27's llvm dispatch lacks them; compile_relax's own list
            from tvm.relax.backend.cpu_generic import pipeline as cpu  # noqa: PLC0415

            lowering = [*cpu.dataflow_lower_passes(target), *cpu.finalize_passes(target)]
        return tvm.transform.Sequential(lowering)(mod)

    with target, database, tvm.transform.PassContext(opt_level=3):
        return relax.build(module, target=target, relax_pipeline=pipeline)


def _fused(tvm: Any, module: Any, target: Any, weight_prepack: bool = False) -> Any:
    """The module as ``compile_relax`` sees it before applying the database: legalized and fused.

    Tasks must be extracted from this form, or their workloads would never match what is looked up.
    """
    relax = tvm.relax
    try:
        dispatch = list(relax.pipeline.library_dispatch_passes(target))
    except (ValueError, AttributeError):
        dispatch = []
    passes = [
        *dispatch,
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        *([relax.transform.AttachAttrLayoutFreeBuffers()] if weight_prepack else []),
    ]
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(passes)(module)


def _with_core_count(tvm: Any, target: Any) -> Any:
    """MetaSchedule refuses CPU targets without ``num-cores``; default it to this machine's physical cores."""
    if target.kind.name != "llvm" or "num-cores" in target.attrs:
        return target
    import psutil  # noqa: PLC0415 - a MetaSchedule dependency

    config = dict(target.export())
    config["num-cores"] = psutil.cpu_count(logical=False) or 1
    return tvm.target.Target(config)


def _batch_size(trials: int, tasks: int) -> int:
    """Trials per batch: the budget spread over the tasks (8..64), so a small budget tunes many tasks."""
    return max(1, min(trials, _TRIALS_PER_BATCH, max(_MIN_BATCH, trials // max(tasks, 1))))


def _has_record(database: Any, task: Any, target: Any) -> bool:
    return any(database.query_tuning_record(mod, target, task.task_name) is not None for mod in task.dispatched)


def _meta_schedule() -> Any:
    try:
        from tvm.s_tir import meta_schedule  # noqa: PLC0415 - needs tvm, psutil and xgboost
        import xgboost  # noqa: F401, PLC0415 - the cost model; fail here, not in a worker
    except ImportError as exc:
        raise BackendError(
            f"MetaSchedule tuning needs the module '{exc.name}'; install: pip install psutil xgboost-cpu"
        ) from exc
    return meta_schedule


@contextlib.contextmanager
def _database_folder(database: Path | None) -> Iterator[Path]:
    if database is not None:
        try:
            database.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the tuning database folder {database}: {exc.strerror or exc}") from exc
        yield database
        return
    with tempfile.TemporaryDirectory(prefix="graphpress-tune-") as scratch:
        yield Path(scratch)


class _ProgressCallback:
    """A MetaSchedule measure callback counting measured candidates; built lazily to subclass TVM's type."""

    def __new__(cls, ms: Any, total: int, progress: Callable[[int, int], None] | None) -> Any:
        from tvm.ir.utils import derived_object  # noqa: PLC0415 - needs tvm

        @derived_object
        class Counter(ms.measure_callback.PyMeasureCallback):
            def __init__(self) -> None:
                self.done = 0

            def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
                self.done += len(measure_candidates)
                if progress is not None:
                    progress(min(self.done, total), total)

        return Counter()


def _first_line(exc: BaseException) -> str:
    lines = (part.strip() for part in str(exc).splitlines())
    line = next((part for part in lines if part and not part.startswith("Traceback")), type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."
