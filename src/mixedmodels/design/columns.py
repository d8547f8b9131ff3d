"""What a column's values are to a model: numbers, text, levels, or refused.

formulaic and the plain path (:mod:`.plain`) understand numpy numbers and
booleans, text and pandas categoricals.  A column the response, the fixed
part or a term's left-hand side reads that holds anything else is converted
here as R would hold it, or refused with a :class:`~mixedmodels.errors.DataError`
naming the column:

- pandas' nullable numbers (``Int64``, ``Float64``), pyarrow numbers and
  decimals, and object columns of Python numbers (``int``, ``float``,
  ``Decimal``, ``Fraction``) are numbers (float64, int64 when every value is
  an integer that fits), as R reads a numeric column;
- nullable booleans (pandas ``boolean``, pyarrow ``bool``, object columns of
  True/False) are booleans; the rows where they are missing are dropped
  with the other missing values;
- pandas' ``string`` and pyarrow text are text (a factor); an object column
  mixing text and numbers is text, each number spelled as R's
  ``as.character`` spells it (so ``1`` and ``"1"`` are one level, ``"1"``);
  intervals are a factor, as R's ``cut()`` gives one; a sparse column is
  read dense;
- dates, times and durations, complex numbers, bytes and containers (lists,
  tuples, dicts) are refused.

Grouping factors accept more (dates and times are levels, as R's ``factor()``
of a date): :func:`grouping_column` refuses only values that cannot be levels.
Missing values are found on the column as given (:func:`.frame.column_missing`)
before conversion; what a conversion puts in their place is never used.
"""

from __future__ import annotations

import decimal
import fractions
import functools
import numbers
from collections.abc import Mapping, Set
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula import ParsedFormula
from .levels import level_label

__all__ = [
    "check_column_names",
    "grouping_column",
    "is_numeric_column",
    "matrix_columns",
    "predictor_column",
    "read_columns",
]

# infer_dtype's names for what is refused as dates and times.
_TEMPORAL = {"date", "datetime", "datetime64", "time", "timedelta", "timedelta64", "period"}
_INT64 = np.iinfo(np.int64)
# formulaic's name for the intercept column.
_INTERCEPT = "Intercept"


def _dates(name: str, what: object) -> DataError:
    return DataError(
        f"column {name!r} holds dates or times ({what}); convert it to numbers "
        "(e.g. days since the start) before using it in a model"
    )


def _refused(name: str, what: str, fix: str) -> DataError:
    return DataError(f"column {name!r} holds {what}; {fix}")


def _series(values: np.ndarray | pd.api.extensions.ExtensionArray, like: pd.Series) -> pd.Series:
    return pd.Series(values, index=like.index, name=like.name, copy=False)


def is_numeric_column(column: pd.Series) -> bool:
    """Whether formulaic reads ``column`` (as converted here) as a number: numpy
    numbers and booleans."""
    dtype = column.dtype
    return isinstance(dtype, np.dtype) and dtype.kind in "biuf"


def predictor_column(name: str, column: pd.Series, dtype: Any = None) -> pd.Series:
    """``column`` as the model's matrices read it (``column`` itself when it is fine).

    ``dtype`` is the column's dtype when the caller has read it already.

    Raises
    ------
    DataError
        For values a model cannot use (see the module's docstring).
    """
    if dtype is None:
        dtype = column.dtype
    if isinstance(dtype, np.dtype):
        kind = dtype.kind
        if kind in "biuf":
            return column
        if kind == "O":
            return _object_column(name, column)
        if kind in "mM":
            raise _dates(name, dtype)
        if kind == "c":
            raise _refused(name, "complex numbers", "a model needs real numbers or categories")
        raise _refused(name, f"{dtype} values", "convert them to numbers or text")
    if isinstance(dtype, pd.CategoricalDtype):
        return column
    if isinstance(dtype, pd.DatetimeTZDtype | pd.PeriodDtype):
        raise _dates(name, dtype)
    if isinstance(dtype, pd.SparseDtype):
        return predictor_column(name, column.sparse.to_dense())
    if isinstance(dtype, pd.IntervalDtype):
        return _series(pd.Categorical(column), column)
    if isinstance(dtype, pd.StringDtype):
        # pandas' own text ("str", NaN for missing) formulaic reads as a factor;
        # "string" (pd.NA for missing) it would take for numbers.
        return column if dtype.na_value is np.nan else _text(column)
    if isinstance(dtype, pd.ArrowDtype):
        return _arrow_column(name, column)
    if isinstance(dtype, pd.BooleanDtype):
        return _booleans(column)
    if pd.api.types.is_numeric_dtype(dtype):  # Int64, Float64, UInt8, ...
        return _nullable_numbers(column)
    raise _refused(name, f"{dtype} values", "convert them to numbers or text")


