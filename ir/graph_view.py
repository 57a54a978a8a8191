"""What the HTML pages draw: the nodes and edges of one model, or of two aligned by a structural diff.

``model_view(model)`` is one model (``inspect --html``): each node is coloured by its share of the
model's MACs. ``diff_view(a, b, diff)`` is two models drawn at the same coordinates: the union of both
graphs is laid out once (``ir.graph_layout``), the left panel shows model ``a`` (matched and removed
nodes, ``a``'s edges), the right panel model ``b`` (matched and added nodes, ``b``'s edges), so a
matched node sits at the same height on both sides.

Rules:
- Nodes that compute constants (``Constant``, shape arithmetic on constants, ...) are not drawn; what
  they compute appears as a weight input of the nodes reading it.
- Diff states: ``removed`` (only in a), ``added`` (only in b), ``changed`` (matched, ``NodeChange``
  not empty), ``same``. A run of at least ``COLLAPSE_RUN`` ``same`` nodes that form a chain in both
  graphs (each has one drawn predecessor and one drawn successor, the same in a and b) is drawn as one
  box listing its nodes.
- Each drawn node carries its details for the page: name, op, state, attributes, inputs (weights with
  shape, dtype and statistics: min, max, mean, std, share of zeros), outputs, and its cost (params,
  MACs, FLOPs) in each model it is in, plus the diff's description of what changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from ir import cost as ir_cost
from ir.diff import NodeChange, StructuralDiff, _attr_text
from ir.graph_layout import Layout, layered_layout

COLLAPSE_RUN = 3
MAX_STATS_ELEMENTS = 1 << 26  # statistics of bigger weights are skipped (reading them costs seconds)


@dataclasses.dataclass
class ViewNode:
    key: str
    op: str
    name: str
    state: str  # same / changed / removed / added / collapsed / node (one model)
    sides: str  # "a", "b" or "ab"
    details: dict
    heat: float = 0.0  # share of the model's MACs (one-model view), 0..1
    members: list[str] = dataclasses.field(default_factory=list)  # collapsed: member labels


@dataclasses.dataclass
class GraphView:
    nodes: list[ViewNode]
    edges_a: list[tuple[str, str]]
    edges_b: list[tuple[str, str]]
    layout: Layout
    hidden_constant_nodes: int
    two_sided: bool


# --- one model -------------------------------------------------------------------------------------


def model_view(model: ir.Model) -> GraphView:
    summary = ir_cost.analyze(model)
    side = _DrawnGraph(model, summary, "a")
    total_macs = max(summary.macs, 1)
    nodes = []
    for node in side.drawn:
        key = side.keys[node]
        details = {"a": side.details(node)}
        macs = side.costs[node].macs or 0
        nodes.append(ViewNode(key, ir_cost.op_key(node), node.name or "", "node", "a", details, heat=macs / total_macs))
    nodes = [*side.input_nodes(), *nodes]
    keys = [n.key for n in nodes]
    layout = layered_layout(keys, side.edges)
    return GraphView(nodes, side.edges, [], layout, side.hidden, two_sided=False)


# --- two models ------------------------------------------------------------------------------------


def diff_view(a: ir.Model, b: ir.Model, diff: StructuralDiff) -> GraphView:
    side_a = _DrawnGraph(a, ir_cost.analyze(a, infer_shapes=False), "a")
    side_b = _DrawnGraph(b, ir_cost.analyze(b, infer_shapes=False), "b")
    by_index_a = dict(enumerate(a.graph))
    by_index_b = dict(enumerate(b.graph))
    changes = {change.before.index: change for change in diff.changed_nodes}
    # One key per matched pair: b's nodes take their partner's key so edges of both graphs meet.
    for index_a, index_b in diff.pairs:
        node_a, node_b = by_index_a[index_a], by_index_b[index_b]
        if node_a in side_a.keys and node_b in side_b.keys:
            side_b.keys[node_b] = side_a.keys[node_a]
    side_b.rebuild_edges()
    partner = {by_index_a[i]: by_index_b[j] for i, j in diff.pairs}
    nodes: list[ViewNode] = []
    shared_inputs = {n.key for n in side_b.input_nodes()}
    for view in side_a.input_nodes():
        view.sides = "ab" if view.key in shared_inputs else "a"
        view.state = "same" if view.key in shared_inputs else "removed"
        nodes.append(view)
    for view in side_b.input_nodes():
        if view.key not in {n.key for n in nodes}:
            view.state, view.sides = "added", "b"
            nodes.append(view)
    for node in side_a.drawn:
        key = side_a.keys[node]
        other = partner.get(node)
        if other is not None and other in side_b.keys:
            change = changes.get(side_a.index[node])
            details = {"a": side_a.details(node), "b": side_b.details(other), "changes": _change_lines(change)}
            state = "changed" if change is not None else "same"
            name = node.name if node.name == other.name or not other.name else f"{node.name} -> {other.name}"
            nodes.append(ViewNode(key, ir_cost.op_key(node), name, state, "ab", details))
        else:
            nodes.append(ViewNode(key, ir_cost.op_key(node), node.name or "", "removed", "a", {"a": side_a.details(node)}))
    matched_b = set(partner.values())
    added = {n for n in side_b.drawn if n not in matched_b}
    nodes = _merge_added(nodes, added, side_b, [*side_a.edges, *side_b.edges])
    nodes, edges_a, edges_b = _collapse_runs(nodes, side_a.edges, side_b.edges)
    layout = layered_layout([n.key for n in nodes], [*edges_a, *edges_b])
    return GraphView(nodes, edges_a, edges_b, layout, side_a.hidden + side_b.hidden, two_sided=True)


def _merge_added(nodes: list[ViewNode], added: set[ir.Node], side_b: _DrawnGraph, edges) -> list[ViewNode]:
    """Insert b's added nodes into the union order: after the last node preceding them in b."""
    result = list(nodes)
    position = {view.key: i for i, view in enumerate(result)}
    inserts: dict[int, list[ViewNode]] = {}
    previous_key = None
    for node in side_b.drawn:
        key = side_b.keys[node]
        if node in added:
            anchor = position.get(previous_key, -1) if previous_key is not None else -1
            inserts.setdefault(anchor, []).append(
                ViewNode(key, ir_cost.op_key(node), node.name or "", "added", "b", {"b": side_b.details(node)}))
        else:
            previous_key = key
    # Keep the union topological: an added node goes after every drawn node it reads.
    merged: list[ViewNode] = [*inserts.get(-1, [])]
    for i, view in enumerate(result):
        merged.append(view)
        merged.extend(inserts.get(i, []))
    return _topological(merged, edges)


