"""Checks on a model's data, each failing with a message a user can act on.

The standard is lme4's (``lmerControl``): its checks that stop by default
(``check.nlev.gtr.1``, ``check.nobs.vs.nlev``, ``check.nobs.vs.nRE``) raise
:class:`~mixedmodels.errors.DataError` here, and the one that warns
(``check.scaleX``) warns.  Beyond lme4, values it would pass on to the numerics
and fail on there (infinite values, a constant response, zero weights) are
refused up front, naming the column, level or term at fault.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..engine.terms import RandomEffectsTerm
from ..errors import DataError, MixedModelsError, PredictorScaleWarning, user_stacklevel
from .summary import summarize_columns

__all__ = [
    "MISSING_OPTIONS",
    "check_columns",
    "check_finite",
    "check_grouping_factors",
    "check_missing_option",
    "check_predictor_scales",
    "check_random_effects_size",
    "check_response",
    "check_rows_left",
    "check_weights",
    "no_rows_left",
    "warn_predictor_scales",
    "weights_array",
]

#: The accepted values of ``missing``.
MISSING_OPTIONS = ("drop", "raise")

# lme4's check.scaleX threshold: column standard deviations (and their ratios)
# beyond a factor of 1000 trigger the warning.
_SCALE_RATIO = 1e3


def _show(values: Sequence[object], limit: int = 5) -> str:
    """``'a', 'b', 'c'`` (and how many more) for messages."""
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    extra = len(values) - limit
    return f"{shown} and {extra} more" if extra > 0 else shown


def _count(n: int) -> str:
    """``"1 is"`` or ``"3 are"``."""
    return f"{n} is" if n == 1 else f"{n} are"


def _row_label(index: pd.Index | None, position: int) -> str:
    """The caller's label of a row, for messages."""
    if index is None:
        return f"row {position}"
    return f"row {index[position]!r}"


def check_missing_option(missing: object) -> None:
    """Refuse anything but ``"drop"`` or ``"raise"``."""
    if missing not in MISSING_OPTIONS:
        raise MixedModelsError(
            f"missing must be 'drop' (drop rows with missing values, as lme4's na.omit) "
            f"or 'raise', not {missing!r}"
        )


def check_columns(data: pd.DataFrame, columns: Sequence[str]) -> dict[str, pd.Series]:
    """Every column the formula uses must be present once and hold usable values.

    Parameters
    ----------
    data : DataFrame
        The caller's data.
    columns : sequence of str
        Columns named by the formula (response, fixed part, random terms, groups).

    Returns
    -------
    dict of str to Series
        The columns, by name (fetched once here, as pandas' column access is
        slow enough to matter for small models).

    Raises
    ------
    DataError
        For a column that is absent (with close matches as suggestions), present
        more than once.  (What the values are is :mod:`.columns`' concern.)
    """
    present = data.columns
    if present.is_unique:
        # Fetched straight away: pandas' column access tests that the name is
        # there, and a test of ours first would look each name up twice.
        found: dict[str, pd.Series] = {}
        for name in columns:
            try:
                found[name] = data[name]
            except KeyError:
                raise _absent(name, present) from None
        return found
    for name in columns:
        if name not in present:
            raise _absent(name, present)
    duplicated = present[present.duplicated()]
    for name in columns:
        if name in duplicated:
            raise DataError(
                f"column {name!r} appears more than once in the data; rename or drop the copies"
            )
    return {name: data[name] for name in columns}


def _absent(name: str, present: pd.Index) -> DataError:
    """The error for a column the formula uses that is not in the data."""
    available = [str(c) for c in present]
    close = difflib.get_close_matches(name, available, n=3)
    hint = f"; did you mean {_show(close)}?" if close else ""
    listing = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
    return DataError(
        f"column {name!r} used in the formula is not in the data{hint} "
        f"(columns: {listing or 'none'})"
    )


def check_rows_left(
    index: pd.Index,
    columns: Mapping[str, pd.Series],
    missing: np.ndarray,
    culprits: Sequence[str],
    option: str,
) -> None:
    """Rows with missing values are refused with ``missing="raise"``, and cannot be all rows.

    Parameters
    ----------
    index : Index
        Row labels of the caller's data.
    columns : mapping of str to Series
        The columns used.
    missing : ndarray of bool
        Rows with a missing value.
    culprits : sequence of str
        The columns (or ``"weights"``) holding missing values.
    option : {"drop", "raise"}
        The caller's ``missing``.
    """
    if option == "raise" and missing.any():
        n_bad = int(missing.sum())
        first = index[np.flatnonzero(missing)[0]]
        raise DataError(
            f"{n_bad} row{'s have' if n_bad > 1 else ' has'} missing values "
            f"(in {', '.join(map(repr, culprits))}; first at row {first!r}); "
            "drop them first or use missing='drop'"
        )
    if missing.all():
        raise no_rows_left(columns, culprits)


