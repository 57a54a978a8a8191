"""Profile: where a tuned float TVM library spends its time, next to ONNX Runtime, per kernel.

1. A model tuned by ``tools/bench_tvm.py --db-dir DIR`` is rebuilt from its database (no new trials)
   and run by Relax's VM profiler; ONNX Runtime's own profiler runs the same model. Both are summed
   per layer kind (conv 1x1 / 3x3 / 7x7, matmul, the rest) and the largest kernels are listed.
2. One layer (3x3 conv, 64 channels, 56x56, the FACTS.md reference layer) is tuned at a small budget
   twice: as ``--tune-trials`` does today, and with weight prepacking (``TuningRequest.weight_prepack``),
   to see whether letting the schedule choose the weights' layout pays.

Usage: python tools/profile_tvm.py --db DIR/resnet50/db256 [--model resnet50] [--layer-trials 32]
Writes docs/profile_tvm.md. Timings are from a shared machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import tvm_build  # noqa: E402
from backends.base import TuningRequest  # noqa: E402
from backends.tuning import tune_and_compile  # noqa: E402
from ir import runtime  # noqa: E402


def tvm_profile(tvm, library: Path, feeds, runs: int = 3) -> dict[str, float]:
    """{kernel name: ms per run}: every VM call timed by an instrument (median of ``runs`` runs).

    TVM 0.27's Relax VM has no profiler; ``set_instrument`` is called before and after each call."""
    import tvm_ffi  # noqa: PLC0415

    device = tvm.cpu()
    machine = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
    inputs = [tvm.runtime.tensor(a, device) for a in feeds.values()]
    machine["main"](*inputs)
    totals: collections.Counter = collections.Counter()
    started: dict = {}

    def instrument(func, symbol, before, ret, *args):
        if before:
            started[symbol] = time.perf_counter()
        else:
            totals[symbol] += time.perf_counter() - started.pop(symbol, time.perf_counter())
        return 0

    machine.set_instrument(tvm_ffi.convert(instrument))
    samples = collections.defaultdict(list)
    for _ in range(runs):
        totals.clear()
        machine["main"](*inputs)
        for name, seconds in totals.items():
            samples[name].append(seconds * 1e3)
    return {name: float(np.median(v)) for name, v in samples.items()}


def ort_profile(model, feeds, runs: int = 10) -> dict[str, float]:
    """{node name (op): ms per run} from ONNX Runtime's profiler, all graph optimizations on."""
    import onnx_ir as ir  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(ir.serde.serialize_model(model).SerializeToString(), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[f"{event['name'][:-12]} ({event['args'].get('op_name', '?')})"] += event["dur"] / 1e3
    return {name: ms / (runs + 1) for name, ms in totals.items()}


def kind(name: str) -> str:
    lowered = name.lower()
    if "quantize" in lowered and "conv" not in lowered and "matmul" not in lowered:
        return "quantize/dequantize"
    if "conv" in lowered:
        return "conv"
    if "matmul" in lowered or "gemm" in lowered or "dense" in lowered:
        return "matmul/gemm"
    if "pool" in lowered or "mean" in lowered:
        return "pooling"
    if any(k in lowered for k in ("vm.builtin", "alloc", "kill", "shape")):
        return "VM builtins"
    return "other"


def layer_ab(tvm, trials: int) -> list[tuple[str, float, float]]:
    """(variant, TVM ms, ORT ms) for one 3x3 conv tuned at ``trials`` without and with weight prepacking."""
    import onnx  # noqa: PLC0415
    import onnx_ir as ir  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05, "w")
    bias = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 56, 56])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 56, 56])], [weight, bias],
    )  # fmt: skip
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.checker.check_model(ir.serde.serialize_model(model))
    feeds = runtime.generate_inputs(model, seed=0)
    module = tvm_build.import_onnx(tvm, model, {"x": (1, 64, 56, 56)})
    target = tvm.target.Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu()})
    rows = []
    for prepack in (False, True):
        with tempfile.TemporaryDirectory() as scratch:
            executable, _ = tune_and_compile(tvm, module, target, TuningRequest(trials=trials, database=Path(scratch), weight_prepack=prepack))
            library = Path(scratch) / "layer.so"
            executable.export_library(str(library))
            tvm_ms = min(sum(tvm_profile(tvm, library, feeds, runs=5).values()) for _ in range(2))
            rows.append((f"{trials} trials, weight prepack {'on' if prepack else 'off'}", tvm_ms, ort_ms(model, feeds)))
    return rows


