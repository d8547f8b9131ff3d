"""The model matrices: y and X of the fixed effects, Z of each random-effects term.

Parts of the formula that are not plain (:mod:`.plain`) are evaluated by
formulaic, on every row of the data as R's ``model.frame`` does, and the rows
used are selected afterwards.  formulaic sees integer and logical columns as
floats (formula arithmetic is R's, in floating point: ``I(x^2)`` of a large
integer does not wrap around) and the rows the fit uses (so factors drop the
levels no used row takes, as R's ``drop.unused.levels``); a floating-point
overflow while evaluating a term is refused, naming the term.  Columns of X
aliased with earlier ones are dropped as lme4 drops them, with a warning.
Every column gets lme4's name, from the parsed formula's table of factor
labels.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.linalg

from ..engine.threads import blas_threads, threads_for
from ..errors import (
    DataError,
    FormulaError,
    MissingValuesWarning,
    RankDeficiencyWarning,
    user_stacklevel,
)
from ..formula import TRANSFORMS, ParsedFormula, random_term_to_lme4
from ..formula.factors import ROWS_USED, check_dense_size
from ..formula.limits import MAX_DENSE_BYTES
from .checks import check_finite, check_response, no_rows_left, warn_predictor_scales
from .frame import ModelFrame, UsedRows
from .plain import PlainPart, PlainPlan, PlainRows
from .summary import ColumnSummary, summarize_columns

__all__ = [
    "MAGNITUDE_BOUNDS",
    "RANK_TOLERANCE",
    "FixedEffects",
    "FormulaicParts",
    "TermMatrix",
    "aliased_columns",
    "check_magnitudes",
    "checked_peaks",
    "checked_summary",
    "evaluate",
    "evaluation_frame",
    "fixed_effects",
    "formulaic_parts",
    "model_matrix",
    "term_matrices",
]

#: lme4 drops a column of X when its pivot is this small relative to its norm.
RANK_TOLERANCE = 1e-7


def evaluate(
    formula: str,
    frame: pd.DataFrame,
    what: str,
    rows_used: np.ndarray | None = None,
    parsed: ParsedFormula | None = None,
) -> Any:
    """formulaic's model matrix (or matrices, for ``y ~ x``) of translated ``formula``.

    ``frame`` is an :func:`evaluation_frame`; ``rows_used`` the rows the fit
    uses (factors keep only the levels those rows take).  ``what`` names the
    part for error messages, ``parsed`` gives R's names of its terms.
    Missing values are left in place (``na_action="ignore"``): the rows to
    use are decided afterwards.
    """
    context = TRANSFORMS if rows_used is None else {**TRANSFORMS, ROWS_USED: rows_used}
    try:
        # Infinite and NaN results of transforms (log(0)) are reported by
        # check_finite with the column named; numpy's own warning adds nothing.
        # An overflow is an error here, while the term is known.
        with np.errstate(divide="ignore", invalid="ignore", over="raise", under="ignore"):
            return formulaic.model_matrix(formula, frame, context=context, na_action="ignore")
    except (FormulaError, DataError):
        raise
    except Exception as err:
        raise evaluation_error(err, what, formula, parsed) from err


def model_matrix(spec: Any, frame: pd.DataFrame, what: str, parsed: ParsedFormula | None = None):
    """A fit's formulaic model spec evaluated on new rows (``frame``: the caller's data).

    The columns are read as the fit read them (:func:`evaluation_frame`).

    Raises
    ------
    DataError
        For new data the spec cannot code (a missing column, an unseen level).
    """
    rows = evaluation_frame(frame, None)
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="raise", under="ignore"):
            return spec.get_model_matrix(rows, context=TRANSFORMS, na_action="ignore")
    except (FormulaError, DataError):
        raise
    except Exception as err:
        error = evaluation_error(err, what, None, parsed)
        raise DataError(f"{error} for the new data") from err


_FACTOR_ERROR = re.compile(
    r"Unable to evaluate factor `(?P<factor>.*)`\. \[(?P<kind>\w+): (?P<msg>.*)\]$", re.S
)


def evaluation_error(
    err: Exception, what: str, formula: str | None, parsed: ParsedFormula | None
) -> FormulaError:
    """A formulaic evaluation error told in R's terms: which term failed, and why."""
    text = str(err)
    match = _FACTOR_ERROR.search(text)
    if match is None:
        shown = f" {formula!r}" if formula else ""
        return FormulaError(f"cannot evaluate {what}{shown}: {text}")
    factor, kind, message = match.group("factor", "kind", "msg")
    label = dict(parsed.factor_labels).get(factor, factor) if parsed is not None else factor
    if kind == "FloatingPointError" and "overflow" in message:
        return FormulaError(
            f"the term `{label}` overflows in floating point (a value beyond 1.8e308): "
            "rescale the columns it uses"
        )
    return FormulaError(f"cannot evaluate the term `{label}` in {what}: {message}")


