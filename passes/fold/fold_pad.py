"""fold-pad: fold a Pad into the pads of the convolutions and pools that read it.

Rules: a ``Pad`` goes, and each of its consumers adds the Pad's spatial pads to its own ``pads``, when

- the Pad is in ``constant`` mode, its pads are constants (an input from opset 11, an attribute
  before; a constant ``axes`` input, opset 18, is expanded), none negative, and those of the batch
  and channel axes (the first two) are zero;
- its output is not a graph output and every use is the data input (input 0) of a consumer below,
  whose ``auto_pad`` is ``NOTSET``:
  - ``Conv`` when the pad value is 0;
  - ``AveragePool`` with ``count_include_pad=1`` and ``ceil_mode=0`` when the pad value is 0 (padding
    counted in the average is the same as explicit zeros);
  - ``MaxPool`` with ``ceil_mode=0`` and its ``Indices`` output unused when the pad value is -inf
    (a pool pads with -inf itself; any finite value could win the max).

``ceil_mode=1`` pools are left alone: where the last window may start differs between explicit and
implicit padding.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from passes.base import Pass, PassResult, all_graphs, is_standard_domain, register
from passes.fold._rewrite import (
    attribute_ints,
    GraphLike,
    constant_array,
    constant_ints,
    default_opset,
    input_at,
    normalize_axes,
    outputs_unused,
    rank_of,
    standard_nodes,
)


@register
class FoldPadPass(Pass):
    name = "fold-pad"

    def call(self, model: ir.Model) -> PassResult:
        opset = default_opset(model)
        modified = False
        for graph, node in standard_nodes(all_graphs(model), self.note):
            if node.op_type == "Pad" and self._fold(graph, node, opset):
                modified = True
        return PassResult(model, modified=modified)

    def _fold(self, graph: GraphLike, pad: ir.Node, opset: int) -> bool:
        spec = _pad_spec(pad, opset)
        if spec is None:
            return False
        pads, pad_value = spec
        output = pad.outputs[0]
        if output.is_graph_output() or not output.uses():
            return False
        rank = len(pads) // 2
        consumers = [use.node for use in output.uses()]
        if any(use.idx != 0 or not _accepts(use.node, pad_value, rank - 2) for use in output.uses()):
            return False
        spatial_begin, spatial_end = pads[2:rank], pads[rank + 2 :]
        for consumer in consumers:
            _add_pads(consumer, spatial_begin, spatial_end)
            consumer.replace_input_with(0, pad.inputs[0])
            self.stats[f"Pad folded into {consumer.op_type}"] += 1
        graph.remove(pad, safe=True)
        return True


def _pad_spec(pad: ir.Node, opset: int) -> tuple[list[int], float] | None:
    """(pads over every axis, pad value) of a foldable constant-mode Pad; None otherwise."""
    if pad.attributes.get_string("mode", "constant") != "constant" or opset < 2:
        return None
    if opset < 11:
        pads = attribute_ints(pad, "pads")
        pad_value = pad.attributes.get_float("value", 0.0)
    else:
        pads = _full_pads(pad)
        value_input = input_at(pad, 2)
        constant = constant_array(value_input)
        if value_input is not None and (constant is None or constant.size != 1):
            return None
        pad_value = float(constant.reshape(-1)[0]) if constant is not None else 0.0
    if pads is None or len(pads) % 2 or len(pads) < 6 or any(p < 0 for p in pads):
        return None
    rank = len(pads) // 2
    if pads[0] or pads[1] or pads[rank] or pads[rank + 1]:
        return None  # padding the batch or channel axis is not a convolution's padding
    return pads, pad_value


def _full_pads(pad: ir.Node) -> list[int] | None:
    """The pads input, expanded over every axis when an ``axes`` input picks some of them."""
    pads = constant_ints(input_at(pad, 1))
    axes_input = input_at(pad, 3)
    if pads is None or axes_input is None:
        return pads
    rank = rank_of(pad.inputs[0])
    axes = normalize_axes(constant_ints(axes_input) or [], rank)
    if rank is None or not axes or len(pads) != 2 * len(axes):
        return None
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
    return full


def _accepts(node: ir.Node, pad_value: float, spatial_rank: int) -> bool:
    if not is_standard_domain(node) or node.attributes.get_string("auto_pad", "NOTSET") != "NOTSET":
        return False
    pads = node.attributes.get_ints("pads")
    if pads is not None and len(pads) != 2 * spatial_rank:
        return False
    if node.op_type == "Conv":
        return pad_value == 0.0
    if node.op_type == "AveragePool":
        return (
            pad_value == 0.0
            and node.attributes.get_int("count_include_pad", 0) == 1
            and node.attributes.get_int("ceil_mode", 0) == 0
        )
    if node.op_type == "MaxPool":
        return (
            math.isinf(pad_value)
            and pad_value < 0
            and node.attributes.get_int("ceil_mode", 0) == 0
            and outputs_unused(node.outputs[1:])
        )
    return False


def _add_pads(node: ir.Node, begin: list[int], end: list[int]) -> None:
    spatial = len(begin)
    current = attribute_ints(node, "pads") or [0] * (2 * spatial)
    merged = [a + b for a, b in zip(current, [*begin, *end])]
    node.attributes["pads"] = ir.AttrInt64s("pads", merged)
