"""Stage 1 of the engine: formula and data → response, X and the random-effects terms.

The fixed-effects matrix and each term's per-row model matrix are built with
formulaic from the translated, validated expressions of
:mod:`mixedmodels.formula`; the grouping factors are coded here.  Names follow
lme4 (``(Intercept)``, ``SexMale``, ``recipeB:temp``) so that results line up
with lme4's output.
"""

from __future__ import annotations

import ast
import functools
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import formulaic
import numpy as np
import pandas as pd
from formulaic.parser.algos.tokenize import tokenize as _formulaic_tokenize
from formulaic.parser.types import Token as _Token
from formulaic.transforms import stateful_transform

from ..engine.terms import RandomEffectsTerm
from ..errors import (
    DataError,
    FormulaError,
    MissingValuesWarning,
    RankDeficiencyWarning,
    user_stacklevel,
)
from ..formula import (
    TRANSFORMS,
    ParsedFormula,
    RandomTermSpec,
    parse_formula,
    random_term_to_lme4,
)
from .checks import (
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
from .plain import PlainPart, PlainPlan, column_missing, is_plain_numeric, plain_plan

# lme4 drops a column of X when its pivot is this small relative to its norm.
RANK_TOLERANCE = 1e-7


class _LazySpec:
    """A :class:`Design` field holding formulaic model specs, some built on first use.

    Parts of a formula built without formulaic (see :mod:`mixedmodels.fastdesign`)
    have no model spec until something asks for one (prediction on new data,
    anova, the statsmodels-style summary); the design's ``spec_builder`` then
    fills in every missing spec at once.  Used as a dataclass field default, it
    keeps ``Design(fixed_spec=..., term_specs=...)`` working as a plain field.
    """

    def __init__(self, default_factory: Callable[[], Any] | None = None) -> None:
        self._default_factory = default_factory

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = f"_{name}"

    def __get__(self, design: Design | None, owner: type | None = None) -> Any:
        if design is None:
            return None  # the dataclass field's default
        builder = design.__dict__.get("spec_builder")
        if builder is not None:
            builder.fill(design)
        value = design.__dict__.get(self._attr)
        if value is None and self._default_factory is not None:
            value = design.__dict__[self._attr] = self._default_factory()
        return value

    def __set__(self, design: Design, value: Any) -> None:
        design.__dict__[self._attr] = value


@dataclass
class Design:
    """Everything stage 2 needs, plus what results need to name things.

    ``fixed_spec`` and ``term_specs`` (in the order of ``terms``) are formulaic's
    ``ModelSpec`` objects of X and of each term's Z, for evaluating the same
    model matrices on new data; those of parts built without formulaic are
    built from a few of the rows used when first accessed.
    """

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
    # Descriptors as defaults: dataclasses treat them as fields with default None.
    fixed_spec: Any = _LazySpec()
    term_specs: list[Any] = _LazySpec(list)
    spec_builder: _SpecBuilder | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        # Without the specs, so that showing a design does not build them.
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("fixed_spec", "term_specs", "spec_builder")
        )
        return f"Design({shown})"


@dataclass
class _SpecBuilder:
    """The model specs a design lacks, and the few data rows to build them from.

    Attributes
    ----------
    parsed : ParsedFormula
        The model's formula.
    sample : dict of str to ndarray
        The first rows used of every column of the parts to build (all numeric,
        so the specs do not depend on the values).
    n_rows : int
        The number of rows in ``sample`` (it may have no columns).
    terms : list of (RandomTermSpec or None)
        In the order of the design's terms, the formula term whose spec is
        missing, or None where the spec is there.
    """

    parsed: ParsedFormula
    sample: dict[str, np.ndarray]
    n_rows: int
    terms: list[RandomTermSpec | None]

    def fill(self, design: Design) -> None:
        """Set every missing spec of ``design`` (once: the builder then detaches)."""
        design.spec_builder = None
        frame = pd.DataFrame(self.sample, index=pd.RangeIndex(self.n_rows))
        values = design.__dict__
        if values.get("_fixed_spec") is None:
            formula = f"{self.parsed.response} ~ {self.parsed.fixed}"
            values["_fixed_spec"] = _evaluate(formula, frame, "formula").rhs.model_spec
        specs = list(values.get("_term_specs") or [None] * len(self.terms))
        for k, spec in enumerate(self.terms):
            if spec is not None:
                what = f"random-effects term {random_term_to_lme4(spec)}"
                specs[k] = _evaluate(spec.lhs, frame, what).model_spec
        values["_term_specs"] = specs


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
    return list(_columns_of(parsed))


