"""Where the output error of a lossy pipeline comes from: per pass, and per layer.

Per pass: ``AttributionInstrument`` keeps a copy of the model before every lossy pass and, when the
pass changed the model, measures on the verification feeds (held back from calibration where the data
allow: ``held_back_feeds``)

- the pass's *own* error: its output against the model just before it (``ir.fidelity``'s summary:
  SQNR, cosine, max abs/rel);
- the *cumulative* error: the output against the pipeline's input model;
- the per-layer table below, between the model before and after the pass.

It stores them in the pass record's ``attribution`` (``{"own": ..., "cumulative": ..., "layers":
[...]}``); a pass's own ``fidelity`` (measured by the pass itself on its held-back calibration feeds)
is kept next to it, not replaced.

Per layer (``layer_errors(before, after, feeds)``): nodes are matched by name and op between the two
models (the lossy passes keep the names of the layers they rewrite; an unnamed node goes by its first
output's name). A matched layer counts as
*changed* when a weight, an attribute or what feeds it (an inserted node, e.g. a DequantizeLinear)
differs; only changed layers get a row, unchanged ones only carry the error on. Every matched, non-constant node's
first output is exposed and both models run on the same feeds; for each node whose output kept its
shape, the relative noise power ``r = sum (a - b)^2 / sum a^2`` over all feeds is its *cumulative*
error. What the layer *introduces* is ``r`` minus the largest ``r`` among its nearest matched
predecessors (walking back through unmatched nodes such as inserted Q/DQ pairs; a graph input counts
as exact): the noise that appears at this layer, as if noise added along the way passed on with unit
gain. It is shown as a SQNR in dB (``introduced_sqnr_db``, the SQNR the layer would have if it were
the only error) and as a share of all the noise the layers introduce (``share``). Rows are ranked by
the noise introduced, the worst first. A layer that lost output channels (pruning) is compared on the
channels it kept, matched to the original ones by correlation (``match_channels``), with zeros in
place of the removed ones: the energy of the removed channels is the error it introduces (a refitted
consumer that wins some of it back introduces none). When no good match exists, the layer cannot be
compared and its error shows at its consumers.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from ir import cost as ir_cost
from ir import fidelity as ir_fidelity
from ir import io, runtime, shapes
from passes.instruments import Instrument

HELD_BACK = 4
# The most calibration feeds a built-in lossy pass reads by default (quantize: 32, prune: 16 + 4).
CALIBRATION_USE = 32


def held_back_feeds(calibration, n: int = HELD_BACK) -> tuple[list[dict], str]:
    """The last ``n`` calibration feeds (passes calibrate on the first ones) and a description for the
    report: held back when the data are more than ``CALIBRATION_USE`` samples plus ``n``, else said to
    overlap calibration. With ``n`` or fewer samples, all of them."""
    tail: collections.deque = collections.deque(maxlen=n)
    total = 0
    for feed in calibration:
        tail.append(feed)
        total += 1
    if total <= n:
        return list(tail), calibration.source
    held = "held back from calibration" if total >= CALIBRATION_USE + n else "also used for calibration"
    return list(tail), f"the last {n} of {total} samples of {calibration.source} ({held})"


def fidelity(reference_outputs: Sequence[dict], outputs: Sequence[dict]) -> dict:
    """Runs already made, summarized as ``ir.fidelity.measure`` does: SQNR, cosine (and top-1
    agreement) of the first output, max abs/rel over all, the worst output's SQNR, the feed count."""
    accumulated = ir_fidelity.Fidelity()
    names = list(reference_outputs[0]) if reference_outputs else []
    for want, got in zip(reference_outputs, outputs):
        for name in names:
            accumulated.add(name, want[name], got[name])
    if not names:
        return {"sqnr_db": math.inf, "cosine": 1.0, "max_abs": 0.0, "max_rel": 0.0, "feeds": 0}
    result = accumulated.summary(names[0])
    result["max_abs"] = max(accumulated.max_abs[n] for n in names)
    result["max_rel"] = max(accumulated.max_rel[n] for n in names)
    result["worst_output_sqnr_db"] = min(accumulated.sqnr_db(n) for n in names)
    result["feeds"] = len(reference_outputs)
    return result


