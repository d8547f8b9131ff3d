"""``MixedLM.fit``: statsmodels' fit signature on the engine's optimizer.

Starting values, statsmodels' ``free`` mask and penalties are turned into
the optimizer's terms (:func:`.fitting.optimize` over square-root
parameters); the outcome is reported as :class:`.results.MixedLMResults`, with
the warnings statsmodels gives, under its class names
(:mod:`.warning_classes`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import (
    BoundaryWarning,
    MixedLMConvergenceWarning,
    MixedModelsError,
    SingularMatrixWarning,
    user_stacklevel,
)
from . import evaluation
from .fitting import FitOutcome, fitted_state, optimize, start_phi
from .params import MixedLMParams
from .warning_classes import warn as _warn

if TYPE_CHECKING:
    from .model import MixedLM
    from .results import MixedLMResults

__all__ = ["fit_model"]

# Keyword arguments statsmodels' fit passes to scipy's optimizers; accepted (the
# engine's BOBYQA has its own settings), anything else is warned about.
OPTIMIZER_KWARGS = ("gtol", "maxiter", "eps", "maxcor", "ftol", "tol", "disp", "maxls")
# A λ diagonal below this is on the boundary (lme4's isSingular tolerance).
BOUNDARY = 1e-4
_NOT_OPTIMIZED = "do_cg=False: not optimized"


def _start(model: MixedLM, start_params: Any, free_phi: np.ndarray) -> np.ndarray:
    layout, lik = model.layout, model.likelihood
    if start_params is None:
        # The engine's moment estimates, unless statsmodels' default start
        # (cov_re = I, variances 1) is better: with about as many random
        # effects per group as rows the moment estimates can be far off.
        phi = layout.default_phi()
        moments = start_phi(lik)
        if moments is not None:
            candidate = np.where(free_phi, moments, phi)
            if lik.deviance(candidate, model.reml) < lik.deviance(phi, model.reml):
                phi = candidate
        return phi
    if isinstance(start_params, MixedLMParams):
        po = start_params
    else:
        vector = np.asarray(start_params, dtype=np.float64).ravel()
        total = model.k_fe + model.k_re2 + model.k_vc
        if len(vector) == total:
            has_fe = True
        elif len(vector) == total - model.k_fe:
            has_fe = False
        else:
            raise ValueError("invalid start_params")
        po = MixedLMParams.from_packed(vector, model.k_fe, model.k_re, model.use_sqrt, has_fe)
    phi = layout.phi_from_psi(evaluation.psi_of(model, po))
    if phi is None:
        raise MixedModelsError("start_params: cov_re is not positive semi-definite")
    return phi


def _free_phi(model: MixedLM, free: MixedLMParams | None, start: Any) -> np.ndarray:
    """Which square-root parameters are optimised (the rest keep their start values)."""
    out = ~model.layout.structural
    if free is None:
        return out
    k_re, k_vc = model.k_re, model.k_vc
    mask_cov = np.atleast_2d(np.asarray(free.cov_re, dtype=float)) if k_re else np.zeros((0, 0))
    mask_vc = np.asarray(free.vcomp, dtype=float).ravel()
    if k_re and mask_cov.shape != (k_re, k_re):
        raise MixedModelsError(f"free.cov_re must be {k_re}×{k_re}, got {mask_cov.shape}")
    if len(mask_vc) != k_vc:
        raise MixedModelsError(f"free.vcomp must have {k_vc} values, got {len(mask_vc)}")
    tri = mask_cov[np.tril_indices(k_re)] if k_re else np.zeros(0)
    fixed = np.concatenate([tri, mask_vc]) == 0
    if not model.use_sqrt and k_re:
        start_cov = start.cov_re if isinstance(start, MixedLMParams) else None
        _check_exact_constraints(mask_cov == 0, start_cov, k_re)
    return out & ~fixed


def _check_exact_constraints(fixed: np.ndarray, start_cov: Any, k: int) -> None:
    """With ``use_sqrt=False``, can the fixed entries of ``cov_re`` be held via its factor?

    Holding an entry of the Cholesky factor L fixed holds the matching entry of
    LLᵀ fixed when the entries before it in both rows are fixed too (at zero);
    off-diagonal entries must then start at zero.
    """
    start_cov = None if start_cov is None else np.asarray(start_cov, dtype=float)
    for i in range(k):
        for j in range(i + 1):
            if not fixed[i, j]:
                continue
            if i != j and start_cov is not None and start_cov[i, j] != 0:
                raise MixedModelsError(
                    f"free holds cov_re[{i}, {j}] at {start_cov[i, j]:g}: with use_sqrt=False "
                    "only zero covariances can be held fixed; use use_sqrt=True"
                )
            if [m for m in range(j) if not (fixed[i, m] or fixed[j, m])]:
                raise MixedModelsError(
                    f"free holds cov_re[{i}, {j}] fixed, which the engine's Cholesky "
                    "parameters cannot express unless the entries before it in rows "
                    f"{i} and {j} are fixed too; use use_sqrt=True"
                )


def _warn_about(model: MixedLM, outcome: FitOutcome, free_phi: np.ndarray) -> None:
    if not outcome.converged and outcome.messages != [_NOT_OPTIMIZED]:
        _warn(
            "MixedLM optimization failed: " + "; ".join(outcome.messages), MixedLMConvergenceWarning
        )
    layout = model.layout
    if np.any(outcome.phi[layout.diagonal() & free_phi] < BOUNDARY):
        _warn("The MLE may be on the boundary of the parameter space.", BoundaryWarning)
    main = layout.main
    if main is not None and evaluation.cov_singular(main.covariance(outcome.phi)):
        _warn("The random effects covariance matrix is singular.", SingularMatrixWarning)


def fit_model(
    model: MixedLM,
    start_params: Any,
    reml: bool,
    niter_sa: int,
    do_cg: bool,
    fe_pen: Any,
    cov_pen: Any,
    free: MixedLMParams | None,
    full_output: bool,
    method: Any,
    fit_kwargs: dict[str, Any],
) -> MixedLMResults:
    """See :meth:`.model.MixedLM.fit`."""
    from .results import MixedLMResults

    unknown = sorted(set(fit_kwargs) - set(OPTIMIZER_KWARGS))
    if unknown:
        warnings.warn(
            f"Argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} not used by "
            "MixedLM.fit. Future versions will raise on these arguments.",
            FutureWarning,
            stacklevel=user_stacklevel(),
        )
    for name in [method] if isinstance(method, str) else list(method or []):
        if str(name).lower() in ("newton", "ncg"):
            raise ValueError(f"method {name} not available for MixedLM")
    if niter_sa:
        warnings.warn("niter_sa is currently ignored", UserWarning, stacklevel=user_stacklevel())
    model.reml = bool(reml)
    model.fe_pen = fe_pen
    model.cov_pen = cov_pen
    model.free_pattern = free
    layout, lik = model.layout, model.likelihood
    free_phi = _free_phi(model, free, start_params)
    phi0 = _start(model, start_params, free_phi)
    if free is not None and start_params is None:
        # What free holds fixed stays at statsmodels' default start.
        phi0 = np.where(free_phi, phi0, layout.default_phi())
    phi0 = np.where(layout.structural, 0.0, phi0)
    penalize = None
    if fe_pen is not None or cov_pen is not None:

        def penalize(phi: np.ndarray, beta: np.ndarray) -> float:
            return evaluation.penalty(model, beta, layout.psi(phi))

    if do_cg:
        outcome = optimize(
            lik, phi0, free_phi, model.reml, penalty=penalize, keep_history=full_output
        )
    else:
        value = lik.deviance(phi0, model.reml)
        outcome = FitOutcome(phi0, value, 1, False, [_NOT_OPTIMIZED], 0.0)
    state = fitted_state(lik, outcome.phi, model.reml)
    _warn_about(model, outcome, free_phi)
    return MixedLMResults(model, state, outcome, free=free)