@dataclass(frozen=True)
class FormulaicParts:
    """The parts of a formula that formulaic evaluated, on every row of the data.

    Attributes
    ----------
    keep : ndarray of bool
        The rows to use: those without missing values, less those where a
        transform gave NaN.
    fixed : (ndarray, ModelMatrix) or None
        The response and X, unless the fixed part is plain.
    terms : list of (ModelMatrix or None)
        Each random term's Z, None for plain terms.
    """

    keep: np.ndarray
    fixed: tuple[np.ndarray, Any] | None
    terms: list[Any]


def formulaic_parts(
    parsed: ParsedFormula, plan: PlainPlan, frame: ModelFrame, missing: str
) -> FormulaicParts:
    """Evaluate the parts that are not plain with formulaic, on every row.

    As R's model.frame does, model matrices are evaluated on every row and the
    missing rows dropped afterwards; a transform that yields NaN (log of a
    negative number) makes its row missing too, which can remove a level, hence
    the second round.
    """
    keep = ~frame.missing
    # formulaic sees only the columns its parts use (pandas' cost grows with
    # the columns, and grouping factors need no evaluation).
    used: set[str] = set()
    if plan.fixed is None:
        used |= {*parsed.response_columns, *parsed.fixed_part.columns}
    for spec, part in zip(parsed.random, plan.terms, strict=True):
        if part is None:
            used |= set(spec.part.columns)
    factors = set(plan.factors)
    for name, column in frame.columns.items():
        if (name in used or name in factors) and (
            not pd.api.types.is_numeric_dtype(column.dtype)
            or isinstance(column.dtype, pd.CategoricalDtype)
        ):
            _check_factor_size(name, column)
    if plan.everything:
        return FormulaicParts(keep, None, [None] * len(parsed.random))
    data = frame.data[[name for name in frame.columns if name in used]]
    for _ in range(2):
        evaluation = evaluation_frame(data, keep)
        fixed = None
        blocks: list[tuple[Any, Any, str]] = []
        if plan.fixed is None:
            mm = evaluate(
                f"{parsed.response} ~ {parsed.fixed}", evaluation, "the formula", keep, parsed
            )
            y_all = _response(mm.lhs, parsed.response_label, evaluation)
            fixed = (y_all, mm.rhs)
            blocks += [
                (y_all, [parsed.response_label], "the response"),
                (mm.rhs, mm.rhs.columns, "the fixed-effects column"),
            ]
        terms = [
            None
            if part is not None
            else evaluate(
                spec.lhs,
                evaluation,
                f"the random-effects term {random_term_to_lme4(spec)}",
                keep,
                parsed,
            )
            for spec, part in zip(parsed.random, plan.terms, strict=True)
        ]
        # Plain parts cannot make NaN: their missing values are dropped already.
        blocks += [
            (z, z.columns, f"in {random_term_to_lme4(spec)}, the column")
            for spec, z in zip(parsed.random, terms, strict=True)
            if z is not None
        ]
        produced = np.zeros(len(data), dtype=bool)
        nan_columns: list[str] = []
        for values, names, what in blocks:
            matrix = np.asarray(values, dtype=np.float64).reshape(len(data), -1)
            _refuse_overflow(matrix, names, what, parsed, keep, data.index)
            nan = np.isnan(matrix) & keep[:, None]
            produced |= nan.any(axis=1)
            nan_columns += [
                parsed.column_name(str(c))
                for c, hit in zip(names, nan.any(axis=0), strict=True)
                if hit
            ]
        if not produced.any():
            break
        _nan_from_transforms(data, produced, nan_columns, missing)
        keep = keep & ~produced
        if not keep.any():
            raise no_rows_left(frame.columns, [*frame.culprits, *nan_columns])
    return FormulaicParts(keep, fixed, terms)


