"""Stage 1 of the engine: formula and data → response, X and the random-effects terms.

The fixed-effects matrix and each term's per-row model matrix are built with
formulaic from the translated, validated expressions of
:mod:`mixedmodels.formula`; the grouping factors are coded here.  Names follow
lme4 (``(Intercept)``, ``SexMale``, ``recipeB:temp``) so that results line up
with lme4's output.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd
from formulaic.parser.algos.tokenize import tokenize as _formulaic_tokenize
from formulaic.parser.types import Token as _Token
from formulaic.transforms import stateful_transform

from .errors import DataError, FormulaError, MissingValuesWarning, RankDeficiencyWarning
from .formula import (
    TRANSFORMS,
    ParsedFormula,
    RandomTermSpec,
    parse_formula,
    random_term_to_lme4,
)
from .terms import RandomEffectsTerm
from .validation import (
    check_columns,
    check_finite,
    check_grouping_factors,
    check_missing_option,
    check_predictor_scales,
    check_random_effects_size,
    check_response,
    check_weights,
    weights_array,
)

# lme4 drops a column of X when its pivot is this small relative to its norm.
RANK_TOLERANCE = 1e-7


@dataclass
class Design:
    """Everything stage 2 needs, plus what results need to name things."""

    formula: ParsedFormula
    y: np.ndarray
    x: np.ndarray
    fixed_names: list[str]
    terms: list[RandomEffectsTerm]
    weights: np.ndarray | None = None
    response_name: str = "y"
    dropped_columns: list[str] = field(default_factory=list)
    n_dropped_missing: int = 0
    row_index: pd.Index | None = None
    fixed_spec: Any = None
    term_specs: list[Any] = field(default_factory=list)


def lme4_column_name(name: str, source: str = "") -> str:
    """formulaic's column name → lme4's: ``Intercept`` → ``(Intercept)``, ``a[T.b]`` → ``ab``.

    ``source`` is the formula as the user wrote it: a ``C(x)`` that stands for
    R's ``factor(x)`` or ``as.factor(x)`` gets that name back.
    """
    if name == "Intercept":
        return "(Intercept)"
    name = re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)
    name = name.replace(" ** ", "^").replace("**", "^")
    if "C(" in name and source:
        compact = re.sub(r"\s+", "", source)

        def r_spelling(match: re.Match) -> str:
            for func in ("factor", "as.factor"):
                if f"{func}({match.group(1)})" in compact:
                    return f"{func}({match.group(1)})"
            return match.group(0)

        name = re.sub(r"\bC\(([^()]*)\)", r_spelling, name)
    return name


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


def _required_columns(parsed: ParsedFormula) -> list[str]:
    """Every data column the formula uses, in order of first appearance.

    formulaic's own ``required_variables`` misses the arguments of stateful
    transforms (``scale(x)``, ``poly(x, 2)``) and splits dotted names, so the
    names are collected here from formulaic's tokens (which only split text).
    """
    needed: dict[str, None] = {}
    texts = [parsed.response, parsed.fixed, *(term.lhs for term in parsed.random)]
    try:
        for text in texts:
            for tok in _formulaic_tokenize(text):
                if tok.kind is _Token.Kind.NAME:
                    needed.setdefault(tok.token, None)
                elif tok.kind is _Token.Kind.PYTHON:
                    for name in _names_in_python(tok.token):
                        needed.setdefault(name, None)
    except (SyntaxError, ValueError) as err:  # cannot happen for a parsed formula
        raise FormulaError(f"cannot read formula {parsed.source!r}: {err}") from err
    for term in parsed.random:
        for name in term.group:
            needed.setdefault(name, None)
    return list(needed)


def _names_in_python(code: str) -> list[str]:
    """Column names in a Python term such as ``I(`a.b` ** 2)`` or ``Q("day count")``."""
    quoted: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        quoted.append(match.group()[1:-1])
        # Double-underscore names are refused in formulas, so this cannot clash.
        return f"__column_{len(quoted) - 1}__"

    tree = ast.parse(re.sub(r"`[^`]*`", placeholder, code), mode="eval")
    functions = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            first = node.args[0] if node.args else None
            if node.func.id == "Q" and isinstance(first, ast.Constant):
                names.append(str(first.value))
        elif isinstance(node, ast.Name) and id(node) not in functions:
            match = re.fullmatch(r"__column_(\d+)__", node.id)
            names.append(quoted[int(match.group(1))] if match else node.id)
    return names


def _missing_rows(frame: pd.DataFrame, weights: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """Rows with a missing value in a used column or the weights, and those columns."""
    bad = np.array(frame.isna().any(axis=1), dtype=bool)
    culprits = [str(c) for c in frame.columns if frame[c].isna().any()]
    if weights is not None and np.isnan(weights).any():
        bad |= np.isnan(weights)
        culprits.append("weights")
    return bad, culprits


def _refuse_missing(frame: pd.DataFrame, bad: np.ndarray, culprits: list[str]) -> None:
    n_bad = int(bad.sum())
    first = frame.index[np.flatnonzero(bad)[0]]
    raise DataError(
        f"{n_bad} row{'s have' if n_bad > 1 else ' has'} missing values "
        f"(in {', '.join(map(repr, culprits))}; first at row {first!r}); "
        "drop them first or use missing='drop'"
    )


def _refuse_empty(frame: pd.DataFrame, culprits: list[str]) -> None:
    empty = [
        c for c in culprits if c == "weights" or (c in frame.columns and frame[c].isna().all())
    ]
    if empty:
        verb = "is" if len(empty) == 1 else "are"
        detail = f"{', '.join(map(repr, empty))} {verb} entirely missing"
    else:
        detail = f"the missing values in {', '.join(map(repr, culprits))} cover every row"
    raise DataError(f"no rows left to fit: {detail}")


def _evaluation_frame(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """``frame`` with the categories of dropped rows blanked out.

    As in R's ``model.frame``, numeric transforms (``scale(x)``) see every row
    and missing rows are dropped afterwards, but a factor keeps only the levels
    of the rows used (``drop.unused.levels``).  Blanking the dropped rows of
    non-numeric columns gives formulaic exactly those levels.
    """
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not isinstance(
            column.dtype, pd.CategoricalDtype
        ):
            continue
        if pd.api.types.is_bool_dtype(column.dtype):
            continue
        if not keep.all():
            column = column.where(keep)
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.cat.remove_unused_categories()
        out[name] = column
    return out


@stateful_transform
def _scale(
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
    values = np.array(data, dtype=np.float64)
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
def _center(data: Any, _state: dict | None = None) -> np.ndarray:
    """R's ``scale(x, scale = FALSE)``, skipping missing values."""
    return _scale(data, scale=False, _state=_state)


