"""Finding residual blocks ``y = x + f(x)`` that can be replaced by ``y = x``.

An ``Add`` with two activation inputs is a *residual block* when one input (the skip ``x``) is an
ancestor of the other (the branch output ``f(x)``) and the branch is self-contained:
- walking back from ``f(x)``, every non-constant input is ``x`` or produced inside the branch (a
  branch that reads a graph input or another activation is not a function of ``x`` alone);
- no branch value is read outside the branch or is a graph output (removing it would break them);
- ``x`` and ``f(x)`` have the same static shape (no broadcasting: ``x`` alone has the Add's shape);
- the Add's output is not a graph output (it is rewired, not renamed).
A downsampling shortcut (``conv(x) + f(x)``) is therefore not a block: neither input is an ancestor
of the other. Each rejected Add gets a reason. Branch nodes may contain other blocks (nesting).
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from ir import cost as ir_cost
from ir.channel_groups import node_label, static_shape

MAX_BRANCH_NODES = 500  # a longer walk back reached far beyond any block: not a residual branch


@dataclasses.dataclass
class Block:
    add: ir.Node
    skip: ir.Value  # x
    branch_output: ir.Value  # f(x)
    nodes: list[ir.Node]  # the branch, in graph order (constant producers excluded)
    macs: int = 0

    @property
    def label(self) -> str:
        return node_label(self.add)


def find_blocks(model: ir.Model) -> tuple[list[Block], dict[str, str]]:
    """Residual blocks of the main graph (in graph order), and a reason for every Add that is not one.
    Shapes are inferred first."""
    summary = ir_cost.analyze(model)  # infers shapes first
    graph = model.graph
    constants = ir_cost.constant_values(graph)
    macs = {node: cost.macs or 0 for node, cost in zip(graph, summary.per_node)}
    order = {node: index for index, node in enumerate(graph)}
    outputs = set(graph.outputs)
    blocks, rejected = [], {}
    for add in graph:
        if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
            continue
        a, b = add.inputs
        if a is None or b is None or a in constants or b in constants:
            continue
        found, reasons = None, []
        for skip, branch in ((a, b), (b, a)):
            nodes, reason = _branch(skip, branch, add, constants, outputs)
            if nodes is not None:
                found = Block(add, skip, branch, sorted(nodes, key=order.__getitem__), sum(macs.get(n, 0) for n in nodes))
                break
            reasons.append(reason)
        if found is None:
            rejected[node_label(add)] = reasons[0] if reasons[0] == reasons[1] else f"{reasons[0]}; {reasons[1]}"
        elif add.outputs[0] in outputs:
            rejected[node_label(add)] = "its output is a graph output"
        elif static_shape(found.skip) is None or static_shape(found.skip) != static_shape(add.outputs[0]):
            rejected[node_label(add)] = "the skip input is broadcast or has an unknown shape"
        else:
            blocks.append(found)
    return blocks, rejected


def _branch(skip: ir.Value, branch: ir.Value, add: ir.Node, constants, outputs) -> tuple[set[ir.Node] | None, str]:
    """The nodes computing ``branch`` from ``skip``, or None and why not."""
    nodes: set[ir.Node] = set()
    stack = [branch]
    reached_skip = False
    while stack:
        value = stack.pop()
        if value is skip:
            reached_skip = True
            continue
        if value in constants:
            continue
        producer = value.producer()
        if producer is None:
            # Walked past the skip input up to a graph input: the branch is not a function of it alone.
            return None, "neither input is computed from the other alone (e.g. a projection shortcut)"
        if producer in nodes:
            continue
        nodes.add(producer)
        if len(nodes) > MAX_BRANCH_NODES:
            return None, "no skip input found within the branch"
        stack.extend(v for v in producer.inputs if v is not None)
    if not reached_skip:
        return None, "neither input is computed from the other alone (e.g. a projection shortcut)"
    for node in nodes:
        for value in node.outputs:
            if value in outputs:
                return None, f"branch value '{value.name}' is a graph output"
            if any(user is not add and user not in nodes for user, _ in value.uses()):
                return None, f"branch value '{value.name}' is also read outside the branch"
    return nodes, ""