@functools.lru_cache(maxsize=256)
def _columns_of(parsed: ParsedFormula) -> tuple[str, ...]:
    # Cached: tokenizing is a sizeable share of building a small design.
    texts = (parsed.response, parsed.fixed, *(term.lhs for term in parsed.random))
    needed = dict.fromkeys(_columns_in(texts, parsed.source))
    for term in parsed.random:
        for name in term.group:
            needed.setdefault(name, None)
    return tuple(needed)


@functools.lru_cache(maxsize=256)
def _columns_in(texts: tuple[str, ...], source: str) -> tuple[str, ...]:
    """The data columns that translated expressions use, in order of first appearance."""
    needed: dict[str, None] = {}
    try:
        for text in texts:
            for tok in _formulaic_tokenize(text):
                if tok.kind is _Token.Kind.NAME:
                    needed.setdefault(tok.token, None)
                elif tok.kind is _Token.Kind.PYTHON:
                    for name in _names_in_python(tok.token):
                        needed.setdefault(name, None)
    except (SyntaxError, ValueError) as err:  # cannot happen for a parsed formula
        raise FormulaError(f"cannot read formula {source!r}: {err}") from err
    return tuple(needed)


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


def _missing_rows(
    series: Mapping[str, pd.Series], arrays: Mapping[str, np.ndarray], weights: np.ndarray | None
) -> tuple[np.ndarray, list[str]]:
    """Rows with a missing value in a used column or the weights, and those columns.

    ``arrays`` holds the numpy values of some of the columns, to save converting
    them again.
    """
    n = len(next(iter(series.values())))
    bad = np.zeros(n, dtype=bool)
    culprits = []
    for name, column in series.items():
        missing = column_missing(column, arrays.get(name))
        if missing is not None and missing.any():
            bad |= missing
            culprits.append(name)
    if weights is not None and np.isnan(weights).any():
        bad |= np.isnan(weights)
        culprits.append("weights")
    return bad, culprits


def _refuse_missing(index: pd.Index, bad: np.ndarray, culprits: list[str]) -> None:
    n_bad = int(bad.sum())
    first = index[np.flatnonzero(bad)[0]]
    raise DataError(
        f"{n_bad} row{'s have' if n_bad > 1 else ' has'} missing values "
        f"(in {', '.join(map(repr, culprits))}; first at row {first!r}); "
        "drop them first or use missing='drop'"
    )


def _refuse_empty(series: Mapping[str, pd.Series], culprits: list[str]) -> None:
    empty = [c for c in culprits if c == "weights" or (c in series and series[c].isna().all())]
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


def _factor_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes (−1 for missing) and text labels of one factor, levels sorted as R sorts them.

    A categorical column keeps its category order and only the categories that
    occur (R's ``drop.unused.levels``); its codes are renumbered directly,
    which is what ``pd.factorize(..., sort=True)`` gives, without its cost.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.array.codes
        categories = values.cat.categories
        valid = codes >= 0
        all_valid = bool(valid.all())
        present = np.bincount(codes if all_valid else codes[valid], minlength=len(categories)) > 0
        renumber = np.cumsum(present, dtype=np.int64) - 1
        new_codes = renumber[codes] if all_valid else np.where(valid, renumber[codes], -1)
        return new_codes, categories[present].astype(str)
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), pd.Index(uniques).astype(str)


