"""A Dask GLMM's fitted means, linear predictors, residuals and predictions: lazy series.

The GLMM's counterpart of :class:`~mixedmodels.frontends.dask.rows.DaskRows`:
each partition prepares its rows as the fit did, computes η = o + Xβ̂ + Zb̂
and μ with the fitted state shipped to it, and returns the values asked for
(:func:`~mixedmodels.models.glmm_rows.residual_values` for the residual
types).  What needs every row on the driver (simulation, the bootstrap) is
refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...design.evaluation import evaluation_frame
from ...errors import DataError, RowsNeededError
from ...families import Family
from ...formula import TRANSFORMS
from ...models.glmm_rows import check_residual_type, residual_values
from ...results.glmm_state import GeneralizedFittedState
from .detect import is_dask_dataframe
from .glmm_rows import WEIGHTS
from .passes import Plan, complete_rows
from .rows import EXACT_QUANTILE_ROWS, Estimates, linear_predictor, predictions

if TYPE_CHECKING:
    from ...models.glmm import GeneralizedLinearMixedModel

_ROWS_NEEDED = (
    "{what} needs the model's rows in memory, which a fit to a Dask DataFrame does not "
    "keep; fit the rows with pandas (mm.glmer(formula, ddf.compute(), ...)) if they fit "
    "in memory"
)


@dataclass(frozen=True, eq=False)
class GlmmEstimates:
    """What a partition needs for its fitted values (shipped to workers)."""

    linear: Estimates
    family: Family


class DaskGlmmRows:
    """The rows of a GLMM fitted to a Dask DataFrame.

    Parameters
    ----------
    plan : Plan
        How a partition builds its rows' share of the model.
    data : dask.dataframe.DataFrame
        The prepared data (response, prior weights and offset columns added).
    n_obs : int
        Rows used by the fit.
    spec : ResponseSpec
        How the response and weights were prepared.
    """

    def __init__(self, plan: Plan, data: Any, n_obs: int, spec: Any) -> None:
        self.plan = plan
        self.data = data
        self.n_obs = n_obs
        self.spec = spec

    def _lazy(self, data: Any, state: GeneralizedFittedState, kind: str, **options: Any):
        import dask

        estimates = GlmmEstimates(
            Estimates(self.plan, np.asarray(state.beta), tuple(state.modes)), state.family
        )
        meta = pd.Series(dtype=np.float64, name=kind)
        ref = dask.delayed(estimates, traverse=False)
        return data.map_partitions(_partition_values, ref, kind, meta=meta, **options)

    def fitted(self, state: GeneralizedFittedState):
        """Conditional means μ̂ of the rows used: a lazy Dask series."""
        return self._lazy(self.data, state, "fitted")

    def linear_predictor(self, state: GeneralizedFittedState):
        """η̂ = o + Xβ̂ + Zb̂ of the rows used: a lazy Dask series."""
        return self._lazy(self.data, state, "linpred")

    def residuals(self, state: GeneralizedFittedState, kind: str = "deviance"):
        """Residuals of a type (lme4's ``residuals(fit, type)``): a lazy Dask series."""
        return self._lazy(self.data, state, check_residual_type(kind))

    def scaled_residual_quantiles(self, state: GeneralizedFittedState) -> tuple[np.ndarray, bool]:
        """Quantiles of the Pearson residuals over σ̂ (exact up to a few million rows)."""
        import dask

        values = self._lazy(self.data, state, "pearson") / state.sigma
        if self.n_obs <= EXACT_QUANTILE_ROWS:
            return np.quantile(values.compute().to_numpy(), [0, 0.25, 0.5, 0.75, 1]), True
        low, high, mid = dask.compute(
            values.min(), values.max(), values.quantile([0.25, 0.5, 0.75])
        )
        return np.array([low, *np.asarray(mid), high], dtype=np.float64), False

    def predict(
        self,
        model: GeneralizedLinearMixedModel,
        newdata: Any,
        scale: str,
        random: bool,
        allow_new_levels: bool,
    ):
        """Predictions for the rows of a Dask DataFrame (default: the model's) on the
        link or response ``scale``: lazy."""
        if newdata is not None and not is_dask_dataframe(newdata):
            raise DataError(f"newdata must be a Dask DataFrame, not {type(newdata).__name__}")
        data = self.data if newdata is None else newdata
        kind = "predict_response" if scale == "response" else "predict_link"
        return self._lazy(data, model.state, kind, random=random, allow_new_levels=allow_new_levels)

    @property
    def prior_weights(self):
        raise RowsNeededError(_ROWS_NEEDED.format(what="the prior weights"))

    @property
    def offset(self):
        raise RowsNeededError(_ROWS_NEEDED.format(what="the offset"))

    def in_memory(self, what: str):
        raise RowsNeededError(_ROWS_NEEDED.format(what=what))

    def same_response(self, other: Any) -> bool:
        """Same Dask collection (by Dask's token), same response, weights and offset."""
        from dask.base import tokenize

        return (
            isinstance(other, DaskGlmmRows)
            and tokenize(self.data) == tokenize(other.data)
            and self.spec == other.spec
            and self.n_obs == other.n_obs
        )


def _partition_values(
    frame: pd.DataFrame,
    estimates: GlmmEstimates,
    kind: str,
    random: bool = True,
    allow_new_levels: bool = False,
) -> pd.Series:
    """One partition's fitted values, residuals or predictions (η = o + Xβ̂ + Zb̂, the
    offset the plan's)."""
    plan, family = estimates.linear.plan, estimates.family
    if kind.startswith("predict"):
        eta = predictions(frame, estimates.linear, random, allow_new_levels).to_numpy()
        values = family.link.inverse(eta) if kind.endswith("response") else eta
        return pd.Series(values, index=frame.index, name=kind)
    used, _ = complete_rows(frame, plan.columns, plan.weights)
    if used.empty:
        return pd.Series(np.empty(0), index=used.index, name=kind)
    used = plan.factorize(used, strict=False)
    mats = plan.fixed_specs.get_model_matrix(
        evaluation_frame(used, None), context=TRANSFORMS, na_action="ignore"
    )
    eta = linear_predictor(used, estimates.linear, True, False, mats.rhs)
    mu = family.link.inverse(eta)
    if kind == "fitted":
        values = mu
    elif kind == "linpred":
        values = eta
    else:
        y = np.asarray(mats.lhs, dtype=np.float64).ravel()
        weights = used[WEIGHTS].to_numpy(dtype=np.float64)
        values = residual_values(family, y, mu, eta, weights, kind)
    return pd.Series(values, index=used.index, name=kind)
