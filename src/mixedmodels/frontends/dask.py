"""The same model on a Dask DataFrame: stage 2 (data → blocks) on the cluster.

Every block of AᵀA is a sum over rows (see :mod:`mixedmodels.blocks`), so a
Dask DataFrame is fitted in passes over its partitions, wherever Dask runs
them (the current ``distributed.Client`` if there is one, otherwise Dask's
default scheduler), each pass's partial results summed in a tree:

1. **Scan.**  Each partition reports the values its factor columns take and
   the combinations its grouping factors take, its row and missing-value
   counts and one complete row.  Merged, these are the global level sets,
   which fix the contrasts of X and the codes of every term.
2. **XᵀX and Xᵀy.**  Each partition builds its X and y with formulaic specs
   made once on the driver from those level sets (so every partition has the
   same columns).  The sums give the rank check (which columns of X to drop)
   and the least-squares β₀ whose residuals y − Xβ₀ the blocks hold, as the
   in-memory engine does.
3. **Blocks.**  Each partition calls :func:`~mixedmodels.blocks.cross_products`
   on its rows with the global numbers of levels, the kept columns and β₀.

The driver then holds only the summed blocks and the level labels: the θ loop
and every result run unchanged, in memory that grows with the numbers of
levels, level pairs and columns, not rows.  Whatever needs rows again
(:attr:`DaskLinearMixedModel.fitted`, ``residuals``, ``predict``) is a lazy
Dask series computed partition by partition.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.linalg

from ..design import RANK_TOLERANCE, Design, _required_columns, group_codes, lme4_column_name
from ..design.checks import check_finite, check_grouping_factors, check_random_effects_size
from ..engine.blocks import CrossProducts
from ..engine.blocks import cross_products as _cross_products
from ..engine.terms import RandomEffectsTerm
from ..errors import DataError, FormulaError, MixedModelsError, RankDeficiencyWarning
from ..formula import TRANSFORMS, ParsedFormula, RandomTermSpec, parse_formula
from ..models.lmm import LinearMixedModel
from ..results.accessors import Summary

__all__ = ["DaskLinearMixedModel", "fit_dask", "is_dask_dataframe"]

_ROWS_NEEDED = (
    "{what} needs the model's rows in memory, which a fit to a Dask DataFrame does not "
    "keep; fit the rows with pandas (mm.lmer(formula, ddf.compute())) if they fit in memory"
)

# Partial results merged per task of the tree reductions.
SPLIT_EVERY = 8
# Up to this many rows the summary's residual quartiles are computed exactly on
# the driver (8 bytes a row); beyond, Dask approximates them.
EXACT_QUANTILE_ROWS = 5_000_000


def is_dask_dataframe(data: Any) -> bool:
    """True for a Dask DataFrame, without importing Dask for anything else."""
    if not type(data).__module__.startswith("dask"):
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)


# -- level sets -----------------------------------------------------------------------


def _lookup(levels: pd.Index, values: pd.Series) -> np.ndarray:
    """Position of each value in ``levels`` (−1 where absent or missing)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # Look the few categories up once instead of every row.
        per_category = levels.get_indexer(values.cat.categories)
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, per_category[codes], -1)
    return levels.get_indexer(values)


def _ordered_levels(values: pd.Series) -> pd.Index:
    """The distinct values of a column in the order the in-memory path gives them.

    A categorical column keeps its categories' order (those that occur), any
    other column is sorted, as ``pd.factorize(sort=True)`` and formulaic do.
    """
    _, uniques = pd.factorize(values, sort=True)
    if isinstance(uniques, (pd.Categorical, pd.CategoricalIndex)):
        # The values that occur, in category order; unused categories go.
        uniques = np.asarray(uniques)
    return pd.Index(uniques)


