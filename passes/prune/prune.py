"""prune: remove whole channels (filters) of coupled layers, then refit the layers that read them.

Rules:
- Groups come from the channel dependency analysis (``ir.channel_groups``): the channels a Conv
  produces and every layer, normalization, constant, Concat segment and residual branch they reach
  are removed together. Unprunable groups (a graph input or output, a channel shuffle, a reduction
  over channels, attention, anything the analysis cannot prove) are left alone and counted by reason.
- Exactly one target: ``ratio`` (fraction of the prunable channels), ``macs`` or ``params`` (fraction
  of the model's MACs / parameters to remove). Channels are ranked globally by ``importance``
  (normalized per group; the default ``importance=auto`` is ``reconstruction`` when calibration data
  are given and ``l1``, with a note, when they are not: on PP-OCRv4 rec at 30% fewer MACs with 64
  calibration images ``l1`` kept 0.598 character accuracy, ``activation`` 0.993; with 32 images and
  the refit, ``reconstruction`` and ``activation`` both keep 0.991 on rec (output SQNR 19.2 against
  17.4 dB), and on the PP-OCRv4 detector ``reconstruction`` keeps F-score 0.951 (19.5 dB) where
  ``activation`` leaves 0.000 (0.0 dB): ``docs/bench_lowrank.md``), with ``uniform=true`` every group loses ``ratio`` of its channels instead.
  ``max_layer_ratio`` caps the fraction removed from one group, ``round`` (default 8) rounds kept
  counts up to a multiple (a group smaller than that is kept whole), ``protect`` (``|``-separated fnmatch patterns on node or output names) keeps the groups
  touching matching layers whole.
- ``reconstruct=true`` refits every Conv/Gemm/MatMul whose input lost channels by regularized least
  squares on calibration data, so that its outputs match the original model's
  (``passes.reconstruct``). Every 4th calibration feed is held out per layer to choose the
  ridge (``ridge`` times 1 to 1e6); a layer whose refit does not lower the error on those feeds keeps
  its pruned weights (the ``refit`` key of its row in ``self.layers`` lists its errors). The final fit uses all
  feeds, and the whole refit is discarded when the model's output SQNR on the held-out feeds is
  still lower with it than without (a check biased towards the refit: a discard is a reliable signal).
  ``activation``, ``reconstruction`` and ``reconstruct=true`` need calibration data; without any,
  generated inputs are used and a note says so.
- The first ``calib`` calibration feeds drive importance and reconstruction; the next ``holdout``
  feeds (when there are any) measure the output error against the unpruned model: SQNR, cosine and
  top-1 agreement go to the notes and ``self.fidelity``.
The pass is lossy; its intent (``passes.prune.intent``) is the original with the removed channels'
consumer weights zeroed and the refitted weights substituted. ``self.layers`` has a row per layer that lost channels (its outputs: a producer
of the group; its inputs: a consumer), with the group, its channels before (``channels``) and after
(``kept``), the criterion (``why``) and, for refit layers, the refit's errors (``refit``);
``self.skipped`` names the groups left whole and why; the statistics hold the cost model's MACs and
parameters before and after.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Literal

import numpy as np
import onnx_ir as ir

from ir import channel_groups, io
from ir.fidelity import describe, measure as measure_fidelity
from ir.errors import UsageError
from passes.base import Pass, PassResult, layer_costs, layer_name, layer_row, register
from passes.prune import importance as imp
from passes.prune.apply import remove_channels
from passes.prune.intent import PruneIntent, Refit
from passes.reconstruct import bias_of, flat_weight, has_bias_input, refit_checked
from passes.prune.selection import CostModel, select

Importance = Literal["auto", "l1", "l2", "bn", "activation", "reconstruction"]
VALIDATE_EVERY = 4  # every 4th calibration feed is held out to check the refit


def _fraction(value: float) -> bool:
    return 0.0 <= value < 1.0


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    ratio: float = dataclasses.field(default=0.0, metadata={"check": _fraction, "rule": "in [0, 1)", "doc": "fraction of prunable channels to remove"})
    macs: float = dataclasses.field(default=0.0, metadata={"check": _fraction, "rule": "in [0, 1)", "doc": "fraction of MACs to remove"})
    params: float = dataclasses.field(default=0.0, metadata={"check": _fraction, "rule": "in [0, 1)", "doc": "fraction of parameters to remove"})
    importance: Importance = dataclasses.field(default="auto", metadata={"doc": "channel importance criterion (auto: reconstruction with calibration data, else l1)"})
    uniform: bool = dataclasses.field(default=False, metadata={"doc": "remove `ratio` of every group instead of ranking globally"})
    # 8, not 1: ONNX Runtime runs a convolution with its fast blocked (NCHWc) kernels only when the
    # channel counts are multiples of 8; odd counts fall back to im2col + GEMM with layout reorders,
    # which ate the whole gain on PP-OCRv4 rec (30% fewer MACs, 1% faster; 16% faster with 8).
    round: int = dataclasses.field(default=8, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "kept channel counts rounded up to a multiple of this (8 keeps ORT's blocked conv kernels)"})
    max_layer_ratio: float = dataclasses.field(default=0.75, metadata={"check": lambda v: 0.0 < v < 1.0, "rule": "in (0, 1)", "doc": "most a group may lose"})
    protect: str = dataclasses.field(default="", metadata={"doc": "|-separated name patterns of layers to keep whole"})
    reconstruct: bool = dataclasses.field(default=True, metadata={"doc": "refit consuming layers by least squares on calibration data"})
    calib: int = dataclasses.field(default=16, metadata={"check": lambda v: v >= 1, "rule": "at least 1", "doc": "calibration feeds for importance and reconstruction"})
    holdout: int = dataclasses.field(default=4, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "further calibration feeds to measure the error on"})
    ridge: float = dataclasses.field(default=1e-3, metadata={"check": lambda v: v >= 0, "rule": "non-negative", "doc": "relative ridge regularization of the refit"})


@register
class PruneChannelsPass(Pass):
    name = "prune"
    Options = PruneOptions
    lossless = False

    def __init__(self, **options):
        super().__init__(**options)
        targets = [name for name in ("ratio", "macs", "params") if getattr(self.options, name) > 0]
        if len(targets) != 1:
            raise UsageError("pass 'prune': give exactly one of ratio, macs, params (a fraction in (0, 1))")
        if self.options.uniform and targets != ["ratio"]:
            raise UsageError("pass 'prune': uniform=true needs ratio=")
        self.target = targets[0]
        self._intent: PruneIntent | None = None

    def intent(self, original: ir.Model):
        from passes.intent import Intent

        if self._intent is None:
            return None
        refit = " and refitted weights substituted" if self._intent.refits else ""
        return Intent(self._intent.build(original), f"original with removed channels' consumer weights zeroed{refit}")

    def call(self, model: ir.Model) -> PassResult:
        opts = self.options
        self.importance = self._resolve_importance()
        self._intent = None
        analysis = channel_groups.analyze(model)
        groups = self._prunable(analysis)
        self.stats["groups"] = len([g for g in analysis.groups() if g.producers])
        self.stats["groups prunable"] = len(groups)
        if not groups:
            self.note("no prunable channel group")
            return PassResult(model, modified=False)
        feeds, holdout = self._feeds(model)
        original = io.copy_model(model) if (opts.reconstruct or holdout) else None
        scores, criterion = self._scores(model, analysis, groups, feeds)
        cost = CostModel(model, analysis)
        amount = getattr(opts, self.target)
        keep = select(groups, scores, cost, target=self.target, amount=amount, max_layer_ratio=opts.max_layer_ratio,
                      multiple=opts.round, uniform=opts.uniform)
        if not keep:
            self.note("the target removes no channel")
            return PassResult(model, modified=False)
        self._record(analysis, groups, keep, criterion, cost)
        costs_before = layer_costs(model, infer_shapes=False)
        consumers = {a.node for g in groups if g.id in keep for a in g.consumers}
        kept_outputs = {a.node: channel_groups.kept_indices(a.layout, keep, analysis.root)
                        for a in analysis.actions if a.kind == "output" and a.node in consumers}
        self._intent = PruneIntent.record(model, analysis, keep)
        positions = {node: i for i, node in enumerate(model.graph)}
        removed = remove_channels(model, analysis, keep)
        self.stats["channels removed"] = removed
        self.stats["groups pruned"] = len(keep)
        self._refit_nodes: list[ir.Node] = []
        refits = self._reconstruct(original, model, consumers, feeds, kept_outputs) if opts.reconstruct else {}
        for node in self._refit_nodes:
            weight = flat_weight(node)
            self._intent.refits[positions[node]] = Refit(weight, bias_of(node, weight.shape[0]) if has_bias_input(node) else None)
        self._layer_rows(groups, keep, criterion, costs_before, layer_costs(model), refits)
        if holdout:
            self._measure(original, model, holdout)
        return PassResult(model, modified=True)

    # -- steps -----------------------------------------------------------------------------------
    def _resolve_importance(self) -> str:
        if self.options.importance != "auto":
            return self.options.importance
        calibration = getattr(self.context, "calibration", None) if self.context is not None else None
        if calibration is not None and not getattr(calibration, "generated", False):
            return "reconstruction"
        self.note("importance=auto without calibration data: channels ranked by l1 (give calibration data for reconstruction importance)")
        return "l1"

    def _prunable(self, analysis) -> list:
        patterns = [p for p in self.options.protect.split("|") if p]
        groups = []
        for group in analysis.groups():
            if not group.producers:
                continue
            if not group.prunable:
                for reason in group.reasons[:1] or ["fewer than two channels"]:
                    self.stats[f"unprunable: {_reason_kind(reason)}"] += 1
                    self.skipped.append((_group_label(group), reason))
                continue
            layers = [a.node for a in (*group.producers, *group.consumers, *group.followers)]
            names = [n for node in layers for n in (node.name, *(v.name for v in node.outputs)) if n]
            hit = next((p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)), None)
            if hit:
                self.stats["unprunable: protected"] += 1
                self.skipped.append((_group_label(group), f"protected (matches '{hit}')"))
                continue
            groups.append(group)
        return groups

    def _feeds(self, model):
        data_aware = self.options.reconstruct or self.importance in ("activation", "reconstruction")
        warning = "calibration data are generated random inputs: importance and reconstruction do not reflect real data"
        feeds = self.calibration_feeds(model, self.options.calib + self.options.holdout, generated=8, warning=warning if data_aware else None)
        if len(feeds) <= self.options.calib:
            return feeds, []
        return feeds[: self.options.calib], feeds[self.options.calib :]

    def _scores(self, model, analysis, groups, feeds) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        kind = self.importance
        criterion = {g.id: kind for g in groups}
        scores: dict[int, np.ndarray] = {}
        if kind == "activation":
            stats = imp.activation_stats(model, analysis, groups, feeds)
            scores = {gid: s["mean_abs"] for gid, s in stats.items()}
        elif kind == "reconstruction":
            scores = imp.reconstruction_scores(model, analysis, groups, feeds)
        elif kind == "bn":
            scores = {g.id: s for g in groups if (s := imp.bn_scales(g)) is not None}
        elif kind in ("l1", "l2"):
            scores = {g.id: imp.weight_norms(g, 1 if kind == "l1" else 2) for g in groups}
        missing = [g for g in groups if g.id not in scores]
        if missing:
            self.note(f"{len(missing)} group(s) have no {kind} score (no BN / no refittable consumer): ranked by l1")
        for group in missing:
            scores[group.id] = imp.weight_norms(group, 1)
            criterion[group.id] = "l1"
        if kind != "reconstruction":
            scores = {gid: imp.normalize(s) for gid, s in scores.items()}
        else:
            for group in missing:
                scores[group.id] = imp.normalize(scores[group.id]) * float(np.median([np.median(s) for s in scores.values()]))
        return scores, criterion

    def _record(self, analysis, groups, keep, criterion, cost: CostModel) -> None:
        counts = {gid: len(ids) for gid, ids in keep.items()}
        macs_after, params_after = cost.after(counts)
        for group in groups:
            if group.id not in keep:
                continue
            layers = [channel_groups.node_label(a.node) for a in group.producers]
            more = f" +{len(layers) - 1}" if len(layers) > 1 else ""
            self.note(f"group {group.id} ({layers[0]}{more}): {group.channels} -> {len(keep[group.id])} channels, lowest {criterion[group.id]}")
        self.stats["macs before"], self.stats["macs after"] = cost.macs, int(macs_after)
        self.stats["params before"], self.stats["params after"] = cost.params, int(params_after)

    def _layer_rows(self, groups, keep, criterion, before, after, refits: dict[str, dict]) -> None:
        """A row per layer that lost output channels (the group's producers), then per layer that lost
        input channels only (its consumers)."""
        seen = set()
        for side, action in (("producers", "output"), ("consumers", "input")):
            for group in groups:
                if group.id not in keep:
                    continue
                kept = len(keep[group.id])
                for node in dict.fromkeys(a.node for a in getattr(group, side)):
                    if node in seen or node not in before:
                        continue
                    seen.add(node)
                    row = layer_row(node, f"pruned {group.channels - kept}/{group.channels} {action} channels", before[node], after.get(node, before[node]),
                                    group=group.id, channels=group.channels, kept=kept, why=f"lowest {criterion[group.id]} importance")
                    if layer_name(node) in refits:
                        row["refit"] = refits[layer_name(node)]
                    self.layers.append(row)

    def _reconstruct(self, original, model, consumers, feeds, kept_outputs) -> dict[str, dict]:
        """Refit the consumers (``passes.reconstruct.refit_checked``: on a copy, kept only when the
        output error on the feeds held out per layer is not higher with the refit: each layer can
        improve on its own held-out rows while the whole network gets worse, random-weight ResNet-50
        at 128, SQNR 3.96 -> 3.27 dB)."""
        done = refit_checked(original, model, list(consumers), feeds, ridge=self.options.ridge,
                             kept_outputs=kept_outputs, validate_every=VALIDATE_EVERY)
        result = done.result
        refits = {report["layer"]: report for report in result.layer_reports}
        if result.skipped:
            self.stats["layers not refit: fewer calibration rows than features"] = result.skipped
        if result.rejected:
            self.stats["layers not refit: no lower error on held-out calibration feeds"] = result.rejected
        if done.check is not None:
            refit, unrefit = done.check["sqnr_db_refit"], done.check["sqnr_db_unrefit"]
            self.note(f"refit check on {done.check['feeds']} held-out calibration feeds: output SQNR {refit:.2f} dB refit, {unrefit:.2f} dB without")
            if not done.accepted:
                self.note(f"refit discarded: output SQNR on {done.check['feeds']} held-out calibration feeds "
                          f"{refit:.2f} dB < {unrefit:.2f} dB without it")
                self.stats["refits discarded: higher output error on held-out calibration feeds"] += 1
                self.stats["layers refit"] = 0
                return refits
        # the nodes of ``model`` that now hold refitted weights (the intent substitutes them)
        self._refit_nodes = list(done.written)
        self.stats["layers refit"] = result.layers
        return refits

    def _measure(self, original, model, holdout) -> None:
        self.fidelity = measure_fidelity(original, model, holdout)
        self.note(f"output error on {len(holdout)} held-back calibration feeds: {describe(self.fidelity)}")
        self.stats["sqnr_db x100"] = int(round(100 * self.fidelity["sqnr_db"])) if np.isfinite(self.fidelity["sqnr_db"]) else 0


def _group_label(group) -> str:
    producers = [channel_groups.node_label(a.node) for a in group.producers]
    return producers[0] + (f" +{len(producers) - 1}" if len(producers) > 1 else "") if producers else f"group {group.id}"


def _reason_kind(reason: str) -> str:
    """A reason without the node name, for counting."""
    for marker in ("graph input", "graph output", "grouped", "heads or shuffle groups", "attention", "channel shuffle", "Shape", "reduces", "normalizes",
                   "computed target shape", "untracked", "does not model", "LRN", "mixes"):
        if marker in reason:
            return marker
    return reason.split("'")[0].strip()
