"""What running the untrusted input once in a child process costs: ``ir.runtime.preflight`` against
one in-process ONNX Runtime session and run of the same model, interleaved, median of N.

    python tools/bench_preflight.py [--repeat 5] [--doc docs/untrusted.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx  # noqa: E402

from ir import io, runtime, shapes  # noqa: E402


def subjects() -> list[tuple[str, Path]]:
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    found = [(name, light / f"{name}.onnx") for name in ("light_squeezenet", "light_resnet50")]
    try:
        from models import zoo

        found += [(name, zoo.model_path(name)) for name in ("ppocr-cls", "ppocr-det") if zoo.available(name)]
    except Exception:  # the real-models extra is optional
        pass
    return [(n, p) for n, p in found if p.exists()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--doc", type=Path)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    rows = []
    for name, path in subjects():
        model = io.load(path)
        if name.startswith("ppocr"):
            from models import zoo

            shapes.fix_input_shapes(model, zoo.default_input_shapes(name))
        feeds = [runtime.generate_inputs(model)]
        child, inproc = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            runtime.preflight(model, feeds)
            child.append(time.perf_counter() - start)
            start = time.perf_counter()
            runtime.run(runtime.session(model), feeds[0])
            inproc.append(time.perf_counter() - start)
        rows.append((name, len(model.graph), statistics.median(inproc), statistics.median(child)))
        print(rows[-1], flush=True)
    load_end = os.getloadavg()[0]
    lines = [
        "| model | nodes | in-process session + run (s) | preflight in a child (s) | added per command (s) |",
        "|---|---|---|---|---|",
        *[f"| {n} | {k} | {a:.2f} | {b:.2f} | {b:.2f} |" for n, k, a, b in rows],
        "",
        f"Median of {args.repeat}, interleaved; load average {load_start:.1f} at the start, {load_end:.1f} at the end (2 cores).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.doc:
        args.doc.write_text(args.doc.read_text().replace("<!-- preflight -->", text) if args.doc.exists() else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
