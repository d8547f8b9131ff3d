"""How the data's factors are coded: logical columns, ordered factors, lme4's ``contrasts=``.

What a column *is* decides its coding in R, and is known only once the data
are read: a logical column is a factor with levels FALSE and TRUE (named
``flagTRUE``), an ordered factor is coded by orthogonal polynomials
(``dose.L``, ``dose.Q``), and lme4's ``contrasts=`` argument chooses the
coding of factors of the fixed part (``{"f": "contr.sum"}`` names columns
``f1``, ``f2``).  :func:`coded_formula` re-translates the formula with those
columns coded accordingly wherever they are a term by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, DataError, FormulaError
from ..formula import ParsedFormula, parse_formula
from ..formula.split import contrasts_code

__all__ = ["coded_formula", "is_logical", "is_ordered"]


def is_logical(column: pd.Series) -> bool:
    """Whether a column is R's logical (numpy bool or pandas boolean)."""
    return _logical_dtype(column.dtype)


def _logical_dtype(dtype: Any) -> bool:
    """:func:`is_logical` from the column's dtype."""
    if isinstance(dtype, np.dtype):  # the usual case, without pandas' dispatch
        return dtype.kind == "b"
    if isinstance(dtype, pd.CategoricalDtype):
        # pandas' test reads the categories' inferred type: settled by their dtype
        # for numbers and text (booleans only for a bool Index), without its dispatch.
        categories = dtype.categories.dtype
        if isinstance(categories, np.dtype) and categories.kind in "biuf":
            return categories.kind == "b"
        if isinstance(categories, pd.StringDtype):
            return False
    return pd.api.types.is_bool_dtype(dtype)


def is_ordered(column: pd.Series) -> bool:
    """Whether a column is R's ordered factor (an ordered pandas categorical)."""
    return isinstance(column.dtype, pd.CategoricalDtype) and bool(column.dtype.ordered)


def _is_factor(column: pd.Series) -> bool:
    dtype = column.dtype
    return isinstance(dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(dtype)


def coded_formula(
    parsed: ParsedFormula,
    columns: Mapping[str, pd.Series],
    contrasts: Any = None,
    *,
    dtypes: Mapping[str, Any] | None = None,
) -> ParsedFormula:
    """``parsed`` with its logical, ordered and ``contrasts=`` columns coded as R codes them.

    Parameters
    ----------
    parsed : ParsedFormula
    columns : mapping of str to Series
        The columns the formula uses.
    contrasts : mapping of str to str, optional
        lme4's ``contrasts=``: column of the fixed part → R's name of the
        contrasts (``"contr.sum"``, ``"contr.helmert"``, ``"contr.poly"``,
        ``"contr.treatment"``, ``"contr.SAS"``) or a call giving the base level
        of treatment contrasts (``"contr.treatment(base = 2)"``,
        ``'contr.treatment(base = "b")'``).
    dtypes : mapping of str to dtype, optional
        Each column's dtype, when the caller has read them.

    Raises
    ------
    ArgumentError
        For ``contrasts`` that is not a mapping of column names to strings.
    DataError
        For contrasts of a column that is not a factor of the fixed part.
    FormulaError
        For contrasts that are not R's.
    """
    everywhere: dict[str, str] = {}
    for name, column in columns.items():
        # Read once: pandas' dtype property costs a few calls.
        dtype = None if dtypes is None else dtypes.get(name)
        if dtype is None:
            dtype = column.dtype
        if isinstance(dtype, np.dtype) and dtype.kind != "b":
            continue  # numbers, text (the usual columns: no call to tell so)
        if _logical_dtype(dtype):
            everywhere[name] = "logical({})"
        elif isinstance(dtype, pd.CategoricalDtype) and dtype.ordered:
            # Explicit, so that new rows given as plain text are coded alike.
            everywhere[name] = "C({}, Poly())"
    fixed: dict[str, str] = {}
    if contrasts is not None:
        if not isinstance(contrasts, Mapping):
            raise ArgumentError(
                "contrasts must be a dict of column name to contrasts, e.g. "
                f'{{"f": "contr.sum"}}, not {type(contrasts).__name__}'
            )
        for name, value in contrasts.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ArgumentError(
                    f"contrasts must map column names to R's contrasts as strings "
                    f'(e.g. {{"f": "contr.sum"}}), got {name!r}: {value!r}'
                )
            if name not in parsed.fixed_part.columns:
                raise DataError(
                    f"contrasts are given for {name!r}, which is not a column of the fixed part "
                    f"of {parsed.source!r}"
                )
            column = columns[name]
            if not (_is_factor(column) or is_logical(column)):
                raise DataError(
                    f"contrasts are given for {name!r}, which holds numbers, not a factor; "
                    f"write factor({name}) in the formula and use C(factor({name}), ...)"
                )
            try:
                code = contrasts_code(value)
            except FormulaError as err:
                raise FormulaError(f"contrasts for {name!r}: {err}") from None
            function = "logical" if is_logical(column) else "C"
            fixed[name] = f"{function}({{}}, {code})"
    if not everywhere and not fixed:
        return parsed
    return parse_formula(parsed.source, everywhere, fixed)
