"""Structural and numeric differences between two models (``before`` = a, ``after`` = b).

Structural diff (``structural_diff(a, b)``), over the main graphs:

1. Nodes are matched by name first: a name that is non-empty and unique in both models, on nodes of
   the same op (``domain::op_type``), pairs them.
2. The remaining nodes are matched by structure. Each node gets a local *signature*: its op and, per
   input, what feeds it (the producer's op and output index, ``in:<name>`` for a graph input,
   ``const`` for a constant, empty for an omitted input). The two sequences of signatures, in
   execution (topological) order, are aligned like lines of text by a shortest edit script (Myers;
   ``align``), and aligned equal signatures are matched. Between two aligned pairs, nodes of the same
   op are paired in order. A signature only looks one producer back, so a change stays local instead
   of rippling downstream; the shortest edit script keeps a removal inside repeated identical blocks
   from being read as a shifted block.
3. Unmatched nodes of ``a`` are *removed*, unmatched nodes of ``b`` are *added*. A matched pair is
   *changed* when an attribute differs (subgraph attributes compare their op sequence, tensor
   attributes their dtype, shape and bytes), when an input is *rewired* (its producer is not the match
   of the old producer, a different graph input, or constant-ness flipped), when an optional input is
   added or removed (a bias), when a constant weight input changes shape or dtype (its values only
   with ``compare_weight_values=True``: initializers and Constant nodes, not computed constants), or
   when the number of outputs differs. Removing a node therefore also shows its consumers as rewired.

Layers of ``a`` that ``b`` computes as a chain of smaller layers (``decompose``, ``separable``) are
listed in ``factorized`` with the chain and the method (``ir.diff_factorized``).

It also reports initializers, graph inputs and graph outputs added, removed or changed (dtype or
shape) by name, the op histograms with their delta, and the cost deltas from ``ir.cost.analyze``
(which infers shapes in place on both models).

Numeric diff (``numeric_diff(a, b, feeds)``): both models run with ONNX Runtime on the same feeds
(``ir.runtime.generate_inputs(a, seed=seed)`` when none are given). Per output of ``a``:
``max_abs``, ``max_rel``, ``cosine``, ``sqnr_db`` as ``ir.fidelity`` defines them; non-finite
mismatches are counted in ``nonfinite_mismatches``; integer and boolean outputs also report
``mismatches`` (elements that differ).
``json_safe`` turns the infinities into strings for strict JSON.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
from collections.abc import Iterable, Mapping

import numpy as np
import onnx_ir as ir

from ir import cost as ir_cost
from ir import fidelity
from ir import runtime as ir_runtime
from ir.diff_factorized import FactorizedLayer, factorized_layers

# Above this many inserted plus deleted nodes, structural alignment uses difflib (greedy, faster).
MAX_EDITS = 2000

COST_FIELDS = ("nodes", "params", "macs", "flops", "weight_bytes", "stored_weight_bytes", "activation_peak_bytes", "uncounted_nodes")


# --- result types ----------------------------------------------------------------------------------


@dataclasses.dataclass
class NodeRef:
    """A node of one model: its position in the main graph's order, name and op."""

    index: int
    name: str
    op_type: str

    @property
    def label(self) -> str:
        return self.name or f"#{self.index} {self.op_type}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class InputChange:
    """Input ``position`` of a matched node: what fed it before and after (as text)."""

    position: int
    before: str
    after: str
    kind: str  # "rewired", "weight" (shape, dtype or values), "added" or "removed" (optional input)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NodeChange:
    before: NodeRef
    after: NodeRef
    attributes: dict[str, tuple[str | None, str | None]] = dataclasses.field(default_factory=dict)
    inputs: list[InputChange] = dataclasses.field(default_factory=list)
    outputs: tuple[int, int] | None = None  # (before, after) output counts when they differ

    @property
    def rewired(self) -> list[InputChange]:
        return [change for change in self.inputs if change.kind == "rewired"]

    @property
    def weights(self) -> list[InputChange]:
        return [change for change in self.inputs if change.kind == "weight"]

    def is_empty(self) -> bool:
        return not self.attributes and not self.inputs and self.outputs is None

    def to_dict(self) -> dict:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "attributes": {name: list(pair) for name, pair in self.attributes.items()},
            "inputs": [change.to_dict() for change in self.inputs],
            "outputs": list(self.outputs) if self.outputs else None,
        }


