"""Where a fitted model's rows are: what needs them goes through a row source.

Most results of a linear mixed model come from the cross-products and the
fitted state alone.  Fitted values, residuals, their summary, simulation, the
bootstrap and Kenward–Roger's adjustment need the rows.  A model holds them
through a *row source*: :class:`InMemoryRows` for a design built in memory;
the Dask front end supplies one whose results are lazy Dask series and which
refuses, by name, what would need the rows on the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ..results.state import FittedState

if TYPE_CHECKING:
    from ..design import Design
    from .lmm import LinearMixedModel


class RowSource(Protocol):
    """What a model asks of the place its rows are kept."""

    def fitted(self, state: FittedState) -> Any:
        """Conditional fitted values Xβ + Zb of the rows used."""

    def residuals(self, state: FittedState) -> Any:
        """Response minus conditional fitted values."""

    def scaled_residual_quantiles(self, state: FittedState) -> tuple[np.ndarray, bool]:
        """Min, quartiles and max of the (weighted) residuals over σ̂, and whether exact."""

    def in_memory(self, what: str) -> Design:
        """The design with its rows, or :class:`~mixedmodels.errors.RowsNeededError`
        naming ``what`` needed them."""

    def predict(
        self,
        model: LinearMixedModel,
        newdata: Any,
        random: bool,
        allow_new_levels: bool,
        offset: Any = None,
    ) -> Any:
        """Predictions for ``newdata`` (the rows used when None), offsets included."""

    def same_response(self, other: RowSource) -> bool:
        """Whether two models were fitted to the same responses (and prior weights)."""


class InMemoryRows:
    """The rows of a design held in memory.

    Parameters
    ----------
    design : Design
        The design the model was built from.
    """

    def __init__(self, design: Design) -> None:
        self.design = design

    def linear_predictor(self, state: FittedState, random: bool = True) -> np.ndarray:
        """Xβ̂ plus the offset, plus Zb̂ when ``random``."""
        values = self.design.x @ state.beta
        if self.design.offset is not None:
            values = values + self.design.offset
        if random:
            for term, modes in zip(self.design.terms, state.modes, strict=True):
                values = values + np.einsum("nq,nq->n", term.z, modes[term.codes])
        return values

    def fitted(self, state: FittedState) -> pd.Series:
        return pd.Series(self.linear_predictor(state), index=self.design.row_index, name="fitted")

    def residuals(self, state: FittedState) -> pd.Series:
        values = self.design.y - self.linear_predictor(state)
        return pd.Series(values, index=self.design.row_index, name="residuals")

    def scaled_residual_quantiles(self, state: FittedState) -> tuple[np.ndarray, bool]:
        resid = self.design.y - self.linear_predictor(state)
        if self.design.weights is not None:
            resid = resid * np.sqrt(self.design.weights)
        return np.quantile(resid / state.sigma, [0, 0.25, 0.5, 0.75, 1]), True

    def same_response(self, other: RowSource) -> bool:
        if not isinstance(other, InMemoryRows):
            return False
        mine, theirs = self.design, other.design
        same_weights = (mine.weights is None and theirs.weights is None) or (
            mine.weights is not None
            and theirs.weights is not None
            and np.array_equal(mine.weights, theirs.weights)
        )
        same_offset = (mine.offset is None and theirs.offset is None) or (
            mine.offset is not None
            and theirs.offset is not None
            and np.array_equal(mine.offset, theirs.offset)
        )
        return bool(np.array_equal(mine.y, theirs.y) and same_weights and same_offset)

    def in_memory(self, _what: str) -> Design:
        """The design: its rows are here, whatever needs them."""
        return self.design

    def predict(
        self,
        model: LinearMixedModel,
        newdata: Any,
        random: bool,
        allow_new_levels: bool,
        offset: Any = None,
    ) -> pd.Series:
        from ..inference.predict import predict_new_rows

        if newdata is None:
            values = self.linear_predictor(model.state, random=random)
            return pd.Series(values, index=self.design.row_index, name="prediction")
        return predict_new_rows(
            model, newdata, random=random, allow_new_levels=allow_new_levels, offset=offset
        )
