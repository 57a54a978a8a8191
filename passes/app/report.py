"""The optimize report: what changed, how it was verified, what was built. JSON for tools, Markdown for people."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from passes.app.attribution_report import RANDOM_INPUTS_WARNING, pass_verdict
from passes.app.attribution_report import markdown as attribution_markdown
from passes.manager import RunResult


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("graphpress", "onnx", "onnx-ir", "onnxruntime", "numpy", "apache-tvm"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def build_report(result: RunResult, *, source: str, output: str, before: dict, after: dict, targets: list[dict] | None, warnings: list[str]) -> dict[str, Any]:
    deltas = {key: after[key] - before[key] for key in before if isinstance(before[key], (int, float)) and isinstance(after.get(key), (int, float))}
    return {
        "input": source,
        "output": output,
        "pipeline": result.pipeline,
        "versions": versions(),
        "verification": {"inputs": result.verification_inputs, "final_error": result.final_error},
        "before": before,
        "after": after,
        "delta": deltas,
        "passes": [r.to_dict() for r in result.records],
        "fixpoints": result.fixpoints,
        "rolled_back": [{"pass": r.text, "reason": r.failure} for r in result.failures],
        "targets": targets or [],
        "warnings": warnings,
    }


def write_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=_jsonable) + "\n"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return str(value)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return f"{value:,}"


def _change(before: Any, after: Any) -> str:
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or before == 0:
        return "-"
    return f"{(after - before) / before * 100:+.1f}%"


def write_markdown(report: dict[str, Any]) -> str:
    lines = ["# graphpress optimize report", ""]
    if (report.get("error_attribution") or {}).get("random_inputs"):
        lines += [f"> **WARNING: {RANDOM_INPUTS_WARNING}.**", ""]
    lines += [
        f"- input: `{report['input']}`",
        f"- output: `{report['output']}`",
        f"- pipeline: `{report['pipeline']}`",
        f"- verified on: {report['verification']['inputs']}",
    ]
    final = report["verification"]["final_error"]
    if final:
        lines.append(f"- final output error vs input model: max abs {_number(final.get('max_abs'))}, max relative {_number(final.get('max_rel'))}")
    lines += ["", "## Totals", "", "| | before | after | change |", "|---|---:|---:|---:|"]
    for key in ("nodes", "params", "macs", "weight_bytes", "stored_weight_bytes"):
        b, a = report["before"].get(key), report["after"].get(key)
        lines.append(f"| {key} | {_number(b)} | {_number(a)} | {_change(b, a)} |")
    lines += ["", "## Passes", "", "| pass | iteration | changed | pass (s) | verify (s) | nodes after | statistics | verification |", "|---|---:|:-:|---:|---:|---:|---|---|"]
    for record in report["passes"]:
        if not record["modified"] and not record["failure"]:
            continue
        stats = ", ".join(f"{k}: {v}" for k, v in record["stats"].items() if v)
        verdict = f"ROLLED BACK: {record['failure']}" if record["rolled_back"] else (
            f"ok (max rel {_number(record['error']['max_rel'])})" if record.get("error") else pass_verdict(record) or "structure ok")
        if record.get("intent") == "verified" and not record["rolled_back"]:
            intent = f"intent verified (max rel {_number((record.get('intent_error') or {}).get('max_rel'))})"
            verdict = intent if verdict == "structure ok" else f"{intent}; {verdict}"
        elif record.get("intent") == "not stated" and not record["rolled_back"]:
            verdict = f"{verdict}, intent not stated"
        nodes = (record.get("after") or {}).get("nodes")
        lines.append(f"| `{record['text']}` | {record['iteration']} | {'yes' if record['modified'] else 'no'} | {record['seconds']:.3f} | {record['verify_seconds']:.3f} | {_number(nodes)} | {stats} | {verdict} |")
    unchanged = sorted({r["text"] for r in report["passes"]} - {r["text"] for r in report["passes"] if r["modified"]})
    if unchanged:
        lines += ["", f"Passes that changed nothing: {', '.join(f'`{t}`' for t in unchanged)}"]
    for fixpoint in report["fixpoints"]:
        state = "converged" if fixpoint["converged"] else "stopped at its bound without converging"
        lines.append(f"\nFixed-point group ran {fixpoint['iterations']} iteration(s), {state}.")
    lines += _layer_report_lines(report["passes"])
    lines += attribution_markdown(report)
    notes = sorted({note for r in report["passes"] for note in r["notes"]})
    if notes or report["warnings"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in (*report["warnings"], *notes)]
    if report.get("targets"):
        lines += ["", "## Targets", ""] + [_target_lines(target) for target in report["targets"]]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


MAX_LAYER_ROWS = 50


def _layer_report_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per lossy pass run: its measured output error, its per-layer table and the layers it skipped, with reasons."""
    lines: list[str] = []
    for record in records:
        layers, skipped, measured = record.get("layers") or [], record.get("skipped") or [], record.get("fidelity")
        if not (layers or skipped or measured):
            continue
        lines += ["", f"### `{record['text']}`" + (" (rolled back)" if record["rolled_back"] else "")]
        if measured:
            figures = ", ".join(f"{key} {_number(measured[key])}" for key in ("max_abs", "max_rel", "sqnr_db", "cosine", "top1_agreement") if key in measured)
            feeds = f" on {measured['feeds']} feeds" if measured.get("feeds") else ""
            lines += ["", f"- measured output error{feeds}: {figures}"]
        if layers:
            with_sqnr = any("sqnr_db" in row for row in layers)
            header = "| layer | op | action | params before | params after | MACs before | MACs after |" + (" SQNR (dB) |" if with_sqnr else "")
            lines += ["", header, "|---|---|---|---:|---:|---:|---:|" + ("---:|" if with_sqnr else "")]
            for row in layers[:MAX_LAYER_ROWS]:
                cells = [f"`{row['layer']}`", row["op"], row["action"], *(_number(row.get(k)) for k in ("params_before", "params_after", "macs_before", "macs_after"))]
                if with_sqnr:
                    cells.append(_number(row.get("sqnr_db")))
                lines.append("| " + " | ".join(cells) + " |")
            if len(layers) > MAX_LAYER_ROWS:
                lines += ["", f"... and {len(layers) - MAX_LAYER_ROWS} more layers (all of them in report.json)"]
        if skipped:
            lines += ["", f"Skipped ({len(skipped)}):"] + [f"- `{entry['layer']}`: {entry['reason']}" for entry in skipped[:MAX_LAYER_ROWS]]
            if len(skipped) > MAX_LAYER_ROWS:
                lines.append(f"- ... and {len(skipped) - MAX_LAYER_ROWS} more (all of them in report.json)")
    return ["", "## Lossy passes, layer by layer", *lines] if lines else []


