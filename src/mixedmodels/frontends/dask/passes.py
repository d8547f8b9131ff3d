"""What each partition of a Dask fit computes, and how partial results are summed.

Three passes over the partitions, each a map and a tree reduction:

1. **Scan** (:func:`scan_partition`): the values the factor columns take,
   the combinations the grouping factors take, row and missing-value counts
   and one complete row; merged, the global level sets, which fix the
   contrasts of X and the codes of every term.
2. **XᵀX and Xᵀy** (:func:`partition_gram`), for the rank check and the
   least-squares β₀ whose residuals y − Xβ₀ the blocks hold.
3. **Blocks** (:func:`partition_blocks`): the cross-products of stage 2 on
   the partition's rows, with the global numbers of levels.

A :class:`Plan`, made once on the driver, tells every partition how to build
its rows' share of the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...design import group_codes
from ...design.checks import check_finite, check_weights, weights_array
from ...design.columns import is_numeric_column, predictor_column
from ...design.evaluation import evaluation_frame
from ...design.levels import Levels, factor_codes, level_labels
from ...engine.blocks import CrossProducts
from ...engine.blocks import cross_products as _cross_products
from ...errors import DataError
from ...formula import TRANSFORMS, ParsedFormula, RandomTermSpec

# Partial results merged per task of the tree reductions.
SPLIT_EVERY = 8


# -- level sets -----------------------------------------------------------------------


def lookup(levels: Levels, values: pd.Series) -> np.ndarray:
    """Position of each value among ``levels`` by canonical text (−1 where absent or missing)."""
    return levels.codes(values)


def ordered_levels(values: pd.Series) -> Levels:
    """The distinct values of a column as levels, in the order the in-memory path gives them.

    A categorical column keeps its categories' order (those that occur), any
    other column is sorted; values with the same canonical text are one level
    (:mod:`mixedmodels.design.levels`).
    """
    return factor_codes(values)[1]


@dataclass
class GroupLevels:
    """The levels of one grouping factor (one column, or an interaction ``a:b``)."""

    columns: tuple[str, ...]
    factor_levels: list[Levels]
    labels: pd.Index
    # Sorted combined keys of the combinations that occur (interactions only).
    keys: np.ndarray | None = None

    @classmethod
    def from_combinations(cls, columns: tuple[str, ...], combos: pd.DataFrame) -> GroupLevels:
        # The in-memory coder, run on the distinct combinations, names the
        # levels exactly as it would on all rows.
        _, labels = group_codes(combos, columns)
        factor_levels = [ordered_levels(combos[c]) for c in columns]
        keys = None
        if len(columns) > 1:
            keys = np.unique(combined_key(factor_levels, combos, columns))
            if len(keys) != len(labels):
                raise DataError(f"could not code the grouping factor {':'.join(columns)!r}")
        return cls(columns, factor_levels, labels, keys)

    @property
    def n_levels(self) -> int:
        return len(self.factor_levels[0]) if self.keys is None else len(self.keys)

    def for_workers(self) -> GroupLevels:
        """A copy without the labels, which only the driver reads."""
        return dataclasses.replace(self, labels=pd.Index([]))

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Level code of each row (−1 for a level not among these)."""
        if self.keys is None:
            return lookup(self.factor_levels[0], frame[self.columns[0]]).astype(np.int32)
        key = combined_key(self.factor_levels, frame, self.columns)
        pos = np.searchsorted(self.keys, key)
        pos = np.minimum(pos, len(self.keys) - 1)
        found = (self.keys[pos] == key) & (key >= 0)
        return np.where(found, pos, -1).astype(np.int32)


def combined_key(levels: list[Levels], frame: pd.DataFrame, columns: Sequence[str]):
    """One int64 per row for a combination; the last factor is the most significant
    digit, as :func:`~mixedmodels.design.group_codes` orders interactions. −1 if any
    factor's value is unknown."""
    key = np.zeros(len(frame), dtype=np.int64)
    unknown = np.zeros(len(frame), dtype=bool)
    for name, lev in reversed(list(zip(columns, levels, strict=True))):
        codes = lookup(lev, frame[name])
        unknown |= codes < 0
        key = key * len(lev) + codes
    return np.where(unknown, -1, key)


# -- pass 1: the scan -----------------------------------------------------------------


@dataclass
class Scan:
    """What one pass over (some of) the partitions learned."""

    n_rows: int
    n_bad: int
    na_counts: dict[str, int]
    combos: dict[tuple[str, ...], pd.DataFrame]
    sample: pd.DataFrame


