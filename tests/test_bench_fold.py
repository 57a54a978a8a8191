"""tools/bench_fold.py says what it measured: a missing anchor is a marked column, not a crash."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import bench_fold  # noqa: E402

LOAD = {"start": {"loadavg_1m": 1.5, "loadavg_5m": 1.2, "loadavg_15m": 1.0, "busy_cpu_percent": 40.0},
        "end": {"loadavg_1m": 2.0, "loadavg_5m": 1.4, "loadavg_15m": 1.1}}


def _row(ours=10, slim=12, slim_error=0.0):
    measured = {"seconds": 0.5, "peak_mb": 100.0, "max_rel_error": 0.0}
    tools = {tool: {**measured, "nodes": ours} for tool in bench_fold.TOOLS}
    tools["onnxslim"] = {**measured, "nodes": slim, "max_rel_error": slim_error}
    tools["onnxsim"] = {"missing": True}
    return {"model": "m", "nodes_before": 20, "tools": tools}


def test_a_tool_that_is_not_installed_is_a_marked_column():
    text = bench_fold.render([_row()], [], LOAD)
    assert "| not installed |" in text
    assert bench_fold.version("no-such-package-xyz") == "not installed"


def test_the_doc_records_the_load_at_start_and_end():
    text = bench_fold.render([_row()], ["ddddocr-det"], LOAD)
    assert "load average 1.5/1.2/1.0 (1/5/15 min), CPU 40% busy with other processes at the start" in text
    assert "load average 2.0/1.4/1.1 (1/5/15 min) at the end" in text
    assert "Skipped (package not installed; `pip install .[bench]`): ddddocr-det." in text


def test_the_target_column_compares_with_onnxslim_only_when_its_outputs_hold():
    assert bench_fold._target(_row(ours=10, slim=12)) == "met"
    assert bench_fold._target(_row(ours=13, slim=12)) == "not met (13 > 12)"
    assert bench_fold._target(_row(ours=13, slim=12, slim_error=float("inf"))).startswith("not met on count (13 > 12), but onnxslim's outputs differ")
