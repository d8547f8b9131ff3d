"""formulaic's evaluation of the parts of a formula that are not plain.

Parts of the formula that are not plain (:mod:`.plain`) are evaluated by
formulaic, on every row of the data as R's ``model.frame`` does, and the rows
used are selected afterwards.  formulaic sees integer and logical columns as
floats (formula arithmetic is R's, in floating point: ``I(x^2)`` of a large
integer does not wrap around) and the rows the fit uses (so factors drop the
levels no used row takes, as R's ``drop.unused.levels``); a floating-point
overflow while evaluating a term is refused, naming the term, and rows where
a transform gives NaN are dropped, with a warning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError, MissingValuesWarning, user_stacklevel
from ..formula import TRANSFORMS, ParsedFormula, random_term_to_lme4
from ..formula.factors import ROWS_USED, check_dense_size
from ..formula.limits import MAX_DENSE_BYTES
from .checks import no_rows_left
from .frame import ModelFrame
from .plain import PlainPlan

__all__ = [
    "FormulaicParts",
    "evaluate",
    "evaluation_frame",
    "formulaic_parts",
]


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
    if plan.everything and len(keep) ** 2 * 8 <= MAX_DENSE_BYTES:
        return FormulaicParts(keep, None, [None] * len(parsed.random))  # the usual case
    # formulaic sees only the columns its parts use (pandas' cost grows with
    # the columns, and grouping factors need no evaluation).
    used: set[str] = set()
    if plan.fixed is None:
        used |= {*parsed.response_columns, *parsed.fixed_part.columns}
    for spec, part in zip(parsed.random, plan.terms, strict=True):
        if part is None:
            used |= set(spec.part.columns)
    if len(keep) ** 2 * 8 > MAX_DENSE_BYTES:
        # A factor has at most as many levels as rows: on fewer rows, none can be
        # too large for its indicator columns.
        factors = used | set(plan.factors)
        for name, column in frame.columns.items():
            if name in factors and (
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