def complete_rows(
    frame: pd.DataFrame, columns: list[str], weights: str | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with every used column present (and a weight), as the in-memory path."""
    bad = frame[columns].isna().any(axis=1).to_numpy().copy()
    if weights is not None:
        bad |= np.isnan(weights_array(weights, frame))
    return frame.loc[~bad], bad


def check_values(frame: pd.DataFrame, read: Sequence[str], factors: Sequence[str]) -> None:
    """The in-memory reader's refusals (:mod:`mixedmodels.design.columns`) on a partition.

    ``read`` are the columns the matrices read; ``factors`` those of them whose
    dtype made them factors when the fit was planned.  A column whose dtype
    says text but that holds numbers (Decimals in an object column) would be
    read as numbers in memory: it is refused, as partitions must all read it
    alike.
    """
    for name in read:
        given = frame[name]
        if not (isinstance(given.dtype, np.dtype) and given.dtype.kind == "O"):
            continue  # decided by the dtype, checked once on the driver
        column = predictor_column(name, given)
        if name in factors and is_numeric_column(column) and column.notna().any():
            raise DataError(
                f"column {name!r} has dtype {given.dtype} but holds numbers "
                f"({type(given.dropna().iloc[0]).__name__}); give it a numeric dtype "
                f"(ddf[{name!r}] = ddf[{name!r}].astype(float)) so that it is read as numbers, "
                "or text (.astype(str)) for a factor"
            )


def scan_partition(
    frame: pd.DataFrame,
    columns: list[str],
    level_sets: list[tuple[str, ...]],
    weights: str | None,
    read: Sequence[str] = (),
    factors: Sequence[str] = (),
) -> Scan:
    check_values(frame, read, factors)
    complete, bad = complete_rows(frame, columns, weights)
    if weights is not None:
        # As in memory: infinite, negative or zero weights of rows used are refused.
        check_weights(weights_array(weights, complete), complete.index)
    combos = {cols: complete[list(cols)].drop_duplicates() for cols in level_sets}
    return Scan(
        n_rows=len(frame),
        n_bad=int(bad.sum()),
        na_counts={c: int(n) for c, n in frame[columns].isna().sum().items()},
        combos=combos,
        sample=complete.iloc[:1],
    )


def merge_scans(*scans: Scan) -> Scan:
    first = scans[0]
    return Scan(
        n_rows=sum(s.n_rows for s in scans),
        n_bad=sum(s.n_bad for s in scans),
        na_counts={c: sum(s.na_counts[c] for s in scans) for c in first.na_counts},
        combos={
            key: pd.concat([s.combos[key] for s in scans], ignore_index=True).drop_duplicates()
            for key in first.combos
        },
        sample=next((s.sample for s in scans if len(s.sample)), first.sample),
    )


# -- the plan every partition follows -----------------------------------------------


@dataclass
class Plan:
    """What a partition needs to build its rows' share of the model (shipped to workers)."""

    parsed: ParsedFormula
    columns: list[str]
    weights: str | None
    # Factor columns of X and Z → their global levels; ``convert`` lists the
    # ones made pandas Categoricals (the others are numbers inside C()).
    factor_levels: dict[str, Levels]
    convert: list[str]
    fixed_specs: Any
    term_specs: list[Any]
    groups: list[GroupLevels]
    # Columns a prediction reads (no response, no weights).
    predictors: list[str] = field(default_factory=list)
    # Columns the matrices read (the response's, the fixed part's, the terms'
    # left-hand sides'), checked as in memory.
    matrix_columns: list[str] = field(default_factory=list)
    # The random-effects terms in the engine's order (as ``groups``).
    random_specs: list[RandomTermSpec] = field(default_factory=list)
    # Columns of X kept after the rank check, and β₀ of the y − Xβ₀ the blocks
    # hold (the least-squares fit, as in memory; see CrossProducts.beta_offset).
    keep: list[int] = field(default_factory=list)
    beta_offset: np.ndarray | None = None
    # The offsets (formula terms, or the column named by offset=); None without.
    computed: Any = None

    def offset(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The offset of the rows of ``frame`` (None without one)."""
        if self.computed is None or not self.computed.has_offset:
            return None
        return self.computed.offset(frame)

    @property
    def n_levels(self) -> list[int]:
        return [g.n_levels for g in self.groups]

    def factorize(self, frame: pd.DataFrame, *, strict: bool) -> pd.DataFrame:
        """Give the factor columns their global categories.

        With ``strict`` (new data in ``predict``) the rows are read as the fit
        read its own: a value that is not a known level is an error naming the
        column and the level, a number column must hold numbers, and a
        factor's values are replaced by the fit's own value of their level
        (matched by canonical text: 308.0 is the level 308).  The model's own
        rows always pass.
        """
        frame = frame.copy()
        for name, levels in self.factor_levels.items():
            if name not in frame.columns:
                continue
            codes = lookup(levels, frame[name])
            if strict:
                unseen = (codes < 0) & frame[name].notna().to_numpy()
                if unseen.any():
                    value = frame[name].to_numpy()[np.flatnonzero(unseen)[0]]
                    raise DataError(
                        f"column {name!r} has level {level_labels([value])[0]!r}, which the "
                        f"model was not fitted with (its levels: {levels.shown()})"
                    )
            if name in self.convert:
                frame[name] = pd.Categorical.from_codes(
                    np.maximum(codes, 0) if strict else codes, categories=levels.categories
                )
            elif strict:
                frame[name] = np.asarray(levels.as_fitted(np.maximum(codes, 0)))
        if strict:
            for name in self.numeric_predictors:
                if name in frame.columns and not is_numeric_column(
                    predictor_column(name, frame[name])
                ):
                    raise DataError(
                        f"column {name!r} holds numbers in the data the model was fitted to, "
                        f"but {frame[name].dtype} values in the new data"
                    )
        return frame

    @property
    def numeric_predictors(self) -> list[str]:
        """Columns the fixed part and the terms' left-hand sides read as numbers."""
        group = {c for spec in self.random_specs for c in spec.group}
        return [
            c
            for c in self.predictors
            if c not in self.factor_levels and (c not in group or c in self.matrix_columns)
        ]

    def random_parts(self, frame: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray]]:
        codes = [g.codes(frame) for g in self.groups]
        rows = evaluation_frame(frame, None)
        z = [
            np.asarray(
                spec.get_model_matrix(rows, context=TRANSFORMS, na_action="ignore"),
                dtype=np.float64,
            )
            for spec in self.term_specs
        ]
        return codes, z


def fixed_part(frame: pd.DataFrame, plan: Plan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The complete rows (factors coded), their X (all columns) and y."""
    frame, _ = complete_rows(frame, plan.columns, plan.weights)
    frame = plan.factorize(frame, strict=False)
    mats = plan.fixed_specs.get_model_matrix(
        evaluation_frame(frame, None), context=TRANSFORMS, na_action="ignore"
    )
    y = np.asarray(mats.lhs, dtype=np.float64).ravel()
    x = np.asarray(mats.rhs, dtype=np.float64)
    # As in memory: an infinity in the data or log(0) is refused, naming the row.
    check_finite(y, [plan.parsed.response], "the response", frame.index)
    check_finite(x, list(mats.rhs.columns), "the fixed-effects column", frame.index)
    offset = plan.offset(frame)
    if offset is not None:
        check_finite(offset, ["offset"], "the offset", frame.index)
        y = y - offset  # the model is fitted to y − offset
    return frame, x, y


@dataclass
class Gram:
    """XᵀX and Xᵀy of some rows, and what the in-memory checks need of y and X."""

    xtx: np.ndarray
    xty: np.ndarray
    x_sum: np.ndarray
    n: int
    # Per column of X, whether every value is 0 or 1.
    indicator: np.ndarray
    y_min: float
    y_max: float

    def __add__(self, other: Gram) -> Gram:
        return Gram(
            self.xtx + other.xtx,
            self.xty + other.xty,
            self.x_sum + other.x_sum,
            self.n + other.n,
            self.indicator & other.indicator,
            min(self.y_min, other.y_min),
            max(self.y_max, other.y_max),
        )

    def column_sd(self) -> np.ndarray:
        """Standard deviations of the columns of X (ddof 1), from the sums."""
        mean = self.x_sum / self.n
        var = (np.diagonal(self.xtx) - self.n * mean**2) / max(self.n - 1, 1)
        return np.sqrt(np.maximum(var, 0.0))


def partition_gram(frame: pd.DataFrame, plan: Plan) -> Gram | None:
    """XᵀX and Xᵀy of one partition (unweighted, as the in-memory rank check)."""
    frame, x, y = fixed_part(frame, plan)
    if frame.empty:
        return None
    return Gram(
        xtx=x.T @ x,
        xty=x.T @ y,
        x_sum=x.sum(axis=0),
        n=len(y),
        indicator=((x == 0.0) | (x == 1.0)).all(axis=0),
        y_min=float(y.min()),
        y_max=float(y.max()),
    )


def sum_grams(*parts: Gram | None) -> Gram | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    total = present[0]
    for part in present[1:]:
        total = total + part
    return total


def partition_blocks(frame: pd.DataFrame, plan: Plan) -> CrossProducts | None:
    frame, x, y = fixed_part(frame, plan)
    if frame.empty:
        return None
    codes, z = plan.random_parts(frame)
    for spec, zi in zip(plan.term_specs, z, strict=True):
        check_finite(zi, list(spec.column_names), "the random-effects column", frame.index)
    w = None if plan.weights is None else frame[plan.weights].to_numpy(dtype=np.float64)
    x = x[:, plan.keep]
    return _cross_products(codes, z, plan.n_levels, x, y, w, beta_offset=plan.beta_offset)


def sum_blocks(*parts: CrossProducts | None) -> CrossProducts | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    total = present[0]
    for part in present[1:]:
        total = total + part
    return total


def tree_reduce(items: list, combine: Callable, split_every: int = SPLIT_EVERY):
    """Combine delayed partial results ``split_every`` at a time until one is left."""
    import dask

    if not items:
        raise DataError("the Dask DataFrame has no partitions")
    combine_task = dask.delayed(combine, pure=True)
    while len(items) > 1:
        items = [
            combine_task(*items[i : i + split_every]) for i in range(0, len(items), split_every)
        ]
    return items[0]
