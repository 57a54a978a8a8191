"""The drawn graph of an HTML page: inline SVG, the node details as JSON, and a small inline script.

Everything is inline (no network, no external files), so the page opens from a file. The SVG is
written here, laid out by ``ir.graph_layout``; the script only reacts: a click on a node shows its
details in the side panel (attributes, inputs with weight shapes and statistics, outputs, cost in each
model), the search box marks nodes whose name or op contains the text (Enter goes to the next one),
the zoom buttons scale the drawing; ``page.html#node=KEY`` opens with that node selected and
``page.html#search=TEXT`` with that search done. When the
script has run it sets ``data-ready`` on ``<body>`` (the browser tests wait for it).

Colours: removed nodes red, added green, changed amber, unchanged grey, collapsed runs of unchanged
nodes dashed; in a one-model page, a node's fill goes from white to deep orange with its share of the
model's MACs (square root, so small layers stay visible).
"""

from __future__ import annotations

import html
import json
import math

from ir.graph_view import GraphView, ViewNode

NODE_WIDTH = 132
NODE_HEIGHT = 34
PANEL_GAP = 90
HEADER = 40
MIN_PANEL_WIDTH = 360

COLOURS = {
    "same": "#eceff3", "changed": "#ffc94d", "removed": "#f28b82", "added": "#81c995",
    "collapsed": "#ffffff", "node": "#ffffff",
}