def _target_lines(target: dict[str, Any]) -> str:
    """One target's outcome: what compiled, where the files are, the check, the latency, the notes."""
    if not target["compiled"]:
        return f"### `{target['target']}`: not compiled\n\n{target['error']}\n"
    lines = [f"### `{target['target']}` ({target['backend']}, {target['compile_seconds']:.1f} s)", ""]
    lines += [f"- {a['role']}: `{a['path']}` ({a['size_bytes']:,} bytes)" for a in target["artifacts"]]
    check = target.get("check")
    if check:
        verdict = "matches" if check["passed"] else "DOES NOT match"
        rule = check.get("detail") or f"rtol {check['rtol']:g}, atol {check['atol']:g}"
        lines.append(f"- {verdict} ONNX Runtime: max abs {_number(check['max_abs_error'])}, max relative {_number(check['max_rel_error'])} ({rule})")
    if target.get("integer_ops") is not None:
        lines.append(f"- Conv/MatMul/Gemm: {target['integer_ops']} computed in integers, {target['float_ops']} in float")
        lines += [f"  - float: {reason}: {count}" for reason, count in (target.get("integer") or {}).get("float_reasons", [])]
    else:
        lines.append("- not checked against ONNX Runtime here (see the notes)")
    latency = target.get("latency_ms")
    if latency:
        lines.append(f"- latency: median {latency['median_ms']:.3f} ms, min {latency['min_ms']:.3f} ms over {latency['runs']} runs ({latency['where']})")
    tuning = target.get("tuning")
    if tuning:
        lines.append(f"- tuning: {tuning['tasks']} tasks, {tuning['tasks_from_database']} from the database, {tuning['tasks_tuned']} tuned now, {tuning['trials']} trials in {tuning['seconds']:.0f} s (database `{tuning['database']}`)")
    lines += [f"- note: {note}" for note in target.get("notes", ())]
    if target.get("accelerator"):
        from backends.accel.report import accelerator_markdown

        lines += ["", accelerator_markdown(target["accelerator"])]
    return "\n".join(lines) + "\n"
