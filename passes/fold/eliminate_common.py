"""eliminate-common: compute each value once; store each constant tensor once.

Rules, applied in every graph (main graph, subgraphs, model-local functions) separately:

- Duplicate initializers (same dtype, shape and bytes) become one; the first keeps its name. An
  initializer that is a graph input (callers may override it) or a graph output is left alone.
- Common subexpressions: two nodes with the same op, domain, overload, attributes and the very same
  input values (in order) compute the same outputs; the later one goes and its consumers read the
  first one's outputs. ``Constant`` nodes compare by the tensor they hold, whatever its size, so
  duplicate weights held in Constant nodes (as in PP-OCR models) are shared too. Nodes are visited in
  topological order, so a whole duplicated chain collapses in one run.
- Never merged: random ops (RandomNormal, RandomUniform, their -Like forms, Multinomial, Bernoulli)
  and Dropout, which draw new numbers on every call; nodes with subgraph attributes (If, Loop, Scan);
  nodes of non-standard domains (custom ops may be stateful; they are noted and left alone).
- A duplicate whose output is a graph output stays unless the value replacing it can take the graph
  output's name (it is not itself a graph input, output or initializer), so output names are stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

import onnx_ir as ir

from passes.base import Pass, PassResult, all_graphs, register
from passes.fold._rewrite import GraphLike, can_replace_values, replace_value, standard_nodes

_NON_DETERMINISTIC = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"}
)


@register
class EliminateCommonPass(Pass):
    name = "eliminate-common"

    def call(self, model: ir.Model) -> PassResult:
        modified = False
        for graph in list(all_graphs(model)):
            if isinstance(graph, ir.Graph):
                modified |= self._share_initializers(graph)
            modified |= self._eliminate_subexpressions(graph)
        return PassResult(model, modified=modified)

    def _share_initializers(self, graph: ir.Graph) -> bool:
        kept: dict[Hashable, ir.Value] = {}
        modified = False
        for value in list(graph.initializers.values()):
            tensor = value.const_value
            if tensor is None or value.is_graph_input() or value.is_graph_output():
                continue
            key = _tensor_key(tensor)
            original = kept.get(key)
            if original is None or not _same_tensor(original.const_value, tensor):
                kept.setdefault(key, value)
                continue
            ir.convenience.replace_all_uses_with(value, original)
            graph.initializers.pop(value.name)
            self.stats["initializers shared"] += 1
            modified = True
        return modified

    def _eliminate_subexpressions(self, graph: GraphLike) -> bool:
        kept: dict[Hashable, ir.Node] = {}
        modified = False
        for _, node in standard_nodes([graph], self.note):
            key = _node_key(node)
            if key is None:
                continue
            original = kept.get(key)
            if original is None or not _same_constant(original, node):
                kept.setdefault(key, node)
                continue
            if not can_replace_values(graph, node.outputs, original.outputs):
                continue
            for duplicate, replacement in zip(node.outputs, original.outputs):
                replace_value(graph, duplicate, replacement)
            graph.remove(node, safe=True)
            self.stats["Constant nodes shared" if node.op_type == "Constant" else "common nodes removed"] += 1
            modified = True
        return modified


def _node_key(node: ir.Node) -> Hashable | None:
    """What makes two nodes compute the same thing; None for nodes never merged."""
    if node.op_type in _NON_DETERMINISTIC or not node.outputs:
        return None
    attributes = []
    for name, attr in sorted(node.attributes.items()):
        value = _attribute_key(attr)
        if value is None:
            return None
        attributes.append((name, value))
    inputs = tuple(id(value) if value is not None else None for value in node.inputs)
    return (node.domain, node.op_type, node.overload, node.version, len(node.outputs), inputs, tuple(attributes))


def _attribute_key(attr: ir.Attr) -> Hashable | None:
    if attr.is_ref():
        return ("ref", attr.ref_attr_name)
    kind = attr.type
    if kind in (ir.AttributeType.INT, ir.AttributeType.FLOAT, ir.AttributeType.STRING):
        return (kind, attr.value)
    if kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return (kind, tuple(attr.value))
    if kind == ir.AttributeType.TENSOR:
        return (kind, _tensor_key(attr.value))
    # Graphs, sparse tensors, type protos, tensor lists: too rare to be worth comparing.
    return None


def _tensor_key(tensor: ir.TensorProtocol) -> Hashable:
    """Dtype, shape and a digest of the data: equal tensors have equal keys (the converse is checked)."""
    return (tensor.dtype, tuple(tensor.shape.numpy()), hashlib.sha256(_tensor_bytes(tensor)).digest())


def _tensor_bytes(tensor: ir.TensorProtocol) -> bytes:
    if tensor.dtype == ir.DataType.STRING:
        # Length-prefixed, so that no two different string lists give the same bytes.
        return b"".join(len(item).to_bytes(8, "little") + item for item in tensor.string_data())
    return tensor.tobytes()


def _same_tensor(a: ir.TensorProtocol | None, b: ir.TensorProtocol) -> bool:
    return a is not None and _tensor_bytes(a) == _tensor_bytes(b)


def _same_constant(original: ir.Node, node: ir.Node) -> bool:
    """Digests matched; for tensor attributes, confirm the bytes really are equal."""
    for name, attr in node.attributes.items():
        if attr.type == ir.AttributeType.TENSOR and not attr.is_ref():
            if not _same_tensor(original.attributes[name].value, attr.value):
                return False
    return True