@dataclasses.dataclass
class TensorInfo:
    """Name, element type and dimensions (ints, symbol names, None for unknown; None shape = unknown rank)."""

    name: str
    dtype: str | None
    shape: list[int | str | None] | None

    @property
    def text(self) -> str:
        dims = "?" if self.shape is None else ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype or '?'}[{dims}]"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ValueChanges:
    """Named values (initializers, graph inputs or outputs) added, removed, or changed in dtype/shape."""

    added: list[TensorInfo] = dataclasses.field(default_factory=list)
    removed: list[TensorInfo] = dataclasses.field(default_factory=list)
    changed: list[tuple[TensorInfo, TensorInfo]] = dataclasses.field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict:
        return {
            "added": [info.to_dict() for info in self.added],
            "removed": [info.to_dict() for info in self.removed],
            "changed": [{"before": old.to_dict(), "after": new.to_dict()} for old, new in self.changed],
        }


@dataclasses.dataclass
class StructuralDiff:
    added_nodes: list[NodeRef]
    removed_nodes: list[NodeRef]
    changed_nodes: list[NodeChange]
    matched_by_name: int
    matched_by_structure: int
    initializers: ValueChanges
    inputs: ValueChanges
    outputs: ValueChanges
    op_histogram: dict[str, dict[str, int]]  # op -> {"before", "after", "delta"}
    cost: dict[str, dict[str, int]]  # field of CostSummary -> {"before", "after", "delta"}
    # layers of a that b computes as a chain of smaller layers (ir.diff_factorized)
    factorized: list[FactorizedLayer] = dataclasses.field(default_factory=list)
    # (index in a, index in b) of every matched node pair, in a's order; for drawing, not in to_dict
    pairs: list[tuple[int, int]] = dataclasses.field(default_factory=list, repr=False)

    def is_empty(self) -> bool:
        return (
            not (self.added_nodes or self.removed_nodes or self.changed_nodes)
            and self.initializers.is_empty()
            and self.inputs.is_empty()
            and self.outputs.is_empty()
        )

    def histogram_delta(self) -> dict[str, int]:
        return {op: row["delta"] for op, row in self.op_histogram.items() if row["delta"]}

    def to_dict(self) -> dict:
        return {
            "empty": self.is_empty(),
            "added_nodes": [ref.to_dict() for ref in self.added_nodes],
            "removed_nodes": [ref.to_dict() for ref in self.removed_nodes],
            "changed_nodes": [change.to_dict() for change in self.changed_nodes],
            "matched_by_name": self.matched_by_name,
            "matched_by_structure": self.matched_by_structure,
            "initializers": self.initializers.to_dict(),
            "inputs": self.inputs.to_dict(),
            "outputs": self.outputs.to_dict(),
            "op_histogram": {op: dict(row) for op, row in self.op_histogram.items()},
            "cost": {name: dict(row) for name, row in self.cost.items()},
            "factorized_layers": [layer.to_dict() for layer in self.factorized],
        }


# --- structural diff -------------------------------------------------------------------------------