# Functions formulas call, with the missing-value-aware scale and center.
_CONTEXT = {**TRANSFORMS, "scale": _scale, "center": _center}


def _evaluate(spec: str, frame: pd.DataFrame, what: str):
    try:
        # Infinite and NaN results of transforms (log(0)) are reported by
        # check_finite with the column named; numpy's own warning adds nothing.
        with np.errstate(divide="ignore", invalid="ignore"):
            return formulaic.model_matrix(spec, frame, context=_CONTEXT, na_action="ignore")
    except FormulaError:
        raise
    except Exception as err:
        raise FormulaError(f"cannot evaluate {what} {spec!r}: {err}") from err


def group_codes(frame: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and labels of a (possibly interacted) grouping factor.

    Levels are sorted as R sorts a factor's levels; for an interaction ``b:a``
    the first factor varies fastest, as in R's ``interaction()``, and only the
    combinations that occur are kept.
    """
    per_factor = []
    for name in group:
        codes, uniques = pd.factorize(frame[name], sort=True)
        per_factor.append((codes.astype(np.int64), pd.Index(uniques).astype(str)))
    if len(per_factor) == 1:
        codes, labels = per_factor[0]
        return codes.astype(np.int32), labels
    # The last factor is the most significant digit, so sorted keys put the
    # first factor fastest-varying, as R's interaction() orders its levels.
    key = np.zeros(len(frame), dtype=np.int64)
    for codes, labels in reversed(per_factor):
        key = key * len(labels) + codes
    unique_keys, combined = np.unique(key, return_inverse=True)
    digits = []
    rest = unique_keys
    for _codes, labels in per_factor:
        digits.append(rest % len(labels))
        rest = rest // len(labels)
    names = [
        ":".join(labels[c] for (_, labels), c in zip(per_factor, combo, strict=True))
        for combo in zip(*digits, strict=True)
    ]
    return combined.astype(np.int32), pd.Index(names, dtype=object)


def _random_term(
    spec: RandomTermSpec, lhs: Any, keep: np.ndarray, frame: pd.DataFrame, source: str
) -> RandomEffectsTerm:
    """A term from its model matrix (evaluated on every row) and the rows kept."""
    codes, levels = group_codes(frame, spec.group)
    return RandomEffectsTerm(
        group_name=spec.name,
        codes=codes,
        levels=levels,
        z=np.asarray(lhs, dtype=np.float64)[keep],
        column_names=[lme4_column_name(c, source) for c in lhs.columns],
    )


def aliased_columns(x: np.ndarray, tol: float = RANK_TOLERANCE) -> list[int]:
    """Columns of X that are (numerically) linear combinations of earlier ones.

    Like R's ``qr()``, columns are taken in order and one is kept when its
    component orthogonal to the kept columns is larger than ``tol`` times its
    norm.
    """
    kept = np.empty((x.shape[0], 0))
    aliased = []
    for j in range(x.shape[1]):
        col = x[:, j]
        norm = np.linalg.norm(col)
        resid = col - kept @ (kept.T @ col)
        resid = resid - kept @ (kept.T @ resid)
        rnorm = np.linalg.norm(resid)
        if norm == 0.0 or rnorm <= tol * norm:
            aliased.append(j)
        else:
            kept = np.column_stack([kept, resid / rnorm])
    return aliased


def build_design(
    formula: str | ParsedFormula,
    data: Any,
    weights: Any = None,
    missing: str = "drop",
) -> Design:
    """Evaluate a parsed lme4 formula on data, checking the data on the way.

    Parameters
    ----------
    formula : str or ParsedFormula
        An lme4 model formula.
    data : DataFrame, polars DataFrame or dict of columns
        Never modified.
    weights : array-like or str, optional
        Prior weights, or the name of a column holding them.
    missing : {"drop", "raise"}
        Rows with a missing value in any column the model uses (or in the
        weights) are dropped, as lme4's ``na.omit`` does, or refused.

    Raises
    ------
    FormulaError
        For a formula that cannot be parsed or evaluated.
    DataError
        For data the model cannot use: a missing column, a non-numeric, constant
        or entirely missing response, infinite values, bad weights, a grouping
        factor with one level or with as many levels as observations, or more
        random effects than observations (lme4's checks, see
        :mod:`mixedmodels.validation`).

    Warns
    -----
    RankDeficiencyWarning
        When aliased columns of X are dropped (named in the message).
    PredictorScaleWarning
        When predictors differ in scale by more than a factor of 1000.
    """
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    check_missing_option(missing)
    data = as_data_frame(data)
    columns = _required_columns(parsed)
    check_columns(data, columns)
    w = None if weights is None else weights_array(weights, data)
    if len(data) == 0:
        raise DataError("the data have no rows")
    full = data.loc[:, columns].copy()
    bad, culprits = _missing_rows(full, w)
    if bad.any() and missing == "raise":
        _refuse_missing(full, bad, culprits)
    if bad.all():
        _refuse_empty(full, culprits)
    response_name = _r_text(parsed.response)

    # Evaluate on every row, then drop the missing ones, as R's model.frame
    # does; a transform that yields NaN (log of a negative number) makes its
    # row missing too, which can remove a level, hence the second round.
    keep = ~bad
    for _ in range(2):
        evaluation = _evaluation_frame(full, keep)
        mm = _evaluate(f"{parsed.response} ~ {parsed.fixed}", evaluation, "formula")
        lhs_matrices = [
            _evaluate(spec.lhs, evaluation, f"random-effects term {random_term_to_lme4(spec)}")
            for spec in parsed.random
        ]
        y_all = _response(mm.lhs, response_name, evaluation)
        blocks = [(y_all, [response_name]), (mm.rhs, mm.rhs.columns)]
        blocks += [(z, z.columns) for z in lhs_matrices]
        produced = np.zeros(len(full), dtype=bool)
        nan_columns: list[str] = []
        for values, names in blocks:
            nan = (
                np.isnan(np.asarray(values, dtype=np.float64).reshape(len(full), -1))
                & keep[:, None]
            )
            produced |= nan.any(axis=1)
            nan_columns += [
                lme4_column_name(str(c), parsed.source)
                for c, hit in zip(names, nan.any(axis=0), strict=True)
                if hit
            ]
        if not produced.any():
            break
        _nan_from_transforms(full, produced, nan_columns, missing)
        keep &= ~produced
        if not keep.any():
            _refuse_empty(full, [*culprits, *nan_columns])
    n_dropped = int((~keep).sum())
    frame = full.loc[keep].copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].cat.remove_unused_categories()
    if w is not None:
        w = w[keep]
        check_weights(w, frame.index)

    y = y_all[keep]
    check_finite(y, [response_name], "the response", frame.index)
    check_response(y, response_name)
    x = np.asarray(mm.rhs, dtype=np.float64)[keep]
    names = [lme4_column_name(c, parsed.source) for c in mm.rhs.columns]
    check_finite(x, names, "the fixed-effects column", frame.index)

    dropped: list[str] = []
    aliased = aliased_columns(x) if x.shape[1] else []
    if aliased:
        dropped = [names[j] for j in aliased]
        keep_columns = [j for j in range(x.shape[1]) if j not in set(aliased)]
        x = x[:, keep_columns]
        names = [names[j] for j in keep_columns]
        warnings.warn(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=3,
        )
    check_predictor_scales(x, names)

    terms, specs, labels = [], [], []
    for spec, lhs_matrix in zip(parsed.random, lhs_matrices, strict=True):
        term = _random_term(spec, lhs_matrix, keep, frame, parsed.source)
        check_finite(
            term.z, term.column_names, f"in {random_term_to_lme4(spec)}, the column", frame.index
        )
        terms.append(term)
        specs.append(lhs_matrix.model_spec)
        labels.append(random_term_to_lme4(spec))
    # lme4's order: grouping factors with more levels first (stable).
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    terms = [terms[i] for i in order]
    specs = [specs[i] for i in order]
    check_grouping_factors(terms, len(y))
    check_random_effects_size(terms, len(y), [labels[i] for i in order])

    return Design(
        formula=parsed,
        y=y,
        x=x,
        fixed_names=names,
        terms=terms,
        weights=w,
        response_name=parsed.response,
        dropped_columns=dropped,
        n_dropped_missing=n_dropped,
        row_index=frame.index,
        fixed_spec=mm.rhs.model_spec,
        term_specs=specs,
    )


def _r_text(expr: str) -> str:
    """A translated expression as the user wrote it, near enough for messages."""
    text = expr.replace(" ** ", "^").replace("`", "")
    return text[2:-1] if text.startswith("I(") and text.endswith(")") else text


def _response(lhs: Any, name: str, frame: pd.DataFrame) -> np.ndarray:
    """The response as one float column, or a DataError saying why it is not numeric."""
    if lhs.shape[1] != 1:
        raw = frame[name] if name in frame.columns else None
        what = "text or categories"
        if raw is not None:
            values = _show_values(raw)
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
        f"{message}; those rows are dropped as missing", MissingValuesWarning, stacklevel=4
    )


def _show_values(series: pd.Series, limit: int = 3) -> str:
    uniques = pd.unique(series.dropna())[:limit]
    return ", ".join(repr(v) for v in uniques)
