"""R's factors in a formula: ``factor()``, ``relevel()``, ``interaction()``, ``cut()``, ``C()``.

Each function returns formulaic :class:`~formulaic.materializers.types.FactorValues`
marked categorical, holding a pandas categorical of *R's level labels*
(``as.character`` of the values: ``"2"`` for 2 or 2.0, ``"TRUE"`` for a
logical) and an encoder that codes it with R's contrasts
(:mod:`.contrasts`).  The encoder does what R's ``model.frame`` and
``model.matrix`` do and formulaic does not:

* a value that is not a level (``factor(x, levels = c("a", "b"))`` applied to
  ``"c"``) is missing, so its row is NaN in the model matrix and dropped as
  R drops rows with missing values;
* levels that no row used by the fit takes are dropped
  (``drop.unused.levels``): the rows used come from the evaluation context
  under :data:`ROWS_USED`;
* the levels are stored in the model spec, so new data are coded alike, and a
  value the fit never saw is refused by name.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from formulaic.materializers.types import FactorValues
from formulaic.transforms.contrasts import Contrasts, DiffContrasts
from formulaic.utils.stateful_transforms import stateful_transform

from ..errors import DataError
from .contrasts import HelmertContrasts, PolyContrasts, SumContrasts, TreatmentContrasts
from .limits import MAX_BASIS_COLUMNS, MAX_DENSE_BYTES
from .rtext import r_level

__all__ = [
    "CONTRAST_CONSTRUCTORS",
    "ROWS_USED",
    "C",
    "as_labels",
    "categorical_of",
    "check_dense_size",
    "cut",
    "factor_values",
    "interaction",
    "is_factor",
    "logical",
    "logical_factor",
    "relevel",
]

#: Key of the evaluation context holding the rows a fit uses (a boolean mask
#: over the rows evaluated); absent when new data are coded with a fit's spec.
ROWS_USED = "__mixedmodels_rows_used__"


# ---------------------------------------------------------------------------
# Values → R's level labels
# ---------------------------------------------------------------------------


def categorical_of(values: Any, categories: list[str], ordered: bool = False) -> pd.Categorical:
    """A categorical of ``values`` over ``categories``; any other value is missing."""
    text = np.asarray(values, dtype=object)
    known = pd.Index(categories).get_indexer(text)
    return pd.Categorical.from_codes(known, categories=categories, ordered=ordered)


def is_factor(values: Any) -> bool:
    """Whether ``values`` are a factor made by this module."""
    metadata = getattr(values, "__formulaic_metadata__", None)
    return metadata is not None and getattr(metadata.kind, "value", None) == "categorical"


def _unwrap(values: Any) -> Any:
    return values.__wrapped__ if isinstance(values, FactorValues) else values


def as_labels(values: Any) -> pd.Categorical:
    """``values`` as a categorical of R's level labels, levels in R's order.

    A categorical keeps its categories' order (and whether it is ordered);
    numbers are sorted by value, logicals FALSE before TRUE, text in byte
    order (as the rest of the package sorts a factor's levels).  Missing
    values stay missing.
    """
    raw = _unwrap(values)
    if isinstance(raw, pd.Series):
        raw = raw.array
    if isinstance(raw, pd.Categorical):
        labels = [r_level(level) for level in raw.categories]
        if len(set(labels)) < len(labels):
            raw = np.asarray(raw, dtype=object)  # two categories print alike: merge them
        else:
            return pd.Categorical.from_codes(raw.codes, categories=labels, ordered=raw.ordered)
    array = np.asarray(raw)
    if array.ndim != 1:
        array = array.reshape(len(array), -1)[:, 0] if array.ndim else array.reshape(1)
    if (
        array.dtype == object
        and len(array)
        and all(isinstance(v, (bool, np.bool_)) or v is None or v is pd.NA for v in array)
    ):
        array = pd.array(array, dtype="boolean")
    present = ~pd.isna(array)
    if isinstance(array, pd.arrays.BooleanArray) or np.asarray(array).dtype == bool:
        order = [False, True]
    else:
        distinct = pd.unique(np.asarray(array, dtype=object)[np.asarray(present)])
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in distinct)
        order = sorted(distinct) if numeric else sorted(distinct, key=str)
    labels = {value: r_level(value) for value in order}
    seen = set(np.asarray(array, dtype=object)[np.asarray(present)])
    categories = list(dict.fromkeys(labels[v] for v in order if v in seen))
    text = np.array(
        [labels.get(v, r_level(v)) if ok else None for v, ok in zip(array, present, strict=True)],
        dtype=object,
    )
    return pd.Categorical(text, categories=categories)


def logical_factor(values: Any) -> pd.Categorical:
    """A logical as R's factor with levels FALSE and TRUE."""
    logical = pd.array(np.asarray(_unwrap(values), dtype=object), dtype="boolean")
    text = np.where(logical.isna(), None, np.where(logical.fillna(False), "TRUE", "FALSE"))
    return pd.Categorical(text, categories=["FALSE", "TRUE"])


# ---------------------------------------------------------------------------
# The encoder: R's coding of a factor in the model matrix
# ---------------------------------------------------------------------------


def factor_values(
    labels: pd.Categorical,
    contrasts: Any,
    rows_used: np.ndarray | None,
    *,
    drop_unused: bool = True,
) -> FactorValues:
    """``labels`` as formulaic factor values coded by :func:`_encode`.

    ``drop_unused=False`` keeps every level even if no row used takes it, as
    R keeps FALSE and TRUE of a logical.
    """
    if isinstance(contrasts, type) and issubclass(contrasts, Contrasts):
        contrasts = contrasts()
    encoder = functools.partial(
        _encode,
        contrasts=contrasts,
        ordered=bool(labels.ordered),
        rows_used=None if not drop_unused else rows_used,
    )
    return FactorValues(
        pd.Series(labels), kind="categorical", spans_intercept=True, encoder=encoder
    )


def _encode(
    values: Any,
    reduced_rank: bool,
    drop_rows: Sequence[int],
    encoder_state: dict[str, Any],
    model_spec: Any,
    *,
    contrasts: Contrasts | None,
    ordered: bool,
    rows_used: np.ndarray | None,
) -> FactorValues:
    """Code a factor's labels by ``contrasts``, missing values as NaN rows.

    Without contrasts, R's default: polynomial for an ordered factor,
    treatment otherwise, decided on the fit's data and kept in the state (new
    rows given as plain text are coded as the fit's rows were).
    """
    if contrasts is None:
        ordered = encoder_state.setdefault("ordered", ordered)
        contrasts = PolyContrasts() if ordered else TreatmentContrasts()
    series = pd.Series(_unwrap(values)).reset_index(drop=True)
    if drop_rows:
        series = series.drop(index=list(drop_rows)).reset_index(drop=True)
    categorical = series.array
    if not isinstance(categorical, pd.Categorical):
        categorical = as_labels(series)
    levels = encoder_state.get("categories")
    if levels is None:
        # Fitting: the levels that the rows used take, in the factor's order.
        codes = categorical.codes
        present = np.ones(len(categorical.categories), dtype=bool)
        if rows_used is not None and len(rows_used) == len(codes):
            codes = codes[rows_used]
            present = np.bincount(codes[codes >= 0], minlength=len(present)) > 0
        levels = [str(c) for c, p in zip(categorical.categories, present, strict=True) if p]
        encoder_state["categories"] = levels
        values_now = categorical_of(categorical, levels)
        if rows_used is not None and len(rows_used) == len(values_now):
            values_now = values_now.copy()
            values_now[~rows_used] = np.nan
    else:
        text = np.asarray(categorical, dtype=object)
        values_now = categorical_of(text, levels)
        unknown = (values_now.codes < 0) & ~pd.isna(text)
        if unknown.any():
            raise DataError(
                f"a factor of the formula has level {text[np.flatnonzero(unknown)[0]]!r}, "
                f"which the model was not fitted with (its levels: "
                f"{', '.join(map(repr, levels[:10]))}{', ...' if len(levels) > 10 else ''})"
            )
    check_dense_size(len(values_now), len(levels), "a factor")
    missing = values_now.codes < 0
    codes = np.where(missing, 0, values_now.codes)
    if getattr(model_spec, "output", None) == "sparse":
        # One stored entry per row; a missing row holds NaN in the first column.
        import scipy.sparse as sp

        rows = np.arange(len(codes))
        data = np.where(missing, np.nan, 1.0)
        dummies = sp.csc_matrix((data, (rows, codes)), shape=(len(codes), max(len(levels), 1)))
        return contrasts.apply(dummies, levels=levels, reduced_rank=reduced_rank, output="sparse")
    dummies = pd.DataFrame(
        np.eye(len(levels))[codes] if levels else np.zeros((len(codes), 0)), columns=levels
    )
    encoded = contrasts.apply(dummies, levels=levels, reduced_rank=reduced_rank, output="pandas")
    if missing.any():
        frame = encoded.__wrapped__.astype(np.float64)
        frame.loc[missing, :] = np.nan
        encoded = FactorValues(frame, metadata=encoded.__formulaic_metadata__)
    return encoded


def check_dense_size(n_rows: int, n_levels: int, what: str) -> None:
    """Refuse coding a factor whose indicator columns would exceed MAX_DENSE_BYTES."""
    if n_rows * n_levels * 8 > MAX_DENSE_BYTES:
        raise ValueError(
            f"{what} has {n_levels} levels over {n_rows} rows: its columns would take "
            f"{n_rows * n_levels * 8 / 2**30:.0f} GiB; a factor with that many levels "
            "belongs in a random-effects term such as (1 | id)"
        )


def _rows_used(context: Mapping[str, Any] | None) -> np.ndarray | None:
    if context is None:
        return None
    return context.get(ROWS_USED)


# ---------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------


@stateful_transform
def C(
    data: Any,
    contrasts: Any = None,
    *,
    levels: Sequence[Any] | None = None,
    labels: Sequence[Any] | None = None,
    ordered: bool | None = None,
    _context: Mapping[str, Any] | None = None,
) -> FactorValues:
    """R's ``factor(x, levels, labels, ordered)`` and ``C(f, contr)``: ``data`` as a factor.

    Values outside ``levels`` become missing.  ``labels`` renames the levels
    (one label per level, or one label for all, as R).
    """
    factor = as_labels(data)
    ordered_now = factor.ordered if ordered is None else bool(ordered)
    if levels is not None:
        wanted = [r_level(level) for level in levels]
        factor = categorical_of(factor, list(dict.fromkeys(wanted)))
    if labels is not None:
        names = [str(label) for label in labels]
        if len(names) == 1 and len(factor.categories) > 1:
            names = [f"{names[0]}{i}" for i in range(1, len(factor.categories) + 1)]
        if len(names) != len(factor.categories):
            raise ValueError(f"labels has {len(names)} values for {len(factor.categories)} levels")
        mapping = dict(zip(factor.categories, names, strict=True))
        text = np.array([mapping.get(v) if isinstance(v, str) else None for v in factor], object)
        factor = pd.Categorical(text, categories=list(dict.fromkeys(names)))
    if ordered_now != factor.ordered:
        factor = factor.as_ordered() if ordered_now else factor.as_unordered()
    return factor_values(factor, contrasts, _rows_used(_context))


@stateful_transform
def logical(
    data: Any, contrasts: Any = None, *, _context: Mapping[str, Any] | None = None
) -> FactorValues:
    """A logical column as R codes it: a factor with levels FALSE and TRUE, both kept."""
    return factor_values(logical_factor(data), contrasts, _rows_used(_context), drop_unused=False)


@stateful_transform
def relevel(data: Any, ref: Any, *, _context: Mapping[str, Any] | None = None) -> FactorValues:
    """R's ``relevel(f, ref)``: the level ``ref`` (a label, or a position from 1) first.

    As in R, ``f`` must be a factor (text counts as one here): numbers are
    refused, since ``ref = 2`` could then mean the value 2 or the second level.
    """
    raw = _unwrap(data)
    if not is_factor(data) and np.asarray(raw).dtype.kind in "iufb":
        raise ValueError("relevel() needs a factor; write relevel(factor(x), ref = ...)")
    factor = as_labels(data)
    if factor.ordered:
        raise ValueError("relevel() only applies to unordered factors")
    categories = list(factor.categories)
    if isinstance(ref, str):
        if ref not in categories:
            raise ValueError(
                f"ref = {ref!r} is not a level (levels: {', '.join(map(repr, categories[:10]))}"
                f"{', ...' if len(categories) > 10 else ''})"
            )
        first = ref
    else:
        position = float(ref)
        if not position.is_integer() or not 1 <= position <= len(categories):
            raise ValueError(f"ref = {ref!r} is not a level position (1 to {len(categories)})")
        first = categories[int(position) - 1]
    order = [first, *(c for c in categories if c != first)]
    return factor_values(factor.reorder_categories(order), None, _rows_used(_context))


@stateful_transform
def interaction(
    *factors: Any, sep: str = ".", _context: Mapping[str, Any] | None = None
) -> FactorValues:
    """R's ``interaction(a, b, ...)``: one level per combination, the first factor fastest.

    Labels are joined by ``sep`` (``"a.x"``); combinations no row takes are
    levels too (R's ``drop = FALSE``) until the fit drops unused levels.
    """
    parts = [as_labels(f) for f in factors]
    if np.prod([float(len(p.categories)) for p in parts]) > 2.0**62:
        raise ValueError("the interaction has more combinations of levels than can be numbered")
    codes = np.zeros(len(parts[0]), dtype=np.int64)
    missing = np.zeros(len(parts[0]), dtype=bool)
    stride = 1
    for part in parts:
        codes = codes + part.codes.astype(np.int64) * stride
        missing |= part.codes < 0
        stride *= len(part.categories)
    # Only the combinations that occur become categories here (R keeps the
    # others, but the fit drops unused levels and new data cannot add any).
    used = np.unique(codes[~missing])
    names = []
    for code in used:
        pieces, rest = [], int(code)
        for part in parts:
            rest, position = divmod(rest, len(part.categories))
            pieces.append(str(part.categories[position]))
        names.append(sep.join(pieces))
    text = np.full(len(codes), None, dtype=object)
    text[~missing] = np.asarray(names, dtype=object)[np.searchsorted(used, codes[~missing])]
    categorical = pd.Categorical(text, categories=names)
    return factor_values(categorical, None, _rows_used(_context))


def _format_breaks(breaks: np.ndarray, digits: int) -> list[str]:
    """R's ``formatC(breaks, digits = d, width = 1)``, digits raised until the breaks differ."""
    for d in range(digits, max(12, digits) + 1):
        text = [f"{b:.{d}g}" for b in breaks]
        if all(a != b for a, b in itertools.pairwise(text)):
            return text
    return [f"{b:.12g}" for b in breaks]


@stateful_transform
def cut(
    data: Any,
    breaks: Any,
    labels: Any = None,
    include_lowest: bool = False,
    right: bool = True,
    dig_lab: int = 3,
    ordered_result: bool = False,
    _state: dict | None = None,
    _context: Mapping[str, Any] | None = None,
) -> Any:
    """R's ``cut(x, breaks)``: the interval each value falls in, as a factor.

    ``breaks`` is the cut points, or their number: then ``breaks`` intervals of
    equal width over the range of ``x`` (extended by 0.1 % each side, as R),
    computed on the fit's data and kept for new data.  ``labels = FALSE``
    gives the interval numbers instead of a factor.
    """
    state = {} if _state is None else _state
    x = np.asarray(_unwrap(data), dtype=np.float64).ravel()
    if "breaks" not in state:
        if np.ndim(breaks) == 0:
            k = int(breaks)
            if k < 2 or k > MAX_BASIS_COLUMNS:
                raise ValueError(
                    f"the number of intervals must be between 2 and {MAX_BASIS_COLUMNS}"
                )
            finite = x[np.isfinite(x)]
            if finite.size == 0:
                raise ValueError("x has no finite values to cut")
            low, high = float(finite.min()), float(finite.max())
            if high == low:
                width = abs(low) if low != 0 else 1.0
                edges = np.linspace(low - width / 1000, high + width / 1000, k + 1)
            else:
                edges = np.linspace(low, high, k + 1)
                edges[0] -= (high - low) / 1000
                edges[-1] += (high - low) / 1000
        else:
            edges = np.sort(np.asarray(breaks, dtype=np.float64))
            if len(np.unique(edges)) != len(edges):
                raise ValueError("the breaks are not unique")
            if len(edges) < 2:
                raise ValueError("cut() needs at least two breaks")
        state["breaks"] = [float(b) for b in edges]
    edges = np.asarray(state["breaks"], dtype=np.float64)
    n_intervals = len(edges) - 1
    # The interval of each value: (a, b] when right, [a, b) otherwise.
    if right:
        codes = np.searchsorted(edges, x, side="left") - 1
        if include_lowest:
            codes = np.where(x == edges[0], 0, codes)
    else:
        codes = np.searchsorted(edges, x, side="right") - 1
        if include_lowest:
            codes = np.where(x == edges[-1], n_intervals - 1, codes)
    outside = ~np.isfinite(x) | (codes < 0) | (codes >= n_intervals)
    if labels is False:
        return np.where(outside, np.nan, codes + 1.0)
    if labels is None:
        text = _format_breaks(edges, int(dig_lab))
        open_, close = ("(", "]") if right else ("[", ")")
        names = [f"{open_}{a},{b}{close}" for a, b in itertools.pairwise(text)]
        if include_lowest:
            if right:
                names[0] = "[" + names[0][1:]
            else:
                names[-1] = names[-1][:-1] + "]"
    else:
        names = [str(label) for label in labels]
        if len(names) != n_intervals:
            raise ValueError(f"labels has {len(names)} values for {n_intervals} intervals")
    categorical = pd.Categorical.from_codes(
        np.where(outside, -1, codes), categories=names, ordered=bool(ordered_result)
    )
    return factor_values(categorical, None, _rows_used(_context))


# ---------------------------------------------------------------------------
# Contrasts as the formula names them
# ---------------------------------------------------------------------------


def _treatment(reference: Any = None, base: Any = None) -> TreatmentContrasts:
    return TreatmentContrasts(base=reference if reference is not None else base)


#: The contrast constructors translated formulas call (patsy's names).
CONTRAST_CONSTRUCTORS = {
    "Treatment": _treatment,
    "SAS": functools.partial(TreatmentContrasts, last=True),
    "Sum": SumContrasts,
    "Helmert": HelmertContrasts,
    "Poly": PolyContrasts,
    "Diff": DiffContrasts,
}
