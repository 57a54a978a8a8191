"""Run an ONNX model with eager PyTorch ops: the PyTorch anchor of the GPU benchmark.

A small ONNX interpreter, self-contained (imports only onnx, numpy, torch: the benchmark machine has
no onnx2torch). ``TorchModel`` does the one-time work at load, as a deployment would: initializers and
Constant nodes become tensors up front, each node becomes a closure with its attributes (and constant
shape/axes/scales inputs) parsed. ``__call__`` then only runs torch ops in topological order, so what
is timed is eager PyTorch: its kernels plus its per-op Python overhead.

Placement: float tensors live on ``device``; integer/bool constants and ``Shape`` outputs stay on the
CPU, and a node whose inputs are all CPU values runs on the CPU. Shape arithmetic (Shape -> Slice ->
Concat -> Reshape in exported models) thus never waits on the GPU, as Python ints in a torch model
would not. A CPU value that a GPU node reads as data is copied to the GPU (a constant once, at load).

CLI: python tools/torch_reference.py MODEL.onnx [--device cuda|cpu] [--check] [--repeat N]
     [--input-shape NAME:D1,D2,...]   (for inputs whose shape is not static)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

OPS = {}  # op type -> builder(attrs, constant inputs as numpy or None) -> callable(*input tensors)
# Inputs that are shapes or axes, read as Python ints: they stay on the CPU (see the placement note).
PARAM_INPUTS = {"Reshape": {1}, "Slice": {1, 2, 3, 4}, "Squeeze": {1}, "Unsqueeze": {1}, "Resize": {1, 2, 3},
                "ReduceMean": {1}}
DTYPES = {2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
          9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}  # 1: the model's dtype


def op(*names):
    def register(builder):
        OPS.update(dict.fromkeys(names, builder))
        return builder
    return register


def ints(value):  # a numpy array / CPU tensor / list as a list of Python ints
    return [int(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]


def spatial(a, n):  # (strides, dilations, pad begins, pad ends, F.pad's list when begins != ends)
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotImplementedError(f"{a['_op']}: auto_pad={a['auto_pad']} is not supported")
    pads = a.get("pads", [0] * 2 * n) if a.get("auto_pad", "NOTSET") == "NOTSET" else [0] * 2 * n
    begins, ends = pads[:n], pads[n:]  # F.pad lists the last axis first: (bn, en, ..., b1, e1)
    explicit = [p for b, e in zip(reversed(begins), reversed(ends)) for p in (b, e)] if begins != ends else None
    return a.get("strides", [1] * n), a.get("dilations", [1] * n), begins, ends, explicit


# ---- elementwise: torch broadcasts as ONNX (numpy) does ----------------------------------------
for _name, _fn in {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf,
                   "Sqrt": torch.sqrt, "Reciprocal": torch.reciprocal, "HardSwish": F.hardswish,
                   "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "MatMul": torch.matmul,
                   "Identity": lambda x: x}.items():
    OPS[_name] = lambda a, c, fn=_fn: fn

@op("Div")
def div(a, c):  # ONNX integer Div truncates; torch.div would return floats
    return lambda x, y: torch.div(x, y) if x.is_floating_point() else torch.div(x, y, rounding_mode="trunc")

@op("Pow")
def pow_(a, c):  # a constant scalar exponent as a Python float (torch computes 2.0 as x*x)
    if c[1] is not None and c[1].size == 1:
        e = float(c[1].reshape(()))
        return lambda x, _: torch.pow(x, e)
    return lambda x, y: torch.pow(x, y.to(x.dtype))  # the output has the base's type

@op("HardSigmoid")
def hard_sigmoid(a, c):  # any alpha/beta: F.hardsigmoid is only alpha=1/6, beta=0.5
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    return lambda x: (x * alpha).add_(beta).clamp_(0.0, 1.0)

@op("Clip")
def clip(a, c):  # opset < 11: min/max attributes; later optional inputs, read once when constant
    if a["_opset"] < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        names = a["_inputs"] + ["", ""]
        if any(names[i] and c[i] is None for i in (1, 2)):  # bounds computed at run time
            return lambda x, lo=None, hi=None: torch.clamp(x, lo, hi)
        lo, hi = (float(c[i].reshape(())) if names[i] else None for i in (1, 2))
    return (lambda x, *_: x) if lo is None and hi is None else (lambda x, *_: torch.clamp(x, lo, hi))

@op("Cast")
def cast(a, c):
    to = a["_float"] if a["to"] == 1 else DTYPES[a["to"]]  # FLOAT means the model's float dtype
    return lambda x: x.to(to)


# ---- convolution, normalization, pooling, reductions -------------------------------------------
@op("Conv", "ConvTranspose")
def conv(a, c):
    n = len(a["kernel_shape"]) if "kernel_shape" in a else c[1].ndim - 2
    (stride, dil, begins, _, explicit), groups = spatial(a, n), a.get("group", 1)
    if a["_op"] == "ConvTranspose":
        if "output_shape" in a or explicit:
            raise NotImplementedError("ConvTranspose: output_shape / asymmetric pads are not supported")
        fn, out_pad = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1], a.get("output_padding", [0] * n)
        return lambda x, w, b=None: fn(x, w, b, stride, begins, out_pad, groups, dil)
    fn = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    if explicit:  # asymmetric pads: pad, then convolve unpadded
        return lambda x, w, b=None: fn(F.pad(x, explicit), w, b, stride, 0, dil, groups)
    return lambda x, w, b=None: fn(x, w, b, stride, begins, dil, groups)

@op("MaxPool", "AveragePool")
def pool(a, c):
    n, k, ceil = len(a["kernel_shape"]), a["kernel_shape"], bool(a.get("ceil_mode", 0))
    stride, dil, begins, _, explicit = spatial(a, n)
    if a["_op"] == "MaxPool":
        if len(a["_outputs"]) > 1:
            raise NotImplementedError("MaxPool: the Indices output is not supported")
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
        if explicit:  # -inf padding never wins the max
            return lambda x: fn(F.pad(x, explicit, value=-math.inf), k, stride, 0, dil, ceil)
        return lambda x: fn(x, k, stride, begins, dil, ceil)
    if explicit or dil != [1] * n:
        raise NotImplementedError("AveragePool: asymmetric pads / dilations are not supported")
    fn, with_pad = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1], bool(a.get("count_include_pad", 0))
    return lambda x: fn(x, k, stride, begins, ceil, with_pad)

@op("GlobalAveragePool")
def global_average_pool(a, c):
    return lambda x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)

@op("BatchNormalization", "LayerNormalization")
def norm(a, c):
    if a.get("training_mode", 0) or len(a["_outputs"]) > 1:
        raise NotImplementedError(f"{a['_op']}: training mode / extra outputs are not supported")
    eps, axis = a.get("epsilon", 1e-5), a.get("axis", -1)
    if a["_op"] == "LayerNormalization":
        return lambda x, w, b=None: F.layer_norm(x, x.shape[axis:], w, b, eps)
    return lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)

@op("ReduceMean")
def reduce_mean(a, c):  # axes: an attribute before opset 18, an input from 18 on
    axes, keep = a.get("axes"), bool(a.get("keepdims", 1))
    if len(c) > 1:
        if c[1] is None:
            raise NotImplementedError("ReduceMean: axes computed at run time are not supported")
        axes = ints(c[1])
    if not axes and a.get("noop_with_empty_axes", 0):
        return lambda x, *_: x
    return lambda x, *_: x.mean(dim=tuple(axes) if axes else tuple(range(x.ndim)), keepdim=keep)

@op("Softmax")
def softmax(a, c):
    if a["_opset"] >= 13:
        axis = a.get("axis", -1)
        return lambda x: torch.softmax(x, axis)
    axis = a.get("axis", 1)  # before opset 13: over all the axes from `axis` on, as one row
    return lambda x: (torch.softmax(x, -1) if axis in (-1, x.ndim - 1) else
                      torch.softmax(x.reshape(math.prod(x.shape[:axis]), -1), 1).reshape(x.shape))

@op("Gemm")
def gemm(a, c):
    alpha, beta, ta, tb = a.get("alpha", 1.0), a.get("beta", 1.0), a.get("transA", 0), a.get("transB", 0)
    if not ta and tb and alpha == beta == 1.0 and (len(c) < 3 or c[2] is None or c[2].ndim == 1):
        return F.linear  # x @ W.T + b, what torch.nn.Linear runs
    def run(x, w, bias=None):  # addmm broadcasts C as Gemm does
        x, w = (x.t() if ta else x), (w.t() if tb else w)
        return torch.mm(x, w) * alpha if bias is None else torch.addmm(bias, x, w, beta=beta, alpha=alpha)
    return run


# ---- shapes and indexing -----------------------------------------------------------------------
@op("Shape")
def shape(a, c):  # a CPU int64 tensor: the shape arithmetic after it stays on the CPU
    start, end = a.get("start", 0), a.get("end")
    return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64)

@op("Reshape")
def reshape(a, c):
    allowzero = a.get("allowzero", 0)
    def target(x, s):  # allowzero=0: a 0 copies the input's dimension at that index
        return s if allowzero or 0 not in s else [x.shape[i] if d == 0 else d for i, d in enumerate(s)]
    if c[1] is not None:
        s = ints(c[1])
        return (lambda x, _: x.reshape(s)) if allowzero or 0 not in s else (lambda x, _: x.reshape(target(x, s)))
    return lambda x, s: x.reshape(target(x, ints(s)))

@op("Flatten")
def flatten(a, c):
    axis = a.get("axis", 1)
    return lambda x: x.reshape(math.prod(x.shape[:axis]), -1)

@op("Transpose")
def transpose(a, c):
    perm = a.get("perm")
    return (lambda x: x.permute(perm)) if perm else (lambda x: x.permute(*reversed(range(x.ndim))))

@op("Concat")
def concat(a, c):
    return lambda *xs: torch.cat(xs, a["axis"])

@op("Slice")
def slice_(a, c):
    if a["_opset"] < 10:
        raise NotImplementedError("Slice before opset 10 (attributes) is not supported")
    def run(x, starts, ends, axes=None, steps=None):
        starts, ends = ints(starts), ints(ends)
        axes = ints(axes) if axes is not None else range(len(starts))
        steps = ints(steps) if steps is not None else [1] * len(starts)
        if min(steps) < 1:
            raise NotImplementedError("Slice: negative steps are not supported")
        index = [slice(None)] * x.ndim  # Python slicing clamps out-of-range starts/ends as ONNX does
        for ax, s, e, st in zip(axes, starts, ends, steps):
            index[ax] = slice(s, e, st)
        return x[tuple(index)]
    if all(v is not None for v in c[1:]):  # constant parameters: parsed once
        params = [ints(v) for v in c[1:]]
        return lambda x, *_: run(x, *params)
    return run

@op("Gather")
def gather(a, c):
    axis = a.get("axis", 0)
    if c[1] is not None and c[1].ndim == 0:  # a constant scalar index: a plain select
        i = int(c[1])
        return lambda x, _: x.select(axis, i)
    def run(x, idx):  # negative indices count from the end
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        return x.index_select(axis, idx.reshape(-1)).reshape(x.shape[:axis] + idx.shape + x.shape[axis:][1:])
    return run

@op("Squeeze", "Unsqueeze")
def squeeze(a, c):  # axes: an attribute before opset 13, an input from 13 on
    axes = a.get("axes") or (ints(c[1]) if len(c) > 1 and c[1] is not None else None)
    if axes is None and len(c) > 1:
        raise NotImplementedError(f"{a['_op']}: axes computed at run time are not supported")
    if a["_op"] == "Squeeze":
        return (lambda x, *_: torch.squeeze(x, tuple(axes))) if axes else (lambda x, *_: torch.squeeze(x))
    def unsqueeze(x, *_):  # the axes index the output: insert in increasing order
        for d in sorted(d + x.ndim + len(axes) if d < 0 else d for d in axes):
            x = x.unsqueeze(d)
        return x
    return unsqueeze

@op("Resize")
def resize(a, c):  # the modes torch's interpolate computes exactly as ONNX defines them
    mode, coord = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    if a["_opset"] < 11 or a.get("antialias", 0) or a.get("exclude_outside", 0) or mode not in ("nearest", "linear"):
        raise NotImplementedError(f"Resize: opset {a['_opset']} / mode={mode} / antialias / exclude_outside")
    if mode == "nearest" and (coord != "asymmetric" or a.get("nearest_mode", "round_prefer_floor") != "floor"):
        raise NotImplementedError(f"Resize: nearest with {coord} / {a.get('nearest_mode')} is not supported "
                                  "(torch's nearest is ONNX's asymmetric + floor)")
    if mode == "linear" and coord not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        raise NotImplementedError(f"Resize: linear with {coord} is not supported")
    c, names = list(c) + [None] * (4 - len(c)), a["_inputs"] + ["", ""]
    if any(names[i] and c[i] is None for i in (2, 3)):
        raise NotImplementedError("Resize: scales / sizes computed at run time are not supported")
    scales = c[2].tolist() if c[2] is not None and c[2].size else None
    sizes = ints(c[3])[2:] if c[3] is not None and c[3].size else None
    if scales and scales[:2] != [1.0, 1.0]:
        raise NotImplementedError("Resize: scaling the batch or channel axis is not supported")
    kw = {"align_corners": coord == "align_corners"} if mode == "linear" else {}
    if not sizes:  # recompute_scale_factor=False: torch maps coordinates with the given scale, as ONNX
        kw.update(scale_factor=scales[2:], recompute_scale_factor=False)
    modes = ("linear", "bilinear", "trilinear") if mode == "linear" else ("nearest",) * 3
    return lambda x, *_: F.interpolate(x, sizes, mode=modes[x.ndim - 3], **kw)


# ---- the interpreter ---------------------------------------------------------------------------
def cuda_settings(strict_fp32: bool = True) -> None:
    """cuDNN autotuning (the shapes are fixed) and, by default, strict fp32: cuDNN convolutions would
    otherwise run in TF32, faster but ~1e-3 off ORT's fp32 and not what TVM's fp32 build computes.
    The legacy flags on purpose: torch >= 2.9 raises when they are read after a partial use of the
    new ``fp32_precision`` API, and other code in the process may read them."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not strict_fp32


