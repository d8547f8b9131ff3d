"""``MixedLM.from_formula``: a formula, data and ``groups`` → the model's arrays.

The call is first written as lme4 text (:func:`.translate.translate`); the
fixed effects and the random-effects terms are built from it by the package's
design stage (:func:`~mixedmodels.design.build_design`), with statsmodels'
names (``Intercept``, ``sex[T.M]``; the groups' intercept named after the
groups).  The terms grouped by ``groups`` become statsmodels' ``exog_re``;
terms of other groupings (lme4 bar terms, the front door's extension) are kept
as engine terms.  Variance components are evaluated from their formulas as
statsmodels evaluates them: a column belongs to a group when the group has
rows for it (a level of a factor that occurs in the group; every numeric
column), and its effects share the component's one variance.

Missing values follow statsmodels: ``missing="drop"`` drops the rows with a
missing value in any column a formula (or ``groups``) uses; ``"none"`` and
``"raise"`` refuse them with the column and row named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.sparse

from ...design import Design, as_data_frame, build_design, group_codes
from ...errors import DataError, FormulaError
from ...formula import TRANSFORMS, parse_formula
from .grouped import (
    ExtraTerm,
    GroupedData,
    VarianceComponent,
    check_missing_option,
    group_coding,
)
from .translate import Translation, translate

__all__ = ["FormulaModel", "build_from_formula"]

_NAME = re.compile(r"`([^`]+)`|([A-Za-z_.][\w.]*)")


@dataclass(frozen=True)
class FormulaModel:
    """A formula model's arrays and what prediction on new data needs.

    Attributes
    ----------
    data : GroupedData
    translation : Translation
        The call written as lme4 text.
    design : Design
        The fixed effects' (and bar terms') design, for new data.
    fixed_columns : list of int
        Columns of the design's fixed-effects matrix kept (not aliased), in
        formulaic's numbering.
    frame : pandas.DataFrame
        The rows used.
    """

    data: GroupedData
    translation: Translation
    design: Design
    fixed_columns: list[int]
    frame: pd.DataFrame


def _columns_used(texts: list[str], frame: pd.DataFrame) -> list[str]:
    """Data columns named in formula texts (statsmodels reads tokens the same way)."""
    present = set(map(str, frame.columns))
    used: list[str] = []
    for text in texts:
        for match in _NAME.finditer(text):
            name = match.group(1) or match.group(2)
            if name in present and name not in used:
                used.append(name)
    return used


def _subset(frame: pd.DataFrame, groups: Any, subset: Any) -> tuple[pd.DataFrame, Any]:
    if subset is None:
        return frame, groups
    mask = np.asarray(subset)
    if mask.dtype == bool:
        if len(mask) != len(frame):
            raise DataError(f"subset has {len(mask)} values for {len(frame)} rows")
        positions = np.flatnonzero(mask)
    else:
        positions = frame.index.get_indexer(pd.Index(mask))
        if np.any(positions < 0):
            raise DataError("subset names rows that are not in the data")
    if groups is not None and not isinstance(groups, str):
        groups = np.asarray(groups)[positions]
    return frame.iloc[positions], groups


def _drop_missing(frame: pd.DataFrame, columns: list[str], missing: str) -> pd.DataFrame:
    if not columns:
        return frame
    bad = frame[columns].isna()
    rows = bad.any(axis=1).to_numpy()
    if not rows.any():
        return frame
    if missing == "drop":
        kept = frame.loc[~rows]
        if kept.empty:
            raise DataError("every row has a missing value in a column the model uses")
        return kept
    first = int(np.flatnonzero(rows)[0])
    column = next(c for c in columns if bad[c].iloc[first])
    hint = "" if missing == "raise" else " (pass missing='drop' to drop such rows)"
    raise DataError(
        f"missing value in column {column!r} at row {frame.index[first]!r}, and "
        f"{int(rows.sum())} rows in all{hint}"
    )


def _fixed_columns(design: Design) -> tuple[list[int], list[str]]:
    """Kept fixed-effects columns (formulaic numbering) and their formulaic names."""
    names = list(design.fixed_spec.column_names)
    lme4_names = design.formula.column_names(names)
    dropped = set(design.dropped_columns)
    keep = [j for j, name in enumerate(lme4_names) if name not in dropped]
    if len(keep) != len(design.fixed_names):  # names did not line up: keep them all
        keep = list(range(len(design.fixed_names)))
        return keep, list(design.fixed_names)
    return keep, [names[j] for j in keep]


def _evaluate(text: str, frame: pd.DataFrame, what: str, sparse: bool = False):
    """formulaic's model matrix of a validated right-hand side."""
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            return formulaic.model_matrix(
                text,
                frame,
                context=TRANSFORMS,
                na_action="ignore",
                output="sparse" if sparse else "pandas",
            )
    except Exception as err:
        raise FormulaError(f"cannot evaluate {what} {text!r}: {err}") from None