def layer_errors(before: ir.Model, after: ir.Model, feeds: Sequence[dict]) -> list[dict]:
    """Per matched layer: cumulative and introduced error of ``after`` against ``before`` (see above)."""
    before, after = io.copy_model(before), io.copy_model(after)
    for model in (before, after):
        shapes.infer(model)
    pairs = _matched_layers(before, after)
    if not pairs or not feeds:
        return []
    exposed_b = _expose(before, [b for b, _ in pairs])
    exposed_a = _expose(after, [a for _, a in pairs])
    session_b, session_a = runtime.session(before), runtime.session(after)
    accumulated = ir_fidelity.Fidelity()
    shape_changed: set[str] = set()
    channel_maps: dict[str, np.ndarray | None] = {}
    for feed in feeds:
        want = runtime.run(session_b, {k: v for k, v in feed.items() if k in runtime.input_specs(before)})
        got = runtime.run(session_a, {k: v for k, v in feed.items() if k in runtime.input_specs(after)})
        for node_b, node_a in pairs:
            name = _label(node_a)
            ref, out = want.get(exposed_b.get(node_b)), got.get(exposed_a.get(node_a))
            if ref is None or out is None:
                continue
            if np.shape(ref) != np.shape(out):
                if name not in channel_maps:
                    channel_maps[name] = match_channels(np.asarray(ref), np.asarray(out))
                if channel_maps[name] is None:
                    shape_changed.add(name)
                    continue
                out = _zero_filled(np.asarray(ref), np.asarray(out), channel_maps[name])
            accumulated.add(name, ref, out)
    signal, noise = accumulated.signal, accumulated.noise
    relative = {name: (noise[name] / signal[name] if signal[name] > 0 else (0.0 if noise[name] == 0 else math.inf))
                for name in signal if name not in shape_changed}
    preds = _matched_predecessors(after, {a for _, a in pairs})
    matched_a = {a for _, a in pairs}
    rows = []
    for node_b, node_a in pairs:
        change = _changed(node_b, node_a, matched_a)
        if not change:
            continue  # an unchanged layer only carries the error it is given
        name = _label(node_a)
        row = {"layer": name, "op": ir_cost.op_key(node_a), "change": change}
        if name in shape_changed:
            rows.append({**row, "sqnr_db": None, "introduced": 0.0, "note": "output shape changed: its error shows at its consumers"})
            continue
        if name not in relative:
            continue
        inputs = [relative.get(_label(p), 0.0) for p in preds.get(node_a, ())]
        rel_in = max(inputs, default=0.0)
        introduced = max(relative[name] - rel_in, 0.0)
        rows.append({**row, "sqnr_db": _rel_db(relative[name]), "input_sqnr_db": _rel_db(rel_in),
                     "introduced": introduced, "introduced_sqnr_db": _rel_db(introduced)})
    total = sum(r["introduced"] for r in rows if math.isfinite(r["introduced"]))
    for r in rows:
        r["share"] = r["introduced"] / total if total > 0 and math.isfinite(r["introduced"]) else 0.0
    rows.sort(key=lambda r: -r["introduced"] if math.isfinite(r["introduced"]) else -math.inf)
    return rows


def _changed(node_b: ir.Node, node_a: ir.Node, matched_a: set[ir.Node]) -> str:
    """What the pass rewrote in this layer ("" when nothing): a weight, an attribute, or what feeds
    it (a new node such as an inserted DequantizeLinear)."""
    if len(node_b.inputs) != len(node_a.inputs):
        return f"inputs {len(node_b.inputs)} -> {len(node_a.inputs)}"
    if _attributes(node_b) != _attributes(node_a):
        return "attributes changed"
    for old, new in zip(node_b.inputs, node_a.inputs):
        if (old is None) != (new is None):
            return "optional input added" if old is None else "optional input removed"
        if old is None:
            continue
        old_tensor, new_tensor = ir_cost.constant_tensor(old), ir_cost.constant_tensor(new)
        if old_tensor is not None and new_tensor is not None:
            if tuple(old_tensor.shape) != tuple(new_tensor.shape):
                return f"weight {list(old_tensor.shape)} -> {list(new_tensor.shape)}"
            if old_tensor.tobytes() != new_tensor.tobytes():
                return "weight values changed"
        elif (old_tensor is None) != (new_tensor is None) or (new.producer() is not None and new.producer() not in matched_a):
            producer = new.producer()
            return f"reads a new {producer.op_type}" if producer is not None else "input rewired"
    return ""


def _attributes(node: ir.Node) -> dict:
    return {name: repr(attr.value) for name, attr in node.attributes.items()}