def structural_diff(
    a: ir.Model, b: ir.Model, *, infer_shapes: bool = True, compare_weight_values: bool = False
) -> StructuralDiff:
    """``compare_weight_values`` also reports same-shape weights whose bytes differ (initializers and
    Constant nodes; it reads every weight of both models)."""
    cost_a = ir_cost.analyze(a, infer_shapes=infer_shapes)
    cost_b = ir_cost.analyze(b, infer_shapes=infer_shapes)
    before, after = _Side.of(a.graph), _Side.of(b.graph)
    by_name = _match_by_name(before.nodes, after.nodes)
    by_structure = _match_by_structure(before, after, by_name)
    matches = {**by_name, **by_structure}
    matched_b = set(matches.values())
    changes = []
    for node_a, node_b in sorted(matches.items(), key=lambda pair: before.index[pair[0]]):
        change = _node_change(node_a, node_b, matches, before, after, compare_weight_values)
        if not change.is_empty():
            changes.append(change)
    return StructuralDiff(
        added_nodes=[after.ref(node) for node in after.nodes if node not in matched_b],
        removed_nodes=[before.ref(node) for node in before.nodes if node not in matches],
        changed_nodes=changes,
        matched_by_name=len(by_name),
        matched_by_structure=len(by_structure),
        initializers=_value_changes(a.graph.initializers.values(), b.graph.initializers.values()),
        inputs=_value_changes(_real_inputs(a.graph), _real_inputs(b.graph)),
        outputs=_value_changes(a.graph.outputs, b.graph.outputs),
        op_histogram=_before_after(cost_a.op_histogram, cost_b.op_histogram),
        cost=_before_after(_cost_fields(cost_a), _cost_fields(cost_b)),
        factorized=factorized_layers(a, b),
        pairs=sorted((before.index[node_a], after.index[node_b]) for node_a, node_b in matches.items()),
    )


@dataclasses.dataclass
class _Side:
    """One model's main graph prepared for matching: nodes in execution order, their positions in the
    graph's own order, and the constant values."""

    nodes: list[ir.Node]
    index: dict[ir.Node, int]
    constants: set[ir.Value]

    @classmethod
    def of(cls, graph: ir.Graph) -> _Side:
        index = {node: i for i, node in enumerate(graph)}  # as the user sees it
        return cls(ir_cost.execution_order(graph), index, ir_cost.constant_values(graph))

    def is_constant(self, value: ir.Value | None) -> bool:
        return value is not None and (value in self.constants or value.const_value is not None)

    def ref(self, node: ir.Node) -> NodeRef:
        return NodeRef(index=self.index[node], name=node.name or "", op_type=ir_cost.op_key(node))

    def signature(self, node: ir.Node) -> str:
        feeds = []
        for value in node.inputs:
            if value is None:
                feeds.append("")
            elif self.is_constant(value):
                feeds.append("const")
            elif value.producer() is None:
                feeds.append(f"in:{value.name}")
            else:
                feeds.append(f"{ir_cost.op_key(value.producer())}:{value.index()}")
        return f"{ir_cost.op_key(node)}({','.join(feeds)})"

    def feed_text(self, value: ir.Value | None) -> str:
        """What feeds an input, as shown in a report."""
        if value is None:
            return "(none)"
        if self.is_constant(value):
            return f"weight {_tensor_info(value).text}"
        producer = value.producer()
        if producer is None:
            return f"input '{value.name}'"
        return f"{ir_cost.op_key(producer)} '{self.ref(producer).label}' output {value.index()}"


def _match_by_name(nodes_a: list[ir.Node], nodes_b: list[ir.Node]) -> dict[ir.Node, ir.Node]:
    unique_a, unique_b = _unique_names(nodes_a), _unique_names(nodes_b)
    return {
        node: unique_b[name]
        for name, node in unique_a.items()
        if name in unique_b and ir_cost.op_key(node) == ir_cost.op_key(unique_b[name])
    }


def _unique_names(nodes: list[ir.Node]) -> dict[str, ir.Node]:
    seen: dict[str, ir.Node | None] = {}
    for node in nodes:
        if node.name:
            seen[node.name] = None if node.name in seen else node
    return {name: node for name, node in seen.items() if node is not None}