def ort_ms(model, feeds, repeat: int = 20) -> float:
    session = runtime.session(model, optimize=True)
    session.run(None, feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, help="a tuning database folder written by tools/bench_tvm.py --db-dir")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--target", default="llvm -mcpu=znver4")
    parser.add_argument("--layer-trials", type=int, default=32)
    parser.add_argument("--int8", action="store_true", help="profile the model quantized as tools/bench_tvm.py --int8 does (give its int8 database)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "profile_tvm.md"))
    args = parser.parse_args()
    load_start = os.getloadavg()
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_tvm import load_model, quantize  # noqa: PLC0415

    tvm = tvm_build.import_tvm()
    model, shapes = load_model(args.model)
    if args.int8:
        model = quantize(model, shapes)
    feeds = runtime.generate_inputs(model, seed=0)
    from backends import compile_model  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        result = compile_model(model, args.target, scratch, input_shapes=shapes, check=False, tune_trials=0, tune_db=args.db)
        kernels = tvm_profile(tvm, result.library, feeds)
    operators = ort_profile(model, feeds)
    layer = layer_ab(tvm, args.layer_trials) if args.layer_trials else []
    write(Path(args.out), args, kernels, operators, layer, result.tuning, load_start)
    return 0


def write(path, args, kernels, operators, layer, tuning, load_start) -> None:
    def by_kind(table):
        sums = collections.Counter()
        for name, ms in table.items():
            sums[kind(name)] += ms
        return sums

    tvm_kinds, ort_kinds = by_kind(kernels), by_kind(operators)
    load_end = os.getloadavg()
    lines = [
        f"## Profile: tuned {'int8' if args.int8 else 'float'} TVM vs ONNX Runtime ({args.model})", "",
        f"Written by `tools/profile_tvm.py`; TVM target `{args.target}`, database `{args.db}` "
        f"({tuning.tasks} tasks, {tuning.tasks_from_database} with a tuned schedule). Load average at the start "
        f"{' / '.join(f'{v:.1f}' for v in load_start)}, at the end {' / '.join(f'{v:.1f}' for v in load_end)}. "
        "TVM: every VM call timed by an instrument (median of 3 runs); ONNX Runtime: its profiler, all optimizations, mean of 11 runs.", "",
        "| layer kind | TVM ms | ONNX Runtime ms | TVM / ORT |", "|---|---|---|---|",
    ]
    for name in sorted(set(tvm_kinds) | set(ort_kinds), key=lambda k: -tvm_kinds.get(k, 0)):
        t, o = tvm_kinds.get(name, 0.0), ort_kinds.get(name, 0.0)
        lines.append(f"| {name} | {t:.2f} | {o:.2f} | {t / o:.2f}x |" if o else f"| {name} | {t:.2f} | {o:.2f} | - |")
    lines.append(f"| total | {sum(kernels.values()):.2f} | {sum(operators.values()):.2f} | {sum(kernels.values()) / max(sum(operators.values()), 1e-9):.2f}x |")
    lines += ["", "Largest TVM kernels:", "", "| kernel | ms |", "|---|---|"]
    lines += [f"| `{re.sub(r'[|]', '/', name)[:90]}` | {ms:.2f} |" for name, ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:12]]
    lines += ["", "Largest ONNX Runtime nodes:", "", "| node (op) | ms |", "|---|---|"]
    lines += [f"| `{name[:90]}` | {ms:.2f} |" for name, ms in sorted(operators.items(), key=lambda kv: -kv[1])[:8]]
    if layer:
        lines += ["", "One layer (3x3 conv 64->64 + ReLU, 1x64x56x56), tuned from scratch:", "",
                  "| variant | TVM ms | ONNX Runtime ms | TVM / ORT |", "|---|---|---|---|"]
        lines += [f"| {name} | {t:.3f} | {o:.3f} | {t / o:.2f}x |" for name, t, o in layer]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
