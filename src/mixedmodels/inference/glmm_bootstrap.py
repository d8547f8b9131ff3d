"""Simulation from a fitted GLMM and its parametric bootstrap.

Responses are drawn as lme4's ``simulate`` draws them: new random effects
b ~ N(0, λλᵀ) per level (not scaled by σ: a GLMM's spherical effects have
unit variance), η = o + Xβ̂ + Zb, μ = g⁻¹(η), and a response from the family
at μ:

* binomial: successes ~ Binomial(trials, μ), returned as proportions of the
  trials (the response as the model holds it: 0/1 outcomes stay 0/1);
* Poisson: ~ Poisson(μ) (prior weights are ignored, as R warns);
* negative binomial: ~ NB(mean μ, size θ) (the fitted θ);
* Gamma: shape w/σ², mean μ; inverse Gaussian: mean μ, shape w/σ² — the
  model's dispersion σ².  lme4 1.1-31 uses shape σ·w and w/σ here, which do
  not have the fitted variance; we do not copy that.

The bootstrap refits each simulated response with the fit's method (same
nAGQ), warm-started at the estimates, and keeps the objective, σ, β and θ of
every replicate in a :class:`~mixedmodels.inference.bootstrap.BootstrapResult`
(percentile intervals, lme4's names).  A negative binomial model keeps its θ
fixed (lme4's ``refit`` does too).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..engine.fit import blas_threads
from ..engine.glmm_fit import fit_glmm
from ..errors import ArgumentError, ConvergenceWarning, PirlsError, user_stacklevel
from ..families import Binomial, Family, Gamma, InverseGaussian, NegativeBinomial, Poisson
from ..progress import progress_bar
from .bootstrap import BootstrapResult

if TYPE_CHECKING:
    from ..models.glmm import GeneralizedLinearMixedModel

# Replicates simulated at once.
_BATCH = 64


def draw_responses(
    family: Family, mu: np.ndarray, weights: np.ndarray, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """One response per row from ``family`` at means ``mu`` (see the module docstring)."""
    if isinstance(family, Binomial):
        trials = np.round(weights).astype(np.int64)
        return rng.binomial(trials, np.clip(mu, 0.0, 1.0)) / np.maximum(trials, 1)
    if isinstance(family, Poisson):
        return rng.poisson(mu).astype(np.float64)
    if isinstance(family, NegativeBinomial):
        theta = family.theta
        return rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float64)
    if isinstance(family, Gamma):
        shape = weights / sigma**2
        return rng.gamma(shape, mu / shape)
    if isinstance(family, InverseGaussian):
        return rng.wald(mu, weights / sigma**2)
    raise ArgumentError(f"simulation from the {family.name} family is not available")


def check_simulable(model: GeneralizedLinearMixedModel) -> None:
    """Refuse what cannot be simulated, naming why (binomial trials must be whole)."""
    family, weights = model.family, model.prior_weights
    if isinstance(family, Binomial) and np.any(np.abs(weights - np.round(weights)) > 1e-8):
        raise ArgumentError(
            "cannot simulate binomial responses with non-integer prior weights (the weights "
            "are numbers of trials), as lme4"
        )
    if isinstance(family, (Poisson, NegativeBinomial)) and np.any(weights != 1.0):
        warnings.warn(
            f"simulating {family.name} counts ignores the prior weights, as R does",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def simulate_glmm_responses(
    model: GeneralizedLinearMixedModel, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Responses drawn from the fitted GLMM: an array (nobs, n), as the model holds them."""
    design = model.rows.in_memory("simulate()")
    state = model.state
    fixed = model.offset + design.x @ state.beta
    lambdas = model.problem.lambdas(state.theta)
    family, weights, sigma = model.family, model.prior_weights, state.sigma
    out = np.empty((len(fixed), n))
    for r in range(n):
        eta = fixed.copy()
        for term, lam in zip(design.terms, lambdas, strict=True):
            b = rng.standard_normal((term.n_levels, term.q)) @ lam.T
            eta += np.einsum("nq,nq->n", term.z, b[term.codes])
        with np.errstate(over="ignore"):
            mu = family.link.inverse(eta)
        out[:, r] = draw_responses(family, mu, weights, sigma, rng)
    return out


def glmm_parametric_bootstrap(
    model: GeneralizedLinearMixedModel,
    n: int,
    rng: np.random.Generator,
    progress: bool | None = None,
) -> BootstrapResult:
    """Refit the GLMM to ``n`` responses simulated from it (see the module docstring)."""
    check_simulable(model)
    state = model.state
    nagq = state.nagq
    start = (state.theta.copy(), state.beta.copy())
    design = model.rows.in_memory("bootstrap()")
    p, k = len(state.beta), len(state.theta)
    out = np.full((n, 2 + p + k), np.nan)
    failed = 0
    with warnings.catch_warnings(), blas_threads(1):
        # Drawing ignores Poisson weights: said once above, not per batch.
        warnings.simplefilter("ignore", UserWarning)
        for r in progress_bar(
            range(n), total=n, enabled=progress, desc="bootstrap", unit="replicate"
        ):
            if r % _BATCH == 0:
                ys = simulate_glmm_responses(model, min(_BATCH, n - r), rng)
            problem = model.problem.with_response(ys[:, r % _BATCH])
            workspace = problem.workspace()
            try:
                optimum = fit_glmm(
                    problem, nagq, start, hessian=False, check=False, workspace=workspace
                )
                beta = None if nagq == 0 else optimum.beta
                solution = problem.solve(optimum.theta, beta, nagq, workspace, optimum.known())
            except PirlsError:
                failed += 1
                continue
            if not math.isfinite(solution.objective):
                failed += 1
                continue
            out[r] = np.concatenate(
                [[solution.objective, solution.sigma], solution.beta, solution.theta]
            )
    if failed:
        warnings.warn(
            f"{failed} of {n} bootstrap refits failed (their PIRLS did not converge); "
            "their rows are NaN and the intervals use the others",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
    columns = ["objective", "sigma", *design.fixed_names, *model.theta_names]
    estimates = pd.Series(
        np.concatenate([[state.objective, state.sigma], state.beta, state.theta]), index=columns
    )
    return BootstrapResult(
        replicates=pd.DataFrame(out, columns=columns),
        fixed_names=list(design.fixed_names),
        theta_names=list(model.theta_names),
        estimates=estimates,
        model=model,
    )
