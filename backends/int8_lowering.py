"""int8 lowering: QDQ Conv/MatMul/Gemm chains of an imported Relax module computed in integers.

TVM 0.27's ONNX importer turns QuantizeLinear/DequantizeLinear into ``relax.quantize``/``dequantize``,
legalized to float arithmetic, and Relax has no FakeQuantizationToInteger. This pass, run on the
imported module before compilation, rewrites the layers whose arithmetic ``backends.integer_semantics``
states (read it for the numbers) into integer Relax ops.

Rules:
- A chain ``quantize(act(core + bias))`` is lowered when ``core`` is ``nn.conv2d(dequantize(x),
  dequantize(W))`` or ``matmul(dequantize(x), dequantize(W))`` (possibly through ``permute_dims``,
  as the importer writes Gemm with transB), where ``x`` has one scale and zero point, ``W`` is a
  constant int8 tensor with zero point 0 and per-output-channel (or one) scale, ``bias`` (optional)
  is ``dequantize`` of a constant int32 with scale ``sx * sw`` and zero point 0 (possibly reshaped),
  ``act`` is optional ``nn.relu`` or ``clip``. Every intermediate value must have no other use.
- It becomes ``conv2d(pad(x_q, zx), W_q, out_dtype=int32)`` (or ``matmul``), ``+ b_q - zx*sum(W_q)``
  (one int32 constant), then the requantization of ``integer_semantics`` (float32 multiply, round
  half to even, zero point, clip to the output range narrowed by ``act``), cast to the output type.
- Convolutions without groups compute in NHWC/OHWI (``layout``), transposed in and out: MetaSchedule's
  default rules tensorize those with the dot-product intrinsics (x86 ``dot_16x4_vnni`` for uint8 x
  int8, ARM ``dot_4x4_i8i8s32_sdot``/NEON for int8 x int8), not NCHW ones. ``signed_activations``
  (the aarch64 backend) shifts uint8 activations to int8 (``v - 128``, zero point ``zx - 128``: exact).
- With ``weight_blocks`` (the x86 host: 16 x 4) such a convolution is one TE compute reading its
  weights packed (``pack_weight``), so that each instruction's 16 x 4 weights are contiguous: with
  OHWI weights the tensorized schedules fail to build or do not tensorize (a 3x3 conv 128->128 at
  28x28: 3.6 ms against 0.58 ms packed). The input is padded explicitly to a multiple of 4 channels.
- A ``core`` whose result is not quantized (a final Gemm producing logits) computes the same int32
  accumulation and dequantizes it (``float32(acc) * sx * sw``); the float bias add after it stays.
- What is not lowered keeps float arithmetic and is listed with the reason (``IntegerSummary``).
  Element-wise QDQ layers (Add, Mul, pooling, GlobalAveragePool) keep their quantize/dequantize:
  after fusion each is one kernel reading and writing 8-bit tensors with float arithmetic inside.
- Modules without ``dequantize`` are returned unchanged.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from backends import integer_semantics as semantics
from backends.base import IntegerSummary

CORES = ("relax.nn.conv2d", "relax.matmul")
PACKED = "conv2d_nhwc_packed"  # the TIR function name of a convolution with packed weights


def lower_to_integer(
    tvm: Any, module: Any, notes: list[str], *, signed_activations: bool = False, layout: str = "NHWC",
    weight_blocks: tuple[int, int] | None = None,
) -> tuple[Any, IntegerSummary]:
    """(module with integer Conv/MatMul where the QDQ chains allow, what was lowered and what not).

    ``signed_activations`` computes int8 x int8 (ARM's sdot); else uint8 activations stay uint8
    (x86's VNNI multiplies uint8 by int8). ``layout`` is the integer convolutions' data layout.
    ``weight_blocks`` (outputs, inputs), e.g. (16, 4) for x86's ``dot_16x4``: NHWC convolutions read
    their weights packed in blocks of that many output by input channels (``packed_conv2d``).
    """
    main = module["main"]
    ops: set[str] = set()
    tvm.relax.analysis.post_order_visit(main, lambda expr: ops.add(_op(expr)))
    if "relax.dequantize" not in ops:
        return module, _summary(tvm, module, [])
    rewriter = _make_rewriter(tvm)(module, main)
    rewriter.signed, rewriter.layout, rewriter.blocks = signed_activations, layout, weight_blocks
    lowered = rewriter.visit_expr(main)
    module = rewriter.builder_.get()  # the module with the TIR functions ``emit_te`` added
    module["main"] = lowered
    module = tvm.relax.transform.DeadCodeElimination()(module)
    summary = _summary(tvm, module, rewriter.skipped)
    if summary.integer_ops:
        notes.append(
            f"int8 compute: {summary.integer_ops} Conv/MatMul in integers (int8 x int8 -> int32), "
            f"{summary.float_ops} in float"
        )
    return module, summary


def _summary(tvm: Any, module: Any, skipped: list[tuple[str, str]]) -> IntegerSummary:
    counts: collections.Counter[tuple[str, bool]] = collections.Counter()
    producers = {b.var: b.value for block in module["main"].body.blocks for b in block.bindings}
    elementwise: collections.Counter[str] = collections.Counter()

    def visit(expr: Any) -> None:
        if isinstance(expr, tvm.relax.Call) and getattr(expr.op, "name", "") in CORES:
            dtype = str(expr.args[0].ty.dtype)
            counts[(expr.op.name.split(".")[-1], "int" in dtype)] += 1
        elif _op(expr) == "relax.call_tir" and expr.args[0].name_hint.startswith(PACKED):
            counts[("conv2d", True)] += 1
        elif isinstance(expr, tvm.relax.Call) and _op(expr) == "relax.quantize":
            source = _op(producers.get(expr.args[0])).removeprefix("relax.") or "graph input"
            elementwise[source] += 1

    tvm.relax.analysis.post_order_visit(module["main"], visit)
    reasons = list(collections.Counter(reason for _, reason in skipped).items())
    reasons += [(f"{op} (QDQ element-wise: one fused kernel, 8-bit in and out, float arithmetic inside)", n)
                for op, n in sorted(elementwise.items())]
    by_op = {f"{op} {'int' if integer else 'float'}": n for (op, integer), n in sorted(counts.items())}
    return IntegerSummary(
        integer_ops=sum(n for (_, integer), n in counts.items() if integer),
        float_ops=sum(n for (_, integer), n in counts.items() if not integer),
        by_op=by_op,
        float_reasons=tuple(reasons),
    )


class _Chain:
    """One matched layer: the core call, its integer operands and its epilogue."""

    def __init__(self, core, x_q, zero_x, scale_x, weight, scale_w, bias=None):
        self.core, self.x_q, self.zero_x, self.scale_x = core, x_q, zero_x, scale_x
        self.weight, self.scale_w, self.bias = weight, scale_w, bias  # weight int8 (OIHW or [K, N])


def _make_rewriter(tvm: Any):
    relax = tvm.relax

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, module, main):
            super().__init__(module)
            self.bound: dict = {}
            self.uses: collections.Counter = collections.Counter()
            for block in main.body.blocks:
                for binding in block.bindings:
                    self.bound[binding.var] = binding.value
                    for arg in _args(relax, binding.value):
                        self.uses[arg] += 1
            for var in _args(relax, main.body.body):
                self.uses[var] += 1
            self.skipped: list[tuple[str, str]] = []
            self.reported: set = set()
            self.in_chain: set = set()  # cores consumed by a lowered quantize chain
            self.nhwc_values: dict = {}  # lowered quantize call -> its result before the NCHW transpose
            self.transposed: dict = {}  # NCHW input var -> its NHWC transpose
            self.chains: dict = {}  # quantize binding value -> (chain, act, bounds)
            for var, value in self.bound.items():
                if _op(value) == "relax.quantize":
                    found = self._match_quantize(value)
                    if found is not None:
                        self.chains[value] = found
                        self.in_chain.add(found[0].core)

        # --- matching -------------------------------------------------------------------------
        def _value(self, expr):
            return self.bound.get(expr) if isinstance(expr, relax.Var) else None

        def _skip(self, core, reason: str) -> None:
            """Record once per layer why it stays float (a core is matched up to twice)."""
            if core not in self.reported:
                self.reported.add(core)
                self.skipped.append((core.op.name, reason))

        def _single(self, var) -> bool:
            return self.uses[var] == 1

        def _match_quantize(self, call):
            y = call.args[0]
            act, bounds = None, (None, None)
            producer = self._value(y)
            if _op(producer) == "relax.nn.relu" and self._single(y):
                act, y = "relu", producer.args[0]
            elif _op(producer) == "relax.clip" and self._single(y):
                lo, hi = (_prim(relax, a) for a in producer.args[1:3])
                act, bounds, y = "clip", (lo, hi), producer.args[0]
            bias, producer = None, self._value(y)
            if _op(producer) == "relax.add" and self._single(y):
                for core_arg, bias_arg in ((producer.args[0], producer.args[1]), (producer.args[1], producer.args[0])):
                    candidate = self._bias(bias_arg)
                    if candidate is not None and _op(self._value(core_arg)) in CORES:
                        bias, y = candidate, core_arg
                        break
            core = self._value(y)
            if _op(core) not in CORES or not self._single(y):
                return None
            chain = self._match_core(core)
            if chain is None:
                return None
            if bias is not None:
                expected = semantics.multiplier(chain.scale_x, chain.scale_w, 1.0)
                if not np.allclose(np.broadcast_to(bias[1], expected.shape), expected, rtol=1e-5, atol=0):
                    self._skip(core, "bias scale is not s_x * s_w")
                    return None
                chain.bias = bias[0]
            return chain, act, bounds

        def _bias(self, expr):
            """(int32 values, scale) of a constant dequantized int32 bias, possibly reshaped."""
            value = self._value(expr)
            if _op(value) == "relax.reshape":
                value = self._value(value.args[0])
            if _op(value) != "relax.dequantize":
                return None
            data, scale, zero = (_const(relax, a) for a in value.args[:3])
            if data is None or scale is None or data.dtype != np.int32 or (zero is not None and np.any(zero != 0)):
                return None
            return data.reshape(-1), scale.astype(np.float32).reshape(-1)

        def _match_core(self, core):
            name = core.op.name
            x_dq = self._value(core.args[0])
            w_expr, transposed = core.args[1], False
            w_dq = self._value(w_expr)
            if name == "relax.matmul" and _op(w_dq) == "relax.permute_dims":
                axes = [int(a) for a in w_dq.attrs.axes] if w_dq.attrs.axes is not None else None
                if axes not in (None, [1, 0]):
                    return None
                transposed, w_dq = True, self._value(w_dq.args[0])
            if _op(x_dq) != "relax.dequantize":
                self._skip(core, "input is float (layer not quantized)")
                return None
            if _op(w_dq) != "relax.dequantize":
                self._skip(core, "weight is not a dequantized constant")
                return None
            scale_x, zero_x = _const(relax, x_dq.args[1]), _const(relax, x_dq.args[2])
            weight, scale_w, zero_w = (_const(relax, a) for a in w_dq.args[:3])
            x_dtype = str(x_dq.args[0].ty.dtype)
            if scale_x is None or scale_x.size != 1 or (zero_x is not None and zero_x.size != 1):
                self._skip(core, "input scale is not one constant")
                return None
            if weight is None:
                self._skip(core, "both operands are activations (no constant weight)")
                return None
            if weight.dtype != np.int8 or (zero_w is not None and np.any(zero_w != 0)):
                self._skip(core, "weight is not symmetric int8")
                return None
            if x_dtype not in semantics.RANGES:
                self._skip(core, f"input type {x_dtype} is not int8/uint8")
                return None
            if name == "relax.nn.conv2d":
                attrs = core.attrs
                if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or weight.ndim != 4:
                    self._skip(core, "layout is not NCHW/OIHW")
                    return None
                scale_w = np.broadcast_to(scale_w.astype(np.float32).reshape(-1), (weight.shape[0],))
            else:
                if weight.ndim != 2:
                    self._skip(core, "weight is not a matrix")
                    return None
                axis = int(w_dq.attrs.axis) % 2
                channel_axis = 0 if transposed else 1
                if scale_w.size != 1 and axis != channel_axis:
                    self._skip(core, "weight scales are not per output channel")
                    return None
                if transposed:
                    weight = np.ascontiguousarray(weight.T)
                scale_w = np.broadcast_to(scale_w.astype(np.float32).reshape(-1), (weight.shape[1],))
            zero = int(zero_x.reshape(-1)[0]) if zero_x is not None else 0
            return _Chain(core, x_dq.args[0], zero, float(scale_x.reshape(-1)[0]), weight, np.array(scale_w))

        # --- rewriting ------------------------------------------------------------------------
        def visit_call_(self, call):
            if call in self.chains:
                chain, act, bounds = self.chains[call]
                scale_y, zero_y = (_const(relax, a) for a in call.args[1:3])
                if scale_y is not None and scale_y.size == 1 and (zero_y is None or zero_y.size == 1):
                    return self._quantized(chain, call, call.attrs.out_dtype, float(scale_y.reshape(-1)[0]),
                                           int(zero_y.reshape(-1)[0]) if zero_y is not None else 0, act, bounds)
                self._skip(chain.core, "output scale is not one constant")
            elif _op(call) in CORES and call not in self.in_chain:
                chain = self._match_core(call)
                if chain is not None:
                    return self._dequantized(chain)
            return super().visit_call_(call)

        def _accumulate(self, chain, bias):
            """int32 accumulation with the zero-point correction and ``bias`` folded in one constant."""
            nhwc = self.layout == "NHWC" and chain.core.op.name == "relax.nn.conv2d" and int(chain.core.attrs.groups) == 1
            producer = self.bound.get(chain.x_q)
            if nhwc and producer in self.nhwc_values:
                x = self.nhwc_values[producer]  # the previous layer's NHWC result: no transpose pair
            elif nhwc:
                if chain.x_q not in self.transposed:  # one transpose per value, however many layers read it
                    self.transposed[chain.x_q] = self.builder_.emit(relax.op.permute_dims(self.visit_expr(chain.x_q), [0, 2, 3, 1]))
                x = self.transposed[chain.x_q]
            else:
                x = self.visit_expr(chain.x_q)
            zero = chain.zero_x
            if self.signed and str(chain.x_q.ty.dtype) == "uint8":
                # uint8 v is int8 v - 128 with zero point zx - 128: exact, and sdot multiplies int8 x int8.
                x = self.builder_.emit(relax.op.astype(relax.op.subtract(relax.op.astype(x, "int16"), relax.const(np.int16(128))), "int8"))
                zero -= 128
            w = chain.weight
            if chain.core.op.name == "relax.nn.conv2d":
                attrs = chain.core.attrs
                padding = [int(p) for p in attrs.padding]  # top, left, bottom, right
                if zero and any(padding):
                    spatial = [padding[0], padding[2], padding[1], padding[3]]
                    width = [0, 0, *spatial, 0, 0] if nhwc else [0, 0, 0, 0, *spatial]
                    x = self.builder_.emit(relax.op.nn.pad(x, width, pad_value=float(zero)))
                    padding = [0, 0, 0, 0]
                options = dict(strides=[int(s) for s in attrs.strides], padding=padding,
                               dilation=[int(d) for d in attrs.dilation], groups=int(attrs.groups), out_dtype="int32")
                if nhwc and self.blocks and options["groups"] == 1:
                    acc = self._packed(x, w, zero, padding, options)
                    shape = (1, 1, 1, -1)
                elif nhwc:
                    # The dot-product intrinsics (VNNI, sdot) map onto a reduction over contiguous
                    # input channels: MetaSchedule tensorizes NHWC/OHWI convolutions, not NCHW ones.
                    acc = self.builder_.emit(relax.op.nn.conv2d(
                        x, relax.const(np.ascontiguousarray(w.transpose(0, 2, 3, 1))),
                        data_layout="NHWC", kernel_layout="OHWI", **options))
                    shape = (1, 1, 1, -1)
                else:
                    acc = self.builder_.emit(relax.op.nn.conv2d(x, relax.const(w), **options))
                    shape = (1, -1, 1, 1)
                correction = zero * w.astype(np.int64).sum(axis=(1, 2, 3))
            else:
                acc = self.builder_.emit(relax.op.matmul(x, relax.const(w), out_dtype="int32"))
                correction = zero * w.astype(np.int64).sum(axis=0)
                shape = (-1,)
            constant = (0 if bias is None else bias.astype(np.int64)) - correction
            if np.any(constant):
                acc = self.builder_.emit(relax.op.add(acc, relax.const(constant.astype(np.int32).reshape(shape))))
            return acc, shape

        def _packed(self, x, w, zero, padding, options):
            """int32 NHWC convolution of ``x`` (NHWC) by ``w`` (OIHW) with the weights in blocks.

            The input is padded explicitly with its zero point, spatially and along the channels up
            to a multiple of the block's inputs (a padded channel meets a zero weight: no term)."""
            outputs, inputs = self.blocks
            channels = w.shape[1]
            extra = -channels % inputs
            if any(padding) or extra:
                width = [0, 0, padding[0], padding[2], padding[1], padding[3], 0, extra]
                x = self.builder_.emit(relax.op.nn.pad(x, width, pad_value=float(zero)))
            packed = relax.const(pack_weight(w, outputs, inputs))
            return self.builder_.emit_te(packed_conv2d, x, packed, w.shape[0], options["strides"], options["dilation"],
                                         primfunc_name_hint=PACKED)

        def _quantized(self, chain, call, out_dtype, scale_y, zero_y, act, bounds):
            out_dtype = str(out_dtype)
            acc, shape = self._accumulate(chain, chain.bias)
            scale = semantics.multiplier(chain.scale_x, chain.scale_w, scale_y).reshape(shape)
            low, high = semantics.activation_range(out_dtype, zero_y, scale_y, act, bounds)
            scaled = self.builder_.emit(relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale)))
            rounded = self.builder_.emit(relax.op.round(scaled))
            shifted = self.builder_.emit(relax.op.add(rounded, relax.const(np.float32(zero_y))))
            clipped = self.builder_.emit(relax.op.clip(shifted, float(low), float(high)))
            result = relax.op.astype(clipped, out_dtype)
            if shape == (1, 1, 1, -1):
                result = self.builder_.emit(result)
                self.nhwc_values[call] = result
            return self._to_nchw(result, shape)

        def _dequantized(self, chain):
            acc, shape = self._accumulate(chain, None)
            scale = semantics.multiplier(chain.scale_x, chain.scale_w, 1.0).reshape(shape)
            return self._to_nchw(relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale)), shape)

        def _to_nchw(self, expr, shape):
            if shape != (1, 1, 1, -1):
                return expr
            return relax.op.permute_dims(self.builder_.emit(expr), [0, 3, 1, 2])

    return Rewriter


