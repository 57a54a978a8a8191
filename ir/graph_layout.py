"""A layered (Sugiyama-style) layout of a directed acyclic graph, top to bottom, in pure Python.

Why this engine and not another (the HTML pages in ``ir.diff_html`` draw with it):

- Graphviz ``dot`` gives prettier edge routing, but it is a system package the tool would need at run
  time (and CI), it takes seconds to tens of seconds on a 2,000-node DenseNet whose dense blocks have
  hundreds of long edges (each long edge becomes a chain of virtual nodes), and the diff page must draw
  two graphs at *the same coordinates* so that matched nodes line up; feeding dot the union graph and
  pinning nodes is awkward.
- A vendored JavaScript library (dagre, ELK) puts 100-400 kB of third-party code into every page and
  lays out in the browser on every load; the page is then only as testable as a browser.
- A small layered layout here is deterministic, needs nothing installed, lays out 2,000 nodes in well
  under a second, and lays out the *union* of the two graphs of a diff once, so both panels share
  coordinates. What it gives up: edges are drawn as straight curves that may pass behind nodes (no
  virtual nodes for long edges), which is acceptable for reading a network from top to bottom.

Rules:
1. Ranks: longest path from the sources (in topological order), then every node that is not a sink is
   pulled down to just above its nearest successor, so side branches (shape computations, skip
   inputs) sit next to where they are used instead of at the top.
2. Order and x within a rank: nodes start in topological order; a few sweeps down (each node wants the
   mean x of its predecessors) and up (of its successors) place every rank greedily from left to right
   at its wanted x, no closer than one slot, and then centre the rank on what its nodes wanted.
3. y is the rank times the rank height. The result is integer pixel coordinates of node centres.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Hashable, Sequence

SWEEPS = 4


@dataclasses.dataclass
class Layout:
    x: dict[Hashable, int]
    y: dict[Hashable, int]
    width: int
    height: int
    ranks: int


def layered_layout(
    nodes: Sequence[Hashable],
    edges: Sequence[tuple[Hashable, Hashable]],
    *,
    slot: int = 150,
    rank_height: int = 64,
    margin: int = 80,
) -> Layout:
    """``nodes`` in topological order; ``edges`` (source, target) between them (others are ignored)."""
    known = set(nodes)
    preds: dict[Hashable, list[Hashable]] = defaultdict(list)
    succs: dict[Hashable, list[Hashable]] = defaultdict(list)
    for source, target in dict.fromkeys(edges):
        if source in known and target in known and source != target:
            preds[target].append(source)
            succs[source].append(target)
    rank = _ranks(nodes, preds, succs)
    rows: dict[int, list[Hashable]] = defaultdict(list)
    for node in nodes:
        rows[rank[node]].append(node)
    x: dict[Hashable, float] = {}
    for row in rows.values():
        for i, node in enumerate(row):
            x[node] = float(i * slot)
    ordered_ranks = sorted(rows)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        neighbours = preds if downward else succs
        for r in ordered_ranks if downward else reversed(ordered_ranks):
            _place_row(rows[r], x, neighbours, slot)
    left = min(x.values(), default=0.0)
    xs = {node: int(round(value - left)) + margin for node, value in x.items()}
    ys = {node: rank[node] * rank_height + margin // 2 for node in nodes}
    width = max(xs.values(), default=0) + margin
    height = (max(rank.values(), default=0) + 1) * rank_height + margin // 2
    return Layout(xs, ys, width, height, len(rows))


def _ranks(nodes, preds, succs) -> dict[Hashable, int]:
    rank: dict[Hashable, int] = {}
    for node in nodes:
        rank[node] = max((rank[p] + 1 for p in preds[node] if p in rank), default=0)
    for node in reversed(nodes):
        if succs[node]:
            rank[node] = max(rank[node], min(rank[s] for s in succs[node]) - 1)
    return rank


def _place_row(row: list[Hashable], x: dict[Hashable, float], neighbours, slot: int) -> None:
    wanted = {}
    for node in row:
        around = [x[n] for n in neighbours[node] if n in x]
        wanted[node] = sum(around) / len(around) if around else x[node]
    row.sort(key=lambda node: (wanted[node], x[node]))
    placed: list[float] = []
    for node in row:
        position = wanted[node] if not placed else max(wanted[node], placed[-1] + slot)
        placed.append(position)
    # Greedy placement only pushes right; shift the row back so it sits on what its nodes wanted.
    shift = sum(wanted[node] - p for node, p in zip(row, placed)) / len(row) if row else 0.0
    for node, position in zip(row, placed):
        x[node] = position + shift
