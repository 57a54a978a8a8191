"""Choosing one option (or none) per layer to meet a MAC or parameter target at the least total error.

``choose_for_target`` solves the multiple-choice knapsack: every layer may stay as it is (saving 0,
error 0) or take one of its options (saving ``before - after`` MACs or params, its measured relative
output error, or ``error(option)``: the driver also passes ``Option.model_error``, the layer error
weighted by the layer's measured sensitivity); the sum of savings must reach ``needed`` and the sum
of errors is minimized. Savings are counted in ``bins`` units of ``needed / bins``, rounded down, so the exact savings of the
solution are at least the discretized ones: the target is always met when it can be. Dynamic
programming over the bins is exact up to that rounding (AIMET's greedy search over one compression
ratio per layer is not: it cannot trade a cheap loss in one layer for a costly one in another).
When the target cannot be reached, every layer takes its largest saving and ``reached`` is False.

``choose_uniform`` (``ratio=``): per layer, the least-error option that removes at least ``ratio``
of the layer's MACs. ``choose_by_error`` (``energy=``): per layer, the cheapest option whose relative
error is at most ``1 - energy``. ``choose_by_estimate`` (``vbmf``): per layer, the cheapest option
whose every rank is at least the estimate for its method (``vbmf.method_ranks``): the first rank of
the grid at or above the estimate; methods without an estimate are not chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from passes.decompose.candidates import Option


def saving(option: Option, kind: str) -> int:
    layer = option.layer
    return (layer.macs - option.macs) if kind == "macs" else (layer.params - option.params)


def choose_for_target(per_layer: Sequence[Sequence[Option]], kind: str, needed: float, bins: int = 4000,
                      error: Callable[[Option], float] = lambda o: o.error) -> tuple[list[Option | None], bool]:
    if needed <= 0:
        return [None] * len(per_layer), True
    unit = needed / bins
    best = np.full(bins + 1, np.inf)
    best[0] = 0.0
    picks = []  # per layer: the option index (-1: keep) that produced each bin
    for options in per_layer:
        new = best.copy()
        pick = np.full(bins + 1, -1)
        for index, option in enumerate(options):
            step = int(saving(option, kind) // unit)
            if step <= 0:
                continue
            cost = error(option)
            candidate = np.full(bins + 1, np.inf)
            candidate[min(step, bins) :] = best[: bins + 1 - min(step, bins)] + cost
            if step < bins:  # savings beyond the target land in the last bin
                candidate[bins] = min(candidate[bins], float(np.min(best[bins - step :])) + cost)
            else:
                candidate[bins] = float(np.min(best)) + cost
            better = candidate < new
            new[better] = candidate[better]
            pick[better] = index
        picks.append((pick, best))
        best = new
    if not np.isfinite(best[bins]):
        most = [max(options, key=lambda o: saving(o, kind), default=None) for options in per_layer]
        return [o if o is not None and saving(o, kind) > 0 else None for o in most], False
    chosen: list[Option | None] = [None] * len(per_layer)
    state = bins
    for layer in range(len(per_layer) - 1, -1, -1):
        pick, before = picks[layer]
        index = int(pick[state])
        if index < 0:
            continue
        option = per_layer[layer][index]
        chosen[layer] = option
        step = int(saving(option, kind) // unit)
        if state < bins:
            state -= step
        else:  # came from the cheapest-error state among those that reach the last bin
            lo = max(bins - step, 0)
            state = lo + int(np.argmin(before[lo:])) if step < bins else int(np.argmin(before))
    return chosen, True


def choose_uniform(per_layer: Sequence[Sequence[Option]], ratio: float) -> list[Option | None]:
    chosen = []
    for options in per_layer:
        fitting = [o for o in options if o.macs <= (1 - ratio) * o.layer.macs]
        chosen.append(min(fitting, key=lambda o: o.error, default=None))
    return chosen


def choose_by_error(per_layer: Sequence[Sequence[Option]], energy: float) -> list[Option | None]:
    chosen = []
    for options in per_layer:
        fitting = [o for o in options if o.error <= 1 - energy]
        chosen.append(min(fitting, key=lambda o: o.macs, default=None))
    return chosen


def choose_by_estimate(per_layer: Sequence[Sequence[Option]], estimate: Callable[[object, str], tuple[int, ...] | None]) -> list[Option | None]:
    chosen = []
    for options in per_layer:
        estimates: dict[str, tuple[int, ...] | None] = {}
        fitting = []
        for option in options:
            if option.method not in estimates:
                estimates[option.method] = estimate(option.layer, option.method)
            ranks = estimates[option.method]
            if ranks is not None and all(r >= e for r, e in zip(option.ranks, ranks)):
                fitting.append(option)
        chosen.append(min(fitting, key=lambda o: o.macs, default=None))
    return chosen
