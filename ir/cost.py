"""Cost analysis: parameters, multiply-accumulates, other arithmetic, weight and activation memory.

``analyze(model)`` returns a ``CostSummary`` with one ``NodeCost`` per node of the main graph.

Definitions:
- A value is *constant* when it is an initializer (also one listed as a graph input) or the output of
  a standard-domain node whose inputs are all constant (``Constant``, ``ConstantOfShape`` of a constant
  shape, ``Cast`` of an initializer, ...; random ops and nodes with subgraphs never are). A node that
  computes a constant is a *constant node*: it costs nothing at inference time.
- The *weights* of a node are its constant inputs, except INT64 ones (shapes, axes and indices, not
  learned). ``params`` counts their elements and ``weight_bytes`` their size as the layers read them.
  ``stored_weight_bytes`` is what the file holds for them: the stored tensors (initializers, Constant
  nodes) the weights are computed from, so a weight decoded in the graph (int8 behind
  DequantizeLinear, cluster indices behind Gather) counts at its stored size. A node's own figures
  count every weight it reads; the model's totals count each weight value once even if it is shared,
  including weights read only inside subgraphs.
- ``macs`` are multiply-accumulates of the linear-algebra ops only: Conv / ConvInteger / QLinearConv
  (``N * M * prod(out spatial) * C/group * prod(kernel)``, so strides, dilations and pads enter through
  the output shape), ConvTranspose (``N * C_in * prod(in spatial) * M/group * prod(kernel)``), Gemm
  (``M * K * N``), MatMul / MatMulInteger / QLinearMatMul (``prod(output) * K``, which covers
  broadcast batch dimensions and 1-D operands), Einsum (product of all label sizes) and the recurrent
  ops RNN / GRU / LSTM (``seq * batch * (size(W) + size(R))``). These are the numbers quoted for
  networks ("ResNet-50: 4.1 GMACs").
- ``flops`` counts all other arithmetic, separately from ``macs``: one operation per output element
  for elementwise ops (the default for a standard-domain op), a small fixed number per element for
  normalizations and softmax (``PER_ELEMENT_FLOPS``), one per input element for reductions and global
  pooling, ``prod(kernel)`` per output element for windowed pooling, and one per output element for a
  bias added by Conv/Gemm. Data-movement ops (``DATA_MOVEMENT_OPS``) cost nothing.
- A node whose cost needs a shape that is not known statically, a custom-domain node, a call of a
  model-local function, a node with subgraphs (If/Loop/Scan) and a malformed node (missing operands,
  attributes of the wrong type: untrusted models have them) gets ``None`` for what cannot be
  computed; the totals add what is known and ``uncounted_nodes`` says how many nodes were left out.
- Activations are the non-initializer graph inputs and the outputs of non-constant main-graph nodes.
  ``activation_peak_bytes`` walks the main graph in its node order (or a topological order when that
  one is not: ONNX Runtime accepts out-of-order nodes, so models may have them): a value is allocated
  when it is produced and freed after its last reader (a node reading it from inside a subgraph counts
  as its top-level node); graph inputs live from the start and graph outputs to the end. Values of
  unknown size count as 0 bytes and are counted in ``unsized_activations``.
  ``activation_total_bytes`` is the sum of all activation sizes (no reuse).
- ``op_histogram`` counts every node, including those in subgraphs, keyed by ``op_type`` (or
  ``domain::op_type`` outside the standard domains); ``nodes`` is its total. Model-local function
  bodies are definitions and are not counted.

Shapes: ``analyze`` runs ``ir.shapes.infer`` on the model first (``infer_shapes=False`` skips it).
Inference only sets the shapes and types of main-graph values, nothing else of the model changes.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import Counter
from collections.abc import Iterable

import onnx_ir as ir

from ir import shapes as ir_shapes

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})

# Ops that produce a different value from the same inputs each run: never constant.
NONDETERMINISTIC_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)

# Ops that only move, copy or reinterpret data, or compute metadata: no arithmetic.
DATA_MOVEMENT_OPS = frozenset(
    {
        "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
        "Slice", "Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "Scatter",
        "Shape", "Size", "Constant", "ConstantOfShape", "Expand", "Tile", "Pad", "Cast", "CastLike",
        "DepthToSpace", "SpaceToDepth", "Dropout", "EyeLike", "Range", "NonZero", "Compress",
        "ReverseSequence", "Trilu", "OneHot", "Optional", "OptionalGetElement", "OptionalHasElement",
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
        "SequenceLength", "SplitToSequence", "ConcatFromSequence",
    }
)

# Arithmetic operations per output element for ops that are more than one elementwise operation.
PER_ELEMENT_FLOPS = {
    "BatchNormalization": 2,  # folded to one scale and one shift per element
    "InstanceNormalization": 4,  # mean, variance, normalize, affine
    "LayerNormalization": 4,
    "GroupNormalization": 4,
    "RMSNormalization": 3,
    "Softmax": 3,  # exp, sum, divide
    "LogSoftmax": 3,
    "Hardmax": 1,
}

REDUCTION_OPS = frozenset(
    {
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "GlobalAveragePool",
        "GlobalMaxPool", "GlobalLpPool",
    }
)
WINDOW_POOLING_OPS = frozenset({"MaxPool", "AveragePool", "LpPool", "MaxRoiPool"})

# Input positions of (data, weight) for the convolution family, and of (A, B) for matrix products.
CONV_OPERANDS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
MATMUL_OPERANDS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
RECURRENT_OPS = frozenset({"RNN", "GRU", "LSTM"})


@dataclasses.dataclass
class NodeCost:
    """The cost of one main-graph node. ``None`` means "not computable" (see the module docstring)."""

    name: str
    op_type: str
    params: int
    macs: int | None
    weight_bytes: int
    output_bytes: int | None
    flops: int | None = 0
    index: int = 0  # position in the main graph's node order (names may be empty or repeated)
    constant: bool = False  # computes a constant: folded away, costs nothing at inference

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CostSummary:
    """Totals over the model (see the module docstring), the op histogram and one entry per node."""

    nodes: int
    params: int
    macs: int
    weight_bytes: int
    activation_peak_bytes: int
    activation_total_bytes: int
    uncounted_nodes: int
    op_histogram: dict[str, int]
    per_node: list[NodeCost]
    flops: int = 0
    unsized_activations: int = 0
    stored_weight_bytes: int = 0

    def to_dict(self, *, per_node: bool = True) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "per_node"}
        data["op_histogram"] = dict(self.op_histogram)
        if per_node:
            data["per_node"] = [node.to_dict() for node in self.per_node]
        return data


def analyze(model: ir.Model, *, infer_shapes: bool = True) -> CostSummary:
    if infer_shapes:
        ir_shapes.infer(model)
    graph = model.graph
    constants = constant_values(graph)
    per_node = [_node_cost(node, index, constants) for index, node in enumerate(graph)]
    weights = _unique_weights(graph, constants)
    peak, total, unsized = _activation_memory(graph, constants)
    histogram = op_histogram(model)
    return CostSummary(
        nodes=sum(histogram.values()),
        params=sum(_elements(v) or 0 for v in weights),
        macs=sum(node.macs or 0 for node in per_node),
        weight_bytes=sum(_nbytes(v) or 0 for v in weights),
        activation_peak_bytes=peak,
        activation_total_bytes=total,
        uncounted_nodes=sum(1 for node in per_node if node.macs is None or node.flops is None),
        op_histogram=histogram,
        per_node=per_node,
        flops=sum(node.flops or 0 for node in per_node),
        unsized_activations=unsized,
        stored_weight_bytes=sum(_nbytes(v) or 0 for v in _stored_sources(weights)),
    )


def op_histogram(model: ir.Model) -> dict[str, int]:
    """Node counts per op over the main graph and its subgraphs, most frequent first."""
    counts = Counter(op_key(node) for node in ir.traversal.RecursiveGraphIterator(model.graph))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def op_key(node: ir.Node) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}::{node.op_type}"


# --- constants and weights -------------------------------------------------------------------------


def constant_values(graph: ir.Graph) -> set[ir.Value]:
    """Values of ``graph`` and its subgraphs computed purely from initializers and constant nodes."""
    constants = set(graph.initializers.values())
    for subgraph in graph.subgraphs():
        constants.update(subgraph.initializers.values())
    # Subgraph nodes may read the main graph's constants, so the main graph goes first.
    subgraph_nodes = (inner for subgraph in graph.subgraphs() for inner in subgraph)
    for node in [*execution_order(graph), *subgraph_nodes]:
        if _computes_constant(node, constants):
            constants.update(node.outputs)
    return constants


def _computes_constant(node: ir.Node, constants: set[ir.Value]) -> bool:
    if node.domain not in STANDARD_DOMAINS or node.op_type in NONDETERMINISTIC_OPS:
        return False
    if any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values()):
        return False
    return all(value is None or _is_constant(value, constants) for value in node.inputs)


def _is_constant(value: ir.Value, constants: set[ir.Value]) -> bool:
    return value in constants or value.const_value is not None


def _weight_inputs(node: ir.Node, constants: set[ir.Value]) -> list[ir.Value]:
    return [
        value
        for value in dict.fromkeys(v for v in node.inputs if v is not None)
        if _is_constant(value, constants) and value_dtype(value) != ir.DataType.INT64
    ]


def _unique_weights(graph: ir.Graph, constants: set[ir.Value]) -> list[ir.Value]:
    nodes = ir.traversal.RecursiveGraphIterator(graph)
    readers = (node for node in nodes if not _computes_constant(node, constants))
    return list(dict.fromkeys(value for node in readers for value in _weight_inputs(node, constants)))


def _stored_sources(weights: list[ir.Value]) -> list[ir.Value]:
    """The stored tensors the weights are computed from: walk back through constant nodes."""
    sources: dict[ir.Value, None] = {}
    seen: set[ir.Value] = set()
    stack = list(weights)
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        producer = value.producer()
        if value.const_value is not None or producer is None or producer.op_type == "Constant":
            sources[value] = None
        else:
            stack.extend(v for v in producer.inputs if v is not None)
    return list(sources)


# --- shapes and sizes ------------------------------------------------------------------------------


def static_dims(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's dimensions when all are known integers, else None (falls back to a constant's)."""
    if value is None:
        return None
    shape = value.shape
    if shape is not None and all(isinstance(d, int) and d >= 0 for d in shape):
        return tuple(int(d) for d in shape)
    tensor = constant_tensor(value)
    if tensor is not None:
        return tuple(int(d) for d in tensor.shape)
    return None


