"""When a compiled library matches ONNX Runtime: the float rule and the integer rule.

**Float rule (float32 libraries).** ONNX Runtime is itself a float32 computation with its own
rounding error, so a fixed relative tolerance is either too tight for deep graphs (PP-OCRv4 rec's
6625-class softmax: a correct TVM build differs from ONNX Runtime by ~6e-5 relative) or too loose for
shallow ones. Instead both are measured against the exact answer, a float64 evaluation of the same
graph on the same inputs (``backends.float64_reference``):

- per floating-point output, ``e_ort = max|ort - exact| / M`` and ``e_lib = max|lib - exact| / M``,
  where ``M`` is the exact output's largest finite magnitude (1 when it is 0);
- the output matches when ``e_lib <= FACTOR * max(e_ort, FLOOR)``, with ``FACTOR = 64`` and
  ``FLOOR = 16 * 2**-23`` (16 float32 ulps of the magnitude, so that a graph ONNX Runtime happens to
  compute exactly is not held to zero error).

FACTOR is "the same order as ONNX Runtime" made concrete: two correct float32 libraries differ in
summation order, fused multiply-adds and their exp/tanh/erf approximations, which moves the error by
a modest factor (measured for TVM 0.27 untuned on llvm: x15 on PP-OCRv4 rec; see
``tests/backends/test_tolerance.py``); a wrong kernel (a weight channel off by 5%, an op swapped)
moves it by orders of magnitude. Non-float outputs must be equal.

Where the float64 evaluation cannot run, or ONNX Runtime is more than ``UNTRUSTED`` = 1e-3 from it
(the two implement an op differently, so the "exact" answer is not trusted), the check falls back to
the fixed rule
``max|lib - ort| <= atol + rtol * M`` (``backends.numeric_check``) and says so.

**Integer rule (libraries whose Conv/MatMul/Gemm compute in int8, ``backends.int8_lowering``).**
Compared with ONNX Runtime's own execution of the QDQ model (its fused QLinearConv/QGemm kernels):
an output matches when at least 99.9% of its elements are within one quantization step of ONNX
Runtime's, where the step is the scale of the ``DequantizeLinear`` producing the output (1 for a
``QuantizeLinear`` output: the integers themselves), or for an
output computed in float from quantized inputs (a Gemm left with a float output), the effect of one
step of that op's input: ``s_x * sum_k |w[k, n]|`` per output channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from backends.base import CheckResult
from ir import runtime

FACTOR = 64.0
FLOOR = 16 * 2.0**-23
AGREEMENT = 0.999  # share of elements within one quantization step (integer rule)
UNTRUSTED = 1e-3  # ONNX Runtime this far from the float64 evaluation: the evaluation is not trusted


def judge_float(
    ort: Mapping[str, np.ndarray], exact: Mapping[str, np.ndarray], library: Sequence[np.ndarray]
) -> CheckResult:
    """The float rule over every output, in graph order; the worst output names the result."""
    if len(ort) != len(library):
        return CheckResult(math.inf, math.inf, passed=False, rtol=0.0, atol=0.0, worst_output="(output count)", rule="float64")
    passed, worst, worst_share = True, "", -1.0
    max_abs = max_rel = ort_rel = 0.0
    for (name, expected), got in zip(ort.items(), library):
        got = np.asarray(got)
        reference = np.asarray(exact[name])
        if expected.dtype.kind != "f" or got.shape != expected.shape:
            ok = got.shape == expected.shape and np.array_equal(expected, got)
            share = 0.0 if ok else math.inf
            error_lib = error_ort = 0.0 if ok else math.inf
            abs_error = 0.0 if ok else math.inf
        else:
            magnitude = _magnitude(reference)
            error_lib = _error(got, reference) / magnitude
            error_ort = _error(expected, reference) / magnitude
            share = error_lib / (FACTOR * max(error_ort, FLOOR))
            abs_error = _error(got, expected.astype(np.float64))
            max_rel = max(max_rel, abs_error / magnitude)
        passed = passed and share <= 1.0
        max_abs = max(max_abs, abs_error)
        if share > worst_share:
            worst, worst_share = name, share
            library_error, ort_rel = error_lib, error_ort
    detail = (
        f"vs float64: library {library_error:.2g}, ONNX Runtime {ort_rel:.2g} "
        f"(allowed {FACTOR:g} x max(ONNX Runtime, {FLOOR:.1g}))"
    )
    return CheckResult(
        max_abs, max_rel, passed=passed, rtol=0.0, atol=0.0, worst_output=worst, rule="float64",
        detail=detail, library_vs_exact=library_error, ort_vs_exact=ort_rel,
    )  # fmt: skip


def judge_integer(
    ort: Mapping[str, np.ndarray], library: Sequence[np.ndarray], steps: Mapping[str, np.ndarray | float]
) -> CheckResult:
    """The integer rule: ``steps[name]`` is each output's quantization step (broadcastable to it)."""
    if len(ort) != len(library):
        return CheckResult(math.inf, math.inf, passed=False, rtol=0.0, atol=0.0, worst_output="(output count)", rule="int8")
    passed, worst, worst_share = True, "", 2.0
    max_abs = max_rel = 0.0
    for (name, expected), got in zip(ort.items(), library):
        got = np.asarray(got, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        if got.shape != expected.shape:
            share, abs_error = 0.0, math.inf
        else:
            difference = np.abs(got - expected)
            step = np.broadcast_to(np.asarray(steps[name], dtype=np.float64), difference.shape)
            # A hair above one step: the step itself is a float32 product of scales.
            share = float(np.mean(difference <= step * (1 + 1e-5)))
            abs_error = float(difference.max(initial=0.0))
            max_rel = max(max_rel, abs_error / _magnitude(expected))
        passed = passed and share >= AGREEMENT
        max_abs = max(max_abs, abs_error)
        if share < worst_share:
            worst, worst_share = name, share
    detail = f"{worst_share:.4%} of '{worst}' within one quantization step of ONNX Runtime (needs {AGREEMENT:.1%})"
    return CheckResult(max_abs, max_rel, passed=passed, rtol=0.0, atol=0.0, worst_output=worst, rule="int8", detail=detail)


def _magnitude(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.max(np.abs(finite), initial=0.0)) or 1.0


def _error(got: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute difference; non-finite values must agree exactly (else infinite)."""
    got = got.astype(np.float64)
    finite = np.isfinite(reference)
    same_special = ~finite & ((got == reference) | (np.isnan(got) & np.isnan(reference)))
    if np.any(~finite & ~same_special) or np.any(finite & ~np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got[finite] - reference[finite]), initial=0.0))


def check_library(
    model: ir.Model, feeds: Mapping[str, np.ndarray], library: Sequence[np.ndarray], *,
    rtol: float, atol: float, integer: bool, notes: list[str],
) -> CheckResult:  # fmt: skip
    """Judge ``library``'s outputs on ``feeds`` by the integer rule (``integer``) or the float rule.

    Falls back to the fixed ``rtol``/``atol`` rule against ONNX Runtime, with a note, when the rule's
    reference cannot be had (no float64 evaluation; an output without a quantization step).
    """
    from backends.float64_reference import Float64Unavailable, evaluate  # noqa: PLC0415
    from backends.numeric_check import compare_outputs  # noqa: PLC0415

    if integer:
        fused = runtime.run(runtime.session(model, optimize=True), feeds)
        steps = output_steps(model)
        if steps is not None:
            return judge_integer(fused, library, steps)
        notes.append("integer rule not applicable (an output has no quantization step): checked with rtol/atol")
        return compare_outputs(fused, library, rtol=rtol, atol=atol)
    ort = runtime.run(model, feeds)
    try:
        exact = evaluate(model, feeds)
    except Float64Unavailable as exc:
        notes.append(f"no float64 evaluation ({exc}): checked with rtol/atol")
        return compare_outputs(ort, library, rtol=rtol, atol=atol)
    result = judge_float(ort, exact, library)
    if result.ort_vs_exact is not None and result.ort_vs_exact > UNTRUSTED:
        # ONNX Runtime and the float64 evaluation disagree beyond float32 noise (an op computed
        # differently, e.g. a Resize mode): the exact answer is not trusted.
        notes.append(f"float64 evaluation differs from ONNX Runtime by {result.ort_vs_exact:.2g}: checked with rtol/atol")
        return compare_outputs(ort, library, rtol=rtol, atol=atol)
    return result


def output_steps(model: ir.Model) -> dict[str, np.ndarray] | None:
    """Each graph output's quantization step (the integer rule), or None when one has none."""
    steps = {}
    for output in model.graph.outputs:
        node = output.producer()
        step = None
        if node is not None and node.op_type == "DequantizeLinear":
            step = _dq_scale(node, output)
        elif node is not None and node.op_type == "QuantizeLinear":
            step = np.float64(1.0)  # the integers themselves
        elif node is not None and node.op_type in ("Gemm", "MatMul", "Conv"):
            step = _one_input_step(node)
        if step is None:
            return None
        steps[output.name] = step
    return steps


def _dq_scale(node: ir.Node, output: ir.Value) -> np.ndarray | None:
    scale = _constant(node.inputs[1])
    if scale is None:
        return None
    if scale.ndim == 0 or output.shape is None:
        return scale.astype(np.float64)
    axis = node.attributes.get_int("axis", 1) % len(output.shape)
    shape = [1] * len(output.shape)
    shape[axis] = -1
    return scale.astype(np.float64).reshape(shape)


def _one_input_step(node: ir.Node) -> np.ndarray | None:
    """``s_x * sum_k |w[k, n]|``: the output change of one quantization step in every input element."""
    x_dq, w_dq = (value.producer() for value in node.inputs[:2])
    if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
        return None
    scale_x = _constant(x_dq.inputs[1])
    weight = _dequantized_constant(w_dq)
    if scale_x is None or scale_x.ndim != 0 or weight is None:
        return None
    if node.op_type == "Conv":
        return float(scale_x) * np.abs(weight).sum(axis=tuple(range(1, weight.ndim))).reshape(1, -1, *[1] * (weight.ndim - 2))
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        weight = weight.T
    return float(scale_x) * np.abs(weight).sum(axis=0)


def _dequantized_constant(node: ir.Node) -> np.ndarray | None:
    values, scale = _constant(node.inputs[0]), _constant(node.inputs[1])
    zero = _constant(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if values is None or scale is None:
        return None
    axis = node.attributes.get_int("axis", 1) % values.ndim
    shape = [1] * values.ndim
    if scale.ndim:
        shape[axis] = -1
    zero = np.zeros(1) if zero is None else zero.astype(np.float64).reshape(shape if zero.ndim else ())
    return (values.astype(np.float64) - zero) * scale.astype(np.float64).reshape(shape if scale.ndim else ())


def _constant(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()
