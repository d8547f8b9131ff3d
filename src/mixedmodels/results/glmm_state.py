"""The fitted state of a generalized linear mixed model: one immutable record.

As :class:`~mixedmodels.results.state.FittedState` for the linear model: the
fit reads its solution once (β, the modes, the means, σ, the covariance of
β̂ by lme4's method) and freezes it here with what the optimizer did; every
result is computed from this record and the model's problem.  The fields the
shared results code reads (``theta``, ``beta``, ``sigma``, ``modes``,
``vcov``, ``std_errors``, ``objective``, ``optimizer``) have the linear
state's meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.glmm_fit import GlmmOptimum
from ..engine.glmm_problem import GlmmSolution
from ..engine.optimize import OptimizationSummary
from ..families import Family


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class GeneralizedFittedState:
    """Estimates of a fitted GLMM.

    Attributes
    ----------
    theta, beta : ndarray
        θ̂ (lme4's order) and β̂.
    sigma : float
        1, or for families with a dispersion lme4's sqrt((Σ pearson² + ‖u‖²)/n).
    modes : tuple of ndarray
        Per term, the conditional modes b = λû, (levels, q).
    vcov : ndarray
        Covariance of β̂ as lme4's ``vcov``: 2 H⁻¹ from the Hessian when it
        was computed and usable, else ``vcov_rx``.
    vcov_rx : ndarray
        σ²(R_XᵀR_X)⁻¹ at the final working weights.
    stderr_source : str
        ``"Hessian"`` or ``"RX"``: where ``vcov`` comes from.
    objective : float
        lme4's criterion (Laplace, quadrature or nAGQ = 0; see the reference README).
    nagq : int
        The quadrature points (0, 1 = Laplace, > 1).
    family : Family
        The family at the estimates (with the estimated θ for ``glmer_nb``).
    u, eta, mu : ndarray
        Spherical modes, linear predictor (offset included) and means.
    deviance : float
        Σ of the deviance residuals at μ̂ (lme4's ``deviance()``).
    hessian : ndarray or None
        Hessian of the objective in (θ, β).
    optimizer : OptimizationSummary
        What the optimizer did.
    """

    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    modes: tuple[np.ndarray, ...]
    vcov: np.ndarray
    vcov_rx: np.ndarray
    stderr_source: str
    objective: float
    nagq: int
    family: Family
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    deviance: float
    hessian: np.ndarray | None
    optimizer: OptimizationSummary

    @classmethod
    def from_fit(
        cls, solution: GlmmSolution, optimum: GlmmOptimum, nagq: int, family: Family
    ) -> GeneralizedFittedState:
        source = "Hessian" if optimum.vcov is not None else "RX"
        return cls(
            theta=_frozen(solution.theta),
            beta=_frozen(solution.beta),
            sigma=float(solution.sigma),
            modes=tuple(_frozen(m) for m in solution.modes),
            vcov=_frozen(optimum.vcov if optimum.vcov is not None else solution.vcov_rx),
            vcov_rx=_frozen(solution.vcov_rx),
            stderr_source=source,
            objective=float(solution.objective),
            nagq=int(nagq),
            family=family,
            u=_frozen(solution.u),
            eta=_frozen(solution.eta),
            mu=_frozen(solution.mu),
            deviance=float(solution.deviance),
            hessian=_frozen(optimum.hessian),
            optimizer=optimum.summary,
        )

    @property
    def std_errors(self) -> np.ndarray:
        """Standard errors of β̂ (from ``vcov``)."""
        return np.sqrt(np.diag(self.vcov))
