"""eliminate-dead: remove nodes whose outputs nothing uses, and unused initializers and functions.

Rules:
- A node is dead when none of its outputs is a graph output or an input of another node (in the same
  graph or a subgraph that captures it). Dead nodes are removed in reverse topological order, so chains
  of dead nodes go in one run. Subgraphs are visited.
- An initializer that no node uses and that is not a graph input or output is removed.
- Model-local functions that no node calls are removed, and opset imports nothing uses.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common

from passes.base import Pass, PassResult, register


@register
class EliminateDeadPass(Pass):
    name = "eliminate-dead"

    def call(self, model: ir.Model) -> PassResult:
        nodes_before = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
        initializers_before = len(model.graph.initializers)
        functions_before = len(model.functions)
        # onnx_ir's passes do the graph walking; they also drop unused initializers.
        common.RemoveUnusedNodesPass()(model)
        common.RemoveUnusedFunctionsPass()(model)
        common.RemoveUnusedOpsetsPass()(model)
        removed_nodes = nodes_before - sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
        removed_initializers = initializers_before - len(model.graph.initializers)
        removed_functions = functions_before - len(model.functions)
        self.stats["nodes removed"] += removed_nodes
        self.stats["initializers removed"] += removed_initializers
        self.stats["functions removed"] += removed_functions
        return PassResult(model, modified=bool(removed_nodes or removed_initializers or removed_functions))
