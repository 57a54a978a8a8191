"""prune-layers: remove whole residual blocks (``y = x + f(x)`` becomes ``y = x``) that contribute least.

Rules:
- Candidates are the residual blocks of ``passes.prune.blocks`` (identity skip, self-contained
  branch); every other Add is left alone and counted by reason. ``protect`` (``|``-separated fnmatch
  patterns on node or output names) keeps a block whose Add or branch nodes match.
- Contribution, measured on the first ``calib`` calibration feeds with the original model:
  ``criterion=ratio`` is ||f(x)|| / ||x|| at the block (one run); ``criterion=output`` is the relative
  error of the model's outputs with only that block removed, ||y' - y|| / ||y|| (one run per block).
- Exactly one budget: ``blocks`` (how many to remove) or ``macs`` (remove the least contributing
  blocks until their branches hold at least this fraction of the model's MACs). Blocks are taken in
  increasing contribution; a block nested in one already removed is skipped.
- Removal rewires every reader of the Add's output to ``x``; the branch becomes unused and is deleted.
The pass is lossy. ``self.layers`` has a row per removed block (its Add's label, the branch's
parameters and MACs, ``contribution``, ``nodes`` and ``why``: its rank), ``self.skipped`` every
candidate kept, with its contribution and rank; held-back feeds (``holdout``) measure the output
error as for ``prune``.

Intent (``passes.intent``): the original in which each removed block's Add adds zero instead of its
branch: ``x + 0``. The intent finds the branch input on its own (the Add input that has the other
one among its ancestors), not from ``passes.prune.blocks``; the branch stays in the graph, unused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Literal

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from ir import channel_groups, io, runtime, shapes
from ir import cost as ir_cost
from ir.errors import InvalidModelError, UsageError
from ir.fidelity import describe, measure as measure_fidelity
from passes.base import Pass, PassResult, layer_costs, register
from passes.prune.blocks import Block, find_blocks
from passes.reconstruct import capture_values


@dataclasses.dataclass(frozen=True)
class PruneLayersOptions:
    blocks: int = dataclasses.field(default=0, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "number of residual blocks to remove"})
    macs: float = dataclasses.field(default=0.0, metadata={"check": lambda v: 0.0 <= v < 1.0, "rule": "in [0, 1)", "doc": "fraction of MACs to remove with whole blocks"})
    criterion: Literal["ratio", "output"] = dataclasses.field(default="ratio", metadata={"doc": "contribution: ||f(x)||/||x|| at the block, or the model's output error without it"})
    protect: str = dataclasses.field(default="", metadata={"doc": "|-separated name patterns of blocks to keep"})
    calib: int = dataclasses.field(default=8, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "calibration feeds measuring contributions"})
    holdout: int = dataclasses.field(default=4, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "further calibration feeds to measure the error on"})


@register
class PruneLayersPass(Pass):
    name = "prune-layers"
    Options = PruneLayersOptions
    lossless = False

    def __init__(self, **options):
        super().__init__(**options)
        if (self.options.blocks > 0) == (self.options.macs > 0):
            raise UsageError("pass 'prune-layers': give exactly one of blocks (a count) or macs (a fraction in (0, 1))")

    def intent(self, original: ir.Model):
        from passes.intent import Intent, set_constant

        nodes = list(original.graph)
        for position, dtype in self._removed:
            add = nodes[position]
            branch = next((i for i in (0, 1) if _is_ancestor(add.inputs[1 - i], add.inputs[i])), None)
            if branch is None:
                raise InvalidModelError(f"intent: neither input of the removed block's Add {channel_groups.node_label(add)} is an ancestor of the other")
            set_constant(add, branch, np.zeros((), dtype))
        return Intent(original, "original with each removed block's Add adding zero instead of its branch")

    def call(self, model: ir.Model) -> PassResult:
        self._removed: list[tuple[int, np.dtype]] = []  # (Add position, its element type)
        positions = {node: i for i, node in enumerate(model.graph)}
        blocks, rejected = find_blocks(model)
        for reason in rejected.values():
            self.stats[f"not a block: {reason.split(chr(39))[0].strip()}"] += 1
        blocks = self._unprotected(blocks)
        self.stats["blocks found"] = len(blocks)
        if not blocks:
            self.note("no removable residual block (y = x + f(x) with an identity skip)")
            return PassResult(model, modified=False)
        feeds, holdout = self._feeds(model)
        original = io.copy_model(model) if holdout else None
        scores = self._contributions(model, blocks, feeds)
        chosen = self._choose(model, blocks, scores)
        for block in chosen:
            dtype = block.add.outputs[0].dtype or block.skip.dtype  # known: find_blocks inferred shapes
            self._removed.append((positions[block.add], dtype.numpy() if dtype is not None else np.float32))
            block.add.outputs[0].replace_all_uses_with(block.skip)
        common.RemoveUnusedNodesPass()(model)
        channel_groups.invalidate(model)
        shapes.infer(model)
        self.stats["blocks removed"] = len(chosen)
        self.stats["macs removed"] = sum(b.macs for b in chosen)
        if holdout:
            self.fidelity = measure_fidelity(original, model, holdout)
            self.note("output error on held-back feeds: " + describe(self.fidelity))
        return PassResult(model, modified=bool(chosen))

    # -- steps -----------------------------------------------------------------------------------
    def _unprotected(self, blocks: list[Block]) -> list[Block]:
        patterns = [p for p in self.options.protect.split("|") if p]
        kept = []
        for block in blocks:
            names = [n for node in (block.add, *block.nodes) for n in (node.name, *(v.name for v in node.outputs)) if n]
            if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names):
                self.stats["blocks protected"] += 1
                self.skipped.append((block.label, "protected"))
            else:
                kept.append(block)
        return kept

    def _feeds(self, model):
        warning = "calibration data are generated random inputs: contributions do not reflect real data"
        feeds = self.calibration_feeds(model, self.options.calib + self.options.holdout, generated=8, warning=warning)
        if len(feeds) <= self.options.calib:
            return feeds, []
        return feeds[: self.options.calib], feeds[self.options.calib :]

    def _contributions(self, model: ir.Model, blocks: list[Block], feeds) -> list[float]:
        if self.options.criterion == "ratio":
            names = [v.name for b in blocks for v in (b.skip, b.branch_output)]
            branch = np.zeros(len(blocks))
            skip = np.zeros(len(blocks))
            for arrays in capture_values(model, names, feeds):
                for i, block in enumerate(blocks):
                    branch[i] += float(np.sum(np.square(arrays[block.branch_output.name], dtype=np.float64)))
                    skip[i] += float(np.sum(np.square(arrays[block.skip.name], dtype=np.float64)))
            return [float(v) for v in np.sqrt(branch / np.maximum(skip, 1e-30))]
        reference = [runtime.run(runtime.session(model), feed) for feed in feeds]
        scores = []
        for block in blocks:
            trial = io.copy_model(model)
            add = next(n for n in trial.graph if n.outputs[0].name == block.add.outputs[0].name)
            skip = add.inputs[list(block.add.inputs).index(block.skip)]
            add.outputs[0].replace_all_uses_with(skip)
            common.RemoveUnusedNodesPass()(trial)
            sess = runtime.session(trial)
            error = total = 0.0
            for feed, want in zip(feeds, reference):
                got = runtime.run(sess, feed)
                for name, ref in want.items():
                    error += float(np.sum((ref.astype(np.float64) - got[name]) ** 2))
                    total += float(np.sum(ref.astype(np.float64) ** 2))
            scores.append(float(np.sqrt(error / max(total, 1e-30))))
        return scores

    def _choose(self, model: ir.Model, blocks: list[Block], scores: list[float]) -> list[Block]:
        total_macs = ir_cost.analyze(model, infer_shapes=False).macs
        costs = layer_costs(model, infer_shapes=False)
        order = sorted(range(len(blocks)), key=lambda i: scores[i])
        chosen: list[Block] = []
        gone: set[ir.Node] = set()
        removed_macs = 0
        for rank, i in enumerate(order, start=1):
            block = blocks[i]
            why = f"contribution {scores[i]:.6g} ({self.options.criterion}) ranks {rank} of {len(blocks)}"
            done = len(chosen) >= self.options.blocks if self.options.blocks else removed_macs >= self.options.macs * total_macs
            if done or block.add in gone:
                self.skipped.append((block.label, f"{why}: {'inside a removed block' if block.add in gone else 'the budget was met'}"))
                continue
            chosen.append(block)
            gone.update(block.nodes)
            removed_macs += block.macs
            params = sum(costs.get(node, (0, 0))[0] for node in block.nodes)
            self.layers.append({"layer": block.label, "op": "residual block", "action": f"removed ({len(block.nodes)} nodes)",
                                "params_before": params, "params_after": 0, "macs_before": block.macs, "macs_after": 0,
                                "contribution": scores[i], "nodes": len(block.nodes), "why": why})
            self.note(f"removed block {block.label} ({len(block.nodes)} nodes, {block.macs / 1e6:.1f} M MACs): {why}")
        if self.options.blocks and len(chosen) < self.options.blocks:
            self.note(f"only {len(chosen)} of the {self.options.blocks} blocks asked for could be removed")
        if self.options.macs and removed_macs < self.options.macs * total_macs:
            self.note(f"all blocks together hold {removed_macs / max(total_macs, 1):.1%} of the MACs, less than asked")
        self.stats["macs before"], self.stats["macs after"] = total_macs, total_macs - removed_macs
        return chosen


def _is_ancestor(value: ir.Value, of: ir.Value) -> bool:
    """Whether ``value`` is computed before ``of`` on some path into it (walking back from ``of``)."""
    seen, stack = set(), [of]
    while stack:
        current = stack.pop()
        if current is value:
            return True
        producer = current.producer()
        if producer is None or producer in seen:
            continue
        seen.add(producer)
        stack.extend(v for v in producer.inputs if v is not None)
    return False
