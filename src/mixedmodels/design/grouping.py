"""Grouping factors and the random-effects terms built on them.

A grouping factor is coded as integer level codes with level labels sorted as
R sorts a factor's levels (a categorical column keeps its category order),
each label the canonical text of its value (:mod:`.levels`: 308 and 308.0 are
one level, ``"308"``, as in R); an
interaction ``a:b`` has the combinations that occur as levels, the first
factor varying fastest, as R's ``interaction()``.  The terms are put in lme4's
order and checked as lme4 checks them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engine.terms import RandomEffectsTerm
from ..errors import DataError
from ..formula import ParsedFormula, random_term_to_lme4
from .checks import check_grouping_factors, check_random_effects_size
from .frame import ModelFrame, UsedRows
from .levels import TakenCategories, factor_codes
from .matrices import TermMatrix

__all__ = ["combine_factors", "group_codes", "random_effects_terms"]


def _factor_codes(
    values: pd.Series, dtype: Any = None, taken: TakenCategories | None = None
) -> tuple[np.ndarray, pd.Index]:
    """Codes (−1 for missing) and canonical labels of one factor (see :mod:`.levels`)."""
    codes, levels = factor_codes(values, dtype, taken)
    return codes, levels.labels


# Rows up to which an interaction's combinations are found by sorting every row.
_SORT_ROWS = 10_000


def combine_factors(columns: list[pd.Series], n: int) -> tuple[np.ndarray, pd.Index]:
    """Codes and labels of the grouping factor made of ``columns`` (``n`` rows each).

    Levels are sorted as R sorts a factor's levels; for an interaction the
    first factor varies fastest, as in R's ``interaction()``, and only the
    combinations that occur are kept.
    """
    return _combined([_factor_codes(column) for column in columns], columns, n)


def _combined(
    per_factor: list[tuple[np.ndarray, pd.Index]], columns: list[pd.Series], n: int
) -> tuple[np.ndarray, pd.Index]:
    """:func:`combine_factors` from each column's codes and labels."""
    if len(per_factor) == 1:
        codes, labels = per_factor[0]
        return codes.astype(np.int32), labels
    # The last factor is the most significant digit, so sorted keys put the
    # first factor fastest-varying, as R's interaction() orders its levels.
    key = np.zeros(n, dtype=np.int64)
    for codes, labels in reversed(per_factor):
        key = key * len(labels) + codes
    if n <= _SORT_ROWS:
        # Few rows: numpy's sort costs less than pandas' hashing call.
        unique_keys, combined = np.unique(key, return_inverse=True)
    else:
        # Hashing then sorting only the distinct keys: np.unique would sort all n.
        combined, unique_keys = pd.factorize(key, sort=True)
    # The labels joined in Python: there are as many as levels, and pandas'
    # text methods cost more per call than joining a few hundred strings.
    parts = []
    rest = unique_keys
    for _codes, labels in per_factor:
        texts = labels.tolist()
        parts.append([texts[k] for k in (rest % len(texts)).tolist()])
        rest = rest // len(texts)
    joined = [":".join(combination) for combination in zip(*parts, strict=True)]
    if len(set(joined)) < len(joined):
        # Levels holding ":" can join into the same label ("a:b" + "c" and
        # "a" + "b:c"): new rows could not be told apart by their labels.
        seen: set[str] = set()
        clash = next(label for label in joined if label in seen or seen.add(label))
        raise DataError(
            f"two combinations of the grouping factors "
            f"{', '.join(repr(str(c.name)) for c in columns)} are both labelled {clash!r}: "
            "a level contains ':'; replace ':' in their levels"
        )
    return combined.astype(np.int32), pd.Index(joined, dtype=object)


def group_codes(frame: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and labels of a (possibly interacted) grouping factor of ``frame``.

    See :func:`combine_factors`.
    """
    return combine_factors([frame[name] for name in group], len(frame))


def random_effects_terms(
    parsed: ParsedFormula,
    frame: ModelFrame,
    rows: UsedRows,
    matrices: list[TermMatrix],
    *,
    allow_n: bool = False,
) -> tuple[list[RandomEffectsTerm], list[int]]:
    """The random-effects terms on the rows used, in lme4's order, checked.

    Parameters
    ----------
    parsed : ParsedFormula
        The formula.
    frame : ModelFrame
        The data.
    rows : UsedRows
        The rows used.
    matrices : list of TermMatrix
        Each term's Z, in formula order.
    allow_n : bool, default False
        Allow as many levels (and effects) as observations (lme4's ``allow.n``).

    Returns
    -------
    terms : list of RandomEffectsTerm
        lme4's order: grouping factors with more levels first (stable).
    order : list of int
        For each term, its position in the formula.

    Raises
    ------
    DataError
        lme4's checks: a grouping factor with one level or with as many levels
        as observations, more random effects than observations.
    """
    terms = []
    # lme4's checks below pass in the usual case, told from each term's size.
    usual = True
    margin = 0 if allow_n else 1
    # Each column coded once: nested terms share their outer factor ((1 | a/b)).
    coded: dict[str, tuple[pd.Series, tuple[np.ndarray, pd.Index]]] = {}
    for spec, matrix in zip(parsed.random, matrices, strict=True):
        for name in spec.group:
            if name not in coded:
                column = frame.columns[name]
                taken = frame.taken.get(name)  # on every row
                if rows.selection is not None:
                    column = column[rows.selection]
                    taken = None
                codes, levels = factor_codes(column, frame.dtype(name), taken)
                coded[name] = (column, (codes, levels.labels))
        if len(spec.group) == 1:  # one factor (most terms): its codes as they are
            codes, levels = coded[spec.group[0]][1]
            codes = codes.astype(np.int32)
        else:
            codes, levels = _combined(
                [coded[name][1] for name in spec.group],
                [coded[name][0] for name in spec.group],
                rows.n,
            )
        n_levels = len(levels)
        usual = (
            usual
            and 2 <= n_levels <= rows.n - margin
            and len(matrix.names) * n_levels + margin <= rows.n
        )
        terms.append(
            RandomEffectsTerm(
                group_name=spec.name,
                codes=codes,
                levels=levels,
                z=matrix.z,
                column_names=matrix.names,
            )
        )
    if len(terms) == 1:
        order = [0]  # one term (most models): nothing to sort
    else:
        n_levels = [len(term.levels) for term in terms]  # term.n_levels, read once
        order = sorted(range(len(terms)), key=lambda i: -n_levels[i])
        terms = [terms[i] for i in order]
    if not usual:  # the checks, for their messages
        check_grouping_factors(terms, rows.n, allow_n=allow_n)
        labels = [random_term_to_lme4(parsed.random[i]) for i in order]
        check_random_effects_size(terms, rows.n, labels, allow_n=allow_n)
    return terms, order