def _check_factor_size(name: str, column: pd.Series) -> None:
    """Refuse a factor too large for its indicator columns (:func:`check_dense_size`).

    Its levels are counted only when their bound (the rows, or the
    categories) could exceed the limit.
    """
    n = len(column)
    bound = n
    if isinstance(column.dtype, pd.CategoricalDtype):
        bound = min(n, len(column.dtype.categories))
    if n * bound * 8 <= MAX_DENSE_BYTES:
        return
    try:
        check_dense_size(n, int(column.nunique()), f"column {name!r}")
    except ValueError as err:
        raise DataError(str(err)) from None


def _refuse_overflow(
    matrix: np.ndarray,
    names: Any,
    what: str,
    parsed: ParsedFormula,
    keep: np.ndarray,
    index: pd.Index,
) -> None:
    """Refuse a term that is infinite on a row used: it overflowed (or the data are infinite).

    numpy's overflow warning is silenced inside pandas' arithmetic, so the
    result is checked here, where the term can still be named.
    """
    infinite = np.isinf(matrix) & keep[:, None]
    if not infinite.any():
        return
    labels = [parsed.column_name(str(name)) for name in names]
    # A column of the data that is infinite is reported later, as on the fast path.
    computed = [j for j, label in enumerate(labels) if label not in parsed.columns]
    hits = [j for j in computed if infinite[:, j].any()]
    if not hits:
        return
    column = hits[0]
    rows = np.flatnonzero(infinite[:, column])
    label = labels[column]
    raise DataError(
        f"{what} {label!r} is infinite or NaN in {rows.size} row{'s' if rows.size > 1 else ''} "
        f"(first at row {index[rows[0]]!r}: {matrix[rows[0], column]:g}): the term overflows "
        "floating point (values beyond 1.8e308) or the data hold infinite values; rescale "
        "the columns it uses, or keep transforms such as log() inside their domain"
    )


def evaluation_frame(frame: pd.DataFrame, keep: np.ndarray | None) -> pd.DataFrame:
    """``frame`` as formulaic reads it: numbers as floats, dropped rows' categories blanked.

    Integer, unsigned and nullable numeric columns become float64 (missing
    values NaN): formula arithmetic is R's, in floating point, so ``I(x^2)``
    of an integer near 4e9 is 1.6e19, not a wrapped-around integer.  Logical
    columns stay logical: the design stage tells the translator which they
    are, and it counts them 0/1 in arithmetic (``flag + flag`` is 2, not a
    logical "or") and codes them FALSE/TRUE as factors, as R does.

    As in R's ``model.frame``, numeric transforms (``scale(x)``) see every row
    and missing rows are dropped afterwards, but a factor keeps only the
    levels of the rows used (``drop.unused.levels``).  Blanking the dropped
    rows (``keep``) of non-numeric columns gives formulaic exactly those levels.
    """
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            if keep is not None and not keep.all():
                column = column.where(keep)
            out[name] = column.cat.remove_unused_categories()
        elif pd.api.types.is_bool_dtype(dtype):
            # R's logical: kept so (the translator counts it 0/1 in arithmetic).
            continue
        elif pd.api.types.is_numeric_dtype(dtype):
            if not (isinstance(dtype, np.dtype) and dtype == np.float64):
                out[name] = pd.Series(
                    column.to_numpy(dtype=np.float64, na_value=np.nan), index=column.index
                )
        elif keep is not None and not keep.all():
            out[name] = column.where(keep)
    return out