def _topological(nodes: list[ViewNode], edges: Sequence[tuple[str, str]]) -> list[ViewNode]:
    index = {view.key: i for i, view in enumerate(nodes)}
    preds: dict[str, list[str]] = {}
    for source, target in edges:
        preds.setdefault(target, []).append(source)
    placed: set[str] = set()
    visiting: set[str] = set()
    out: list[ViewNode] = []
    by_key = {view.key: view for view in nodes}

    def visit(key: str) -> None:
        stack = [(key, False)]
        while stack:
            current, ready = stack.pop()
            if current in placed or (not ready and current in visiting):
                continue  # placed, or a cycle through the union of both graphs
            if ready:
                placed.add(current)
                out.append(by_key[current])
                continue
            visiting.add(current)
            stack.append((current, True))
            for p in sorted(preds.get(current, ()), key=lambda k: -index.get(k, 0)):
                if p in by_key and p not in placed:
                    stack.append((p, False))

    for view in nodes:
        visit(view.key)
    return out


def _collapse_runs(nodes: list[ViewNode], edges_a, edges_b):
    succ_a, pred_a = _adjacency(edges_a)
    succ_b, pred_b = _adjacency(edges_b)

    def chain_link(key: str) -> bool:
        return (pred_a.get(key, []) == pred_b.get(key, []) and succ_a.get(key, []) == succ_b.get(key, [])
                and len(pred_a.get(key, [])) == 1 and len(succ_a.get(key, [])) == 1)

    by_key = {view.key: view for view in nodes}
    runs: list[list[str]] = []
    in_run: set[str] = set()
    for view in nodes:
        if view.state != "same" or view.key in in_run or not chain_link(view.key):
            continue
        previous = pred_a[view.key][0]
        if previous in by_key and by_key[previous].state == "same" and chain_link(previous):
            continue  # not the start of its run
        run = [view.key]
        while True:
            following = succ_a[run[-1]][0]
            if following in by_key and by_key[following].state == "same" and chain_link(following) and following not in run:
                run.append(following)
            else:
                break
        if len(run) >= COLLAPSE_RUN:
            runs.append(run)
            in_run.update(run)
    if not runs:
        return nodes, list(edges_a), list(edges_b)
    rename: dict[str, str] = {}
    groups: dict[str, ViewNode] = {}
    for i, run in enumerate(runs):
        key = f"run{i}"
        members = [by_key[k] for k in run]
        for k in run:
            rename[k] = key
        ops = sorted({m.op for m in members})
        groups[run[0]] = ViewNode(
            key, f"{len(run)} unchanged", ", ".join(ops[:3]) + (" ..." if len(ops) > 3 else ""), "collapsed", "ab",
            {"members": [{"op": m.op, "name": m.name, "key": m.key} for m in members]},
            members=[f"{m.op} {m.name}" for m in members],
        )
    result = []
    for view in nodes:
        if view.key in groups:
            result.append(groups[view.key])
        elif view.key not in rename:
            result.append(view)

    def renamed(edges):
        out = []
        for s, t in edges:
            s, t = rename.get(s, s), rename.get(t, t)
            if s != t:
                out.append((s, t))
        return list(dict.fromkeys(out))

    return result, renamed(edges_a), renamed(edges_b)


