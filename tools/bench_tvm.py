"""Benchmark: ONNX Runtime vs TVM untuned vs TVM tuned at several MetaSchedule budgets, in one run.

Models: the ResNet-50 builder (1x3x224x224) and the PP-OCRv4 text detector (folded with the fold
pipeline at a fixed 1x3x320x320). For each: ONNX Runtime's latency (all cores, ORT_ENABLE_ALL), the
untuned TVM library's, and for each budget a fresh tuning database: tuning time, trials, the tuned
library's latency and its agreement with ONNX Runtime. Then the largest budget is built again with
its database: tasks already recorded come from it and the budget goes to the others. Latency: median of --repeat runs after one
warm-up, same random input, this machine, same thread count. Writes docs/bench_tvm.md.

Usage: python tools/bench_tvm.py [--budgets 64,256 | --budgets resnet50=64,256 --budgets ppocr-det=128,512]
       [--models resnet50,ppocr-det] [--repeat 20]
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
from ir import runtime  # noqa: E402
import machine_load  # noqa: E402  (tools/, the script's folder)


FOLDED: dict[str, str] = {}


def load_model(name: str):
    from passes.manager import PassContext, PassManager  # noqa: PLC0415

    if name == "resnet50":
        from models.builders import build  # noqa: PLC0415

        # ONNX Runtime folds BatchNorm into Conv at load; TVM's importer does not: fold for both.
        FOLDED[name] = "folded with the fold pipeline"
        return PassManager("fold", verify="off").run(build("resnet50")).model, None
    from ir import io  # noqa: PLC0415
    from ir.shapes import fix_input_shapes  # noqa: PLC0415
    from models.zoo import model_path  # noqa: PLC0415

    shapes = {"x": [1, 3, 320, 320]}
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


def tvm_row(label, model, shapes, out, repeat, reference, feeds, **tuning):
    start = time.perf_counter()
    result = compile_model(model, "llvm", out, input_shapes=shapes, name=label, check=False, measure_repeat=repeat, **tuning)
    wall = time.perf_counter() - start
    # ONNX Runtime again right after TVM's measurement, so each ratio compares the two under the
    # same machine conditions (the machine may be shared).
    ort_ms = ort_latency(model, feeds, repeat)
    import tvm  # noqa: PLC0415

    from backends.tvm_build import run_library  # noqa: PLC0415

    outputs = run_library(tvm, result.library, list(feeds.values()))
    error = compare_outputs(reference, outputs, rtol=1e-3, atol=1e-4).max_rel_error
    tuned = result.tuning
    return {
        "label": label,
        "latency": result.latency.median_ms,
        "ort": ort_ms,
        "wall": wall,
        "tune_seconds": tuned.seconds if tuned else 0.0,
        "trials": tuned.trials if tuned else 0,
        "tasks": f"{tuned.tasks_tuned}/{tuned.tasks} tuned, {tuned.tasks_from_database} from db" if tuned else "-",
        "error": error,
        "size": result.size_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", action="append", default=[], help="trial budgets: '64,256' for every model, or 'MODEL=64,256' (repeatable)")
    parser.add_argument("--models", default="ppocr-det,resnet50")
    parser.add_argument("--repeat", type=int, default=20)
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
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(tvm_row("untuned", model, shapes, scratch, max(3, args.repeat // 4), reference, feeds))
            for budget in budgets:
                db = Path(scratch) / f"db{budget}"
                rows.append(tvm_row(f"tuned-{budget}", model, shapes, scratch, args.repeat, reference, feeds, tune_trials=budget, tune_db=db))
                print(f"{name} {budget}: {rows[-1]}", flush=True)
            db = Path(scratch) / f"db{budgets[-1]}"
            rows.append(tvm_row(f"tuned-{budgets[-1]}-again", model, shapes, scratch, args.repeat, reference, feeds, tune_trials=budgets[-1], tune_db=db))
        sections.append((name, shapes, ort_ms, rows))
        print(name, ort_ms, rows, flush=True)
        write(Path(args.out), sections, args.repeat, time.perf_counter() - started, (load_start, None))  # partial results survive
    write(Path(args.out), sections, args.repeat, time.perf_counter() - started, (load_start, machine_load.snapshot()))
    return 0


def budget_table(specs: list[str]) -> dict[str, list[int]]:
    """{'*': [64, 256]} from '64,256'; {'resnet50': [...]} from 'resnet50=...'."""
    table = {}
    for spec in specs:
        model, _, numbers = spec.rpartition("=")
        table[model or "*"] = [int(b) for b in numbers.split(",")]
    return table


def write(path: Path, sections, repeat, seconds, load) -> None:
    versions = {p: metadata.version(p) for p in ("apache-tvm", "apache-tvm-ffi", "onnxruntime", "xgboost-cpu")}
    lines = [
        "## TVM: ONNX Runtime vs untuned vs MetaSchedule-tuned (CPU)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; Python {platform.python_version()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Written by `tools/bench_tvm.py` in one run of {seconds / 60:.1f} min. Latency: median of {repeat} runs "
        "(untuned: fewer) after a warm-up, one random input, all cores for both; ONNX Runtime is measured again right after each TVM library and the ratio uses that measurement. Candidates are built in-process and measured by MetaSchedule's local runner. Each budget tunes into a fresh "
        "database; the `-again` row runs the last budget again on that database: tasks with records come from it, the budget goes to the others (incremental tuning). Error: max |TVM - ORT| / output magnitude.",
        machine_load.describe(*load),
        "",
    ]
    for name, shapes, ort_ms, rows in sections:
        shape = "1x3x224x224" if shapes is None else "x".join(map(str, shapes["x"]))
        lines += [f"### {name} ({shape}{', ' + FOLDED[name] if name in FOLDED else ''})", "",
                  "| build | latency ms | ORT ms (measured right after) | vs ORT | tuning s | trials | tasks | build wall s | rel error |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines.append(f"| ONNX Runtime (first) | {ort_ms:.2f} | - | 1.00x | - | - | - | - | - |")
        for row in rows:
            lines.append(
                f"| TVM {row['label']} | {row['latency']:.2f} | {row['ort']:.2f} | {row['latency'] / row['ort']:.2f}x | {row['tune_seconds']:.0f} | "
                f"{row['trials']} | {row['tasks']} | {row['wall']:.0f} | {row['error']:.1e} |"
            )
        best = min(row["latency"] / row["ort"] for row in rows)
        verdict = "met" if best <= 1.5 else "not met"
        lines += ["", f"Target (tuned within 1.5x of ONNX Runtime): {verdict}; best TVM {best:.2f}x ONNX Runtime's latency.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