def group_codes(frame: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and labels of a (possibly interacted) grouping factor.

    Levels are sorted as R sorts a factor's levels; for an interaction ``b:a``
    the first factor varies fastest, as in R's ``interaction()``, and only the
    combinations that occur are kept.
    """
    return _combine_factors([frame[name] for name in group], len(frame))


def _combine_factors(columns: list[pd.Series], n: int) -> tuple[np.ndarray, pd.Index]:
    """:func:`group_codes` of the grouping factor made of ``columns`` (``n`` rows each)."""
    per_factor = [_factor_codes(column) for column in columns]
    if len(per_factor) == 1:
        codes, labels = per_factor[0]
        return codes.astype(np.int32), labels
    # The last factor is the most significant digit, so sorted keys put the
    # first factor fastest-varying, as R's interaction() orders its levels.
    key = np.zeros(n, dtype=np.int64)
    for codes, labels in reversed(per_factor):
        key = key * len(labels) + codes
    # Hashing then sorting only the distinct keys: np.unique would sort all n.
    combined, unique_keys = pd.factorize(key, sort=True)
    parts = []
    rest = unique_keys
    for _codes, labels in per_factor:
        parts.append(pd.Series(np.asarray(labels, dtype=object)[rest % len(labels)]))
        rest = rest // len(labels)
    names = parts[0].str.cat(parts[1:], sep=":")
    return combined.astype(np.int32), pd.Index(names.to_numpy(dtype=object), dtype=object)


def aliased_columns(x: np.ndarray, tol: float = RANK_TOLERANCE) -> list[int]:
    """Columns of X that are (numerically) linear combinations of earlier ones.

    Like R's ``qr()``, columns are taken in order and one is kept when its
    component orthogonal to the kept columns is larger than ``tol`` times its
    norm.
    """
    if x.shape[1] == 0:
        return []
    # Householder QR without pivoting: |R_jj| is the norm of column j's
    # component orthogonal to the columns before it (aliased ones add nothing
    # to their span), in one LAPACK pass over X.
    r = np.linalg.qr(x, mode="r")
    norms = np.linalg.norm(x, axis=0)
    diag = np.zeros(x.shape[1])  # columns beyond the n-th are aliased
    diag[: min(r.shape)] = np.abs(np.diagonal(r))
    return [j for j in range(x.shape[1]) if norms[j] == 0.0 or diag[j] <= tol * norms[j]]


def build_design(
    formula: str | ParsedFormula,
    data: Any,
    weights: Any = None,
    missing: str = "drop",
    *,
    _formulaic_only: bool = False,
) -> Design:
    """Evaluate a parsed lme4 formula on data, checking the data on the way.

    Parts of the formula that are only an intercept and numeric columns joined
    by ``+`` are built straight from the columns (:mod:`mixedmodels.fastdesign`);
    the rest goes through formulaic.  ``_formulaic_only`` (for tests) sends
    every part through formulaic.

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
    series = check_columns(data, columns)
    w = None if weights is None else weights_array(weights, data)
    if len(data) == 0:
        raise DataError("the data have no rows")
    plan = _usable_plan(parsed, series, _formulaic_only)
    arrays = {name: series[name].to_numpy() for name in plan.columns}
    bad, culprits = _missing_rows(series, arrays, w)
    if bad.any() and missing == "raise":
        _refuse_missing(data.index, bad, culprits)
    if bad.all():
        _refuse_empty(series, culprits)
    response_name = _r_text(parsed.response)

    keep = ~bad
    fixed_matrix, lhs_matrices = None, [None] * len(parsed.random)
    if plan.fixed is None or None in plan.terms:
        # formulaic sees only the columns its parts use (pandas' cost grows with
        # the columns, and grouping factors need no evaluation).
        texts = [parsed.response, parsed.fixed] if plan.fixed is None else []
        texts += [spec.lhs for k, spec in enumerate(parsed.random) if plan.terms[k] is None]
        used = set(_columns_in(tuple(texts), parsed.source))
        keep, fixed_matrix, lhs_matrices = _evaluate_with_formulaic(
            parsed,
            plan,
            data[[name for name in columns if name in used]],
            keep,
            culprits,
            missing,
            response_name,
            series,
        )
    n_dropped = int(np.count_nonzero(~keep))
    # Plain parts and indexing skip the row selection when every row is used.
    rows = keep if n_dropped else None
    index = data.index[keep] if n_dropped else data.index
    if w is not None:
        w = w[keep]
        check_weights(w, index)

    if fixed_matrix is None:
        response = arrays[plan.response]
        y = np.array(response if rows is None else response[rows], dtype=np.float64)
        x = plan.fixed.matrix(arrays, rows, len(y))
        raw_names = plan.fixed.names
        fixed_spec = None
    else:
        y_all, rhs = fixed_matrix
        y = y_all[keep]
        x = np.asarray(rhs, dtype=np.float64)[keep]
        raw_names = list(rhs.columns)
        fixed_spec = rhs.model_spec
    check_finite(y, [response_name], "the response", index)
    check_response(y, response_name)
    names = [lme4_column_name(c, parsed.source) for c in raw_names]
    check_finite(x, names, "the fixed-effects column", index)

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
            stacklevel=user_stacklevel(),
        )
    check_predictor_scales(x, names)

    terms, specs, labels = [], [], []
    for spec, part, lhs in zip(parsed.random, plan.terms, lhs_matrices, strict=True):
        if lhs is None:
            z, raw_names, z_spec = part.matrix(arrays, rows, len(y)), part.names, None
        else:
            z = np.asarray(lhs, dtype=np.float64)[keep]
            raw_names, z_spec = lhs.columns, lhs.model_spec
        group = [series[name] if rows is None else series[name][rows] for name in spec.group]
        codes, levels = _combine_factors(group, len(y))
        term = RandomEffectsTerm(
            group_name=spec.name,
            codes=codes,
            levels=levels,
            z=z,
            column_names=[lme4_column_name(c, parsed.source) for c in raw_names],
        )
        label = random_term_to_lme4(spec)
        check_finite(term.z, term.column_names, f"in {label}, the column", index)
        terms.append(term)
        specs.append(z_spec)
        labels.append(label)
    # lme4's order: grouping factors with more levels first (stable).
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    terms = [terms[i] for i in order]
    specs = [specs[i] for i in order]
    check_grouping_factors(terms, len(y))
    check_random_effects_size(terms, len(y), [labels[i] for i in order])

    builder = None
    if fixed_spec is None or None in specs:
        # A few rows used are enough: the parts to build are numeric columns.
        first = np.flatnonzero(keep)[:3] if n_dropped else np.arange(min(3, len(keep)))
        builder = _SpecBuilder(
            parsed=parsed,
            sample={name: arrays[name][first] for name in plan.columns},
            n_rows=len(first),
            terms=[parsed.random[i] if specs[k] is None else None for k, i in enumerate(order)],
        )
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
        row_index=index,
        fixed_spec=fixed_spec,
        term_specs=specs,
        spec_builder=builder,
    )


