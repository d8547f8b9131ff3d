"""A Dask fit's plan, made on the driver from what the scan learned.

The plan holds the formulaic specs of X and of each term's Z, built once from
a prototype frame carrying the global level sets (so every partition gets the
same columns), and the level codes of the grouping factors.
"""

from __future__ import annotations

import warnings
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.linalg

from ...design import RANK_TOLERANCE
from ...design.columns import matrix_columns, predictor_column
from ...design.evaluation import evaluation_frame
from ...design.levels import Levels
from ...errors import DataError, FormulaError
from ...formula import TRANSFORMS, ParsedFormula
from .passes import (
    GroupLevels,
    Plan,
    Scan,
    merge_scans,
    ordered_levels,
    scan_partition,
    tree_reduce,
)

# -- building the plan on the driver -------------------------------------------------


def _formula_columns(parsed: ParsedFormula) -> set[str]:
    """Columns read by the response, the fixed part and the terms' left-hand sides."""
    found: set[str] = set()
    for spec in (f"{parsed.response} ~ {parsed.fixed}", *(t.lhs for t in parsed.random)):
        found |= set(formulaic.Formula(spec).required_variables)
    return found


def _predictor_columns(parsed: ParsedFormula, columns: list[str]) -> list[str]:
    """Columns the fixed part and the terms read (not the response)."""
    found = set(formulaic.Formula(parsed.fixed).required_variables)
    for term in parsed.random:
        found |= set(formulaic.Formula(term.lhs).required_variables) | set(term.group)
    return [c for c in columns if c in found]


def _inside_c(name: str, parsed: ParsedFormula) -> bool:
    """Whether a column is used as a factor through C() (R's factor())."""
    return name in parsed.factor_columns


def _prototype(scan: Scan, factor_levels: dict[str, Levels], columns: list[str]):
    """A small frame holding every level of every factor column, from which formulaic
    learns specs that encode all partitions alike."""
    n = max([1, *(len(lev) for lev in factor_levels.values())])
    proto = {}
    for name in columns:
        if name in factor_levels:
            lev = factor_levels[name]
            values = np.resize(np.arange(len(lev)), n)
            proto[name] = pd.Categorical.from_codes(values, categories=lev.categories)
        else:
            proto[name] = np.repeat(scan.sample[name].to_numpy()[:1], n)
    return pd.DataFrame(proto)


def _spec(formula: str, frame: pd.DataFrame, what: str):
    try:
        with warnings.catch_warnings():
            # The prototype's values are placeholders: what transforms make of
            # them (log(0), a zero variance) says nothing about the data.
            warnings.simplefilter("ignore", RuntimeWarning)
            mats = formulaic.model_matrix(
                formula, evaluation_frame(frame, None), context=TRANSFORMS, na_action="ignore"
            )
    except FormulaError:
        raise
    except Exception as err:
        raise FormulaError(f"cannot evaluate {what} {formula!r}: {err}") from err
    specs = mats.model_spec
    stateful = [
        name
        for spec in (specs if isinstance(specs, formulaic.ModelSpecs) else [specs])
        for name, state in spec.transform_state.items()
        if state  # factor() and I() keep none: their levels are in the encoder state
    ]
    if stateful:
        # Their statistics (mean, sd, polynomial basis) would have to be
        # computed over all rows first; the specs here come from a prototype.
        raise FormulaError(
            f"{stateful[0]} in {what} needs statistics of the whole column, which is not "
            "supported for a Dask DataFrame: compute the transformed column first "
            "(e.g. ddf.assign(...)) and use it in the formula"
        )
    return mats


def aliased_from_gram(xtx: np.ndarray, tol: float = RANK_TOLERANCE) -> list[int]:
    """Columns of X aliased with earlier ones, decided from XᵀX alone.

    The criterion of :func:`~mixedmodels.design.aliased_columns` — a column is
    dropped when the part of it orthogonal to the kept columns has norm at most
    ``tol`` times its own — computed by a Cholesky factorisation of XᵀX in
    column order: the squared residual norm is the pivot.
    """
    kept: list[int] = []
    factor = np.zeros((0, 0))
    aliased = []
    for j in range(xtx.shape[0]):
        norm2 = xtx[j, j]
        if kept:
            row = scipy.linalg.solve_triangular(factor, xtx[kept, j], lower=True)
            resid2 = norm2 - row @ row
        else:
            row = np.zeros(0)
            resid2 = norm2
        if norm2 <= 0.0 or resid2 <= tol**2 * norm2:
            aliased.append(j)
            continue
        grown = np.zeros((len(kept) + 1, len(kept) + 1))
        grown[:-1, :-1] = factor
        grown[-1, :-1] = row
        grown[-1, -1] = np.sqrt(resid2)
        factor = grown
        kept.append(j)
    return aliased