def _match_by_structure(before: _Side, after: _Side, already: dict[ir.Node, ir.Node]) -> dict[ir.Node, ir.Node]:
    taken = set(already.values())
    rest_a = [node for node in before.nodes if node not in already]
    rest_b = [node for node in after.nodes if node not in taken]
    pairs = align([before.signature(n) for n in rest_a], [after.signature(n) for n in rest_b])
    matches: dict[ir.Node, ir.Node] = {}
    previous = (-1, -1)
    for i, j in [*pairs, (len(rest_a), len(rest_b))]:
        # Between two aligned pairs lies a block that differs: pair its nodes of the same op.
        matches.update(_pair_same_op(rest_a[previous[0] + 1 : i], rest_b[previous[1] + 1 : j]))
        if i < len(rest_a):
            matches[rest_a[i]] = rest_b[j]
        previous = (i, j)
    return matches


def align(a: list[str], b: list[str], *, max_edits: int = MAX_EDITS) -> list[tuple[int, int]]:
    """Index pairs (i, j) of a longest common subsequence of ``a`` and ``b``, in order.

    Myers' O((N+M)D) shortest-edit-script algorithm: the fewest insertions and deletions, so a node
    removed inside a run of identical blocks is not mistaken for a shifted block (difflib's greedy
    longest-block choice can do that). Beyond ``max_edits`` differences it falls back to difflib.
    """
    trace = _shortest_edit_trace(a, b, max_edits)
    if trace is None:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        return [(i + k, j + k) for i, j, size in matcher.get_matching_blocks() for k in range(size)]
    pairs = []
    x, y = len(a), len(b)
    for d in range(len(trace) - 1, -1, -1):
        # Step back over the snake (equal elements) that followed edit d, then over the edit itself.
        v, k = trace[d], x - y
        previous_k = k + 1 if k == -d or (k != d and v[k - 1] < v[k + 1]) else k - 1
        previous_x = v[previous_k]
        previous_y = previous_x - previous_k
        while x > previous_x and y > previous_y:
            x, y = x - 1, y - 1
            pairs.append((x, y))
        x, y = previous_x, previous_y
    return pairs[::-1]


