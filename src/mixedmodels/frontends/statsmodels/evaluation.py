"""statsmodels' likelihood functions of a model: ``loglike``, ``score``, ``hessian``, GLS.

Each takes a :class:`~.model.MixedLM` and parameters in statsmodels' form
(:class:`~.params.MixedLMParams`, or packed vectors) and evaluates them on the
model's :class:`~.likelihood.Likelihood` (the engine's factor).  Derivatives
are taken by finite differences (:mod:`.derivatives`), exactly in the fixed
effects, with Q(β) summed directly so that the differences are accurate.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import MixedModelsError
from . import derivatives
from .likelihood import Evaluation
from .params import MixedLMParams

if TYPE_CHECKING:
    from .model import MixedLM

__all__ = [
    "as_params",
    "cov_singular",
    "gls",
    "hessian_at",
    "loglike",
    "params_object",
    "penalty",
    "psi_of",
    "score",
]

# A covariance matrix whose smallest eigenvalue is this small (relative) is singular.
_SINGULAR = 1e-10


def as_params(model: MixedLM, params: Any, has_fe: bool) -> MixedLMParams:
    """``params`` as a state: itself, or a packed vector in the model's ``use_sqrt`` form."""
    if isinstance(params, MixedLMParams):
        return params
    return MixedLMParams.from_packed(params, model.k_fe, model.k_re, model.use_sqrt, has_fe)


def psi_of(model: MixedLM, po: MixedLMParams) -> np.ndarray:
    """ψ (the lower triangle of ``cov_re``, then ``vcomp``) of a state."""
    k_re = model.k_re
    if k_re:
        cov = np.atleast_2d(np.asarray(po.cov_re, dtype=np.float64))
        if cov.shape != (k_re, k_re):
            raise MixedModelsError(f"cov_re must be {k_re}×{k_re} for this model, got {cov.shape}")
        tri = cov[np.tril_indices(k_re)]
    else:
        tri = np.zeros(0)
    vcomp = np.asarray(po.vcomp, dtype=np.float64).ravel()
    if len(vcomp) != model.k_vc:
        raise MixedModelsError(
            f"vcomp must have {model.k_vc} values for this model, got {len(vcomp)}"
        )
    return np.concatenate([tri, vcomp])


def params_object(model: MixedLM, beta: np.ndarray, psi: np.ndarray) -> MixedLMParams:
    """The state of fixed effects ``beta`` and covariance parameters ψ."""
    k_re, k_re2 = model.k_re, model.k_re2
    cov = np.zeros((k_re, k_re))
    rows, cols = np.tril_indices(k_re)
    cov[rows, cols] = psi[:k_re2]
    cov[cols, rows] = psi[:k_re2]
    return MixedLMParams.from_components(
        np.array(beta, dtype=np.float64), cov_re=cov, vcomp=np.array(psi[k_re2:])
    )


def cov_singular(cov: Any) -> bool:
    """Whether a covariance matrix is singular (smallest eigenvalue ≈ 0)."""
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    if cov.size == 0:
        return False
    values = np.linalg.eigvalsh(cov)
    return bool(values.min() <= _SINGULAR * max(1.0, float(values.max())))


def penalty(model: MixedLM, beta: np.ndarray, psi: np.ndarray) -> float:
    """statsmodels' penalties of the last fit (``fe_pen``, ``cov_pen``) at (β, ψ)."""
    value = 0.0
    if model.fe_pen is not None:
        value += float(model.fe_pen.func(beta))
    if model.cov_pen is not None and model.k_re:
        cov = params_object(model, beta, psi).cov_re
        value += float(model.cov_pen.func(cov, np.linalg.pinv(cov)))
    return value


def _evaluation(model: MixedLM, psi: np.ndarray) -> tuple[Evaluation | None, np.ndarray | None]:
    phi = model.layout.phi_from_psi(psi)
    if phi is None:
        return None, None
    return model.likelihood.evaluate(model.layout.lambdas(phi)), phi


