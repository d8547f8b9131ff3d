"""Complete and quasi-complete separation of a GLMM's outcomes by its fixed effects.

A direction d of the fixed effects *separates* the outcomes when the linear
predictor moved along d never moves a row away from its response and moves
some rows towards it: X_i·d ≥ 0 for every row whose response is at the top
of the family's range (a binomial success), ≤ 0 for every row at the bottom
(a failure; a zero count), = 0 for every other row, and ≠ 0 for some.  Then
the likelihood keeps rising along d: the estimates head to ±∞ and PIRLS
cannot converge.  lme4 stops with "pwrssUpdate did not converge", or returns
huge estimates with convergence warnings.

Here the directions are found by linear programming (Konis's criterion, on
the distinct rows of X), and the fit returned is the likelihood's limit: the
separated rows are fitted exactly in the limit (their deviance and working
weights go to zero, so they drop out of the Laplace objective), the model is
fitted to the other rows with β restricted to the complement of the
directions, and β is reported at the limit moved along the directions far
enough that every separated row's linear predictor is within ``SHIFT`` of
its response's end (fitted probabilities within ~1e-11 of 0 or 1) — as R's
``glm`` reports a separated fit.  Their standard errors (from R_X) are then
huge, as they should be; the fit warns, is a boundary fit (``is_singular``)
and names the coefficients heading to ±∞ (``separation``).

Only families and links whose mean reaches the end of its range as η → ±∞
are checked: binomial with logit, probit, cloglog or cauchit, and Poisson or
negative binomial with the log link.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg
import scipy.optimize

from ..engine.glmm_fit import GlmmOptimum, fit_glmm
from ..engine.glmm_problem import GeneralizedProblem
from ..engine.optimize import OptimizationSummary
from ..families import Binomial, Family, NegativeBinomial, Poisson

# How far (in η) the reported estimates put each separated row past the limit.
SHIFT = 25.0
_LINKS = {"binomial": ("logit", "probit", "cloglog", "cauchit")}


@dataclass(frozen=True)
class Separation:
    """What separates the outcomes.

    Attributes
    ----------
    directions : ndarray, shape (p, k)
        Directions of β along which the likelihood rises without bound.
    rows : ndarray of bool, shape (n,)
        The rows those directions fit exactly in the limit.
    """

    directions: np.ndarray
    rows: np.ndarray

    def coefficients(self, names: list[str]) -> list[str]:
        """The fixed effects with a part in some direction (those heading to ±∞)."""
        tol = 1e-8 * np.max(np.abs(self.directions))
        moving = np.any(np.abs(self.directions) > tol, axis=1)
        return [name for name, m in zip(names, moving, strict=True) if m]


def checks_separation(family: Family) -> bool:
    """Whether the family's mean reaches the end of its range as η → ±∞."""
    if isinstance(family, Binomial):
        return family.link.name in _LINKS["binomial"]
    return isinstance(family, (Poisson, NegativeBinomial)) and family.link.name == "log"


def _sides(family: Family, y: np.ndarray) -> np.ndarray:
    """+1 for a response at the top of the range, −1 at the bottom, 0 inside."""
    side = np.where(y <= 0.0, -1, 0)
    if isinstance(family, Binomial):
        side = np.where(y >= 1.0, 1, side)
    return side


def _one_direction(x: np.ndarray, side: np.ndarray) -> np.ndarray | None:
    """A separating direction of the distinct rows of (x, side), or None (an LP)."""
    rows = np.unique(np.column_stack([x, side]), axis=0)
    x, side = rows[:, :-1], rows[:, -1]
    ends = side != 0
    if not ends.any():
        return None
    signed = side[ends, None] * x[ends]
    inner = x[~ends]
    result = scipy.optimize.linprog(
        -signed.sum(axis=0),
        A_ub=-signed,
        b_ub=np.zeros(len(signed)),
        A_eq=inner if len(inner) else None,
        b_eq=np.zeros(len(inner)) if len(inner) else None,
        bounds=[(-1.0, 1.0)] * x.shape[1],
        method="highs",
    )
    scale = max(1.0, float(np.max(np.abs(x)))) if x.size else 1.0
    if result.status != 0 or -result.fun <= 1e-7 * scale:
        return None
    return np.asarray(result.x)


def find_separation(x: np.ndarray, y: np.ndarray, family: Family) -> Separation | None:
    """The directions that separate the outcomes, or None (see the module docstring)."""
    if not checks_separation(family) or not x.shape[1]:
        return None
    side = _sides(family, y)
    scale = max(1.0, float(np.max(np.abs(x))))
    separated = np.zeros(len(y), dtype=bool)
    directions = []
    for _ in range(x.shape[1]):
        d = _one_direction(x[~separated], side[~separated])
        if d is None:
            break
        moved = np.abs(x @ d) > 1e-7 * scale
        if not (moved & ~separated).any():
            break
        directions.append(d)
        separated |= moved & (side != 0)
    if not directions:
        return None
    return Separation(np.column_stack(directions), separated)


@dataclass(frozen=True, eq=False)
class LimitFit:
    """The separated fit's limit: θ, β (moved along the directions) and what it did."""

    theta: np.ndarray
    beta: np.ndarray
    optimum: GlmmOptimum


def fit_limit(
    problem: GeneralizedProblem,
    x: np.ndarray,
    y: np.ndarray,
    prior_weights: np.ndarray,
    offset: np.ndarray,
    terms: list,
    separation: Separation,
    nagq: int,
    message: str,
) -> LimitFit:
    """Fit the rows that are not separated, β in the directions' complement; then move β
    along the directions (see the module docstring).

    When every row is separated nothing is left to estimate the variances from
    (the limit's objective does not depend on θ): θ is put at its lower bounds,
    variances zero, and the message says so.
    """
    keep = ~separation.rows
    basis = scipy.linalg.null_space(separation.directions.T)
    if keep.any():
        reduced_terms = [replace(t, codes=t.codes[keep], z=t.z[keep]) for t in terms]
        reduced = GeneralizedProblem.in_memory(
            y[keep],
            prior_weights[keep],
            offset[keep],
            x[keep] @ basis,
            reduced_terms,
            problem.family,
        )
        optimum = fit_glmm(reduced, 1 if nagq == 0 else nagq, hessian=False, check=False)
        theta, beta, initial = optimum.theta, basis @ optimum.beta, optimum.summary.initial
        objective, evaluations = optimum.summary.objective, optimum.summary.n_evaluations
    else:
        theta = np.where(np.isfinite(problem.lower_bounds), problem.lower_bounds, 0.0)
        beta, initial, objective, evaluations = np.zeros(x.shape[1]), theta, np.nan, 0
        message += "; every row is fitted exactly, so the variances are not identified: set to 0"
    # Later directions first: each earlier one is pushed far enough to dominate them.
    shift = np.zeros(len(y))
    for j in reversed(range(separation.directions.shape[1])):
        d = separation.directions[:, j]
        along = np.abs(x[separation.rows] @ d)
        needed = (SHIFT + shift[separation.rows]) / np.where(along > 0, along, np.inf)
        t = float(np.max(needed[np.isfinite(needed)], initial=0.0))
        beta = beta + t * d
        shift += t * np.abs(x @ d)
    summary = OptimizationSummary(
        initial=initial,
        lower=problem.lower_bounds.copy(),
        final=theta,
        objective=objective,
        n_evaluations=evaluations,
        return_code="separation: the limit of the likelihood",
        converged=False,
        messages=(message,),
    )
    return LimitFit(theta, beta, GlmmOptimum(theta, beta, summary))