def _shortest_edit_trace(a: list[str], b: list[str], max_edits: int) -> list[dict[int, int]] | None:
    """For each edit count d, the furthest x reached on each diagonal k = x - y with d - 1 edits;
    None when more than ``max_edits`` edits are needed."""
    n, m = len(a), len(b)
    v = {1: 0}
    trace = []
    for d in range(min(n + m, max_edits) + 1):
        trace.append(dict(v))
        for k in range(-d, d + 1, 2):
            x = v[k + 1] if k == -d or (k != d and v[k - 1] < v[k + 1]) else v[k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x, y = x + 1, y + 1
            v[k] = x
            if x >= n and y >= m:
                return trace
    return None


def _pair_same_op(block_a: list[ir.Node], block_b: list[ir.Node]) -> dict[ir.Node, ir.Node]:
    pairs: dict[ir.Node, ir.Node] = {}
    free_b = list(block_b)
    for node in block_a:
        for candidate in free_b:
            if ir_cost.op_key(candidate) == ir_cost.op_key(node):
                pairs[node] = candidate
                free_b.remove(candidate)
                break
    return pairs


def _node_change(
    node_a: ir.Node,
    node_b: ir.Node,
    matches: Mapping[ir.Node, ir.Node],
    before: _Side,
    after: _Side,
    compare_values: bool,
) -> NodeChange:
    change = NodeChange(before=before.ref(node_a), after=after.ref(node_b))
    change.attributes = _attribute_changes(node_a, node_b)
    inputs_a, inputs_b = list(node_a.inputs), list(node_b.inputs)
    for position in range(max(len(inputs_a), len(inputs_b))):
        old = inputs_a[position] if position < len(inputs_a) else None
        new = inputs_b[position] if position < len(inputs_b) else None
        kind = _input_change_kind(old, new, matches, before, after, compare_values)
        if kind is None:
            continue
        old_text, new_text = before.feed_text(old), after.feed_text(new)
        if old_text == new_text:  # same shape and dtype, so the bytes differ
            new_text += " (values changed)"
        change.inputs.append(InputChange(position, old_text, new_text, kind))
    if len(node_a.outputs) != len(node_b.outputs):
        change.outputs = (len(node_a.outputs), len(node_b.outputs))
    return change


def _input_change_kind(old, new, matches, before: _Side, after: _Side, compare_values: bool) -> str | None:
    """None when the input is fed the same way, else "added", "removed", "weight" or "rewired"."""
    if old is None or new is None:
        return None if old is new else ("added" if old is None else "removed")
    old_const, new_const = before.is_constant(old), after.is_constant(new)
    if old_const and new_const:
        same_kind = _tensor_info(old).text == _tensor_info(new).text
        return None if same_kind and not (compare_values and _values_differ(old, new)) else "weight"
    if old_const or new_const:
        return "rewired"
    old_producer, new_producer = old.producer(), new.producer()
    if old_producer is None or new_producer is None:
        same = old_producer is None and new_producer is None and old.name == new.name
    else:
        same = matches.get(old_producer) is new_producer and old.index() == new.index()
    return None if same else "rewired"


def _values_differ(old: ir.Value, new: ir.Value) -> bool:
    old_tensor, new_tensor = ir_cost.constant_tensor(old), ir_cost.constant_tensor(new)
    if old_tensor is None or new_tensor is None:
        return False  # computed constants (ConstantOfShape, ...): values not compared
    return old_tensor.tobytes() != new_tensor.tobytes()


def _attribute_changes(node_a: ir.Node, node_b: ir.Node) -> dict[str, tuple[str | None, str | None]]:
    changes = {}
    for name in sorted(set(node_a.attributes) | set(node_b.attributes)):
        old, new = node_a.attributes.get(name), node_b.attributes.get(name)
        old_key, new_key = _attr_key(old), _attr_key(new)
        if old_key != new_key:
            changes[name] = (_attr_text(old), _attr_text(new))
    return changes


def _attr_key(attr: ir.Attr | None):
    """A comparable form of an attribute's value."""
    if attr is None:
        return None
    if attr.is_ref():
        return ("ref", attr.ref_attr_name)
    if attr.type == ir.AttributeType.TENSOR:
        return _tensor_key(attr.value)
    if attr.type == ir.AttributeType.TENSORS:
        return tuple(_tensor_key(t) for t in attr.value)
    if attr.type == ir.AttributeType.GRAPH:
        return _graph_key(attr.value)
    if attr.type == ir.AttributeType.GRAPHS:
        return tuple(_graph_key(g) for g in attr.value)
    value = attr.value
    return (attr.type, tuple(value) if isinstance(value, (list, tuple)) else value)


def _tensor_key(tensor) -> tuple:
    digest = hashlib.sha1(tensor.tobytes()).hexdigest()
    return (tensor.dtype, tuple(tensor.shape), digest)


def _graph_key(graph: ir.Graph) -> tuple:
    return tuple(ir_cost.op_key(node) for node in ir.traversal.RecursiveGraphIterator(graph))


def _graph_text(graph: ir.Graph, shown: int = 6) -> str:
    ops = _graph_key(graph)
    listed = ", ".join(ops[:shown]) + (", ..." if len(ops) > shown else "")
    return f"graph of {len(ops)} nodes ({listed})"


def _attr_text(attr: ir.Attr | None) -> str | None:
    if attr is None:
        return None
    if attr.is_ref():
        return f"@{attr.ref_attr_name}"
    if attr.type == ir.AttributeType.TENSOR:
        return f"tensor {attr.value.dtype.name}{list(attr.value.shape)}"
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        graphs = [attr.value] if attr.type == ir.AttributeType.GRAPH else list(attr.value)
        return "; ".join(_graph_text(graph) for graph in graphs)
    value = attr.value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


# --- named values and histograms -------------------------------------------------------------------


def _real_inputs(graph: ir.Graph) -> list[ir.Value]:
    return [value for value in graph.inputs if not value.is_initializer()]


def _tensor_info(value: ir.Value) -> TensorInfo:
    dtype = ir_cost.value_dtype(value)
    dims = ir_cost.static_dims(value)
    if dims is not None:
        shape: list[int | str | None] | None = list(dims)
    elif value.shape is not None:
        shape = [d if isinstance(d, int) else getattr(d, "value", None) for d in value.shape]
    else:
        shape = None
    return TensorInfo(name=value.name or "", dtype=dtype.name if dtype is not None else None, shape=shape)


def _value_changes(values_a: Iterable[ir.Value], values_b: Iterable[ir.Value]) -> ValueChanges:
    infos_a = {value.name: _tensor_info(value) for value in values_a}
    infos_b = {value.name: _tensor_info(value) for value in values_b}
    changes = ValueChanges()
    for name, info in infos_a.items():
        if name not in infos_b:
            changes.removed.append(info)
        elif (info.dtype, info.shape) != (infos_b[name].dtype, infos_b[name].shape):
            changes.changed.append((info, infos_b[name]))
    changes.added = [info for name, info in infos_b.items() if name not in infos_a]
    return changes


def _before_after(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, dict[str, int]]:
    rows = {}
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key, 0), after.get(key, 0)
        rows[key] = {"before": old, "after": new, "delta": new - old}
    return rows


