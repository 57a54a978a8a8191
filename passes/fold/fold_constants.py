"""fold-constants: turn everything that does not depend on the model's inputs into initializers.

Rules, applied in this order:
1. Initializers listed as graph inputs (the IR < 4 convention, e.g. onnx's ``light_*`` models) are
   taken as constants and removed from the main graph's inputs; an IR version below 4 is raised to 4,
   which allows initializers that are not inputs. ``keep_initializer_inputs=true`` keeps them as
   inputs, and then they are not constants (a caller may feed other values).
2. Constant nodes (any of value, value_float(s), value_int(s), value_string(s)) become initializers
   of their graph, under their output's name. A Constant that is itself a graph output stays.
3. Shape inference runs (``ir.shapes.infer``) so that static shapes are known.
4. ``Shape(x)`` (with its start/end) and ``Size(x)`` of a value whose shape is fully static become
   int64 initializers, whatever x's contents.
5. Any other node of a standard domain whose inputs are all constants is evaluated, with
   ``onnx.reference.ReferenceEvaluator`` under the model's opset (ONNX Runtime on a one-node model
   when the reference evaluator fails or disagrees with the declared output type), and its outputs
   become initializers. Chains such as Shape->Gather->Concat->Reshape fold in one run because nodes
   are visited in topological order; steps 3-5 repeat while they find something new.
Never folded:
- random ops (RandomNormal, RandomUniform, their *Like forms, Multinomial, Bernoulli);
- nodes with graph attributes (If, Loop, Scan): their bodies may capture non-constant values;
- nodes of non-standard domains (noted: "unknown custom op left alone");
- a result larger than ``max_bytes`` (noted; e.g. a huge ConstantOfShape, Tile or Expand): it stays a
  node, computed at run time, instead of bloating the file;
- a result whose data type differs from the type the graph declares for it (noted).
Graph outputs keep their names: a folded graph output becomes an initializer of the same name.
Model-local functions are not folded (they cannot hold initializers).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from ir.shapes import infer as infer_shapes
from passes.base import Pass, PassResult, register
from passes.fold._rewrite import constant_array, describe, rewritable_graphs, standard_nodes, static_dims

RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Folding can make new shapes static (a Reshape whose shape became constant); a few rounds suffice.
MAX_ROUNDS = 4


@dataclasses.dataclass(frozen=True)
class FoldConstantsOptions:
    keep_initializer_inputs: bool = dataclasses.field(
        default=False, metadata={"doc": "keep initializers that are listed as graph inputs as overridable inputs"}
    )
    max_bytes: int = dataclasses.field(
        default=DEFAULT_MAX_BYTES,
        metadata={"check": lambda v: v >= 0, "rule": "a non-negative integer", "doc": "largest folded result kept, in bytes"},
    )


@register
class FoldConstantsPass(Pass):
    name = "fold-constants"
    Options = FoldConstantsOptions

    def call(self, model: ir.Model) -> PassResult:
        modified = False
        if not self.options.keep_initializer_inputs:
            modified |= self._remove_initializer_inputs(model)
        modified |= self._lift_constant_nodes(model)
        for _ in range(MAX_ROUNDS):
            infer_shapes(model)
            if not self._fold_nodes(model):
                break
            modified = True
        return PassResult(model, modified=modified)

    # Rule 1 -------------------------------------------------------------------------------------

    def _remove_initializer_inputs(self, model: ir.Model) -> bool:
        graph = model.graph
        kept = [value for value in graph.inputs if not value.is_initializer()]
        removed = len(graph.inputs) - len(kept)
        if not removed:
            return False
        graph.inputs.clear()
        graph.inputs.extend(kept)
        self.stats["initializer inputs removed"] += removed
        self.note(f"{removed} initializer(s) listed as graph inputs are now constants (keep_initializer_inputs=true keeps them)")
        if model.ir_version < 4:
            self.note(f"IR version raised from {model.ir_version} to 4 (initializers that are not inputs need it)")
            model.ir_version = 4
        return True

    # Rule 2 -------------------------------------------------------------------------------------

    def _lift_constant_nodes(self, model: ir.Model) -> bool:
        lifted = 0
        for graph in rewritable_graphs(model):
            for node in list(graph):
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and self._lift(graph, node):
                    lifted += 1
        self.stats["constants lifted"] += lifted
        return lifted > 0

    def _lift(self, graph: ir.Graph, node: ir.Node) -> bool:
        output = node.outputs[0]
        if output.is_graph_output() or output.name in graph.initializers:
            return False
        try:
            tensor = ir.convenience.get_const_tensor(output)
        except ValueError as exc:  # sparse_value, or several attributes
            self.note(f"{describe(node)}: not lifted ({exc})")
            return False
        if tensor is None:  # a reference attribute (inside a function)
            return False
        _replace_by_initializer(graph, node, [tensor])
        return True

    # Rules 3-5 ----------------------------------------------------------------------------------

    def _fold_nodes(self, model: ir.Model) -> int:
        folded = 0
        for graph, node in standard_nodes(rewritable_graphs(model), self.note):
            tensors = self._fold_node(node, model.opset_imports)
            if tensors is not None:
                _replace_by_initializer(graph, node, tensors)
                folded += 1
        return folded

    def _fold_node(self, node: ir.Node, opsets: dict[str, int]) -> list[ir.TensorProtocol] | None:
        """The node's output tensors when it can be folded, else None."""
        if node.op_type in RANDOM_OPS or node.op_type == "Constant" or _has_graph_attribute(node):
            return None
        if node.op_type in ("Shape", "Size"):
            array = _shape_only_result(node)
            if array is not None:
                self.stats["shapes folded"] += 1
                return [ir.tensor(array, name=node.outputs[0].name)]
        inputs = [constant_array(v) for v in node.inputs]
        present = [v for v in node.inputs if v is not None]
        if not present or any(v is not None and a is None for v, a in zip(node.inputs, inputs)):
            return None
        # Refuse before evaluating when shape inference knows the size; otherwise check afterwards.
        if self._too_large(node, _declared_bytes(node.outputs)):
            return None
        arrays = self._evaluate(node, inputs, opsets)
        if arrays is None or self._too_large(node, sum(a.nbytes for a in arrays)):
            return None
        try:
            tensors = [_tensor(a, out.name) for a, out in zip(arrays, node.outputs)]
        except Exception:  # e.g. an object array the IR cannot hold as a tensor
            self.note(f"{describe(node)}: result cannot be stored as an initializer; left alone")
            return None
        self.stats["nodes folded"] += 1
        return tensors

    def _too_large(self, node: ir.Node, nbytes: int | None) -> bool:
        if nbytes is None or nbytes <= self.options.max_bytes:
            return False
        self.stats["refused: over max_bytes"] += 1
        self.note(f"{describe(node)}: result of {nbytes} bytes exceeds max_bytes={self.options.max_bytes}, not folded")
        return True

    def _evaluate(self, node: ir.Node, inputs: list[np.ndarray | None], opsets: dict[str, int]) -> list[np.ndarray] | None:
        node_proto = ir.serde.serialize_node(node)
        feeds = {value.name: array for value, array in zip(node.inputs, inputs) if value is not None}
        declared = [out.dtype for out in node.outputs]
        for evaluate in (_evaluate_reference, _evaluate_onnxruntime):
            try:
                arrays = evaluate(node_proto, feeds, opsets, node.outputs)
            except Exception:  # either evaluator may lack the op or reject the inputs
                continue
            if _types_match(arrays, declared):
                return arrays
        self.note(f"{describe(node)}: constant inputs, but could not be evaluated with the declared output type; left alone")
        return None


