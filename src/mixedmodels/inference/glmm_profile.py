"""Profile-likelihood intervals of a GLMM, as lme4's ``profile`` and ``confint``.

lme4 profiles a GLMM's objective (the Laplace approximation, or the
adaptive-quadrature one for nAGQ > 1) in (θ, β): for each parameter held at a
sequence of values, the objective is minimised over all the others, and
ζ = ±√(f − f̂) gives the interval where a spline through (ζ, value) reaches
±z₁₋α/₂.  The variance parameters are on lme4's standard-deviation scale
(``sd_`` and ``cor_`` per term; σ = 1 for these families); the fixed effects
follow.  The walk and the spline are the linear model's
(:func:`~mixedmodels.inference.profile.walk_profile`,
:func:`~mixedmodels.inference.profile.profile_interval`).

Each inner minimisation is L-BFGS-B on the Laplace gradient (BOBYQA for
quadrature objectives, which have none), from the previous point's optimum,
with β in units of its standard errors.  The variance parameters of a term
with several random effects enter θ through λ = chol(Σ); their gradient is
the chain rule with the Jacobian of that map, taken by differences (it is
algebra, no model evaluation).

As lme4, families with a scale parameter (Gamma, inverse Gaussian) are not
profiled, nor are nAGQ = 0 fits (whose objective does not depend on β).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.optimize

from ..engine.fit import blas_threads
from ..engine.optimize import minimize_bobyqa
from ..errors import ArgumentError, PirlsError
from ..progress import counting, step_bar
from .profile import (
    profile_interval,
    sdcor_bounds,
    sdcor_from_theta,
    theta_from_sdcor,
    walk_profile,
    walk_settings,
)

if TYPE_CHECKING:
    from ..models.glmm import GeneralizedLinearMixedModel

# L-BFGS-B's stopping rules for the inner minimisations: the objective to about
# 1e-9, so that ζ is good to ~1e-4 at the first step off the optimum.
_FTOL = 1e-12
_GTOL = 1e-6
_JACOBIAN_STEP = 1e-7


def check_profilable(model: GeneralizedLinearMixedModel) -> None:
    """Refuse, with lme4's reasons, the fits whose profile is not defined here."""
    if model.family.has_dispersion:
        raise ArgumentError(
            f"profiles of GLMMs with a scale parameter ({model.family.name}) are not "
            "available (lme4 does not profile them either); use method='wald' or 'bootstrap'"
        )
    if model.state.nagq == 0:
        raise ArgumentError(
            "a fit with nagq=0 does not optimise β in its objective, so it has no profile; "
            "refit with nagq=1 (or use method='wald' or 'bootstrap')"
        )


class _Objective:
    """The fit's objective in (θ, β) on a workspace of its own, with its gradient."""

    def __init__(self, model: GeneralizedLinearMixedModel) -> None:
        self.problem = model.problem
        self.nagq = model.state.nagq
        self.workspace = self.problem.workspace()
        self.has_gradient = self.nagq == 1 and self.problem.has_gradient

    def value(self, theta: np.ndarray, beta: np.ndarray) -> float:
        try:
            return self.problem.objective(theta, beta, self.nagq, self.workspace)
        except PirlsError:
            return math.inf

    def value_and_gradient(
        self, theta: np.ndarray, beta: np.ndarray
    ) -> tuple[float, np.ndarray | None]:
        try:
            return self.problem.value_and_gradient(theta, beta, self.workspace)
        except PirlsError:
            return math.inf, None