def _cost_fields(summary: ir_cost.CostSummary) -> dict[str, int]:
    return {field: getattr(summary, field) for field in COST_FIELDS}


# --- numeric diff ----------------------------------------------------------------------------------


def numeric_diff(
    a: ir.Model, b: ir.Model, feeds: Mapping[str, np.ndarray] | None = None, *, seed: int = 0
) -> dict[str, dict]:
    """Per output name of ``a``: error metrics of ``b``'s output against ``a``'s (see module docstring)."""
    if feeds is None:
        feeds = ir_runtime.generate_inputs(a, seed=seed)
    outputs_a = ir_runtime.run(a, _feeds_for(a, feeds))
    outputs_b = ir_runtime.run(b, _feeds_for(b, feeds))
    report: dict[str, dict] = {}
    for name, reference in outputs_a.items():
        if name not in outputs_b:
            report[name] = {"status": "missing in second model"}
        elif np.shape(reference) != np.shape(outputs_b[name]):
            report[name] = {
                "status": "shape mismatch",
                "shape": list(np.shape(reference)),
                "other_shape": list(np.shape(outputs_b[name])),
            }
        else:
            report[name] = output_errors(np.asarray(reference), np.asarray(outputs_b[name]))
    for name in outputs_b:
        if name not in outputs_a:
            report[name] = {"status": "only in second model"}
    return report


def _feeds_for(model: ir.Model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # ONNX Runtime rejects feeds the model does not declare; the two models' inputs may differ.
    names = set(ir_runtime.input_specs(model))
    return {name: array for name, array in feeds.items() if name in names}


def output_errors(reference: np.ndarray, actual: np.ndarray) -> dict:
    return {"status": "ok", "shape": list(reference.shape), "dtype": str(reference.dtype), **fidelity.array_metrics(reference, actual)}


def json_safe(data):
    """A copy of ``data`` with infinite and NaN floats written as strings, for strict JSON."""
    if isinstance(data, float) and not math.isfinite(data):
        return "nan" if math.isnan(data) else ("inf" if data > 0 else "-inf")
    if isinstance(data, Mapping):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(item) for item in data]
    return data
