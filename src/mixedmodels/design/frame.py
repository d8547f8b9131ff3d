"""The data as the model reads them: the columns used, the weights, the rows used.

The first step of the design stage.  The caller's data (pandas, polars, or a
dict of columns) is read without being modified or copied needlessly; the
columns the formula uses are fetched once and checked; rows with a missing
value in any of them (or in the weights) are found, as lme4's ``na.omit``
drops them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula import ParsedFormula
from .checks import check_columns, check_rows_left, weights_array
from .columns import read_columns
from .levels import TakenCategories, taken_categories

__all__ = ["ModelFrame", "UsedRows", "as_data_frame", "column_missing", "read_frame"]


def as_data_frame(data: Any) -> pd.DataFrame:
    """The caller's data as a pandas DataFrame, without modifying or copying it needlessly.

    Accepts a pandas DataFrame (returned as is), a polars DataFrame or
    LazyFrame, or a mapping of column name → values.  Columns with several
    header levels (a MultiIndex) are refused: a formula names a column by one
    name.
    """
    if isinstance(data, pd.DataFrame):
        frame = data
    elif data is None:
        raise DataError("data is required: pass a pandas or polars DataFrame or a dict of columns")
    elif type(data).__module__.split(".")[0] == "polars":
        frame = _from_polars(data)
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(dict(data))
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
    elif type(data).__module__.split(".")[0] == "dask":
        raise DataError(
            f"data is a dask {type(data).__name__}: fit it out of memory with "
            "mixedmodels.distributed.fit_dask(formula, data), or call .compute() for a "
            "pandas DataFrame if it fits in memory"
        )
    else:
        raise DataError(
            "data must be a pandas or polars DataFrame or a dict of columns, "
            f"not {type(data).__name__}"
        )
    if isinstance(frame.columns, pd.MultiIndex):
        shown = ", ".join(map(str, frame.columns[:3]))
        raise DataError(
            f"the data's columns have {frame.columns.nlevels} header levels ({shown}, ...); "
            "a formula names a column by one name: flatten them first, e.g. "
            "data.columns = ['_'.join(map(str, c)) for c in data.columns]"
        )
    return frame


# Integers up to this size are exact in a float64 column.
_FLOAT_EXACT = 2**53


def _from_polars(data: Any) -> pd.DataFrame:
    """A polars frame column by column, so that pyarrow is not needed.

    An ``Enum`` keeps its declared level order (as an R factor with explicit
    levels); a ``Categorical`` becomes text; numbers stay numbers, exactly
    (integers with nulls become float64 only while every value is exact in
    it, 128-bit integers int64 when they fit, decimals Python decimals);
    everything else (booleans with nulls, dates, lists, ...) becomes Python
    objects, which the design reads or refuses by column
    (:mod:`.columns`).
    """
    import polars as pl

    if isinstance(data, pl.LazyFrame):
        data = data.collect()
    if not isinstance(data, pl.DataFrame):
        raise DataError(f"data must be a polars DataFrame or LazyFrame, not {type(data).__name__}")
    columns: dict[str, Any] = {}
    for name in data.columns:
        series = data.get_column(name)
        dtype = series.dtype
        if isinstance(dtype, pl.Enum):
            columns[name] = pd.Categorical(
                series.cast(pl.String).to_list(), categories=list(dtype.categories)
            )
        elif isinstance(dtype, pl.Categorical):
            columns[name] = series.cast(pl.String).to_list()
        elif dtype.is_integer():
            columns[name] = _polars_integers(series)
        elif dtype.is_float():
            columns[name] = series.cast(pl.Float64).to_numpy()
        elif dtype == pl.Boolean and not series.null_count():
            columns[name] = series.to_numpy()
        else:
            columns[name] = pd.Series(series.to_list(), dtype=object)
    return pd.DataFrame(columns)


def _polars_integers(series: Any) -> Any:
    """A polars integer column as numpy's, exactly: float64 with NaN for nulls while the
    values are exact in it, else pandas' nullable Int64, else Python integers."""
    import polars as pl

    low, high = series.min(), series.max()
    if low is None:  # every value null
        return np.full(len(series), np.nan)
    wide = str(series.dtype) in ("Int128", "UInt128")  # numpy has no such integers
    if series.null_count():
        if -_FLOAT_EXACT <= low and high <= _FLOAT_EXACT:
            return series.cast(pl.Float64).to_numpy()
        if -(2**63) <= low and high < 2**63:
            return pd.array(series.to_list(), dtype="Int64")
        return pd.Series(series.to_list(), dtype=object)
    if not wide:
        return series.to_numpy()
    if -(2**63) <= low and high < 2**63:
        return series.cast(pl.Int64).to_numpy()
    return pd.Series(series.to_list(), dtype=object)


def column_missing(series: pd.Series, values: np.ndarray | None = None) -> np.ndarray | None:
    """Where a column is missing, or None when it cannot be (integer and boolean columns)
    or is not (numbers and categories whose one reduction says so).

    ``values`` is the column as a numpy array when it is already at hand.
    """
    return _missing(series, series.dtype, values)


