"""Low-rank factorizations of a layer's weight, in numpy (float64), one function per method.

Each returns a ``Factorization``: the weights of the chain of layers that replaces the original
one (in order; the last carries the bias) and the approximated weight they compute together, so that
the caller can measure its error. Shapes follow ONNX Conv weights ``[N, C, k...]`` (N outputs,
C inputs); a Gemm/MatMul weight is given as ``[N, C]`` (outputs x inputs).

- ``svd`` (any layer viewed as ``[N, C * prod(k)]``): ``W ~ B A`` through rank r: ``A`` a layer
  C -> r with the original kernel, ``B`` a 1x1 layer r -> N. With sample rows ``X`` of the layer's
  input patches, ``B = U_r`` and ``A = U_r^T W`` where ``U`` are the eigenvectors of the output
  covariance ``W X^T X W^T`` (the SVD of ``W L`` with ``X^T X = L L^T``, as SVD-LLM whitens, computed
  without factoring the input covariance): the truncation minimizes the layer's output error
  ``||X (W - W_r)^T||`` rather than the weight error, and the relative output error at every rank
  is read off the eigenvalues. Data-free (no ``X``): the plain SVD, split ``sqrt(S)`` each side.
- ``spatial_svd`` (2-D kernels, Jaderberg et al. 2014): ``W[n,c,i,j] ~ sum_r V[r,c,i] H[n,r,j]``,
  a ``kh x 1`` conv C -> r then a ``1 x kw`` conv r -> N, from the SVD of W arranged as
  ``[(c,i), (n,j)]``.
- ``tucker2`` (Kim et al. 2016): ``W ~ core x_0 U_out x_1 U_in``: 1x1 C -> r_in, the original kernel
  r_in -> r_out, 1x1 r_out -> N. HOSVD initialization refined by a few HOOI sweeps.
- ``cp`` (2-D kernels, Lebedev et al. 2015): rank-R CP decomposition by alternating least squares,
  ``W[n,c,i,j] ~ sum_r A[n,r] B[c,r] Kh[i,r] Kw[j,r]``: 1x1 C -> R, ``kh x 1`` depthwise, ``1 x kw``
  depthwise, 1x1 R -> N.
- ``decouple`` (Network Decoupling, Guo et al. 2018, for ``separable``): per input channel c, the SVD
  of ``W[:, c]`` as ``[N, prod(k)]`` gives R depthwise kernels and R pointwise columns; the R
  branches collapse into one depthwise conv with channel multiplier R (C -> C*R) and one 1x1 conv
  (C*R -> N). Exact at ``R = min(N, prod(k))``. With sample rows each channel's SVD is whitened by
  that channel's own patch covariance.
- ``decouple_pw_dw``: the other order, per output channel n: 1x1 C -> N*R, then a grouped conv with
  N groups of R inputs and the original kernel. Exact at ``R = min(C, prod(k))``.

``relative_error(W, W_r, X)``: ``||X dW^T||^2 / ||X W^T||^2``, the layer's relative output error
(noise-to-signal power, bias excluded) on the sample rows ``X``; ``X = None`` is the weight error
(data-free). Rows rather than the covariance ``X^T X``: for a 4608-feature layer the covariance
costs ``F^2`` per row to form and ``N F^2`` per error, the rows ``R F N``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg


@dataclasses.dataclass
class Factorization:
    weights: list[np.ndarray]  # one per layer of the chain, in order
    approximation: np.ndarray  # the weight the chain computes, shaped like the original


def relative_error(weight: np.ndarray, approximation: np.ndarray, rows: np.ndarray | None = None) -> float:
    w = weight.reshape(weight.shape[0], -1)
    d = w - approximation.reshape(w.shape)
    if rows is None:
        return float(np.sum(d * d) / max(np.sum(w * w), 1e-300))
    signal = rows @ w.T.astype(np.float32)
    noise = rows @ d.T.astype(np.float32)
    return float(np.sum(np.square(noise, dtype=np.float64)) / max(float(np.sum(np.square(signal, dtype=np.float64))), 1e-300))


def cholesky_factor(gram: np.ndarray) -> np.ndarray:
    """Lower-triangular L with ``G + eps I = L L^T`` (eps relative: a rank-deficient covariance,
    e.g. an input channel that is always zero, still factors)."""
    features = gram.shape[0]
    scale = max(float(np.trace(gram)) / max(features, 1), 1e-12)
    for eps in (1e-6, 1e-4, 1e-2):  # the covariance is summed in float32 per batch: not always definite
        try:
            return np.linalg.cholesky(gram + eps * scale * np.eye(features))
        except np.linalg.LinAlgError:
            continue
    return np.sqrt(scale) * np.eye(features)


class WhitenedSVD:
    """The svd factorization at any rank (``at(r)``) and the relative output error at every rank
    (``errors()[r]``), from one eigendecomposition."""

    def __init__(self, weight: np.ndarray, rows: np.ndarray | None = None):
        self.shape = weight.shape
        self.w = weight.reshape(weight.shape[0], -1)
        self.data_aware = rows is not None
        if rows is not None:
            # More outputs than inputs (a 120 -> 6625 classifier): the output covariance W G W^T has
            # rank <= inputs, so with W = Q R it is Q (R G R^T) Q^T: an inputs x inputs eigenproblem
            # instead of an outputs x outputs one (seconds, not minutes), the same eigenvectors.
            basis = np.linalg.qr(self.w)[0] if self.w.shape[0] > self.w.shape[1] else None
            mixing = basis.T @ self.w if basis is not None else self.w  # the outputs in the basis
            out = (rows @ mixing.T.astype(np.float32)).astype(np.float64)  # [R, N or F]: the layer's outputs
            values, vectors = np.linalg.eigh(out.T @ out)
            order = np.argsort(values)[::-1]
            self.energy, self.u = np.maximum(values[order], 0.0), vectors[:, order]
            if basis is not None:
                self.u = basis @ self.u
        else:
            self.u, s, self.vt = np.linalg.svd(self.w, full_matrices=False)
            self.s, self.energy = s, s**2

    def errors(self) -> np.ndarray:
        total = max(float(self.energy.sum()), 1e-300)
        tail = np.concatenate([np.cumsum(self.energy[::-1])[::-1], [0.0]])
        return tail / total

    def at(self, rank: int) -> Factorization:
        if self.data_aware:
            second = self.u[:, :rank]
            first = second.T @ self.w
        else:
            root = np.sqrt(self.s[:rank])
            first = root[:, None] * self.vt[:rank]
            second = self.u[:, :rank] * root[None, :]
        n = self.shape[0]
        first_weight = first.reshape((rank, *self.shape[1:]))
        second_weight = second.reshape((n, rank) + (1,) * (len(self.shape) - 2))
        return Factorization([first_weight, second_weight], (second @ first).reshape(self.shape))


class SpatialSVD:
    def __init__(self, weight: np.ndarray):
        n, c, kh, kw = weight.shape
        self.shape = weight.shape
        m = weight.transpose(1, 2, 0, 3).reshape(c * kh, n * kw)
        # float32: twice as fast, and the error of a truncation is far above float32 rounding
        u, s, vt = np.linalg.svd(m.astype(np.float32), full_matrices=False)
        self.u, self.s, self.vt = u.astype(np.float64), s.astype(np.float64), vt.astype(np.float64)

    def at(self, rank: int) -> Factorization:
        n, c, kh, kw = self.shape
        root = np.sqrt(self.s[:rank])
        vertical = (self.u[:, :rank] * root).T.reshape(rank, c, kh, 1)
        horizontal = (root[:, None] * self.vt[:rank]).reshape(rank, n, 1, kw).transpose(1, 0, 2, 3)
        approx = ((self.u[:, :rank] * self.s[:rank]) @ self.vt[:rank]).reshape(c, kh, n, kw).transpose(2, 0, 1, 3)
        return Factorization([vertical, horizontal], approx)


def _leading(matrix: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` leading left singular vectors (from the eigenvectors of ``M M^T``: M is wide)."""
    values, vectors = np.linalg.eigh(matrix @ matrix.T)
    return vectors[:, np.argsort(values)[::-1][:rank]]


