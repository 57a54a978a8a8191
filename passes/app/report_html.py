"""report.html, written by ``optimize`` next to report.md: the same report where a picture reads better.

Self-contained (inline CSS and SVG, no script, no network). Sections: the run (input, pipeline,
output, where it was measured; a loud banner when a lossy result was measured on random inputs),
totals, the passes that changed the model, and for lossy pipelines:

- a trade-off plot: output SQNR against size (stored weight bytes) and against MACs after each lossy
  pass (the input model, exact, on the top edge), so the cost of each step in accuracy and what it
  bought are one glance;
- per lossy pass, bars of the noise each changed layer introduces (its share of the pass's noise),
  worst first, labelled with the layer's introduced SQNR.
"""

from __future__ import annotations

import html
import math
from typing import Any

from ir.diff_html import _num, _table, page
from passes.app.attribution_report import RANDOM_INPUTS_WARNING, _db

BAR_LAYERS = 30
PLOT_W, PLOT_H, PAD = 420, 260, 48


def render_report_html(report: dict[str, Any]) -> str:
    attribution = report.get("error_attribution")
    title = f"{report['input']} -> {report['pipeline']} -> {report['output']}"
    parts = [f"<h1>optimize: <code>{_esc(report['pipeline'])}</code></h1>",
             f"<p>input: <code>{_esc(report['input'])}</code><br>output: <code>{_esc(report['output'])}</code><br>"
             f"verified on: {_esc(report['verification']['inputs'])}</p>"]
    if attribution and attribution.get("random_inputs"):
        parts.append(f'<p style="background:#b3261e;color:#fff;padding:8px 12px;font-weight:bold">WARNING: {_esc(RANDOM_INPUTS_WARNING)}.</p>')
    rows = [[key, _num(report["before"][key]), _num(report["after"][key])] for key in ("nodes", "params", "macs", "weight_bytes", "stored_weight_bytes")
            if isinstance(report["before"].get(key), int) and isinstance(report["after"].get(key), int)]
    parts += ["<h2>Totals</h2>", _table(["", "before", "after"], rows), "<h2>Passes that changed the model</h2>", _passes(report)]
    if attribution:
        final = attribution.get("final") or {}
        parts.append("<h2>Where the error comes from</h2>")
        if final:
            parts.append(f"<p>Final output against the input model on {_esc(attribution['measured_on'])}: SQNR {_db(final['sqnr_db'])}, "
                         f"cosine {final['cosine']:.6f}, max relative error {final['max_rel']:.3g}.</p>")
        parts += ["<h3>Trade-off</h3>", _tradeoff(report, attribution)]
        for entry in attribution["passes"]:
            parts += [f"<h3><code>{_esc(entry['pass'])}</code>: own SQNR {_db(entry['own']['sqnr_db'])}, cumulative {_db(entry['cumulative']['sqnr_db'])}</h3>",
                      _bars(entry["layers"])]
    return page(title, "\n".join(parts))


def _passes(report) -> str:
    rows = []
    for record in report["passes"]:
        if not record["modified"] and not record["failure"]:
            continue
        after = record.get("after") or {}
        attribution = record.get("attribution")
        if record["rolled_back"]:
            verdict = f"rolled back: {record['failure']}"
        elif attribution:
            verdict = f"lossy: own SQNR {_db(attribution['own']['sqnr_db'])}, cumulative {_db(attribution['cumulative']['sqnr_db'])}"
        elif record.get("error"):
            verdict = f"equivalent (max rel {record['error']['max_rel']:.3g})"
        else:
            verdict = "structure ok"
        rows.append([f"<code>{_esc(record['text'])}</code>", _num(after.get("nodes", 0)), _num(after.get("params", 0)), _num(after.get("macs", 0)), _esc(verdict)])
    return _table(["pass", "nodes after", "params after", "MACs after", "verification"], rows) if rows else "<p>none</p>"