def constant_tensor(value: ir.Value) -> ir.TensorProtocol | None:
    """The tensor of an initializer or Constant-node output (not of computed constants), else None."""
    try:
        return ir.convenience.get_const_tensor(value)
    except ValueError:  # a malformed Constant node: treat as not constant-readable
        return None


def value_dtype(value: ir.Value) -> ir.DataType | None:
    if value.dtype is not None:
        return value.dtype
    tensor = constant_tensor(value)
    return tensor.dtype if tensor is not None else None


def _elements(value: ir.Value) -> int | None:
    dims = static_dims(value)
    return math.prod(dims) if dims is not None else None


def _nbytes(value: ir.Value) -> int | None:
    count, dtype = _elements(value), value_dtype(value)
    if count is None or dtype is None or dtype in (ir.DataType.UNDEFINED, ir.DataType.STRING):
        return None  # strings have no fixed size
    return (count * dtype.bitwidth + 7) // 8


def _sum_known(numbers: Iterable[int | None]) -> int | None:
    total = 0
    for number in numbers:
        if number is None:
            return None
        total += number
    return total


# --- per-node cost ---------------------------------------------------------------------------------


def _node_cost(node: ir.Node, index: int, constants: set[ir.Value]) -> NodeCost:
    constant = _computes_constant(node, constants)
    weights = [] if constant else _weight_inputs(node, constants)
    try:
        macs, flops = (0, 0) if constant else _arithmetic(node)
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError):
        macs, flops = None, None  # a malformed node (missing operands, attributes of the wrong type)
    return NodeCost(
        name=node.name or "",
        op_type=op_key(node),
        params=sum(_elements(v) or 0 for v in weights),
        macs=macs,
        weight_bytes=sum(_nbytes(v) or 0 for v in weights),
        output_bytes=_sum_known(_nbytes(v) for v in node.outputs),
        flops=flops,
        index=index,
        constant=constant,
    )


