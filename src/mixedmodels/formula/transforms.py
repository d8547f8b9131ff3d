"""R's arithmetic, logic and summaries inside a formula, in floating point as R computes them.

The translator writes arithmetic as Python operators on float columns (the
design stage hands formulaic integer and logical columns as floats, so
nothing wraps around), and writes comparisons and logical operators as calls
of the functions here, which follow R's three-valued logic: a comparison
with a missing value is missing (``NA``), ``TRUE | NA`` is ``TRUE``.  A
logical value is a pandas ``boolean`` array; :func:`I` makes a logical term a
factor with levels FALSE and TRUE, as R's ``model.matrix`` does
(``I(x > 1)TRUE``).

The summaries (``mean``, ``sd``, ...) are stateful transforms: computed on
the rows the fit evaluates, before rows with missing values are dropped (as
R's ``model.frame`` computes them), and kept for new data, as ``scale()``
keeps its centre and scale.  Without ``na.rm = TRUE`` a summary of a column
with missing values is refused (R's value would be NA, making every row
missing).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from formulaic.materializers.types import FactorValues
from formulaic.transforms import poly as formulaic_poly
from formulaic.utils.stateful_transforms import stateful_transform

from .factors import as_labels, factor_values, is_factor, logical_factor
from .limits import MAX_BASIS_COLUMNS

__all__ = [
    "LOGICAL_FUNCTIONS",
    "MATH_FUNCTIONS",
    "SUMMARIES",
    "I",
    "as_integer",
    "as_logical",
    "as_numeric",
    "center",
    "ifelse",
    "is_in",
    "log",
    "pmax",
    "pmin",
    "poly",
    "r_round",
    "scale",
    "signif",
]


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------


def _raw(values: Any) -> Any:
    return values.__wrapped__ if isinstance(values, FactorValues) else values


def _is_logical(values: Any) -> bool:
    dtype = getattr(_raw(values), "dtype", None)
    return dtype is not None and pd.api.types.is_bool_dtype(dtype)


def as_numeric(values: Any) -> Any:
    """R's ``as.numeric``: numbers stay, logicals are 0/1, a factor its level codes (from 1).

    A text column counts as a factor, as everywhere in a formula (R's
    ``read.csv(stringsAsFactors = TRUE)``).  Missing values are NaN.
    """
    raw = _raw(values)
    if is_factor(values) or isinstance(getattr(raw, "dtype", None), pd.CategoricalDtype):
        codes = as_labels(values).codes
        return np.where(codes >= 0, codes + 1.0, np.nan)
    if np.isscalar(raw):
        return float(raw)
    if isinstance(raw, pd.Series):
        raw = raw.array
    if _is_logical(raw):
        return np.asarray(
            pd.array(raw, dtype="boolean").to_numpy(dtype=np.float64, na_value=np.nan)
        )
    array = np.asarray(raw)
    if array.dtype.kind in "iufb":
        return array.astype(np.float64)
    # A text column is a factor here (as read.csv makes it in R): its level codes.
    codes = as_labels(array).codes
    return np.where(codes >= 0, codes + 1.0, np.nan)


def as_integer(values: Any) -> Any:
    """R's ``as.integer``: ``as.numeric`` truncated towards zero."""
    return np.trunc(as_numeric(values))


def as_logical(values: Any) -> pd.arrays.BooleanArray:
    """R's logical of ``values``: booleans, or numbers (nonzero is TRUE); NA where missing."""
    raw = _raw(values)
    if np.isscalar(raw):
        raw = [raw]
    if isinstance(raw, pd.Series):
        raw = raw.array
    if _is_logical(raw):
        return pd.array(raw, dtype="boolean")
    array = np.asarray(raw)
    if array.dtype.kind in "OUS":
        # R's as.logical of text: "TRUE"/"true"/"T"/"True" and the FALSE spellings.
        spelled = {
            "TRUE": True,
            "true": True,
            "T": True,
            "True": True,
            "FALSE": False,
            "false": False,
            "F": False,
            "False": False,
        }
        values = [spelled.get(v) if isinstance(v, str) else v for v in array]
        return pd.array(
            [v if isinstance(v, (bool, np.bool_)) else None for v in values], dtype="boolean"
        )
    numbers = np.asarray(raw, dtype=np.float64)
    result = pd.array(numbers != 0, dtype="boolean")
    result[np.isnan(numbers)] = pd.NA
    return result


