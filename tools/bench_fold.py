"""Benchmark: graphpress's fold pipeline against onnxslim, onnxsim and onnxoptimizer, in one run.

For each model (PP-OCRv4 det/rec/cls and the onnx package's light_* models), every tool gets the same
input file (input shapes already fixed), runs in its own process, and loads, simplifies and saves the
model. Measured: nodes after, wall time of load+simplify+save inside the process, the process's peak
resident memory, and the agreement of outputs with the original model in ONNX Runtime (max error
relative to each output's magnitude, one generated input). Writes docs/benchmarks.md's fold section
(or prints with --print-only).

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


def run_tool(tool: str, src: Path, dst: Path) -> dict:
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
    parser.add_argument("--models", default="ppocr-det,ppocr-rec,ppocr-cls," + ",".join(n for n in zoo.REAL_MODELS if n.startswith("light_")))
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_fold.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name in args.models.split(","):
            src = prepare(name, folder)
            row = {"model": name, "nodes_before": node_count(src), "tools": {}}
            for tool in TOOLS:
                dst = folder / f"{name}.{tool}.onnx"
                result = run_tool(tool, src, dst)
                if "error" not in result:
                    result["nodes"] = node_count(dst)
                    result["max_rel_error"] = agreement(name, src, dst)
                row["tools"][tool] = result
                print(name, tool, result, flush=True)
            rows.append(row)
    Path(args.out).write_text(render(rows))
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(rows, indent=2))
    return 0


def render(rows: list[dict]) -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("onnx", "onnx-ir", "onnxruntime", "onnxslim", "onnxsim", "onnxoptimizer"))
    lines = [
        "## Folding: graphpress `fold` against onnxslim, onnxsim and onnxoptimizer",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {versions}.",
        "Produced by `python tools/bench_fold.py`. Each cell: nodes after / seconds (load+simplify+save, in a fresh process) / that process's peak RSS (VmHWM) / max relative output error vs the original in ONNX Runtime (on two rendered text images for the PP-OCR models, two random inputs otherwise). Input shapes are fixed in the file every tool receives.",
        "`graphpress` runs `fold` without per-pass numerical checks (one structural check at the end); `graphpress-verify-each` is the CLI default, verifying every pass with ONNX Runtime.",
        "",
        "| model | nodes before | " + " | ".join(TOOLS) + " |",
        "|---|---:|" + "---|" * len(TOOLS),
    ]
    for row in rows:
        cells = []
        for tool in TOOLS:
            r = row["tools"][tool]
            cells.append(f"error: {r['error']}" if "error" in r else f"**{r['nodes']}** / {r['seconds']:.2f}s / {r['peak_mb']:.0f} MB / {r['max_rel_error']:.1e}")
        lines.append(f"| {row['model']} | {row['nodes_before']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
