"""Stage 1 of the engine: formula and data → response, X and the random-effects terms.

The fixed-effects matrix and each term's per-row model matrix are built with
formulaic from the translated, validated expressions of
:mod:`mixedmodels.formula`; the grouping factors are coded here.  Names follow
lme4 (``(Intercept)``, ``SexMale``, ``recipeB:temp``) so that results line up
with lme4's output.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from .errors import DataError, FormulaError, RankDeficiencyWarning
from .formula import TRANSFORMS, ParsedFormula, RandomTermSpec, parse_formula
from .terms import RandomEffectsTerm

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
    """Accept a pandas DataFrame or a mapping of column name → values."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as err:
            raise DataError(f"could not build a table from the dict of columns: {err}") from err
    raise DataError(
        f"data must be a pandas DataFrame or a dict of columns, not {type(data).__name__}"
    )


def _required_columns(parsed: ParsedFormula) -> list[str]:
    needed: list[str] = []

    def add(names) -> None:
        for name in names:
            if name not in needed:
                needed.append(name)

    try:
        add(sorted(formulaic.Formula(f"{parsed.response} ~ {parsed.fixed}").required_variables))
        for term in parsed.random:
            add(sorted(formulaic.Formula(term.lhs).required_variables))
            add(term.group)
    except Exception as err:  # formulaic's own parse errors
        raise FormulaError(f"cannot read formula {parsed.source!r}: {err}") from err
    return needed


def _prepare_frame(
    data: pd.DataFrame, columns: list[str], weights: np.ndarray | None, missing: str
) -> tuple[pd.DataFrame, np.ndarray | None, int]:
    absent = [c for c in columns if c not in data.columns]
    if absent:
        raise DataError(
            f"column {absent[0]!r} used in the formula is not in the data "
            f"(columns: {', '.join(map(str, data.columns[:20]))})"
        )
    frame = data.loc[:, columns].copy()
    bad = frame.isna().any(axis=1).to_numpy()
    if weights is not None:
        bad |= ~np.isfinite(weights)
    n_bad = int(bad.sum())
    if n_bad:
        if missing == "raise":
            culprits = [c for c in columns if frame[c].isna().any()]
            raise DataError(
                f"{n_bad} rows have missing values (in {', '.join(map(repr, culprits))}); "
                "drop them or use missing='drop'"
            )
        frame = frame.loc[~bad]
        if weights is not None:
            weights = weights[~bad]
    if frame.empty:
        raise DataError("no rows left to fit (the data are empty or every row has a missing value)")
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].cat.remove_unused_categories()
    return frame, weights, n_bad


def _evaluate(spec: str, frame: pd.DataFrame, what: str):
    try:
        return formulaic.model_matrix(spec, frame, context=TRANSFORMS, na_action="ignore")
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


def _random_term(spec: RandomTermSpec, frame: pd.DataFrame, source: str):
    mm = _evaluate(spec.lhs, frame, f"random-effects term ({spec.lhs} | {spec.name})")
    z = np.asarray(mm, dtype=np.float64)
    codes, levels = group_codes(frame, spec.group)
    term = RandomEffectsTerm(
        group_name=spec.name,
        codes=codes,
        levels=levels,
        z=z,
        column_names=[lme4_column_name(c, source) for c in mm.columns],
    )
    return term, mm.model_spec


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
    """Evaluate a parsed lme4 formula on data.

    Parameters
    ----------
    formula : str or ParsedFormula
        An lme4 model formula.
    data : DataFrame or dict of columns
        Never modified.
    weights : array-like or str, optional
        Prior weights, or the name of a column holding them.
    missing : {"drop", "raise"}
        Rows with a missing value in any column the model uses are dropped (as
        lme4's ``na.omit``) or refused.
    """
    parsed = parse_formula(formula) if isinstance(formula, str) else formula
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', not {missing!r}")
    data = as_data_frame(data)
    columns = _required_columns(parsed)
    w = None
    if weights is not None:
        if isinstance(weights, str):
            if weights not in data.columns:
                raise DataError(f"weights column {weights!r} is not in the data")
            weights = data[weights]
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(data),):
            raise DataError(f"weights must have one value per row ({len(data)}), got {w.shape}")
    frame, w, n_dropped = _prepare_frame(data, columns, w, missing)
    if w is not None and np.any(w < 0):
        raise DataError("weights must be non-negative")

    mm = _evaluate(f"{parsed.response} ~ {parsed.fixed}", frame, "formula")
    response = mm.lhs
    if response.shape[1] != 1:
        raise DataError(
            f"the response {parsed.response!r} must be one numeric column, "
            f"got {response.shape[1]} columns (is it a factor?)"
        )
    y = np.asarray(response, dtype=np.float64).ravel()
    x = np.asarray(mm.rhs, dtype=np.float64)
    names = [lme4_column_name(c, parsed.source) for c in mm.rhs.columns]

    dropped: list[str] = []
    aliased = aliased_columns(x) if x.shape[1] else []
    if aliased:
        dropped = [names[j] for j in aliased]
        keep = [j for j in range(x.shape[1]) if j not in set(aliased)]
        x = x[:, keep]
        names = [names[j] for j in keep]
        warnings.warn(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=3,
        )

    terms, specs = [], []
    for spec in parsed.random:
        term, model_spec = _random_term(spec, frame, parsed.source)
        terms.append(term)
        specs.append(model_spec)
    # lme4's order: grouping factors with more levels first (stable).
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    terms = [terms[i] for i in order]
    specs = [specs[i] for i in order]

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