def _operand(values: Any) -> tuple[np.ndarray | Any, bool]:
    """An operand of a comparison as numbers or labels, and where it is missing."""
    raw = _raw(values)
    if is_factor(values) or isinstance(getattr(raw, "dtype", None), pd.CategoricalDtype):
        labels = np.asarray(as_labels(values), dtype=object)
        return labels, pd.isna(labels)
    if np.isscalar(raw) or raw is None:
        return raw, pd.isna(raw)
    if isinstance(raw, pd.Series):
        raw = raw.array
    if _is_logical(raw):
        numbers = as_numeric(raw)
        return numbers, np.isnan(numbers)
    array = np.asarray(raw)
    if array.dtype.kind in "iuf":
        numbers = array.astype(np.float64)
        return numbers, np.isnan(numbers)
    return array.astype(object), pd.isna(array)


def _is_text(values: Any) -> bool:
    if isinstance(values, str):
        return True
    return isinstance(values, np.ndarray) and values.dtype == object


def _compare(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    def compare(left: Any, right: Any) -> pd.arrays.BooleanArray:
        a, a_missing = _operand(left)
        b, b_missing = _operand(right)
        if _is_text(a) or _is_text(b):
            if symbol not in ("==", "!="):
                raise TypeError(
                    f"`{symbol}` orders numbers; text can only be compared with == or !="
                )
            if _is_text(a) != _is_text(b):
                # R would compare the numbers' text; no model means that.
                raise TypeError(f"`{symbol}` compares text with numbers")
            a = a if isinstance(a, str) else np.where(a_missing, "", a).astype(str)
            b = b if isinstance(b, str) else np.where(b_missing, "", b).astype(str)
        with np.errstate(invalid="ignore"):
            result = np.asarray(op(a, b), dtype=bool)
        missing = np.logical_or(a_missing, b_missing)
        out = pd.array(
            np.broadcast_to(result, np.broadcast(result, missing).shape), dtype="boolean"
        )
        out[np.broadcast_to(missing, out.shape)] = pd.NA
        return out

    compare.__name__ = f"compare_{op.__name__}"
    return compare


def r_and(left: Any, right: Any) -> pd.arrays.BooleanArray:
    """R's elementwise ``&`` (FALSE & NA is FALSE)."""
    return as_logical(left) & as_logical(right)


def r_or(left: Any, right: Any) -> pd.arrays.BooleanArray:
    """R's elementwise ``|`` (TRUE | NA is TRUE)."""
    return as_logical(left) | as_logical(right)


def r_not(values: Any) -> pd.arrays.BooleanArray:
    """R's ``!``."""
    return ~as_logical(values)


def is_in(values: Any, table: list[Any]) -> pd.arrays.BooleanArray:
    """R's ``x %in% c(...)``: membership, by level label for factors; never missing."""
    a, missing = _operand(values)
    if _is_text(a) or any(isinstance(v, str) for v in table):
        labels = np.asarray(a, dtype=object).astype(str)
        wanted = {str(v) for v in table}
    else:
        labels = np.asarray(a, dtype=np.float64)
        wanted = {float(v) for v in table}
    found = np.isin(labels, list(wanted)) & ~np.asarray(missing)
    return pd.array(found, dtype="boolean")


def is_na(values: Any) -> pd.arrays.BooleanArray:
    """R's ``is.na``."""
    _, missing = _operand(values)
    return pd.array(np.asarray(missing, dtype=bool), dtype="boolean")


#: Comparison and logical operators as the translator calls them.
LOGICAL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "r_eq": _compare(operator.eq, "=="),
    "r_ne": _compare(operator.ne, "!="),
    "r_lt": _compare(operator.lt, "<"),
    "r_le": _compare(operator.le, "<="),
    "r_gt": _compare(operator.gt, ">"),
    "r_ge": _compare(operator.ge, ">="),
    "r_and": r_and,
    "r_or": r_or,
    "r_not": r_not,
    "is_in": is_in,
    "is_na": is_na,
}


# ---------------------------------------------------------------------------
# Terms and elementwise functions
# ---------------------------------------------------------------------------


def I(values: Any) -> Any:  # noqa: E743
    """R's ``I()``: the value as is; a logical becomes a factor with levels FALSE, TRUE."""
    if _is_logical(values):
        return factor_values(logical_factor(values), None, None, drop_unused=False)
    return values


def log(x: Any, base: float | None = None) -> Any:
    """Natural logarithm, or the logarithm to ``base``, as R's ``log(x, base)``."""
    if base is None:
        return np.log(x)
    return np.log(x) / np.log(base)


