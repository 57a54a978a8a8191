"""Comparing a built library's outputs with ONNX Runtime's (the errors measured by ``ir.fidelity``).

Rules:
- Outputs are compared in graph order; a different count or shape fails with an infinite error.
- An output's magnitude is its reference's largest finite absolute value (1 when that is 0, so that an
  all-zero output is judged by ``atol`` alone). Its relative error is its largest absolute difference
  divided by that magnitude. It passes when the absolute difference is at most
  ``atol + rtol * magnitude``: tolerances scale with the output, not element by element, because
  near-zero elements of a convolution legitimately differ by more than ``rtol`` of themselves.
- NaN matches NaN and an infinity matches the same infinity; any other mismatch of non-finite values
  is an infinite error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from backends.base import CheckResult
from ir.fidelity import output_error


def compare_outputs(
    reference: Mapping[str, np.ndarray], actual: Sequence[np.ndarray], *, rtol: float, atol: float
) -> CheckResult:
    if len(reference) != len(actual):
        return CheckResult(math.inf, math.inf, passed=False, rtol=rtol, atol=atol, worst_output="(output count)")
    max_abs = max_rel = 0.0
    passed = True
    worst_output, worst_share = "", -1.0  # the output that used the largest share of its allowance
    for (name, expected), got in zip(reference.items(), actual):
        error = output_error(expected, got)
        abs_error, magnitude = error.max_abs, error.magnitude or 1.0
        allowed = atol + rtol * magnitude
        passed = passed and abs_error <= allowed
        max_abs, max_rel = max(max_abs, abs_error), max(max_rel, abs_error / magnitude)
        share = abs_error / allowed if allowed else math.inf
        if share > worst_share:
            worst_output, worst_share = name, share
    return CheckResult(max_abs, max_rel, passed=passed, rtol=rtol, atol=atol, worst_output=worst_output)
