"""The error attribution in the optimize report and the ``--min-sqnr`` budget.

- ``summary(records, input_outputs, final_outputs, ...)``: the final output error against the input
  model and, per lossy pass that changed the model, its own and cumulative error and its layer rows
  (``passes.attribution``), joined with what the pass itself said about each layer (``Pass.layers``:
  the action, params and MACs before and after) by layer name.
- ``pass_verdict(record)``: the per-pass table's verification cell for a lossy pass.
- ``markdown(report)``: the "Where the error comes from" section: per pass, the layers ranked by the
  noise they introduce, the worst first.
- ``check_budget(report, min_sqnr)``: raises ``BudgetError`` naming the pass that cost most and its
  worst layers when the final output SQNR is below ``min_sqnr``.
"""

from __future__ import annotations

import math
from typing import Any

from ir.errors import BudgetError

MARKDOWN_LAYERS = 15
RANDOM_INPUTS_WARNING = (
    "LOSSY RESULT MEASURED ON RANDOM INPUTS: no --calib data was given, so calibration and every error "
    "figure below come from generated random inputs; they say little about accuracy on real data"
)


def summary(records, final: dict | None, feeds_source: str, *, random_inputs: bool) -> dict[str, Any] | None:
    passes = []
    for record in records:
        if record.attribution is None:
            continue
        own_rows = {row.get("layer"): row for row in record.layers if isinstance(row, dict)}
        layers = []
        for row in record.attribution["layers"]:
            extra = own_rows.pop(row["layer"], {})
            merged = {**{k: v for k, v in extra.items() if k not in row}, **row}
            if "sqnr_db" in extra:
                merged["pass_sqnr_db"] = extra["sqnr_db"]
            layers.append(merged)
        # Layers the pass reports but that cannot be matched by name here (a layer replaced by new
        # ones, e.g. a decomposition): the pass's own figure stands for them.
        for name, extra in own_rows.items():
            if name and isinstance(extra.get("sqnr_db"), (int, float)):
                layers.append({**extra, "introduced_sqnr_db": extra["sqnr_db"], "introduced": _noise(extra["sqnr_db"]),
                               "share": None, "note": "measured by the pass (not matched by name)"})
        layers.sort(key=lambda r: -r["introduced"] if r.get("introduced") is not None and math.isfinite(r["introduced"]) else 0.0)
        passes.append({"pass": record.text, "own": record.attribution["own"], "cumulative": record.attribution["cumulative"],
                       "pass_fidelity": record.fidelity, "layers": layers, "skipped": record.skipped,
                       "after": record.after})
    if not passes:
        return None
    return {"final": final, "measured_on": feeds_source, "random_inputs": random_inputs, "passes": passes}


def pass_verdict(record: dict) -> str | None:
    attribution = record.get("attribution")
    if not attribution:
        return None
    text = f"lossy: own SQNR {_db(attribution['own']['sqnr_db'])}, cumulative {_db(attribution['cumulative']['sqnr_db'])}"
    own = record.get("fidelity") or {}
    if "sqnr_db" in own:
        text += f" (the pass measured {_db(own['sqnr_db'])} on its own held-back feeds)"
    return text


def markdown(report: dict) -> list[str]:
    data = report.get("error_attribution")
    if not data:
        return []
    lines = ["", "## Where the error comes from", ""]
    if data["random_inputs"]:
        lines += [f"> **{RANDOM_INPUTS_WARNING}.**", ""]
    final = data.get("final") or {}
    if final:
        lines.append(f"Final output against the input model, on {data['measured_on']}: SQNR {_db(final['sqnr_db'])}, "
                     f"cosine {final['cosine']:.6f}, max relative error {final['max_rel']:.3g}.")
    lines += ["", "| pass | own SQNR | cumulative SQNR | share of the final noise |", "|---|---:|---:|---:|"]
    noises = [_noise(p["own"]["sqnr_db"]) for p in data["passes"]]
    total = sum(n for n in noises if math.isfinite(n)) or 0.0
    for entry, noise in zip(data["passes"], noises):
        share = f"{noise / total:.1%}" if total and math.isfinite(noise) else "-"
        lines.append(f"| `{entry['pass']}` | {_db(entry['own']['sqnr_db'])} | {_db(entry['cumulative']['sqnr_db'])} | {share} |")
    for entry in data["passes"]:
        rows = [r for r in entry["layers"] if r.get("sqnr_db") is not None]
        lines += ["", f"### `{entry['pass']}`: layers by the noise they introduce ({len(rows)} changed layers compared)", ""]
        if not rows:
            lines.append("No changed layer could be compared by name (the pass renamed or replaced them).")
            continue
        lines += ["| layer | op | action | introduced SQNR | share | SQNR at its output |", "|---|---|---|---:|---:|---:|"]
        for row in rows[:MARKDOWN_LAYERS]:
            share = "-" if row.get("share") is None else f"{row['share']:.1%}"
            lines.append(f"| `{row['layer']}` | {row.get('op', '')} | {row.get('action') or row.get('change', '')} | {_db(row['introduced_sqnr_db'])} | "
                         f"{share} | {_db(row['sqnr_db'])} |")
        if len(rows) > MARKDOWN_LAYERS:
            lines.append(f"\n{len(rows) - MARKDOWN_LAYERS} more in report.json and report.html.")
        changed_shape = [r["layer"] for r in entry["layers"] if r.get("sqnr_db") is None]
        if changed_shape:
            listed = ", ".join(f"`{n}`" for n in changed_shape[:8]) + (" ..." if len(changed_shape) > 8 else "")
            lines.append(f"\nOutput channels removed (their error shows at their consumers): {listed}")
    return lines


def check_budget(data: dict | None, min_sqnr: float) -> None:
    if not data or not data.get("final"):
        return
    final = data["final"]["sqnr_db"]
    if final >= min_sqnr:
        return
    worst = min(data["passes"], key=lambda p: p["own"]["sqnr_db"])
    layers = [r for r in worst["layers"] if r.get("sqnr_db") is not None][:3]
    named = ", ".join(f"{r['layer']} ({_share(r)}{_db(r['introduced_sqnr_db'])})" for r in layers) or "none comparable by name"
    raise BudgetError(
        f"output SQNR {_db(final)} is below --min-sqnr {min_sqnr:g} dB on {data['measured_on']}: "
        f"pass '{worst['pass']}' costs most (own SQNR {_db(worst['own']['sqnr_db'])}); its worst layers: {named}; nothing was written"
    )


def _share(row: dict) -> str:
    return f"{row['share']:.0%} of the noise, " if row.get("share") is not None else ""


def _noise(sqnr_db: float) -> float:
    return 10.0 ** (-sqnr_db / 10.0) if math.isfinite(sqnr_db) else (0.0 if sqnr_db > 0 else math.inf)


def _db(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if math.isinf(value):
        return "exact" if value > 0 else "-inf dB"
    return f"{value:.1f} dB"