def _adjacency(edges):
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for s, t in dict.fromkeys(edges):
        succ.setdefault(s, []).append(t)
        pred.setdefault(t, []).append(s)
    return succ, pred


def _change_lines(change: NodeChange | None) -> list[str]:
    if change is None:
        return []
    lines = [f"attribute {name}: {old if old is not None else '(absent)'} -> {new if new is not None else '(absent)'}"
             for name, (old, new) in change.attributes.items()]
    lines += [f"input {item.position} {item.kind}: {item.before} -> {item.after}" for item in change.inputs]
    if change.outputs is not None:
        lines.append(f"outputs: {change.outputs[0]} -> {change.outputs[1]}")
    return lines


# --- one side --------------------------------------------------------------------------------------


class _DrawnGraph:
    """The drawn nodes of one model's main graph (constant nodes hidden), keys, edges and details."""

    def __init__(self, model: ir.Model, summary: ir_cost.CostSummary, prefix: str):
        graph = model.graph
        self.graph = graph
        self.prefix = prefix
        self.constants = ir_cost.constant_values(graph)
        self.index = {node: i for i, node in enumerate(graph)}
        self.costs = {node: summary.per_node[i] for node, i in self.index.items()}
        order = ir_cost.execution_order(graph)
        self.drawn = [node for node in order if not self.costs[node].constant]
        self.hidden = len(order) - len(self.drawn)
        self.keys: dict[ir.Node, str] = {node: f"{prefix}{self.index[node]}" for node in self.drawn}
        self.inputs = [v for v in graph.inputs if not v.is_initializer() and v not in self.constants]
        self.rebuild_edges()

    def input_key(self, value: ir.Value) -> str:
        return f"in:{value.name}"

    def rebuild_edges(self) -> None:
        edges = []
        inputs = set(self.inputs)
        for node in self.drawn:
            for value in node.inputs:
                if value is None:
                    continue
                producer = value.producer()
                if producer in self.keys:
                    edges.append((self.keys[producer], self.keys[node]))
                elif producer is None and value in inputs:
                    edges.append((self.input_key(value), self.keys[node]))
        self.edges = list(dict.fromkeys(edges))

    def input_nodes(self) -> list[ViewNode]:
        return [ViewNode(self.input_key(v), "input", v.name or "", "node", self.prefix, {self.prefix: {"name": v.name, "op": "graph input", "outputs": [_type_text(v)]}})
                for v in self.inputs]

    def details(self, node: ir.Node) -> dict:
        cost = self.costs[node]
        inputs = []
        for value in node.inputs:
            if value is None:
                inputs.append({"name": "(omitted)"})
                continue
            entry = {"name": value.name or "", "type": _type_text(value)}
            if value in self.constants or value.const_value is not None:
                entry["weight"] = _weight_stats(value)
            inputs.append(entry)
        return {
            "name": node.name or "",
            "op": ir_cost.op_key(node),
            "attributes": {name: _attr_text(attr) for name, attr in node.attributes.items()},
            "inputs": inputs,
            "outputs": [_type_text(v) for v in node.outputs],
            "cost": {"params": cost.params, "macs": cost.macs, "flops": cost.flops, "weight_bytes": cost.weight_bytes},
        }


def _type_text(value: ir.Value) -> str:
    dtype = ir_cost.value_dtype(value)
    dims = ir_cost.static_dims(value)
    if dims is None and value.shape is not None:
        dims = tuple(str(d) for d in value.shape)
    shape = "?" if dims is None else ",".join(map(str, dims))
    return f"{_dtype_name(dtype)}[{shape}]"


def _dtype_name(dtype: ir.DataType | None) -> str:
    if dtype is None:
        return "?"
    try:
        return np.dtype(dtype.numpy()).name
    except (TypeError, ValueError, AttributeError):
        return dtype.name.lower()


def _weight_stats(value: ir.Value) -> dict:
    tensor = ir_cost.constant_tensor(value)
    dims = ir_cost.static_dims(value)
    entry: dict = {"shape": list(dims) if dims is not None else None}
    if tensor is None:
        entry["note"] = "computed in the graph"
        return entry
    if tensor.size > MAX_STATS_ELEMENTS:
        entry["note"] = "too large for statistics"
        return entry
    try:
        array = np.asarray(tensor.numpy())
    except Exception:  # noqa: BLE001 - exotic dtypes (int4, float8): shape only
        return entry
    if array.size == 0 or array.dtype.kind not in "fiub":
        return entry
    values = array.astype(np.float64, copy=False).ravel()
    entry.update({
        "min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
        "std": float(values.std()), "zeros": float(np.count_nonzero(values == 0) / values.size),
    })
    return entry
