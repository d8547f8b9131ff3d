"""Fitting a statsmodels-style model: BOBYQA over the free square-root parameters.

The engine's optimizer (stage 4) minimises −2ℓ over φ, the packed square-root
parameters of :class:`~.layout.Layout` — λ's lower triangles, which for the
groups' effects are statsmodels' ``use_sqrt`` parameters.  Parameters that
statsmodels' ``free`` mask (or the model's structure) holds fixed stay at
their starting values.  As in :meth:`~mixedmodels.LinearMixedModel.fit`, an
optimum on the boundary is polished by restarts, and the gradient and Hessian
at the optimum are checked as lme4 checks them.

statsmodels' penalties (``fe_pen``, ``cov_pen``) enter as statsmodels enters
them: subtracted from the log-likelihood at the profiled β̂.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...engine.optimize import (
    BOUNDARY_TOLERANCE,
    check_convergence,
    finite_difference_derivatives,
    minimize_bobyqa,
    restart_steps,
)
from ...engine.start import moment_start, start_steps
from ...errors import MixedModelsError
from .likelihood import Likelihood

__all__ = ["FitOutcome", "FittedState", "fitted_state", "optimize"]


@dataclass(frozen=True)
class FitOutcome:
    """What the optimizer found.

    Attributes
    ----------
    phi : ndarray
        The square-root parameters at the optimum (fixed ones at their values).
    objective : float
        −2ℓ there (plus twice any penalty).
    n_evaluations : int
    converged : bool
    messages : list of str
        Why convergence is doubtful, if it is.
    seconds : float
    history : list of dict or None
        Every evaluation (φ and −2ℓ), when asked for.
    """

    phi: np.ndarray
    objective: float
    n_evaluations: int
    converged: bool
    messages: list[str]
    seconds: float
    history: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class FittedState:
    """The estimates at φ: what statsmodels' results are computed from.

    Attributes
    ----------
    phi : ndarray
        Square-root parameters.
    psi : ndarray
        statsmodels' full parameters (covariance entries, variances), relative
        to the scale.
    beta : ndarray
        Generalised least-squares fixed effects.
    scale : float
        Residual variance σ² = r² / f.
    unscaled_vcov : ndarray
        (XᵀV⁻¹X)⁻¹.
    modes : list of ndarray
        Each engine term's conditional modes (levels, q).
    loglike : float
        ℓ at (β̂, ψ).
    reml : bool
    """

    phi: np.ndarray
    psi: np.ndarray
    beta: np.ndarray
    scale: float
    unscaled_vcov: np.ndarray
    modes: list[np.ndarray]
    loglike: float
    reml: bool


def fitted_state(
    likelihood: Likelihood, phi: np.ndarray, reml: bool, beta: np.ndarray | None = None
) -> FittedState:
    """The estimates at φ: β̂ (or ``beta``), σ², the modes given them, ℓ.

    Raises ``MixedModelsError`` when Λ(φ) gives no positive-definite factor.
    """
    layout = likelihood.layout
    lambdas = layout.lambdas(phi)
    ev = likelihood.evaluate(lambdas, modes=beta is None)
    if ev is None:
        raise MixedModelsError(
            "the covariance parameters give no positive-definite marginal covariance"
        )
    modes = ev.modes
    if beta is not None:
        beta = np.asarray(beta, dtype=np.float64)
        modes = likelihood.modes_at(lambdas, beta)
    p = likelihood.n_fixed
    vcov = np.linalg.inv(ev.a) if p else np.zeros((0, 0))
    return FittedState(
        phi=np.array(phi, dtype=np.float64),
        psi=layout.psi(phi),
        beta=(ev.beta if beta is None else beta).copy(),
        scale=ev.quadratic(beta) / likelihood.dof(reml),
        unscaled_vcov=vcov,
        modes=modes or [],
        loglike=likelihood.loglike_of(ev, reml, beta),
        reml=reml,
    )


def start_phi(likelihood: Likelihood) -> np.ndarray | None:
    """Square-root parameters from the engine's moment estimates (None when they fail)."""
    layout = likelihood.layout
    theta = moment_start(likelihood.cross_products, layout.terms)
    return None if theta is None else layout.engine_theta(theta)


# Newton steps polish BOBYQA's optimum when there are at most this many
# interior parameters (each step costs about k²/2 evaluations).
_POLISH_MAX_DIMENSION = 12
_POLISH_STEPS = 2
# ... and only steps of at most this fraction of each parameter (or of 0.1).
_POLISH_MAX_STEP = 0.01


