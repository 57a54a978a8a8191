"""The steps ``decompose`` and ``separable`` share: find layers, measure, choose, rewrite, refit, report.

1. Layers: every main-graph Conv/Gemm/MatMul that ``layers.describe`` accepts and whose name does
   not match ``protect``; the others go to ``self.skipped`` with their reason.
2. Data: the first ``calib`` calibration feeds give each layer a sample of its input rows on the
   original model (``passes.reconstruct.sample_input_rows``), on which errors are measured, and
   drive the refit; the next ``holdout`` feeds measure
   the error. Without calibration data (or with generated inputs) the choice is data-free (weight
   error; a note says so) and there is no refit.
3. Options per layer (``candidates.options``) with their measured relative output errors; a layer
   with no option cheaper than itself is skipped ("no factorization costs fewer MACs"). With data
   and ``refit``, each option's last layer is refit on the sampled rows and its error measured
   again (``sensitivity.refit_last``).
4. Choice (``budget``): a MAC or params target at the least total error, a uniform ratio, or an
   energy (error) threshold per layer; or a fixed choice (``choose_fixed``: separable's rank,
   decompose's ``vbmf``). ``screen`` may then keep chosen layers whole (decompose's ``timing``).
   For a MAC or params target with data (``passes.decompose.sensitivity``): a ``ModelProbe`` on the
   first ``probe`` feeds; with ``sensitivity=model`` each layer's options are weighted by its
   measured sensitivity (``probe_option`` picks the option measured); candidate plans
   (``plan_groups``: all options, then each method alone; weighted and by layer errors) are
   measured at model level and the least output error wins (``self.report["plans"]``, ``["plan"]``).
5. Rewrite (``rewrite.replace``), then the data-aware refit of each chain's last layer: least squares
   from the inputs it gets in the compressed model to the original layer's outputs, layer after
   layer in graph order (``passes.reconstruct.refit_checked``: asymmetric, so later layers absorb
   earlier errors; kept only when the output error on held-out feeds does not grow).
6. Intent (``passes.decompose.intent``): the original with each factored layer's weight replaced
   by the composition of the factors handed to the rewrite (for a refit last layer: the weight and
   bias the refit wrote), with the last layer's bias; recorded per node position during ``call``.
7. Report: ``self.layers`` (method, ranks, MACs/params before and after, predicted error, and
   ``sqnr_db`` of the layer's output on the held-back feeds, which includes the error of earlier
   layers), ``self.skipped``, ``self.fidelity`` (model outputs on the held-back feeds).
"""

from __future__ import annotations

import fnmatch
import time

import numpy as np
import onnx_ir as ir

from ir import cost, fidelity, io
from passes.base import Pass, PassResult
from passes.decompose import budget, sensitivity
from passes.decompose.candidates import Option
from passes.decompose.intent import Chain, build as build_intent
from passes.decompose.layers import Layer, describe
from passes.decompose.rewrite import replace
from passes.reconstruct import bias_of, flat_weight, has_bias_input, refit_checked, sample_input_rows

SAMPLE_ROWS = 1024  # input rows per layer on which errors are measured (and SVD whitened)
VALIDATE_EVERY = 4
LAYER_OPS = ("Conv", "Gemm", "MatMul")
NO_DATA = ("no calibration data: ranks chosen by weight error (data-free), no refit and no model-level sensitivity; "
           "give calibration data for a data-aware choice")


def fraction(value: float) -> bool:
    return 0.0 <= value < 1.0


