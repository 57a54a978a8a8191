"""Partitioning a QDQ model between the accelerator and the host CPU, at the ONNX level.

Rules (a layer is offloaded when every one holds; otherwise each of its nodes stays on the CPU,
with the first rule it broke as the reason):
- The op is ``Conv`` (2-D, explicit pads, group 1; depthwise only with ``-depthwise``), ``Gemm``
  (``transA=0``, ``alpha=beta=1``) or ``MatMul`` with a constant second operand.
- Its activation input is ``DequantizeLinear`` of an 8-bit tensor with a scalar scale and zero point.
- Its weight is ``DequantizeLinear`` of a constant int8 tensor with zero point 0 (symmetric), per
  tensor or per output channel; a bias, if any, is ``DequantizeLinear`` of a constant int32 tensor
  with zero point 0 and scale ``sx * sw`` (the accumulator's scale).
- Its output feeds only ``QuantizeLinear`` (8-bit, scalar scale), directly or through one ``Relu``
  or ``Clip`` with constant bounds; no intermediate value is a graph output.
- All shapes are known.

Everything else (pooling, residual ``Add``, the Q/DQ of CPU ops, reshapes, ...) runs on the host.
``Partition.ops`` lists every node of the model with its side and the reason.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper, numpy_helper

from backends.accel.config import AccelConfig
from backends.accel.semantics import INT8_MAX, INT8_MIN, IntLayer

GEMM_OPS = ("Conv", "Gemm", "MatMul")
DOMAIN = "graphpress.accel"


@dataclasses.dataclass(frozen=True)
class OpPlacement:
    node: str
    op: str
    side: str  # "accel" or "cpu"
    reason: str
    layer: str = ""


@dataclasses.dataclass
class Partition:
    layers: list[IntLayer]
    ops: list[OpPlacement]
    glue: onnx.ModelProto  # the model with each offloaded layer replaced by one AccelLayer node
    total_macs: int
    model: onnx.ModelProto  # the input model with shapes inferred
    members: list[list[int]]  # per layer: indices in model.graph.node of its input DQ and its nodes

    @property
    def offloaded_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def offloaded_mac_share(self) -> float:
        return self.offloaded_macs / self.total_macs if self.total_macs else 0.0


class _Reject(Exception):
    pass


def partition(model: onnx.ModelProto, config: AccelConfig) -> Partition:
    """Find the layers the core runs; ``model`` must have static shapes (it is not modified)."""
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    consts = _constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    shapes = _shapes(model)
    graph_outputs = {o.name for o in graph.output}
    names = {id(node): node.name or f"{node.op_type}_{i}" for i, node in enumerate(graph.node)}

    layers: list[IntLayer] = []
    members_of: list[list[int]] = []
    index_of = {id(node): i for i, node in enumerate(graph.node)}
    claimed: dict[int, str] = {}
    reasons: dict[int, str] = {}
    total_macs = 0
    for node in graph.node:
        if node.op_type not in GEMM_OPS:
            continue
        total_macs += _node_macs(node, shapes, consts)
        try:
            layer, members = _match(node, names[id(node)], consts, producers, consumers, shapes, graph_outputs, config)
        except _Reject as exc:
            reasons[id(node)] = str(exc)
            continue
        layers.append(layer)
        members_of.append([index_of[id(producers[node.input[0]])]] + [index_of[id(m)] for m in members])
        for member in members:
            claimed[id(member)] = layer.name
    # An input DequantizeLinear is absorbed when every consumer is an offloaded op.
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and id(node) not in claimed:
            users = consumers.get(node.output[0], [])
            owners = {claimed.get(id(u)) for u in users}
            if users and None not in owners and node.input[0] not in consts:
                claimed[id(node)] = ",".join(sorted(o for o in owners if o))

    ops = []
    for node in graph.node:
        name = names[id(node)]
        if id(node) in claimed:
            ops.append(OpPlacement(name, node.op_type, "accel", "part of an offloaded int8 layer", claimed[id(node)]))
        else:
            ops.append(OpPlacement(name, node.op_type, "cpu", reasons.get(id(node)) or _cpu_reason(node)))
    glue = _glue_model(model, layers, claimed)
    return Partition(layers, ops, glue, total_macs, model, members_of)


def _cpu_reason(node: onnx.NodeProto) -> str:
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        return "quantizes or dequantizes a tensor of a CPU op"
    return f"{node.op_type} is not an int8 GEMM the core runs"


def _match(node, name, consts, producers, consumers, shapes, graph_outputs, config: AccelConfig):
    members = [node]
    x_dq = producers.get(node.input[0])
    if x_dq is None or x_dq.op_type != "DequantizeLinear" or x_dq.input[0] in consts:
        raise _Reject("activation input is not DequantizeLinear of an 8-bit tensor")
    x_scale, x_zero, x_unsigned = _scalar_qparams(x_dq, consts, "activation input")
    w_dq = producers.get(node.input[1]) if len(node.input) > 1 else None
    if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in consts:
        raise _Reject("weight is not DequantizeLinear of a constant")
    w_q = consts[w_dq.input[0]]
    if w_q.dtype != np.int8:
        raise _Reject(f"weight is {w_q.dtype}, the core takes int8")
    w_zero = consts.get(w_dq.input[2]) if len(w_dq.input) > 2 and w_dq.input[2] else np.zeros(1, np.int8)
    if np.any(w_zero != 0):
        raise _Reject("weight zero point is not 0 (the core takes symmetric weights)")
    w_scale_raw = consts.get(w_dq.input[1])
    if w_scale_raw is None:
        raise _Reject("weight scale is not a constant")
    members.append(w_dq)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    in_shape = shapes.get(node.input[0])
    out_name = node.output[0]
    out_shape = shapes.get(out_name)
    if not in_shape or not out_shape or not all(isinstance(d, int) and d > 0 for d in in_shape + out_shape):
        raise _Reject("shapes are not all known")
    group, strides, pads, dilations = 1, (1, 1), (0, 0, 0, 0), (1, 1)
    if node.op_type == "Conv":
        if len(in_shape) != 4 or w_q.ndim != 4:
            raise _Reject("only 2-D convolutions are offloaded")
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _Reject("auto_pad is not supported (fold pads into explicit pads)")
        group = int(attrs.get("group", 1))
        if group != 1:
            depthwise = group == in_shape[1] and w_q.shape[1] == 1
            if not depthwise:
                raise _Reject(f"grouped convolution (group={group}) is not supported")
            if not config.depthwise:
                raise _Reject("depthwise convolution stays on the CPU (enable with -depthwise)")
        strides = tuple(attrs.get("strides", (1, 1)))
        p = tuple(attrs.get("pads", (0, 0, 0, 0)))
        pads = (p[0], p[1], p[2], p[3])
        dilations = tuple(attrs.get("dilations", (1, 1)))
        weight = w_q
        kind = "conv"
    else:
        if node.op_type == "Gemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise _Reject("Gemm with transA or alpha/beta != 1 is not supported")
            weight = w_q if attrs.get("transB", 0) else w_q.T
        else:
            if w_q.ndim != 2:
                raise _Reject("MatMul weight is not 2-D")
            weight = w_q.T
        kind = "rows"
        weight = np.ascontiguousarray(weight)
    n = weight.shape[0]
    w_scale = np.broadcast_to(w_scale_raw.astype(np.float32).reshape(-1), (n,)).copy()
    if w_scale_raw.size not in (1, n):
        raise _Reject("weight scale is neither per tensor nor per output channel")
    bias = np.zeros(n, np.int32)
    bias_input = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if bias_input:
        b_dq = producers.get(bias_input)
        if b_dq is None or b_dq.op_type != "DequantizeLinear" or b_dq.input[0] not in consts:
            raise _Reject("bias is not DequantizeLinear of a constant int32")
        b_q = consts[b_dq.input[0]]
        b_scale = consts.get(b_dq.input[1])
        b_zero = consts.get(b_dq.input[2]) if len(b_dq.input) > 2 and b_dq.input[2] else np.zeros(1, np.int32)
        if b_q.dtype != np.int32 or b_scale is None or np.any(b_zero != 0) or b_q.size != n:
            raise _Reject("bias is not int32 with zero point 0, one per output channel")
        expected = (np.float64(x_scale) * w_scale.astype(np.float64)).astype(np.float32)
        if not np.allclose(np.broadcast_to(b_scale.reshape(-1), (n,)), expected, rtol=1e-5, atol=0):
            raise _Reject("bias scale is not input scale x weight scale")
        bias = b_q.reshape(-1).astype(np.int32)
        members.append(b_dq)

    # Output: (Relu | Clip)? -> QuantizeLinear, each the only consumer.
    activation = ""
    after = _only_consumer(out_name, consumers, graph_outputs)
    clip_bounds = None
    if after is not None and after.op_type in ("Relu", "Clip"):
        activation = after.op_type
        if after.op_type == "Clip":
            lo = consts.get(after.input[1]) if len(after.input) > 1 and after.input[1] else None
            hi = consts.get(after.input[2]) if len(after.input) > 2 and after.input[2] else None
            if (len(after.input) > 1 and after.input[1] and lo is None) or (len(after.input) > 2 and after.input[2] and hi is None):
                raise _Reject("Clip bounds are not constants")
            if any(b is not None and b.size != 1 for b in (lo, hi)):
                raise _Reject("Clip bounds are not scalars")
            clip_bounds = tuple(None if b is None else float(b.reshape(-1)[0]) for b in (lo, hi))
        members.append(after)
        after = _only_consumer(after.output[0], consumers, graph_outputs)
    if after is None or after.op_type != "QuantizeLinear":
        raise _Reject("output is not quantized by one QuantizeLinear (it stays float)")
    y_scale, y_zero, y_unsigned = _scalar_qparams(after, consts, "output")
    members.append(after)
    shift_x = 128 if x_unsigned else 0
    shift_y = 128 if y_unsigned else 0
    lo, hi = INT8_MIN, INT8_MAX
    zy = y_zero - shift_y
    if activation == "Relu":
        lo = max(lo, zy)
    if clip_bounds is not None:
        qmin, qmax = (0, 255) if y_unsigned else (-128, 127)
        for bound, is_low in ((clip_bounds[0], True), (clip_bounds[1], False)):
            if bound is None:
                continue
            q = int(np.clip(np.rint(np.float32(bound) / np.float32(y_scale)) + y_zero, qmin, qmax)) - shift_y
            lo, hi = (max(lo, q), hi) if is_low else (lo, min(hi, q))
    layer = IntLayer(
        name=name, op=node.op_type, kind=kind, weight=weight, bias=bias, x_zero=x_zero - shift_x, y_zero=zy, lo=lo,
        hi=hi, x_scale=float(x_scale), w_scale=w_scale, y_scale=float(y_scale), in_shape=tuple(in_shape),
        out_shape=tuple(out_shape), x_unsigned=x_unsigned, y_unsigned=y_unsigned, group=group, strides=strides,
        pads=pads, dilations=dilations, activation=activation, input_name=x_dq.input[0], output_name=after.output[0],
        nodes=tuple(m.name for m in members),
    )
    try:
        layer.multipliers()
    except ValueError as exc:
        raise _Reject(str(exc)) from None
    return layer, members


def _scalar_qparams(node, consts, what):
    scale = consts.get(node.input[1])
    zero = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
    if scale is None or scale.size != 1 or zero is None or zero.size != 1:
        raise _Reject(f"{what} scale/zero point is not a constant scalar (per tensor)")
    if zero.dtype not in (np.uint8, np.int8):
        raise _Reject(f"{what} is {zero.dtype}, the core takes 8-bit activations")
    return float(scale.reshape(())), int(zero.reshape(())), zero.dtype == np.uint8


def _only_consumer(value, consumers, graph_outputs):
    users = consumers.get(value, [])
    if value in graph_outputs or len(users) != 1:
        return None
    return users[0]


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    return consts


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    out = {}
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = info.type.tensor_type
        if t.HasField("shape"):
            out[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return out


def _node_macs(node, shapes, consts) -> int:
    out = shapes.get(node.output[0])
    w_name = node.input[1] if len(node.input) > 1 else ""
    w_shape = shapes.get(w_name) or (list(consts[w_name].shape) if w_name in consts else None)
    if not out or not w_shape or None in out or None in w_shape:
        return 0
    if node.op_type == "Conv":
        return int(np.prod(out) * np.prod(w_shape[1:]))
    if node.op_type == "Gemm":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k = w_shape[1] if attrs.get("transB", 0) else w_shape[0]
        return int(np.prod(out) * k)
    return int(np.prod(out) * w_shape[0]) if len(w_shape) == 2 else 0


def _glue_model(model: onnx.ModelProto, layers: list[IntLayer], claimed: dict[int, str]) -> onnx.ModelProto:
    """The model with each offloaded layer's nodes replaced by one ``AccelLayer`` node (int8 in, int8 out)."""
    glue = onnx.ModelProto()
    glue.CopyFrom(model)
    by_output = {layer.output_name: (i, layer) for i, layer in enumerate(layers)}
    nodes = []
    for node in model.graph.node:
        if id(node) in claimed:
            # The Q node ends its layer: the AccelLayer node goes where the layer's output is made.
            if node.op_type == "QuantizeLinear" and node.output[0] in by_output:
                index, layer = by_output[node.output[0]]
                nodes.append(helper.make_node("AccelLayer", [layer.input_name], [layer.output_name],
                                              name=f"accel/{layer.name}", domain=DOMAIN, layer=index))
            continue
        nodes.append(node)
    # model.graph.node holds references owned by `model`; copy so glue owns its nodes.
    del glue.graph.node[:]
    for node in nodes:
        glue.graph.node.add().CopyFrom(node)
    return glue
