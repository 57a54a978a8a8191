"""The same partition through TVM Relax BYOC, and the whole model compiled by TVM for the host.

Rules:
- The QDQ model is imported with ``relax.frontend.onnx.from_onnx``; ``FuseOpsByPattern(PATTERNS,
  bind_constants=True, annotate_codegen=True)`` takes the integer layers: ``dequantize(x),
  dequantize(const w) -> conv2d | matmul [-> add(reshape(dequantize(const b)))] [-> relu | clip]
  -> quantize``; a grouped conv2d is taken only when the configuration offloads depthwise layers.
- ``RunCodegen`` calls ``relax.ext.accel`` (registered here) with the partitioned functions. The
  codegen maps each one to its layer of the ONNX-level partition by its int8 weight (bytes equal) and
  registers a global function under the partition's symbol that runs that layer in the C simulation
  (destination-passing: input tensor, output tensor). It returns no runtime module: the functions
  live in this process, so the library runs here and is not exported.
- Everything else is compiled by ``tvm.compile`` for ``llvm`` and runs on the host CPU.
- ``run_with_tvm`` reports the layers BYOC took that the ONNX-level partition did not, and the reverse
  (both empty when the two agree), and the model's outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import numpy as np
import onnx

from backends.accel.config import AccelConfig
from backends.accel.partition import Partition
from backends.accel.semantics import from_carried, to_carried

CODEGEN = "accel"


def _patterns(config: AccelConfig):
    from tvm.relax.dpl.pattern import is_const, is_op, wildcard

    def build(op: str, bias: bool, act: str):
        dq_x = is_op("relax.dequantize")(wildcard(), is_const(), is_const())
        weight = is_const()
        dq_w = is_op("relax.dequantize")(weight, is_const(), is_const())
        core = y = is_op(op)(dq_x, dq_w)
        if bias:
            dq_b = is_op("relax.dequantize")(is_const(), is_const(), is_const())
            y = is_op("relax.add")(y, is_op("relax.reshape")(dq_b, wildcard()) | dq_b)
        if act == "relu":
            y = is_op("relax.nn.relu")(y)
        elif act == "clip":
            y = is_op("relax.clip")(y, wildcard(), wildcard())
        return is_op("relax.quantize")(y, is_const(), is_const()), {"core": core, "weight": weight}

    def check(context) -> bool:
        call = context.annotated_expr["core"]
        if call.op.name == "relax.nn.conv2d" and int(call.attrs.groups) != 1:
            shape = context.annotated_expr["weight"].value.shape  # [N, C/groups, KH, KW]
            return config.depthwise and int(shape[1]) == 1 and int(call.attrs.groups) == int(shape[0])
        return True

    out = []
    for op, short in (("relax.nn.conv2d", "conv2d"), ("relax.matmul", "matmul")):
        for bias in (True, False):
            for act in ("relu", "clip", ""):
                name = f"{CODEGEN}.{short}{'_bias' if bias else ''}{'_' + act if act else ''}"
                pattern, annotations = build(op, bias, act)
                out.append((name, pattern, annotations, check))
    return out


def _weight_key(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes() + str(array.shape).encode()).hexdigest()


def _own_input_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where each Conv/Gemm/MatMul has its own input DequantizeLinear.

    Patterns may not overlap: two convolutions reading one dequantized tensor (a ResNet block's first
    conv and its downsample) would otherwise leave the second on the host. Same values, same results.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    producers = {o: n for n in out.graph.node for o in n.output}
    nodes = []
    for node in out.graph.node:
        source = producers.get(node.input[0]) if node.input else None
        if node.op_type in ("Conv", "Gemm", "MatMul") and source is not None and source.op_type == "DequantizeLinear":
            copy = onnx.NodeProto()
            copy.CopyFrom(source)
            copy.name = f"{source.name or 'dq'}/for/{node.name or len(nodes)}"
            copy.output[0] = f"{source.output[0]}/for/{node.name or len(nodes)}"
            node.input[0] = copy.output[0]
            nodes.append(copy)
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _clip_as_relu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Clip(v, 0, hi) -> Relu(v) where the QuantizeLinear after it saturates at or below hi (ReLU6 layers).

    Relax imports Clip as TIR maximum/minimum calls that patterns cannot see. Q is monotone, so
    ``Q(clip(v, 0, hi)) = min(max(Q(v), zy), Q(hi))``, which is ``Q(relu(v))`` when ``Q(hi)`` is the
    largest level. The model is modified in place (it is a private copy).
    """
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    users: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type != "Clip" or len(users.get(node.output[0], [])) != 1:
            continue
        q = users[node.output[0]][0]
        lo = consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        scale, zero = consts.get(q.input[1]), consts.get(q.input[2]) if len(q.input) > 2 else None
        if q.op_type != "QuantizeLinear" or lo is None or scale is None or zero is None or scale.size != 1 or float(lo.reshape(-1)[0]) != 0.0:
            continue
        qmax = 255 if zero.dtype == np.uint8 else 127
        if hi is not None and np.rint(np.float32(hi.reshape(-1)[0]) / np.float32(scale.reshape(-1)[0])) + int(zero.reshape(-1)[0]) < qmax:
            continue
        node.op_type = "Relu"
        del node.input[1:]
    return model