@dataclass
class _GroupLevels:
    """The levels of one grouping factor (one column, or an interaction ``a:b``)."""

    columns: tuple[str, ...]
    factor_levels: list[pd.Index]
    labels: pd.Index
    # Sorted combined keys of the combinations that occur (interactions only).
    keys: np.ndarray | None = None

    @classmethod
    def from_combinations(cls, columns: tuple[str, ...], combos: pd.DataFrame) -> _GroupLevels:
        # The in-memory coder, run on the distinct combinations, names the
        # levels exactly as it would on all rows.
        _, labels = group_codes(combos, columns)
        factor_levels = [_ordered_levels(combos[c]) for c in columns]
        keys = None
        if len(columns) > 1:
            keys = np.unique(_combined_key(factor_levels, combos, columns))
            if len(keys) != len(labels):
                raise DataError(f"could not code the grouping factor {':'.join(columns)!r}")
        return cls(columns, factor_levels, labels, keys)

    @property
    def n_levels(self) -> int:
        return len(self.factor_levels[0]) if self.keys is None else len(self.keys)

    def for_workers(self) -> _GroupLevels:
        """A copy without the labels, which only the driver reads."""
        return dataclasses.replace(self, labels=pd.Index([]))

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Level code of each row (−1 for a level not among these)."""
        if self.keys is None:
            return _lookup(self.factor_levels[0], frame[self.columns[0]]).astype(np.int32)
        key = _combined_key(self.factor_levels, frame, self.columns)
        pos = np.searchsorted(self.keys, key)
        pos = np.minimum(pos, len(self.keys) - 1)
        found = (self.keys[pos] == key) & (key >= 0)
        return np.where(found, pos, -1).astype(np.int32)


def _combined_key(levels: list[pd.Index], frame: pd.DataFrame, columns: Sequence[str]):
    """One int64 per row for a combination; the last factor is the most significant
    digit, as :func:`~mixedmodels.design.group_codes` orders interactions. −1 if any
    factor's value is unknown."""
    key = np.zeros(len(frame), dtype=np.int64)
    unknown = np.zeros(len(frame), dtype=bool)
    for name, lev in reversed(list(zip(columns, levels, strict=True))):
        codes = _lookup(lev, frame[name])
        unknown |= codes < 0
        key = key * len(lev) + codes
    return np.where(unknown, -1, key)


# -- pass 1: the scan -----------------------------------------------------------------


@dataclass
class _Scan:
    """What one pass over (some of) the partitions learned."""

    n_rows: int
    n_bad: int
    na_counts: dict[str, int]
    combos: dict[tuple[str, ...], pd.DataFrame]
    sample: pd.DataFrame
    min_weight: float = np.inf


def _complete_rows(
    frame: pd.DataFrame, columns: list[str], weights: str | None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with every used column present (and a finite weight), as the in-memory path."""
    bad = frame[columns].isna().any(axis=1).to_numpy().copy()
    if weights is not None:
        bad |= ~np.isfinite(frame[weights].to_numpy(dtype=np.float64, na_value=np.nan))
    return frame.loc[~bad], bad


def _scan_partition(
    frame: pd.DataFrame,
    columns: list[str],
    level_sets: list[tuple[str, ...]],
    weights: str | None,
) -> _Scan:
    complete, bad = _complete_rows(frame, columns, weights)
    combos = {cols: complete[list(cols)].drop_duplicates() for cols in level_sets}
    min_weight = np.inf
    if weights is not None and len(complete):
        min_weight = float(complete[weights].min())
    return _Scan(
        n_rows=len(frame),
        n_bad=int(bad.sum()),
        na_counts={c: int(n) for c, n in frame[columns].isna().sum().items()},
        combos=combos,
        sample=complete.iloc[:1],
        min_weight=min_weight,
    )


def _merge_scans(*scans: _Scan) -> _Scan:
    first = scans[0]
    return _Scan(
        n_rows=sum(s.n_rows for s in scans),
        n_bad=sum(s.n_bad for s in scans),
        na_counts={c: sum(s.na_counts[c] for s in scans) for c in first.na_counts},
        combos={
            key: pd.concat([s.combos[key] for s in scans], ignore_index=True).drop_duplicates()
            for key in first.combos
        },
        sample=next((s.sample for s in scans if len(s.sample)), first.sample),
        min_weight=min(s.min_weight for s in scans),
    )


# -- the plan every partition follows -----------------------------------------------


@dataclass
class _Plan:
    """What a partition needs to build its rows' share of the model (shipped to workers)."""

    parsed: ParsedFormula
    columns: list[str]
    weights: str | None
    # Factor columns of X and Z → their global levels; ``convert`` lists the
    # ones made pandas Categoricals (the others are numbers inside C()).
    factor_levels: dict[str, pd.Index]
    convert: list[str]
    fixed_specs: Any
    term_specs: list[Any]
    groups: list[_GroupLevels]
    # Columns a prediction reads (no response, no weights).
    predictors: list[str] = field(default_factory=list)
    # The random-effects terms in the engine's order (as ``groups``).
    random_specs: list[RandomTermSpec] = field(default_factory=list)
    # Columns of X kept after the rank check, and β₀ of the y − Xβ₀ the blocks
    # hold (the least-squares fit, as in memory; see CrossProducts.beta_offset).
    keep: list[int] = field(default_factory=list)
    beta_offset: np.ndarray | None = None

    @property
    def n_levels(self) -> list[int]:
        return [g.n_levels for g in self.groups]

    def factorize(self, frame: pd.DataFrame, *, strict: bool) -> pd.DataFrame:
        """Give the factor columns their global categories.

        With ``strict``, a value that is not a known level is an error (new data
        in ``predict``); the model's own rows always pass.
        """
        frame = frame.copy()
        for name, levels in self.factor_levels.items():
            if name not in frame.columns:
                continue
            codes = _lookup(levels, frame[name])
            if strict:
                unseen = (codes < 0) & frame[name].notna().to_numpy()
                if unseen.any():
                    value = frame[name].to_numpy()[np.flatnonzero(unseen)[0]]
                    raise DataError(
                        f"column {name!r} has level {value!r}, which the model was not "
                        f"fitted with (its levels: {', '.join(map(str, levels[:10]))}"
                        f"{', ...' if len(levels) > 10 else ''})"
                    )
            if name in self.convert:
                frame[name] = pd.Categorical.from_codes(codes, categories=levels)
        return frame

    def random_parts(self, frame: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray]]:
        codes = [g.codes(frame) for g in self.groups]
        z = [
            np.asarray(
                spec.get_model_matrix(frame, context=TRANSFORMS, na_action="ignore"),
                dtype=np.float64,
            )
            for spec in self.term_specs
        ]
        return codes, z