def check_weights_column(weights: Any, columns: pd.Index) -> str | None:
    if weights is None:
        return None
    if not isinstance(weights, str):
        raise DataError(
            "for a Dask DataFrame give weights as the name of a column, not "
            f"{type(weights).__name__}"
        )
    if weights not in columns:
        raise DataError(f"weights column {weights!r} is not in the data")
    return weights


def learn_levels(
    parts: list,
    parsed: ParsedFormula,
    columns: list[str],
    dtypes: pd.Series,
    weights: str | None,
    split_every: int,
) -> tuple[Scan, list[str]]:
    """Pass 1: the level sets of the grouping factors and factor columns, and counts."""
    import dask

    in_formula = _formula_columns(parsed)
    factor_columns = [
        c
        for c in columns
        if c in in_formula
        and (not pd.api.types.is_numeric_dtype(dtypes[c]) or _inside_c(c, parsed))
    ]
    level_sets = list(dict.fromkeys([t.group for t in parsed.random]))
    level_sets += [(c,) for c in factor_columns if (c,) not in level_sets]
    read = [c for c in columns if c in matrix_columns(parsed)]
    # The values of each column the matrices read, checked as in memory.
    for name in read:
        predictor_column(name, pd.Series([], dtype=dtypes[name], name=name))
    scan_task = dask.delayed(scan_partition, pure=True)
    # Factors by their dtype (not numbers inside C()).
    by_dtype = [c for c in factor_columns if not pd.api.types.is_numeric_dtype(dtypes[c])]
    scans = [scan_task(p, columns, level_sets, weights, read, by_dtype) for p in parts]
    return dask.compute(tree_reduce(scans, merge_scans, split_every))[0], factor_columns


def make_plan(
    parsed: ParsedFormula,
    columns: list[str],
    weights: str | None,
    scan: Scan,
    factor_columns: list[str],
    dtypes: pd.Series,
) -> tuple[Plan, list[pd.Index]]:
    """The specs and level codes every partition uses; also the level labels of the
    terms (engine order), which stay on the driver."""
    factor_levels = {c: ordered_levels(scan.combos[(c,)][c]) for c in factor_columns}
    proto = _prototype(scan, factor_levels, columns)
    fixed = _spec(f"{parsed.response} ~ {parsed.fixed}", proto, "formula")
    if fixed.lhs.shape[1] != 1:
        raise DataError(
            f"the response {parsed.response!r} must be one numeric column, "
            f"got {fixed.lhs.shape[1]} columns (is it a factor?)"
        )
    groups = [GroupLevels.from_combinations(t.group, scan.combos[t.group]) for t in parsed.random]
    term_specs = [
        _spec(t.lhs, proto, f"random-effects term ({t.lhs} | {t.name})").model_spec
        for t in parsed.random
    ]
    # lme4's order: grouping factors with more levels first (stable).
    order = sorted(range(len(groups)), key=lambda i: -groups[i].n_levels)
    plan = Plan(
        parsed=parsed,
        columns=columns,
        weights=weights,
        factor_levels=factor_levels,
        convert=[c for c in factor_columns if not pd.api.types.is_numeric_dtype(dtypes[c])],
        fixed_specs=fixed.model_spec,
        term_specs=[term_specs[i] for i in order],
        # The workers' copy leaves out the level labels (strings, maybe millions).
        groups=[groups[i].for_workers() for i in order],
        predictors=_predictor_columns(parsed, columns),
        matrix_columns=[c for c in columns if c in matrix_columns(parsed)],
        random_specs=[parsed.random[i] for i in order],
    )
    return plan, [groups[i].labels for i in order]
