"""Stage 3 as a function: θ → the profiled criterion of a linear mixed model.

:class:`LinearProblem` holds what does not change while θ does — the
cross-products of stage 2, the terms' λ templates, REML or ML — and evaluates
the criterion on a *workspace*: a blocked factor of its own, refreshed at θ.
A fitted model keeps its estimates in an immutable state, not in a factor, so
nothing that evaluates the criterion (the optimizer, profiles, Satterthwaite's
derivatives, the bootstrap) can leave the model changed: each caller evaluates
on a workspace it owns, or on the problem's per-thread default one.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .blocks import CrossProducts
from .factor import BlockedCholesky
from .terms import TermStructure

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True, eq=False)
class Solution:
    """β, the modes and σ read off the factor at θ (what a fit reports).

    Its arrays are its own and read-only (:meth:`LinearProblem.solve` makes
    them so), so that a fitted state holds them as they are.
    """

    theta: np.ndarray
    objective: float
    beta: np.ndarray
    # Per term, the conditional modes b = λu as an array (levels, q).
    modes: tuple[np.ndarray, ...]
    sigma: float
    # (R_X R_Xᵀ)⁻¹: the covariance of β̂ is σ² times this.
    unscaled_vcov: np.ndarray
    # r²: the penalised residual sum of squares.
    pwrss: float


@dataclass(frozen=True, eq=False)
class ThetaLayout:
    """Where θ goes, for terms of given q (the same for every problem of that shape).

    Attributes
    ----------
    slices : tuple of slice
        Each term's θ in the whole.
    lower : ndarray
        Lower bounds of θ (read-only; problems hold a copy).
    lambda_size : int
        The terms' λ laid end to end (row-major): their total size.
    lambda_at : ndarray
        Where each θ lands in that layout, so that λ of all terms is one
        scatter and k views (a λ per term costs microseconds).
    lambda_views : tuple of (start, stop, q)
        Each term's λ in that layout.
    mirrors : dict of int to ndarray
        For each diagonal θ, the θ below it in its column of λ (they change
        sign with it at no cost to the criterion when it is zero).
    scalar : ndarray of bool
        The θ of scalar (q = 1) terms.
    theta_index : ndarray (n_θ, 3)
        Each θ's term, row and column in λ (the compiled small path's layout;
        read-only: callers handing it to numba take a copy).
    """

    slices: tuple[slice, ...]
    lower: np.ndarray
    lambda_size: int
    lambda_at: np.ndarray
    lambda_views: tuple[tuple[int, int, int], ...]
    mirrors: dict[int, np.ndarray]
    scalar: np.ndarray
    theta_index: np.ndarray


@functools.lru_cache(maxsize=64)
def theta_layout(qs: tuple[int, ...]) -> ThetaLayout:
    """The :class:`ThetaLayout` of terms with ``qs`` random effects per level (made once
    per shape: a small model's fit spent tens of microseconds building it)."""
    structures = [TermStructure("", pd.RangeIndex(0), [str(c) for c in range(q)]) for q in qs]
    bounds = np.cumsum([0] + [t.n_theta for t in structures])
    slices = tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(bounds))
    lower = np.concatenate([t.theta_lower_bounds() for t in structures] or [np.empty(0)])
    sizes = [q * q for q in qs]
    starts = np.cumsum([0, *sizes])
    lambda_at = (
        np.concatenate(
            [
                start + t.theta_rows * t.q + t.theta_cols
                for start, t in zip(starts[:-1], structures, strict=True)
            ]
        )
        if structures
        else np.zeros(0, dtype=np.intp)
    )
    views = tuple((int(a), int(b), q) for a, b, q in zip(starts[:-1], starts[1:], qs, strict=True))
    mirrors = {}
    for t, where in zip(structures, slices, strict=True):
        rows, cols = t.theta_rows, t.theta_cols
        for k in np.flatnonzero(rows == cols):
            below = np.flatnonzero((cols == cols[k]) & (rows > rows[k]))
            if below.size:
                mirrors[where.start + int(k)] = where.start + below
    scalar = np.concatenate(
        [np.full(t.n_theta, t.q == 1) for t in structures] or [np.zeros(0, bool)]
    )
    index = np.array(
        [
            (t, i, j)
            for t, term in enumerate(structures)
            for i, j in zip(term.theta_rows.tolist(), term.theta_cols.tolist(), strict=True)
        ],
        dtype=np.int64,
    ).reshape(-1, 3)
    for array in (lower, lambda_at, scalar, index, *mirrors.values()):
        array.flags.writeable = False
    return ThetaLayout(
        slices=slices,
        lower=lower,
        lambda_size=int(starts[-1]),
        lambda_at=lambda_at,
        lambda_views=views,
        mirrors=mirrors,
        scalar=scalar,
        theta_index=index,
    )


