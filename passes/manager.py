"""The pass manager: runs a pipeline over a model, verifying every pass.

Rules:
- Passes run in pipeline order; a ``fixpoint`` group repeats until no pass in it changes the model
  or its bound is reached (the report says which).
- After each pass that changed the model, the verifier checks structure, and, for passes that promise
  equivalence, compares outputs with the pipeline's input model (``verify="each"``). ``verify="end"``
  checks structure after each pass and outputs only for the final model; ``verify="off"`` checks
  only the final model's structure.
- A lossy pass that states an intent (``Pass.intent``: the exact model it means to produce, see
  ``passes.intent``) is compared with that intent on the same feeds and tolerance (``verify="each"``);
  the record says "verified" with the error, or the pass fails with the mismatch.
- A pass that raises, breaks structure, breaks equivalence or misses its intent is rolled back (the model before it is
  restored) and named in its record; with ``strict=True`` (or ``verify="off"``, which keeps no copy to
  roll back to) the run stops with ``PassFailedError``.
- Each pass run has a record: timing, whether it changed the model, its verification, statistics and
  notes, and what a lossy pass reported (``Pass.layers``, ``Pass.skipped``, ``Pass.fidelity``:
  ``PassRecord.layers``, ``.skipped`` as ``{"layer", "reason"}`` entries, ``.fidelity``), cleared
  before every run of the pass.
- The pipeline string is recorded in the output model's metadata under ``graphpress.pipeline``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from ir import io
from ir.errors import GraphpressError, InvalidModelError, PassFailedError
from passes.instruments import Instrument
from passes.pipeline import FixedPointStep, PassStep, Pipeline, PresetStep, parse
from passes.verify import NumericReference, structural_problems

PIPELINE_METADATA_KEY = "graphpress.pipeline"


@dataclasses.dataclass
class PassContext:
    """What passes may read besides the model: fixed input shapes and calibration data."""

    input_shapes: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    calibration: Any = None


@dataclasses.dataclass
class PassRecord:
    name: str
    text: str
    iteration: int
    seconds: float
    modified: bool
    verify_seconds: float = 0.0
    rolled_back: bool = False
    failure: str | None = None
    error: dict[str, float] | None = None
    # Lossy passes: "verified" (produced model matches the pass's intent), "not stated", or None.
    intent: str | None = None
    intent_error: dict[str, float] | None = None
    stats: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    before: dict[str, int] | None = None
    after: dict[str, int] | None = None
    # What a lossy pass reports (``Pass.layers``, ``Pass.skipped``, ``Pass.fidelity``).
    layers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    fidelity: dict[str, float] | None = None
    attribution: dict | None = None  # passes.attribution: own / cumulative error, per-layer table

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RunResult:
    model: ir.Model
    pipeline: str
    records: list[PassRecord]
    final_error: dict[str, float] | None
    fixpoints: list[dict[str, Any]]
    verification_inputs: str
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def failures(self) -> list[PassRecord]:
        return [r for r in self.records if r.failure]


class PassManager:
    def __init__(
        self,
        pipeline: str | Pipeline,
        *,
        instruments: Sequence[Instrument] = (),
        verify: Literal["each", "end", "off"] = "each",
        strict: bool = False,
        tolerance: float = 1e-4,
        atol: float = 1e-6,
        feeds: Iterable[dict[str, np.ndarray]] | None = None,
        feeds_source: str = "generated inputs",
        context: PassContext | None = None,
    ):
        self.pipeline = parse(pipeline) if isinstance(pipeline, str) else pipeline
        self.instruments = list(instruments)
        self.verify = verify
        self.strict = strict
        self.tolerance = tolerance
        self.atol = atol
        self.feeds = list(feeds) if feeds is not None else None
        self.feeds_source = feeds_source
        self.context = context or PassContext()

    def run(self, model: ir.Model) -> RunResult:
        text = str(self.pipeline)
        self._reference = None
        warnings: list[str] = []
        if self.verify != "off":
            from ir import runtime

            feeds = self.feeds if self.feeds is not None else [runtime.generate_inputs(model, seed=0)]
            try:
                self._reference = NumericReference(model, feeds, tolerance=self.tolerance, atol=self.atol)
            except InvalidModelError as exc:
                # e.g. an op from a custom domain: structure is still checked after every pass.
                warnings.append(f"numerical verification skipped: {exc}")
        self._records: list[PassRecord] = []
        self._fixpoints: list[dict[str, Any]] = []
        model = self._run_steps(self.pipeline, model, iteration=0)
        problems = structural_problems(model)
        if problems:
            raise PassFailedError("pipeline", problems[0])
        final_error = None
        if self._reference is not None:
            final_error = self._reference.compare(model)
            lossless = all(p.lossless for p in self.pipeline.passes())
            if lossless and not self._reference.passes(final_error):
                raise PassFailedError(text, f"outputs differ from the input model (max relative error {final_error.get('max_rel')})")
        model.metadata_props[PIPELINE_METADATA_KEY] = text
        verified_on = self.feeds_source if self._reference is not None else "none"
        return RunResult(model, text, self._records, final_error, self._fixpoints, verified_on, warnings)

    def _run_steps(self, pipeline: Pipeline, model: ir.Model, iteration: int) -> ir.Model:
        for step in pipeline.steps:
            if isinstance(step, PassStep):
                model, _ = self._run_pass(step, model, iteration)
            elif isinstance(step, PresetStep):
                model = self._run_steps(step.body, model, iteration)
            else:
                model = self._run_fixpoint(step, model)
        return model

    def _run_fixpoint(self, step: FixedPointStep, model: ir.Model) -> ir.Model:
        for iteration in range(1, step.max_iterations + 1):
            start = len(self._records)
            model = self._run_steps(step.body, model, iteration)
            changed = any(r.modified and not r.rolled_back for r in self._records[start:])
            if not changed:
                self._fixpoints.append({"group": str(step), "iterations": iteration, "converged": True})
                return model
        self._fixpoints.append({"group": str(step), "iterations": step.max_iterations, "converged": False})
        return model

    def _run_pass(self, step: PassStep, model: ir.Model, iteration: int) -> tuple[ir.Model, PassRecord]:
        pass_ = step.instance
        pass_.context = self.context
        pass_.clear_report()
        # Without verification there is nothing to roll back to: a failure stops the run instead.
        snapshot = io.to_proto(model) if self.verify != "off" else None
        for instrument in self.instruments:
            instrument.before_pass(pass_, model)
        started = time.perf_counter()
        failure = None
        modified = False
        try:
            modified = bool(pass_(model).modified)
        except GraphpressError as exc:
            failure = str(exc)
        except Exception as exc:  # a bug in a pass must not lose the user's model
            failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
        record = PassRecord(pass_.name, str(step), iteration, time.perf_counter() - started, modified, failure=failure)
        if failure is None and modified and self.verify != "off":
            verify_started = time.perf_counter()
            failure, record.error = self._verify(pass_, model)
            if failure is None and not pass_.lossless and self.verify == "each" and self._reference is not None:
                failure = self._verify_intent(pass_, model, snapshot, record)
            record.failure = failure
            record.verify_seconds = time.perf_counter() - verify_started
        record.stats = dict(pass_.stats)
        record.notes = list(pass_.notes)
        record.layers = [dict(row) for row in pass_.layers]
        record.skipped = [{"layer": layer, "reason": reason} for layer, reason in pass_.skipped]
        record.fidelity = dict(pass_.fidelity) if pass_.fidelity else None
        if failure is not None:
            record.rolled_back = True
            if snapshot is None:
                raise PassFailedError(pass_.name, failure)
            before = ir.serde.deserialize_model(snapshot)
            for instrument in self.instruments:
                instrument.on_failure(pass_, before, str(self.pipeline), failure)
            if self.strict:
                raise PassFailedError(pass_.name, failure)
            model = before
        for instrument in self.instruments:
            instrument.after_pass(pass_, model, record)
        self._records.append(record)
        return model, record

    def _verify_intent(self, pass_, model: ir.Model, snapshot, record: PassRecord) -> str | None:
        from passes import intent as intents

        try:
            intent = pass_.intent(ir.serde.deserialize_model(snapshot))
        except GraphpressError as exc:
            return f"could not build its intent: {exc}"
        if intent is None:
            record.intent = "not stated"
            return None
        try:
            error = intents.compare(intent, model, self._reference.feeds)
        except GraphpressError as exc:
            return f"intent check failed: {exc}"
        record.intent_error = error
        if not self._reference.passes(error):
            return (f"does not compute its intent ({intent.construction}): max relative error "
                    f"{error.get('max_rel', float('inf')):.3g} > {self.tolerance:g}, max absolute error "
                    f"{error.get('max_abs', float('inf')):.3g} > {self.atol:g}")
        record.intent = "verified"
        return None

    def _verify(self, pass_, model: ir.Model) -> tuple[str | None, dict[str, float] | None]:
        problems = structural_problems(model)
        if problems:
            return f"broke the graph: {problems[0]}", None
        if self.verify != "each" or not pass_.lossless or self._reference is None:
            return None, None
        try:
            error = self._reference.compare(model)
        except GraphpressError as exc:
            return str(exc), None
        if not self._reference.passes(error):
            return (f"changed the outputs (max relative error {error.get('max_rel'):.3g} > {self.tolerance:g}, "
                    f"max absolute error {error.get('max_abs'):.3g} > {self.atol:g})"), error
        return None, error