class LowRankPass(Pass):
    """Subclasses define ``layer_options(layer, rows) -> list[Option]`` and may refuse layers in
    ``refuse(layer) -> reason | None``."""

    lossless = False
    TARGETS = ("macs", "params", "ratio", "energy")

    def __init__(self, **options):
        super().__init__(**options)
        self.layers: list[dict] = []
        self.skipped: list[tuple[str, str]] = []
        self.fidelity: dict | None = None
        self.report: dict = {}
        self._chains: dict[int, Chain] = {}

    def intent(self, original: ir.Model):
        from passes.intent import Intent

        if not self._chains:
            return None
        return Intent(build_intent(original, self._chains), "original with each factored layer's weight replaced by the composition of its factors")

    def target(self) -> tuple[str, float] | None:
        given = [(name, getattr(self.options, name)) for name in self.TARGETS if hasattr(self.options, name) and getattr(self.options, name) > 0]
        return given[0] if given else None

    def layer_options(self, layer: Layer, rows: np.ndarray | None) -> list[Option]:  # pragma: no cover - abstract
        raise NotImplementedError

    def refuse(self, layer: Layer) -> str | None:
        return None

    def choose_fixed(self, per_layer: list[list[Option]]) -> list[Option | None] | None:
        """A choice that needs no budget (e.g. a fixed rank); None when the options decide."""
        return None

    def screen(self, picked: list[tuple[Layer, Option]]) -> list[tuple[Layer, Option]]:
        """The chosen (layer, option) pairs that are rewritten; a subclass may drop some (with a
        reason in ``self.skipped``)."""
        return picked

    def left_whole(self, layer: Layer) -> str:
        """Why a layer that has options took none of them."""
        return "left whole: the target is met at less total error without it"

    # -- the driver ----------------------------------------------------------------------------------
    def call(self, model: ir.Model) -> PassResult:
        opts = self.options
        self.layers, self.skipped, self.fidelity = [], [], None
        self.report = {}
        self._chains = {}
        positions = {node: i for i, node in enumerate(model.graph)}
        totals = cost.analyze(model)  # also infers the shapes the layer geometry needs
        layers = self._layers(model)
        self.stats["layers considered"] = len(layers)
        if not layers:
            self.note("no layer to factorize")
            return PassResult(model, modified=False)
        feeds, holdout, data_aware = self._feeds(model)
        samples = sample_input_rows(model, [layer.node for layer in layers], feeds, rows=SAMPLE_ROWS) if data_aware else {}
        per_layer = []
        for layer in layers:
            options = self.layer_options(layer, samples.get(layer.node))
            if data_aware and getattr(opts, "refit", False) and options:
                start = time.perf_counter()
                options = self._refit_options(layer, options, samples.get(layer.node))
                self._seconds("options refit", start)
            if not options:
                self.skipped.append((layer.name, "no factorization costs fewer MACs than the layer"))
            per_layer.append(options)
        chosen = self._choose(per_layer, totals, model, layers, samples, feeds if data_aware else [])
        picked = [(layer, option) for layer, option in zip(layers, chosen) if option is not None]
        for layer, options, option in zip(layers, per_layer, chosen):
            if option is None and options:
                self.skipped.append((layer.name, self.left_whole(layer)))
        picked = self.screen(picked)
        if not picked:
            self.note("the target factorizes no layer")
            return PassResult(model, modified=False)
        original = io.copy_model(model)
        last_nodes = {}
        for layer, option in picked:
            steps = option.steps()
            # copies: the intent composes what the rewrite was handed, whatever the rewrite then does
            factors = [np.array(weight, copy=True) for weight, _ in steps]
            chain = Chain(option.method, factors, None if layer.bias is None else np.array(layer.bias, np.float64))
            self._chains[positions[layer.node]] = chain
            nodes = replace(layer, option.method.split()[0], steps)
            last_nodes[nodes[-1]] = chain
        self.stats["layers factorized"] = len(picked)
        if data_aware and getattr(opts, "refit", False):
            for node in self._refit(original, model, [n for n in last_nodes if _refittable_last(n)], feeds):
                chain = last_nodes[node]
                weight = flat_weight(node)
                chain.factors[-1] = weight.reshape(chain.factors[-1].shape)
                chain.bias = bias_of(node, weight.shape[0]) if has_bias_input(node) else None
        self._report(original, model, picked, holdout, totals)
        return PassResult(model, modified=True)

    # -- steps ---------------------------------------------------------------------------------------
    def _layers(self, model: ir.Model) -> list[Layer]:
        patterns = [p for p in getattr(self.options, "protect", "").split("|") if p]
        found = []
        for node in list(model.graph):
            if node.op_type not in LAYER_OPS or node.domain not in ("", "ai.onnx"):
                continue
            names = [n for n in (node.name, *(v.name for v in node.outputs)) if n]
            if any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns):
                self.skipped.append((names[0], "protected"))
                continue
            layer = describe(node)
            reason = layer if isinstance(layer, str) else self.refuse(layer)
            if reason is not None:
                self.skipped.append((node.name or node.outputs[0].name, reason))
                continue
            found.append(layer)
        return found

    def _feeds(self, model):
        opts = self.options
        calibration = getattr(self.context, "calibration", None) if self.context is not None else None
        data_aware = calibration is not None and not getattr(calibration, "generated", False)
        if not data_aware:
            self.note(NO_DATA)
            feeds = self.calibration_feeds(model, opts.holdout, generated=max(opts.holdout, 1)) if opts.holdout else []
            return [], feeds, False
        feeds = self.calibration_feeds(model, opts.calib + opts.holdout)
        if len(feeds) <= opts.calib:
            return feeds, [], True
        return feeds[: opts.calib], feeds[opts.calib :], True

    def _choose(self, per_layer: list[list[Option]], totals, model=None, layers=(), samples=None, feeds=()) -> list[Option | None]:
        fixed = self.choose_fixed(per_layer)
        if fixed is not None:
            return fixed
        kind, amount = self.target()
        if kind == "ratio":
            return budget.choose_uniform(per_layer, amount)
        if kind == "energy":
            return budget.choose_by_error(per_layer, amount)
        total = totals.macs if kind == "macs" else totals.params
        probe = None
        if feeds and model is not None and any(per_layer):
            measured = [layer for layer, options in zip(layers, per_layer) if options]
            start = time.perf_counter()
            probe = sensitivity.ModelProbe(model, measured, feeds[: self.options.probe])
            if self.options.sensitivity == "model":
                self._weigh(per_layer, layers, samples or {}, probe, kind)
            self._seconds("sensitivity", start)
        plans = self._plans(per_layer, kind, amount * total, weighted=probe is not None and self.options.sensitivity == "model")
        if not plans:
            chosen, _ = budget.choose_for_target(per_layer, kind, amount * total)
            best = sum(budget.saving(o, kind) for o in chosen if o is not None) / max(total, 1)
            self.note(f"the target of {amount:.0%} fewer {kind} cannot be reached by factorizing: at most {best:.1%}")
            return chosen
        if probe is None:
            return plans[0][1]
        start = time.perf_counter()
        best = self._best_plan(plans, probe, kind, total)
        self._seconds("plans", start)
        return best

    def _seconds(self, step: str, start: float) -> None:
        """Time spent in the model-level steps (``self.report["model_level_seconds"]``)."""
        spent = self.report.setdefault("model_level_seconds", {})
        spent[step] = spent.get(step, 0.0) + time.perf_counter() - start

    def _refit_options(self, layer: Layer, options: list[Option], rows: np.ndarray | None) -> list[Option]:
        """Each option with its last layer refit on the layer's sampled inputs (``sensitivity.refit_last``):
        the error the budget weighs is the error after the refit that will follow, not before it."""
        if rows is None:
            return options
        target = np.asarray(rows, np.float64) @ layer.weight.reshape(layer.outputs, -1).T
        found = [sensitivity.refit_last(o, rows, self.options.ridge, target) for o in options]
        self.stats["options refit on sampled inputs"] += sum(a is not b for a, b in zip(found, options))
        return found

    def plan_groups(self) -> list[tuple[str, str | None]]:
        """(label, method) of the plans built for a MAC or params target: the plan over every option
        (method None) first, then, for a pass choosing among methods, the plan of each method alone."""
        return [(self.name, None)]

    def probe_option(self, layer: Layer, options: list[Option], rows: np.ndarray | None, kind: str) -> Option | None:
        """The option whose model error measures the layer's sensitivity (``passes.decompose.sensitivity``)."""
        return sensitivity.probe_option(options, kind)

    def _weigh(self, per_layer, layers, samples, probe, kind) -> None:
        """Sets each option's ``sensitivity`` to its layer's measured model error / layer error."""
        probes = [self.probe_option(layer, options, samples.get(layer.node), kind) if options else None
                  for layer, options in zip(layers, per_layer)]
        ratios, rows = sensitivity.weights(probe, probes)
        for options, ratio in zip(per_layer, ratios):
            for option in options:
                option.sensitivity = ratio
        self.report["sensitivity"] = rows
        self.stats["layers weighted by measured model sensitivity"] = len(rows)

    def _plans(self, per_layer, kind, needed, *, weighted: bool) -> list[tuple[str, list[Option | None]]]:
        """The candidate plans that reach the target, without duplicates, the mixed weighted one first."""
        errors = [("model-weighted", lambda o: o.model_error)] if weighted else []
        errors.append(("layer errors", lambda o: o.error))
        plans, seen = [], set()
        for label, method in self.plan_groups():
            subset = per_layer if method is None else [[o for o in options if o.method == method] for options in per_layer]
            if method is not None and not any(subset):
                continue
            for how, error in errors:
                chosen, reached = budget.choose_for_target(subset, kind, needed, error=error)
                key = tuple(id(o) if o is not None else None for o in chosen)
                name = f"{label}, {how}" if len(errors) > 1 else label
                if not reached:
                    self.report.setdefault("plans_short_of_target", []).append(name)
                elif key in seen:
                    self.report.setdefault("plans_same_as_another", []).append(name)
                else:
                    seen.add(key)
                    plans.append((name, chosen))
        return plans

    def _best_plan(self, plans, probe, kind, total) -> list[Option | None]:
        """The plan with the least model output error on the probe feeds (measured before the refit of step 5)."""
        rows = []
        for label, chosen in plans:
            picked = [o for o in chosen if o is not None]
            error = probe.error(picked)
            rows.append({"plan": label, "model_sqnr_db": sensitivity.to_db(error), "model_error": error,
                         "sum_layer_error": sum(o.error for o in picked), "estimated_model_error": sum(o.model_error for o in picked),
                         "layers": len(picked), f"{kind}_saved": sum(budget.saving(o, kind) for o in picked) / max(total, 1)})
        best = min(range(len(rows)), key=lambda i: rows[i]["model_error"])  # ties: the earlier (mixed) plan
        self.report["plans"] = rows
        self.report["plan"] = rows[best]["plan"]
        self.stats["model probe runs"] = probe.runs
        if len(rows) > 1:
            others = "; ".join(f"{r['plan']} {r['model_sqnr_db']:.2f} dB" for i, r in enumerate(rows) if i != best)
            self.note(f"plan '{rows[best]['plan']}' chosen: model output SQNR {rows[best]['model_sqnr_db']:.2f} dB on {len(probe.feeds)} "
                      f"calibration feeds before the refit, the best of {len(rows)} plans ({others})")
        return plans[best][1]

    def _refit(self, original, model, nodes, feeds) -> list[ir.Node]:
        """Refit ``nodes``; the nodes of ``model`` that hold refit weights afterwards."""
        if not nodes:
            return []
        done = refit_checked(original, model, nodes, feeds, ridge=self.options.ridge, validate_every=VALIDATE_EVERY)
        self.report["refit"] = done.result.layer_reports
        self.report["refit_check"] = done.check
        if done.result.skipped:
            self.stats["layers not refit: fewer calibration rows than features"] = done.result.skipped
        if done.result.rejected:
            self.stats["layers not refit: no lower error on held-out calibration feeds"] = done.result.rejected
        if not done.accepted and done.check is not None:
            self.note(f"refit discarded: output SQNR on {done.check['feeds']} held-out calibration feeds "
                      f"{done.check['sqnr_db_refit']:.2f} dB < {done.check['sqnr_db_unrefit']:.2f} dB without it")
            self.stats["layers refit"] = 0
            return []
        self.stats["layers refit"] = done.result.layers
        return list(done.written) if done.accepted else []

    def _report(self, original, model, picked, holdout, totals) -> None:
        layer_sqnr = {}
        if holdout:
            names = [layer.node.outputs[0].name for layer, _ in picked]
            layer_sqnr = {name: summary["sqnr_db"] for name, summary in fidelity.measure_values(original, model, names, holdout).items()}
            self.fidelity = fidelity.measure(original, model, holdout)
            text = ", ".join(f"{k} {v:.4g}" for k, v in self.fidelity.items() if isinstance(v, float))
            self.note(f"output error on {len(holdout)} held-back calibration feeds: {text}")
        for layer, option in picked:
            row = {"layer": layer.name, "op": layer.node.op_type, "action": option.action, "method": option.method,
                   "ranks": list(option.ranks), "params_before": int(layer.params), "params_after": int(option.params),
                   "macs_before": int(layer.macs), "macs_after": int(option.macs),
                   "predicted_sqnr_db": sensitivity.to_db(option.error)}
            name = layer.node.outputs[0].name
            if name in layer_sqnr:
                row["sqnr_db"] = float(layer_sqnr[name])
            self.layers.append(row)
        saved_macs = sum(r["macs_before"] - r["macs_after"] for r in self.layers)
        saved_params = sum(r["params_before"] - r["params_after"] for r in self.layers)
        self.report.update(macs_before=totals.macs, macs_after=totals.macs - saved_macs,
                           params_before=totals.params, params_after=totals.params - saved_params)
        self.stats["macs before"], self.stats["macs after"] = totals.macs, totals.macs - saved_macs
        self.stats["params before"], self.stats["params after"] = totals.params, totals.params - saved_params
        for method in sorted({r["method"] for r in self.layers}):
            self.stats[f"layers by {method}"] = sum(r["method"] == method for r in self.layers)


def _refittable_last(node: ir.Node) -> bool:
    return node.op_type != "Conv" or node.attributes.get_int("group", 1) == 1