def _newton_polish(
    objective: Callable[[np.ndarray], float], x: np.ndarray, value: float, lower: np.ndarray
) -> tuple[np.ndarray, float]:
    """A few Newton steps on the interior coordinates, each kept only if it lowers f.

    BOBYQA stops when its trust region is small, which on a flat optimum can
    leave the parameters a few units in the fourth digit from the optimum
    (statsmodels' tests compare with R to that digit).  The finite-difference
    gradient and Hessian give the last digits.
    """
    interior = x - lower > BOUNDARY_TOLERANCE
    if not interior.any() or interior.sum() > _POLISH_MAX_DIMENSION:
        return x, value
    index = np.flatnonzero(interior)

    def sub(y: np.ndarray) -> float:
        z = x.copy()
        z[index] = y
        return objective(z)

    for _ in range(_POLISH_STEPS):
        grad, hess = finite_difference_derivatives(sub, x[index], lower[index])
        try:
            np.linalg.cholesky(hess)
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        if np.any(np.abs(step) > _POLISH_MAX_STEP * np.maximum(np.abs(x[index]), 0.1)):
            break  # not a last-digits correction: leave BOBYQA's answer alone
        candidate = x.copy()
        candidate[index] = np.maximum(x[index] + step, lower[index])
        new = objective(candidate)
        if not new < value:
            break
        x, value = candidate, new
        if np.all(np.abs(step) < 1e-6 * np.maximum(np.abs(x[index]), 0.1)):
            break  # converged to the digits that matter
    return x, value


def optimize(
    likelihood: Likelihood,
    start: np.ndarray,
    free: np.ndarray,
    reml: bool,
    *,
    penalty: Callable[[np.ndarray, np.ndarray], float] | None = None,
    check: bool = True,
    keep_history: bool = False,
    initial_steps: np.ndarray | float | None = None,
    max_restarts: int = 3,
) -> FitOutcome:
    """Minimise −2ℓ (+2·penalty) over ``start[free]``, the rest held at ``start``.

    Parameters
    ----------
    likelihood : Likelihood
    start : ndarray
        Starting φ (its fixed entries are kept).
    free : ndarray of bool
        Which entries of φ are optimised.
    reml : bool
    penalty : callable, optional
        ``penalty(phi, beta_hat)``: a value subtracted from ℓ (statsmodels'
        ``fe_pen`` and ``cov_pen``); it makes the evaluation refactor once more.
    check : bool
        Check the gradient and Hessian at the optimum.
    keep_history : bool
        Record every evaluation.
    initial_steps : float or ndarray, optional
        BOBYQA's first steps (default: 30 % of each start value).
    """
    lower_all = likelihood.layout.lower_bounds()
    index = np.flatnonzero(free)
    lower = lower_all[index]
    history: list[dict[str, Any]] | None = [] if keep_history else None
    evaluations = 0

    def full(x: np.ndarray) -> np.ndarray:
        phi = start.copy()
        phi[index] = x
        return phi

    def objective(x: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        phi = full(x)
        if penalty is None:
            value = likelihood.deviance(phi, reml)
        else:
            ev = likelihood.evaluate(likelihood.layout.lambdas(phi))
            value = -2.0 * likelihood.loglike_of(ev, reml, None)
            if math.isfinite(value) and ev is not None:
                value += 2.0 * penalty(phi, ev.beta)
        if history is not None:
            history.append({"params": phi, "objective": value})
        return value if math.isfinite(value) else math.inf

    clock = time.perf_counter()
    if not len(index):
        value = objective(np.zeros(0))
        return FitOutcome(start.copy(), value, evaluations, True, [], 0.0, history)
    x0 = start[index]
    if initial_steps is None:
        x0, steps = start_steps(x0, lower)
    else:
        steps = initial_steps
    x, value, _, status = minimize_bobyqa(objective, x0, lower, initial_step=steps)
    if np.any(x - lower < BOUNDARY_TOLERANCE):
        # As LinearMixedModel.fit: restarts escape boundary points that are
        # not optima, a last one with small steps polishes the best point.
        for _ in range(max_restarts):
            again, again_value, _, again_status = minimize_bobyqa(objective, x, lower)
            if again_value >= value - 1e-6:
                if again_value < value:
                    x, value, status = again, again_value, again_status
                break
            x, value, status = again, again_value, again_status
        polished, polished_value, _, polished_status = minimize_bobyqa(
            objective, x, lower, initial_step=restart_steps(x, lower)
        )
        if polished_value < value:
            x, value, status = polished, polished_value, polished_status
    at_bound = np.isfinite(lower) & (x - lower < 1e-10)
    x = np.where(at_bound, lower, x)
    x, value = _newton_polish(objective, x, value, lower)
    messages: list[str] = []
    ok = status not in ("maximum number of evaluations reached", "maximum time reached")
    if not ok:
        messages.append(f"the optimizer stopped early: {status}")
    if check:
        passed, found, _ = check_convergence(objective, x, lower)
        ok = ok and passed
        messages.extend(found)
    phi = full(x)
    value = objective(x)
    seconds = time.perf_counter() - clock
    # Every evaluation: BOBYQA's, the polish's and the convergence check's.
    return FitOutcome(phi, value, evaluations, ok, messages, seconds, history)
