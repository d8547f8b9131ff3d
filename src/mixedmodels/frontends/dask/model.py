"""The same linear mixed model on a Dask DataFrame: stage 2 on the cluster.

Every block of AᵀA is a sum over rows (see :mod:`mixedmodels.engine.blocks`),
so a Dask DataFrame is fitted in passes over its partitions
(:mod:`.passes`), wherever Dask runs them (the current
``distributed.Client`` if there is one, otherwise Dask's default scheduler),
each pass's partial results summed in a tree.  The driver then holds only the
summed blocks and the level labels, and builds the model from them with
:meth:`LinearMixedModel.from_cross_products`: the θ loop and every result run
unchanged, in memory that grows with the numbers of levels, level pairs and
columns, not rows.  Whatever needs rows again goes through :class:`.DaskRows`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...design.checks import (
    check_grouping_factors,
    check_missing_option,
    check_random_effects_size,
    check_response,
    warn_predictor_scales,
)
from ...design.codings import coded_formula
from ...design.columns import check_column_names, matrix_columns
from ...design.computed import ComputedSpec
from ...engine.blocks import CrossProducts
from ...engine.terms import TermStructure
from ...errors import DataError, FormulaError, RankDeficiencyWarning, user_stacklevel
from ...formula import ParsedFormula, parse_formula
from ...models.lmm import LinearMixedModel
from ...progress import step_bar
from .detect import is_dask_dataframe
from .passes import (
    SPLIT_EVERY,
    Gram,
    Plan,
    partition_blocks,
    partition_gram,
    sum_blocks,
    sum_grams,
    tree_reduce,
)
from .planning import aliased_from_gram, check_weights_column, learn_levels, make_plan
from .rows import DaskRows


@dataclass(frozen=True, eq=False)
class DaskDesign:
    """What a model fitted to a Dask DataFrame is: names, terms and the specs for new
    rows (the rows themselves stay in the Dask DataFrame)."""

    formula: ParsedFormula
    fixed_names: list[str]
    terms: list[TermStructure]
    response_name: str
    dropped_columns: list[str] = field(default_factory=list)
    n_dropped_missing: int = 0
    fixed_spec: Any = None
    term_specs: list[Any] = field(default_factory=list)
    computed: ComputedSpec | None = None


def dask_model(
    formula: str,
    data: Any,
    *,
    reml: bool = True,
    weights: str | None = None,
    missing: str = "drop",
    split_every: int = SPLIT_EVERY,
    progress: bool | None = None,
    offset: str | None = None,
    contrasts: Any = None,
) -> LinearMixedModel:
    """A linear mixed model whose rows stay in a Dask DataFrame (not yet fitted).

    The blocks of AᵀA are computed on the cluster; the fit and every result
    that does not need rows are those of :class:`LinearMixedModel`.
    ``fitted``, ``residuals`` and ``predict`` return lazy Dask series.

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
    progress : bool or None, default None
        A bar ticking once per pass over the data (three passes): None shows
        it once the passes have taken a few seconds, True at once, False never.
    offset : str, optional
        Name of a column of offsets (added to the formula's ``offset()`` terms).
    contrasts : dict of str to str, optional
        lme4's ``contrasts=`` (see :class:`~mixedmodels.LinearMixedModel`).
    """
    if not is_dask_dataframe(data):
        raise DataError(f"data must be a Dask DataFrame, not {type(data).__name__}")
    check_missing_option(missing)
    read = read_formula(formula, data, weights, offset, contrasts)
    with step_bar(3, "Dask passes", enabled=progress, unit="pass") as bar:
        planned = plan_passes(read, data, missing, split_every, bar)
        # Pass 3: the partial blocks, summed in a tree.
        import dask

        plan = planned.plan
        plan_ref = dask.delayed(plan, traverse=False)
        block_task = dask.delayed(partition_blocks, pure=True)
        blocks = [block_task(p, plan_ref) for p in planned.parts]
        cp: CrossProducts = dask.compute(tree_reduce(blocks, sum_blocks, split_every))[0]
        bar.update()
    design = planned.describe(cp.n_obs)
    rows = DaskRows(plan, data, cp.n_obs)
    return LinearMixedModel.from_cross_products(cp, design, reml=reml, rows=rows)


@dataclass(frozen=True, eq=False)
class FormulaRead:
    """A formula checked against a Dask DataFrame's columns, before any pass over it."""

    parsed: ParsedFormula
    columns: list[str]
    weights: str | None
    computed: ComputedSpec


def read_formula(
    formula: str, data: Any, weights: str | None, offset: str | None, contrasts: Any
) -> FormulaRead:
    """The formula parsed, coded and checked against the columns (no pass over the data).

    Refuses, by name, what a Dask DataFrame cannot take: no random-effects
    term, a grouping expression, an offset that is not a column's name, a
    column that is not in the data.
    """
    parsed = parse_formula(formula)
    if not parsed.random:
        raise FormulaError(
            f"no random-effects terms in {formula!r}: add at least one term such as "
            "(1 | group); for a model without random effects use ordinary least squares"
        )
    if parsed.group_expressions:
        raise FormulaError(
            f"the grouping factor {parsed.group_expressions[0].label} is an expression, which "
            "is not supported for a Dask DataFrame: compute it as a column first "
            "(e.g. ddf.assign(...)) and group by that column"
        )
    if offset is not None and not isinstance(offset, str):
        raise DataError(
            f"for a Dask DataFrame give offset as the name of a column, not {type(offset).__name__}"
        )
    columns = list(parsed.columns)
    if offset is not None and offset not in columns:
        columns.append(offset)
    absent = [c for c in columns if c not in data.columns]
    if absent:
        raise DataError(
            f"column {absent[0]!r} used in the formula is not in the data "
            f"(columns: {', '.join(map(str, data.columns[:20]))})"
        )
    check_column_names(matrix_columns(parsed))
    wcol = check_weights_column(weights, data.columns)
    parsed = coded_formula(
        parsed, {c: pd.Series(dtype=data.dtypes[c]) for c in parsed.columns}, contrasts
    )
    return FormulaRead(parsed, columns, wcol, ComputedSpec.of(parsed, offset, False))


@dataclass(frozen=True, eq=False)
class PlannedPasses:
    """What the first two passes over the data found: the plan every partition follows,
    the level labels and the names of X's columns (dropped ones apart)."""

    plan: Plan
    labels: list[pd.Index]
    names: list[str]
    dropped: list[str]
    n_dropped: int
    # The partitions (delayed), restricted to the columns the model reads.
    parts: list[Any]

    def describe(self, n_obs: int, allow_n: bool = False) -> DaskDesign:
        """The model's description (see :func:`describe_design`)."""
        return describe_design(
            self.plan, self.labels, self.names, self.dropped, n_obs, self.n_dropped, allow_n
        )


def plan_passes(
    read: FormulaRead, data: Any, missing: str, split_every: int, bar: Any
) -> PlannedPasses:
    """Pass 1 (the level sets and counts) and pass 2 (XᵀX and Xᵀy: the rank check, the
    least-squares β₀, the checks of y and X), and the plan between them."""
    import dask

    parsed, columns, wcol, computed = read.parsed, read.columns, read.weights, read.computed
    read_columns = columns + ([wcol] if wcol is not None and wcol not in columns else [])
    parts = data[read_columns].to_delayed()
    scan, factor_columns = learn_levels(parts, parsed, columns, data.dtypes, wcol, split_every)
    bar.update()
    if scan.n_bad and missing == "raise":
        culprits = [c for c in columns if scan.na_counts[c]]
        raise DataError(
            f"{scan.n_bad} rows have missing values (in {', '.join(map(repr, culprits))}); "
            "drop them or use missing='drop'"
        )
    if scan.n_rows - scan.n_bad == 0:
        raise DataError("no rows left to fit (the data are empty or every row has a missing value)")
    plan, labels = make_plan(parsed, columns, wcol, scan, factor_columns, data.dtypes)
    if computed.has_offset:
        computed.offset(scan.sample)
        # New rows to predict need the offset's columns too.
        needed = [c for o in computed.offsets for c in o.columns] + (
            [computed.offset_column] if computed.offset_column else []
        )
        plan.predictors += [c for c in dict.fromkeys(needed) if c not in plan.predictors]
        if any(computed.offset_states):
            raise FormulaError(
                "an offset needing statistics of the whole column is not supported for a "
                "Dask DataFrame: compute it as a column first"
            )
        plan.computed = computed

    # Pass 2: XᵀX and Xᵀy, for the rank check and the least-squares β₀.
    names = parsed.column_names(plan.fixed_specs.rhs.column_names)
    plan_ref = dask.delayed(plan, traverse=False)
    gram_task = dask.delayed(partition_gram, pure=True)
    grams = [gram_task(p, plan_ref) for p in parts]
    gram: Gram = dask.compute(tree_reduce(grams, sum_grams, split_every))[0]
    bar.update()
    # The in-memory checks of y and X, from the sums.
    check_response(np.array([gram.y_min, gram.y_max]), parsed.response_label)
    xtx, xty = gram.xtx, gram.xty
    aliased = aliased_from_gram(xtx) if len(names) else []
    dropped = [names[j] for j in aliased]
    if aliased:
        warnings.warn(
            "fixed-effect model matrix is rank deficient so dropping "
            f"{len(dropped)} column{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=user_stacklevel(),
        )
    plan.keep = [j for j in range(len(names)) if j not in set(aliased)]
    if plan.keep:
        kept = np.ix_(plan.keep, plan.keep)
        plan.beta_offset = np.linalg.lstsq(xtx[kept], xty[plan.keep], rcond=None)[0]
        if gram.n >= 2:
            warn_predictor_scales(
                gram.column_sd()[plan.keep],
                gram.indicator[plan.keep],
                [names[j] for j in plan.keep],
            )
    return PlannedPasses(plan, labels, names, dropped, scan.n_bad, parts)


def describe_design(
    plan: Plan,
    labels: list[pd.Index],
    names: list[str],
    dropped: list[str],
    n_obs: int,
    n_dropped: int,
    allow_n: bool = False,
) -> DaskDesign:
    """The model's names, levels and specs, as results need them (``allow_n``: as many
    levels as rows allowed, as for a GLMM's observation-level effects)."""
    terms = [
        TermStructure(
            group_name=spec.name,
            levels=levels,
            column_names=plan.parsed.column_names(term_spec.column_names),
        )
        for spec, term_spec, levels in zip(plan.random_specs, plan.term_specs, labels, strict=True)
    ]
    check_grouping_factors(terms, n_obs, allow_n=allow_n)
    check_random_effects_size(terms, n_obs)
    return DaskDesign(
        formula=plan.parsed,
        fixed_names=[names[j] for j in plan.keep],
        terms=terms,
        response_name=plan.parsed.response,
        dropped_columns=dropped,
        n_dropped_missing=n_dropped,
        fixed_spec=plan.fixed_specs.rhs,
        term_specs=plan.term_specs,
        computed=plan.computed,
    )


def fit_dask(
    formula: str,
    data: Any,
    reml: bool = True,
    *,
    weights: str | None = None,
    missing: str = "drop",
    start: np.ndarray | None = None,
    check_convergence: bool = True,
    progress: bool | None = None,
    offset: str | None = None,
    contrasts: Any = None,
) -> LinearMixedModel:
    """Fit a linear mixed model to a Dask DataFrame (what :func:`mixedmodels.lmer`
    does when given one).

    Parameters
    ----------
    formula : str
        lme4 model formula.
    data : dask.dataframe.DataFrame
        The data, read three times (level sets, XᵀX, blocks); never modified.
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
    progress : bool or None, default None
        A bar over the passes on the data (see :func:`dask_model`).
    offset, contrasts
        See :func:`dask_model`.

    Returns
    -------
    LinearMixedModel
        The fitted model; its ``rows`` are a :class:`.DaskRows`.
    """
    model = dask_model(
        formula,
        data,
        reml=reml,
        weights=weights,
        missing=missing,
        progress=progress,
        offset=offset,
        contrasts=contrasts,
    )
    return model.fit(start=start, check_convergence=check_convergence)
