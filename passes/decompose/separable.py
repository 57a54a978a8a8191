"""``separable``: a regular KxK convolution -> depthwise KxK + pointwise 1x1 (Network Decoupling).

Rules:
- Applies to Conv with a constant weight, group=1 and a kernel larger than 1x1 (1-D to 3-D); the
  others are refused with a reason (``self.skipped``), as are layers where the rewrite would cost
  more MACs than the layer (``allow_more_macs`` lifts this, e.g. to check exactness).
- ``order=dw-pw`` (default): per input channel c, the SVD of ``W[:, c]`` (``[N, k]``) gives R depthwise
  kernels and R pointwise columns; the R branches collapse exactly into one depthwise conv with
  channel multiplier R (C -> C*R, group C, the original strides/pads/dilations) and one 1x1 conv
  (C*R -> N, with the bias). MACs ``R (k + N) / (N k)`` of the layer. Exact at ``R = min(N, k)``.
- ``order=pw-dw``: per output channel n: 1x1 C -> N*R, then a grouped conv (N groups of R) with the
  kernel. Exact at ``R = min(C, k)``. Its last layer is grouped, so it is not refit.
- Multiplier, exactly one of: ``rank=R`` (every layer, capped at its full rank), ``macs=F`` (the model
  loses at least F of its MACs at the least total measured error, as in ``decompose``),
  ``energy=E`` (per layer the smallest R keeping relative output error at most 1 - E).
- With calibration data: each channel's SVD is whitened by that channel's patch covariance, errors
  are measured on the layer's input covariance, and the pointwise layer is refit by least squares to
  the original outputs (``refit``; the option errors the budget weighs are those after a refit on
  the layer's sampled inputs). Without: data-free, with a note.
- ``sensitivity`` and ``probe`` as in ``decompose``: with calibration data and a ``macs`` target the
  errors are weighted by each layer's measured effect on the model's output, and the plans (weighted
  and by layer errors) are compared by the model's output error on the ``probe`` feeds.
Lossy; states its intent and reports like ``decompose``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ir.errors import UsageError
from passes.base import register
from passes.decompose import candidates
from passes.decompose.driver import LowRankPass, fraction


@dataclasses.dataclass(frozen=True)
class SeparableOptions:
    macs: float = dataclasses.field(default=0.0, metadata={"check": fraction, "rule": "in [0, 1)", "doc": "fraction of the model's MACs to remove"})
    rank: int = dataclasses.field(default=0, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "channel multiplier R for every layer"})
    energy: float = dataclasses.field(default=0.0, metadata={"check": fraction, "rule": "in [0, 1)", "doc": "per layer: keep this fraction of the output energy"})
    order: Literal["dw-pw", "pw-dw"] = dataclasses.field(default="dw-pw", metadata={"doc": "depthwise then pointwise, or the reverse"})
    refit: bool = dataclasses.field(default=True, metadata={"doc": "refit the pointwise layer on calibration data"})
    calib: int = dataclasses.field(default=16, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "calibration feeds to measure and refit on"})
    holdout: int = dataclasses.field(default=4, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "further calibration feeds to measure the error on"})
    sensitivity: Literal["model", "layer"] = dataclasses.field(default="model", metadata={"doc": "weigh each layer's errors by its measured effect on the model's outputs (model; needs calibration data) or not (layer)"})
    probe: int = dataclasses.field(default=4, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "calibration feeds on which model-level errors (sensitivities, plans) are measured"})
    ridge: float = dataclasses.field(default=1e-3, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "relative ridge regularization of the refit"})
    protect: str = dataclasses.field(default="", metadata={"doc": "|-separated name patterns of layers to keep whole"})
    allow_more_macs: bool = dataclasses.field(default=False, metadata={"doc": "also rewrite where it costs more MACs (exactness checks)"})


@register
class SeparablePass(LowRankPass):
    name = "separable"
    Options = SeparableOptions
    TARGETS = ("macs", "rank", "energy")

    def __init__(self, **options):
        super().__init__(**options)
        given = [name for name in self.TARGETS if getattr(self.options, name) > 0]
        if len(given) != 1:
            raise UsageError("pass 'separable': give exactly one of macs, rank, energy")

    def refuse(self, layer):
        reason = candidates.applicable(layer, "separable")
        return f"{layer.node.op_type} '{layer.name}': {reason}" if reason else None

    def layer_options(self, layer, rows):
        return candidates.options(layer, "separable", rows, multiple=1, limit=10**6, allow_more_macs=self.options.allow_more_macs,
                                  order=self.options.order)

    def choose_fixed(self, per_layer):
        if self.options.rank <= 0:
            return None
        chosen = []
        for options in per_layer:
            fitting = [o for o in options if o.ranks[0] <= self.options.rank]
            chosen.append(max(fitting, key=lambda o: o.ranks[0], default=None))
        return chosen

    def _refit(self, original, model, nodes, feeds):
        if self.options.order == "pw-dw":
            self.note("order=pw-dw: the last layer is grouped and is not refit")
            return []
        return super()._refit(original, model, nodes, feeds)