def no_rows_left(columns: Mapping[str, pd.Series], culprits: Sequence[str]) -> DataError:
    """The error for missing values (or NaN from transforms) in every row."""
    empty = [c for c in culprits if c == "weights" or (c in columns and columns[c].isna().all())]
    if empty:
        verb = "is" if len(empty) == 1 else "are"
        detail = f"{', '.join(map(repr, empty))} {verb} entirely missing"
    else:
        detail = f"the missing values in {', '.join(map(repr, culprits))} cover every row"
    return DataError(f"no rows left to fit: {detail}")


def weights_array(weights: object, data: pd.DataFrame) -> np.ndarray:
    """Prior weights as a fresh float array with one value per row of ``data``.

    ``weights`` may be the name of a column of ``data`` or array-like.  Missing
    values stay NaN (their rows are dropped with the other missing values).
    """
    label = "weights"
    if isinstance(weights, str):
        if weights not in data.columns:
            close = difflib.get_close_matches(weights, [str(c) for c in data.columns], n=3)
            hint = f"; did you mean {_show(close)}?" if close else ""
            raise DataError(f"weights column {weights!r} is not in the data{hint}")
        label = f"weights column {weights!r}"
        weights = data[weights]
    if np.ndim(weights) != 1 or np.shape(weights)[0] != len(data):
        raise DataError(
            f"{label} must have one value per row of the data ({len(data)}), "
            f"got shape {np.shape(weights)}"
        )
    if isinstance(weights, pd.Series) and pd.api.types.is_numeric_dtype(weights.dtype):
        if not pd.api.types.is_bool_dtype(weights.dtype):
            return weights.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    if isinstance(weights, np.ndarray) and weights.dtype.kind in "iuf":
        return np.array(weights, dtype=np.float64)
    boxed = np.asarray(weights, dtype=object)
    text = next((v for v in boxed if isinstance(v, (str, bytes))), None)
    if text is not None:
        # pandas would read "1.5" as a number; R refuses non-numeric weights.
        raise DataError(f"{label} must be numbers, not text such as {text!r}")
    try:
        values = pd.to_numeric(pd.Series(boxed))
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{label} must be numbers: {err}") from None


def check_weights(w: np.ndarray, index: pd.Index | None = None) -> None:
    """Weights of the rows that are used must be finite and positive.

    lme4 stops on negative weights; zero weights make its criterion infinite
    (it adds Σ log wᵢ), so they are refused here with the fix.
    """
    infinite = np.flatnonzero(np.isinf(w))
    if infinite.size:
        raise DataError(
            f"weights must be finite: {_count(infinite.size)} infinite "
            f"(first at {_row_label(index, int(infinite[0]))})"
        )
    negative = np.flatnonzero(w < 0)
    if negative.size:
        raise DataError(
            f"weights must be positive: {_count(negative.size)} negative "
            f"(first at {_row_label(index, int(negative[0]))}, value {w[negative[0]]:g})"
        )
    zero = np.flatnonzero(w == 0)
    if zero.size:
        raise DataError(
            f"weights must be positive: {_count(zero.size)} zero "
            f"(first at {_row_label(index, int(zero[0]))}); drop those rows instead"
        )


def check_finite(
    values: np.ndarray, names: Sequence[str], what: str, index: pd.Index | None = None
) -> None:
    """Refuse infinite or NaN values in an evaluated model matrix.

    Values missing in the data have been dropped before; what remains comes from
    infinities in the data or from a transform outside its domain (``log(0)``,
    ``sqrt(-1)``), which lme4 refuses too.

    Parameters
    ----------
    values : ndarray, shape (n,) or (n, k)
        The response, X or a term's Z.
    names : sequence of str
        Column names, for the message.
    what : str
        What a column of the matrix is, e.g. ``"the response"`` or
        ``"the fixed-effects column"``.
    index : Index, optional
        Row labels of the caller's data.
    """
    matrix = values.reshape(len(values), -1)
    bad = ~np.isfinite(matrix)
    if not bad.any():
        return
    col = int(np.flatnonzero(bad.any(axis=0))[0])
    rows = np.flatnonzero(bad[:, col])
    value = matrix[rows[0], col]
    kind = "NaN" if np.isnan(value) else f"{value:g}"
    raise DataError(
        f"{what} {names[col]!r} is infinite or NaN in {rows.size} "
        f"row{'s' if rows.size > 1 else ''} (first at {_row_label(index, int(rows[0]))}: {kind}); "
        "remove infinite values from the data, or keep transforms such as log() "
        "and sqrt() inside their domain"
    )