def _fixed_part(frame: pd.DataFrame, plan: _Plan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The complete rows (factors coded), their X (all columns) and y."""
    frame, _ = _complete_rows(frame, plan.columns, plan.weights)
    frame = plan.factorize(frame, strict=False)
    mats = plan.fixed_specs.get_model_matrix(frame, context=TRANSFORMS, na_action="ignore")
    y = np.asarray(mats.lhs, dtype=np.float64).ravel()
    x = np.asarray(mats.rhs, dtype=np.float64)
    # As in memory: an infinity in the data or log(0) is refused, naming the row.
    check_finite(y, [plan.parsed.response], "the response", frame.index)
    check_finite(x, list(mats.rhs.columns), "the fixed-effects column", frame.index)
    return frame, x, y


def _partition_gram(frame: pd.DataFrame, plan: _Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """XᵀX and Xᵀy of one partition (unweighted, as the in-memory rank check)."""
    frame, x, y = _fixed_part(frame, plan)
    if frame.empty:
        return None
    return x.T @ x, x.T @ y


def _sum_grams(*parts: tuple[np.ndarray, np.ndarray] | None):
    present = [p for p in parts if p is not None]
    if not present:
        return None
    return sum(p[0] for p in present), sum(p[1] for p in present)


def _partition_blocks(frame: pd.DataFrame, plan: _Plan) -> CrossProducts | None:
    frame, x, y = _fixed_part(frame, plan)
    if frame.empty:
        return None
    codes, z = plan.random_parts(frame)
    for spec, zi in zip(plan.term_specs, z, strict=True):
        check_finite(zi, list(spec.column_names), "the random-effects column", frame.index)
    w = None if plan.weights is None else frame[plan.weights].to_numpy(dtype=np.float64)
    x = x[:, plan.keep]
    return _cross_products(codes, z, plan.n_levels, x, y, w, beta_offset=plan.beta_offset)


def _sum_blocks(*parts: CrossProducts | None) -> CrossProducts | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    total = present[0]
    for part in present[1:]:
        total = total + part
    return total


def _tree_reduce(items: list, combine: Callable, split_every: int = SPLIT_EVERY):
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
    pattern = re.compile(rf"\bC\(\s*{re.escape(name)}\s*[,)]")
    return any(pattern.search(s) for s in (parsed.fixed, *(t.lhs for t in parsed.random)))


def _prototype(scan: _Scan, factor_levels: dict[str, pd.Index], columns: list[str]):
    """A small frame holding every level of every factor column, from which formulaic
    learns specs that encode all partitions alike."""
    n = max([1, *(len(lev) for lev in factor_levels.values())])
    proto = {}
    for name in columns:
        if name in factor_levels:
            lev = factor_levels[name]
            values = np.resize(np.arange(len(lev)), n)
            proto[name] = pd.Categorical.from_codes(values, categories=lev)
        else:
            proto[name] = np.repeat(scan.sample[name].to_numpy()[:1], n)
    return pd.DataFrame(proto)


def _spec(formula: str, frame: pd.DataFrame, what: str):
    try:
        with warnings.catch_warnings():
            # The prototype's values are placeholders: what transforms make of
            # them (log(0), a zero variance) says nothing about the data.
            warnings.simplefilter("ignore", RuntimeWarning)
            mats = formulaic.model_matrix(formula, frame, context=TRANSFORMS, na_action="ignore")
    except FormulaError:
        raise
    except Exception as err:
        raise FormulaError(f"cannot evaluate {what} {formula!r}: {err}") from err
    specs = mats.model_spec
    stateful = [
        name
        for spec in (specs if isinstance(specs, formulaic.ModelSpecs) else [specs])
        for name in spec.transform_state
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


def _aliased_from_gram(xtx: np.ndarray, tol: float = RANK_TOLERANCE) -> list[int]:
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


def _check_weights(weights: Any, columns: pd.Index) -> str | None:
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


def _learn_levels(
    parts: list,
    parsed: ParsedFormula,
    columns: list[str],
    dtypes: pd.Series,
    weights: str | None,
    split_every: int,
) -> tuple[_Scan, list[str]]:
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
    scan_task = dask.delayed(_scan_partition, pure=True)
    scans = [scan_task(p, columns, level_sets, weights) for p in parts]
    return dask.compute(_tree_reduce(scans, _merge_scans, split_every))[0], factor_columns


def _make_plan(
    parsed: ParsedFormula,
    columns: list[str],
    weights: str | None,
    scan: _Scan,
    factor_columns: list[str],
    dtypes: pd.Series,
) -> tuple[_Plan, list[pd.Index]]:
    """The specs and level codes every partition uses; also the level labels of the
    terms (engine order), which stay on the driver."""
    factor_levels = {c: _ordered_levels(scan.combos[(c,)][c]) for c in factor_columns}
    proto = _prototype(scan, factor_levels, columns)
    fixed = _spec(f"{parsed.response} ~ {parsed.fixed}", proto, "formula")
    if fixed.lhs.shape[1] != 1:
        raise DataError(
            f"the response {parsed.response!r} must be one numeric column, "
            f"got {fixed.lhs.shape[1]} columns (is it a factor?)"
        )
    groups = [_GroupLevels.from_combinations(t.group, scan.combos[t.group]) for t in parsed.random]
    term_specs = [
        _spec(t.lhs, proto, f"random-effects term ({t.lhs} | {t.name})").model_spec
        for t in parsed.random
    ]
    # lme4's order: grouping factors with more levels first (stable).
    order = sorted(range(len(groups)), key=lambda i: -groups[i].n_levels)
    plan = _Plan(
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
        random_specs=[parsed.random[i] for i in order],
    )
    return plan, [groups[i].labels for i in order]


def _driver_design(
    plan: _Plan,
    labels: list[pd.Index],
    names: list[str],
    dropped: list[str],
    n_obs: int,
    n_dropped: int,
) -> Design:
    """A :class:`Design` with the names and levels results need and no per-row arrays."""
    source = plan.parsed.source
    terms = [
        RandomEffectsTerm(
            group_name=spec.name,
            codes=np.empty(0, dtype=np.int32),
            levels=levels,
            z=np.empty((0, len(term_spec.column_names))),
            column_names=[lme4_column_name(c, source) for c in term_spec.column_names],
        )
        for spec, term_spec, levels in zip(plan.random_specs, plan.term_specs, labels, strict=True)
    ]
    check_grouping_factors(terms, n_obs)
    check_random_effects_size(terms, n_obs)
    return Design(
        formula=plan.parsed,
        y=np.empty(0),
        x=np.empty((0, len(plan.keep))),
        fixed_names=[names[j] for j in plan.keep],
        terms=terms,
        weights=None,
        response_name=plan.parsed.response,
        dropped_columns=dropped,
        n_dropped_missing=n_dropped,
        row_index=None,
        fixed_spec=plan.fixed_specs.rhs,
        term_specs=plan.term_specs,
    )


# -- the model --------------------------------------------------------------------------


class DaskLinearMixedModel(LinearMixedModel):
    """A linear mixed model whose rows stay in a Dask DataFrame.

    The blocks of AᵀA are computed on the cluster; the fit and every result
    that does not need rows are those of :class:`LinearMixedModel`.  ``fitted``,
    ``residuals`` and ``predict`` return lazy Dask series.

    Parameters
    ----------
    formula : str
        lme4 model formula.
    data : dask.dataframe.DataFrame
        The data; never modified (every pass reads it lazily).
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    weights : str, optional
        Name of the column of prior weights.
    missing : {"drop", "raise"}, default "drop"
        Rows with a missing value in a used column are dropped or refused.
    split_every : int, default 8
        Partial results merged per task of the tree reductions.
    """

    def __init__(
        self,
        formula: str,
        data: Any,
        *,
        reml: bool = True,
        weights: str | None = None,
        missing: str = "drop",
        split_every: int = SPLIT_EVERY,
    ) -> None:
        import dask

        if not is_dask_dataframe(data):
            raise DataError(f"data must be a Dask DataFrame, not {type(data).__name__}")
        if missing not in ("drop", "raise"):
            raise ValueError(f"missing must be 'drop' or 'raise', not {missing!r}")
        parsed = parse_formula(formula)
        if not parsed.random:
            raise FormulaError(
                f"no random-effects terms in {formula!r}: add at least one term such as "
                "(1 | group); for a model without random effects use ordinary least squares"
            )
        columns = _required_columns(parsed)
        absent = [c for c in columns if c not in data.columns]
        if absent:
            raise DataError(
                f"column {absent[0]!r} used in the formula is not in the data "
                f"(columns: {', '.join(map(str, data.columns[:20]))})"
            )
        wcol = _check_weights(weights, data.columns)
        read = columns + ([wcol] if wcol is not None and wcol not in columns else [])
        parts = data[read].to_delayed()

        scan, factor_columns = _learn_levels(parts, parsed, columns, data.dtypes, wcol, split_every)
        if scan.n_bad and missing == "raise":
            culprits = [c for c in columns if scan.na_counts[c]]
            raise DataError(
                f"{scan.n_bad} rows have missing values (in {', '.join(map(repr, culprits))}); "
                "drop them or use missing='drop'"
            )
        if scan.n_rows - scan.n_bad == 0:
            raise DataError(
                "no rows left to fit (the data are empty or every row has a missing value)"
            )
        if scan.min_weight < 0:
            raise DataError("weights must be non-negative")
        plan, labels = _make_plan(parsed, columns, wcol, scan, factor_columns, data.dtypes)

        # Pass 2: XᵀX and Xᵀy, for the rank check and the least-squares β₀.
        names = [lme4_column_name(c, parsed.source) for c in plan.fixed_specs.rhs.column_names]
        plan_ref = dask.delayed(plan, traverse=False)
        gram_task = dask.delayed(_partition_gram, pure=True)
        grams = [gram_task(p, plan_ref) for p in parts]
        xtx, xty = dask.compute(_tree_reduce(grams, _sum_grams, split_every))[0]
        aliased = _aliased_from_gram(xtx) if len(names) else []
        dropped = [names[j] for j in aliased]
        if aliased:
            warnings.warn(
                "fixed-effect model matrix is rank deficient so dropping "
                f"{len(dropped)} column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
                RankDeficiencyWarning,
                stacklevel=2,
            )
        plan.keep = [j for j in range(len(names)) if j not in set(aliased)]
        if plan.keep:
            kept = np.ix_(plan.keep, plan.keep)
            plan.beta_offset = np.linalg.lstsq(xtx[kept], xty[plan.keep], rcond=None)[0]

        # Pass 3: the partial blocks, summed in a tree.
        plan_ref = dask.delayed(plan, traverse=False)
        block_task = dask.delayed(_partition_blocks, pure=True)
        blocks = [block_task(p, plan_ref) for p in parts]
        cp: CrossProducts = dask.compute(_tree_reduce(blocks, _sum_blocks, split_every))[0]
        design = _driver_design(plan, labels, names, dropped, cp.n_obs, scan.n_bad)
        self._plan = plan
        self._data = data
        self._init_from(design, reml=reml, cp=cp)

    # -- what needs rows: lazy ---------------------------------------------------------

    def _solution(self) -> _Solution:
        self._require_fit()
        return _Solution(self._plan, self._beta, self._modes)

    def _lazy(self, data: Any, kind: str, **options: Any):
        import dask

        solution = dask.delayed(self._solution(), traverse=False)
        meta = pd.Series(dtype=np.float64, name=kind)
        return data.map_partitions(_partition_values, solution, kind, meta=meta, **options)

    @property
    def fitted(self):
        """Conditional fitted values Xβ + Zb of the rows used: a lazy Dask series."""
        return self._lazy(self._data, "fitted")

    @property
    def residuals(self):
        """Response minus conditional fitted values: a lazy Dask series."""
        return self._lazy(self._data, "residuals")

    def predict(self, newdata: Any = None, *, random: bool = True, allow_new_levels: bool = False):
        """Predictions for the rows of a Dask DataFrame (default: the model's data).

        Parameters
        ----------
        newdata : dask.dataframe.DataFrame, optional
            Rows to predict; the model's own data when omitted.
        random : bool, default True
            Add the conditional modes of the random effects (False: Xβ only).
        allow_new_levels : bool, default False
            Give a grouping-factor level the model has not seen a zero random
            effect instead of raising :class:`~mixedmodels.errors.DataError`.

        Returns
        -------
        dask.dataframe.Series
            Lazy; a row with a missing predictor gets NaN.  Unknown levels are
            reported when the series is computed.
        """
        data = self._data if newdata is None else newdata
        if not is_dask_dataframe(data):
            raise DataError(f"newdata must be a Dask DataFrame, not {type(data).__name__}")
        return self._lazy(data, "predict", random=random, allow_new_levels=allow_new_levels)

    def _scaled_residual_quantiles(self) -> tuple[np.ndarray, bool]:
        """Min, quartiles and max of the scaled residuals, and whether they are exact.

        Up to :data:`EXACT_QUANTILE_ROWS` rows the residuals come to the driver
        and the quartiles are exact; beyond, min and max stay exact and the
        quartiles are Dask's approximation from per-partition percentiles.
        """
        import dask

        resid = self._lazy(self._data, "scaled_residuals") / self.sigma
        if self.nobs <= EXACT_QUANTILE_ROWS:
            values = resid.compute().to_numpy()
            return np.quantile(values, [0, 0.25, 0.5, 0.75, 1]), True
        low, high, mid = dask.compute(resid.min(), resid.max(), resid.quantile([0.25, 0.5, 0.75]))
        return np.array([low, *np.asarray(mid), high], dtype=np.float64), False

    def summary(self) -> Summary:
        """lme4-style summary (residual quartiles approximate beyond
        :data:`EXACT_QUANTILE_ROWS` rows, and then marked so)."""
        self._require_fit()
        from ..results.text import lme4_summary

        quantiles, exact = self._scaled_residual_quantiles()
        text = lme4_summary(_SummaryView(self, quantiles))
        if not exact:
            text = text.replace("Scaled residuals:", "Scaled residuals (quartiles approximate):", 1)
        return Summary(text)

    # -- what needs the rows in memory: refused, not silently wrong ------------------

    def simulate(self, n: int = 1, seed: Any = None):
        """Not available for a Dask fit (simulated responses are per-row arrays)."""
        raise MixedModelsError(_ROWS_NEEDED.format(what="simulate()"))

    def bootstrap(self, n: int, seed: Any = None, progress: bool = False):
        """Not available for a Dask fit (each replicate needs the rows)."""
        raise MixedModelsError(_ROWS_NEEDED.format(what="bootstrap()"))

    def coef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """As :meth:`LinearMixedModel.coef_table`; Kenward–Roger needs the rows."""
        if str(ddf).lower().replace("_", "-").startswith("kenward"):
            raise MixedModelsError(_ROWS_NEEDED.format(what="Kenward–Roger df"))
        return super().coef_table(ddf=ddf)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"<DaskLinearMixedModel {self.design.formula.source!r} ({state})>"


@dataclass
class _Solution:
    """What a partition needs to compute its fitted values (shipped to workers)."""

    plan: _Plan
    beta: np.ndarray
    modes: list[np.ndarray]


def _partition_values(
    frame: pd.DataFrame,
    solution: _Solution,
    kind: str,
    random: bool = True,
    allow_new_levels: bool = False,
) -> pd.Series:
    """Fitted values, residuals or predictions of one partition's rows."""
    plan = solution.plan
    if kind == "predict":
        absent = [c for c in plan.predictors if c not in frame.columns]
        if absent:
            raise DataError(f"column {absent[0]!r} used by the model is not in newdata")
        # Every row gets a value; those with a missing predictor get NaN.
        rows = frame.loc[:, plan.predictors]
        complete = rows.loc[~rows.isna().any(axis=1).to_numpy()]
        result = pd.Series(np.nan, index=frame.index, name=kind, dtype=np.float64)
        if not complete.empty:
            complete = plan.factorize(complete, strict=True)
            values = _linear_predictor(complete, solution, random, allow_new_levels)
            result.loc[~rows.isna().any(axis=1).to_numpy()] = values
        return result
    used, _ = _complete_rows(frame, plan.columns, plan.weights)
    if used.empty:
        return pd.Series(np.empty(0), index=used.index, name=kind)
    used = plan.factorize(used, strict=False)
    mats = plan.fixed_specs.get_model_matrix(used, context=TRANSFORMS, na_action="ignore")
    fitted = _linear_predictor(used, solution, True, False, mats.rhs)
    if kind == "fitted":
        return pd.Series(fitted, index=used.index, name=kind)
    resid = np.asarray(mats.lhs, dtype=np.float64).ravel() - fitted
    if kind == "scaled_residuals" and plan.weights is not None:
        resid = resid * np.sqrt(used[plan.weights].to_numpy(dtype=np.float64))
    return pd.Series(resid, index=used.index, name=kind)


def _linear_predictor(
    frame: pd.DataFrame,
    solution: _Solution,
    random: bool,
    allow_new_levels: bool,
    x: Any = None,
) -> np.ndarray:
    """Xβ (+ Zb) for rows whose factor columns carry the global levels."""
    plan = solution.plan
    if x is None:
        x = plan.fixed_specs.rhs.get_model_matrix(frame, context=TRANSFORMS, na_action="ignore")
    values = np.asarray(x, dtype=np.float64)[:, plan.keep] @ solution.beta
    if not random:
        return values
    codes, z = plan.random_parts(frame)
    for group, c, zi, modes in zip(plan.groups, codes, z, solution.modes, strict=True):
        unseen = c < 0
        if unseen.any() and not allow_new_levels:
            row = frame.iloc[int(np.flatnonzero(unseen)[0])]
            level = ":".join(str(row[col]) for col in group.columns)
            raise DataError(
                f"level {level!r} of grouping factor {':'.join(group.columns)!r} was not "
                "in the data the model was fitted to; use allow_new_levels=True to give "
                "it a zero random effect"
            )
        contribution = np.einsum("nq,nq->n", zi, modes[np.maximum(c, 0)])
        values = values + np.where(unseen, 0.0, contribution)
    return values


class _SummaryView:
    """The model as :func:`~mixedmodels.summary.lme4_summary` reads it, with the
    residuals replaced by their five summary quantiles (×σ) computed on the cluster:
    the quantiles of those five values are the values themselves."""

    def __init__(self, model: DaskLinearMixedModel, quantiles: np.ndarray) -> None:
        self._model = model
        self.residuals = pd.Series(quantiles * model.sigma)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def fit_dask(
    formula: str,
    data: Any,
    reml: bool = True,
    *,
    weights: str | None = None,
    missing: str = "drop",
    start: np.ndarray | None = None,
    check_convergence: bool = True,
) -> DaskLinearMixedModel:
    """Fit a linear mixed model to a Dask DataFrame (what :func:`mixedmodels.lmer`
    does when given one).

    Parameters
    ----------
    formula : str
        lme4 model formula.
    data : dask.dataframe.DataFrame
        The data, read twice (level sets, then blocks); never modified.
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    weights : str, optional
        Name of the column of prior weights.
    missing : {"drop", "raise"}, default "drop"
        Rows with missing values in a used column are dropped or refused.
    start : array, optional
        Initial θ.
    check_convergence : bool, default True
        Check the optimum by finite differences.

    Returns
    -------
    DaskLinearMixedModel
        The fitted model.
    """
    model = DaskLinearMixedModel(formula, data, reml=reml, weights=weights, missing=missing)
    return model.fit(start=start, check_convergence=check_convergence)