def _usable_plan(
    parsed: ParsedFormula, series: Mapping[str, pd.Series], formulaic_only: bool
) -> PlainPlan:
    """The formula's plain parts (see :mod:`mixedmodels.fastdesign`) whose columns are numeric."""
    if formulaic_only:
        return PlainPlan(response=None, fixed=None, terms=(None,) * len(parsed.random))
    plan = plain_plan(parsed)

    def numeric(part: PlainPart | None, *extra: str) -> PlainPart | None:
        if part is None:
            return None
        names = (*extra, *part.columns)
        return part if all(is_plain_numeric(series[name].dtype) for name in names) else None

    response = plan.response
    fixed = numeric(plan.fixed, response) if response is not None else None
    terms = tuple(numeric(part) for part in plan.terms)
    if fixed is plan.fixed and terms == plan.terms:
        return plan
    return PlainPlan(response=response, fixed=fixed, terms=terms)


def _evaluate_with_formulaic(
    parsed: ParsedFormula,
    plan: PlainPlan,
    full: pd.DataFrame,
    keep: np.ndarray,
    culprits: list[str],
    missing: str,
    response_name: str,
    series: Mapping[str, pd.Series],
) -> tuple[np.ndarray, tuple[np.ndarray, Any] | None, list[Any]]:
    """Evaluate the parts that are not plain with formulaic, on every row.

    ``full`` holds the columns those parts use, ``series`` every column used.

    As R's model.frame does, model matrices are evaluated on every row and the
    missing rows dropped afterwards; a transform that yields NaN (log of a
    negative number) makes its row missing too, which can remove a level, hence
    the second round.

    Returns
    -------
    keep : ndarray of bool
        The rows used.
    fixed : (ndarray, ModelMatrix) or None
        The response and X on every row, unless the fixed part is plain.
    lhs : list of (ModelMatrix or None)
        Each random term's model matrix on every row, None for plain terms.
    """
    for _ in range(2):
        evaluation = _evaluation_frame(full, keep)
        fixed = None
        blocks: list[tuple[Any, Any]] = []
        if plan.fixed is None:
            mm = _evaluate(f"{parsed.response} ~ {parsed.fixed}", evaluation, "formula")
            y_all = _response(mm.lhs, response_name, evaluation)
            fixed = (y_all, mm.rhs)
            blocks += [(y_all, [response_name]), (mm.rhs, mm.rhs.columns)]
        lhs_matrices = [
            None
            if part is not None
            else _evaluate(spec.lhs, evaluation, f"random-effects term {random_term_to_lme4(spec)}")
            for spec, part in zip(parsed.random, plan.terms, strict=True)
        ]
        # Plain parts cannot make NaN: their missing values are dropped already.
        blocks += [(z, z.columns) for z in lhs_matrices if z is not None]
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
        keep = keep & ~produced
        if not keep.any():
            _refuse_empty(series, [*culprits, *nan_columns])
    return keep, fixed, lhs_matrices


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
    # Warned from build_design's helper: point at the caller of LinearMixedModel.
    warnings.warn(
        f"{message}; those rows are dropped as missing",
        MissingValuesWarning,
        stacklevel=user_stacklevel(),
    )


def _show_values(series: pd.Series, limit: int = 3) -> str:
    uniques = pd.unique(series.dropna())[:limit]
    return ", ".join(repr(v) for v in uniques)
