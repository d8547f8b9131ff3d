"""Starting values for θ read off the cross-products (stage 4's first step).

lme4 starts every fit at λ = I, far from most optima, and BOBYQA spends most
of its evaluations getting near.  A moment estimate from the blocks that
stage 2 computed anyway costs no pass over the rows and, over the 49
reference models, roughly halves the evaluations (InstEval: 109 → 30),
reaching the same optimum.

For each term, the per-level least-squares fit of the residuals of the
ordinary least-squares fit on the term's columns gives b̂ₗ = Dₗ⁻¹sₗ
(Dₗ = ZₗᵀZₗ, sₗ = Zₗᵀr), whose spread is Σ_b + σ²Dₗ⁻¹ on average: hence

    Σ_b ≈ mean(b̂ₗb̂ₗᵀ) − σ² mean(Dₗ⁻¹),

with σ² the smallest of the terms' pooled within-level residual variances.
Λ is the Cholesky factor of Σ_b/σ² after its eigenvalues are floored.  The
estimate ignores the other terms, which is why it is only a start.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .blocks import CrossProducts
from .smallmatrix import batched_determinant_inverse, batched_matmul
from .terms import RandomEffectsTerm

# Eigenvalues of Σ_b/σ² are floored at this fraction of the largest (or of 1):
# a start on the boundary would stall BOBYQA's first steps.
_EIGEN_FLOOR = 1e-4


def moment_start(cp: CrossProducts, terms: list[RandomEffectsTerm]) -> np.ndarray | None:
    """θ from moment estimates of the variance components, or None if they fail.

    The y blocks of ``cp`` must hold the residuals of the least-squares fit
    (``cp.beta_offset`` set), or the response itself when X has no columns.
    """
    return MomentStart(cp, terms).theta(cp)


class MomentStart:
    """The part of :func:`moment_start` that does not depend on the response.

    The per-level inverses of ZⱼᵀZⱼ are read once; :meth:`theta` then gives the
    start for the y blocks of any cross-products on the same design (a refit
    to many responses reads them once).
    """

    def __init__(self, cp: CrossProducts, terms: list[RandomEffectsTerm]) -> None:
        self.terms = terms
        # Per term: the levels of full rank (None: all), D⁻¹ on them, its mean, their count.
        self.parts: list[tuple[np.ndarray | None, np.ndarray, np.ndarray, int]] | None = []
        for j, term in enumerate(terms):
            d = cp.diag[j]
            q = term.q
            scale = np.abs(d).reshape(len(d), -1).max(axis=1)
            det, inverses = batched_determinant_inverse(d)
            full_rank = det > 1e-10 * np.maximum(scale, 1.0) ** q
            m = int(np.count_nonzero(full_rank))
            if m == 0:
                self.parts = None
                return
            if m < len(d):
                self.parts.append((full_rank, inverses[full_rank], None, m))
            else:
                self.parts.append((None, inverses, None, m))
        self.parts = [(keep, d_inv, d_inv.mean(axis=0), m) for keep, d_inv, _, m in self.parts]

    def theta(self, cp: CrossProducts) -> np.ndarray | None:
        """The moment start for the y blocks of ``cp`` (see :func:`moment_start`)."""
        if self.parts is None or (cp.n_fixed and cp.beta_offset is None):
            return None
        rss = float(cp.xx[-1, -1])
        n = cp.n_obs
        within, spread = [], []
        for j, (term, (keep, d_inv, d_inv_mean, m)) in enumerate(
            zip(self.terms, self.parts, strict=True)
        ):
            s = cp.xz[j][-1]  # (levels, q): Σ z·r per level
            if keep is not None:
                s = s[keep]
            b = batched_matmul(d_inv, s[:, :, None])[:, :, 0]
            explained = float(np.vdot(b, s))
            dof = max(n - m * term.q, 1)
            within.append(max((rss - explained) / dof, 1e-12 * rss / max(n, 1)))
            spread.append((b.T @ b / m, d_inv_mean))
        sigma2 = min(within)
        if not (np.isfinite(sigma2) and sigma2 > 0):
            return None
        thetas = []
        for term, (bb, d_inv_mean) in zip(self.terms, spread, strict=True):
            relative = (bb - sigma2 * d_inv_mean) / sigma2
            if term.q == 1:
                # The scalar case of the floor and the factor below (numpy's eigh
                # and cholesky cost more than the rest of the start).
                value = float(relative[0, 0])
                lam = np.array([[np.sqrt(max(value, _EIGEN_FLOOR * max(value, 1.0)))]])
            else:
                # LAPACK directly (numpy.linalg's per-call cost dominates at q = 2 or 3).
                w, v, info = scipy.linalg.lapack.dsyev((relative + relative.T) / 2)
                if info != 0 or not np.isfinite(w).all():
                    return None
                w = np.maximum(w, _EIGEN_FLOOR * max(w.max(), 1.0))
                lam, info = scipy.linalg.lapack.dpotrf((v * w) @ v.T, lower=1)
                if info != 0:
                    return None
            thetas.append(lam[term.theta_rows, term.theta_cols])
        theta = np.concatenate(thetas)
        return theta if np.isfinite(theta).all() else None


def start_steps(start: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, BOBYQA's initial steps) for a start near the optimum.

    Steps of 30 % of each value (between 0.05 and 0.5) search near the start
    without ruling out moves of its own size; a value closer to its bound
    than its step is lifted to one step away, where BOBYQA would otherwise
    move it.
    """
    steps = np.clip(0.3 * np.abs(start), 0.05, 0.5)
    bounded = np.isfinite(lower)
    start = start.copy()
    start[bounded] = np.maximum(start[bounded], lower[bounded] + steps[bounded])
    return start, steps
