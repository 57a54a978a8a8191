"""Specification of the command line's target options: ``targets``, several ``--target``s, tuning,
latency, and a per-target report that says what compiled, where it is and what failed.
"""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h

from backends import PRESETS
from passes.app.cli import main


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def test_targets_lists_every_preset_with_what_builds_here(capsys):
    assert run_cli("targets", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(PRESETS)
    rpi4 = next(row for row in rows if row["name"] == "rpi4")
    assert rpi4["tvm"] == {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]}
    assert all(row["builds_here"] or row["reason"] for row in rows)


def test_targets_prints_a_table(capsys):
    assert run_cli("targets") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "build", "check", "target"]
    assert "cuda-sm90" in out


@pytest.mark.tvm
def test_several_targets_get_a_folder_each_and_a_report_each(tmp_path, tiny_model_path, capsys):
    pytest.importorskip("tvm")
    out = tmp_path / "out"
    assert run_cli("optimize", tiny_model_path, "-o", out, "--target", "llvm", "--target", "cuda-sm80", "--measure", "3") == 0
    assert (out / "llvm" / "tiny.so").is_file() and (out / "cuda-sm80" / "tiny.so").is_file()
    targets = {t["target"]: t for t in json.loads((out / "report.json").read_text())["targets"]}
    assert set(targets) == {"llvm", "cuda-sm80"} and all(t["compiled"] for t in targets.values())
    assert targets["llvm"]["check"]["passed"] and targets["llvm"]["latency_ms"]["runs"] == 3
    roles = {a["role"]: a["path"] for a in targets["cuda-sm80"]["artifacts"]}
    assert roles["loading glue"] == str(out / "cuda-sm80" / "graphpress_cuda.py")
    markdown = (out / "report.md").read_text()
    assert "### `llvm` (tvm-host" in markdown and "latency: median" in markdown


@pytest.mark.tvm
def test_one_target_writes_its_library_beside_the_model(tmp_path, tiny_model_path):
    pytest.importorskip("tvm")
    out = tmp_path / "out"
    assert run_cli("optimize", tiny_model_path, "-o", out, "--target", "llvm") == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md", "tiny.onnx", "tiny.so"]
    (target,) = json.loads((out / "report.json").read_text())["targets"]
    assert target["artifacts"][0]["path"] == str(out / "tiny.so") and target["check"]["passed"]


@pytest.mark.tvm
def test_a_target_that_fails_among_several_is_reported_and_fails_the_command(tmp_path, capsys):
    pytest.importorskip("tvm")
    graph = h.make_graph(
        [h.make_node("Magic", ["x"], ["y"], name="magic", domain="com.example")], "custom",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    path = tmp_path / "custom.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 1)]), path)
    out = tmp_path / "out"
    assert run_cli("optimize", path, "-o", out, "--target", "llvm", "--target", "cuda-sm90") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 2 of 2 targets failed (llvm:") and sum(e.startswith("error") for e in err) == 1
    targets = json.loads((out / "report.json").read_text())["targets"]
    assert [t["compiled"] for t in targets] == [False, False] and "Magic" in targets[0]["error"]
    assert "### `cuda-sm90`: not compiled" in (out / "report.md").read_text()


@pytest.mark.tvm
@pytest.mark.slow
def test_tuning_from_the_command_line_fills_the_database_it_is_given(tmp_path, tiny_model_path):
    pytest.importorskip("xgboost")
    out, db = tmp_path / "out", tmp_path / "db"
    assert run_cli("optimize", tiny_model_path, "-o", out, "--target", "llvm", "--tune-trials", "4", "--tune-db", db) == 0
    (target,) = json.loads((out / "report.json").read_text())["targets"]
    assert target["tuning"]["trials"] >= 4 and target["tuning"]["database"] == str(db)
    assert (db / "database_tuning_record.json").read_text().strip()
    assert "- tuning: " in (out / "report.md").read_text()
