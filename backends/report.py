"""Building one model for several targets, and the per-target report of what came out.

Rules:
- ``build_for_targets`` builds each target into its own folder ``out_dir/<target name>`` (the preset
  name, or the canonical text made file-safe). A target that fails does not stop the others: its
  report says ``compiled: false`` and the one-line reason (``BackendError``/``UsageError`` text).
- A report holds: the target, whether it compiled, every artifact with its path and size, the check
  against ONNX Runtime (or why it was skipped), the latency where it was measured (and where), the
  tuning summary, the compile time and the notes.
- ``report_dict`` is plain JSON data; ``format_markdown`` is one table plus one line per note.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from backends.base import BuildResult
from backends.dispatch import compile_model
from backends.target import PRESETS, TargetSpec, parse_target
from ir.errors import GraphpressError


@dataclasses.dataclass(frozen=True)
class TargetReport:
    target: str
    folder: Path
    result: BuildResult | None
    error: str | None = None

    @property
    def compiled(self) -> bool:
        return self.result is not None


def build_for_targets(
    model: ir.Model | onnx.ModelProto,
    targets: Sequence[str] | Mapping[str, TargetSpec],
    out_dir: str | os.PathLike[str],
    **options: Any,
) -> list[TargetReport]:
    """Build ``model`` for each of ``targets``: target texts, or each text as typed with its parsed
    spec (parsed once, by the caller); ``options`` go to ``compile_model``."""
    pairs = targets.items() if isinstance(targets, Mapping) else ((text, text) for text in targets)
    reports = []
    for text, target in pairs:
        folder = Path(out_dir) / _folder_name(text, target)
        try:
            result = compile_model(model, target, folder, **options)
        except GraphpressError as exc:
            reports.append(TargetReport(text, folder, None, str(exc)))
        else:
            reports.append(TargetReport(text, folder, result))
    return reports


def report_dict(report: TargetReport) -> dict[str, Any]:
    data: dict[str, Any] = {"target": report.target, "compiled": report.compiled, "folder": str(report.folder)}
    if report.error is not None:
        data["error"] = report.error
        return data
    result = report.result
    assert result is not None
    data.update(
        canonical_target=result.target,
        backend=result.backend,
        compile_seconds=round(result.compile_seconds, 3),
        artifacts=[{"role": a.role, "path": str(a.path), "size_bytes": a.size_bytes} for a in result.artifacts]
        or [{"role": "library", "path": str(result.library), "size_bytes": result.size_bytes}],
        check=None if result.check is None else dataclasses.asdict(result.check),
        latency_ms=None if result.latency is None else dataclasses.asdict(result.latency),
        tuning=None if result.tuning is None else {**dataclasses.asdict(result.tuning), "database": str(result.tuning.database or "")},
        integer_ops=None if result.integer is None else result.integer.integer_ops,
        float_ops=None if result.integer is None else result.integer.float_ops,
        integer=None if result.integer is None else {
            "by_op": dict(result.integer.by_op), "float_reasons": [list(r) for r in result.integer.float_reasons]},
        notes=list(result.notes),
    )
    if result.details is not None:
        data["accelerator"] = dict(result.details)
    return data


def format_markdown(reports: Sequence[TargetReport]) -> str:
    lines = [
        "| target | compiled | library size | artifacts | check vs ONNX Runtime | latency ms | Conv/MatMul int / float | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        if report.result is None:
            lines.append(f"| {report.target} | no | - | - | - | - | - | {report.error} |")
            continue
        result = report.result
        check = "skipped" if result.check is None else (
            f"{'pass' if result.check.passed else 'FAIL'} ({result.check.rule}, rel {result.check.max_rel_error:.1e})"
        )  # fmt: skip
        compute = "-" if result.integer is None else f"{result.integer.integer_ops} / {result.integer.float_ops}"
        latency = "-" if result.latency is None else f"{result.latency.median_ms:.3f} ({result.latency.where})"
        total = sum(a.size_bytes for a in result.artifacts) or result.size_bytes
        artifacts = f"{len(result.artifacts) or 1} files, {_size(total)}"
        notes = "; ".join(result.notes).replace("|", "/")
        lines.append(f"| {report.target} | yes | {_size(result.size_bytes)} | {artifacts} | {check} | {latency} | {compute} | {notes} |")
    return "\n".join(lines) + "\n"


def summaries(reports: Sequence[TargetReport]) -> Mapping[str, dict[str, Any]]:
    return {report.target: report_dict(report) for report in reports}


def _folder_name(given: str, target: str | TargetSpec) -> str:
    if given in PRESETS:
        return given
    try:
        text = (target if isinstance(target, TargetSpec) else parse_target(target)).text
    except GraphpressError:
        text = given
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("-m", "").replace("=", "-")).strip("_") or "target"


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
