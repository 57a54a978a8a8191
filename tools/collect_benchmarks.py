"""Assemble docs/benchmarks.md from the sections the benchmark scripts write (docs/bench_*.md).

Each benchmark script writes its own section, with machine and versions, from one run; this script
only concatenates them in a fixed order so the page never mixes hand-written figures in.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
ORDER = ["bench_fold.md", "bench_scale.md", "bench_prune.md", "bench_prune_latency.md", "bench_prune_refit.md", "bench_quantize.md", "bench_tvm.md", "bench_cuda.md", "bench_pages.md"]


def main() -> int:
    sections = [DOCS / name for name in ORDER if (DOCS / name).exists()]
    sections += sorted(p for p in DOCS.glob("bench_*.md") if p.name not in ORDER)
    header = "# Benchmarks\n\nEvery section below is written by the script it names, from one run on the machine it names.\n"
    body = "\n".join(p.read_text().rstrip() + "\n" for p in sections)
    (DOCS / "benchmarks.md").write_text(header + "\n" + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