def match_channels(reference: np.ndarray, pruned: np.ndarray, min_correlation: float = 0.5) -> np.ndarray | None:
    """For an output that lost channels (axis 1): the reference channel each remaining channel is, by
    the assignment of highest total correlation; None when the shapes differ otherwise or the match
    is poor (mean correlation below ``min_correlation``)."""
    if reference.ndim < 2 or reference.ndim != pruned.ndim or pruned.shape[1] >= reference.shape[1]:
        return None
    if reference.shape[:1] + reference.shape[2:] != pruned.shape[:1] + pruned.shape[2:]:
        return None
    from scipy.optimize import linear_sum_assignment

    def rows(array):
        flat = np.moveaxis(array, 1, 0).reshape(array.shape[1], -1).astype(np.float64)
        flat -= flat.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        return flat / np.where(norms > 0, norms, 1.0)

    correlation = rows(pruned) @ rows(reference).T
    kept, original = linear_sum_assignment(-correlation)
    if float(correlation[kept, original].mean()) < min_correlation:
        return None
    mapping = np.empty(pruned.shape[1], dtype=np.int64)
    mapping[kept] = original
    return mapping


def _zero_filled(reference: np.ndarray, pruned: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """The pruned output in the reference's shape, removed channels as zeros (so they count as error)."""
    filled = np.zeros(reference.shape, dtype=np.float64)
    index = [slice(None)] * reference.ndim
    index[1] = mapping
    filled[tuple(index)] = pruned
    return filled


def _rel_db(relative: float) -> float:
    if relative <= 0.0:
        return math.inf
    return -10.0 * math.log10(relative) if math.isfinite(relative) else -math.inf


def _matched_layers(before: ir.Model, after: ir.Model) -> list[tuple[ir.Node, ir.Node]]:
    constants_b, constants_a = ir_cost.constant_values(before.graph), ir_cost.constant_values(after.graph)
    by_name = _unique_named(before.graph, constants_b)
    pairs = []
    for name, node_a in _unique_named(after.graph, constants_a).items():
        node_b = by_name.get(name)
        if node_b is not None and ir_cost.op_key(node_b) == ir_cost.op_key(node_a):
            pairs.append((node_b, node_a))
    return pairs


def _label(node: ir.Node) -> str:
    """A node's name; for an unnamed node (most PP-OCR nodes), its first output's name."""
    return node.name or (node.outputs[0].name if node.outputs and node.outputs[0].name else "")


def _unique_named(graph: ir.Graph, constants) -> dict[str, ir.Node]:
    counts = collections.Counter(_label(node) for node in graph)
    return {_label(node): node for node in graph
            if _label(node) and counts[_label(node)] == 1 and node.outputs and node.outputs[0] not in constants
            and node.outputs[0].dtype is not None and node.outputs[0].dtype.is_floating_point()}


def _expose(model: ir.Model, nodes: Iterable[ir.Node]) -> dict[ir.Node, str]:
    present = {value.name for value in model.graph.outputs}
    exposed = {}
    for node in nodes:
        value = node.outputs[0]
        if value.name not in present:
            model.graph.outputs.append(value)
            present.add(value.name)
        exposed[node] = value.name
    return exposed


def _matched_predecessors(model: ir.Model, matched: set[ir.Node]) -> dict[ir.Node, list[ir.Node]]:
    found: dict[ir.Node, list[ir.Node]] = {}
    for node in matched:
        result, seen = [], set()
        stack = [v.producer() for v in node.inputs if v is not None]
        while stack:
            producer = stack.pop()
            if producer is None or producer in seen:
                continue
            seen.add(producer)
            if producer in matched:
                result.append(producer)
            else:
                stack.extend(v.producer() for v in producer.inputs if v is not None)
        found[node] = result
    return found


class AttributionInstrument(Instrument):
    """Measures each lossy pass's own error, the cumulative error and its per-layer table (see above)."""

    def __init__(self, feeds: Sequence[dict], reference: ir.Model | None = None):
        self.feeds = list(feeds)
        self._input_outputs = None
        self._before: ir.Model | None = None
        if reference is not None:
            self._input_outputs = self._run(reference)

    def _run(self, model: ir.Model) -> list[dict]:
        session = runtime.session(model)
        names = set(runtime.input_specs(model))
        return [runtime.run(session, {k: v for k, v in feed.items() if k in names}) for feed in self.feeds]

    def final(self, model: ir.Model) -> dict | None:
        """The output error of ``model`` against the pipeline's input model (None before any pass)."""
        if self._input_outputs is None:
            return None
        return fidelity(self._input_outputs, self._run(model))

    def before_pass(self, pass_, model):
        if self._input_outputs is None:
            self._input_outputs = self._run(model)
        self._before = None if pass_.lossless or not self.feeds else io.copy_model(model)

    def after_pass(self, pass_, model, record):
        before, self._before = self._before, None
        if before is None or not record.modified or record.rolled_back:
            return
        outputs = self._run(model)
        record.attribution = {
            "own": fidelity(self._run(before), outputs),
            "cumulative": fidelity(self._input_outputs, outputs),
            "layers": layer_errors(before, model, self.feeds),
        }
