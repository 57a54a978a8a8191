"""Benchmark: low-rank decomposition and depthwise-separable rewrites against pruning, in one run.

Models: PP-OCRv4 rec/det and the PP-OCR direction classifier cls (trained; constants folded; calibration from ``models.ocr_data`` seed 1,
task accuracy on the evaluation set seed 0) and the MobileNetV2 / ResNet-50 builders (random
weights, generated calibration inputs: fidelity only). Loading, data, metrics and interleaved ONNX
Runtime timing come from ``tools/bench_prune.py``.

Rows per model and MAC target T: ``decompose{macs=T,method=M}`` for each method and auto, ``decompose{macs=T,timing=true}`` (auto-timed),
``separable{macs=T}``, ``prune{macs=T}`` (its default importance: activation with calibration data),
``decompose{macs=T/2},prune{macs=(T/2)/(1-T/2)}`` (T in all: prune's fraction is of what decompose leaves), ``decompose{macs=T},quantize``, and the anchor: tensorly's
data-free factorization (SVD / partial Tucker / parafac) at the per-layer ranks that ``decompose``
auto chose, without refit (what the data-aware fit adds). Columns: MACs, params, accuracy, output
SQNR on 8 held-back feeds, ORT latency (optimized sessions, 2 threads, interleaved with the
baseline, medians), latency share of the MAC cut ``(1 - t/t0) / (1 - macs/macs0)``, pass time and
peak Python memory (tracemalloc) of the pass. Writes docs/bench_lowrank.md (and .json).

Usage: python tools/bench_lowrank.py [--models ppocr-rec,mobilenetv2] [--targets 0.3] [--rows all]
       [--calib 32] [--n-eval 100] [--repeats 20] [--out docs/bench_lowrank.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import bench_prune as bp  # noqa: E402

ROWS = ("svd", "spatial-svd", "tucker", "cp", "auto", "auto-timed", "separable", "prune", "decompose+prune", "decompose+quantize", "tensorly")


def pipeline(row: str, target: float, calib: int) -> str:
    c = f"calib={calib}"
    if row in ("svd", "spatial-svd", "tucker", "cp", "auto"):
        return f"decompose{{macs={target},method={row},{c}}}"
    if row == "auto-timed":  # layers whose chain measures slower than the layer alone stay whole
        return f"decompose{{macs={target},timing=true,{c}}}"
    if row == "separable":
        return f"separable{{macs={target},{c}}}"
    if row == "prune":
        return f"prune{{macs={target},{c}}}"
    if row == "decompose+prune":  # half the cut each: prune's fraction is of the model decompose leaves
        return f"decompose{{macs={target / 2:g},{c}}},prune{{macs={(target / 2) / (1 - target / 2):.4g},{c}}}"
    if row == "decompose+quantize":
        return f"decompose{{macs={target},{c}}},quantize"
    raise ValueError(row)


def run_pipeline(model, text, cal):
    from passes.manager import PassContext
    from passes.pipeline import parse

    steps = parse(text).steps
    passes_run = []
    for step in steps:
        pass_ = step.instance
        pass_.context = PassContext(calibration=cal)
        pass_(model)
        passes_run.append(pass_)
    return passes_run


def tensorly_anchor(base, layers_rows):
    """The original model with each layer that decompose auto factorized replaced by tensorly's
    data-free factorization at the same ranks (no data, no refit)."""
    import tensorly as tl
    from tensorly.decomposition import parafac, partial_tucker
    from tensorly.tenalg import svd_interface

    from ir import cost, io
    from passes.decompose import factorize as fz
    from passes.decompose.layers import describe
    from passes.decompose.rewrite import conv_attributes, pointwise_attributes, replace

    model = io.copy_model(base)
    cost.analyze(model)
    by_name = {n.name or n.outputs[0].name: n for n in model.graph}
    for row in layers_rows:
        layer = describe(by_name[row["layer"]])
        w, method, ranks = layer.weight, row["method"], row["ranks"]
        if method == "svd":
            u, s, vt = svd_interface(tl.tensor(w.reshape(w.shape[0], -1)), n_eigenvecs=ranks[0])
            root = np.sqrt(s)
            first = (root[:, None] * vt).reshape((ranks[0], *w.shape[1:]))
            second = (u * root).reshape((w.shape[0], ranks[0]) + (1,) * (w.ndim - 2))
            steps = [(first, {}), (second, {})] if layer.kind != "conv" else [(first, conv_attributes(layer)), (second, pointwise_attributes(layer))]
        elif method == "tucker":
            (core, factors), _ = partial_tucker(tl.tensor(w), rank=[ranks[1], ranks[0]], modes=[0, 1], init="svd")
            u_out, u_in = factors
            ones = (1,) * (w.ndim - 2)
            steps = [(u_in.T.reshape((ranks[0], w.shape[1]) + ones), pointwise_attributes(layer)), (core, conv_attributes(layer)),
                     (u_out.reshape((w.shape[0], ranks[1]) + ones), pointwise_attributes(layer))]
        elif method == "cp":
            weights, (a, b, h, v) = parafac(tl.tensor(w), rank=ranks[0], init="svd", n_iter_max=100)
            r = ranks[0]
            a = a * weights
            steps = [(b.T.reshape(r, -1, 1, 1), pointwise_attributes(layer)),
                     (h.T.reshape(r, 1, -1, 1), {**conv_attributes(layer, kernel_axes=(0,)), "group": r}),
                     (v.T.reshape(r, 1, 1, -1), {**conv_attributes(layer, kernel_axes=(1,)), "group": r}),
                     (a.reshape(-1, r, 1, 1), pointwise_attributes(layer))]
        else:  # spatial SVD has no tensorly counterpart: the same (data-free) SVD
            f = fz.SpatialSVD(w).at(ranks[0])
            steps = [(f.weights[0], conv_attributes(layer, kernel_axes=(0,))), (f.weights[1], conv_attributes(layer, kernel_axes=(1,)))]
        replace(layer, method.replace("-", ""), steps)
    return model


def measure(name, base, base_run, feed, model, holdout, args, base_macs):
    from ir import cost
    from ir.fidelity import measure as compare_models

    summary = cost.analyze(model)
    fidelity = compare_models(base, model, holdout)
    base_ms, ms = bp.interleaved_ms(base_run, bp.timed_session(model, feed), args.repeats)
    cut = 1 - summary.macs / base_macs
    return {"macs": summary.macs, "params": summary.params, "sqnr_db": fidelity["sqnr_db"], "top1": fidelity.get("top1_agreement"),
            "accuracy": bp.accuracy(name, model, args.n_eval), "latency_ms": ms, "base_latency_ms": base_ms,
            "latency_share": (1 - ms / base_ms) / cut if cut > 0.01 else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ppocr-rec,mobilenetv2")
    parser.add_argument("--targets", default="0.3")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--n-eval", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_lowrank.md"))
    args = parser.parse_args()
    from ir import cost, io
    from passes.calibration import Calibration

    load_start = os.getloadavg()
    results = []
    for name in args.models.split(","):
        base = bp.load(name)
        cal_all = bp.calibration(name, base, args.calib + 8)
        feeds = cal_all.take(args.calib + 8)
        cal, holdout = Calibration.from_iterable(feeds[: args.calib], "calibration"), feeds[args.calib :]
        feed = feeds[0]
        base_run = bp.timed_session(base, feed)
        base_cost = cost.analyze(base)
        float_row = {"model": name, "row": "float", "target": 0.0, "macs": base_cost.macs, "params": base_cost.params,
                     "accuracy": bp.accuracy(name, base, args.n_eval)}
        results.append(float_row)
        print(name, "float", float_row, flush=True)
        for target in (float(t) for t in args.targets.split(",")):
            auto_layers = None
            for row in args.rows.split(","):
                model = io.copy_model(base)
                tracemalloc.start()
                start = time.perf_counter()
                try:
                    if row == "tensorly":
                        if auto_layers is None:
                            continue
                        model = tensorly_anchor(base, auto_layers)
                        passes_run, text = [], "tensorly data-free at auto's ranks"
                    else:
                        text = pipeline(row, target, args.calib)
                        passes_run = run_pipeline(model, text, cal)
                except Exception as exc:  # a row that fails is recorded, the run goes on
                    tracemalloc.stop()
                    results.append({"model": name, "row": row, "target": target, "error": f"{type(exc).__name__}: {exc}"[:200]})
                    print(name, row, "failed", exc, flush=True)
                    continue
                seconds = time.perf_counter() - start
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                if row == "auto":
                    auto_layers = passes_run[0].layers
                methods = {}
                if row == "tensorly":  # the layers auto factorized, by the same methods
                    for layer in auto_layers:
                        methods[f"tensorly {layer['method']}"] = methods.get(f"tensorly {layer['method']}", 0) + 1
                for p in passes_run:
                    for layer in getattr(p, "layers", []) or []:
                        methods[layer.get("method", p.name)] = methods.get(layer.get("method", p.name), 0) + 1
                notes = [n for p in passes_run for n in p.notes if "cannot be reached" in n or "discarded" in n]
                result = {"model": name, "row": row, "target": target, "pipeline": text, "seconds": seconds, "peak_mb": peak / 2**20,
                          "methods": methods, "notes": notes,
                          **measure(name, base, base_run, feed, model, holdout, args, base_cost.macs)}
                results.append(result)
                print(name, row, {k: v for k, v in result.items() if k not in ("pipeline",)}, flush=True)
    load_end = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(), "load_start": load_start, "load_end": load_end,
           "onnxruntime": metadata.version("onnxruntime")}
    try:
        env["tensorly"] = metadata.version("tensorly")
    except metadata.PackageNotFoundError:
        env["tensorly"] = None
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "env": env, "results": results}, indent=1, default=float))
    out.write_text(render(results, args, env))
    print(f"wrote {out}")
    return 0


def _f(value, fmt):
    return "" if value is None else format(value, fmt)


def _latency(r) -> str:
    return "" if r.get("latency_ms") is None else f"{r['latency_ms']:.2f} ({_f(r.get('base_latency_ms'), '.2f')})"


def render(results, args, env) -> str:
    lines = ["# Low-rank decomposition and depthwise-separable rewrites", "",
             f"`python tools/bench_lowrank.py --models {args.models} --targets {args.targets} --calib {args.calib} --n-eval {args.n_eval} "
             f"--repeats {args.repeats}`; load average {tuple(round(x, 2) for x in env['load_start'])} at start, "
             f"{tuple(round(x, 2) for x in env['load_end'])} at the end (a shared 2-core machine: latencies are noisy; each row's "
             f"baseline is timed interleaved with it). {env['cpu']}, Python {env['python']}, ONNX Runtime {env['onnxruntime']}, "
             f"tensorly {env['tensorly']}.", "",
             "Accuracy: character accuracy (rec) / F-score (det) / direction accuracy (cls) on rendered data; top-1: agreement with the float model (builders). "
             "SQNR: the model output against the float model on 8 held-back calibration feeds. Share: fraction of the MAC cut "
             "that shows up as ONNX Runtime speed-up.", "",
             "| model | row | MACs (M) | params (k) | accuracy | top-1 | SQNR dB | ORT ms (base) | share | pass s | peak MB | layers by method |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['row']} {r['target']:g} | failed: {r['error']} |||||||||||")
            continue
        label = r["row"] if r["row"] == "float" else f"{r['row']} {r['target']:g}"
        methods = ", ".join(f"{k} {v}" for k, v in sorted(r.get("methods", {}).items()))
        lines.append(f"| {r['model']} | {label} | {r['macs'] / 1e6:.1f} | {r['params'] / 1e3:.0f} | {_f(r.get('accuracy'), '.3f')} | "
                     f"{_f(r.get('top1'), '.3f')} | {_f(r.get('sqnr_db'), '.1f')} | "
                     f"{_latency(r)} | {_f(r.get('latency_share'), '.2f')} | "
                     f"{_f(r.get('seconds'), '.1f')} | {_f(r.get('peak_mb'), '.0f')} | {methods} |")
    notes = sorted({f"{r['model']} {r['row']} {r['target']:g}: {n}" for r in results for n in r.get("notes", [])})
    if notes:
        lines += ["", "Notes from the passes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
