"""Terminal rendering of `python -m passes diff`: summary, op histogram delta, factorized layers, node changes, outputs."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

MAX_ROWS = 40


def print_diff(console: Console, data: dict, name_a: str, name_b: str) -> None:
    structural = data["structural"]
    if structural["empty"]:
        console.print("[green]no structural difference[/green]")
    summary = Table(title=f"{name_a} -> {name_b}")
    for column in ("", "before", "after", "delta"):
        summary.add_column(column, justify="right")
    for key, row in structural["cost"].items():
        summary.add_row(key, f"{row['before']:,}", f"{row['after']:,}", f"{row['delta']:+,}")
    console.print(summary)
    console.print(
        f"nodes: {structural['matched_by_name']} matched by name, {structural['matched_by_structure']} by structure, "
        f"{len(structural['removed_nodes'])} removed, {len(structural['added_nodes'])} added, {len(structural['changed_nodes'])} changed"
    )
    ops = Table(title="op histogram (ops that changed)")
    for column in ("op", "before", "after", "delta"):
        ops.add_column(column, justify="right" if column != "op" else "left")
    for op, row in sorted(structural["op_histogram"].items(), key=lambda kv: kv[1]["delta"]):
        if row["delta"]:
            ops.add_row(op, str(row["before"]), str(row["after"]), f"{row['delta']:+d}")
    if ops.row_count:
        console.print(ops)
    _factorized_table(console, structural.get("factorized_layers", []))
    _node_table(console, "removed nodes", structural["removed_nodes"])
    _node_table(console, "added nodes", structural["added_nodes"])
    if structural["changed_nodes"]:
        changed = Table(title="changed nodes")
        for column in ("node", "op", "what changed"):
            changed.add_column(column)
        for change in structural["changed_nodes"][:MAX_ROWS]:
            parts = [f"{k}: {v[0]} -> {v[1]}" for k, v in change["attributes"].items()]
            parts += [f"input {c['position']} {c['kind']}: {c['before']} -> {c['after']}" for c in change["inputs"]]
            changed.add_row(change["before"]["name"] or f"#{change['before']['index']}", change["before"]["op_type"], "\n".join(parts))
        console.print(changed)
    numeric = data.get("numeric")
    if numeric:
        outputs = Table(title="outputs on the same inputs")
        for column in ("output", "max abs", "max rel", "cosine", "SQNR dB"):
            outputs.add_column(column, justify="right" if column != "output" else "left")
        for name, row in numeric.items():
            if row.get("status") != "ok":
                outputs.add_row(name, row.get("status", "?"), "", "", "")
                continue
            outputs.add_row(name, f"{row['max_abs']:.3g}", f"{row['max_rel']:.3g}", _fmt(row.get("cosine")), _fmt(row.get("sqnr_db")))
        console.print(outputs)


def _factorized_table(console: Console, layers: list[dict]) -> None:
    if not layers:
        return
    table = Table(title=f"factorized layers ({len(layers)})")
    for column in ("layer", "before", "after", "method", "MACs"):
        table.add_column(column, justify="right" if column == "MACs" else "left")
    for row in layers[:MAX_ROWS]:
        method = row["method"] if row["method_from"] == "names" else f"{row['method']} (by structure)"
        table.add_row(row["layer"], row["before"], "\n".join(row["after"]), method, f"{row['macs_before']:,} -> {row['macs_after']:,}")
    console.print(table)
    if len(layers) > MAX_ROWS:
        console.print(f"... and {len(layers) - MAX_ROWS} more (--json lists every layer)")


def _node_table(console: Console, title: str, refs: list[dict]) -> None:
    if not refs:
        return
    table = Table(title=f"{title} ({len(refs)})")
    if len(refs) > MAX_ROWS:
        # Too many to list one by one: count them per op (--json and --html list every node).
        counts = Counter(ref["op_type"] for ref in refs)
        table.add_column("op")
        table.add_column("count", justify="right")
        for op, count in counts.most_common():
            table.add_row(op, str(count))
    else:
        table.add_column("node")
        table.add_column("op")
        for ref in refs:
            table.add_row(ref["name"] or f"#{ref['index']}", ref["op_type"])
    console.print(table)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