def r_round(x: Any, digits: float = 0) -> Any:
    """R's ``round(x, digits)`` (halves to even, as IEC 60559).

    As in R, ``digits`` beyond ±308 act as ±308, and a value that has no
    digits left to round at that precision is returned as it is.
    """
    values = np.asarray(as_numeric(x), dtype=np.float64)
    places = int(min(max(float(digits), -308.0), 308.0))
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        scale = 10.0**places
        scaled = values * scale
        rounded = np.round(scaled) / scale
    return np.where(np.isfinite(scaled) & np.isfinite(rounded), rounded, values)


def signif(x: Any, digits: float = 6) -> Any:
    """R's ``signif(x, digits)``: ``digits`` significant digits (1 to 22, as R)."""
    values = np.asarray(as_numeric(x), dtype=np.float64)
    places = int(min(max(float(digits), 1.0), 22.0))
    if places >= 17:
        return values  # a double has no more significant digits than that
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        scale = 10.0 ** (places - 1 - np.where(np.isfinite(magnitude), magnitude, 0))
        rounded = np.round(values * scale) / scale
    return np.where((values == 0) | ~np.isfinite(rounded), values, rounded)


def _stack(values: tuple[Any, ...]) -> np.ndarray:
    """The arguments of ``pmin``/``pmax`` as rows of one array, recycled to one length."""
    arrays = np.broadcast_arrays(*(np.atleast_1d(as_numeric(v)).astype(np.float64) for v in values))
    return np.vstack([a.ravel() for a in arrays])


def pmin(*values: Any, na_rm: bool = False) -> np.ndarray:
    """R's ``pmin``: the elementwise minimum (missing if any is, unless ``na.rm``)."""
    stacked = _stack(values)
    if not na_rm:
        return np.min(stacked, axis=0)
    with np.errstate(invalid="ignore"):
        return np.fmin.reduce(stacked, axis=0)


def pmax(*values: Any, na_rm: bool = False) -> np.ndarray:
    """R's ``pmax``: the elementwise maximum (missing if any is, unless ``na.rm``)."""
    stacked = _stack(values)
    if not na_rm:
        return np.max(stacked, axis=0)
    with np.errstate(invalid="ignore"):
        return np.fmax.reduce(stacked, axis=0)


def ifelse(test: Any, yes: Any, no: Any) -> Any:
    """R's ``ifelse``: ``yes`` where ``test`` is TRUE, ``no`` where FALSE, missing where NA.

    Text in ``yes`` and ``no`` gives a factor (R gives text, which a model
    frame makes a factor).
    """
    condition = as_logical(test)
    chosen = np.asarray(condition.fillna(False), dtype=bool)
    missing = np.asarray(condition.isna(), dtype=bool)
    if isinstance(yes, str) or isinstance(no, str) or _is_text(_operand(yes)[0]):
        a = np.broadcast_to(np.asarray(_operand(yes)[0], dtype=object), chosen.shape)
        b = np.broadcast_to(np.asarray(_operand(no)[0], dtype=object), chosen.shape)
        text = np.where(missing, None, np.where(chosen, a, b))
        return factor_values(as_labels(text), None, None)
    a = np.asarray(as_numeric(yes), dtype=np.float64)
    b = np.asarray(as_numeric(no), dtype=np.float64)
    return np.where(missing, np.nan, np.where(chosen, a, b))


