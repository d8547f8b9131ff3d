"""The model matrices: y and X of the fixed effects, Z of each random-effects term.

Plain parts (:mod:`.plain`) are built from the columns, the others taken from
formulaic's evaluation (:mod:`.evaluation`); every matrix is checked for
values it cannot use.  Columns of X aliased with earlier ones are dropped as
lme4 drops them, with a warning.
Every column gets lme4's name, from the parsed formula's table of factor
labels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from ..engine.threads import blas_threads, threads_for
from ..errors import (
    DataError,
    RankDeficiencyWarning,
    user_stacklevel,
)
from ..formula import ParsedFormula, random_term_to_lme4
from .checks import check_finite, check_response, warn_predictor_scales
from .evaluation import FormulaicParts
from .frame import UsedRows
from .plain import PlainPart, PlainPlan, PlainRows
from .summary import ColumnSummary, FixedSummary, summarize_columns, summarize_fixed

__all__ = [
    "MAGNITUDE_BOUNDS",
    "RANK_TOLERANCE",
    "FixedEffects",
    "TermMatrix",
    "aliased_columns",
    "check_magnitudes",
    "checked_peaks",
    "checked_summary",
    "fixed_effects",
    "term_matrices",
]

#: lme4 drops a column of X when its pivot is this small relative to its norm.
RANK_TOLERANCE = 1e-7


@dataclass(frozen=True)
class FixedEffects:
    """The response and the fixed-effects matrix on the rows used.

    Attributes
    ----------
    y : ndarray
        The response.
    x : ndarray
        X without its aliased columns.
    names : list of str
        lme4's names of the columns of ``x``.
    dropped : list of str
        lme4's names of the aliased columns dropped.
    spec : ModelSpec or None
        formulaic's spec of X (with the aliased columns), None for a plain part.
    """

    y: np.ndarray
    x: np.ndarray
    names: list[str]
    dropped: list[str]
    spec: Any


def fixed_effects(
    parsed: ParsedFormula,
    plan: PlainPlan,
    plain_rows: PlainRows,
    parts: FormulaicParts,
    rows: UsedRows,
) -> FixedEffects:
    """y and X on the rows used, checked, with aliased columns dropped (and warned about).

    Raises
    ------
    DataError
        For a response or a column of X that is infinite (or NaN), or a constant
        response.

    Warns
    -----
    RankDeficiencyWarning
        When aliased columns of X are dropped.
    PredictorScaleWarning
        When predictors differ in scale by more than a factor of 1000.
    """
    if parts.fixed is None:
        assert plan.fixed is not None and plan.response is not None
        y = np.array(plain_rows.numbers(plan.response), dtype=float)
        x, raw_names, scan = plan.fixed.matrix(plain_rows)
        spec = None
    else:
        y_all, rhs = parts.fixed
        y = y_all[rows.keep]
        x = np.asarray(rhs, dtype=np.float64)[rows.keep]
        raw_names = list(rhs.columns)
        spec = rhs.model_spec
        scan = None
    names = parsed.column_names(raw_names)
    label = parsed.response_label
    # y's and X's checks read one compiled pass over both (the usual case: nothing
    # to report, no aliased column, scales lme4 finds fine).
    both = summarize_fixed(y, x, scan)
    if both is None:
        checked_peaks(y, [label], "the response", rows.index)
        check_response(y, label)
        summary = checked_summary(x, names, "the fixed-effects column", rows.index)
        usual_scales = False
    else:
        summary = _checked_fixed(both, y, x, label, names, rows.index)
        usual_scales = both.usual_scales

    dropped: list[str] = []
    kept = list(range(x.shape[1]))
    # The summary's screen settles the usual case (no aliased columns) without the QR.
    aliased = [] if summary.full_rank else aliased_columns(x, peak=summary.peak)
    if aliased:
        dropped = [names[j] for j in aliased]
        kept = [j for j in range(x.shape[1]) if j not in set(aliased)]
        x = x[:, kept]
        names = [names[j] for j in kept]
        warnings.warn(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=user_stacklevel(),
        )
    if x.shape[0] >= 2 and (aliased or not usual_scales):
        # check_predictor_scales on the kept columns, from the summary already made
        # when it has their standard deviations (the compiled pass over y and X
        # only tells when the check surely passes).
        sd, indicator = summary.sd, summary.indicator
        if sd is None:
            exact = summarize_columns(x)  # x holds the kept columns only
            sd, indicator = exact.sd, exact.indicator
        elif aliased:
            sd, indicator = sd[kept], indicator[kept]
        warn_predictor_scales(sd, indicator, names)
    return FixedEffects(y=y, x=x, names=names, dropped=dropped, spec=spec)


def _checked_fixed(
    both: FixedSummary,
    y: np.ndarray,
    x: np.ndarray,
    label: str,
    names: list[str],
    index: pd.Index,
) -> ColumnSummary:
    """:func:`checked_peaks` of y, :func:`~.checks.check_response` and
    :func:`checked_summary` of X, in that order, from their compiled summary."""
    root = math.sqrt(len(y))
    low, high = MAGNITUDE_BOUNDS
    # The usual case in one look: every largest magnitude finite (a NaN fails
    # the comparisons) and its norm within the bounds, and y not constant.
    usual = not both.response_constant
    for top in [both.response_peak, *both.columns.peak.tolist()]:
        norm = top * root
        usual = usual and norm <= high and (norm >= low or top == 0.0)
    if usual:
        return both.columns
    # Otherwise each check in turn, for the first one's message.
    if len(y):
        _checked_peak_list([both.response_peak], y, [label], "the response", index)
    if both.response_constant:
        check_response(y, label)
    return _checked(both.columns, x, names, "the fixed-effects column", index)


def aliased_columns(
    x: np.ndarray, tol: float = RANK_TOLERANCE, *, peak: np.ndarray | None = None
) -> list[int]:
    """Columns of X that are (numerically) linear combinations of earlier ones.

    Like R's ``qr()``, columns are taken in order and one is kept when its
    component orthogonal to the kept columns is larger than ``tol`` times its
    norm.  The test does not depend on the columns' scales: each is divided
    by its largest magnitude first, so a column of values near 1e-300 (whose
    squares underflow) is not taken for a column of zeros.  ``peak``, the
    columns' largest magnitudes, when the caller has them.
    """
    if x.shape[1] == 0:
        return []
    if peak is None:
        peak = np.max(np.abs(x), axis=0) if x.shape[0] else np.zeros(x.shape[1])
    zero = ~(peak > 0.0)
    if x.shape[1] == 1:
        # One column (an intercept-only X): aliased exactly when it is zero (its
        # own norm is its component orthogonal to nothing).
        return [0] if zero[0] or x.shape[0] == 0 else []
    # Scaled into a Fortran-order copy, which LAPACK then factors in place
    # (numpy's broadcast division of a tall row-major X is several times slower).
    scale = np.where(zero, 1.0, peak)
    scaled = np.asfortranarray(x, dtype=np.float64)
    if np.may_share_memory(scaled, x):
        scaled = scaled / scale  # never the caller's X in place
    else:
        scaled /= scale
    # Householder QR without pivoting: |R_jj| is the norm of column j's
    # component orthogonal to the columns before it (aliased ones add nothing
    # to their span), in one LAPACK pass over X.
    # (LAPACK's dgeqrf directly, as numpy's qr calls it, without numpy's wrapping:
    # a tenth of the time on a small X.)
    with blas_threads(threads_for(*scaled.shape)):
        r, _, _, info = scipy.linalg.lapack.dgeqrf(scaled, overwrite_a=True)
        if info != 0:
            r = np.linalg.qr(np.asarray(x, dtype=np.float64) / scale, mode="r")
    # Column j of R has the norm of column j of the scaled X (Q is orthogonal).
    upper = np.triu(r[: min(r.shape)])
    norms = np.sqrt(np.einsum("ij,ij->j", upper, upper))
    diag = np.zeros(x.shape[1])  # columns beyond the n-th are aliased
    diag[: min(r.shape)] = np.abs(np.diagonal(r))
    return [j for j in range(x.shape[1]) if zero[j] or diag[j] <= tol * norms[j]]


#: The cross-products square the columns: a column whose norm is beyond these
#: bounds has squares that overflow or vanish in floating point.
MAGNITUDE_BOUNDS = (1e-150, 1e150)


def check_magnitudes(values: np.ndarray, names: list[str], what: str) -> None:
    """Refuse columns too large or too small for the cross-products to represent.

    The engine works with sums of squares and products of the columns; a
    column whose norm exceeds 1e150 (squares beyond 1e300) or, being nonzero,
    is below 1e-150 would overflow or underflow there.  The remedy is to
    rescale it, which the message says, naming the column.

    Raises
    ------
    DataError
    """
    matrix = values.reshape(len(values), -1)
    if matrix.shape[0] == 0:
        return
    _check_peaks(np.max(np.abs(matrix), axis=0).tolist(), matrix.shape[0], names, what)


def checked_peaks(
    values: np.ndarray, names: list[str], what: str, index: pd.Index | None = None
) -> np.ndarray:
    """:func:`~.checks.check_finite` and :func:`check_magnitudes` in one pass over the values.

    Returns the largest magnitude of each column (zeros without rows).  A
    column's largest magnitude is NaN exactly when the column has a NaN or
    infinite value; only then is :func:`~.checks.check_finite` run, for its
    message.

    Raises
    ------
    DataError
    """
    return _checked(summarize_columns(values, spread=False), values, names, what, index).peak


def checked_summary(
    values: np.ndarray, names: list[str], what: str, index: pd.Index | None = None
) -> ColumnSummary:
    """:func:`checked_peaks`, returning the columns' whole :class:`~.summary.ColumnSummary`
    (what the test for aliased columns and the scale warning read too).

    Raises
    ------
    DataError
    """
    return _checked(summarize_columns(values, rank=True), values, names, what, index)


def _checked(
    summary: ColumnSummary,
    values: np.ndarray,
    names: list[str],
    what: str,
    index: pd.Index | None,
) -> ColumnSummary:
    """Raise the error of :func:`checked_peaks` for ``summary``'s values, if any."""
    if len(values) == 0:
        return summary
    _checked_peak_list(summary.peak.tolist(), values, names, what, index)
    return summary