def loglike(model: MixedLM, params: Any, profile_fe: bool = True) -> float:
    """See :meth:`.model.MixedLM.loglike`."""
    po = as_params(model, params, has_fe=False)
    psi = psi_of(model, po)
    ev, phi = _evaluation(model, psi)
    if ev is None:
        return -math.inf
    lik = model.likelihood
    beta = None if profile_fe else np.asarray(po.fe_params, dtype=np.float64)
    at = ev.beta if beta is None else beta
    quadratic = lik.direct_quadratic(model.layout.lambdas(phi), at)
    value = lik.loglike_of(ev, model.reml, beta, quadratic)
    if model.fe_pen is not None or model.cov_pen is not None:
        value -= penalty(model, at, psi)
    return value


def score(model: MixedLM, params: Any, profile_fe: bool = True) -> np.ndarray:
    """See :meth:`.model.MixedLM.score`."""
    po = as_params(model, params, has_fe=False).copy()
    has_fe = not profile_fe
    if profile_fe:
        po.fe_params = gls(model, po)[0]
    vector = po.get_packed(use_sqrt=model.use_sqrt, has_fe=has_fe)

    def f(v: np.ndarray) -> float:
        candidate = MixedLMParams.from_packed(v, model.k_fe, model.k_re, model.use_sqrt, has_fe)
        return loglike(model, candidate, profile_fe=profile_fe)

    grad = derivatives.gradient(f, vector, 1e-4 * np.maximum(np.abs(vector), 0.1))
    free = model.free_pattern
    if free is None:
        return grad
    return grad * free.get_packed(use_sqrt=False, has_fe=has_fe)


def hessian_at(model: MixedLM, beta: np.ndarray, psi: np.ndarray, reml: bool) -> np.ndarray:
    """∂²ℓ in (β, ψ): exact in β, central differences of the exact ∂ℓ/∂β across ψ,
    second differences of ℓ in ψ (steps of 0.1 % of each variance's size).

    Entries needing a step outside the positive semi-definite covariances (a
    variance at zero) are NaN.
    """
    lik = model.likelihood
    layout = model.layout
    p, m = len(beta), len(psi)
    steps = np.empty(m)
    for block in layout.blocks:
        values = psi[block.offset : block.stop]
        diag = {i: values[k] for k, (i, j) in enumerate(block.entries()) if i == j}
        for k, (i, j) in enumerate(block.entries()):
            size = diag[i] if i == j else math.sqrt(max(diag[i] * diag[j], 0.0))
            steps[block.offset + k] = 1e-3 * max(abs(size), 1e-10)

    out = np.full((p + m, p + m), math.nan)
    ev, _ = _evaluation(model, psi)
    if ev is None:
        return out
    out[:p, :p] = lik.beta_derivatives(ev, reml, beta)[1]
    for k in range(m):
        step = np.zeros(m)
        step[k] = steps[k]
        plus, minus = _evaluation(model, psi + step)[0], _evaluation(model, psi - step)[0]
        if plus is None or minus is None:
            continue
        cross = (
            lik.beta_derivatives(plus, reml, beta)[0] - lik.beta_derivatives(minus, reml, beta)[0]
        ) / (2 * steps[k])
        out[p + k, :p] = out[:p, p + k] = cross

    def f(point: np.ndarray) -> float:
        return lik.loglike_psi(point, reml, beta)

    out[p:, p:] = derivatives.hessian(f, psi, steps)
    return out


def gls(model: MixedLM, po: MixedLMParams) -> tuple[np.ndarray, Evaluation]:
    """Generalised least-squares fixed effects at a state's covariance parameters."""
    ev, _ = _evaluation(model, psi_of(model, po))
    if ev is None:
        raise MixedModelsError("the covariance parameters are not positive semi-definite")
    return ev.beta.copy(), ev
