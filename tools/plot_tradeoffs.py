"""Trade-off plots of the compression benchmarks, as PNG next to their tables in docs/.

Reads the JSON the benchmarks wrote (nothing is re-measured) and draws:

- docs/bench_prune_tradeoff.png from docs/bench_prune.json: per model, output SQNR (dB, against the
  unpruned model on held-back feeds) against the MACs and against the parameters kept, one marker
  per importance criterion, filled with least-squares refit, hollow without; layer pruning as crosses;
- docs/bench_quantize_tradeoff.png from docs/bench_quantize.json: per model, the task metric (OCR
  accuracy/F-score; top-1 agreement with the float model for the generated builders) against the
  model size, one point per method (float, ours, ONNX Runtime's quantizer, NNCF, ...).

Each markdown file gets a link to its picture under a "Trade-off plot" line (added once).
Needs matplotlib (extra ``bench``). Run: ``python tools/plot_tradeoffs.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKERS = {"l1": "o", "activation": "s", "reconstruction": "^", "l2": "v", "bn": "D"}


def plot_prune(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(row["model"] for row in rows))
    figure, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 7.2), squeeze=False)
    for column, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model and r.get("sqnr_db") is not None]
        for row_index, (key, label) in enumerate((("macs", "MACs kept"), ("params", "parameters kept"))):
            ax = axes[row_index][column]
            for row in mine:
                share = row[key] / row["original"][key]
                if row["pass"] == "prune-layers":
                    ax.scatter(share, row["sqnr_db"], marker="x", color="#6b7280", label="layers")
                    continue
                marker = MARKERS.get(row["importance"], "o")
                colour = "#e65100" if row["target"] >= 0.5 else "#1a73e8"
                ax.scatter(share, row["sqnr_db"], marker=marker, facecolors=colour if row["reconstruct"] else "none",
                           edgecolors=colour, label=f"{row['importance']}{' + refit' if row['reconstruct'] else ''}")
            ax.set_xlabel(f"{label} (fraction of the original)")
            ax.set_ylabel("output SQNR (dB)")
            ax.grid(alpha=0.3)
            if row_index == 0:
                ax.set_title(model)
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    figure.legend(unique.values(), unique.keys(), loc="lower center", ncol=len(unique), frameon=False)
    figure.suptitle("Structured pruning: output SQNR against what is kept (blue: 30% MAC target, orange: 50%)")
    figure.tight_layout(rect=(0, 0.05, 1, 0.96))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_quantize(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(data["int8"])
    columns = 3
    grid_rows = -(-len(models) // columns)
    figure, axes = plt.subplots(grid_rows, columns, figsize=(6.0 * columns, 5.0 * grid_rows), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models):
        rows = sorted((r for r in data["int8"][model] if r.get("value") is not None and r.get("bytes")), key=lambda r: -r["value"])
        for i, row in enumerate(rows):
            colour = "#6b7280" if row["method"] == "float" else ("#e65100" if row["method"].startswith("ours") else "#1a73e8")
            ax.scatter(row["bytes"] / 1024, row["value"], color=colour)
            # Many methods land on nearly the same point: stagger the labels sideways.
            ax.annotate(row["method"], (row["bytes"] / 1024, row["value"]), fontsize=7, color=colour,
                        xytext=(6 + 70 * (i % 3), -3), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": "#c7ccd4", "lw": 0.5})
        ax.set_title(model)
        ax.set_xlabel("model size (KB)")
        ax.set_ylabel(rows[0]["metric"].replace("_", " ") if rows else "")
        ax.grid(alpha=0.3)
    figure.suptitle("int8: task metric against model size (orange: graphpress, blue: other tools, grey: float)")
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def link(markdown: Path, picture: Path) -> None:
    """Add the picture's link to the markdown once, right under its first heading's paragraph."""
    text = markdown.read_text()
    line = f"Trade-off plot (`python tools/plot_tradeoffs.py`, from {markdown.with_suffix('.json').name}): ![trade-off]({picture.name})"
    if picture.name in text:
        return
    head, _, rest = text.partition("\n\n")
    markdown.write_text(f"{head}\n\n{line}\n\n{rest}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default=str(DOCS), help="folder with the benchmark JSON and markdown")
    args = parser.parse_args(argv)
    docs = Path(args.docs)
    prune = docs / "bench_prune.json"
    if prune.exists():
        picture = docs / "bench_prune_tradeoff.png"
        plot_prune(json.loads(prune.read_text()), picture)
        link(docs / "bench_prune.md", picture)
        print(f"wrote {picture}")
    quantize = docs / "bench_quantize.json"
    if quantize.exists():
        picture = docs / "bench_quantize_tradeoff.png"
        plot_quantize(json.loads(quantize.read_text()), picture)
        link(docs / "bench_quantize.md", picture)
        print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
