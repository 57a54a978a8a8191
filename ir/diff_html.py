"""One self-contained HTML page for a ``StructuralDiff`` (and optionally a numeric diff).

The page has inline CSS, an inline script and no external assets, so it can be mailed or attached to a
CI run and opens from a file. Every piece of model-provided text (node names, op types, attribute
values) is HTML-escaped. Sections: when both models are given, the two graphs drawn side by side and
aligned (``ir.graph_view``, ``ir.graph_html``: coloured by what changed, searchable, a click shows a
node's details); summary (costs before/after/delta), numeric errors per output, op histogram with
deltas, removed / added / changed nodes, and initializer / input / output changes. Empty sections say
so. The header names both models by their full paths (``paths``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence

from ir import graph_html
from ir.diff import NodeChange, NodeRef, StructuralDiff, ValueChanges

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 2em; color: #1d2330; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #d5d9e0; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eceef2; text-align: left; vertical-align: top; }
th { background: #f4f6f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #b3261e; } .down { color: #1b7f3b; } .muted { color: #6b7280; }
.changed td { background: #fff8e1; }
summary { cursor: pointer; color: #374151; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
"""

COLLAPSE_ABOVE = 40  # rows

INPUT_CHANGE_WORDS = {
    "rewired": "input rewired",
    "weight": "weight",
    "added": "input added",
    "removed": "input removed",
}

SUMMARY_LABELS = {
    "nodes": "Nodes",
    "params": "Parameters",
    "macs": "MACs",
    "flops": "Other FLOPs",
    "weight_bytes": "Weight bytes",
    "stored_weight_bytes": "Stored weight bytes",
    "activation_peak_bytes": "Activation peak bytes",
    "uncounted_nodes": "Nodes without a cost",
}


def render_html(
    diff: StructuralDiff,
    numeric: Mapping[str, Mapping] | None = None,
    title: str = "Model diff",
    labels: tuple[str, str] = ("before", "after"),
    *,
    models: tuple | None = None,
    paths: tuple[str, str] | None = None,
) -> str:
    """``models`` (a, b): draw both graphs; ``paths``: the models' full paths, shown in the header."""
    before, after = labels
    parts = [f"<h1>{_esc(title)}</h1>"]
    if paths is not None:
        parts.append(f"<p>{_esc(before)}: <code>{_esc(paths[0])}</code><br>{_esc(after)}: <code>{_esc(paths[1])}</code></p>")
    parts.append(f"<p>{_esc(_verdict(diff))}</p>")
    if models is not None:
        from ir.graph_view import diff_view

        view = diff_view(models[0], models[1], diff)
        side_labels = tuple(f"{label}: {_basename(path)}" for label, path in zip(labels, paths)) if paths else labels
        parts += ["<h2>Graphs</h2>", graph_html.render_graph(view, side_labels)]
    parts += [
        "<h2>Summary</h2>",
        _summary_table(diff, before, after),
    ]
    if numeric is not None:
        parts += ["<h2>Numeric difference</h2>", _numeric_table(numeric)]
    parts += [
        "<h2>Op histogram</h2>",
        _histogram_table(diff, before, after),
    ]
    if diff.factorized:
        parts += [f"<h2>Factorized layers ({len(diff.factorized)})</h2>", _factorized_table(diff.factorized)]
    parts += [
        f"<h2>Removed nodes ({len(diff.removed_nodes)})</h2>",
        _node_table(diff.removed_nodes),
        f"<h2>Added nodes ({len(diff.added_nodes)})</h2>",
        _node_table(diff.added_nodes),
        f"<h2>Changed nodes ({len(diff.changed_nodes)})</h2>",
        _changes_table(diff.changed_nodes),
    ]
    named_values = {"Initializers": diff.initializers, "Graph inputs": diff.inputs, "Graph outputs": diff.outputs}
    for heading, changes in named_values.items():
        parts += [f"<h2>{heading}</h2>", _value_changes_table(changes)]
    return page(title, "\n".join(parts))


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def diff_title(paths: tuple[str, str], after=None) -> str:
    """``A -> B`` by full paths, with the pipeline between them when B records one."""
    pipeline = after.metadata_props.get("graphpress.pipeline") if after is not None else None
    middle = f" -> {pipeline} ->" if pipeline else " vs"
    return f"{paths[0]}{middle} {paths[1]}"


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body`` (already HTML), with the shared style."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{STYLE}{graph_html.STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _verdict(diff: StructuralDiff) -> str:
    if diff.is_empty():
        return "The models are structurally identical."
    return (
        f"{len(diff.removed_nodes)} removed, {len(diff.added_nodes)} added, {len(diff.changed_nodes)} changed"
        f" nodes; {diff.matched_by_name} matched by name, {diff.matched_by_structure} by structure."
    )


def _summary_table(diff: StructuralDiff, before: str, after: str) -> str:
    rows = []
    for name, row in diff.cost.items():
        label = _esc(SUMMARY_LABELS.get(name, name))
        rows.append([label, _num(row["before"]), _num(row["after"]), _delta(row["delta"], row["before"])])
    return _table(["", _esc(before), _esc(after), "delta"], rows)


