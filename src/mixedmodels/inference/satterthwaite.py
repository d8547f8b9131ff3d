"""Satterthwaite's denominator degrees of freedom, as lmerTest computes them.

The variance parameters are φ = (θ, σ).  Their asymptotic covariance is
A = 2 H⁻¹, with H the Hessian of the deviance (the REML criterion for REML
fits) with σ kept explicit rather than profiled out:

    d(θ, σ) = log|L_θ|² + r²(θ)/σ² + c·log(2πσ²) [+ log|R_X|² for REML],

where c = n − p for REML and n for ML.  For a contrast l, Var(lᵀβ̂) = lᵀCl with
C(φ) = σ²(R_XᵀR_X)⁻¹, and the degrees of freedom are

    ν = 2 (lᵀCl)² / (gᵀ A g),   gᵢ = lᵀ (∂C/∂φᵢ) l.

The σ parts of H and ∂C/∂φ are analytic; the θ parts are numerical
(:mod:`~mixedmodels.inference.derivatives`), taken from the blocked factor
refreshed at perturbed θ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
from scipy import stats

from ..progress import counting, step_bar
from .cache import StateCache
from .derivatives import evaluation_count, gradient_and_hessian

if TYPE_CHECKING:
    from ..engine.problem import LinearProblem
    from ..models.lmm import LinearMixedModel
    from ..results.state import FittedState

# Per fitted state (immutable), what Satterthwaite's method computed at it.
_CACHE: StateCache[FittedState, VarianceParameterInfo] = StateCache()
# lmerTest drops eigenvalues of H below this when inverting it.
_EIGEN_TOLERANCE = 1e-8


@dataclass
class VarianceParameterInfo:
    """What Satterthwaite's method needs at the estimates.

    Attributes
    ----------
    vcov_beta : ndarray (p, p)
        Covariance of β̂, σ²(R_XᵀR_X)⁻¹.
    vcov_varpar : ndarray (k + 1, k + 1)
        Asymptotic covariance of (θ, σ): twice the (pseudo-)inverse Hessian.
    jacobian : ndarray (p, p, k + 1)
        ∂ vcov(β̂) / ∂(θ, σ).
    hessian : ndarray (k + 1, k + 1)
        Hessian of the deviance in (θ, σ).
    """

    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray
    hessian: np.ndarray


def _theta_components(problem: LinearProblem, theta: np.ndarray, workspace) -> np.ndarray:
    """(log|L|² [+ log|R_X|²], r², (R_XᵀR_X)⁻¹ flattened) at θ."""
    factor = problem.factor_at(theta, workspace)
    if factor is None:
        return np.full(2 + problem.cross_products.n_fixed**2, np.nan)
    a = factor.logdet_theta()
    if problem.reml:
        a += factor.logdet_x()
    rinv = inverse_lower(factor.L_xx[:-1, :-1])
    return np.concatenate([[a, factor.pwrss()], (rinv.T @ rinv).ravel()])


def inverse_lower(lower: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix (LAPACK's trtri: much cheaper than a solve)."""
    if lower.shape[0] == 0:
        return lower.copy()
    inv, info = scipy.linalg.lapack.dtrtri(lower, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("singular triangular factor")
    return inv


def variance_parameter_info(
    model: LinearMixedModel, progress: bool | None = None
) -> VarianceParameterInfo:
    """Hessian of the deviance in (θ, σ) and Jacobian of vcov(β̂), at the fit.

    ``progress`` (see :mod:`mixedmodels.progress`): a bar ticking per
    evaluation of the factor, shown by default when they take seconds.
    """
    return _CACHE.get(model.state, lambda: _variance_parameter_info(model, progress))


def _variance_parameter_info(
    model: LinearMixedModel, progress: bool | None
) -> VarianceParameterInfo:
    state = model.state
    problem = model.problem
    theta = state.theta
    k = len(theta)
    p = problem.cross_products.n_fixed
    n = problem.cross_products.n_obs
    c = n - p if problem.reml else n
    workspace = problem.workspace()
    with step_bar(evaluation_count(k), "Satterthwaite df", progress, unit="evaluation") as bar:
        value, grad, hess = gradient_and_hessian(
            counting(lambda t: _theta_components(problem, t, workspace), bar), theta
        )
    sigma = state.sigma
    r2 = value[1]
    h = np.empty((k + 1, k + 1))
    h[:k, :k] = hess[0] + hess[1] / sigma**2
    h[:k, k] = h[k, :k] = -2.0 * grad[1] / sigma**3
    h[k, k] = 6.0 * r2 / sigma**4 - 2.0 * c / sigma**2
    evals, evecs = np.linalg.eigh(h)
    keep = evals > _EIGEN_TOLERANCE
    h_inv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    unscaled = value[2:].reshape(p, p)
    jac = np.empty((p, p, k + 1))
    jac[:, :, :k] = sigma**2 * grad[2:].reshape(p, p, k)
    jac[:, :, k] = 2.0 * sigma * unscaled
    return VarianceParameterInfo(
        vcov_beta=state.vcov,
        vcov_varpar=2.0 * h_inv,
        jacobian=jac,
        hessian=h,
    )


def contrast_df(info: VarianceParameterInfo, contrast: np.ndarray) -> tuple[float, float]:
    """Satterthwaite df and variance of one contrast lᵀβ̂."""
    ell = np.asarray(contrast, dtype=np.float64)
    var = float(ell @ info.vcov_beta @ ell)
    g = np.einsum("i,ijk,j->k", ell, info.jacobian, ell)
    denom = float(g @ info.vcov_varpar @ g)
    df = 2.0 * var**2 / denom if denom > 0 else np.inf
    return df, var


def satterthwaite_table(
    model: LinearMixedModel, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per fixed effect: (df, p value) of the t test of βⱼ = 0."""
    info = variance_parameter_info(model, progress)
    beta = model.state.beta
    p = len(beta)
    dfs = np.empty(p)
    pvals = np.empty(p)
    for j in range(p):
        ell = np.zeros(p)
        ell[j] = 1.0
        df, var = contrast_df(info, ell)
        t = beta[j] / np.sqrt(var)
        dfs[j] = df
        pvals[j] = 2.0 * stats.t.sf(abs(t), df)
    return dfs, pvals


def fai_cornelius_df(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F test from the df of its q independent t tests.

    Fai & Cornelius (1996), as lmerTest combines them: E = Σ νₘ/(νₘ − 2),
    df = 2E/(E − q); 2 when any νₘ ≤ 2.
    """
    nu = np.asarray(nu, dtype=np.float64)
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    e = float(np.sum(nu / (nu - 2)))
    return 2 * e / (e - len(nu))


def f_test(
    model: LinearMixedModel, contrasts: np.ndarray, tol: float = 1e-8
) -> tuple[int, float, float, float]:
    """Satterthwaite F test of Lβ = 0: (numerator df, denominator df, F, p)."""
    info = variance_parameter_info(model)
    ell = np.atleast_2d(np.asarray(contrasts, dtype=np.float64))
    v = ell @ info.vcov_beta @ ell.T
    evals, evecs = np.linalg.eigh(v)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    q = int(np.sum(evals > tol * max(evals[0], 0.0))) if evals[0] > 0 else 0
    if q == 0:
        return 0, np.nan, np.nan, np.nan
    rotated = evecs[:, :q].T @ ell
    t2 = (rotated @ model.state.beta) ** 2 / evals[:q]
    f_value = float(np.sum(t2) / q)
    nu = np.empty(q)
    for m in range(q):
        g = np.einsum("i,ijk,j->k", rotated[m], info.jacobian, rotated[m])
        nu[m] = 2 * evals[m] ** 2 / float(g @ info.vcov_varpar @ g)
    den = fai_cornelius_df(nu)
    return q, den, f_value, float(stats.f.sf(f_value, q, den))
