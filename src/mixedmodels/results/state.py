"""The fitted state of a model: one immutable record of its estimates.

A fit ends by reading θ̂'s solution off the factor once (β, the conditional
modes, σ, the unscaled covariance of β̂) and freezing it here together with
what the optimizer did.  Every result is computed from this record and the
model's problem (for evaluations elsewhere in θ, on workspaces of their own);
nothing reads a factor left behind by the fit.  Arrays are read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.optimize import OptimizationSummary
from ..engine.problem import Solution


@dataclass(frozen=True, eq=False)
class FittedState:
    """Estimates of a fitted linear mixed model.

    Attributes
    ----------
    theta : ndarray
        Relative covariance parameters θ̂, per term the lower triangle of λ
        column-major (lme4's order).
    beta : ndarray
        Fixed-effects estimates β̂.
    sigma : float
        Residual standard deviation σ̂.
    modes : tuple of ndarray
        Per term, the conditional modes of the random effects, (levels, q).
    unscaled_vcov : ndarray
        (R_XᵀR_X)⁻¹: the covariance of β̂ is σ̂² times this.
    objective : float
        REML criterion or ML deviance at θ̂ (lme4's scale).
    reml : bool
        Whether ``objective`` is the REML criterion.
    optimizer : OptimizationSummary
        What the optimizer did (evaluations, convergence messages).
    """

    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    modes: tuple[np.ndarray, ...]
    unscaled_vcov: np.ndarray
    objective: float
    reml: bool
    optimizer: OptimizationSummary

    @classmethod
    def from_solution(
        cls, solution: Solution, reml: bool, optimizer: OptimizationSummary
    ) -> FittedState:
        """The state of a solution (its arrays, read-only and its own, are held as they are)."""
        return cls(
            theta=solution.theta,
            beta=solution.beta,
            sigma=float(solution.sigma),
            modes=solution.modes,
            unscaled_vcov=solution.unscaled_vcov,
            objective=float(solution.objective),
            reml=bool(reml),
            optimizer=optimizer,
        )

    @property
    def vcov(self) -> np.ndarray:
        """Covariance of β̂: σ̂² (R_XᵀR_X)⁻¹."""
        return self.sigma**2 * self.unscaled_vcov

    @property
    def std_errors(self) -> np.ndarray:
        """Standard errors of β̂."""
        return self.sigma * np.sqrt(np.diag(self.unscaled_vcov))