STYLE = """
.graph-wrap { display: flex; gap: 12px; align-items: flex-start; }
.graph-box { flex: 1; overflow: auto; height: 78vh; border: 1px solid #d5d9e0; background: #fbfcfd; }
#details { width: 380px; height: 78vh; overflow: auto; border: 1px solid #d5d9e0; padding: 6px 10px; font-size: 12px; }
#details table { font-size: 12px; } #details td, #details th { padding: 1px 5px; }
.toolbar { margin: .5em 0; display: flex; gap: 8px; align-items: center; }
.toolbar input { width: 260px; padding: 3px 6px; }
g.n { cursor: pointer; } g.n rect { stroke: #8a93a3; stroke-width: 1; }
g.n text { font: 11px system-ui, sans-serif; fill: #1d2330; pointer-events: none; }
g.n text.sub { font-size: 9px; fill: #4b5563; }
g.collapsed rect { stroke-dasharray: 4 3; }
g.hit rect { stroke: #1a73e8; stroke-width: 3; }
g.sel rect { stroke: #111827; stroke-width: 3.5; }
path.e { fill: none; stroke: #9aa3b2; stroke-width: 1; }
text.panel { font: bold 14px system-ui, sans-serif; fill: #374151; }
a[data-go] { cursor: pointer; color: #1a73e8; text-decoration: underline; }
.legend span { display: inline-block; padding: 0 6px; margin-right: 4px; border: 1px solid #8a93a3; }
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('graph-data').textContent);
  const svg = document.getElementById('graph');
  const panel = document.getElementById('details');
  const query = document.getElementById('graph-search');
  const found = document.getElementById('graph-found');
  const baseWidth = svg.width.baseVal.value;
  let zoom = 1, hits = [], hitAt = -1;
  const esc = s => String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const num = v => (v === null || v === undefined) ? '?' : Number(v).toLocaleString('en-US');
  const flt = v => (v === null || v === undefined) ? '?' : Number(v).toPrecision(4);
  function one(d) {
    let h = '';
    const attrs = Object.entries(d.attributes || {});
    if (attrs.length) h += '<b>attributes</b><table>' + attrs.map(([k, v]) => '<tr><td>' + esc(k) + '</td><td>' + esc(v) + '</td></tr>').join('') + '</table>';
    if ((d.inputs || []).length) {
      h += '<b>inputs</b><table>';
      for (const i of d.inputs) {
        h += '<tr><td>' + esc(i.name) + '</td><td>' + esc(i.type || '') + '</td></tr>';
        const w = i.weight;
        if (w) h += '<tr><td></td><td class="muted">weight ' + esc(JSON.stringify(w.shape)) +
          (w.min !== undefined ? ' min ' + flt(w.min) + ' max ' + flt(w.max) + ' mean ' + flt(w.mean) + ' std ' + flt(w.std) + ' zeros ' + (100 * w.zeros).toFixed(1) + '%' : '') +
          (w.note ? ' (' + esc(w.note) + ')' : '') + '</td></tr>';
      }
      h += '</table>';
    }
    if ((d.outputs || []).length) h += '<b>outputs</b> ' + d.outputs.map(esc).join(', ') + '<br>';
    return h;
  }
  function costTable(n) {
    const sides = ['a', 'b'].filter(s => n[s] && n[s].cost);
    if (!sides.length) return '';
    const head = sides.length === 2 ? '<tr><th></th><th>before</th><th>after</th></tr>' : '';
    const rows = ['params', 'macs', 'flops', 'weight_bytes'].map(k => '<tr><td>' + k + '</td>' + sides.map(s => '<td class="num">' + num(n[s].cost[k]) + '</td>').join('') + '</tr>');
    return '<b>cost</b><table>' + head + rows.join('') + '</table>';
  }
  function show(key, scroll) {
    const n = data[key];
    if (!n) return;
    svg.querySelectorAll('g.sel').forEach(g => g.classList.remove('sel'));
    const shapes = svg.querySelectorAll('g[data-k="' + CSS.escape(key) + '"]');
    shapes.forEach(g => g.classList.add('sel'));
    let h = '<h3>' + esc(n.op) + ' ' + esc(n.name) + '</h3><p>' + esc(n.state) + '</p>';
    if (n.changes && n.changes.length) h += '<b>what changed</b><ul>' + n.changes.map(c => '<li>' + esc(c) + '</li>').join('') + '</ul>';
    if (n.members) h += '<b>nodes in this run</b><ol>' + n.members.map(m => '<li>' + esc(m.op) + ' ' + esc(m.name) + '</li>').join('') + '</ol>';
    h += costTable(n);
    if (n.a && n.b) h += '<h4>before</h4>' + one(n.a) + '<h4>after</h4>' + one(n.b);
    else if (n.a || n.b) h += one(n.a || n.b);
    panel.innerHTML = h;
    panel.dataset.node = key;
    if (scroll && shapes.length) shapes[0].scrollIntoView({block: 'center', inline: 'center'});
  }
  svg.addEventListener('click', e => { const g = e.target.closest('g.n'); if (g) show(g.dataset.k, false); });
  document.querySelectorAll('[data-go]').forEach(el => el.addEventListener('click', () => show(el.dataset.go, true)));
  function search() {
    const q = query.value.trim().toLowerCase();
    hits = []; hitAt = -1;
    svg.querySelectorAll('g.n').forEach(g => {
      const on = q !== '' && data[g.dataset.k] && data[g.dataset.k].s.includes(q);
      g.classList.toggle('hit', on);
      if (on && !hits.includes(g.dataset.k)) hits.push(g.dataset.k);
    });
    found.textContent = q ? hits.length + ' found' : '';
  }
  query.addEventListener('input', search);
  query.addEventListener('keydown', e => { if (e.key === 'Enter' && hits.length) { hitAt = (hitAt + 1) % hits.length; show(hits[hitAt], true); } });
  function setZoom(z) { zoom = Math.min(4, Math.max(0.1, z)); svg.style.width = (baseWidth * zoom) + 'px'; svg.style.height = 'auto'; }
  document.getElementById('zoom-in').addEventListener('click', () => setZoom(zoom * 1.25));
  document.getElementById('zoom-out').addEventListener('click', () => setZoom(zoom / 1.25));
  document.getElementById('zoom-fit').addEventListener('click', () => setZoom(svg.parentElement.clientWidth / baseWidth));
  const m = /^#node=(.+)$/.exec(location.hash);
  if (m) show(decodeURIComponent(m[1]), true);
  const q = /^#search=(.+)$/.exec(location.hash);
  if (q) { query.value = decodeURIComponent(q[1]); search(); }
  document.body.dataset.ready = '1';
})();
"""