def _arithmetic(node: ir.Node) -> tuple[int | None, int | None]:
    """(macs, flops) of one non-constant node."""
    if node.domain not in STANDARD_DOMAINS:
        return None, None  # custom op or function call: cost unknown
    if any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for attr in node.attributes.values()):
        return None, None  # If/Loop/Scan: the body's cost and trip count are not static
    op = node.op_type
    if op in DATA_MOVEMENT_OPS:
        return 0, 0
    if op in CONV_OPERANDS:
        return _conv_macs(node, *CONV_OPERANDS[op]), _bias_flops(node, 8 if op == "QLinearConv" else 2)
    if op == "ConvTranspose":
        return _conv_transpose_macs(node), _bias_flops(node, 2)
    if op == "Gemm":
        return _gemm_macs(node), _bias_flops(node, 2)
    if op in MATMUL_OPERANDS:
        return _matmul_macs(node, *MATMUL_OPERANDS[op]), 0
    if op == "Einsum":
        return _einsum_macs(node), 0
    if op in RECURRENT_OPS:
        return _recurrent_macs(node), 0
    return 0, _other_flops(node)


def _conv_macs(node: ir.Node, data_index: int, weight_index: int) -> int | None:
    out = static_dims(node.outputs[0])
    weight = static_dims(_input(node, weight_index))
    if out is None or weight is None or len(out) < 2:
        return None
    # weight: [M, C/group, k...]; each output element reads C/group * prod(k) inputs.
    return math.prod(out) * math.prod(weight[1:])