def _tensor(array: np.ndarray, name: str) -> ir.TensorProtocol:
    """An initializer's tensor; strings (numpy bytes, str or object arrays of them) as a string tensor."""
    if array.dtype.kind in "SU" or (array.dtype.kind == "O" and all(isinstance(v, (bytes, str)) for v in array.flat)):
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in array.flat]
        return ir.StringTensor(np.array(items, dtype=object).reshape(array.shape), name=name)
    return ir.tensor(array, name=name)


def _has_graph_attribute(node: ir.Node) -> bool:
    return any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values())


def _shape_only_result(node: ir.Node) -> np.ndarray | None:
    """Shape/Size of a value with a fully static shape, computed from the shape alone."""
    dims = static_dims(node.inputs[0])
    if dims is None:
        return None
    if node.op_type == "Size":
        return np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    # Shape's start/end clamp exactly like Python slicing.
    return np.array(dims[start:end], dtype=np.int64)


def _declared_bytes(outputs) -> int | None:
    """The outputs' size as declared by shape inference, when every output's is static."""
    total = 0
    for out in outputs:
        dims = static_dims(out)
        if dims is None or out.dtype is None or out.dtype == ir.DataType.STRING:
            return None
        total += int(np.prod(dims, dtype=np.int64) * out.dtype.itemsize)
    return total


