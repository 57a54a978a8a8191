"""How far one model's outputs are from another's: the one place that compares outputs.

Per output (``output_error``, ``array_metrics``):
- ``max_abs``: the largest ``|reference - actual|``. Positions where both are NaN or the same infinity
  count as equal; any other non-finite mismatch, or a different shape, makes it infinite.
- ``magnitude``: the reference's largest finite absolute value (0 when it has none).
- ``max_rel`` = ``max_abs / magnitude``: relative to the output's scale, not element by element, so
  near-zero elements do not blow it up. It is 0 when ``max_abs`` is 0 and infinite when the
  magnitude is 0 or the output is not floating point (integers and booleans must match exactly).
- ``sqnr_db`` = ``10 log10(sum a^2 / sum (a - b)^2)`` over the positions finite in both (``inf`` when
  identical, ``-inf`` when the reference is all zeros and the actual is not); ``cosine`` similarity
  over the same positions (1.0 when both are all zeros, 0.0 when only one is).
- ``top1_agreement``: the share of rows whose argmax over the last axis agrees, for outputs whose
  last axis has more than one element.

SQNR, cosine and top-1 agreement accumulate over feeds (``Fidelity``); ``measure`` runs two models
with ONNX Runtime on the same (held-back) feeds and summarizes them: errors over every output, SQNR,
cosine and top-1 agreement of the first output (the one the task reads), and the worst SQNR of all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from ir import activations


@dataclasses.dataclass(frozen=True)
class OutputError:
    max_abs: float
    magnitude: float
    exact: bool = False  # an integer or boolean output: only equality counts

    @property
    def max_rel(self) -> float:
        if self.max_abs == 0.0:
            return 0.0
        if self.exact or self.magnitude == 0.0:
            return math.inf
        return self.max_abs / self.magnitude


def output_error(reference: np.ndarray, actual: np.ndarray) -> OutputError:
    reference, actual = np.asarray(reference), np.asarray(actual)
    exact = reference.dtype.kind not in "fc"
    ref = reference.astype(np.float64)
    finite = np.isfinite(ref)
    magnitude = float(np.max(np.abs(ref[finite]), initial=0.0))
    if reference.shape != actual.shape:
        return OutputError(math.inf, magnitude, exact)
    if ref.size == 0:
        return OutputError(0.0, magnitude, exact)
    got = actual.astype(np.float64)
    equal = (ref == got) | (np.isnan(ref) & np.isnan(got))
    with np.errstate(invalid="ignore"):  # inf - inf is NaN here, and NaN counts as an infinite error
        error = np.where(equal, 0.0, np.abs(ref - got))
    return OutputError(float(np.max(np.where(np.isnan(error), np.inf, error))), magnitude, exact)


def sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    ref, got = _finite_pair(reference, actual)
    return _sqnr(float(ref @ ref), float((ref - got) @ (ref - got)))


def cosine(reference: np.ndarray, actual: np.ndarray) -> float:
    ref, got = _finite_pair(reference, actual)
    return _cosine(float(ref @ got), float(ref @ ref), float(got @ got))


def array_metrics(reference: np.ndarray, actual: np.ndarray) -> dict:
    """Every per-output figure of two arrays of the same shape (the numeric diff's row)."""
    reference, actual = np.asarray(reference), np.asarray(actual)
    error = output_error(reference, actual)
    ref, got = reference.astype(np.float64), actual.astype(np.float64)
    equal = (ref == got) | (np.isnan(ref) & np.isnan(got))
    result = {
        "max_abs": error.max_abs,
        "max_rel": error.max_rel,
        "cosine": cosine(reference, actual),
        "sqnr_db": sqnr_db(reference, actual),
        "nonfinite_mismatches": int(np.count_nonzero(~equal & ~(np.isfinite(ref) & np.isfinite(got)))),
    }
    if error.exact:
        result["mismatches"] = int(np.count_nonzero(reference != actual))
    return result


def compare(reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max absolute and relative error over all outputs of one run; ``missing`` or ``shape_mismatch``
    names an output that cannot be compared (and the errors are infinite)."""
    max_abs = max_rel = 0.0
    for name, ref in reference.items():
        if name not in actual:
            return {"max_abs": math.inf, "max_rel": math.inf, "missing": name}
        if np.shape(ref) != np.shape(actual[name]):
            return {"max_abs": math.inf, "max_rel": math.inf, "shape_mismatch": name}
        error = output_error(ref, actual[name])
        max_abs, max_rel = max(max_abs, error.max_abs), max(max_rel, error.max_rel)
    return {"max_abs": max_abs, "max_rel": max_rel}


class Fidelity:
    """Per named array, accumulated over any number of batches."""

    def __init__(self):
        self.signal: dict[str, float] = {}
        self.noise: dict[str, float] = {}
        self.dot: dict[str, float] = {}
        self.norm_b: dict[str, float] = {}
        self.agree: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.max_abs: dict[str, float] = {}
        self.max_rel: dict[str, float] = {}

    def add(self, name: str, reference: np.ndarray, actual: np.ndarray) -> None:
        reference, actual = np.asarray(reference), np.asarray(actual)
        error = output_error(reference, actual)
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), error.max_abs)
        self.max_rel[name] = max(self.max_rel.get(name, 0.0), error.max_rel)
        for totals in (self.signal, self.noise, self.dot, self.norm_b):
            totals.setdefault(name, 0.0)
        if reference.shape != actual.shape:
            self.noise[name] = math.inf
            return
        a, b = _finite_pair(reference, actual)
        self.signal[name] += float(a @ a)
        self.noise[name] += float((a - b) @ (a - b))
        self.dot[name] += float(a @ b)
        self.norm_b[name] += float(b @ b)
        if reference.ndim >= 1 and reference.shape[-1] > 1:
            same = np.argmax(reference, axis=-1) == np.argmax(actual, axis=-1)
            self.agree[name] = self.agree.get(name, 0) + int(np.count_nonzero(same))
            self.rows[name] = self.rows.get(name, 0) + int(same.size)

    def sqnr_db(self, name: str) -> float:
        return _sqnr(self.signal[name], self.noise[name])

    def summary(self, name: str) -> dict[str, float]:
        result = {"max_abs": self.max_abs[name], "max_rel": self.max_rel[name], "sqnr_db": self.sqnr_db(name),
                  "cosine": _cosine(self.dot[name], self.signal[name], self.norm_b[name])}
        if self.rows.get(name):
            result["top1_agreement"] = self.agree[name] / self.rows[name]
        return result


def measure(reference: ir.Model, model: ir.Model, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    """``model``'s outputs against ``reference``'s on the same feeds: ``max_abs`` and ``max_rel`` over
    every output; ``sqnr_db``, ``cosine``, ``top1_agreement`` of the first output; ``worst_output_sqnr_db``
    over all outputs; ``feeds``, how many feeds it ran."""
    feeds = list(feeds)
    names = [v.name for v in reference.graph.outputs]
    fidelity = _accumulate(reference, model, names, feeds)
    result = fidelity.summary(names[0])
    result["max_abs"] = max(fidelity.max_abs[n] for n in names)
    result["max_rel"] = max(fidelity.max_rel[n] for n in names)
    result["worst_output_sqnr_db"] = min(fidelity.sqnr_db(n) for n in names)
    result["feeds"] = len(feeds)
    return result


def measure_values(reference: ir.Model, model: ir.Model, names: Sequence[str], feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, dict]:
    """Per named value (outputs or intermediate values present in both models): its summary."""
    fidelity = _accumulate(reference, model, names, list(feeds))
    return {name: fidelity.summary(name) for name in names}


def _accumulate(reference: ir.Model, model: ir.Model, names: Sequence[str], feeds: list[dict[str, np.ndarray]]) -> Fidelity:
    fidelity = Fidelity()
    for want, got in zip(activations.capture(reference, names, feeds), activations.capture(model, names, feeds)):
        for name in names:
            fidelity.add(name, want[name], got[name])
    return fidelity


def _finite_pair(reference: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference).astype(np.float64).reshape(-1)
    got = np.asarray(actual).astype(np.float64).reshape(-1)
    finite = np.isfinite(ref) & np.isfinite(got)
    return ref[finite], got[finite]


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0 or noise == math.inf:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _cosine(dot: float, norm_a: float, norm_b: float) -> float:
    """From the dot product and the two squared norms."""
    norms = math.sqrt(norm_a) * math.sqrt(norm_b)
    if norms == 0.0:
        return 1.0 if norm_a == 0.0 and norm_b == 0.0 else 0.0
    return dot / norms


def describe(result: Mapping[str, float]) -> str:
    """The figures of a ``measure`` result as one line: ``max_abs 0.012, ..., sqnr_db 31.2``."""
    return ", ".join(f"{key} {value:.4g}" for key, value in result.items() if key != "feeds")