def _conv_transpose_macs(node: ir.Node) -> int | None:
    data = static_dims(_input(node, 0))
    weight = static_dims(_input(node, 1))
    if data is None or weight is None:
        return None
    # weight: [C, M/group, k...]; each input element is scattered to M/group * prod(k) outputs.
    return math.prod(data) * math.prod(weight[1:])


def _gemm_macs(node: ir.Node) -> int | None:
    a, b = static_dims(_input(node, 0)), static_dims(_input(node, 1))
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if _int_attr(node, "transA") else a
    n = b[0] if _int_attr(node, "transB") else b[1]
    return m * k * n


def _matmul_macs(node: ir.Node, a_index: int, b_index: int) -> int | None:
    a, out = static_dims(_input(node, a_index)), static_dims(node.outputs[0])
    if a is None or out is None or not a:
        return None
    # Every output element is a dot product over A's last dimension (batch broadcast included).
    return math.prod(out) * a[-1]


def _einsum_macs(node: ir.Node) -> int | None:
    equation = node.attributes.get("equation")
    operands = [static_dims(v) for v in node.inputs]
    if equation is None or "..." in equation.as_string() or any(d is None for d in operands):
        return None
    terms = equation.as_string().replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, dims in zip(terms, operands):
        if len(term) != len(dims):
            return None
        sizes.update(zip(term, dims))
    if len(operands) < 2:
        return 0
    # The naive loop nest over every label: exact for two operands, an upper bound beyond.
    return math.prod(sizes.values())


def _recurrent_macs(node: ir.Node) -> int | None:
    data, w, r = (static_dims(_input(node, i)) for i in range(3))
    if data is None or w is None or r is None or len(data) != 3:
        return None
    # Per time step and batch row: input times W and hidden state times R, for every direction and gate.
    return data[0] * data[1] * (math.prod(w) + math.prod(r))


def _bias_flops(node: ir.Node, bias_index: int) -> int | None:
    if _input(node, bias_index) is None:
        return 0
    return _elements(node.outputs[0])