def _unary(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``func`` applied to the numeric value (a logical counts 0/1, as in R)."""

    def apply(x: Any) -> Any:
        return func(as_numeric(x) if _is_logical(x) else x)

    apply.__name__ = getattr(func, "__name__", "function")
    return apply


#: One-argument math functions, by R's name.
MATH_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    name: _unary(func)
    for name, func in {
        "exp": np.exp,
        "sqrt": np.sqrt,
        "abs": np.abs,
        "sign": np.sign,
        "floor": np.floor,
        "ceiling": np.ceil,
        "trunc": np.trunc,
        "log1p": np.log1p,
        "expm1": np.expm1,
        "log2": np.log2,
        "log10": np.log10,
        "sin": np.sin,
        "cos": np.cos,
        "tan": np.tan,
        "asin": np.arcsin,
        "acos": np.arccos,
        "atan": np.arctan,
        "sinh": np.sinh,
        "cosh": np.cosh,
        "tanh": np.tanh,
        "asinh": np.arcsinh,
        "acosh": np.arccosh,
        "atanh": np.arctanh,
    }.items()
}


def atan2(y: Any, x: Any) -> Any:
    """R's ``atan2(y, x)``."""
    return np.arctan2(as_numeric(y), as_numeric(x))


# ---------------------------------------------------------------------------
# Whole-column summaries (stateful)
# ---------------------------------------------------------------------------


def _summary(reduce: Callable[[np.ndarray], float], name: str) -> Callable[..., Any]:
    @stateful_transform
    def summary(*values: Any, na_rm: bool = False, _state: dict | None = None) -> float:
        state = {} if _state is None else _state
        if "value" not in state:
            for value in values:
                raw = _raw(value)
                dtype = getattr(raw, "dtype", None)
                if is_factor(value) or (
                    dtype is not None
                    and (
                        isinstance(dtype, pd.CategoricalDtype)
                        or pd.api.types.is_string_dtype(dtype)
                        or pd.api.types.is_object_dtype(dtype)
                    )
                ):
                    raise TypeError(f"{name}() of a factor or of text is not meaningful")
            numbers = np.concatenate(
                [np.atleast_1d(np.asarray(as_numeric(v), dtype=np.float64)).ravel() for v in values]
            )
            if na_rm:
                numbers = numbers[~np.isnan(numbers)]
            if numbers.size == 0 and name not in ("sum", "length"):
                raise ValueError(f"{name}() of no values")
            if np.isnan(numbers).any() and name != "length":
                # R's value is NA, which makes every row missing: say why instead.
                raise ValueError(
                    f"{name}() of a column with missing values is missing (NA), as in R; "
                    "give na.rm = TRUE to leave them out"
                )
            state["value"] = float(reduce(numbers))
        return state["value"]

    summary.__name__ = name
    return summary


#: Whole-column summaries, by R's name (``var`` and ``sd`` with n − 1).
SUMMARIES: dict[str, Callable[..., Any]] = {
    "mean": _summary(np.mean, "mean"),
    "median": _summary(np.median, "median"),
    "sd": _summary(lambda v: np.std(v, ddof=1) if v.size > 1 else np.nan, "sd"),
    "var": _summary(lambda v: np.var(v, ddof=1) if v.size > 1 else np.nan, "var"),
    "min": _summary(np.min, "min"),
    "max": _summary(np.max, "max"),
    "sum": _summary(np.sum, "sum"),
    "length": _summary(lambda v: float(v.size), "length"),
}


@stateful_transform
def scale(
    data: Any,
    center: bool | float = True,
    scale: bool | float = True,
    ddof: float = 1,
    _state: dict | None = None,
) -> np.ndarray:
    """R's ``scale()``: like formulaic's, but the mean and sd skip missing values.

    Model matrices are evaluated on every row before missing rows are dropped
    (as R's model.frame does), so a NaN in one row must not turn the whole
    column into NaN.  The state keys are formulaic's own, so a saved model spec
    re-applies the same centre and scale to new data.
    """
    state = {} if _state is None else _state
    values = np.array(as_numeric(data), dtype=np.float64)
    state.setdefault("ddof", ddof)
    if "center" not in state:
        if isinstance(center, bool):
            state["center"] = np.nanmean(values, axis=0) if center else None
        else:
            state["center"] = np.array(center)
    if state["center"] is not None:
        values = values - state["center"]
    if "scale" not in state:
        if isinstance(scale, bool):
            count = np.sum(~np.isnan(values), axis=0)
            state["scale"] = (
                np.sqrt(np.nansum(values**2, axis=0) / np.maximum(count - state["ddof"], 1))
                if scale
                else None
            )
        else:
            state["scale"] = np.array(scale)
    if state["scale"] is not None:
        values = values / state["scale"]
    return values


@stateful_transform
def center(data: Any, _state: dict | None = None) -> np.ndarray:
    """R's ``scale(x, scale = FALSE)``, skipping missing values."""
    return scale(data, scale=False, _state=_state)


@stateful_transform
def poly(x: Any, degree: int = 1, raw: bool = False, _state: dict | None = None) -> FactorValues:
    """R's ``poly(x, degree, raw)``: orthonormal (or raw) polynomials, columns 1 to ``degree``.

    As R, the degree must be less than the number of distinct values.
    """
    state = {} if _state is None else _state
    values = np.asarray(as_numeric(x), dtype=np.float64).ravel()
    degree = int(degree)
    if not state:
        if not 1 <= degree <= MAX_BASIS_COLUMNS:
            raise ValueError(f"degree must be between 1 and {MAX_BASIS_COLUMNS}")
        distinct = np.unique(values[~np.isnan(values)]).size
        if degree >= distinct:
            raise ValueError(
                f"degree {degree} must be less than the number of distinct values ({distinct})"
            )
    names = tuple(str(i) for i in range(1, degree + 1))
    if raw:
        state["raw"] = True
        columns = np.column_stack([values**k for k in range(1, degree + 1)])
        return FactorValues(columns, column_names=names)
    result = formulaic_poly(values, degree=degree, _state=state)
    return FactorValues(np.asarray(result), column_names=names)