def constant_value(node) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "sparse_value":
        raise NotImplementedError("Constant: sparse_value is not supported")
    value = helper.get_attribute_value(attr)
    return numpy_helper.to_array(value) if attr.name == "value" else np.array(value)


class TorchModel:
    """An ONNX model run node by node with torch ops; ``model(feeds)`` returns the outputs in graph order.
    On CUDA the constructor calls ``cuda_settings(strict_fp32)``, which sets process-wide flags."""

    def __init__(self, model, device="cuda", dtype=torch.float32, strict_fp32=True):
        model = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        self.device, self.dtype, graph = torch.device(device), dtype, model.graph
        if self.device.type == "cuda":
            cuda_settings(strict_fp32)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        nodes = [n for n in graph.node if n.op_type != "Constant"]
        unsupported = sorted({f"{n.domain}.{n.op_type}".lstrip(".") for n in nodes
                              if n.domain not in ("", "ai.onnx") or n.op_type not in OPS})
        if unsupported:
            raise NotImplementedError(f"torch_reference: unsupported ONNX op(s): {', '.join(unsupported)}")
        consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        consts.update({n.output[0]: constant_value(n) for n in graph.node if n.op_type == "Constant"})
        self.env0 = {"": None}  # every constant tensor, made once; '' is an omitted optional input
        host = set()  # names of the values kept on the CPU
        for name, array in consts.items():
            tensor = torch.from_numpy(np.array(array))  # np.array: a writable copy
            if tensor.is_floating_point():
                tensor = tensor.to(self.device, dtype if array.dtype == np.float32 else tensor.dtype)
            else:
                host.add(name)
            self.env0[name] = tensor
        self.inputs = [i.name for i in graph.input if i.name not in consts]
        self.outputs = [o.name for o in graph.output]
        self.plan = []  # (callable, input names, output names, inputs to copy to the device, names to drop)
        for n in nodes:
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            a = {k: v.decode() if isinstance(v, bytes) else v for k, v in a.items()}
            a.update(_op=n.op_type, _opset=opset, _inputs=list(n.input), _outputs=list(n.output), _float=dtype)
            fn = OPS[n.op_type](a, [consts.get(i) for i in n.input])
            ins, moves = list(n.input), []
            if n.op_type == "Shape" or all(i in host for i in n.input if i):
                host.update(n.output)  # runs on the CPU
            elif self.device.type != "cpu":
                for k, name in enumerate(ins):  # CPU values this device node reads as data
                    if name in host and k not in PARAM_INPUTS.get(n.op_type, ()):
                        if name in consts:  # a constant: copied once, now
                            ins[k] = name + "@device"
                            self.env0[ins[k]] = self.env0[name].to(self.device)
                        else:
                            moves.append(k)
            self.plan.append((fn, ins, list(n.output), moves, []))
        # Drop each intermediate after its last use, as Python's refcounting does in an eager model.
        last = {name: i for i, step in enumerate(self.plan) for name in step[1] + step[2]}
        for name, i in last.items():
            if name not in self.env0 and name not in self.outputs:
                self.plan[i][4].append(name)

    def to_input(self, value) -> torch.Tensor:
        tensor = torch.as_tensor(value)
        return tensor.to(self.device, self.dtype if tensor.is_floating_point() else tensor.dtype)

    @torch.inference_mode()
    def __call__(self, feeds) -> list:
        missing = [name for name in self.inputs if name not in feeds]
        if missing:
            raise ValueError(f"missing input(s): {', '.join(missing)}")
        env = dict(self.env0)
        env.update((name, self.to_input(value)) for name, value in feeds.items())
        for fn, ins, outs, moves, drop in self.plan:
            args = [env[name] for name in ins]
            for k in moves:
                args[k] = args[k].to(self.device)
            result = fn(*args)
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                env.update((name, r) for name, r in zip(outs, result) if name)
            for name in drop:
                env.pop(name, None)
        return [env[name] for name in self.outputs]