def render_graph(view: GraphView, labels: tuple[str, str] = ("before", "after")) -> str:
    """The graph section: toolbar, SVG, details panel, node data and script."""
    layout = view.layout
    panel_width = max(layout.width, MIN_PANEL_WIDTH)
    width = panel_width * 2 + PANEL_GAP if view.two_sided else panel_width
    height = layout.height + HEADER
    parts = [f'<svg id="graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    sides = [("a", 0, view.edges_a, labels[0]), ("b", panel_width + PANEL_GAP, view.edges_b, labels[1])] if view.two_sided else [("a", 0, view.edges_a, "")]
    for side, offset, edges, label in sides:
        if label:
            parts.append(f'<text class="panel" x="{offset + 10}" y="22">{_esc(_clip(label, panel_width // 8))}</text>')
        parts.append(f'<g transform="translate({offset},{HEADER})">')
        parts.extend(_edge(layout, s, t) for s, t in edges if s in layout.x and t in layout.x)
        parts.extend(_node(view, node, layout, side) for node in view.nodes if side in node.sides)
        parts.append("</g>")
    parts.append("</svg>")
    data = {node.key: _node_data(node) for node in view.nodes}
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str).replace("</", "<\\/")
    hidden = f"; {view.hidden_constant_nodes:,} constant nodes are not drawn (their values show as weights)" if view.hidden_constant_nodes else ""
    toolbar = (
        '<div class="toolbar"><input id="graph-search" type="search" placeholder="search node name or op (Enter: next)">'
        '<span id="graph-found" class="muted"></span>'
        '<button id="zoom-out" type="button">&minus;</button><button id="zoom-in" type="button">+</button>'
        f'<button id="zoom-fit" type="button">fit width</button><span class="muted">{len(view.nodes):,} boxes, {layout.ranks:,} ranks{hidden}</span></div>'
    )
    legend = _legend(view)
    return (
        f"{toolbar}\n{legend}\n<div class=\"graph-wrap\"><div class=\"graph-box\">{''.join(parts)}</div>"
        '<aside id="details"><p class="muted">Click a node to see its attributes, weights and cost.</p></aside></div>\n'
        f'<script type="application/json" id="graph-data">{payload}</script>\n<script>{SCRIPT}</script>'
    )


def _legend(view: GraphView) -> str:
    if not view.two_sided:
        return '<p class="legend muted">fill: share of the model\'s MACs (white: none, deep orange: the largest)</p>'
    items = [("removed", "removed"), ("added", "added"), ("changed", "changed"), ("same", "unchanged"), ("collapsed", "unchanged run")]
    return '<p class="legend">' + "".join(f'<span style="background:{COLOURS[s]}">{w}</span>' for s, w in items) + "</p>"


def _edge(layout, source: str, target: str) -> str:
    x1, y1 = layout.x[source], layout.y[source] + NODE_HEIGHT // 2
    x2, y2 = layout.x[target], layout.y[target] - NODE_HEIGHT // 2
    bend = max(12, (y2 - y1) // 2)
    if y2 - y1 > 2 * NODE_HEIGHT:
        # A long edge bows out to the side so it does not run behind the nodes of the ranks between.
        side = NODE_WIDTH * (0.75 if x2 >= x1 else -0.75)
        mid_y = (y1 + y2) // 2
        return (f'<path class="e" d="M{x1} {y1}C{x1 + side:.0f} {y1 + NODE_HEIGHT} {x1 + side:.0f} {mid_y} {x1 + side:.0f} {mid_y}'
                f'S{x2 + side:.0f} {y2 - NODE_HEIGHT} {x2} {y2}"/>')
    return f'<path class="e" d="M{x1} {y1}C{x1} {y1 + bend} {x2} {y2 - bend} {x2} {y2}"/>'


def _node(view: GraphView, node: ViewNode, layout, side: str) -> str:
    x, y = layout.x[node.key] - NODE_WIDTH // 2, layout.y[node.key] - NODE_HEIGHT // 2
    fill = _heat(node.heat) if not view.two_sided else COLOURS.get(node.state, "#ffffff")
    shape = (f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="{NODE_HEIGHT // 2 if node.op == "input" else 4}" fill="{fill}"/>')
    title = f"{node.op} {node.name}".strip()
    return (
        f'<g class="n {node.state}" data-k="{_esc(node.key)}" data-side="{side}"><title>{_esc(title)}</title>{shape}'
        f'<text x="{x + 6}" y="{y + 14}">{_esc(_clip(node.op, 22))}</text>'
        f'<text class="sub" x="{x + 6}" y="{y + 27}">{_esc(_clip(node.name, 26))}</text></g>'
    )


def _heat(share: float) -> str:
    level = math.sqrt(max(0.0, min(1.0, share * 4)))  # a quarter of the MACs is full colour
    start, end = (255, 255, 255), (230, 81, 0)
    r, g, b = (round(s + (e - s) * level) for s, e in zip(start, end))
    return f"#{r:02x}{g:02x}{b:02x}"


def _node_data(node: ViewNode) -> dict:
    data = {"op": node.op, "name": node.name, "state": node.state, **_finite(node.details)}
    searchable = [node.name, node.op, *node.members]
    data["s"] = " ".join(searchable).lower()
    if node.heat:
        data["mac_share"] = node.heat
    return data


def _finite(value):
    # JSON has no infinity or NaN (a weight of inf, a statistic of an empty tensor).
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"


def _esc(text) -> str:
    return html.escape(str(text), quote=True)
