"""How long the HTML pages take to make on the largest real models: ``diff --html`` and ``inspect --html``.

For each model: load it, fold it (``PassManager("fold", verify="off")``), then time, in this process,
the structural diff plus the diff page with both graphs (``ir.diff_html.render_html(models=...)``), and
the one-model page (``ir.inspect_html.render_model_page``); median of ``--repeats`` runs each, with
the page size and the number of boxes drawn. Writes docs/bench_pages.md.

Run: ``python tools/bench_pages.py [--models light_densenet121,ppocr-det,ppocr-rec] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(name: str, repeats: int) -> dict:
    from ir import diff, io, shapes
    from ir.diff_html import render_html
    from ir.inspect_html import render_model_page
    from models import zoo
    from passes.manager import PassManager

    path = zoo.model_path(name)
    original = io.load(path)
    shapes.fix_input_shapes(original, zoo.default_input_shapes(name))
    folded = PassManager("fold", verify="off").run(io.copy_model(original)).model
    diff_times, inspect_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        structural = diff.structural_diff(original, folded)
        page = render_html(structural, models=(original, folded), paths=(str(path), "folded"))
        diff_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        single = render_model_page(original, str(path))
        inspect_times.append(time.perf_counter() - started)
    return {"model": name, "nodes": len(original.graph), "nodes_after": len(folded.graph),
            "diff_s": statistics.median(diff_times), "diff_mb": len(page) / 1e6, "boxes": page.count('<g class="n ') ,
            "inspect_s": statistics.median(inspect_times), "inspect_mb": len(single) / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="light_densenet121,ppocr-det,ppocr-rec")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_pages.md"))
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    rows = [measure(name, args.repeats) for name in args.models.split(",")]
    load_end = os.getloadavg()
    lines = [
        "## HTML pages: time to draw the largest models",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (a shared machine: times are indicative).",
        f"Produced by `python tools/bench_pages.py --models {args.models} --repeats {args.repeats}`. `diff` = structural diff of the "
        "model against itself folded plus the page with both graphs (one process, model already loaded); `inspect` = the "
        "one-model page. Median of the runs. Boxes: node boxes drawn in the diff page, both panels (unchanged runs collapse).",
        "",
        "| model | nodes | nodes folded | diff page s | diff page MB | boxes drawn | inspect page s | inspect page MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['nodes']:,} | {r['nodes_after']:,} | {r['diff_s']:.2f} | {r['diff_mb']:.2f} | {r['boxes']:,} | "
                     f"{r['inspect_s']:.2f} | {r['inspect_mb']:.2f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
