"""One self-contained HTML page for one model (``python -m passes inspect MODEL --html page.html``).

Sections: the model's full path, totals (nodes, params, MACs, weight and activation bytes), where the
MACs are (per op type, and the largest layers with their share), where the weights are (the layers
holding the most parameters), and the graph drawn as in the diff page (``ir.graph_html``), each node
filled by its share of the MACs. A row of the layer tables selects its node in the graph.
"""

from __future__ import annotations

from collections import defaultdict

import onnx_ir as ir

from ir import cost as ir_cost
from ir import graph_html
from ir.diff_html import _esc, _num, _table, page
from ir.graph_view import model_view

TOP_LAYERS = 15


def render_model_page(model: ir.Model, path: str) -> str:
    view = model_view(model)  # infers shapes, so the summary below sees them
    summary = ir_cost.analyze(model, infer_shapes=False)
    keys = {index: f"a{index}" for index in range(len(summary.per_node))}
    layers = [n for n in summary.per_node if not n.constant]
    parts = [
        f"<h1>{_esc(path)}</h1>",
        f"<p>{summary.nodes:,} nodes, {summary.params:,} parameters, {summary.macs:,} MACs</p>",
        "<h2>Totals</h2>",
        _table(["", "value"], [[key, _num(getattr(summary, key))] for key in
                               ("nodes", "params", "macs", "flops", "weight_bytes", "stored_weight_bytes", "activation_peak_bytes")]),
        "<h2>Where the MACs are</h2>",
        _by_op(layers, summary.macs),
        _top(layers, "macs", summary.macs, keys),
        "<h2>Where the weights are</h2>",
        _top(layers, "params", summary.params, keys),
        "<h2>Graph</h2>",
        graph_html.render_graph(view),
    ]
    return page(f"inspect {path}", "\n".join(parts))


def _by_op(layers, total: int) -> str:
    macs: dict[str, int] = defaultdict(int)
    for node in layers:
        macs[node.op_type] += node.macs or 0
    rows = [[f"<code>{_esc(op)}</code>", _num(value), _bar(value, total)] for op, value in sorted(macs.items(), key=lambda kv: -kv[1]) if value]
    return _table(["op", "MACs", "share"], rows) if rows else '<p class="muted">no MACs counted</p>'


def _top(layers, field: str, total: int, keys: dict[int, str]) -> str:
    ranked = sorted((n for n in layers if (getattr(n, field) or 0) > 0), key=lambda n: -(getattr(n, field) or 0))[:TOP_LAYERS]
    if not ranked:
        return '<p class="muted">none</p>'
    rows = [[f'<a data-go="{keys[n.index]}">{_esc(n.name or f"#{n.index}")}</a>', f"<code>{_esc(n.op_type)}</code>",
             _num(getattr(n, field)), _bar(getattr(n, field), total)] for n in ranked]
    return _table(["layer (click: show in the graph)", "op", field, "share"], rows)


def _bar(value: int, total: int) -> str:
    share = value / total if total else 0.0
    return (f'<span style="display:inline-block;width:{share * 200:.0f}px;height:9px;background:#e65100"></span> '
            f"{share:.1%}")