def tucker2(weight: np.ndarray, rank_out: int, rank_in: int, sweeps: int = 3) -> Factorization:
    n, c = weight.shape[:2]
    u_in = _leading(np.moveaxis(weight, 1, 0).reshape(c, -1), rank_in)
    u_out = _leading(weight.reshape(n, -1), rank_out)
    for _ in range(sweeps):  # HOOI: each factor from the weight projected on the other
        projected = np.einsum("nc...,cs->ns...", weight, u_in, optimize=True)
        u_out = _leading(projected.reshape(n, -1), rank_out)
        projected = np.einsum("nc...,nr->cr...", weight, u_out, optimize=True)
        u_in = _leading(projected.reshape(c, -1), rank_in)
    core = np.einsum("nc...,nr,cs->rs...", weight, u_out, u_in, optimize=True)
    ones = (1,) * (weight.ndim - 2)
    first = u_in.T.reshape((rank_in, c) + ones)
    last = u_out.reshape((n, rank_out) + ones)
    approx = np.einsum("rs...,nr,cs->nc...", core, u_out, u_in, optimize=True)
    return Factorization([first, core, last], approx)


def cp(weight: np.ndarray, rank: int, iterations: int = 200, seed: int = 0, tolerance: float = 1e-7) -> Factorization:
    """CP-ALS of a ``[N, C, kh, kw]`` kernel (factors normalized every sweep; the scale goes to A),
    until the relative error changes by less than ``tolerance`` between sweeps."""
    n, c, kh, kw = weight.shape
    rng = np.random.default_rng(seed)
    dims = (n, c, kh, kw)
    factors = []
    for mode, size in enumerate(dims):
        unfolded = np.moveaxis(weight, mode, 0).reshape(size, -1)
        u = np.linalg.svd(unfolded, full_matrices=False)[0]
        start = np.zeros((size, rank))
        take = min(rank, u.shape[1])
        start[:, :take] = u[:, :take]
        if take < rank:
            start[:, take:] = rng.standard_normal((size, rank - take)) / np.sqrt(size)
        factors.append(start)
    letters = "ncij"
    norm = max(float(np.sum(weight**2)), 1e-300)
    previous = np.inf
    for _ in range(iterations):
        for mode in range(4):
            others = [m for m in range(4) if m != mode]
            spec = f"{letters},{letters[others[0]]}r,{letters[others[1]]}r,{letters[others[2]]}r->{letters[mode]}r"
            mttkrp = np.einsum(spec, weight, *(factors[m] for m in others), optimize=True)
            gram = np.ones((rank, rank))
            for m in others:
                gram *= factors[m].T @ factors[m]
            # gram is a Hadamard product of Gram matrices: symmetric positive semi-definite
            damped = gram + (1e-12 * float(np.trace(gram)) + 1e-300) * np.eye(rank)
            try:  # numpy's solve: a fraction of scipy's call overhead on these small systems
                updated = np.linalg.solve(damped, mttkrp.T).T
            except np.linalg.LinAlgError:
                updated = scipy.linalg.lstsq(damped, mttkrp.T)[0].T
            if mode != 0:
                norms = np.linalg.norm(updated, axis=0)
                norms[norms == 0] = 1.0
                updated = updated / norms
                factors[0] = factors[0] * norms
                mttkrp = mttkrp * norms  # keeps the error below in step with the rescaled A
                gram = gram * np.outer(norms, norms)
            factors[mode] = updated
        # ||W - approx||^2 from the last sweep's products, without forming the approximation
        approx_norm = float(np.sum(gram * (factors[3].T @ factors[3])))
        inner = float(np.sum(mttkrp * factors[3]))
        error = max(norm - 2 * inner + approx_norm, 0.0) / norm
        if previous - error < tolerance:
            break
        previous = error
    a, b, h, w = factors
    first = b.T.reshape(rank, c, 1, 1)
    vertical = h.T.reshape(rank, 1, kh, 1)
    horizontal = w.T.reshape(rank, 1, 1, kw)
    last = a.reshape(n, rank, 1, 1)
    approx = np.einsum("nr,cr,ir,jr->ncij", a, b, h, w, optimize=True)
    return Factorization([first, vertical, horizontal, last], approx)


