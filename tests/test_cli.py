"""The command line: exit codes, one-line errors, nothing written on failure, reports on success."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h

from passes.app.cli import join_target_flags, main


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def _cyclic_model(path):
    graph = h.make_graph(
        [h.make_node("Add", ["x", "t2"], ["t1"], name="a"), h.make_node("Relu", ["t1"], ["t2"], name="r")],
        "cyclic", [h.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [h.make_tensor_value_info("t2", TensorProto.FLOAT, [2])],
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)


BAD_MODELS = {
    "missing file": (lambda p, good: None, "no such file"),
    "empty file": (lambda p, good: p.write_bytes(b""), "empty file"),
    "truncated model": (lambda p, good: p.write_bytes(good.read_bytes()[:100]), "not a valid ONNX model"),
    "text file": (lambda p, good: p.write_text("hello\n"), "not"),
    "cyclic graph": (lambda p, good: _cyclic_model(p), "cycle"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_files_exit_1_with_one_line_and_write_nothing(case, tmp_path, tiny_model_path, capsys):
    make, message = BAD_MODELS[case]
    bad = tmp_path / "bad.onnx"
    make(bad, tiny_model_path)
    out = tmp_path / "out"
    assert run_cli("optimize", bad, "-o", out) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


BAD_USAGE = {
    "unknown pass": (["--passes", "fold,squash"], "unknown pass 'squash'"),
    "unknown option": (["--passes", "eliminate-dead{depth=2}"], "unknown option 'depth'"),
    "option of the wrong type": (["--passes", "fold-constants{max_bytes=lots}"], "expects an integer, got lots"),
    "input shape for a missing input": (["--input-shape", "image:1,3,8,8"], "has no input 'image' (inputs: x)"),
    "malformed input shape": (["--input-shape", "x=1,3"], "expected NAME:D1,D2"),
    "unknown target": (["--target", "vulkan"], "vulkan"),
    "unknown target option": (["--target", "llvm -mcpu=cortex-a72 -mfoo=1"], "mfoo"),
    "same target twice": (["--target", "llvm", "--target", "llvm"], "--target given twice: llvm"),
    "negative tuning budget": (["--target", "llvm", "--tune-trials", "-4"], "--tune-trials must be a non-negative integer"),
    "tuning database that is a file": (["--target", "llvm", "--tune-db", __file__], "is a file; give a folder"),
    "negative measure count": (["--target", "llvm", "--measure", "-1"], "--measure -1"),
    "malformed rpc address": (["--target", "llvm", "--rpc", "localhost"], "expected HOST:PORT"),
}


@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_usage_errors_exit_2_with_one_line_and_write_nothing(case, tmp_path, tiny_model_path, capsys):
    extra, message = BAD_USAGE[case]
    out = tmp_path / "out"
    assert run_cli("optimize", tiny_model_path, "-o", out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unwritable_output_folder_is_a_usage_error(tmp_path, tiny_model_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run_cli("optimize", tiny_model_path, "-o", blocker / "out") == 2
    assert "not writable" in capsys.readouterr().err


def test_no_traceback_without_debug_and_one_with_it(tmp_path):
    command = [sys.executable, "-m", "passes", "optimize", str(tmp_path / "nope.onnx")]
    quiet = subprocess.run(command, capture_output=True, text=True)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    loud = subprocess.run([*command[:3], "--debug", *command[3:]], capture_output=True, text=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_optimize_writes_model_and_reports(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    assert run_cli("optimize", tiny_model_path, "-o", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "tiny.onnx"]
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "fold"
    assert report["before"]["nodes"] == 3 and report["after"]["nodes"] == 2
    assert report["verification"]["final_error"]["max_rel"] <= 1e-6
    assert "generated" in report["verification"]["inputs"]
    optimized = onnx.load(out / "tiny.onnx")
    assert {p.key: p.value for p in optimized.metadata_props}["graphpress.pipeline"] == "fold"
    assert "| nodes | 3 | 2 |" in (out / "report.md").read_text()


def test_custom_domain_nodes_are_left_alone_and_reported(tmp_path, capsys):
    graph = h.make_graph(
        [h.make_node("Identity", ["x"], ["a"], name="id"), h.make_node("Magic", ["a"], ["y"], name="magic", domain="com.example")],
        "custom", [h.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [h.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 1)]), path)
    assert run_cli("optimize", path, "-o", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    optimized = onnx.load(tmp_path / "out" / "custom.onnx")
    assert [(n.op_type, n.domain) for n in optimized.graph.node] == [("Magic", "com.example")]
    text = json.dumps(report)
    assert "numerical verification skipped" in text  # ONNX Runtime cannot run the custom op, and that is said
    notes = [n for r in report["passes"] for n in r["notes"]]
    assert any("magic" in n and "com.example" in n and "left alone" in n for n in notes)


def test_target_flags_may_follow_unquoted():
    assert join_target_flags(["optimize", "m.onnx", "--target", "llvm", "-mcpu=cortex-a72", "-o", "d"]) == [
        "optimize", "m.onnx", "--target", "llvm -mcpu=cortex-a72", "-o", "d",
    ]


def test_inspect_json_reports_totals(tiny_model_path, capsys):
    assert run_cli("inspect", tiny_model_path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 4 * 3 * 3 * 3 + 4
    assert data["macs"] >= 4 * 3 * 3 * 3 * 8 * 8
    assert data["inputs"]["x"]["shape"] == [1, 3, 8, 8]


def test_diff_reports_the_removed_identity(tmp_path, tiny_model_path, capsys):
    run_cli("optimize", tiny_model_path, "-o", tmp_path / "out")
    capsys.readouterr()
    page = tmp_path / "diff.html"
    assert run_cli("diff", tiny_model_path, tmp_path / "out" / "tiny.onnx", "--json", "--html", page) == 0
    data = json.loads(capsys.readouterr().out)
    assert "Identity" in json.dumps(data["structural"])
    assert page.read_text().lstrip().lower().startswith("<!doctype html")


def test_list_shows_every_fold_pass(capsys):
    assert run_cli("list", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    for name in ("fold-constants", "fold-batchnorm", "eliminate-dead", "eliminate-common"):
        assert name in data["passes"] and data["passes"][name]["lossless"]
    assert data["presets"]["fold"].startswith("fixpoint")


def test_inspect_groups_lists_channel_groups_with_reasons(tiny_model_path, capsys):
    assert run_cli("inspect", tiny_model_path, "--groups", "--json") == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert any(not g["prunable"] and "graph input 'x'" in g["reasons"] for g in groups)