def _checked_peak_list(
    peaks: list[float], values: np.ndarray, names: list[str], what: str, index: pd.Index | None
) -> None:
    """:func:`_checked` from the largest magnitudes of the columns of ``values`` (rows)."""
    # In Python floats: a design has a few columns, and numpy's calls cost more.
    # A NaN peak (a NaN or an infinity in the column) is the only one unequal to itself.
    if any(top != top for top in peaks):
        check_finite(values, names, what, index)
    _check_peaks(peaks, len(values), names, what)


def _check_peaks(peaks: list[float], n: int, names: list[str], what: str) -> None:
    """:func:`check_magnitudes` from the columns' largest magnitudes over ``n`` rows."""
    root = math.sqrt(n)
    low, high = MAGNITUDE_BOUNDS
    # (A NaN peak passes, as in numpy's comparisons: check_finite judges it.)
    for j, top in enumerate(peaks):
        norm = top * root
        if norm > high or (top > 0 and norm < low):
            direction = "large" if norm > high else "small"
            raise DataError(
                f"{what} {names[j]!r} has values too {direction} to square in floating point "
                f"(largest magnitude {top:.3g}); rescale it, e.g. divide it by {top:.0e}"
            )


@dataclass(frozen=True)
class TermMatrix:
    """The model matrix Z of one random-effects term on the rows used.

    Attributes
    ----------
    z : ndarray
        One row per row used, one column per random effect of a level.
    names : list of str
        lme4's names of the columns.
    spec : ModelSpec or None
        formulaic's spec of Z, None for a plain part.
    """

    z: np.ndarray
    names: list[str]
    spec: Any