def _other_flops(node: ir.Node) -> int | None:
    op = node.op_type
    if op in REDUCTION_OPS:
        return _elements(node.inputs[0]) if node.inputs and node.inputs[0] is not None else None
    out = _elements(node.outputs[0]) if node.outputs else 0
    if out is None:
        return None
    if op in WINDOW_POOLING_OPS:
        kernel = node.attributes.get("kernel_shape")
        if kernel is None:
            return None
        return out * math.prod(kernel.as_ints())
    if op == "LRN":
        return out * _int_attr(node, "size", 1)
    return out * PER_ELEMENT_FLOPS.get(op, 1)


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _int_attr(node: ir.Node, name: str, default: int = 0) -> int:
    attr = node.attributes.get(name)
    return attr.as_int() if attr is not None else default


# --- activation memory -----------------------------------------------------------------------------


def _activation_memory(graph: ir.Graph, constants: set[ir.Value]) -> tuple[int, int, int]:
    """(peak bytes, total bytes, values of unknown size) of activations over the main graph."""
    nodes = execution_order(graph)
    # Each activation with the step that allocates it: -1 for graph inputs, else its producer's index.
    born: dict[ir.Value, int] = {v: -1 for v in graph.inputs if not v.is_initializer() and v not in constants}
    for index, node in enumerate(nodes):
        if not _computes_constant(node, constants):
            born.update((v, index) for v in node.outputs)
    sizes = {value: _nbytes(value) for value in born}
    freed_after = _last_readers(nodes, born)
    for value in graph.outputs:
        freed_after[value] = len(nodes)  # outputs stay until the end
    allocated: dict[int, int] = Counter()
    released: dict[int, int] = Counter()
    for value, step in born.items():
        allocated[step] += sizes[value] or 0
        # A value nothing reads is freed right after it is produced.
        released[freed_after.get(value, step)] += sizes[value] or 0
    live = peak = 0
    for step in range(-1, len(nodes)):
        live += allocated[step]
        peak = max(peak, live)
        live -= released[step]
    unsized = sum(1 for size in sizes.values() if size is None)
    return peak, sum(size or 0 for size in sizes.values()), unsized


def execution_order(graph: ir.Graph) -> list[ir.Node]:
    """The graph's nodes in their own order when it is topological, else a stable topological order.
    Nodes on a cycle go last, in their own order."""
    nodes = list(graph)
    position = {node: i for i, node in enumerate(nodes)}
    producers = {
        node: {p for v in _values_read(node) if (p := v.producer()) in position and p is not node} for node in nodes
    }
    if all(position[p] < position[node] for node in nodes for p in producers[node]):
        return nodes
    waiting = {node: len(deps) for node, deps in producers.items()}
    readers: dict[ir.Node, list[ir.Node]] = {node: [] for node in nodes}
    for node, deps in producers.items():
        for producer in deps:
            readers[producer].append(node)
    ready = [position[node] for node in nodes if not waiting[node]]
    heapq.heapify(ready)
    order = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for reader in readers[node]:
            waiting[reader] -= 1
            if not waiting[reader]:
                heapq.heappush(ready, position[reader])
    placed = set(order)
    return order + [node for node in nodes if node not in placed]


def _last_readers(nodes: list[ir.Node], activations: dict[ir.Value, int | None]) -> dict[ir.Value, int]:
    """For each activation, the index of the last top-level node that reads it (directly or in a subgraph)."""
    last: dict[ir.Value, int] = {}
    for index, node in enumerate(nodes):
        for value in _values_read(node):
            if value in activations:
                last[value] = index
    return last


def _values_read(node: ir.Node) -> Iterable[ir.Value]:
    yield from (v for v in node.inputs if v is not None)
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            subgraphs = [attr.as_graph()]
        elif attr.type == ir.AttributeType.GRAPHS:
            subgraphs = list(attr.as_graphs())
        else:
            continue
        for subgraph in subgraphs:
            for inner in ir.traversal.RecursiveGraphIterator(subgraph):
                yield from (v for v in inner.inputs if v is not None)
