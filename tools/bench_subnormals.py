"""Benchmark: what subnormal weights cost in ONNX Runtime, and what flushing them to zero gives back.

PP-OCRv4 rec (constants folded) is compressed by ``decompose{macs=0.3}`` and ``prune{macs=0.3}``
(32 rendered calibration images each), once as the passes write weights (subnormals flushed to zero
by ``passes.reconstruct.add_initializer``) and once with the flush disabled. For each model: the
count of subnormal float weights, and ONNX Runtime latency (2 threads, no spinning, median of
--repeats runs interleaved with the original, ``bench_prune.interleaved_ms``). Writes
docs/bench_subnormals.md.

Usage: python tools/bench_subnormals.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import bench_prune as bp  # noqa: E402
import machine_load  # noqa: E402


def subnormal_weights(model) -> int:
    count = 0
    for value in model.graph.initializers.values():
        array = value.const_value.numpy() if value.const_value is not None else None
        if array is not None and array.dtype.kind == "f":
            count += int(np.sum((array != 0) & (np.abs(array) < np.finfo(array.dtype).tiny)))
    return count


def compressed(base, pass_name: str, cal, flush: bool):
    from ir import io
    from passes import reconstruct
    from passes.base import create
    from passes.manager import PassContext

    model = io.copy_model(base)
    kept = reconstruct.flush_subnormals
    if not flush:
        reconstruct.flush_subnormals = lambda array: array
    try:
        pass_ = create(pass_name, {"macs": "0.3", "calib": "32"})
        pass_.context = PassContext(calibration=cal)
        pass_(model)
    finally:
        reconstruct.flush_subnormals = kept
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_subnormals.md"))
    args = parser.parse_args()
    from passes.calibration import Calibration

    load_start = machine_load.snapshot()
    base = bp.load("ppocr-rec")
    cal = Calibration.from_iterable(bp.calibration("ppocr-rec", base, 32).take(32), "calibration")
    feed = cal.take(1)[0]
    base_run = bp.timed_session(base, feed)
    rows = [("original", base)]
    for pass_name in ("decompose", "prune"):
        for flush in (False, True):
            rows.append((f"{pass_name}{{macs=0.3}}, subnormals {'flushed' if flush else 'kept'}", compressed(base, pass_name, cal, flush)))
    lines = ["## Subnormal weights in ONNX Runtime (PP-OCRv4 rec)", "",
             f"Written by `python tools/bench_subnormals.py --repeats {args.repeats}`. {platform.machine()}, Python "
             f"{platform.python_version()}, onnxruntime {metadata.version('onnxruntime')}; 2 threads, no spinning; each model's "
             "median latency is timed interleaved with the original's.",
             machine_load.describe(load_start, machine_load.snapshot()), "",
             "| model | subnormal weights | ORT ms | original ms (interleaved) | vs original |", "|---|---|---|---|---|"]
    for label, model in rows:
        base_ms, ms = bp.interleaved_ms(base_run, bp.timed_session(model, feed), args.repeats)
        lines.append(f"| {label} | {subnormal_weights(model)} | {ms:.2f} | {base_ms:.2f} | {ms / base_ms:.2f}x |")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