def _text(column: pd.Series) -> pd.Series:
    """Text as formulaic reads a factor: an object column, missing values as NaN."""
    values = column.to_numpy(dtype=object, na_value=np.nan)
    return pd.Series(values, index=column.index, name=column.name, dtype=object)


def _booleans(column: pd.Series) -> pd.Series:
    """A boolean column without missing values (their rows are dropped anyway)."""
    return _series(column.to_numpy(dtype=bool, na_value=False), column)


def _arrow_column(name: str, column: pd.Series) -> pd.Series:
    import pyarrow as pa

    kind = column.dtype.pyarrow_dtype
    if pa.types.is_boolean(kind):
        return _booleans(column)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _nullable_numbers(column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text(column)
    if pa.types.is_dictionary(kind):
        return _series(pd.Categorical(column.to_numpy(dtype=object, na_value=None)), column)
    if pa.types.is_temporal(kind):
        raise _dates(name, column.dtype)
    raise _refused(name, f"{column.dtype} values", "convert them to numbers or text")


def _nullable_numbers(column: pd.Series) -> pd.Series:
    """pandas' or pyarrow's numbers as numpy's: float64 with NaN where missing, else
    their own numpy type (float64 for decimals)."""
    if column.isna().to_numpy().any():
        return _series(column.to_numpy(dtype=np.float64, na_value=np.nan), column)
    numpy_dtype = getattr(column.dtype, "numpy_dtype", np.dtype(object))
    if numpy_dtype.kind not in "iuf":
        numpy_dtype = np.dtype(np.float64)
    return _series(column.to_numpy(dtype=numpy_dtype), column)


def _numbers(values: np.ndarray, like: pd.Series) -> pd.Series:
    """Python or numpy numbers (None for missing) as int64 when they all are integers that
    fit, else float64 (NaN for missing), as R holds a numeric column."""
    present = [v for v in values if v is not None]
    if len(present) == len(values) and all(isinstance(v, numbers.Integral) for v in present):
        if all(_INT64.min <= int(v) <= _INT64.max for v in present):
            return _series(np.array([int(v) for v in present], dtype=np.int64), like)
    floats = np.array([np.nan if _missing(v) else float(v) for v in values], dtype=np.float64)
    return _series(floats, like)


def _missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and value != value)
    )


def _object_column(name: str, column: pd.Series) -> pd.Series:
    """An object column by what it holds (pandas' inference, then value by value)."""
    inferred = pd.api.types.infer_dtype(column, skipna=True)
    if inferred in ("string", "empty"):
        return column
    if inferred == "boolean":
        return _series(np.array([bool(v) if not _missing(v) else False for v in column]), column)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return _numbers(column.to_numpy(dtype=object), column)
    if inferred in _TEMPORAL:
        raise _dates(name, f"{inferred} objects")
    if inferred == "interval":
        return _series(pd.Categorical(column), column)
    return _mixed(name, column)


def _kind(value: object) -> str:
    """``"text"``, ``"number"``, ``"boolean"``, ``"missing"`` or the value's type name."""
    if _missing(value):
        return "missing"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (numbers.Real, decimal.Decimal, fractions.Fraction)):
        return "number"
    return type(value).__name__