def _bars(layers: list[dict]) -> str:
    rows = [r for r in layers if r.get("sqnr_db") is not None and (r.get("introduced") or 0) > 0][:BAR_LAYERS]
    if not rows:
        return '<p class="muted">no changed layer compared by name introduces noise</p>'
    line, label_w, bar_w = 18, 260, 360
    height = line * len(rows) + 8
    parts = [f'<svg class="bars" width="{label_w + bar_w + 420}" height="{height}">']
    for i, row in enumerate(rows):
        y = i * line + 4
        width = max(1.0, (row.get("share") or 0.0) * bar_w)
        name = str(row["layer"]) if len(row["layer"]) <= 38 else row["layer"][:37] + "\u2026"
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="11">{_esc(name)} ({_esc(row.get("op", ""))})</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{width:.1f}" height="{line - 5}" fill="#e65100"/>')
        parts.append(f'<text x="{label_w + width + 6:.1f}" y="{y + 12}" font-size="11">{_pct(row.get("share"))} · {_db(row["introduced_sqnr_db"])}'
                     f'{" · " + _esc(row.get("action") or row.get("change")) if row.get("action") or row.get("change") else ""}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _tradeoff(report, attribution) -> str:
    # Size is what the file holds for the weights: int8 or clustered weights count at their stored size.
    before = report["before"]
    points = [("input", before.get("stored_weight_bytes", before.get("weight_bytes", 0)), before.get("macs", 0), math.inf)]
    for entry in attribution["passes"]:
        after = entry.get("after") or {}
        points.append((entry["pass"], after.get("stored_weight_bytes", after.get("weight_bytes", 0)), after.get("macs", 0), entry["cumulative"]["sqnr_db"]))
    return '<div style="display:flex;gap:24px">' + _scatter(points, 1, "stored weight bytes") + _scatter(points, 2, "MACs") + "</div>"


def _scatter(points, axis: int, label: str) -> str:
    xs = [p[axis] for p in points]
    finite = [p[3] for p in points if math.isfinite(p[3])]
    top = math.ceil(max(finite, default=0.0) + 10.0)  # exact results sit on the top edge
    bottom = math.floor(min(finite, default=0.0) - 5.0)
    x_lo, x_hi = 0.0, max(xs) * 1.05 or 1.0

    def sx(v):
        return PAD + (v - x_lo) / (x_hi - x_lo) * (PLOT_W - 2 * PAD)

    def sy(v):
        v = top if not math.isfinite(v) else v
        return PLOT_H - PAD - (v - bottom) / (top - bottom) * (PLOT_H - 2 * PAD)

    parts = [f'<svg class="tradeoff" width="{PLOT_W}" height="{PLOT_H}">',
             f'<rect x="{PAD}" y="{PAD}" width="{PLOT_W - 2 * PAD}" height="{PLOT_H - 2 * PAD}" fill="#fbfcfd" stroke="#c7ccd4"/>',
             f'<text x="{PLOT_W / 2}" y="{PLOT_H - 10}" text-anchor="middle" font-size="12">{label}</text>',
             f'<text x="14" y="{PLOT_H / 2}" transform="rotate(-90 14 {PLOT_H / 2})" text-anchor="middle" font-size="12">output SQNR (dB)</text>']
    for value in (bottom, (bottom + top) / 2, top):
        parts.append(f'<text x="{PAD - 4}" y="{sy(value) + 4:.1f}" text-anchor="end" font-size="10">{"exact" if value == top else f"{value:.0f}"}</text>')
    parts.append(f'<text x="{PAD}" y="{PLOT_H - PAD + 14}" font-size="10">0</text>')
    parts.append(f'<text x="{PLOT_W - PAD}" y="{PLOT_H - PAD + 14}" text-anchor="end" font-size="10">{x_hi:,.0f}</text>')
    previous = None
    placed: list[tuple[float, float]] = []
    for name, *values in points:
        x, y = sx(values[axis - 1]), sy(values[2])
        # Points on top of each other (a pass that changes neither axis) get their labels stacked.
        stacked = sum(1 for px, py in placed if abs(px - x) < 30 and abs(py - y) < 12)
        placed.append((x, y))
        if previous:
            parts.append(f'<line x1="{previous[0]:.1f}" y1="{previous[1]:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="#9aa3b2"/>')
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1a73e8"><title>{_esc(name)}</title></circle>')
        parts.append(f'<text x="{x + 6:.1f}" y="{y - 6 + 12 * stacked:.1f}" font-size="10">{_esc(name if len(name) < 28 else name[:27] + "…")}</text>')
        previous = (x, y)
    parts.append("</svg>")
    return "".join(parts)


def _pct(share) -> str:
    return "-" if share is None else f"{share:.1%}"


def _esc(text) -> str:
    return html.escape(str(text), quote=True)
