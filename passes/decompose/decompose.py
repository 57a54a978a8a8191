"""``decompose``: low-rank factorization of trained Conv, Gemm and MatMul layers to a budget.

Rules:
- Targets, exactly one: ``macs=F`` / ``params=F`` (the model loses at least F of its MACs / params,
  at the least total measured error), ``ratio=F`` (every layer that can loses at least F of its MACs),
  ``energy=E`` (per layer, the cheapest factorization whose relative output error is at most 1 - E),
  ``vbmf=true`` (per layer, the ranks Empirical VBMF estimates from the weight alone, rounded up to
  the rank grid; the cheapest method at its estimate; data-free, for models without calibration
  data; ``passes.decompose.vbmf``). cp has no VBMF estimate: ``method=cp`` with ``vbmf`` is refused,
  auto leaves cp out.
- Methods (``method=auto`` takes, per layer, whichever option the budget prefers among all that
  apply; with calibration data and a ``macs``/``params`` target it also builds the plan each method
  alone would choose and keeps, of all these plans, the one with the least model output error on
  the ``probe`` feeds, so on those feeds auto is never worse than any one method; see below):
  - ``svd``: Gemm, MatMul with a constant weight, and Conv of any kernel (as ``[N, C*k]``): a layer
    C -> r with the original kernel, then 1x1 (or Gemm/MatMul) r -> N. Data-aware: SVD of the
    weight whitened by the layer's input covariance (output error, not weight error, is truncated).
  - ``spatial-svd``: a 2-D KxK Conv (both sides at least 2) -> ``kh x 1`` (C -> r) -> ``1 x kw`` (r -> N).
  - ``tucker``: Tucker-2 of a Conv kernel (1-D to 3-D, larger than 1x1): 1x1 C -> r_in, the kernel
    r_in -> r_out, 1x1 r_out -> N.
  - ``cp``: a 2-D kernel (both sides at least 2) by rank-R CP: 1x1 C -> R, ``kh x 1`` depthwise, ``1 x kw`` depthwise,
    1x1 R -> N.
- Refused, with the reason in ``self.skipped``: grouped and depthwise convs, non-constant or
  non-float weights, unknown shapes, Gemm with transA, 4-D+ kernels, spatial-svd/cp with auto_pad,
  and any layer where no factorization costs fewer MACs than the layer itself (``allow_more_macs``
  lifts this last rule, e.g. to check exactness at full rank).
- ``timing=true``: each chosen layer is timed alone against its factorized chain alone (one-layer ONNX
  Runtime sessions, median of a few runs; ``passes.decompose.timing``) and left whole, with the reason
  "factorized form measured slower (x ms vs y ms)", when the chain is slower. Off by default: it
  costs two sessions per layer and is only as good as the machine is quiet.
- Ranks are multiples of ``round`` (default 8: ONNX Runtime's blocked conv kernels want channel
  counts that are multiples of 8), or the full rank.
- With calibration data (``calib`` feeds): errors measured on each layer's input covariance, SVD
  whitened, and the last layer of each chain refit by least squares to the original layer's outputs
  (``refit``, ridge ``ridge``), inputs taken from the already-factorized model. Without calibration
  data: data-free (weight error, no refit) with a note. ``holdout`` further feeds measure the error.
  With ``refit`` the error of each option is the error after refitting its last layer on the
  layer's sampled inputs (``passes.decompose.sensitivity.refit_last``), and the rewrite starts from
  that fit: the budget weighs what the refit will leave, not the data-free factorization's error.
- Model level, with calibration data and a ``macs``/``params`` target (``passes.decompose.sensitivity``;
  measured on the first ``probe`` calibration feeds, default 4, in one session where each layer's
  composed kernel is swapped in, without rewriting and before the refit of the chosen plan):
  - ``sensitivity=model`` (default): each layer's option errors are multiplied by the layer's
    sensitivity, the model's relative output error over the layer's for one probe option (an svd
    option at the median saving, whatever ``method``), so that the budget sums estimates of model
    error rather than layer errors that do not compare across layers. ``sensitivity=layer``: the
    layer errors as measured. Without calibration data the layer errors are used either way.
  - Plans: the plan over all options (model-weighted and, with ``sensitivity=model``, by layer
    errors too) and, for ``method=auto``, each method's own plans are measured at model level; the
    one with the least output error is kept. ``self.report["plans"]`` lists each with its model
    SQNR, ``self.report["plan"]`` names the winner, a note says so; ``self.report["sensitivity"]``
    lists the measured sensitivities.
Lossy; the intent is the original with each factored layer's composed kernel (``passes.decompose.intent``).
``self.layers``, ``self.skipped``, ``self.fidelity`` report what was done (see
``passes.decompose.driver``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ir.errors import UsageError
from passes.base import register
from passes.decompose import budget, candidates, sensitivity, timing, vbmf
from passes.decompose.driver import LowRankPass, fraction

Method = Literal["auto", "svd", "spatial-svd", "tucker", "cp"]


@dataclasses.dataclass(frozen=True)
class DecomposeOptions:
    macs: float = dataclasses.field(default=0.0, metadata={"check": fraction, "rule": "in [0, 1)", "doc": "fraction of the model's MACs to remove"})
    params: float = dataclasses.field(default=0.0, metadata={"check": fraction, "rule": "in [0, 1)", "doc": "fraction of the model's parameters to remove"})
    ratio: float = dataclasses.field(default=0.0, metadata={"check": fraction, "rule": "in [0, 1)", "doc": "fraction of every layer's MACs to remove"})
    energy: float = dataclasses.field(default=0.0, metadata={"check": fraction, "rule": "in [0, 1)", "doc": "per layer: keep this fraction of the output energy"})
    method: Method = dataclasses.field(default="auto", metadata={"doc": "factorization (auto: the best measured per layer)"})
    round: int = dataclasses.field(default=8, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "ranks rounded to a multiple of this"})
    candidates: int = dataclasses.field(default=12, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "ranks tried per layer and method (svd tries every multiple)"})
    refit: bool = dataclasses.field(default=True, metadata={"doc": "refit each chain's last layer on calibration data"})
    calib: int = dataclasses.field(default=16, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "calibration feeds to measure and refit on"})
    holdout: int = dataclasses.field(default=4, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "further calibration feeds to measure the error on"})
    sensitivity: Literal["model", "layer"] = dataclasses.field(default="model", metadata={"doc": "weigh each layer's errors by its measured effect on the model's outputs (model; needs calibration data) or not (layer)"})
    probe: int = dataclasses.field(default=4, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "calibration feeds on which model-level errors (sensitivities, plans) are measured"})
    ridge: float = dataclasses.field(default=1e-3, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "relative ridge regularization of the refit"})
    protect: str = dataclasses.field(default="", metadata={"doc": "|-separated name patterns of layers to keep whole"})
    allow_more_macs: bool = dataclasses.field(default=False, metadata={"doc": "also factorize where it costs more MACs (exactness checks)"})
    timing: bool = dataclasses.field(default=False, metadata={"doc": "time each chosen layer against its chain alone; keep it whole when the chain is slower"})
    vbmf: bool = dataclasses.field(default=False, metadata={"doc": "per layer: the ranks Empirical VBMF estimates from the weight (data-free)"})


@register
class DecomposePass(LowRankPass):
    name = "decompose"
    Options = DecomposeOptions
    TARGETS = (*LowRankPass.TARGETS, "vbmf")

    def __init__(self, **options):
        super().__init__(**options)
        given = [name for name in self.TARGETS if getattr(self.options, name) > 0]
        if len(given) != 1:
            raise UsageError("pass 'decompose': give exactly one of macs, params, ratio, energy (a fraction in (0, 1)) or vbmf=true")
        if self.options.vbmf and self.options.method == "cp":
            raise UsageError("pass 'decompose': vbmf estimates svd, spatial-svd and tucker ranks, not cp ranks")
        self.estimates: dict[str, dict[str, tuple[int, ...]]] = {}

    def methods(self) -> tuple[str, ...]:
        return candidates.DECOMPOSE_METHODS if self.options.method == "auto" else (self.options.method,)

    def plan_groups(self):
        if self.options.method != "auto":
            return [(self.options.method, None)]
        return [("auto", None), *((method, method) for method in candidates.DECOMPOSE_METHODS)]

    def probe_option(self, layer, options, rows, kind):
        # The same probe, an svd option, whatever the methods: so that auto weighs each method's
        # options exactly as that method alone does, and its candidate plans include that method's.
        svd = [o for o in options if o.method == "svd"] or candidates.options(
            layer, "svd", rows, multiple=self.options.round, limit=self.options.candidates, allow_more_macs=self.options.allow_more_macs)
        return sensitivity.probe_option(svd or options, kind)

    def refuse(self, layer):
        reasons = [candidates.applicable(layer, m) for m in self.methods()]
        if all(r is not None for r in reasons):
            return f"{layer.node.op_type} '{layer.name}': {'; '.join(reasons)}"
        return None

    def layer_options(self, layer, rows):
        found = []
        for method in self.methods():
            if candidates.applicable(layer, method) is None:
                found += candidates.options(layer, method, rows, multiple=self.options.round, limit=self.options.candidates,
                                            allow_more_macs=self.options.allow_more_macs)
        return found

    def choose_fixed(self, per_layer):
        if not self.options.vbmf:
            return None
        self.estimates = {}

        def estimate(layer, method):
            ranks = vbmf.method_ranks(layer, method)
            if ranks is not None:
                self.estimates.setdefault(layer.name, {})[method] = ranks
            return ranks

        chosen = budget.choose_by_estimate(per_layer, estimate)
        self.report["vbmf_ranks"] = {name: {m: list(r) for m, r in found.items()} for name, found in self.estimates.items()}
        self.note(f"ranks from Empirical VBMF of each weight (data-free; Nakajima et al. 2013), rounded up to a multiple of {self.options.round}")
        return chosen

    def left_whole(self, layer):
        if not self.options.vbmf:
            return super().left_whole(layer)
        found = ", ".join(f"{m} {','.join(map(str, r))}" for m, r in self.estimates.get(layer.name, {}).items())
        return f"left whole: no factorization at or above the VBMF rank ({found or 'no estimate for its methods'}) costs fewer MACs"

    def screen(self, picked):
        if not self.options.timing:
            return picked
        kept, slower = timing.faster_only(picked, timing.measure)
        self.skipped += slower
        self.stats["layers left whole: chain measured slower"] = len(slower)
        if slower and self.options.macs + self.options.params > 0:
            self.note(f"{len(slower)} chosen layers left whole as measured slower: the target may not be met")
        return kept