def _histogram_table(diff: StructuralDiff, before: str, after: str) -> str:
    if not diff.op_histogram:
        return _empty("no nodes")
    # Ops whose count changed first, then the most frequent.
    ordered = sorted(
        diff.op_histogram.items(),
        key=lambda item: (item[1]["delta"] == 0, -max(item[1]["before"], item[1]["after"]), item[0]),
    )
    rows = [
        [f"<code>{_esc(op)}</code>", _num(row["before"]), _num(row["after"]), _delta(row["delta"])]
        for op, row in ordered
    ]
    classes = ["changed" if row["delta"] else "" for _, row in ordered]
    return _table(["op", _esc(before), _esc(after), "delta"], rows, classes)


def _node_table(refs: Sequence[NodeRef]) -> str:
    if not refs:
        return _empty("none")
    unnamed = '<span class="muted">(unnamed)</span>'
    rows = [[_num(ref.index), _esc(ref.name) or unnamed, f"<code>{_esc(ref.op_type)}</code>"] for ref in refs]
    return _collapsible(_table(["#", "name", "op"], rows), len(rows), "nodes")


def _factorized_table(layers) -> str:
    rows = []
    for layer in layers:
        method = _esc(layer.method) + ("" if layer.method_from == "names" else ' <span class="muted">(by structure)</span>')
        rows.append([_esc(layer.layer), f"<code>{_esc(layer.before)}</code>", "<br>".join(f"<code>{_esc(a)}</code>" for a in layer.after),
                     method, _num(layer.macs_before), _num(layer.macs_after)])
    return _collapsible(_table(["layer", "before", "after", "method", "MACs before", "MACs after"], rows), len(rows), "layers")


def _changes_table(changes: Sequence[NodeChange]) -> str:
    if not changes:
        return _empty("none")
    rows = []
    for change in changes:
        node = f"<code>{_esc(change.before.op_type)}</code> {_esc(change.before.label)}"
        if change.after.label != change.before.label:
            node += f" &rarr; {_esc(change.after.label)}"
        rows.append([node, "<br>".join(_change_lines(change))])
    return _collapsible(_table(["node", "what changed"], rows), len(rows), "nodes")


def _change_lines(change: NodeChange) -> Iterable[str]:
    for name, (old, new) in change.attributes.items():
        yield f"attribute <code>{_esc(name)}</code>: {_esc(_absent(old))} &rarr; {_esc(_absent(new))}"
    for item in change.inputs:
        what = INPUT_CHANGE_WORDS.get(item.kind, item.kind)
        yield f"{what} {item.position}: {_esc(item.before)} &rarr; {_esc(item.after)}"
    if change.outputs is not None:
        yield f"outputs: {change.outputs[0]} &rarr; {change.outputs[1]}"


def _value_changes_table(changes: ValueChanges) -> str:
    if changes.is_empty():
        return _empty("no change")
    rows = [["removed", _esc(info.name), _esc(info.text), ""] for info in changes.removed]
    rows += [["added", _esc(info.name), "", _esc(info.text)] for info in changes.added]
    rows += [["changed", _esc(old.name), _esc(old.text), _esc(new.text)] for old, new in changes.changed]
    return _table(["", "name", "before", "after"], rows)


def _numeric_table(numeric: Mapping[str, Mapping]) -> str:
    if not numeric:
        return _empty("no outputs")
    rows = []
    for name, metrics in numeric.items():
        if metrics.get("status", "ok") != "ok":
            rows.append([_esc(name), _esc(metrics["status"]), "", "", ""])
            continue
        rows.append([
            _esc(name),
            _float(metrics["max_abs"]),
            _float(metrics["max_rel"]),
            _float(metrics["cosine"], ".8f"),
            _float(metrics["sqnr_db"], ".2f"),
        ])
    return _table(["output", "max abs error", "max rel error", "cosine", "SQNR dB"], rows)


def _collapsible(table: str, rows: int, what: str) -> str:
    # Long lists (hundreds of folded Constant nodes) start closed so the page stays readable.
    if rows <= COLLAPSE_ABOVE:
        return table
    return f"<details><summary>show {rows:,} {what}</summary>\n{table}\n</details>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(_cell(cell) for cell in row) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


class _NumberCell(str):
    """HTML of a cell that holds a number: right-aligned."""


def _cell(content: str) -> str:
    if isinstance(content, _NumberCell):
        return f'<td class="num">{content}</td>'
    return f"<td>{content}</td>"


def _num(value: int) -> str:
    return _NumberCell(f"{value:,}")


def _delta(value: int, base: int | None = None) -> str:
    if value == 0:
        return _NumberCell('<span class="muted">0</span>')
    css = "up" if value > 0 else "down"
    percent = f" ({_percent(value / base)})" if base else ""
    return _NumberCell(f'<span class="{css}">{value:+,}{percent}</span>')


def _percent(ratio: float) -> str:
    # Small changes (a few fused biases among a million weights) keep two significant digits.
    return f"{ratio:+.1%}" if abs(ratio) >= 0.01 else f"{ratio * 100:+.2g}%"


def _float(value: float | str, spec: str = ".3g") -> str:
    if isinstance(value, str):  # a json_safe'd infinity
        return _NumberCell(_esc(value))
    if math.isinf(value):
        return _NumberCell("&infin;" if value > 0 else "&minus;&infin;")
    return _NumberCell(format(value, spec))


def _absent(text: str | None) -> str:
    return "(absent)" if text is None else text


def _empty(text: str) -> str:
    return f'<p class="muted">{_esc(text)}</p>'


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)