class Decoupling:
    """Network Decoupling (depthwise then pointwise), for every multiplier R at once."""

    def __init__(self, weight: np.ndarray, rows: np.ndarray | None = None):
        self.shape = weight.shape
        n, c = weight.shape[:2]
        k = int(np.prod(weight.shape[2:]))
        self.parts = []  # per input channel: (u * s [N, m], v^T L^-1 [m, k])
        for channel in range(c):
            m = weight[:, channel].reshape(n, k)
            block = rows[:, channel * k : (channel + 1) * k].astype(np.float64) if rows is not None else None
            chol = cholesky_factor(block.T @ block) if block is not None else None
            u, s, vt = np.linalg.svd(m @ chol if chol is not None else m, full_matrices=False)
            if chol is not None:
                vt = scipy.linalg.solve_triangular(chol, vt.T, trans="T", lower=True).T
            self.parts.append((u * s[None, :], vt))

    @property
    def full_rank(self) -> int:
        return min(self.shape[0], int(np.prod(self.shape[2:])))

    def at(self, rank: int) -> Factorization:
        n, c = self.shape[:2]
        kernel = self.shape[2:]
        k = int(np.prod(kernel))
        depthwise = np.zeros((c, rank, k))
        pointwise = np.zeros((n, c, rank))
        for channel, (us, vt) in enumerate(self.parts):
            take = min(rank, vt.shape[0])
            depthwise[channel, :take] = vt[:take]
            pointwise[:, channel, :take] = us[:, :take]
        approx = np.einsum("ncr,crk->nck", pointwise, depthwise, optimize=True).reshape(self.shape)
        dw = depthwise.reshape((c * rank, 1, *kernel))
        pw = pointwise.reshape((n, c * rank) + (1,) * len(kernel))
        return Factorization([dw, pw], approx)


def decouple_pw_dw(weight: np.ndarray, rank: int) -> Factorization:
    n, c = weight.shape[:2]
    kernel = weight.shape[2:]
    k = int(np.prod(kernel))
    pointwise = np.zeros((n, rank, c))
    grouped = np.zeros((n, rank, k))
    for out in range(n):
        u, s, vt = np.linalg.svd(weight[out].reshape(c, k), full_matrices=False)
        take = min(rank, len(s))
        pointwise[out, :take] = (u[:, :take] * s[:take]).T
        grouped[out, :take] = vt[:take]
    approx = np.einsum("nrc,nrk->nck", pointwise, grouped, optimize=True).reshape(weight.shape)
    pw = pointwise.reshape((n * rank, c) + (1,) * len(kernel))
    return Factorization([pw, grouped.reshape((n, rank, *kernel))], approx)
