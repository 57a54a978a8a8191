"""The command line: exit codes, one-line errors, nothing written on failure, reports on success."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
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
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md", "tiny.onnx"]
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
    text = page.read_text()
    assert text.lstrip().lower().startswith("<!doctype html")
    # Both models by full path, with the pipeline between them, and both graphs drawn.
    assert f"<title>{tiny_model_path} -&gt; fold -&gt; {tmp_path / 'out' / 'tiny.onnx'}</title>" in text
    assert '<g class="n removed"' in text and 'id="graph-data"' in text


def test_outputs_follow_the_umask(tmp_path, tiny_model_path):
    import os

    old = os.umask(0o022)
    try:
        assert run_cli("optimize", tiny_model_path, "-o", tmp_path / "out") == 0
        assert run_cli("diff", tiny_model_path, tmp_path / "out" / "tiny.onnx", "--no-numeric", "--html", tmp_path / "d.html") == 0
        assert run_cli("inspect", tiny_model_path, "--html", tmp_path / "i.html") == 0
    finally:
        os.umask(old)
    for path in [*(tmp_path / "out").iterdir(), tmp_path / "d.html", tmp_path / "i.html"]:
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path


def test_inspect_names_input_and_output_types_alike_and_writes_a_page(tmp_path, tiny_model_path, capsys):
    page = tmp_path / "inspect.html"
    assert run_cli("inspect", tiny_model_path, "--json", "--html", page) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"]["x"]["dtype"] == "float32"
    assert {info["dtype"] for info in data["outputs"].values()} == {"float32"}
    text = page.read_text()
    assert f"<h1>{tiny_model_path}</h1>" in text and "Where the MACs are" in text


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


def test_a_lossy_pipeline_breaking_min_sqnr_exits_1_names_pass_and_layers_and_writes_nothing(tmp_path, tiny_model_path, capsys):
    out = tmp_path / "out"
    assert run_cli("optimize", tiny_model_path, "--passes", "fold,quantize", "--min-sqnr", "80", "-o", out) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: output SQNR") and "below --min-sqnr 80 dB" in last
    assert "pass 'quantize' costs most" in last and "of the noise" in last and "nothing was written" in last
    assert not out.exists()


def test_a_lossy_pipeline_within_min_sqnr_writes_the_attribution_and_says_loudly_it_used_random_inputs(tmp_path, tiny_model_path, capsys):
    out = tmp_path / "out"
    assert run_cli("optimize", tiny_model_path, "--passes", "fold,quantize", "--min-sqnr", "20", "-o", out) == 0
    captured = capsys.readouterr()
    assert "WARNING: LOSSY RESULT MEASURED ON RANDOM INPUTS" in captured.err
    assert "measured on random inputs" in captured.out
    report = json.loads((out / "report.json").read_text())
    attribution = report["error_attribution"]
    assert attribution["random_inputs"] is True and 20 <= attribution["final"]["sqnr_db"] < 80
    quantize = next(p for p in report["passes"] if p["name"] == "quantize")
    assert quantize["attribution"]["own"]["sqnr_db"] == pytest.approx(attribution["final"]["sqnr_db"])
    assert [row["op"] for row in attribution["passes"][0]["layers"]][0] == "Conv"  # the weights' noise comes first
    markdown = (out / "report.md").read_text()
    assert markdown.splitlines()[2].startswith("> **WARNING: LOSSY RESULT MEASURED ON RANDOM INPUTS")
    assert "## Where the error comes from" in markdown and "lossy: own SQNR" in markdown
    page = (out / "report.html").read_text()
    assert '<svg class="tradeoff"' in page and '<svg class="bars"' in page and "WARNING: LOSSY RESULT" in page


def test_min_sqnr_needs_verification(tmp_path, tiny_model_path, capsys):
    assert run_cli("optimize", tiny_model_path, "--passes", "quantize", "--min-sqnr", "20", "--verify", "off", "-o", tmp_path / "o") == 2
    assert "--min-sqnr needs the outputs measured" in capsys.readouterr().err


def test_an_unchecked_arm_library_says_how_to_get_the_check(tmp_path, capsys):
    from passes.app.commands import _print_summary

    totals = {"nodes": 2, "params": 4, "macs": 8, "weight_bytes": 16, "stored_weight_bytes": 16}
    note = "check skipped: cannot run aarch64 code here (missing qemu-aarch64-static (Debian qemu-user-static; run tools/setup_arm.sh))"
    report = {"pipeline": "fold", "before": totals, "after": totals, "passes": [], "rolled_back": [],
              "verification": {"final_error": None, "inputs": "none"},
              "targets": [{"target": "arm-a72", "compiled": True, "artifacts": [{"role": "library", "path": "m.so"}], "notes": [note]}]}
    _print_summary(report, tmp_path)
    out = " ".join(capsys.readouterr().out.split())
    assert "arm-a72: NOT checked against ONNX Runtime" in out and "bash tools/setup_arm.sh" in out


CONV_CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4,6,6] x) => (float[1,4,6,6] y) {
    a = Conv <pads = [1,1,1,1]> (x, w1)
    r = Relu(a)
    y = Conv <pads = [1,1,1,1]> (r, w2)
}
"""


def test_a_lossy_pass_reports_each_layer_what_it_skipped_and_its_measured_error(tmp_path):
    proto = onnx.parser.parse_model(CONV_CHAIN)
    rng = np.random.default_rng(0)
    for name, shape in (("w1", (16, 4, 3, 3)), ("w2", (4, 16, 3, 3))):
        proto.graph.initializer.append(onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
    onnx.save(proto, tmp_path / "chain.onnx")
    out = tmp_path / "out"
    pipeline = "prune{ratio=0.5,round=1,reconstruct=false,calib=2,holdout=2}"
    assert run_cli("optimize", tmp_path / "chain.onnx", "-o", out, "--passes", pipeline) == 0
    record = json.loads((out / "report.json").read_text())["passes"][0]
    rows = {row["layer"]: row for row in record["layers"]}
    assert rows["a"]["action"] == "pruned 8/16 output channels"
    assert (rows["a"]["params_before"], rows["a"]["params_after"]) == (16 * 4 * 9, 8 * 4 * 9)
    assert (rows["a"]["macs_before"], rows["a"]["macs_after"]) == (16 * 4 * 9 * 36, 8 * 4 * 9 * 36)
    assert rows["y"]["action"] == "pruned 8/16 input channels" and rows["y"]["params_after"] == 4 * 8 * 9
    assert [entry["layer"] for entry in record["skipped"]] == ["Conv -> 'y'"]  # its channels are the graph output
    assert record["fidelity"]["feeds"] == 2 and 0 < record["fidelity"]["cosine"] < 1
    markdown = (out / "report.md").read_text()
    assert f"### `{pipeline}`" in markdown
    assert "| `a` | Conv | pruned 8/16 output channels | 576 | 288 | 20,736 | 10,368 |" in markdown
    assert "- `Conv -> 'y'`: " in markdown and "measured output error on 2 feeds" in markdown
