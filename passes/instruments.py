"""Instruments: hooks the pass manager calls around every pass, instead of print statements.

- ``StatisticsInstrument``: nodes, parameters, MACs and weight bytes before and after each pass that
  changed the model (stored in the pass record's ``before``/``after``).
- ``DumpAfterChange``: writes the model after every pass that changed it into a folder, numbered.
- ``Reproducer``: when a pass fails, writes the model as it was before the pass and the pipeline
  string, so ``python -m passes optimize repro/model.onnx --passes "$(cat repro/pipeline.txt)"``
  replays the failure.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx_ir as ir

from ir import cost, io


class Instrument:
    def before_pass(self, pass_, model: ir.Model) -> None:
        pass

    def after_pass(self, pass_, model: ir.Model, record) -> None:
        pass

    def on_failure(self, pass_, model_before: ir.Model, pipeline_text: str, reason: str) -> None:
        pass


def cost_snapshot(model: ir.Model) -> dict[str, int]:
    summary = cost.analyze(model)
    return {
        "nodes": summary.nodes,
        "params": summary.params,
        "macs": summary.macs,
        "weight_bytes": summary.weight_bytes,
        "stored_weight_bytes": summary.stored_weight_bytes,
    }


class StatisticsInstrument(Instrument):
    def __init__(self) -> None:
        self._before: dict[str, int] | None = None

    def before_pass(self, pass_, model):
        if self._before is None:
            self._before = cost_snapshot(model)

    def after_pass(self, pass_, model, record):
        record.before = self._before
        if record.modified and not record.rolled_back:
            self._before = cost_snapshot(model)
        record.after = self._before


class DumpAfterChange(Instrument):
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.count = 0

    def after_pass(self, pass_, model, record):
        if record.modified and not record.rolled_back:
            self.count += 1
            io.save(model, self.folder / f"{self.count:03d}-{_slug(pass_.name)}.onnx")


class Reproducer(Instrument):
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.written: Path | None = None

    def on_failure(self, pass_, model_before, pipeline_text, reason):
        io.save(model_before, self.folder / "model.onnx")
        (self.folder / "pipeline.txt").write_text(f"{pass_!r}\n")
        (self.folder / "README.txt").write_text(
            f"pass '{pass_.name}' failed: {reason}\n"
            f"full pipeline: {pipeline_text}\n"
            f"replay: python -m passes optimize {self.folder / 'model.onnx'} --passes '{pass_!r}' --strict --debug\n"
        )
        self.written = self.folder


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
