"""Specification of the per-target report: what compiled, artifacts and sizes, check, latency, failures."""

from __future__ import annotations

import json

import pytest

from backends.report import build_for_targets, format_markdown, report_dict

pytestmark = pytest.mark.tvm


def tiny_cnn():
    from test_backends import conv_relu_gemm  # noqa: PLC0415

    return conv_relu_gemm()


def test_each_target_is_reported_and_a_failure_does_not_stop_the_others(tmp_path):
    pytest.importorskip("tvm")
    reports = build_for_targets(tiny_cnn(), ["llvm", "llvm -mcpu=cortex-a7", "cuda-sm80"], tmp_path, measure_repeat=3)
    host, armv7, cuda = (report_dict(r) for r in reports)

    assert host["compiled"] and host["check"]["passed"]
    assert host["artifacts"][0]["role"] == "library" and host["artifacts"][0]["size_bytes"] > 0
    assert host["latency_ms"]["where"] == "host" and host["latency_ms"]["median_ms"] > 0
    assert host["folder"] == str(tmp_path / "llvm")

    assert not armv7["compiled"]
    assert armv7["error"].startswith("cross-compiling for armv7l-linux-gnueabihf is not supported yet")

    assert cuda["compiled"] and {a["role"] for a in cuda["artifacts"]} == {"library", "manifest", "loading glue"}
    assert cuda["latency_ms"] is None or cuda["latency_ms"]["where"] == "host GPU 0"
    json.dumps([host, armv7, cuda])  # plain JSON data

    table = format_markdown(reports)
    assert table.count("\n") == 2 + 3
    assert "| llvm -mcpu=cortex-a7 | no |" in table
