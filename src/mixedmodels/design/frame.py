"""The data as the model reads them: the columns used, the weights, the rows used.

The first step of the design stage.  The caller's data (pandas, polars, or a
dict of columns) is read without being modified or copied needlessly; the
columns the formula uses are fetched once and checked; rows with a missing
value in any of them (or in the weights) are found, as lme4's ``na.omit``
drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula import ParsedFormula
from .checks import check_columns, check_rows_left, weights_array

__all__ = ["ModelFrame", "UsedRows", "as_data_frame", "column_missing", "read_frame"]


def as_data_frame(data: Any) -> pd.DataFrame:
    """The caller's data as a pandas DataFrame, without modifying or copying it needlessly.

    Accepts a pandas DataFrame (returned as is), a polars DataFrame or
    LazyFrame, or a mapping of column name → values.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if data is None:
        raise DataError("data is required: pass a pandas or polars DataFrame or a dict of columns")
    module = type(data).__module__.split(".")[0]
    if module == "polars":
        return _from_polars(data)
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except (TypeError, ValueError) as err:
            lengths = {
                str(k): len(v)
                for k, v in data.items()
                if hasattr(v, "__len__") and not isinstance(v, str)
            }
            detail = f" (lengths: {lengths})" if len(set(lengths.values())) > 1 else ""
            raise DataError(
                f"could not build a table from the dict of columns{detail}: {err}"
            ) from None
    if module == "dask":
        raise DataError(
            f"data is a dask {type(data).__name__}: fit it out of memory with "
            "mixedmodels.distributed.fit_dask(formula, data), or call .compute() for a "
            "pandas DataFrame if it fits in memory"
        )
    raise DataError(
        f"data must be a pandas or polars DataFrame or a dict of columns, not {type(data).__name__}"
    )


def _from_polars(data: Any) -> pd.DataFrame:
    """A polars frame column by column, so that pyarrow is not needed.

    An ``Enum`` keeps its declared level order (as an R factor with explicit
    levels); other columns become numbers, text or booleans with None/NaN for
    nulls.
    """
    import polars as pl

    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if not isinstance(data, pl.DataFrame):
        raise DataError(f"data must be a polars DataFrame or LazyFrame, not {type(data).__name__}")
    columns: dict[str, Any] = {}
    for name in data.columns:
        series = data.get_column(name)
        if isinstance(series.dtype, pl.Enum):
            columns[name] = pd.Categorical(
                series.cast(pl.String).to_list(), categories=list(series.dtype.categories)
            )
        elif series.dtype.is_numeric():
            columns[name] = (
                series.cast(pl.Float64).to_numpy() if series.null_count() else series.to_numpy()
            )
        else:
            columns[name] = (
                series.cast(pl.String).to_list()
                if isinstance(series.dtype, pl.Categorical)
                else series.to_list()
            )
    return pd.DataFrame(columns)


def column_missing(series: pd.Series, values: np.ndarray | None = None) -> np.ndarray | None:
    """Where a column is missing, or None when it cannot be (integer and boolean columns).

    ``values`` is the column as a numpy array when it is already at hand.
    """
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return None
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return np.isnan(series.to_numpy() if values is None else values)
    if isinstance(dtype, pd.CategoricalDtype):
        return series.array.codes < 0  # what isna() tests, without its overhead
    return np.asarray(series.isna(), dtype=bool)


@dataclass
class ModelFrame:
    """The caller's data as the model reads it.

    Attributes
    ----------
    data : DataFrame
        The caller's data (never modified).
    columns : dict of str to Series
        Every column the formula uses, fetched once (pandas' column access is
        slow enough to matter for small models).
    weights : ndarray or None
        Prior weights, one per row of ``data``.
    missing : ndarray of bool
        Rows with a missing value in a column used or in the weights.
    culprits : list of str
        The columns holding those missing values (``"weights"`` for the weights).
    """

    data: pd.DataFrame
    columns: dict[str, pd.Series]
    weights: np.ndarray | None
    missing: np.ndarray
    culprits: list[str]
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def values(self, name: str) -> np.ndarray:
        """Column ``name`` as a numpy array (converted once)."""
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = self.columns[name].to_numpy()
        return array


def read_frame(parsed: ParsedFormula, data: Any, weights: Any, missing: str) -> ModelFrame:
    """Read the columns ``parsed`` uses from ``data`` and find the rows with missing values.

    Raises
    ------
    DataError
        For data that are not a table, a column that is absent or unusable,
        bad weights, no rows, or missing values when ``missing="raise"`` (or
        in every row).
    """
    data = as_data_frame(data)
    columns = check_columns(data, parsed.columns)
    w = None if weights is None else weights_array(weights, data)
    if len(data) == 0:
        raise DataError("the data have no rows")
    frame = ModelFrame(data, columns, w, np.zeros(len(data), dtype=bool), [])
    for name, column in columns.items():
        floats = isinstance(column.dtype, np.dtype) and column.dtype.kind == "f"
        bad = column_missing(column, frame.values(name) if floats else None)
        if bad is not None and bad.any():
            frame.missing |= bad
            frame.culprits.append(name)
    if w is not None and np.isnan(w).any():
        frame.missing |= np.isnan(w)
        frame.culprits.append("weights")
    check_rows_left(data.index, columns, frame.missing, frame.culprits, missing)
    return frame


@dataclass(frozen=True)
class UsedRows:
    """The rows of the data a model uses.

    Attributes
    ----------
    keep : ndarray of bool
        Per row of the data, whether it is used.
    selection : ndarray of bool or None
        ``keep``, or None when every row is used (selecting can be skipped).
    index : Index
        The caller's labels of the rows used.
    n : int
        The number of rows used.
    n_dropped : int
        The number of rows dropped.
    """

    keep: np.ndarray
    selection: np.ndarray | None
    index: pd.Index
    n: int
    n_dropped: int

    @classmethod
    def of(cls, keep: np.ndarray, index: pd.Index) -> UsedRows:
        """The rows of ``index`` that ``keep`` selects."""
        n_dropped = int(np.count_nonzero(~keep))
        if n_dropped:
            return cls(keep, keep, index[keep], len(keep) - n_dropped, n_dropped)
        return cls(keep, None, index, len(keep), 0)
