"""A Dask fit's rows: fitted values, residuals and predictions as lazy Dask series.

The rows stay in the Dask DataFrame.  What needs them is computed partition by
partition from the plan and the fitted state (β̂ and the modes, shipped to the
workers); what would need all of them on the driver (simulation, the
bootstrap, Kenward–Roger) is refused with :class:`~mixedmodels.errors.RowsNeededError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ...design.evaluation import evaluation_frame
from ...design.levels import level_labels
from ...errors import DataError, RowsNeededError
from ...formula import TRANSFORMS
from ...results.state import FittedState
from .detect import is_dask_dataframe
from .passes import Plan, complete_rows

if TYPE_CHECKING:
    from ...models.lmm import LinearMixedModel

# Up to this many rows the summary's residual quartiles are computed exactly on
# the driver (8 bytes a row); beyond, Dask approximates them.
EXACT_QUANTILE_ROWS = 5_000_000

_ROWS_NEEDED = (
    "{what} needs the model's rows in memory, which a fit to a Dask DataFrame does not "
    "keep; fit the rows with pandas (mm.lmer(formula, ddf.compute())) if they fit in memory"
)


@dataclass(frozen=True, eq=False)
class Estimates:
    """What a partition needs to compute its fitted values (shipped to workers)."""

    plan: Plan
    beta: np.ndarray
    modes: tuple[np.ndarray, ...]


class DaskRows:
    """The rows of a model fitted to a Dask DataFrame.

    Parameters
    ----------
    plan : Plan
        How a partition builds its rows' share of the model.
    data : dask.dataframe.DataFrame
        The data the model was fitted to.
    n_obs : int
        Rows used by the fit.
    """

    def __init__(self, plan: Plan, data: Any, n_obs: int) -> None:
        self.plan = plan
        self.data = data
        self.n_obs = n_obs

    def _lazy(self, data: Any, state: FittedState, kind: str, **options: Any):
        import dask

        estimates = dask.delayed(
            Estimates(self.plan, np.asarray(state.beta), tuple(state.modes)), traverse=False
        )
        meta = pd.Series(dtype=np.float64, name=kind)
        return data.map_partitions(_partition_values, estimates, kind, meta=meta, **options)

    def fitted(self, state: FittedState):
        """Conditional fitted values Xβ + Zb of the rows used: a lazy Dask series."""
        return self._lazy(self.data, state, "fitted")

    def residuals(self, state: FittedState):
        """Response minus conditional fitted values: a lazy Dask series."""
        return self._lazy(self.data, state, "residuals")

    def scaled_residual_quantiles(self, state: FittedState) -> tuple[np.ndarray, bool]:
        """Min, quartiles and max of the scaled residuals, and whether they are exact.

        Up to :data:`EXACT_QUANTILE_ROWS` rows the residuals come to the driver
        and the quartiles are exact; beyond, min and max stay exact and the
        quartiles are Dask's approximation from per-partition percentiles.
        """
        import dask

        resid = self._lazy(self.data, state, "scaled_residuals") / state.sigma
        if self.n_obs <= EXACT_QUANTILE_ROWS:
            values = resid.compute().to_numpy()
            return np.quantile(values, [0, 0.25, 0.5, 0.75, 1]), True
        low, high, mid = dask.compute(resid.min(), resid.max(), resid.quantile([0.25, 0.5, 0.75]))
        return np.array([low, *np.asarray(mid), high], dtype=np.float64), False

    def same_response(self, other: Any) -> bool:
        """Same Dask collection (by Dask's token), same response and weights columns."""
        from dask.base import tokenize

        return (
            isinstance(other, DaskRows)
            and tokenize(self.data) == tokenize(other.data)
            and self.plan.parsed.response == other.plan.parsed.response
            and self.plan.weights == other.plan.weights
            and self.n_obs == other.n_obs
        )

    def in_memory(self, what: str):
        raise RowsNeededError(_ROWS_NEEDED.format(what=what))

    def predict(
        self,
        model: LinearMixedModel,
        newdata: Any,
        random: bool,
        allow_new_levels: bool,
        offset: Any = None,
    ):
        """Predictions for the rows of a Dask DataFrame (default: the model's data).

        Lazy; a row with a missing predictor gets NaN.  Unknown levels are
        reported when the series is computed.
        """
        data = self.data if newdata is None else newdata
        if offset is not None:
            raise DataError(
                "for a Dask DataFrame the offset of new rows comes from their columns; "
                "offset= arrays are not supported"
            )
        if not is_dask_dataframe(data):
            raise DataError(f"newdata must be a Dask DataFrame, not {type(data).__name__}")
        return self._lazy(
            data, model.state, "predict", random=random, allow_new_levels=allow_new_levels
        )


def _partition_values(
    frame: pd.DataFrame,
    estimates: Estimates,
    kind: str,
    random: bool = True,
    allow_new_levels: bool = False,
) -> pd.Series:
    """Fitted values, residuals or predictions of one partition's rows."""
    plan = estimates.plan
    if kind == "predict":
        return predictions(frame, estimates, random, allow_new_levels)
    used, _ = complete_rows(frame, plan.columns, plan.weights)
    if used.empty:
        return pd.Series(np.empty(0), index=used.index, name=kind)
    used = plan.factorize(used, strict=False)
    mats = plan.fixed_specs.get_model_matrix(
        evaluation_frame(used, None), context=TRANSFORMS, na_action="ignore"
    )
    fitted = linear_predictor(used, estimates, True, False, mats.rhs)
    if kind == "fitted":
        return pd.Series(fitted, index=used.index, name=kind)
    resid = np.asarray(mats.lhs, dtype=np.float64).ravel() - fitted
    if kind == "scaled_residuals" and plan.weights is not None:
        resid = resid * np.sqrt(used[plan.weights].to_numpy(dtype=np.float64))
    return pd.Series(resid, index=used.index, name=kind)


def predictions(
    frame: pd.DataFrame, estimates: Estimates, random: bool, allow_new_levels: bool
) -> pd.Series:
    """Predictions for one partition of new rows, read as the in-memory ``predict`` reads
    them: a row with a missing value in a column the prediction needs is NaN; unseen
    factor levels are refused; a missing or unseen grouping level is refused unless
    ``allow_new_levels``."""
    plan = estimates.plan
    fixed = list(plan.parsed.fixed_part.columns)
    lhs = [c for spec in plan.random_specs for c in spec.part.columns] if random else []
    groups = [c for spec in plan.random_specs for c in spec.group] if random else []
    absent = [c for c in dict.fromkeys(fixed + lhs + groups) if c not in frame.columns]
    if absent:
        raise DataError(f"column {absent[0]!r} used by the model is not in newdata")
    values_read = list(dict.fromkeys(fixed + lhs))
    incomplete = (
        frame[values_read].isna().any(axis=1).to_numpy()
        if values_read
        else np.zeros(len(frame), dtype=bool)
    )
    result = np.full(len(frame), np.nan)
    if not incomplete.all():
        rows = plan.factorize(frame.loc[~incomplete], strict=True)
        result[~incomplete] = linear_predictor(rows, estimates, random, allow_new_levels)
    return pd.Series(result, index=frame.index, name="predict")


def linear_predictor(
    frame: pd.DataFrame,
    estimates: Estimates,
    random: bool,
    allow_new_levels: bool,
    x: Any = None,
) -> np.ndarray:
    """Xβ (+ Zb) for rows whose factor columns carry the global levels."""
    plan = estimates.plan
    if x is None:
        x = plan.fixed_specs.rhs.get_model_matrix(
            evaluation_frame(frame, None), context=TRANSFORMS, na_action="ignore"
        )
    values = np.asarray(x, dtype=np.float64)[:, plan.keep] @ estimates.beta
    offset = plan.offset(frame)
    if offset is not None:
        values = values + offset
    if not random:
        return values
    codes, z = plan.random_parts(frame)
    for group, c, zi, modes in zip(plan.groups, codes, z, estimates.modes, strict=True):
        unseen = c < 0
        if unseen.any() and not allow_new_levels:
            _refuse_level(frame, group.columns, int(np.flatnonzero(unseen)[0]))
        contribution = np.einsum("nq,nq->n", zi, modes[np.maximum(c, 0)])
        values = values + np.where(unseen, 0.0, contribution)
    return values


def _refuse_level(frame: pd.DataFrame, columns: tuple[str, ...], row: int) -> None:
    """The in-memory predict's error for a missing or unseen level of a grouping factor."""
    factor = ":".join(columns)
    labels = level_labels([frame[col].iloc[row] for col in columns])
    if any(label is None for label in labels):
        n_rows = int(frame[list(columns)].isna().any(axis=1).sum())
        raise DataError(
            f"grouping factor {factor!r} is missing in {n_rows} row{'s' if n_rows > 1 else ''} "
            f"of the new data (first at row {frame.index[row]!r}); pass allow_new_levels=True "
            "to predict them with a zero random effect (lme4 refuses them too)"
        )
    raise DataError(
        f"level {':'.join(labels)!r} of grouping factor {factor!r} was not in the data the "
        "model was fitted to; pass allow_new_levels=True to predict it with a zero random effect"
    )