def _minimize(
    func: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
    plain: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    use_gradient: bool,
) -> tuple[np.ndarray, float]:
    """min over x in [lower, upper]: L-BFGS-B with the gradient, else BOBYQA."""
    if not len(start):
        return start, plain(start)
    start = np.clip(start, lower, upper)
    if use_gradient:

        def wrapped(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, gradient = func(x)
            if gradient is None or not math.isfinite(value):
                return 1e300, np.zeros_like(x)
            return value, gradient

        bounds = [
            (None if not np.isfinite(lo) else float(lo), None if not np.isfinite(hi) else float(hi))
            for lo, hi in zip(lower, upper, strict=True)
        ]
        result = scipy.optimize.minimize(
            wrapped,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": _FTOL, "gtol": _GTOL, "maxiter": 2000, "maxcor": 20},
        )
        return result.x, plain(result.x)
    # Without a gradient (quadrature: one scalar term, so no correlation and
    # no upper bound) BOBYQA, with first steps small next to the walk's.
    steps = np.maximum(0.05 * np.abs(start), 0.02)
    x, value, _, _ = minimize_bobyqa(
        plain, start, lower, initial_step=steps, ftol_rel=1e-13, ftol_abs=1e-10
    )
    return x, value


def _jacobian(model: GeneralizedLinearMixedModel, sdcor: np.ndarray) -> np.ndarray:
    """∂θ/∂(sds, correlations) by central differences of the algebraic map."""
    k = len(sdcor)
    lower, upper = sdcor_bounds(model)
    out = np.empty((k, k))
    for j in range(k):
        up, down = sdcor.copy(), sdcor.copy()
        up[j] = min(sdcor[j] + _JACOBIAN_STEP, upper[j])
        down[j] = max(sdcor[j] - _JACOBIAN_STEP, lower[j])
        out[:, j] = (_theta(model, up) - _theta(model, down)) / (up[j] - down[j])
    return out


def _theta(model: GeneralizedLinearMixedModel, sdcor: np.ndarray) -> np.ndarray:
    """θ from the sds and correlations (σ = 1)."""
    return theta_from_sdcor(model, np.append(sdcor, 1.0))


def glmm_profile(
    model: GeneralizedLinearMixedModel, level: float, progress: bool | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Profile intervals and the walk behind them (see the module docstring).

    Returns
    -------
    (intervals, table)
        ``lower``/``upper`` per parameter (lme4's ``oldNames=FALSE`` rows), and
        the long table ``parameter``, ``value``, ``zeta`` that was walked.
    """
    check_profilable(model)
    with blas_threads(1):  # small dense algebra: one BLAS thread is fastest
        return _profile(model, level, progress)


def _profile(
    model: GeneralizedLinearMixedModel, level: float, progress: bool | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    state = model.state
    objective = _Objective(model)
    theta_hat, beta_hat, base = state.theta.copy(), state.beta.copy(), state.objective
    scale = np.where(state.std_errors > 0, state.std_errors, 1.0)
    all_scalar = all(t.q == 1 for t in model.design.terms)
    opt_sd = sdcor_from_theta(model, theta_hat, 1.0)[:-1]
    lower_sd, upper_sd = (b[:-1] for b in sdcor_bounds(model))
    nvp, p = len(opt_sd), len(beta_hat)
    cutoff, delta, z = walk_settings(nvp + p, level)
    names = [*model.sdcor_names, *model.design.fixed_names]
    use_gradient = objective.has_gradient
    walked: list[list[tuple[float, float]]] = []
    rows = []
    per_parameter = 2 * math.ceil(cutoff / delta) + 1
    bar = step_bar((nvp + p) * per_parameter, "profile", progress, unit="point")

    def zeta(value: float, estimate: float, minimum: float) -> float:
        return math.copysign(math.sqrt(max(minimum - base, 0.0)), value - estimate)

    for w in range(nvp):
        others = np.array([i for i in range(nvp) if i != w], dtype=int)
        lower = np.concatenate([lower_sd[others], np.full(p, -np.inf)])
        upper = np.concatenate([upper_sd[others], np.full(p, np.inf)])

        def parts(x, value, w=w, others=others):
            sd = np.empty(nvp)
            sd[w], sd[others] = value, x[: len(others)]
            return sd, beta_hat + scale * x[len(others) :]

        def plain(x, value, parts=parts):
            sd, beta = parts(x, value)
            return objective.value(_theta(model, sd), beta)

        def with_gradient(x, value, parts=parts, others=others):
            sd, beta = parts(x, value)
            f, g = objective.value_and_gradient(_theta(model, sd), beta)
            if g is None:
                return f, None
            g_theta = g[:nvp] if all_scalar else _jacobian(model, sd).T @ g[:nvp]
            return f, np.concatenate([g_theta[others], g[nvp:] * scale])

        def zeta_at(
            value, start, w=w, plain=plain, with_gradient=with_gradient, lower=lower, upper=upper
        ):
            x, fval = _minimize(
                lambda x: with_gradient(x, value),
                lambda x: plain(x, value),
                start,
                lower,
                upper,
                use_gradient,
            )
            return zeta(value, opt_sd[w], fval), x

        start = np.concatenate([opt_sd[others], np.zeros(p)])
        first = 0.001 if opt_sd[w] == 0 else opt_sd[w] * 1.01
        points = walk_profile(
            counting(zeta_at, bar), opt_sd[w], first, start, lower_sd[w], upper_sd[w], cutoff, delta
        )
        walked.append(points)
        rows.append(profile_interval(points, z, lower_sd[w], upper_sd[w]))
    for j in range(p):
        keep = np.array([i for i in range(p) if i != j], dtype=int)
        lower = np.concatenate([model.lower_bounds, np.full(p - 1, -np.inf)])
        upper = np.full(nvp + p - 1, np.inf)

        def fixed_parts(x, value, j=j, keep=keep):
            beta = beta_hat.copy()
            beta[j] = value
            beta[keep] = beta_hat[keep] + scale[keep] * x[nvp:]
            return x[:nvp], beta

        def fixed_plain(x, value, fixed_parts=fixed_parts):
            return objective.value(*fixed_parts(x, value))

        def fixed_gradient(x, value, fixed_parts=fixed_parts, keep=keep):
            theta, beta = fixed_parts(x, value)
            f, g = objective.value_and_gradient(theta, beta)
            if g is None:
                return f, None
            return f, np.concatenate([g[:nvp], g[nvp:][keep] * scale[keep]])

        def zeta_fixed(
            value, start, j=j, plain=fixed_plain, gradient=fixed_gradient, lower=lower, upper=upper
        ):
            x, fval = _minimize(
                lambda x: gradient(x, value),
                lambda x: plain(x, value),
                start,
                lower,
                upper,
                use_gradient,
            )
            return zeta(value, beta_hat[j], fval), x

        start = np.concatenate([theta_hat, np.zeros(p - 1)])
        first = beta_hat[j] + delta * scale[j]
        points = walk_profile(
            counting(zeta_fixed, bar), beta_hat[j], first, start, -math.inf, math.inf, cutoff, delta
        )
        walked.append(points)
        rows.append(profile_interval(points, z, -math.inf, math.inf))
    bar.close()
    table = pd.DataFrame(
        [
            (name, value, zeta_value)
            for name, points in zip(names, walked, strict=True)
            for value, zeta_value in sorted(points)
        ],
        columns=["parameter", "value", "zeta"],
    )
    return pd.DataFrame(rows, index=names, columns=["lower", "upper"]), table
