"""Where a fitted GLMM's rows are: means, linear predictors and residuals.

The GLMM's counterpart of :class:`~mixedmodels.models.rows.InMemoryRows`:
the results that need the rows read them here, from the fitted state (which
holds η̂ and μ̂ of the rows used) and the design.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import Design
from ..errors import ArgumentError
from ..families import Family
from ..results.glmm_state import GeneralizedFittedState

RESIDUAL_TYPES = ("deviance", "pearson", "response", "working")


def check_residual_type(kind: str) -> str:
    """``kind`` if it is one of :data:`RESIDUAL_TYPES`, else a clear error."""
    if kind not in RESIDUAL_TYPES:
        raise ArgumentError(
            f"type must be one of {', '.join(map(repr, RESIDUAL_TYPES))}, not {kind!r}"
        )
    return kind


def residual_values(
    family: Family,
    y: np.ndarray,
    mu: np.ndarray,
    eta: np.ndarray,
    weights: np.ndarray,
    kind: str,
) -> np.ndarray:
    """Residuals of rows with response y, means μ, linear predictor η and prior weights,
    of one of :data:`RESIDUAL_TYPES` (lme4's ``residuals(fit, type)``)."""
    kind = check_residual_type(kind)
    if kind == "deviance":
        d = family.deviance_residuals(y, mu, weights)
        return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
    if kind == "pearson":
        return (y - mu) * np.sqrt(weights / family.variance(mu))
    if kind == "response":
        return y - mu
    return (y - mu) / family.link.mu_eta(eta)


class GlmmRows:
    """The rows of a GLMM's design held in memory.

    Parameters
    ----------
    design : Design
        The design the model was built from (y as the family sees it:
        proportions for binomial counts).
    prior_weights, offset : ndarray
        Prior weights and offset of the rows used.
    """

    def __init__(self, design: Design, prior_weights: np.ndarray, offset: np.ndarray) -> None:
        self.design = design
        self.prior_weights = prior_weights
        self.offset = offset

    def _series(self, values: np.ndarray, name: str) -> pd.Series:
        return pd.Series(np.asarray(values), index=self.design.row_index, name=name)

    def fitted(self, state: GeneralizedFittedState) -> pd.Series:
        """Conditional means μ̂ (response scale: probabilities for binomial responses)."""
        return self._series(state.mu, "fitted")

    def linear_predictor(self, state: GeneralizedFittedState) -> pd.Series:
        """η̂ = o + Xβ̂ + Zb̂ (link scale, offset included)."""
        return self._series(state.eta, "linpred")

    def residual_values(self, state: GeneralizedFittedState, kind: str) -> np.ndarray:
        """Residuals of one of :data:`RESIDUAL_TYPES`, as lme4's ``residuals(fit, type)``."""
        return residual_values(
            state.family, self.design.y, state.mu, state.eta, self.prior_weights, kind
        )

    def residuals(self, state: GeneralizedFittedState, kind: str = "deviance") -> pd.Series:
        return self._series(self.residual_values(state, kind), "residuals")

    def scaled_residual_quantiles(self, state: GeneralizedFittedState) -> tuple[np.ndarray, bool]:
        """Quantiles of the Pearson residuals over σ̂ (lme4's glmer summary)."""
        values = self.residual_values(state, "pearson") / state.sigma
        return np.quantile(values, [0, 0.25, 0.5, 0.75, 1]), True

    def in_memory(self, _what: str) -> Design:
        """The design: its rows are here, whatever needs them."""
        return self.design

    def same_response(self, other: object) -> bool:
        """Whether two models were fitted to the same responses, weights and offset."""
        if not isinstance(other, GlmmRows):
            return False
        return bool(
            np.array_equal(self.design.y, other.design.y)
            and np.array_equal(self.prior_weights, other.prior_weights)
            and np.array_equal(self.offset, other.offset)
        )