class LinearProblem:
    """The profiled REML criterion or ML deviance as a function of θ.

    Parameters
    ----------
    cross_products : CrossProducts
        The blocks of AᵀA (stage 2), terms in the engine's order.
    terms : sequence of TermStructure
        The terms, in the same order (their λ templates).
    reml : bool
        REML criterion (True) or ML deviance (False).
    """

    def __init__(
        self, cross_products: CrossProducts, terms: Sequence[TermStructure], reml: bool
    ) -> None:
        self.cross_products = cross_products
        self.terms = [t.structure() if type(t) is not TermStructure else t for t in terms]
        self.reml = bool(reml)
        layout = theta_layout(tuple(t.q for t in self.terms))
        self.layout = layout
        self.theta_slices = list(layout.slices)
        self.lower_bounds = layout.lower.copy()
        self._lambda_size = layout.lambda_size
        self._lambda_at = layout.lambda_at
        self._lambda_views = layout.lambda_views
        self._local = threading.local()

    # -- variants sharing the blocks ------------------------------------------------------

    def with_cross_products(self, cross_products: CrossProducts) -> LinearProblem:
        """The same terms and criterion on other cross-products of the same structure
        (the θ layout is shared, not rebuilt: a refit makes one per response)."""
        # As copy.copy would (the twin gets its own per-thread workspaces through
        # __setstate__), without copy's generic machinery: a refit makes one per response.
        twin = LinearProblem.__new__(LinearProblem)
        twin.__setstate__(self.__getstate__())
        twin.cross_products = cross_products
        return twin

    def with_private_response(self) -> LinearProblem:
        """A problem whose y blocks are its own copy (the rest shared), to be changed in place.

        The factor reads the y parts of the cross-products at every update, so
        a caller that refits to new responses (the bootstrap, ``refit``) writes
        them into this copy between evaluations.
        """
        cp = self.cross_products
        private = replace(cp, xz=[a.copy() for a in cp.xz], xx=cp.xx.copy())
        return self.with_cross_products(private)

    # -- θ ---------------------------------------------------------------------------------

    @property
    def n_theta(self) -> int:
        return len(self.lower_bounds)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the relative covariance factor λ at θ (new arrays: the caller's)."""
        flat = np.zeros(self._lambda_size)
        flat[self._lambda_at] = theta
        return [flat[a:b].reshape(q, q) for a, b, q in self._lambda_views]

    def theta_names(self) -> list[str]:
        return [name for t in self.terms for name in t.theta_names()]

    # -- evaluation --------------------------------------------------------------------------

    def workspace(self) -> BlockedCholesky:
        """A fresh factor of this problem's structure, owned by the caller."""
        return BlockedCholesky(self.cross_products)

    def default_workspace(self) -> BlockedCholesky:
        """This thread's workspace, reused by the calls that pass none (the fit's
        optimizer evaluates on it, so that the solution at its optimum needs no
        new workspace)."""
        factor = getattr(self._local, "factor", None)
        if factor is None:
            factor = self._local.factor = self.workspace()
        return factor

    def factor_at(
        self, theta: np.ndarray, workspace: BlockedCholesky | None = None
    ) -> BlockedCholesky | None:
        """The factor refreshed at θ (a new workspace unless one is given); None if not
        positive definite."""
        factor = self.workspace() if workspace is None else workspace
        ok = factor.update(self.lambdas(theta))
        return factor if ok and factor.pwrss() > 0.0 else None

    def objective(
        self,
        theta: np.ndarray,
        *,
        reml: bool | None = None,
        workspace: BlockedCholesky | None = None,
    ) -> float:
        """The REML criterion or ML deviance at θ, on lme4's scale (inf where undefined)."""
        factor = self.default_workspace() if workspace is None else workspace
        return self.objective_of(self.lambdas(theta), factor, reml)

    def objective_of(
        self, lambdas: list[np.ndarray], workspace: BlockedCholesky, reml: bool | None = None
    ) -> float:
        """:meth:`objective` at the θ whose λ are ``lambdas``, on ``workspace``."""
        if not workspace.update(lambdas):
            return math.inf
        return self.criterion(workspace, self.reml if reml is None else reml)

    def criterion(self, factor: BlockedCholesky, reml: bool) -> float:
        """The profiled criterion read off a factor already refreshed at θ."""
        cp = self.cross_products
        n, p = cp.n_obs, cp.n_fixed
        logdet_theta, logdet_x, r2 = factor.profiled_parts()
        if not r2 > 0.0:
            return math.inf
        value = logdet_theta - cp.sum_log_weights
        if reml:
            dof = n - p
            value += logdet_x + dof * (1.0 + _LOG_2PI + math.log(r2 / dof))
        else:
            value += n * (1.0 + _LOG_2PI + math.log(r2 / n))
        return value

    def solve(
        self,
        theta: np.ndarray,
        workspace: BlockedCholesky | None = None,
        *,
        refresh: bool = True,
        solved: tuple[np.ndarray, list[np.ndarray]] | None = None,
    ) -> Solution:
        """β, the conditional modes, σ and (R_XᵀR_X)⁻¹ at θ (on this thread's workspace
        unless one is given).

        ``refresh=False`` reads a workspace already updated at exactly this θ
        as it is (a fit's optimizer leaves it at its optimum, on InstEval a
        Cholesky of 1159² saved); the caller vouches that the cross-products
        have not changed since that update.  ``solved`` is (β̂, û per term)
        already read off a factor at exactly this θ on these cross-products
        (the optimizer's last gradient reads them), used in place of the
        triangular solves; the arrays are copied, not kept.
        """
        theta = np.array(theta, dtype=np.float64)
        factor = self.default_workspace() if workspace is None else workspace
        lambdas = self.lambdas(theta)
        if not (refresh is False and factor.is_current(lambdas)) and not factor.update(lambdas):
            raise np.linalg.LinAlgError("the factor is not positive definite at this θ")
        value = self.criterion(factor, self.reml)
        if solved is None:
            beta, u = factor.solution()
        else:
            beta, u = solved[0].copy(), solved[1]
        modes = tuple(
            ui.reshape(t.n_levels, t.q) @ lam.T
            for ui, t, lam in zip(u, self.terms, lambdas, strict=True)
        )
        cp = self.cross_products
        dof = cp.n_obs - cp.n_fixed if self.reml else cp.n_obs
        r2 = factor.pwrss()
        rinv = factor.inverse_rx()
        vcov = rinv.T @ rinv
        # Every array here is new: made read-only, not copied (see Solution).
        for array in (theta, beta, vcov, *modes):
            array.flags.writeable = False
        return Solution(
            theta=theta,
            objective=value,
            beta=beta,
            modes=modes,
            sigma=math.sqrt(r2 / dof),
            unscaled_vcov=vcov,
            pwrss=r2,
        )

    # -- pickling: workspaces are rebuilt where they are needed ------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