def check_response(y: np.ndarray, name: str) -> None:
    """The response must vary: a constant one leaves nothing to model."""
    if y.size and (y == y[0]).all():  # the method: np.all wraps it, a microsecond more
        raise DataError(
            f"the response {name!r} is constant (every value is {y[0]:g}); "
            "there is no variation to model"
        )


def check_grouping_factors(
    terms: Sequence[RandomEffectsTerm], n_obs: int, allow_n: bool = False
) -> None:
    """lme4's ``check.nlev.gtr.1`` and ``check.nobs.vs.nlev`` (both stop by default).

    Each grouping factor needs at least two levels among the rows used, and
    fewer levels than observations, for its variance to be told apart from the
    residual variance.  ``allow_n`` (lme4's ``allow.n``, set by ``glmer``, which
    has no residual variance) allows as many levels as observations.
    """
    # Each term's level count read once (the length of its levels' Index).
    counts = [(term.group_name, term.n_levels) for term in terms]
    seen: set[str] = set()
    for term, (name, n_levels) in zip(terms, counts, strict=True):
        if name in seen:
            continue
        seen.add(name)
        if n_levels < 2:
            level = f" ({term.levels[0]!r})" if n_levels else ""
            raise DataError(
                f"grouping factor {name!r} has only {n_levels} level{level} "
                "among the rows used; a grouping factor needs at least 2 levels "
                "(remove the term or check the missing values dropped)"
            )
    too_many = [name for name, n_levels in counts if n_levels > n_obs - (0 if allow_n else 1)]
    if too_many:
        names = _show(list(dict.fromkeys(too_many)))
        raise DataError(
            f"grouping factor {names} has as many levels as there are observations "
            f"({n_obs}); each grouping factor must have fewer levels than observations, "
            "or its variance cannot be told apart from the residual variance"
        )


def check_random_effects_size(
    terms: Sequence[RandomEffectsTerm],
    n_obs: int,
    labels: Sequence[str] | None = None,
    allow_n: bool = False,
) -> None:
    """lme4's ``check.nobs.vs.nRE`` (stops by default): more observations than effects.

    Parameters
    ----------
    terms : sequence of RandomEffectsTerm
    n_obs : int
        Rows used.
    labels : sequence of str, optional
        Each term as the user would write it, e.g. ``"(Days | Subject)"``.
    allow_n : bool, default False
        Allow as many effects as observations (lme4's ``allow.n``, for ``glmer``).
    """
    for i, term in enumerate(terms):
        q, n_levels = term.q, term.n_levels
        n_effects = q * n_levels
        if n_obs < n_effects + (0 if allow_n else 1):
            label = labels[i] if labels is not None else f"(... | {term.group_name})"
            raise DataError(
                f"the random-effects term {label} has {n_effects} random effects "
                f"({q} per level × {n_levels} levels of {term.group_name!r}) "
                f"for {n_obs} observations; there must be fewer random effects than "
                "observations, or the variances cannot be estimated (simplify the term)"
            )


def check_predictor_scales(x: np.ndarray, names: Sequence[str]) -> None:
    """Warn, as lme4's ``check.scaleX``, when predictors differ in scale by > 1000.

    Only columns that are not 0/1 indicators count.  The optimizer can stop
    short on such a problem; rescaling the named columns is the remedy.
    """
    if x.shape[0] < 2:
        return
    summary = summarize_columns(x)
    warn_predictor_scales(summary.sd, summary.indicator, names)


def warn_predictor_scales(sd: np.ndarray, indicator: np.ndarray, names: Sequence[str]) -> None:
    """:func:`check_predictor_scales` from the columns' standard deviations and whether each
    is a 0/1 indicator (what a pass over the rows in parts can sum up)."""
    # In Python floats: a model has a few predictors, and numpy's calls cost more.
    # The continuous columns (not 0/1 indicators) with a positive spread (not NaN).
    usable = [
        (names[j], s)
        for j, (s, flag) in enumerate(
            zip(
                np.asarray(sd, dtype=np.float64).tolist(),
                np.asarray(indicator).tolist(),
                strict=True,
            )
        )
        if not flag and s > 0
    ]
    if not usable:
        return
    log_sd = [math.log(s) for _, s in usable]
    limit = math.log(_SCALE_RATIO)
    if max(map(abs, log_sd)) <= limit and max(log_sd) - min(log_sd) <= limit:
        return
    detail = ", ".join(f"{c} (sd {s:.3g})" for c, s in usable)
    warnings.warn(
        f"some predictor variables are on very different scales: consider rescaling them: {detail}",
        PredictorScaleWarning,
        stacklevel=user_stacklevel(),
    )
