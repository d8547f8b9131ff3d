"""A generalized linear mixed model on a Dask DataFrame, fitted on its cluster.

A GLMM must return to the rows at every reweighting (PIRLS), which the
linear model's cross-products, summed once, avoid.  Here the rows are read
once into arrays persisted on the workers, and every question the engine's
PIRLS, Laplace gradient and quadrature ask of the rows is one map-reduce over
those partitions (:mod:`.glmm_rows`); the driver holds the summed blocks and
the level labels, O(levels + level pairs + p²) memory, not O(n).

The passes over the data reuse the linear model's (:mod:`.passes`,
:mod:`.planning`):

1. the response prepared per partition as in memory (``cbind(s, f)`` → the
   proportion with trials as prior weights; booleans → 0/1), with the
   prior weights and the offset as columns of their own;
2. the scan of level sets (one read), the plan, XᵀX for the rank check;
3. the build: each partition's rows as arrays (y, prior weights, offset,
   X, level codes, Z), persisted; then their level pairs summed (the block
   layout), and each partition's working rows laid out on it.

The fit and every result are :class:`~mixedmodels.models.glmm.GeneralizedLinearMixedModel`'s,
on a :class:`~mixedmodels.engine.glmm_problem.GeneralizedProblem` whose row
source is the cluster's.  Not available on Dask: families with a scale
parameter (Gamma, inverse Gaussian: their aic needs the dispersion of all
rows at once), ``glmer_nb``, text or categorical responses (code them 0/1
first), and what needs the rows on the driver (simulation, the bootstrap,
separation checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...design.checks import check_finite, check_missing_option
from ...engine.glmm_problem import GeneralizedProblem
from ...errors import DataError
from ...families import Binomial, Family, get_family
from ...formula import parse_formula
from ...models.glm_response import cbind_formula, offset_in_formula, prepare_response
from ...models.glmm import GeneralizedLinearMixedModel
from ...progress import step_bar
from .detect import is_dask_dataframe
from .glmm_fitted import DaskGlmmRows
from .glmm_rows import WEIGHTS, DaskRowSource, PartitionRows
from .model import PlannedPasses, plan_passes, read_formula
from .passes import SPLIT_EVERY, Plan, fixed_part, tree_reduce
from .planning import check_weights_column


@dataclass(frozen=True)
class ResponseSpec:
    """How a partition prepares its response and prior weights (shipped to workers)."""

    formula: str
    family: Family
    weights: str | None


def prepare_partition(frame: pd.DataFrame, spec: ResponseSpec) -> pd.DataFrame:
    """The partition with its response prepared as in memory and a prior-weights column
    (NaN where missing: those rows are dropped or refused later)."""
    prepared = prepare_response(spec.formula, frame, spec.family, spec.weights)
    weights = np.ones(len(frame)) if prepared.weights is None else prepared.weights
    return prepared.frame.assign(**{WEIGHTS: weights})


def build_partition(
    frame: pd.DataFrame, plan: Plan, family: Family, response_name: str
) -> PartitionRows:
    """One partition's rows as arrays (the model's rows: complete, factors coded)."""
    frame, x, y = fixed_part(frame, plan)
    offset = plan.offset(frame)
    if offset is None:
        offset = np.zeros(len(y))
    else:
        y = y + offset  # fixed_part gives y − offset, the linear model's response
    codes, z = plan.random_parts(frame)
    for spec, zi in zip(plan.term_specs, z, strict=True):
        check_finite(zi, list(spec.column_names), "the random-effects column", frame.index)
    weights = frame[WEIGHTS].to_numpy(dtype=np.float64)
    if len(y):
        family.check_response(y, weights, response_name)
    return PartitionRows(y, weights, offset, x[:, plan.keep], codes, z, plan.n_levels)


def _check_arguments(formula: str, data: Any, family: Family, weights: Any, offset: Any) -> None:
    if not is_dask_dataframe(data):
        raise DataError(f"data must be a Dask DataFrame, not {type(data).__name__}")
    if family.has_dispersion:
        raise DataError(
            f"the {family.name} family is not available for a Dask DataFrame: its "
            "log-likelihood needs the dispersion of all rows at once; fit it in memory"
        )
    if offset is not None and not isinstance(offset, str):
        raise DataError(
            "for a Dask DataFrame give the offset as a column name or an expression of "
            f"columns, not {type(offset).__name__}"
        )
    check_weights_column(weights, data.columns)
    lhs = formula.split("~", 1)[0].strip() if isinstance(formula, str) else ""
    if lhs in data.columns:
        dtype = data.dtypes[lhs]
        numeric = pd.api.types.is_numeric_dtype(dtype) and not isinstance(
            dtype, pd.CategoricalDtype
        )
        if not (numeric or pd.api.types.is_bool_dtype(dtype)):
            raise DataError(
                f"the response {lhs!r} is text or categorical: on a Dask DataFrame code it as "
                f"0/1 first (e.g. ddf.assign({lhs}=ddf[{lhs!r}] == 'yes')), since the level "
                "that means failure must be the same in every partition"
            )
        if pd.api.types.is_bool_dtype(dtype) and not isinstance(family, Binomial):
            raise DataError(f"a boolean response {lhs!r} is for the binomial family")


def dask_glmm(
    formula: str,
    data: Any,
    family: str | Family = "binomial",
    *,
    weights: str | None = None,
    offset: str | None = None,
    missing: str = "drop",
    split_every: int = SPLIT_EVERY,
    progress: bool | None = None,
) -> GeneralizedLinearMixedModel:
    """A GLMM whose rows stay in a Dask cluster's partitions (not yet fitted).

    Parameters
    ----------
    formula : str
        lme4 formula; ``cbind(successes, failures) ~ ...`` for binomial counts,
        ``offset(...)`` terms allowed.
    data : dask.dataframe.DataFrame
        The data; never modified (the partitions are read once and kept, as
        arrays, in the workers' memory until the model is dropped).
    family : str or Family, default "binomial"
        Binomial, Poisson or a negative binomial with a given θ (not Gamma
        or inverse Gaussian: see the module docstring).
    weights : str, optional
        Column of prior weights.
    offset : str, optional
        Column or expression of columns (``"log(exposure)"``).
    missing : {"drop", "raise"}, default "drop"
        Rows with a missing value in a used column are dropped or refused.
    split_every : int, default 8
        Partial results summed per task of the tree reductions.
    progress : bool, optional
        A bar over the passes on the data (None: after a few seconds).
    """
    from dask.dataframe.utils import make_meta

    family = get_family(family)
    _check_arguments(formula, data, family, weights, offset)
    check_missing_option(missing)
    cbind = cbind_formula(formula, data.columns)
    prepared_formula = formula if cbind is None else cbind[0]
    # An offset expression is a formula term, which every partition (and new rows) computes.
    prepared_formula, offset_column = offset_in_formula(prepared_formula, offset, make_meta(data))
    response = parse_formula(prepared_formula).response
    spec = ResponseSpec(formula, family, weights)
    # The columns prepare_partition gives, in its order.
    meta = make_meta(data)
    if cbind is not None:
        meta = meta.assign(**{cbind[1]: 0.0})
    elif response in meta.columns and pd.api.types.is_bool_dtype(meta[response]):
        meta = meta.assign(**{response: 0.0})
    meta = meta.assign(**{WEIGHTS: 1.0})
    prepared = data.map_partitions(prepare_partition, spec, meta=meta)
    read = read_formula(prepared_formula, prepared, WEIGHTS, offset_column, None)
    response_name = formula.split("~", 1)[0].strip()
    with step_bar(4, "Dask passes", enabled=progress, unit="pass") as bar:
        planned = plan_passes(read, prepared, missing, split_every, bar)
        source = _persist_rows(planned, family, response_name, split_every, bar)
    design = planned.describe(source.n_obs, allow_n=True)
    problem = GeneralizedProblem(source, design.terms, family)
    rows = DaskGlmmRows(planned.plan, prepared, source.n_obs, spec)
    return GeneralizedLinearMixedModel.from_problem(problem, design, rows, formula, response_name)


def _persist_rows(
    planned: PlannedPasses, family: Family, response_name: str, split_every: int, bar: Any
) -> DaskRowSource:
    """The build pass: the rows as arrays kept on the workers, their level pairs (the
    block layout), then each partition's working rows laid out on it."""
    import dask

    plan = planned.plan
    plan_ref = dask.delayed(plan, traverse=False)
    family_ref = dask.delayed(family, traverse=False)
    build = dask.delayed(build_partition, pure=False)
    rows = dask.persist(*[build(p, plan_ref, family_ref, response_name) for p in planned.parts])
    bar.update()
    structure = dask.compute(
        tree_reduce([dask.delayed(PartitionRows.structure)(r) for r in rows], _sum_structures)
    )[0]
    structure_ref = dask.delayed(structure, traverse=False)
    attach = dask.delayed(PartitionRows.attach, pure=False)
    rows = dask.persist(*[attach(r, structure_ref, family_ref) for r in rows])
    bar.update()
    return DaskRowSource(rows, structure, structure.n_obs, len(plan.keep), split_every)


def _sum_structures(*parts):
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def fit_dask_glmm(
    formula: str,
    data: Any,
    family: str | Family = "binomial",
    *,
    weights: str | None = None,
    offset: str | None = None,
    nagq: int = 1,
    missing: str = "drop",
    check_convergence: bool = True,
    progress: bool | None = None,
) -> GeneralizedLinearMixedModel:
    """Fit a GLMM to a Dask DataFrame (what :func:`mixedmodels.glmer` does when given one).

    Parameters are :func:`dask_glmm`'s and
    :meth:`~mixedmodels.GeneralizedLinearMixedModel.fit`'s.  Each PIRLS
    iteration is one map-reduce over the persisted partitions.
    """
    model = dask_glmm(
        formula, data, family, weights=weights, offset=offset, missing=missing, progress=progress
    )
    return model.fit(nagq=nagq, check_convergence=check_convergence)