def time_ms(model: TorchModel, feeds, repeat: int = 50, warmup: int = 10) -> float:
    """Median ms of one call. The inputs are put on the device first (the copy is not timed); on CUDA
    each call is bracketed by synchronize() so that its queued kernels are counted."""
    feeds = {name: model.to_input(value) for name, value in feeds.items()}
    cuda = model.device.type == "cuda"
    for _ in range(warmup):  # cuDNN autotuning and the caching allocator settle here
        model(feeds)
    times = []
    for _ in range(repeat):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(feeds)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def random_feeds(model: onnx.ModelProto, shapes: dict) -> dict:
    """Seed-0 inputs of the model's static shapes (or ``shapes[name]``): normal floats, small ints."""
    rng, feeds, initializers = np.random.default_rng(0), {}, {t.name for t in model.graph.initializer}
    for value in (v for v in model.graph.input if v.name not in initializers):
        dims = shapes.get(value.name) or [d.dim_value if d.HasField("dim_value") else None
                                          for d in value.type.tensor_type.shape.dim]
        if any(d is None or d < 1 for d in dims):
            raise SystemExit(f"input {value.name} has no static shape {dims}: pass --input-shape {value.name}:D1,D2,...")
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = (rng.standard_normal(dims).astype(dtype) if np.issubdtype(dtype, np.floating)
                             else rng.integers(0, 10, dims).astype(dtype))
    return feeds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--check", action="store_true", help="compare with ONNX Runtime on the CPU")
    parser.add_argument("--repeat", type=int, default=0, help="time N calls, print the median")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME:D1,D2,...")
    args = parser.parse_args(argv)
    shapes = {s.rsplit(":", 1)[0]: [int(d) for d in s.rsplit(":", 1)[1].split(",")] for s in args.input_shape}
    proto = onnx.load(args.model)
    feeds = random_feeds(proto, shapes)
    model = TorchModel(proto, device=args.device)
    outputs = [t.float().cpu().numpy() for t in model(feeds)]
    print(f"{args.model}: outputs {[tuple(o.shape) for o in outputs]} on {args.device}")
    if args.check:
        import onnxruntime as ort  # only for --check: the benchmark's torch path needs no ORT

        expected = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).run(None, feeds)
        errors = [float(np.max(np.abs(e.astype(np.float64) - o)) / max(np.max(np.abs(e)), 1e-12))
                  for e, o in zip(expected, outputs)]
        print(f"max relative error vs ORT (max |torch - ORT| / max |ORT|): {max(errors):.2e}")
    if args.repeat:
        print(f"median latency over {args.repeat} calls: {time_ms(model, feeds, args.repeat):.3f} ms")


if __name__ == "__main__":
    main()
