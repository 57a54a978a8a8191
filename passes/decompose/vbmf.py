"""Data-free rank estimates: Empirical Variational Bayesian Matrix Factorization (EVBMF).

``evbmf_rank(Y)``: the rank of the global analytic EVBMF solution of a fully observed matrix
(Nakajima, Sugiyama, Babacan and Tomioka, "Global analytic solution of fully-observed variational
Bayesian matrix factorization", JMLR 14, 2013, Theorem 4 and Section 5). ``Y = B A^T + E`` with
Gaussian noise of unknown variance ``sigma2``: the noise variance is estimated by minimizing the
free energy over ``sigma2`` (one bounded scalar minimization), and a singular value ``gamma_h`` of
``Y`` survives when ``gamma_h > sqrt(M sigma2 (1 + tau) (1 + alpha / tau))``, ``alpha = L / M``
(``L <= M``), ``tau = 2.5129 sqrt(alpha)``. No data and no tuning: the rank is where the singular
values stop standing above the noise floor the matrix itself implies. Kim et al. (2016) chose
Tucker-2 ranks this way, from the two unfoldings of the kernel.

``method_ranks(layer, method)``: the estimate for each rank of a factorization, from the matrix that
the factorization truncates: ``svd`` the weight as ``[N, C*k]``, ``spatial-svd`` the kernel arranged
as ``[(c, kh), (n, kw)]``, ``tucker`` the input and output unfoldings (``(r_in, r_out)``); None for ``cp``
(no matrix to truncate).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

TAU_BAR = 2.5129  # the threshold constant of the EVBMF solution (Nakajima et al. 2013, Eq. 30)


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt(np.maximum((x - (1 + alpha)) ** 2 - 4 * alpha, 0.0)))


def _free_energy(sigma2: float, l: int, m: int, s: np.ndarray, x_bar: float) -> float:
    """The EVBMF free energy (up to constants) as a function of the noise variance alone, over all
    ``L`` singular values (so no residual term)."""
    alpha = l / m
    x = s**2 / (m * sigma2)
    above, below = x[x > x_bar], x[x <= x_bar]
    tau = _tau(above, alpha)
    energy = np.sum(below - np.log(below)) + np.sum(above - tau) + np.sum(np.log((tau + 1) / above))
    energy += alpha * np.sum(np.log(tau / alpha + 1))
    return float(energy)


def evbmf_rank(matrix: np.ndarray) -> int:
    """The rank EVBMF keeps for ``matrix`` (at least 1; the full rank for a matrix of one row)."""
    y = np.asarray(matrix, dtype=np.float64)
    if y.shape[0] > y.shape[1]:
        y = y.T
    l, m = y.shape
    if l < 2:
        return l
    s = np.linalg.svd(y, compute_uv=False)
    alpha = l / m
    tau_bar = TAU_BAR * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    # the largest rank EVBMF can return: the noise bounds come from the values beyond it
    most = min(math.ceil(l / (1 + alpha)) - 1, l) - 1
    upper = float(np.sum(s**2)) / (l * m)
    lower = max(float(s[most + 1] ** 2) / (m * x_bar), float(np.mean(s[most + 1 :] ** 2)) / m)
    if not upper > 0:
        return 1
    lower = min(max(lower, upper * 1e-12), upper)
    found = minimize_scalar(_free_energy, args=(l, m, s, x_bar), bounds=(lower, upper), method="bounded")
    threshold = math.sqrt(m * float(found.x) * (1 + tau_bar) * (1 + alpha / tau_bar))
    return max(1, int(np.sum(s > threshold)))


def method_ranks(layer, method: str) -> tuple[int, ...] | None:
    """The EVBMF estimate of each rank of ``method`` on ``layer`` (ordered like ``Option.ranks``)."""
    w = layer.weight
    n, c = w.shape[:2]
    if method == "svd":
        return (evbmf_rank(w.reshape(n, -1)),)
    if method == "spatial-svd":
        _, _, kh, kw = w.shape
        return (evbmf_rank(w.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)),)
    if method == "tucker":
        return (evbmf_rank(np.moveaxis(w, 1, 0).reshape(c, -1)), evbmf_rank(w.reshape(n, -1)))
    return None
