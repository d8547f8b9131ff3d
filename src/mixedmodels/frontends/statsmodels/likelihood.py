"""statsmodels' profiled log-likelihood, evaluated on the engine's blocked factor.

statsmodels' ``MixedLM.loglike`` is the log-likelihood with the scale profiled
out, as a function of the fixed effects β and the covariance parameters ψ
relative to the scale.  With V = I + ZΨZᵀ (Ψ block diagonal: ``cov_re`` per
group, the variance components, other terms), f = n − p for REML and n for
ML, it is

    ℓ(β, ψ) = −½ log|V| − f/2 · log Q(β) − f/2 · (1 + log 2π − log f)
              [− ½ log|XᵀV⁻¹X|  for REML],

    Q(β) = (y − Xβ)ᵀV⁻¹(y − Xβ) = r² + (β − β̂)ᵀ XᵀV⁻¹X (β − β̂),

and every piece is read off the engine's factor of ΛᵀZᵀZΛ + I at the Λ whose
ΛΛᵀ is Ψ: log|V| is the factor's log-determinant, XᵀV⁻¹X = R_X R_Xᵀ, r² the
penalised residual sum of squares and β̂ the generalised least-squares
estimate.  At β = β̂ this is −½ times the engine's criterion
(:meth:`~mixedmodels.engine.problem.LinearProblem.criterion`: lme4's deviance
or REML criterion), which the optimizer minimises.

The factor is a workspace of this object's own (from the engine's
:class:`~mixedmodels.engine.problem.LinearProblem`): evaluating never touches
a fitted state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...engine.blocks import CrossProducts, cross_products
from ...engine.problem import LinearProblem
from .grouped import GroupedData
from .layout import Layout

__all__ = ["Evaluation", "Likelihood"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Evaluation:
    """What the factor gives at one Λ.

    Attributes
    ----------
    logdet_v : float
        log |I + ZΨZᵀ|.
    logdet_a : float
        log |XᵀV⁻¹X|.
    pwrss : float
        min over β of (y − Xβ)ᵀV⁻¹(y − Xβ).
    beta : ndarray
        The generalised least-squares β̂.
    a : ndarray
        XᵀV⁻¹X.
    modes : list of ndarray or None
        Each engine term's conditional modes (levels, q) at β̂, when asked for.
    """

    logdet_v: float
    logdet_a: float
    pwrss: float
    beta: np.ndarray
    a: np.ndarray
    modes: list[np.ndarray] | None = None

    def quadratic(self, beta: np.ndarray | None) -> float:
        """Q(β) (Q(β̂) = r² when ``beta`` is None)."""
        if beta is None or len(self.beta) == 0:
            return self.pwrss
        d = np.asarray(beta, dtype=np.float64) - self.beta
        return self.pwrss + float(d @ self.a @ d)


class Likelihood:
    """statsmodels' profiled log-likelihood of one model, on a workspace of its own.

    Parameters
    ----------
    data : GroupedData
    layout : Layout
    """

    def __init__(self, data: GroupedData, layout: Layout) -> None:
        self.layout = layout
        x, y = data.exog, data.endog
        self._x, self._y = x, y
        offset = np.linalg.lstsq(x, y, rcond=None)[0] if x.shape[1] else None
        self.cross_products: CrossProducts = cross_products(
            [t.codes for t in layout.terms],
            [t.z for t in layout.terms],
            [t.n_levels for t in layout.terms],
            x,
            y,
            beta_offset=offset,
        )
        # The engine's problem gives the criterion; its λ templates are not used
        # (λ comes from the layout's square-root parameters).
        self.problem = LinearProblem(self.cross_products, layout.terms, reml=True)
        self._factor = self.problem.workspace()
        self.n_obs = int(self.cross_products.n_obs)
        self.n_fixed = int(self.cross_products.n_fixed)

    def dof(self, reml: bool) -> int:
        """f: n − p for REML, n for ML."""
        return self.n_obs - self.n_fixed if reml else self.n_obs

    def evaluate(self, lambdas: list[np.ndarray], *, modes: bool = False) -> Evaluation | None:
        """The factor's pieces at Λ (None when Λ gives no positive-definite factor)."""
        factor = self._factor
        if not factor.update([np.asarray(lam, dtype=np.float64) for lam in lambdas]):
            return None
        pwrss = factor.pwrss()
        if not (pwrss > 0 and math.isfinite(pwrss)):
            return None
        p = self.n_fixed
        if p:
            r = factor.L_xx[:p, :p]
            a = r @ r.T
            beta = factor.fixed_effects()
            logdet_a = factor.logdet_x()
        else:
            a, beta, logdet_a = np.zeros((0, 0)), np.zeros(0), 0.0
        term_modes = self._modes(lambdas, beta) if modes else None
        return Evaluation(
            logdet_v=factor.logdet_theta(),
            logdet_a=logdet_a,
            pwrss=pwrss,
            beta=beta,
            a=a,
            modes=term_modes,
        )

    def _modes(self, lambdas: list[np.ndarray], beta: np.ndarray) -> list[np.ndarray]:
        spherical = self._factor.spherical_modes(beta)
        return [
            u.reshape(t.n_levels, t.q) @ np.asarray(lam).T
            for u, t, lam in zip(spherical, self.layout.terms, lambdas, strict=True)
        ]

    def modes_at(self, lambdas: list[np.ndarray], beta: np.ndarray) -> list[np.ndarray] | None:
        """Each term's conditional modes (levels, q) at Λ given the fixed effects ``beta``."""
        if self.evaluate(lambdas) is None:
            return None
        return self._modes(lambdas, np.asarray(beta, dtype=np.float64))

    def loglike_of(
        self,
        ev: Evaluation | None,
        reml: bool,
        beta: np.ndarray | None,
        quadratic: float | None = None,
    ) -> float:
        """ℓ at an evaluation, β = ``beta`` (None: the GLS β̂); Q(β) given or from ``ev``."""
        if ev is None:
            return -math.inf
        f = self.dof(reml)
        q = ev.quadratic(beta) if quadratic is None else quadratic
        if not q > 0:
            return -math.inf
        value = -0.5 * ev.logdet_v - 0.5 * f * (math.log(q / f) + 1.0 + _LOG_2PI)
        if reml:
            value -= 0.5 * ev.logdet_a
        return value

    def direct_quadratic(self, lambdas: list[np.ndarray], beta: np.ndarray) -> float:
        """Q(β) as ‖y − Xβ − ZΛu‖² + ‖u‖² at the modes u given β (factor at ``lambdas``).

        The factor gives r² as the last pivot of a Cholesky factor, the
        difference of large sums; this sum of squares has no cancellation and
        u's rounding errors enter it only to second order (u minimises it).
        Derivatives by finite differences need that accuracy.
        """
        beta = np.asarray(beta, dtype=np.float64)
        spherical = self._factor.spherical_modes(beta)
        fitted = self._x @ beta
        penalty = 0.0
        for term, u, lam in zip(self.layout.terms, spherical, lambdas, strict=True):
            b = u.reshape(term.n_levels, term.q) @ np.asarray(lam).T
            fitted = fitted + np.einsum("nq,nq->n", term.z, b[term.codes])
            penalty += float(u @ u)
        residual = self._y - fitted
        return float(residual @ residual) + penalty

    def beta_derivatives(
        self, ev: Evaluation, reml: bool, beta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """∂ℓ/∂β and ∂²ℓ/∂β² at ``beta``, exactly.

        With d = β − β̂ and Q = r² + dᵀAd: ∂ℓ/∂β = −f·Ad/Q and
        ∂²ℓ/∂β² = −f·A/Q + 2f·(Ad)(Ad)ᵀ/Q².
        """
        f = self.dof(reml)
        ad = ev.a @ (np.asarray(beta, dtype=np.float64) - ev.beta)
        q = ev.quadratic(beta)
        return -f * ad / q, -f * ev.a / q + 2 * f * np.outer(ad, ad) / q**2

    def loglike(
        self, phi: np.ndarray, reml: bool, beta: np.ndarray | None = None, precise: bool = False
    ) -> float:
        """ℓ at φ (square-root parameters) and ``beta`` (None: profiled).

        ``precise``: Q(β) by :meth:`direct_quadratic` (for finite differences).
        """
        lambdas = self.layout.lambdas(phi)
        ev = self.evaluate(lambdas)
        if ev is None or not precise:
            return self.loglike_of(ev, reml, beta)
        b = ev.beta if beta is None else np.asarray(beta, dtype=np.float64)
        return self.loglike_of(ev, reml, beta, self.direct_quadratic(lambdas, b))

    def loglike_psi(self, psi: np.ndarray, reml: bool, beta: np.ndarray | None = None) -> float:
        """ℓ at ψ (statsmodels' full parameters); −inf where ψ is not positive semi-definite.

        Evaluated with :meth:`direct_quadratic`, for derivatives.
        """
        phi = self.layout.phi_from_psi(psi)
        if phi is None:
            return -math.inf
        return self.loglike(phi, reml, beta, precise=True)

    def deviance(self, phi: np.ndarray, reml: bool) -> float:
        """−2ℓ at the profiled β̂: the engine's criterion (lme4's scale); inf on failure."""
        if not self._factor.update(self.layout.lambdas(phi)):
            return math.inf
        return self.problem.criterion(self._factor, reml)
