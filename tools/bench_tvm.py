"""Benchmark: ONNX Runtime vs TVM untuned vs TVM tuned at several MetaSchedule budgets, float and int8.

With ``--int8`` each model is also quantized by the ``quantize`` pass (QDQ, calibrated on random
inputs) and measured as ONNX Runtime int8 (which fuses the QDQ model into QLinearConv/QGemm) and as
TVM int8 (the int8 lowering: integer Conv/MatMul), untuned and at the same budgets; int8 rows compare
with ONNX Runtime int8 (ratio and the share of outputs within one quantization step).

Models: the ResNet-50 and MobileNetV2 builders (1x3x224x224, folded with the fold pipeline), the
PP-OCRv4 text detector (1x3x320x320) and recognizer (1x3x48x320), folded. For each: ONNX Runtime's
latency (all cores, ORT_ENABLE_ALL), the untuned TVM library's, and for each budget a fresh tuning
database: tuning time, trials, the tuned library's latency and its agreement with ONNX Runtime.
Latency: each TVM run alternates with one ONNX Runtime run (``alternating_latency``), medians of
--repeat rounds after one warm-up, same random input. A second run with the same --db-dir and
budgets takes every task from the databases (no trials) and measures the same schedules again: use
it for a quieter measurement. Writes docs/bench_tvm.md.

Usage: python tools/bench_tvm.py [--budgets 64,256 | --budgets resnet50=64,256 --budgets ppocr-det=128,512]
       [--models resnet50,ppocr-det,mobilenetv2] [--repeat 20] [--target "llvm -mcpu=znver4"] [--int8]
       [--no-again]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backends import compile_model  # noqa: E402
from backends.numeric_check import compare_outputs  # noqa: E402
from backends.tolerance import check_library  # noqa: E402
from ir import runtime  # noqa: E402
import machine_load  # noqa: E402  (tools/, the script's folder)
from bench_prune import SETTLE_S  # noqa: E402


FOLDED: dict[str, str] = {}


def load_model(name: str):
    from passes.manager import PassContext, PassManager  # noqa: PLC0415

    if name in ("resnet50", "mobilenetv2"):
        from models.builders import build  # noqa: PLC0415

        # ONNX Runtime folds BatchNorm into Conv at load; TVM's importer does not: fold for both.
        FOLDED[name] = "folded with the fold pipeline"
        return PassManager("fold", verify="off").run(build(name)).model, None
    from ir import io  # noqa: PLC0415
    from ir.shapes import fix_input_shapes  # noqa: PLC0415
    from models.zoo import default_input_shapes, model_path  # noqa: PLC0415

    shapes = {"x": [1, 3, 320, 320]} if name == "ppocr-det" else default_input_shapes(name)
    model = io.load(model_path(name))
    fix_input_shapes(model, shapes)
    try:
        model = PassManager("fold", verify="off", context=PassContext(input_shapes=shapes)).run(model).model
        FOLDED[name] = "folded with the fold pipeline"
    except ImportError as exc:  # the detector imports into TVM unfolded too; say which one was measured
        FOLDED[name] = f"NOT folded (fold pipeline unavailable: {exc})"
    return model, shapes


def ort_latency(model, feeds, repeat: int) -> float:
    import onnx_ir as ir  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(ir.serde.serialize_model(model).SerializeToString(), providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def quantize(model, shapes):
    """The model quantized by the quantize pass (QDQ), calibrated on 8 random inputs."""
    from passes.manager import PassContext, PassManager  # noqa: PLC0415

    import onnx_ir as ir  # noqa: PLC0415

    model = ir.serde.deserialize_model(ir.serde.serialize_model(model))  # passes work in place: keep the float model
    feeds = [runtime.generate_inputs(model, seed=s) for s in range(8)]
    context = PassContext(input_shapes=shapes) if shapes else None
    kwargs = {"context": context} if context else {}
    return PassManager("quantize{samples=8,verify_samples=2}", verify="off", feeds=feeds, **kwargs).run(model).model


def tvm_row(label, model, shapes, out, repeat, reference, feeds, target="llvm", integer=False, **tuning):
    start = time.perf_counter()
    result = compile_model(model, target, out, input_shapes=shapes, name=label, check=False, **tuning)
    wall = time.perf_counter() - start
    tvm_ms, ort_ms = alternating_latency(result.library, model, feeds, repeat)
    import tvm  # noqa: PLC0415

    from backends.tvm_build import run_library  # noqa: PLC0415

    outputs = run_library(tvm, result.library, list(feeds.values()))
    error = f"{compare_outputs(reference, outputs, rtol=1e-3, atol=1e-4).max_rel_error:.1e}"
    if integer:
        check = check_library(model, feeds, outputs, rtol=1e-3, atol=1e-4, integer=True, notes=[])
        error += f"; {check.detail.split(' of ')[0]} within 1 step" if check.rule == "int8" else ""
    tuned = result.tuning
    return {
        "label": label,
        "latency": tvm_ms,
        "ort": ort_ms,
        "wall": wall,
        "tune_seconds": tuned.seconds if tuned else 0.0,
        "trials": tuned.trials if tuned else 0,
        "tasks": f"{tuned.tasks_tuned}/{tuned.tasks} tuned, {tuned.tasks_from_database} from db" if tuned else "-",
        "error": error,
        "size": result.size_bytes,
        "int8": None if result.integer is None else f"{result.integer.integer_ops}/{result.integer.float_ops}",
    }


def alternating_latency(library, model, feeds, repeat: int) -> tuple[float, float]:
    """(TVM ms, ONNX Runtime ms): medians of ``repeat`` rounds, each one TVM run then one ONNX Runtime run.

    The machine may be shared: alternating run by run puts both under the same load, which two
    separate series of runs, minutes apart, do not. Both runtimes' thread pools spin for a while
    after a run, so each run starts after a pause (``bench_prune.SETTLE_S``) in which they park:
    without it, ONNX Runtime's ResNet-50 measured 140 ms right after TVM runs and 31 ms alone."""
    import onnx_ir as ir  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    import tvm  # noqa: PLC0415

    device = tvm.cpu()
    machine = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
    inputs = [tvm.runtime.tensor(array, device) for array in feeds.values()]
    session = ort.InferenceSession(ir.serde.serialize_model(model).SerializeToString(), providers=["CPUExecutionProvider"])
    machine["main"](*inputs)
    session.run(None, feeds)
    tvm_times, ort_times = [], []
    for _ in range(repeat):
        time.sleep(SETTLE_S)
        start = time.perf_counter()
        machine["main"](*inputs)
        tvm_times.append(time.perf_counter() - start)
        time.sleep(SETTLE_S)
        start = time.perf_counter()
        session.run(None, feeds)
        ort_times.append(time.perf_counter() - start)
    return float(np.median(tvm_times)) * 1e3, float(np.median(ort_times)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", action="append", default=[], help="trial budgets: '64,256' or '8x' (8 per task) for every model, or 'MODEL=64,256' (repeatable)")
    parser.add_argument("--models", default="ppocr-det,resnet50")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--target", default="llvm", help="TVM target of every build ('llvm': this machine's CPU, see backends/host_build.py)")
    parser.add_argument("--int8", action="store_true", help="also ONNX Runtime int8 and TVM int8 rows (the model quantized by the quantize pass)")
    parser.add_argument("--no-again", action="store_true", help="skip the '-again' row (the last budget rebuilt on its database)")
    parser.add_argument("--no-untuned", action="store_true", help="skip the untuned TVM rows")
    parser.add_argument("--db-dir", default=None, help="keep the tuning databases and libraries in this folder (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_tvm.md"))
    args = parser.parse_args()
    budgets_for = budget_table(args.budgets or ["64,256"])
    started = time.perf_counter()
    load_start = machine_load.snapshot()
    sections = []
    for name in args.models.split(","):
        model, shapes = load_model(name)
        feeds = runtime.generate_inputs(model, seed=0)
        reference = runtime.run(model, feeds)
        ort_ms = ort_latency(model, feeds, args.repeat)
        rows = []
        budgets = budgets_for.get(name, budgets_for.get("*", []))
        variants = [("", model, reference)]
        ort_int8_ms = None
        if args.int8:
            quantized = quantize(model, shapes)
            ort_int8_ms = ort_latency(quantized, feeds, args.repeat)
            variants.append(("int8-", quantized, runtime.run(runtime.session(quantized, optimize=True), feeds)))
        with tempfile.TemporaryDirectory() as temporary:
            scratch = str(Path(args.db_dir) / name) if args.db_dir else temporary
            for prefix, subject, expected in variants:
                common = dict(target=args.target, integer=bool(prefix))
                if not args.no_untuned and not prefix:  # the rows: untuned float only
                    rows.append(tvm_row(f"{prefix}untuned", subject, shapes, scratch, max(3, args.repeat // 4), expected, feeds, **common))
                    print(f"{name} {rows[-1]}", flush=True)
                for budget in budgets:
                    db = Path(scratch) / f"db{prefix}{budget}"
                    rows.append(tvm_row(f"{prefix}tuned-{budget}", subject, shapes, scratch, args.repeat, expected, feeds, tune_trials=budget, tune_db=db, **common))
                    print(f"{name} {rows[-1]}", flush=True)
                if budgets and not args.no_again:
                    db = Path(scratch) / f"db{prefix}{budgets[-1]}"
                    rows.append(tvm_row(f"{prefix}tuned-{budgets[-1]}-again", subject, shapes, scratch, args.repeat, expected, feeds, tune_trials=budgets[-1], tune_db=db, **common))
                partial = [*sections, (name, shapes, ort_ms, ort_int8_ms, rows)]
                write(Path(args.out), partial, args, time.perf_counter() - started, load_start)  # partial results survive
        sections.append((name, shapes, ort_ms, ort_int8_ms, rows))
    write(Path(args.out), sections, args, time.perf_counter() - started, load_start)
    return 0


def budget_table(specs: list[str]) -> dict[str, list[int]]:
    """{'*': [64, 256]} from '64,256'; {'resnet50': [...]} from 'resnet50=...'."""
    table = {}
    for spec in specs:
        model, _, numbers = spec.rpartition("=")
        table[model or "*"] = [b if b.endswith("x") else int(b) for b in numbers.split(",")]  # "8x": 8 trials per task
    return table


def write(path: Path, sections, args, seconds, load_start) -> None:
    versions = {p: metadata.version(p) for p in ("apache-tvm", "apache-tvm-ffi", "onnxruntime", "xgboost-cpu")}
    repeat = args.repeat
    lines = [
        "## TVM: ONNX Runtime vs untuned vs MetaSchedule-tuned (CPU), float and int8",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; Python {platform.python_version()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + f". TVM target: `{args.target}`.",
        machine_load.describe(load_start, machine_load.snapshot()),
        f"Written by `tools/bench_tvm.py` in one run of {seconds / 60:.1f} min. Latency: median of {repeat} runs "
        "(untuned: fewer) after a warm-up, one random input, all cores for both; each TVM run alternates with one ONNX Runtime run "
        "(float rows: ONNX Runtime float; int8 rows: ONNX Runtime on the same QDQ model), each after a pause of "
        f"{SETTLE_S * 1e3:.0f} ms in which the other's spinning threads park, so both see the same machine load, "
        "and the ratio uses those two medians. "
        "Candidates are built in-process and measured by MetaSchedule's local runner. Each budget tunes into a fresh "
        "database; an `-again` row runs the last budget again on that database. Error: max |TVM - ORT| / output magnitude; "
        "int8 rows also give the share of outputs within one quantization step of ONNX Runtime int8 (the integer rule). "
        "int8 = Conv/MatMul computed in integers / in float.",
        "",
    ]
    for name, shapes, ort_ms, ort_int8_ms, rows in sections:
        shape = "1x3x224x224" if shapes is None else "x".join(map(str, next(iter(shapes.values()))))
        lines += [f"### {name} ({shape}{', ' + FOLDED[name] if name in FOLDED else ''})", "",
                  "| build | latency ms | ORT ms (alternating) | vs ORT | tuning s | trials | tasks | build wall s | int8 | error |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines.append(f"| ONNX Runtime float (first) | {ort_ms:.2f} | - | 1.00x | - | - | - | - | - | - |")
        if ort_int8_ms is not None:
            lines.append(f"| ONNX Runtime int8 (our QDQ, first) | {ort_int8_ms:.2f} | - | {ort_int8_ms / ort_ms:.2f}x of float | - | - | - | - | - | - |")
        for row in rows:
            lines.append(
                f"| TVM {row['label']} | {row['latency']:.2f} | {row['ort']:.2f} | {row['latency'] / row['ort']:.2f}x | {row['tune_seconds']:.0f} | "
                f"{row['trials']} | {row['tasks']} | {row['wall']:.0f} | {row['int8'] or '-'} | {row['error']} |"
            )
        lines += ["", *verdicts(name, rows), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def verdicts(name, rows) -> list[str]:
    """The issue's targets for one model, met or not, from this run's rows."""
    float_rows = [r for r in rows if not r["label"].startswith("int8")]
    int8_rows = [r for r in rows if r["label"].startswith("int8")]
    best = min(float_rows, key=lambda r: r["latency"] / r["ort"])
    out = [f"- Tuned float TVM within 1.5x of ONNX Runtime float: {'met' if best['latency'] / best['ort'] <= 1.5 else 'not met'} "
           f"(best: {best['label']}, {best['latency'] / best['ort']:.2f}x)."]
    if int8_rows:
        fastest_float = min(r["latency"] for r in float_rows)
        fastest_int8 = min(int8_rows, key=lambda r: r["latency"])
        out.append(f"- TVM int8 at most 0.6x of TVM float: {'met' if fastest_int8['latency'] <= 0.6 * fastest_float else 'not met'} "
                   f"({fastest_int8['label']} {fastest_int8['latency']:.1f} ms vs fastest float {fastest_float:.1f} ms: "
                   f"{fastest_int8['latency'] / fastest_float:.2f}x).")
        ratio = fastest_int8["latency"] / fastest_int8["ort"]
        out.append(f"- Moonshot, TVM int8 faster than ONNX Runtime int8: {'met' if ratio < 1 else 'not met'} ({ratio:.2f}x).")
    return out


if __name__ == "__main__":
    sys.exit(main())