def _offloaded(index, layer, run_layer):
    def call(x, *outputs):
        # Destination passing: the int8 activation, then the outputs. When the dequantized activation is
        # also used outside the layer (a residual branch), the partitioned function returns it too.
        values = x.numpy()
        y = run_layer(index, to_carried(values, layer.x_unsigned))
        zero = np.float32(layer.x_zero + (128 if layer.x_unsigned else 0))
        for out in outputs:
            if str(out.dtype) in ("int8", "uint8"):
                out.copyfrom(from_carried(y, layer.y_unsigned))
            else:
                out.copyfrom((values.astype(np.float32) - zero) * np.float32(layer.x_scale))

    return call


@dataclasses.dataclass
class TvmRun:
    outputs: list[np.ndarray]
    byoc_only: list[str]  # functions BYOC offloaded that the ONNX-level partition did not
    onnx_only: list[str]  # ONNX-level layers BYOC did not offload
    functions: int


def run_with_tvm(model: onnx.ModelProto, part: Partition, run_layer: Callable[[int, np.ndarray], np.ndarray],
                 feeds: list[dict[str, np.ndarray]], config: AccelConfig) -> TvmRun:
    import tvm
    import tvm_ffi
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in part.model.graph.input}
    module = from_onnx(_clip_as_relu(_own_input_dequantize(model)), shape_dict=shapes, keep_params_in_input=False)
    # Weights as the ONNX model stores them (Conv [N,C,KH,KW]; MatMul/Gemm [K,N] or [N,K]): one key per layer.
    keys: dict[str, int] = {}
    for index, layer in enumerate(part.layers):
        weight = layer.weight
        keys[_weight_key(weight)] = index
        keys[_weight_key(np.ascontiguousarray(weight.T))] = index
    taken: dict[str, int] = {}
    unmatched: list[str] = []

    def codegen(functions, options, constant_names):
        for function in functions:
            symbol = str(function.attrs["global_symbol"])
            weights = []

            def visit(expr):
                data = getattr(expr, "value", None) if isinstance(expr, tvm.ir.expr.Constant) else None
                if hasattr(data, "numpy") and str(data.dtype) == "int8" and data.ndim >= 2:
                    weights.append(data.numpy())

            relax.analysis.post_order_visit(function, visit)
            index = next((keys[_weight_key(w)] for w in weights if _weight_key(w) in keys), None)
            if index is None:
                unmatched.append(symbol)
                continue
            taken[symbol] = index
            layer = part.layers[index]

            tvm_ffi.register_global_func(symbol, _offloaded(index, layer, run_layer), override=True)
        return []

    tvm_ffi.register_global_func(f"relax.ext.{CODEGEN}", codegen, override=True)
    partitioned = relax.transform.FuseOpsByPattern(_patterns(config), bind_constants=True, annotate_codegen=True)(module)
    partitioned = relax.transform.RunCodegen()(partitioned)
    if unmatched:
        # A function the simulator cannot run would fail at run time: report it instead.
        return TvmRun([], unmatched, [], len(taken) + len(unmatched))
    executable = tvm.compile(partitioned, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    outputs = []
    names = [i.name for i in part.model.graph.input]
    for feed in feeds:
        result = vm["main"](*[tvm.runtime.tensor(feed[n]) for n in names])
        outputs.append((result if hasattr(result, "numpy") else result[0]).numpy())
    onnx_only = [part.layers[i].name for i in range(len(part.layers)) if i not in set(taken.values())]
    return TvmRun(outputs, [], onnx_only, len(taken))
