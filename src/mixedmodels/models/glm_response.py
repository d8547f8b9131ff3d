"""Responses (and offsets) of generalized linear mixed models, as R's ``glm`` and lme4's
``glmer`` accept them.

Before the design is built, the response side of the formula is turned into
one numeric column (and, for binomial counts, prior weights):

* ``cbind(successes, failures) ~ ...``: the proportion s/(s + f) with
  s + f trials as prior weights (times any ``weights`` given), as R's
  ``binomial()$initialize`` does;
* a boolean, two-level factor or text column for a binomial model: 0 for
  the first level in sorted order (a factor's first category), 1 for the
  other, as ``glm`` codes a factor response;
* anything else is left to the design as a numeric response.

The data are never modified: a new column is added to a lazy copy of the
frame (pandas copy-on-write), named after the response as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from ..design import as_data_frame
from ..design.checks import weights_array
from ..errors import DataError, FormulaError
from ..families import Binomial, Family
from ..formula import TRANSFORMS, parse_formula


@dataclass
class PreparedResponse:
    """What :func:`prepare_response` hands to the design.

    Attributes
    ----------
    formula : str
        The formula with the response replaced by a (backticked) column of ``frame``.
    frame : pandas.DataFrame
        The data with that column added (a lazy copy; the caller's frame is untouched).
    weights : ndarray or None
        Prior weights per data row (trials × user weights for ``cbind``).
    response_name : str
        The response as the user wrote it (for summaries).
    response_levels : list of str or None
        The two levels of a factor response (failure first).
    """

    formula: str
    frame: pd.DataFrame
    weights: np.ndarray | None
    response_name: str
    response_levels: list[str] | None = None


def _split_tilde(formula: str) -> tuple[str, str]:
    """(left, right) of the top-level ``~``; the parser reports malformed formulas."""
    depth = 0
    quote = None
    for i, ch in enumerate(formula):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "~" and depth == 0:
            return formula[:i].strip(), formula[i + 1 :]
    return "", formula


def _cbind_arguments(lhs: str) -> list[str] | None:
    """The arguments of ``cbind(a, b)`` when it is the whole left-hand side, else None."""
    text = lhs.strip()
    if not (text.startswith("cbind") and text[5:].lstrip().startswith("(")):
        return None
    start = text.index("(")
    depth = 0
    quote = None
    pieces: list[str] = []
    current = start + 1
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                if text[i + 1 :].strip():
                    return None
                pieces.append(text[current:i].strip())
                return pieces
        elif ch == "," and depth == 1:
            pieces.append(text[current:i].strip())
            current = i + 1
    raise FormulaError(f"unbalanced parentheses in the response {lhs!r}")


def evaluate_expression(expression: str, frame: pd.DataFrame, what: str) -> np.ndarray:
    """An R expression of columns (``size - incidence``, ``log(expected)``) on every row.

    The expression goes through the formula parser's allow-list; missing
    values give NaN.
    """
    translated = parse_formula(f"{expression} ~ 1").response
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            matrices = formulaic.model_matrix(
                f"{translated} ~ 1", frame, context=TRANSFORMS, na_action="ignore"
            )
    except Exception as err:
        raise FormulaError(f"cannot evaluate {what} {expression!r}: {err}") from err
    values = matrices.lhs
    if values.shape[1] != 1:
        raise DataError(f"{what} {expression!r} must be numeric")
    return np.asarray(values, dtype=np.float64).ravel()


def _column_name(frame: pd.DataFrame, name: str) -> str:
    while name in frame.columns:
        name = f"{name}_"
    return name


def _binary_codes(column: pd.Series, name: str) -> tuple[np.ndarray, list[str]]:
    """0/1 (NaN where missing) for a boolean, factor or text response, and its levels."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64), ["False", "True"]
    missing = column.isna().to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = column.cat.remove_unused_categories().cat.categories
        levels = [str(v) for v in present]
        codes = column.cat.remove_unused_categories().cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(column, sort=True)
        levels = [str(v) for v in uniques]
        if any(isinstance(v, bool) for v in uniques) and len(uniques) <= 2:
            # An object column of booleans: False is failure.
            order = sorted(uniques)
            codes = np.asarray([order.index(v) if v in order else -1 for v in column])
            levels = [str(v) for v in order]
    if len(levels) > 2:
        raise DataError(
            f"the binomial response {name!r} has {len(levels)} levels "
            f"({', '.join(map(repr, levels[:5]))}{', ...' if len(levels) > 5 else ''}); "
            "a binomial outcome has two: recode it (e.g. level == 'yes')"
        )
    y = np.where(missing, np.nan, (np.asarray(codes) > 0).astype(np.float64))
    return y, levels


def cbind_formula(formula: str, columns: Any) -> tuple[str, str] | None:
    """For a ``cbind(s, f) ~ ...`` formula, the prepared formula and the name of its
    proportion column (as :func:`prepare_response` makes them for data with these
    ``columns``); None for any other response."""
    lhs, rhs = _split_tilde(formula)
    if not lhs or _cbind_arguments(lhs) is None:
        return None
    column = lhs
    while column in columns:
        column = f"{column}_"
    return f"`{column}` ~ {rhs}", column


def prepare_response(formula: str, data: Any, family: Family, weights: Any) -> PreparedResponse:
    """Turn the response side into one numeric column (and weights); see the module docstring."""
    if not isinstance(formula, str):
        raise FormulaError(f"the formula must be a string, not {type(formula).__name__}")
    frame = as_data_frame(data)
    lhs, rhs = _split_tilde(formula)
    user_weights = None
    if weights is not None:
        user_weights = weights_array(weights, frame)
    arguments = _cbind_arguments(lhs) if lhs else None
    if arguments is not None:
        if not isinstance(family, Binomial):
            raise FormulaError(
                f"a cbind(successes, failures) response is for the binomial family, "
                f"not {family.name}"
            )
        if len(arguments) != 2 or not all(arguments):
            raise FormulaError(
                f"cbind() in the response takes two columns, successes and failures; got {lhs!r}"
            )
        successes = evaluate_expression(arguments[0], frame, "the successes")
        failures = evaluate_expression(arguments[1], frame, "the failures")
        for values, label, text in (
            (successes, "successes", arguments[0]),
            (failures, "failures", arguments[1]),
        ):
            negative = np.flatnonzero(values < 0)
            if negative.size:
                raise DataError(
                    f"the {label} {text!r} must be counts (≥ 0); row {frame.index[negative[0]]!r} "
                    f"holds {values[negative[0]]:g}"
                )
        trials = successes + failures
        empty = np.flatnonzero(trials == 0)
        if empty.size:
            raise DataError(
                f"{empty.size} row{'s have' if empty.size > 1 else ' has'} no trials "
                f"({arguments[0]} + {arguments[1]} = 0; first at row {frame.index[empty[0]]!r}): "
                "they carry no information, drop them"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            proportion = successes / trials
        prior = trials if user_weights is None else trials * user_weights
        column = _column_name(frame, lhs)
        return PreparedResponse(
            formula=f"`{column}` ~ {rhs}",
            frame=frame.assign(**{column: proportion}),
            weights=prior,
            response_name=lhs,
        )
    if isinstance(family, Binomial) and lhs in frame.columns:
        dtype = frame[lhs].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            # The column is replaced by its 0/1 codes in the copy; the formula stays.
            y, levels = _binary_codes(frame[lhs], lhs)
            return PreparedResponse(
                formula=formula,
                frame=frame.assign(**{lhs: y}),
                weights=user_weights,
                response_name=lhs,
                response_levels=levels,
            )
    return PreparedResponse(formula=formula, frame=frame, weights=user_weights, response_name=lhs)


def offset_values(offset: Any, n_rows: int) -> np.ndarray:
    """An offset given as an array for the ``n_rows`` rows used."""
    values = np.asarray(offset, dtype=np.float64).reshape(-1)
    if len(values) != n_rows:
        raise DataError(f"offset must have one value per row used ({n_rows})")
    return values


def offset_in_formula(formula: str, offset: Any, frame: pd.DataFrame) -> tuple[str, Any]:
    """(formula, offset=) for the design: an offset given as an expression of columns
    (``"log(expected)"``, not a column's name) becomes the formula term
    ``offset(log(expected))``, which the design computes on the fit's rows and on new
    ones; a column name or an array stays the design's ``offset=``."""
    if isinstance(offset, str) and offset not in frame.columns:
        return f"{formula} + offset({offset})", None
    return formula, offset