def _types_match(arrays: list[np.ndarray], declared: list[ir.DataType | None]) -> bool:
    for array, dtype in zip(arrays, declared):
        if not isinstance(array, np.ndarray):
            return False  # a sequence or map: not a tensor initializer
        if dtype is not None and dtype != ir.DataType.STRING and array.dtype != dtype.numpy():
            return False
    return True


def _evaluate_reference(node_proto: onnx.NodeProto, feeds, opsets, outputs) -> list[np.ndarray]:
    # A one-node model, not the bare node: given a NodeProto, the evaluator runs the newest version of
    # the op whatever ``opsets`` says (Squeeze-13 for an opset-11 Squeeze, which ignores its axes).
    evaluator = ReferenceEvaluator(_one_node_model(node_proto, feeds, opsets, outputs))
    results = dict(zip(evaluator.output_names, evaluator.run(None, feeds)))
    # An output left unnamed is not computed; a placeholder keeps the positions (it is never stored).
    return [_as_array(results[out.name]) if out.name else np.zeros(0, np.float32) for out in outputs]


def _as_array(result):
    return np.asarray(result) if np.isscalar(result) else result


def _evaluate_onnxruntime(node_proto: onnx.NodeProto, feeds, opsets, outputs) -> list[np.ndarray]:
    from ir import runtime

    # ONNX Runtime misreads fixed-width numpy bytes ('S'): strings go in as an object array of str.
    feeds = {name: a.astype(str).astype(object) if a.dtype.kind == "S" else a for name, a in feeds.items()}
    results = runtime.run(_one_node_model(node_proto, feeds, opsets, outputs), feeds)
    return [results[out.name] for out in outputs]


def _one_node_model(node_proto: onnx.NodeProto, feeds, opsets, outputs) -> onnx.ModelProto:
    """The node alone in a model of the given opsets: its inputs are the feeds, its named outputs the outputs."""
    graph = onnx.helper.make_graph(
        [node_proto],
        "fold",
        [onnx.helper.make_tensor_value_info(name, _element_type(a), a.shape) for name, a in feeds.items()],
        [onnx.helper.make_empty_tensor_value_info(out.name) for out in outputs if out.name],
    )
    opset_list = [onnx.helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    return onnx.helper.make_model(graph, opset_imports=opset_list, ir_version=onnx.IR_VERSION)


def _element_type(array: np.ndarray) -> int:
    # Constant string tensors read back as numpy bytes arrays ('S'), which ONNX's helper cannot map.
    return onnx.TensorProto.STRING if array.dtype.kind in "SUO" else onnx.helper.np_dtype_to_tensor_dtype(array.dtype)


def _replace_by_initializer(graph: ir.Graph, node: ir.Node, tensors: list[ir.TensorProtocol]) -> None:
    """Replace each output of the node by an initializer of the same name, then drop the node."""
    for output, tensor in zip(node.outputs, tensors):
        if not output.name:
            continue
        initializer = ir.Value(
            name=output.name,
            type=ir.TensorType(tensor.dtype),
            shape=ir.Shape(tensor.shape),
            const_value=tensor,
        )
        initializer.meta.update(output.meta)
        graph.register_initializer(initializer)
        output.replace_all_uses_with(initializer, replace_graph_outputs=True)
    graph.remove(node, safe=True)
