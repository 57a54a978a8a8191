"""How far a compressed model's outputs (or intermediate values) are from the float model's.

``Fidelity`` accumulates, per named array and over any number of batches: SQNR in dB
(``10 log10(sum a^2 / sum (a - b)^2)``, ``inf`` when identical), cosine similarity, and top-1
agreement (argmax over the last axis, for outputs whose last axis has more than one element).
``compare_models`` runs both models with ONNX Runtime on the same feeds and returns the summary
of their first output (the one the task reads) plus the worst SQNR over all outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from ir import activations


class Fidelity:
    def __init__(self):
        self.signal: dict[str, float] = {}
        self.noise: dict[str, float] = {}
        self.dot: dict[str, float] = {}
        self.norm_b: dict[str, float] = {}
        self.agree: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    def add(self, name: str, reference: np.ndarray, actual: np.ndarray) -> None:
        a = reference.astype(np.float64).reshape(-1)
        b = actual.astype(np.float64).reshape(-1)
        self.signal[name] = self.signal.get(name, 0.0) + float(a @ a)
        self.noise[name] = self.noise.get(name, 0.0) + float((a - b) @ (a - b))
        self.dot[name] = self.dot.get(name, 0.0) + float(a @ b)
        self.norm_b[name] = self.norm_b.get(name, 0.0) + float(b @ b)
        if reference.ndim >= 1 and reference.shape[-1] > 1:
            same = np.argmax(reference, axis=-1) == np.argmax(actual, axis=-1)
            self.agree[name] = self.agree.get(name, 0) + int(np.count_nonzero(same))
            self.rows[name] = self.rows.get(name, 0) + int(same.size)

    def sqnr_db(self, name: str) -> float:
        if self.noise[name] == 0.0:
            return math.inf
        return 10.0 * math.log10(max(self.signal[name], 1e-300) / self.noise[name])

    def summary(self, name: str) -> dict[str, float]:
        norm = math.sqrt(self.signal[name] * self.norm_b[name])
        result = {"sqnr_db": self.sqnr_db(name), "cosine": self.dot[name] / norm if norm else 1.0}
        if self.rows.get(name):
            result["top1_agreement"] = self.agree[name] / self.rows[name]
        return result


def compare_models(reference: ir.Model, model: ir.Model, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
    names = [v.name for v in reference.graph.outputs]
    return compare_values(reference, model, names, feeds, first_only=True)


def compare_values(reference: ir.Model, model: ir.Model, names: Sequence[str], feeds: Iterable[dict[str, np.ndarray]],
                   *, first_only: bool = False) -> dict:
    """Fidelity of the named values of ``model`` against the same values of ``reference``."""
    feeds = list(feeds)
    fidelity = Fidelity()
    for want, got in zip(activations.capture(reference, names, feeds), activations.capture(model, names, feeds)):
        for name in names:
            fidelity.add(name, want[name], got[name])
    if first_only:
        result = fidelity.summary(names[0])
        result["worst_output_sqnr_db"] = min(fidelity.sqnr_db(n) for n in names)
        return result
    return {name: fidelity.summary(name) for name in names}