def pack_weight(weight: np.ndarray, outputs: int, inputs: int) -> np.ndarray:
    """OIHW ``weight`` as [O/outputs, KH, KW, I/inputs, outputs, inputs], zero-padded to whole blocks.

    One block, ``outputs`` x ``inputs`` contiguous values, is what one dot-product instruction reads
    (VNNI: 16 x 4 int8); in OHWI the 16 output channels are a whole kernel apart."""
    o, i, kh, kw = weight.shape
    padded = np.zeros((o + -o % outputs, i + -i % inputs, kh, kw), weight.dtype)
    padded[:o, :i] = weight
    blocks = padded.reshape(padded.shape[0] // outputs, outputs, padded.shape[1] // inputs, inputs, kh, kw)
    return np.ascontiguousarray(blocks.transpose(0, 4, 5, 2, 1, 3))


def packed_conv2d(x: Any, packed: Any, channels: int, strides: list[int], dilation: list[int]) -> Any:
    """TE: out[n, h, w, o] = sum x[n, h*s + r*d, w*s + c*d, k] * W[o, k, r, c] in int32, W read packed."""
    from tvm import te  # noqa: PLC0415 - only with TVM

    _, height, width, depth = (int(v) for v in x.shape)
    _, kh, kw, _, outputs, inputs = (int(v) for v in packed.shape)
    (sh, sw), (dh, dw) = strides, dilation
    shape = (1, (height - (kh - 1) * dh - 1) // sh + 1, (width - (kw - 1) * dw - 1) // sw + 1, channels)
    r, c, k = te.reduce_axis((0, kh), "r"), te.reduce_axis((0, kw), "c"), te.reduce_axis((0, depth), "k")
    return te.compute(shape, lambda n, h, w, o: te.sum(
        x[n, h * sh + r * dh, w * sw + c * dw, k].astype("int32")
        * packed[o // outputs, r, c, k // inputs, o % outputs, k % inputs].astype("int32"), axis=[r, c, k]),
        name="conv2d_nhwc_packed")


def _op(value: Any) -> str:
    op = getattr(value, "op", None)
    return getattr(op, "name", "") if op is not None else ""


def _args(relax: Any, value: Any) -> list:
    if isinstance(value, relax.Var):
        return [value]
    if isinstance(value, relax.Call):
        return [v for a in value.args for v in _args(relax, a)]
    if isinstance(value, relax.Tuple):
        return [v for f in value.fields for v in _args(relax, f)]
    if isinstance(value, relax.TupleGetItem):
        return _args(relax, value.tuple_value)
    return []


def _const(relax: Any, expr: Any) -> np.ndarray | None:
    """A Relax constant's value (TVM 0.27: ``tvm.ir.expr.Constant`` holding a runtime tensor)."""
    value = getattr(expr, "value", None)
    return value.numpy() if hasattr(value, "numpy") else None


def _prim(relax: Any, expr: Any) -> float | None:
    value = getattr(expr, "value", None)
    if isinstance(value, (int, float)):  # an IntImm/FloatImm bound of relax.clip
        return float(value)
    array = _const(relax, expr)
    return None if array is None else float(array.reshape(-1)[0])