def _mixed(name: str, column: pd.Series) -> pd.Series:
    """Values of several kinds: numbers alone are numbers, text with numbers or
    booleans is text (R's ``as.character``), anything else is refused."""
    kinds = {_kind(v) for v in column}
    kinds.discard("missing")
    odd = sorted(kinds - {"text", "number", "boolean"})
    if odd:
        shown = ", ".join(odd)
        if odd == ["bytes"]:
            raise _refused(name, "bytes", "decode them to text (e.g. .str.decode('utf-8'))")
        if kinds & {"date", "datetime", "time", "timedelta", "Timestamp", "Timedelta"}:
            raise _dates(name, f"{shown} objects")
        raise _refused(
            name, f"{shown} values", "a model needs numbers, text, booleans or categories"
        )
    if kinds == {"number"}:
        return _numbers(column.to_numpy(dtype=object), column)
    if kinds == {"boolean"}:
        return _series(np.array([bool(v) if not _missing(v) else False for v in column]), column)
    labels = [level_label(v) for v in column]
    return pd.Series(
        [np.nan if label is None else label for label in labels],
        index=column.index,
        name=column.name,
        dtype=object,
    )


def grouping_column(name: str, column: pd.Series, dtype: Any = None) -> pd.Series:
    """``column`` as the levels of a grouping factor: any values that can be levels.

    Numbers, text, booleans and categories are levels, and so are dates and
    times (as R's ``factor()`` of a date).  Bytes and containers (lists,
    tuples, dicts, sets) are refused naming the column.  A sparse column is
    read dense.  ``dtype`` is the column's dtype when the caller has read it.
    """
    if dtype is None:
        dtype = column.dtype
    if isinstance(dtype, pd.SparseDtype):
        return column.sparse.to_dense()
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred in ("mixed", "bytes", "unknown-array"):
            odd = next((v for v in column if isinstance(v, _NOT_LEVELS)), None)
            if odd is not None:
                raise _refused(
                    name,
                    f"{type(odd).__name__} values",
                    "a grouping factor needs numbers, text, booleans, dates or categories"
                    + (" (decode bytes to text)" if isinstance(odd, bytes) else ""),
                )
    return column


# Values that are not levels of a grouping factor (R has no such factor levels).
_NOT_LEVELS = (bytes, bytearray, tuple, list, dict, set, frozenset, np.ndarray)


# Memoised on the formula (parsing is memoised too): a refit asks again.
@functools.lru_cache(maxsize=128)
def matrix_columns(parsed: ParsedFormula) -> frozenset[str]:
    """The columns the model's matrices read: the response's, the fixed part's and the
    random-effects terms' left-hand sides' (not the grouping factors')."""
    names = {*parsed.response_columns, *parsed.fixed_part.columns}
    for spec in parsed.random:
        names.update(spec.part.columns)
    return frozenset(names)


def check_column_names(in_matrices: Set[str]) -> None:
    """Refuse a column named ``Intercept`` among the columns the matrices read: formulaic's
    intercept column has that name, and the two would be taken for one."""
    if _INTERCEPT in in_matrices:
        raise DataError(
            f"column {_INTERCEPT!r} cannot be used in the formula: the intercept's column "
            "has that name, and the two would be taken for one; rename the column"
        )


def read_columns(
    parsed: ParsedFormula, given: Mapping[str, pd.Series]
) -> tuple[dict[str, pd.Series], dict[str, Any]]:
    """Each column the formula uses as the model reads it (see the module's docstring),
    and each one's dtype (read once here: pandas' dtype property costs a few calls, and
    the design's later steps all ask what a column is).

    Raises
    ------
    DataError
        For a column whose values a model cannot use, or a column named
        ``Intercept`` in the model's matrices (formulaic's intercept column has
        that name: the two would be taken for one).
    """
    in_matrices = matrix_columns(parsed)
    check_column_names(in_matrices)
    columns: dict[str, pd.Series] = {}
    dtypes: dict[str, Any] = {}
    for name, column in given.items():
        dtype = column.dtype
        # numpy numbers and booleans and pandas categoricals are read as they are,
        # by both (the usual columns: no call to tell so).
        if (isinstance(dtype, np.dtype) and dtype.kind in "biuf") or isinstance(
            dtype, pd.CategoricalDtype
        ):
            read = column
        elif name in in_matrices:
            read = predictor_column(name, column, dtype)
        else:
            read = grouping_column(name, column, dtype)
        columns[name] = read
        dtypes[name] = dtype if read is column else read.dtype
    return columns, dtypes