def term_matrices(
    parsed: ParsedFormula,
    plan: PlainPlan,
    plain_rows: PlainRows,
    parts: FormulaicParts,
    rows: UsedRows,
    *,
    checked: PlainPart | None = None,
) -> list[TermMatrix]:
    """Z of each random-effects term of ``parsed``, in formula order, checked to be finite.

    ``checked`` is a plain part whose matrix on these rows was checked
    already (the fixed part's, by :func:`fixed_effects`).  A plain term's
    intercept and indicators are 0 or 1: only its numeric columns can be
    infinite or out of scale, and when ``checked`` has them all
    (``y ~ x + f + (x | g)``, ``(1 | g)``) they are not checked again.

    Raises
    ------
    DataError
        For a column of Z that is infinite (or NaN).
    """
    out = []
    done = () if checked is None else checked.numbers
    # The plan knows, once for its formula, which terms the fixed part's checks cover.
    known = plan.unchecked if checked is plan.fixed else None
    for k, (spec, part, lhs) in enumerate(zip(parsed.random, plan.terms, parts.terms, strict=True)):
        if lhs is None:
            assert part is not None
            (z, raw_names, _), z_spec = part.matrix(plain_rows), None
            if known is not None:
                unchecked = known[k]
            else:
                unchecked = any(name not in done for name in part.numbers)
        else:
            z = np.asarray(lhs, dtype=np.float64)[rows.keep]
            raw_names, z_spec = lhs.columns, lhs.model_spec
            unchecked = True
        names = parsed.column_names(raw_names)
        if unchecked:
            checked_peaks(z, names, f"in {random_term_to_lme4(spec)}, the column", rows.index)
        out.append(TermMatrix(z, names, z_spec))
    return out
