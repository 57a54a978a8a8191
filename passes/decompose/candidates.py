"""Candidate factorizations of one layer: (method, ranks) -> MACs, params, measured error, chain.

For each method that applies to a layer (``applicable``), ``options`` lists the ranks that are
multiples of ``multiple`` (plus the full rank, which is exact), keeps those whose factorized form
costs fewer MACs than the layer (all of them with ``allow_more_macs``), thins them to at most
``limit`` evenly spaced ranks, and measures each one's relative output error on sample rows of the
layer's input (``factorize.relative_error``; the weight error when there are none). The chosen option's
``steps()`` are the weights and conv attributes of the chain (``rewrite.replace``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from passes.decompose import factorize as fz
from passes.decompose.layers import Layer
from passes.decompose.rewrite import conv_attributes, pointwise_attributes

DECOMPOSE_METHODS = ("svd", "spatial-svd", "tucker", "cp")


@dataclasses.dataclass
class Option:
    layer: Layer
    method: str
    ranks: tuple[int, ...]
    macs: int
    params: int
    error: float  # relative output error of the layer (noise / signal power)
    steps: Callable[[], list[tuple[np.ndarray, dict]]]
    sensitivity: float = 1.0  # model error per unit of layer error (``passes.decompose.sensitivity``)

    @property
    def model_error(self) -> float:
        """The model-level error this option is estimated to cause: ``error * sensitivity``."""
        return self.error * self.sensitivity

    @property
    def action(self) -> str:
        kind = "ranks" if len(self.ranks) > 1 else "multiplier" if self.method.startswith("separable") else "rank"
        return f"{self.method} {kind} {','.join(map(str, self.ranks))}"


def applicable(layer: Layer, method: str) -> str | None:
    """None when ``method`` applies to the layer, else the reason it does not."""
    conv2d = layer.kind == "conv" and len(layer.kernel) == 2
    if method == "svd":
        return None
    if layer.kind != "conv":
        return f"{method} needs a convolution (svd applies to {layer.kind})"
    if layer.kernel_size == 1:
        return f"{method} needs a kernel larger than 1x1 (svd applies)"
    if method in ("spatial-svd", "cp", "separable"):
        if method != "separable" and not conv2d:
            return f"{method} needs a 2-D kernel"
        if method in ("spatial-svd", "cp") and min(layer.kernel) < 2:
            # For a 1xK kernel one of CP's two depthwise layers is a per-channel scale: the chain is
            # svd/tucker with an extra layer, and CP-ALS is the slowest factorization to compute.
            return f"{method} needs a kernel of at least 2 in both axes"
        if method != "separable" and layer.auto_pad != "NOTSET":
            return f"{method} splits the padding per axis: auto_pad={layer.auto_pad} is not handled"
    return None


def rank_grid(full: int, multiple: int, limit: int) -> list[int]:
    ranks = list(range(multiple, full, multiple)) + [full]
    if len(ranks) <= limit:
        return ranks
    picks = np.unique(np.round(np.linspace(0, len(ranks) - 1, limit)).astype(int))
    return [ranks[i] for i in picks]


def _cheaper(layer: Layer, ranks, cost, allow_more: bool):
    return [r for r in ranks if allow_more or cost(r)[0] < layer.macs]


def options(layer: Layer, method: str, rows: np.ndarray | None, *, multiple: int, limit: int, allow_more_macs: bool = False,
            order: str = "dw-pw") -> list[Option]:
    w = layer.weight
    n, c = layer.outputs, layer.inputs
    if method == "svd":
        full = min(n, c * layer.kernel_size)
        svd = fz.WhitenedSVD(w, rows)
        errors = svd.errors()
        ranks = _cheaper(layer, range(1, full + 1), layer.svd_cost, allow_more_macs)
        ranks = [r for r in rank_grid(full, multiple, 10**9) if r in set(ranks)]

        def svd_steps(r):
            f = svd.at(r)
            if layer.kind != "conv":
                return [(f.weights[0], {}), (f.weights[1], {})]
            return [(f.weights[0], conv_attributes(layer)), (f.weights[1], pointwise_attributes(layer))]

        return [Option(layer, "svd", (r,), *layer.svd_cost(r), float(errors[r]), lambda r=r: svd_steps(r)) for r in ranks]
    if method == "spatial-svd":
        kh, kw = layer.kernel
        full = min(c * kh, n * kw)
        spatial = fz.SpatialSVD(w)
        ranks = _cheaper(layer, rank_grid(full, multiple, limit), layer.spatial_cost, allow_more_macs)

        def spatial_steps(f):
            return [(f.weights[0], conv_attributes(layer, kernel_axes=(0,))), (f.weights[1], conv_attributes(layer, kernel_axes=(1,)))]

        found = []
        for r in ranks:
            f = spatial.at(r)
            found.append(Option(layer, "spatial-svd", (r,), *layer.spatial_cost(r), fz.relative_error(w, f.approximation, rows),
                                lambda f=f: spatial_steps(f)))
        return found
    if method == "tucker":
        fractions = rank_grid(64, 1, limit) if limit < 64 else list(range(1, 65))
        pairs = []
        for q in fractions:
            r_out = min(n, max(multiple, int(np.ceil(q / 64 * n / multiple)) * multiple))
            r_in = min(c, max(multiple, int(np.ceil(q / 64 * c / multiple)) * multiple))
            if (r_out, r_in) not in pairs and (allow_more_macs or layer.tucker_cost(r_out, r_in)[0] < layer.macs):
                pairs.append((r_out, r_in))

        def tucker_steps(f):
            return [(f.weights[0], pointwise_attributes(layer)), (f.weights[1], conv_attributes(layer)), (f.weights[2], pointwise_attributes(layer))]

        found = []
        for r_out, r_in in pairs:
            f = fz.tucker2(w, r_out, r_in)
            found.append(Option(layer, "tucker", (r_in, r_out), *layer.tucker_cost(r_out, r_in), fz.relative_error(w, f.approximation, rows),
                                lambda f=f: tucker_steps(f)))
        return found
    if method == "cp":
        per_rank = layer.cp_cost(1)[0]  # CP's MACs grow linearly with the rank
        full = max(multiple, min(4 * max(n, c), (layer.macs - 1) // per_rank))
        # CP-ALS is the slowest factorization: half as many ranks as the others
        ranks = _cheaper(layer, rank_grid(full, multiple, max(1, limit // 2)), layer.cp_cost, allow_more_macs)

        def cp_steps(f, r):
            vertical = {**conv_attributes(layer, kernel_axes=(0,)), "group": r}
            horizontal = {**conv_attributes(layer, kernel_axes=(1,)), "group": r}
            return [(f.weights[0], pointwise_attributes(layer)), (f.weights[1], vertical), (f.weights[2], horizontal), (f.weights[3], pointwise_attributes(layer))]

        found = []
        for r in ranks:
            f = fz.cp(w, r, iterations=100)
            found.append(Option(layer, "cp", (r,), *layer.cp_cost(r), fz.relative_error(w, f.approximation, rows), lambda f=f, r=r: cp_steps(f, r)))
        return found
    if method == "separable":
        k = layer.kernel_size
        if order == "dw-pw":
            decoupling = fz.Decoupling(w, rows)
            full, cost = min(n, k), layer.decouple_cost
        else:
            full, cost = min(c, k), layer.decouple_pw_dw_cost
        ranks = _cheaper(layer, range(1, full + 1), cost, allow_more_macs)

        def separable_steps(f, r):
            if order == "dw-pw":
                return [(f.weights[0], {**conv_attributes(layer), "group": c}), (f.weights[1], pointwise_attributes(layer))]
            return [(f.weights[0], pointwise_attributes(layer)), (f.weights[1], {**conv_attributes(layer), "group": n})]

        found = []
        for r in ranks:
            f = decoupling.at(r) if order == "dw-pw" else fz.decouple_pw_dw(w, r)
            found.append(Option(layer, f"separable {order}", (r,), *cost(r), fz.relative_error(w, f.approximation, rows),
                                lambda f=f, r=r: separable_steps(f, r)))
        return found
    raise ValueError(method)
