"""Layers of ``a`` that ``b`` computes as a chain of smaller layers (low-rank factorization).

``factorized_layers(a, b)``, for ``diff``. Rules:
- A Conv, Gemm or MatMul of ``a`` is *factorized* when the value of its output's name is produced
  in ``b`` by a chain of at least two Conv/Gemm/MatMul nodes, each (but the first) fed only by the
  one before, whose intermediate values are all new (no value of ``a`` has their names), and whose
  first node reads the value of the same name as the original layer's data input. Value names,
  not node matching: ``decompose`` and ``separable`` keep the layer's input and output names.
- Each layer is shown as ``op kernel C->N`` (``group G`` or ``depthwise`` when grouped), the chain
  as the list of its layers, with MACs before and after (``ir.cost``, unknown counted as 0).
- The method comes from the chain's node names when they all read ``<layer>/<method>_<i>`` (how
  ``decompose`` names them), else from the structure: two layers, the first with the kernel and the
  second 1x1 is ``svd``; ``kh x 1`` then ``1 x kw`` is ``spatial-svd``; depthwise then 1x1 is
  ``separable dw-pw``; 1x1 then grouped is ``separable pw-dw``; 1x1, kernel, 1x1 is ``tucker``; 1x1,
  two depthwise, 1x1 is ``cp``; anything else ``chain``. ``method_from`` says which ("names" or
  "structure").
"""

from __future__ import annotations

import dataclasses
import re

import onnx_ir as ir

from ir import cost as ir_cost

LINEAR_OPS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass
class FactorizedLayer:
    layer: str  # the original node's name (its output's name when unnamed)
    before: str  # e.g. "Conv 3x3 64->64"
    after: list[str]  # one entry per layer of the chain
    method: str
    method_from: str  # "names" or "structure"
    macs_before: int
    macs_after: int
    nodes: list[str] = dataclasses.field(default_factory=list)  # the chain's node names in b

    @property
    def text(self) -> str:
        return f"{self.layer}: {self.before} -> {', '.join(self.after)} ({self.method})"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "text": self.text}


def factorized_layers(a: ir.Model, b: ir.Model) -> list[FactorizedLayer]:
    macs_a, macs_b = _macs(a), _macs(b)
    names_a = {v.name for node in a.graph for v in (*node.inputs, *node.outputs) if v is not None and v.name}
    names_a |= {v.name for v in a.graph.inputs}
    produced_b = {v.name: node for node in b.graph for v in node.outputs if v.name}
    found = []
    for node in a.graph:
        if (node.op_type not in LINEAR_OPS or node.domain not in ("", "ai.onnx") or not node.outputs
                or not node.inputs or node.inputs[0] is None):
            continue
        chain = _chain(node, produced_b, names_a)
        if chain is None:
            continue
        label = node.name or node.outputs[0].name
        method, source = _method(label, chain)
        found.append(FactorizedLayer(
            layer=label, before=describe(node), after=[describe(n) for n in chain], method=method, method_from=source,
            macs_before=macs_a.get(node, 0), macs_after=sum(macs_b.get(n, 0) for n in chain), nodes=[n.name or "" for n in chain]))
    return found


def _chain(node: ir.Node, produced_b: dict[str, ir.Node], names_a: set[str]) -> list[ir.Node] | None:
    last = produced_b.get(node.outputs[0].name)
    source = node.inputs[0].name
    chain = []
    current = last
    while current is not None and current.op_type in LINEAR_OPS and current.inputs and current.inputs[0] is not None:
        chain.append(current)
        feed = current.inputs[0]
        if feed.name == source:
            return chain[::-1] if len(chain) >= 2 else None
        if feed.name in names_a or len(feed.uses()) != 1:
            return None
        current = feed.producer()
    return None


def describe(node: ir.Node) -> str:
    """``Conv 3x3 64->64``, ``Conv 3x3 64->64 depthwise``, ``Gemm 512->10``."""
    dims = ir_cost.static_dims(node.inputs[1]) if len(node.inputs) > 1 else None
    if dims is None or len(dims) < 2:
        return node.op_type
    if node.op_type == "Conv":
        group = node.attributes.get_int("group", 1)
        channels_in, channels_out = dims[1] * group, dims[0]
        text = f"Conv {'x'.join(map(str, dims[2:]))} {channels_in}->{channels_out}"
        if group > 1:
            text += " depthwise" if group == channels_in and dims[1] == 1 else f" group {group}"
        return text
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        return f"Gemm {dims[1]}->{dims[0]}"
    return f"{node.op_type} {dims[0]}->{dims[1]}"


def _method(label: str, chain: list[ir.Node]) -> tuple[str, str]:
    pattern = re.compile(re.escape(label) + r"/([a-z][a-z-]*)_\d+$")
    named = {m.group(1) if (m := pattern.match(n.name or "")) else None for n in chain}
    if len(named) == 1 and None not in named:
        return named.pop(), "names"
    return _method_by_structure(chain), "structure"


def _method_by_structure(chain: list[ir.Node]) -> str:
    if any(n.op_type != "Conv" for n in chain):
        return "svd" if len(chain) == 2 else "chain"
    shapes = [ir_cost.static_dims(n.inputs[1]) for n in chain]
    if any(s is None for s in shapes):
        return "chain"
    kernels = [tuple(s[2:]) for s in shapes]
    groups = [n.attributes.get_int("group", 1) for n in chain]
    pointwise = [all(k == 1 for k in kernel) for kernel in kernels]
    depthwise = [g > 1 and s[1] == 1 for g, s in zip(groups, shapes)]
    if len(chain) == 2:
        if groups == [1, 1] and not pointwise[0] and pointwise[1]:
            return "svd"
        if groups == [1, 1] and len(kernels[0]) == 2 and not pointwise[0] and kernels[0][1] == 1 and kernels[1][0] == 1:
            return "spatial-svd"
        if depthwise[0] and pointwise[1]:
            return "separable dw-pw"
        if pointwise[0] and groups[1] > 1:
            return "separable pw-dw"
    if len(chain) == 3 and pointwise[0] and pointwise[2] and groups == [1, 1, 1]:
        return "tucker"
    if len(chain) == 4 and pointwise[0] and pointwise[3] and depthwise[1] and depthwise[2]:
        return "cp"
    return "chain"


def _macs(model: ir.Model) -> dict[ir.Node, int]:
    summary = ir_cost.analyze(model, infer_shapes=False)
    return {node: entry.macs or 0 for node, entry in zip(model.graph, summary.per_node)}