def _response(lhs: Any, name: str, frame: pd.DataFrame) -> np.ndarray:
    """The response as one float column, or a DataError saying why it is not numeric."""
    if lhs.shape[1] != 1:
        what = "text or categories"
        if name in frame.columns:
            raw = frame[name]
            values = ", ".join(repr(v) for v in pd.unique(raw.dropna())[:3])
            what = f"{raw.dtype} values such as {values}"
        raise DataError(
            f"the response {name!r} must be numeric, but it holds {what}; convert it "
            "to numbers (e.g. with pandas.to_numeric) or code the outcome as 0/1"
        )
    return np.asarray(lhs, dtype=np.float64).ravel()


def _nan_from_transforms(
    frame: pd.DataFrame, rows: np.ndarray, columns: list[str], missing: str
) -> None:
    """Rows where a transform gave NaN are missing, as in R; say so (or refuse)."""
    n_rows = int(rows.sum())
    first = frame.index[np.flatnonzero(rows)[0]]
    where = ", ".join(map(repr, dict.fromkeys(columns)))
    message = (
        f"{where} is NaN in {n_rows} row{'s' if n_rows > 1 else ''} (first at row {first!r}): "
        "a transform was applied outside its domain"
    )
    if missing == "raise":
        raise DataError(f"{message}; fix the data or use missing='drop' to drop those rows")
    warnings.warn(
        f"{message}; those rows are dropped as missing",
        MissingValuesWarning,
        stacklevel=user_stacklevel(),
    )


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
        x, raw_names = plan.fixed.matrix(plain_rows)
        spec = None
    else:
        y_all, rhs = parts.fixed
        y = y_all[rows.keep]
        x = np.asarray(rhs, dtype=np.float64)[rows.keep]
        raw_names = list(rhs.columns)
        spec = rhs.model_spec
    checked_peaks(y, [parsed.response_label], "the response", rows.index)
    check_response(y, parsed.response_label)
    names = parsed.column_names(raw_names)
    summary = checked_summary(x, names, "the fixed-effects column", rows.index)

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
    if x.shape[0] >= 2:
        # check_predictor_scales on the kept columns, from the summary already made.
        sd, indicator = summary.sd, summary.indicator
        if aliased:
            sd, indicator = sd[kept], indicator[kept]
        warn_predictor_scales(sd, indicator, names)
    return FixedEffects(y=y, x=x, names=names, dropped=dropped, spec=spec)


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
    _check_peaks(np.max(np.abs(matrix), axis=0), matrix.shape[0], names, what)


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
    if not np.isfinite(summary.peak).all():
        check_finite(values, names, what, index)
    _check_peaks(summary.peak, len(values), names, what)
    return summary


def _check_peaks(peak: np.ndarray, n: int, names: list[str], what: str) -> None:
    """:func:`check_magnitudes` from the columns' largest magnitudes over ``n`` rows."""
    root = math.sqrt(n)
    low, high = MAGNITUDE_BOUNDS
    # In Python floats: a design has a few columns, and numpy's calls cost more.
    # (A NaN peak passes, as in numpy's comparisons: check_finite judges it.)
    for j, top in enumerate(peak.tolist()):
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
    already (the fixed part's, by :func:`fixed_effects`): a term with the same
    left-hand side (``y ~ x + (x | g)``) has the same values, which are not
    checked again.

    Raises
    ------
    DataError
        For a column of Z that is infinite (or NaN).
    """
    out = []
    for spec, part, lhs in zip(parsed.random, plan.terms, parts.terms, strict=True):
        if lhs is None:
            assert part is not None
            (z, raw_names), z_spec = part.matrix(plain_rows), None
        else:
            z = np.asarray(lhs, dtype=np.float64)[rows.keep]
            raw_names, z_spec = lhs.columns, lhs.model_spec
        names = parsed.column_names(raw_names)
        if lhs is not None or part != checked:
            checked_peaks(z, names, f"in {random_term_to_lme4(spec)}, the column", rows.index)
        out.append(TermMatrix(z, names, z_spec))
    return out
