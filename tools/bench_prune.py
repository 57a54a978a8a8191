"""Benchmark: structured pruning at 30% / 50% fewer MACs, per importance criterion, with and without
least-squares reconstruction, in one run.

Models: ResNet-50 and MobileNetV2 builders (random weights, generated calibration inputs: fidelity
only) and PP-OCRv4 det/rec (trained; calibration from ``models.ocr_data`` with seed 1, task accuracy
on the evaluation set with seed 0). For each configuration: MACs and parameters after, output
fidelity against the original on held-back calibration feeds (SQNR, cosine, top-1 agreement for the
classifiers), task accuracy (PP-OCR), pass time, and ONNX Runtime latency before/after (optimized
session, 2 threads, median of repeated runs) with the ratio of latency reduction to MAC reduction.
Writes docs/bench_prune.md (and .json next to it).

Usage: python tools/bench_prune.py [--models ppocr-rec,...] [--criteria l1,bn] [--n-eval 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = {"ppocr-rec": "rec", "ppocr-det": "det"}
ACCURACY_KEY = {"rec": "char_accuracy", "det": "f_score"}


def load(name: str):
    from ir import io, shapes
    from models import builders, zoo

    if name in builders.BUILDERS:
        return builders.build(name)
    model = io.load(zoo.model_path(name))
    shapes.fix_input_shapes(model, zoo.default_input_shapes(name))
    return model


def calibration(name: str, model, n: int):
    from ir import runtime
    from models import ocr_data
    from passes.calibration import Calibration

    if name in TASKS:
        return Calibration.from_iterable(ocr_data.calibration_arrays(TASKS[name], n, seed=1), "ocr_data seed 1")
    return Calibration.from_iterable([runtime.generate_inputs(model, seed=100 + i) for i in range(n)], "generated")


def latency_ms(model, feed, repeats: int = 20) -> float:
    from ir import runtime

    sess = runtime.session(model, optimize=True, threads=2)
    repeats = max(repeats, 30)
    names = [o.name for o in sess.get_outputs()]
    for _ in range(3):
        sess.run(names, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(names, feed)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def accuracy(name: str, model, n: int) -> float | None:
    if name not in TASKS:
        return None
    from models import ocr_data

    scores = ocr_data.evaluate(TASKS[name], model, n=n, seed=0)
    key = ACCURACY_KEY[TASKS[name]]
    return scores.get(key, next(iter(scores.values())))


def run_config(name, base, cal, feed, macs, importance, reconstruct, n_eval, calib, holdout) -> dict:
    import passes.prune  # noqa: F401
    from ir import cost, io
    from passes.base import create
    from passes.manager import PassContext

    model = io.copy_model(base)
    pass_ = create("prune", {"macs": str(macs), "importance": importance, "reconstruct": str(reconstruct).lower(),
                             "calib": str(calib), "holdout": str(holdout)})
    pass_.context = PassContext(calibration=cal)
    start = time.perf_counter()
    pass_(model)
    seconds = time.perf_counter() - start
    summary = cost.analyze(model)
    return {"macs": summary.macs, "params": summary.params, "seconds": seconds, **pass_.fidelity,
            "accuracy": accuracy(name, model, n_eval), "latency_ms": latency_ms(model, feed),
            "refit": pass_.stats.get("layers refit", 0), "base_latency_ms": latency_ms(base, feed)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="ppocr-rec,ppocr-det,mobilenetv2,resnet50")
    parser.add_argument("--criteria", default="l1,bn,activation,reconstruction")
    parser.add_argument("--det-criteria", default="l1,activation")
    parser.add_argument("--builder-criteria", default="l1")
    parser.add_argument("--targets", default="0.3,0.5")
    parser.add_argument("--n-eval", type=int, default=100)
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--holdout", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_prune.md"))
    args = parser.parse_args()
    from ir import cost

    rows = []
    out = Path(args.out)
    for name in args.models.split(","):
        base = load(name)
        cal = calibration(name, base, args.calib + args.holdout)
        feed = cal.take(1)[0]
        summary = cost.analyze(base)
        original = {"macs": summary.macs, "params": summary.params, "accuracy": accuracy(name, base, args.n_eval),
                    "latency_ms": latency_ms(base, feed)}
        print(name, "original", original, flush=True)
        criteria = args.criteria if name == "ppocr-rec" else args.det_criteria if name == "ppocr-det" else args.builder_criteria
        for target in (float(t) for t in args.targets.split(",")):
            for importance in criteria.split(","):
                for reconstruct in (False, True):
                    try:
                        result = run_config(name, base, cal, feed, target, importance, reconstruct, args.n_eval, args.calib, args.holdout)
                    except Exception as exc:  # record and go on: one failure must not lose the run
                        result = {"error": f"{type(exc).__name__}: {exc}"[:160]}
                    row = {"model": name, "target": target, "importance": importance, "reconstruct": reconstruct,
                           "original": original, **result}
                    rows.append(row)
                    print(json.dumps(row, default=float), flush=True)
                    out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
                    out.write_text(render(rows, args))
    return 0


def render(rows: list[dict], args) -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("onnx", "onnx-ir", "onnxruntime", "numpy", "scipy"))
    lines = [
        "## Structured pruning: importance criteria, with and without least-squares reconstruction",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {versions}.",
        f"Produced by `python tools/bench_prune.py` (one run). `prune{{macs=T,importance=I,reconstruct=R}}` with "
        f"{args.calib} calibration feeds for importance/refit and {args.holdout} held-back feeds for fidelity. "
        "PP-OCR: calibration = `ocr_data.calibration_arrays(task, n, seed=1)`, accuracy = `ocr_data.evaluate(task, n="
        f"{args.n_eval}, seed=0)` (rec: character accuracy, det: F-score). Builders have random weights and generated "
        "calibration inputs: only fidelity is meaningful there. Latency: ONNX Runtime CPU, all graph optimizations, 2 threads, "
        "median of 30 runs, batch 1; the original is re-measured next to each pruned model (`base ms`) because the machine is shared. `lat/MAC` = (1 - latency ratio) / (1 - MAC ratio): the share of the MAC reduction "
        "that shows up as measured speed.",
        "",
        "| model | target | importance | refit | MACs (M) | params (K) | SQNR dB | cosine | top-1 agr. | accuracy | latency ms | base ms | lat/MAC | pass s |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seen = set()
    for row in rows:
        o = row["original"]
        if row["model"] not in seen:
            seen.add(row["model"])
            acc = f"{o['accuracy']:.3f}" if o["accuracy"] is not None else "-"
            lines.append(f"| **{row['model']}** | original | - | - | {o['macs'] / 1e6:.0f} | {o['params'] / 1e3:.0f} | - | - | - | {acc} | {o['latency_ms']:.2f} | - | - | - |")
        if "error" in row:
            lines.append(f"| {row['model']} | {row['target']:.0%} | {row['importance']} | {'yes' if row['reconstruct'] else 'no'} | error: {row['error']} ||||||||||")
            continue
        mac_cut = 1 - row["macs"] / o["macs"]
        lat_cut = 1 - row["latency_ms"] / row["base_latency_ms"]
        acc = f"{row['accuracy']:.3f}" if row["accuracy"] is not None else "-"
        top1 = f"{row['top1_agreement']:.2f}" if "top1_agreement" in row else "-"
        lines.append(
            f"| {row['model']} | {row['target']:.0%} | {row['importance']} | {'yes' if row['reconstruct'] else 'no'} | "
            f"{row['macs'] / 1e6:.0f} | {row['params'] / 1e3:.0f} | {row['sqnr_db']:.1f} | {row['cosine']:.4f} | {top1} | {acc} | "
            f"{row['latency_ms']:.2f} | {row['base_latency_ms']:.2f} | {lat_cut / mac_cut:.2f} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
