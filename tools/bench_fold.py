"""Benchmark: graphpress's fold pipeline against onnxslim, onnxsim and onnxoptimizer, in one run.

For each model (PP-OCRv4 det/rec/cls, the onnx package's light_* models, and models other pip
packages ship that fold was not tuned on: ``models.zoo.PACKAGED_MODELS``), every tool gets the same
input file (input shapes already fixed), runs in its own process, and loads, simplifies and saves the
model. Measured: nodes after, wall time of load+simplify+save inside the process, the process's peak
resident memory, and the agreement of outputs with the original model in ONNX Runtime (max error
relative to each output's magnitude, two inputs). A tool that is not installed leaves its column
marked "not installed"; a model whose package is missing is listed as skipped. The machine's load
average and the CPU share of other processes are recorded at the start and the end.

Usage: python tools/bench_fold.py [--models a,b] [--out docs/bench_fold.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOOLS = ["graphpress", "graphpress-verify-each", "onnxslim", "onnxsim", "onnxoptimizer"]

RUNNER = r'''
import json, sys, time, resource
tool, src, dst = sys.argv[1:4]
import onnx
start = time.perf_counter()
if tool.startswith("graphpress"):
    from ir import io
    from passes.manager import PassManager
    model = io.load(src)
    verify = "each" if tool == "graphpress-verify-each" else "off"
    result = PassManager("fold", verify=verify).run(model)
    io.save(result.model, dst)
elif tool == "onnxslim":
    import onnxslim
    onnx.save(onnxslim.slim(onnx.load(src)), dst)
elif tool == "onnxsim":
    import onnxsim
    model, ok = onnxsim.simplify(onnx.load(src))
    onnx.save(model, dst)
elif tool == "onnxoptimizer":
    import onnxoptimizer
    onnx.save(onnxoptimizer.optimize(onnx.load(src)), dst)
seconds = time.perf_counter() - start
# VmHWM is this process's own peak (ru_maxrss from wait4 would include the parent's size at fork).
peak_kb = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))
'''


TOOL_PACKAGES = {"onnxslim": "onnxslim", "onnxsim": "onnxsim", "onnxoptimizer": "onnxoptimizer"}
TOLERANCE = 1e-4


def installed(tool: str) -> bool:
    import importlib.util

    package = TOOL_PACKAGES.get(tool)
    return package is None or importlib.util.find_spec(package) is not None


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_load() -> dict:
    """Load averages, and the CPU share of all processes over one second (this script is idle then)."""
    one, five, fifteen = os.getloadavg()
    load = {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2), "loadavg_15m": round(fifteen, 2)}
    try:
        import psutil

        load["busy_cpu_percent"] = psutil.cpu_percent(interval=1.0)
    except ImportError:
        pass
    return load


def run_tool(tool: str, src: Path, dst: Path) -> dict:
    if not installed(tool):
        return {"missing": True}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, tool, str(src), str(dst)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    status = proc.wait()
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status != 0 or not dst.exists():
        last = (stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:120]}
    return json.loads(stdout.strip().splitlines()[-1])


OCR_TASKS = {"ppocr-det": "det", "ppocr-rec": "rec", "ppocr-cls": "cls"}


def agreement(name: str, original: Path, optimized: Path) -> float:
    """Max relative output error on two inputs: rendered text images for the OCR models, noise otherwise."""
    from ir import fidelity, io, runtime

    model = io.load(original)
    if name in OCR_TASKS:
        from models.ocr_data import calibration_arrays

        feeds = calibration_arrays(OCR_TASKS[name], 2, seed=0)
    else:
        feeds = [runtime.generate_inputs(model, seed=s) for s in range(2)]
    other = io.load(optimized)
    return max(fidelity.compare(runtime.run(model, f), runtime.run(other, f))["max_rel"] for f in feeds)


def prepare(name: str, folder: Path) -> Path:
    from ir import io, shapes
    from models import zoo

    model = io.load(zoo.model_path(name))
    shapes.fix_input_shapes(model, zoo.default_input_shapes(name))
    return io.save(model, folder / f"{name}.onnx")


def node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


def main() -> int:
    from models import zoo

    parser = argparse.ArgumentParser()
    default = ["ppocr-det", "ppocr-rec", "ppocr-cls", *(n for n in zoo.REAL_MODELS if n.startswith("light_")), *zoo.PACKAGED_MODELS]
    parser.add_argument("--models", default=",".join(default))
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_fold.md"))
    args = parser.parse_args()
    rows, skipped = [], []
    load_start = machine_load()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name in args.models.split(","):
            if not zoo.available(name):
                skipped.append(name)
                print(name, "skipped: not installed", flush=True)
                continue
            src = prepare(name, folder)
            row = {"model": name, "nodes_before": node_count(src), "tools": {}}
            for tool in TOOLS:
                dst = folder / f"{name}.{tool}.onnx"
                result = run_tool(tool, src, dst)
                if "error" not in result and "missing" not in result:
                    result["nodes"] = node_count(dst)
                    result["max_rel_error"] = agreement(name, src, dst)
                row["tools"][tool] = result
                print(name, tool, result, flush=True)
            rows.append(row)
    load = {"start": load_start, "end": machine_load()}
    Path(args.out).write_text(render(rows, skipped, load))
    (Path(args.out).with_suffix(".json")).write_text(json.dumps({"load": load, "skipped": skipped, "rows": rows}, indent=2))
    return 0


def render(rows: list[dict], skipped: list[str], load: dict) -> str:
    versions = ", ".join(f"{p} {version(p)}" for p in ("onnx", "onnx-ir", "onnxruntime", "onnxslim", "onnxsim", "onnxoptimizer"))
    lines = [
        "## Folding: graphpress `fold` against onnxslim, onnxsim and onnxoptimizer",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {versions}.",
        f"Load: {_load_text(load['start'])} at the start; {_load_text(load['end'])} at the end (the machine is shared: times are indicative, counts and errors are not affected).",
        "Produced by `python tools/bench_fold.py`. Each cell: nodes after / seconds (load+simplify+save, in a fresh process) / that process's peak RSS (VmHWM) / max relative output error vs the original in ONNX Runtime (on two rendered text images for the PP-OCR models, two random inputs otherwise; `inf` means an output changed shape). Input shapes are fixed in the file every tool receives.",
        "`graphpress` runs `fold` without per-pass numerical checks (one structural check at the end); `graphpress-verify-each` is the CLI default, verifying every pass with ONNX Runtime.",
        f"Target: graphpress's nodes <= onnxslim's on every model, outputs within {TOLERANCE:g}. *met* compares with onnxslim's count when onnxslim's outputs are within the tolerance too, and says so when they are not.",
        "",
        "| model | nodes before | " + " | ".join(TOOLS) + " | target |",
        "|---|---:|" + "---|" * len(TOOLS) + "---|",
    ]
    for row in rows:
        cells = [_cell(row["tools"][tool]) for tool in TOOLS]
        lines.append(f"| {row['model']} | {row['nodes_before']} | " + " | ".join(cells) + f" | {_target(row)} |")
    if skipped:
        lines += ["", f"Skipped (package not installed; `pip install .[bench]`): {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def _cell(result: dict) -> str:
    if result.get("missing"):
        return "not installed"
    if "error" in result:
        return f"error: {result['error']}"
    return f"**{result['nodes']}** / {result['seconds']:.2f}s / {result['peak_mb']:.0f} MB / {result['max_rel_error']:.1e}"


def _target(row: dict) -> str:
    ours, slim = row["tools"]["graphpress"], row["tools"]["onnxslim"]
    if "nodes" not in ours:
        return "not met (graphpress failed)"
    if ours["max_rel_error"] > TOLERANCE:
        return "not met (outputs)"
    if "nodes" not in slim:
        return "no onnxslim result"
    if ours["nodes"] <= slim["nodes"]:
        return "met"
    if slim["max_rel_error"] > TOLERANCE:
        return f"not met on count ({ours['nodes']} > {slim['nodes']}), but onnxslim's outputs differ ({slim['max_rel_error']:.1e})"
    return f"not met ({ours['nodes']} > {slim['nodes']})"


def _load_text(load: dict) -> str:
    text = f"load average {load['loadavg_1m']}/{load['loadavg_5m']}/{load['loadavg_15m']} (1/5/15 min)"
    if "busy_cpu_percent" in load:
        text += f", CPU {load['busy_cpu_percent']:.0f}% busy with other processes"
    return text


if __name__ == "__main__":
    sys.exit(main())