def _missing(series: pd.Series, dtype: Any, values: np.ndarray | None) -> np.ndarray | None:
    """:func:`column_missing` given the column's dtype."""
    if isinstance(dtype, np.dtype):
        if dtype.kind in "iub":
            return None
        if dtype.kind == "f":
            values = series.to_numpy() if values is None else values
            # The smallest value is NaN exactly when a value is (numpy's minimum
            # propagates NaN): one reduction, without the mask, settles the usual
            # case.  Unlike a sum it cannot overflow or meet infinities of both
            # signs, so it needs no errstate (whose context costs more than the pass).
            if not len(values) or not math.isnan(values.min()):
                return None
            return np.isnan(values)
    elif isinstance(dtype, pd.CategoricalDtype):
        codes = series.array.codes  # what isna() tests, without its overhead
        return codes < 0 if len(codes) and codes.min() < 0 else None
    elif isinstance(dtype, pd.StringDtype):
        array = series.array
        if isinstance(array, pd.arrays.ArrowStringArray):
            import pyarrow as pa  # present: pandas' arrow text is built on it

            # A missing text is a null in arrow, which counts them: the usual case
            # (none) without isna()'s mask (~30 µs for 2 000 rows).
            if not pa.array(array).null_count:
                return None
    return np.asarray(series.isna(), dtype=bool)


@dataclass
class ModelFrame:
    """The caller's data as the model reads it.

    Attributes
    ----------
    data : DataFrame
        The caller's data (never modified), or a shallow copy of it in which
        the columns :mod:`.columns` converted replace the given ones.
    columns : dict of str to Series
        Every column the formula uses as the model reads it, fetched once
        (pandas' column access is slow enough to matter for small models).
    weights : ndarray or None
        Prior weights, one per row of ``data``.
    missing : ndarray of bool
        Rows with a missing value in a column used or in the weights.
    culprits : list of str
        The columns holding those missing values (``"weights"`` for the weights).
    dtypes : dict of str to dtype
        The dtype of each of ``columns`` read so far (see :meth:`dtype`).
    taken : dict of str to TakenCategories
        Each categorical column's codes and the categories its rows take,
        found with its missing values (:func:`.levels.taken_categories`).
    """

    data: pd.DataFrame
    columns: dict[str, pd.Series]
    weights: np.ndarray | None
    missing: np.ndarray
    culprits: list[str]
    dtypes: dict[str, Any] = field(default_factory=dict, repr=False)
    taken: dict[str, TakenCategories] = field(default_factory=dict, repr=False)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def values(self, name: str) -> np.ndarray:
        """Column ``name`` as a numpy array (converted once)."""
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = self.columns[name].to_numpy()
        return array

    def dtype(self, name: str) -> Any:
        """Column ``name``'s dtype (read once: pandas' dtype property costs a few calls,
        and every step of the design asks what a column is)."""
        dtype = self.dtypes.get(name)
        if dtype is None:
            dtype = self.dtypes[name] = self.columns[name].dtype
        return dtype


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
    given = check_columns(data, parsed.columns)
    columns, dtypes = read_columns(parsed, given)
    w = None if weights is None else weights_array(weights, data)
    n_rows = len(data)
    if n_rows == 0:
        raise DataError("the data have no rows")
    frame = ModelFrame(data, columns, w, np.zeros(n_rows, dtype=bool), [], dtypes)
    changed = []
    for name, column in columns.items():
        dtype = dtypes[name]
        if isinstance(dtype, pd.CategoricalDtype):
            # Its missing codes found with the categories taken, which its coding
            # as a factor reads again (:func:`.levels.factor_codes`).
            taken = frame.taken[name] = taken_categories(column, dtype)
            bad = taken.codes < 0 if taken.missing else None
        elif isinstance(dtype, np.dtype) and dtype.kind == "f":
            # _missing's test for floats, inline (a float column is in most models).
            values = frame.values(name)
            bad = np.isnan(values) if math.isnan(values.min()) else None
        else:
            bad = _missing(column, dtype, None)
        if column is not given[name]:
            changed.append(name)
            # Missing as given (a conversion may have put a placeholder there).
            before = column_missing(given[name])
            bad = before if bad is None else bad if before is None else bad | before
        if bad is not None and bad.any():
            frame.missing |= bad
            frame.culprits.append(name)
    if changed:
        # formulaic reads the converted columns; the caller's frame is not touched.
        frame.data = data = data.copy(deep=False)
        for name in changed:
            data[name] = columns[name]
    if w is not None and np.isnan(w).any():
        frame.missing |= np.isnan(w)
        frame.culprits.append("weights")
    if frame.culprits:  # without, no row is missing: nothing to refuse
        check_rows_left(data.index, given, frame.missing, frame.culprits, missing)
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
    def of(cls, keep: np.ndarray, index: pd.Index, *, every: bool = False) -> UsedRows:
        """The rows of ``index`` that ``keep`` selects (``every``: the caller knows they
        are all of them, and ``keep`` is not counted)."""
        n_dropped = 0 if every else len(keep) - int(np.count_nonzero(keep))
        if n_dropped:
            return cls(keep, keep, index[keep], len(keep) - n_dropped, n_dropped)
        return cls(keep, None, index, len(keep), 0)
