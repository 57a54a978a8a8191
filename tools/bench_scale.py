"""Scale case: a generated model over 2 GB, with external data, folds and saves in bounded memory.

The model is a chain of MatMul layers with 4096x4096 float32 weights written straight to an external
data file (never held in memory at once), with foldable clutter between layers (Identity, a Mul by a
constant 1, Reshape to the same shape). The fold pipeline runs in a child process that loads, folds
and saves the model with external data; its peak resident memory is compared with the model size.

Usage: python tools/bench_scale.py [--layers 33] [--out docs/bench_scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 4096


def write_model(folder: Path, layers: int) -> tuple[Path, int]:
    data_path = folder / "big.onnx.data"
    rng = np.random.default_rng(0)
    nodes, initializers = [], []
    offset = 0
    previous = "x"
    with open(data_path, "wb") as data:
        for i in range(layers):
            weight = (rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.sqrt(WIDTH)).astype(np.float32)
            raw = weight.tobytes()
            data.write(raw)
            tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[WIDTH, WIDTH], data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_path.name), ("offset", str(offset)), ("length", str(len(raw)))):
                tensor.external_data.add(key=key, value=value)
            offset += len(raw)
            initializers.append(tensor)
            nodes += [
                helper.make_node("Identity", [previous], [f"id{i}"], name=f"identity{i}"),
                helper.make_node("MatMul", [f"id{i}", f"w{i}"], [f"mm{i}"], name=f"matmul{i}"),
                helper.make_node("Mul", [f"mm{i}", "one"], [f"mul{i}"], name=f"mul{i}"),
                helper.make_node("Reshape", [f"mul{i}", "shape"], [f"h{i}"], name=f"reshape{i}"),
            ]
            previous = f"h{i}"
            del weight, raw
    initializers += [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]), helper.make_tensor("shape", TensorProto.INT64, [2], [1, WIDTH])]
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, WIDTH])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "big.onnx"
    with open(path, "wb") as handle:
        handle.write(model.SerializeToString())
    return path, offset


RUNNER = r'''
import json, sys, time
from ir import io
from passes.manager import PassManager
start = time.perf_counter()
model = io.load(sys.argv[1])
result = PassManager("fold", verify="off").run(model)
io.save(result.model, sys.argv[2], external=True)
peak_kb = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
print(json.dumps({"seconds": time.perf_counter() - start, "nodes": len(result.model.graph), "peak_mb": peak_kb / 1024}))
'''


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=33)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_scale.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as scratch:
        folder = Path(scratch)
        start = time.perf_counter()
        path, data_bytes = write_model(folder, args.layers)
        generate_seconds = time.perf_counter() - start
        out = folder / "out" / "big-folded.onnx"
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(path), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        status = proc.wait()
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        if status != 0:
            sys.stderr.write(stderr)
            return 1
        result = json.loads(stdout.strip().splitlines()[-1])
        peak = result["peak_mb"] * 2**20
        onnx.checker.check_model(str(out))
        nodes_before = 4 * args.layers
        saved_data = (out.parent / "big-folded.onnx.data").stat().st_size
    ratio = peak / data_bytes
    lines = [
        "## Scale: a model over 2 GB with external data",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. Produced by `python tools/bench_scale.py --layers {args.layers}`.",
        "",
        "| weights | nodes before | nodes after | fold+save time | peak RSS | peak / model size | saved data | onnx checker (by path) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {data_bytes / 2**30:.2f} GiB | {nodes_before} | {result['nodes']} | {result['seconds']:.1f} s | {peak / 2**30:.2f} GiB | {ratio:.2f}x | {saved_data / 2**30:.2f} GiB | passes |",
        "",
        f"Target: peak memory under 1.5x the model size: {'met' if ratio < 1.5 else 'NOT met'}. (Generating the model took {generate_seconds:.0f} s.)",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    sys.stdout.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