def _component(
    name: str, text: str, frame: pd.DataFrame, codes: np.ndarray, n_groups: int
) -> VarianceComponent:
    """A variance component from its formula, its columns per group as statsmodels has them.

    The formula is evaluated once, as a sparse matrix (a factor with many
    levels gives many columns, mostly zero); a group has the numeric columns
    and the factor columns of levels it has rows of.
    """
    what = f"vc_formula[{name!r}] = {text!r}"
    try:
        rhs = parse_formula(f"y ~ {text}").fixed
    except FormulaError as err:
        raise FormulaError(f"cannot read {what}: {err}") from None
    matrix = _evaluate(rhs, frame, what, sparse=True)
    spec = matrix.model_spec
    names = [str(c) for c in spec.column_names]
    coo = scipy.sparse.coo_matrix(matrix)
    if not np.isfinite(coo.data).all():
        raise DataError(f"{what} gives missing or infinite values")
    if not names:
        raise DataError(f"{what} gives no columns")
    categorical = np.zeros(len(names), dtype=bool)
    kinds = {
        expr: str(getattr(state[0], "value", state[0]))
        for expr, state in spec.encoder_state.items()
    }
    for structure in spec.structure:
        if any(kinds.get(factor.expr) == "categorical" for factor in structure.term.factors):
            for column in structure.columns:
                categorical[names.index(column)] = True
    # (group, column) pairs present: every group's numeric columns, and the
    # factor columns with a non-zero entry in the group.
    n_columns = len(names)
    keys = codes[coo.row].astype(np.int64) * n_columns + coo.col
    numeric = np.flatnonzero(~categorical)
    all_groups = np.arange(n_groups, dtype=np.int64)[:, None] * n_columns + numeric[None, :]
    present = np.unique(np.concatenate([keys[categorical[coo.col]], all_groups.ravel()]))
    group_of, column_of = np.divmod(present, n_columns)
    widths = np.bincount(group_of, minlength=n_groups).astype(np.intp)
    first = np.concatenate([[0], np.cumsum(widths)[:-1]])
    slot_of_pair = np.arange(len(present)) - first[group_of]
    packed = np.zeros((len(codes), int(widths.max(initial=0))))
    keep = np.isin(keys, present)
    slots = slot_of_pair[np.searchsorted(present, keys[keep])]
    packed[coo.row[keep], slots] = coo.data[keep]
    bounds = np.concatenate([first, [len(present)]])
    column_names = [
        [names[j] for j in column_of[bounds[g] : bounds[g + 1]]] for g in range(n_groups)
    ]
    return VarianceComponent(name, packed, widths, column_names)


def build_from_formula(
    formula: str,
    data: Any,
    groups: Any = None,
    re_formula: Any = None,
    vc_formula: Any = None,
    *,
    subset: Any = None,
    missing: str = "none",
) -> FormulaModel:
    """The arrays of a ``mixedlm`` call; see :meth:`.model.MixedLM.from_formula`."""
    check_missing_option(missing)
    frame = as_data_frame(data)
    frame, groups = _subset(frame, groups, subset)
    tr = translate(formula, frame, groups, re_formula, vc_formula)
    frame = tr.data
    texts = [tr.design_formula, *tr.vc_formulas.values(), *(t.lhs for t in tr.group_terms)]
    columns = _columns_used(texts, frame)
    columns += [c for c in tr.main_grouping if c not in columns]
    frame = _drop_missing(frame, columns, missing)
    design = build_design(tr.design_formula, frame, missing="raise")
    if design.offset is not None:
        # statsmodels' MixedLM takes no offset; the arrays below would leave it out.
        raise FormulaError(
            "mixedlm takes no offset (statsmodels' MixedLM has none): fit the model with "
            "mixedmodels.lmer(formula, data, offset=...) or offset(...) in its formula"
        )
    keep, exog_names = _fixed_columns(design)

    if len(tr.main_grouping) == 1:
        group_values = frame[tr.main_grouping[0]].to_numpy()
        codes, labels = group_coding(group_values)
    else:
        codes, levels = group_codes(frame, tr.main_grouping)
        labels = list(levels)
        group_values = np.asarray(levels)[codes]
    re_blocks = [_evaluate(t.lhs, frame, "the groups' random effects") for t in tr.group_terms]
    re_names = [
        tr.group_label if name == "Intercept" else name
        for block in re_blocks
        for name in block.columns
    ]
    extra = []
    for k, term in enumerate(design.terms):
        formulaic_names = [str(c) for c in design.term_specs[k].column_names]
        labels_k = [
            term.group_name if c == "Intercept" else f"{c}|{term.group_name}"
            for c in formulaic_names
        ]
        extra.append(ExtraTerm(term, labels_k))
    zeros: list[tuple[int, int]] = []
    if re_blocks:
        bounds = np.cumsum([0] + [b.shape[1] for b in re_blocks])
        block_of = np.repeat(np.arange(len(re_blocks)), np.diff(bounds))
        zeros = [
            (i, j) for i in range(int(bounds[-1])) for j in range(i) if block_of[i] != block_of[j]
        ]
    exog_re = np.hstack([np.asarray(b, dtype=np.float64) for b in re_blocks]) if re_blocks else None
    if exog_re is not None and not np.isfinite(exog_re).all():
        raise DataError("the groups' random-effects columns have missing or infinite values")
    components = [
        _component(name, text, frame, codes, len(labels)) for name, text in tr.vc_formulas.items()
    ]
    grouped = GroupedData(
        endog=design.y,
        exog=design.x,
        endog_name=str(design.response_name),
        exog_names=exog_names,
        groups=group_values,
        group_labels=labels,
        group_codes=codes,
        exog_re=exog_re,
        exog_re_names=re_names,
        vc=components,
        extra=extra,
        re_structural_zeros=zeros,
        row_labels=design.row_index if design.row_index is not None else frame.index,
    )
    return FormulaModel(grouped, tr, design, keep, frame)
