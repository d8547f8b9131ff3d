"""The functions most users call: fit a model from a formula and a data frame.

They choose the front end from the data: a pandas or polars DataFrame (or a
dict of columns) is fitted in memory, a Dask DataFrame out of core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import arguments
from .errors import ArgumentError, MixedModelsError
from .frontends.dask.detect import is_dask_dataframe
from .models.lmm import LinearMixedModel
from .results.anova_table import REFIT_NOTE, as_anova_table, lrt_heading, model_labels

if TYPE_CHECKING:
    from .families import Family
    from .models.glmm import GeneralizedLinearMixedModel


def lmer(
    formula: str,
    data: Any,
    reml: bool = True,
    *,
    weights: Any = None,
    missing: str = "drop",
    offset: Any = None,
    contrasts: Any = None,
    start: np.ndarray | str | None = None,
    check_convergence: bool = True,
    REML: bool | None = None,
) -> LinearMixedModel:
    """Fit a linear mixed model, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        lme4 model formula with random-effects terms in parentheses.
    data : pandas.DataFrame, dict of columns or dask.dataframe.DataFrame
        The data; never modified.  A Dask DataFrame is fitted out of core
        (:func:`mixedmodels.frontends.dask.fit_dask`).
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    weights, missing, offset, contrasts
        See :class:`LinearMixedModel`.
    start : array or "lme4", optional
        Initial θ (default: moment estimates; see :meth:`LinearMixedModel.fit`).
    check_convergence : bool, default True
        Check the optimum by finite differences (see :meth:`LinearMixedModel.fit`).
    REML : bool, optional
        lme4's spelling of ``reml``.

    Returns
    -------
    LinearMixedModel
        The fitted model.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> m.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    """
    reml = _reml_argument(reml, REML)
    if is_dask_dataframe(data):
        from .frontends.dask import fit_dask

        return fit_dask(
            formula,
            data,
            reml=reml,
            weights=weights,
            missing=missing,
            offset=offset,
            contrasts=contrasts,
            start=start,
            check_convergence=check_convergence,
        )
    model = LinearMixedModel(
        formula,
        data,
        reml=reml,
        weights=weights,
        missing=missing,
        offset=offset,
        contrasts=contrasts,
    )
    return model.fit(start=start, check_convergence=check_convergence)


def glmer(
    formula: str,
    data: Any,
    family: str | Family = "binomial",
    *,
    weights: Any = None,
    offset: Any = None,
    nagq: int = 1,
    missing: str = "drop",
    check_convergence: bool = True,
    progress: bool | None = None,
) -> GeneralizedLinearMixedModel:
    """Fit a generalized linear mixed model, as lme4's ``glmer``.

    Parameters
    ----------
    formula : str
        lme4 formula; ``cbind(successes, failures) ~ ...`` for binomial counts.
    data : pandas.DataFrame, dict of columns or dask.dataframe.DataFrame
        The data; never modified.  A Dask DataFrame is fitted on its cluster,
        each PIRLS iteration one map-reduce over its persisted partitions
        (:func:`mixedmodels.frontends.dask.fit_dask_glmm`).
    family : str or Family, default "binomial"
        See :class:`GeneralizedLinearMixedModel`.
    weights, offset, missing
        See :class:`GeneralizedLinearMixedModel` (for a Dask DataFrame, a
        column name, and for the offset a column or an expression of columns).
    nagq : int, default 1
        Laplace (1), adaptive quadrature points (> 1) or 0; see
        :meth:`GeneralizedLinearMixedModel.fit`.
    check_convergence : bool, default True
        Check the optimum by its gradient and Hessian.
    progress : bool, optional
        A Dask fit's bar over its passes on the data (in memory: unused).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> cbpp = mm.datasets.load("cbpp")
    >>> m = mm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    >>> m.fixef.round(3).to_dict()
    {'(Intercept)': -1.399, 'period2': -0.992, 'period3': -1.129, 'period4': -1.58}
    """
    if is_dask_dataframe(data):
        from .frontends.dask.glmm import fit_dask_glmm

        return fit_dask_glmm(
            formula,
            data,
            family,
            weights=weights,
            offset=offset,
            nagq=nagq,
            missing=missing,
            check_convergence=check_convergence,
            progress=progress,
        )
    from .models.glmm import GeneralizedLinearMixedModel

    model = GeneralizedLinearMixedModel(
        formula, data, family, weights=weights, offset=offset, missing=missing
    )
    return model.fit(nagq=nagq, check_convergence=check_convergence)


def _reml_argument(reml: Any, lme4_spelling: Any) -> bool:
    """``reml``, or lme4's ``REML`` when that is given instead."""
    if lme4_spelling is None:
        return arguments.boolean(reml, "reml")
    lme4_spelling = arguments.boolean(lme4_spelling, "REML")
    if arguments.boolean(reml, "reml") != lme4_spelling and reml is not True:
        raise ArgumentError("give reml or its lme4 spelling REML, not both")
    return lme4_spelling


def anova(
    *models: LinearMixedModel,
    refit: bool = True,
    names: list[str] | None = None,
    **named_models: LinearMixedModel,
) -> pd.DataFrame:
    """Compare nested fitted models by likelihood-ratio tests, or test one model's terms.

    Parameters
    ----------
    *models : LinearMixedModel
        Two or more fitted models of the same response on the same rows, or a
        single model.
    refit : bool, default True
        Refit REML fits by maximum likelihood before comparing them, as lme4
        does (REML criteria of models with different fixed effects are not
        comparable).
    names : list of str, optional
        Row labels for the models, in the order given (default: their
        formulas).
    **named_models : LinearMixedModel
        Models given by keyword (``mm.anova(small=m0, large=m1)``), labelled
        by the keyword; they follow the positional ones.

    Returns
    -------
    pandas.DataFrame
        An :class:`~mixedmodels.results.anova_table.AnovaTable`, which prints
        in full as R does (heading, significance stars, the notice that REML
        fits were refitted by ML).  For several models: ``npar``, ``aic``, ``bic``, ``loglik``,
        ``deviance``, ``chisq``, ``df``, ``p_value`` (one row per model, by
        increasing ``npar``).  For one model, one row per fixed-effect term
        as lmerTest's ``anova(m)``: ``sum_sq``, ``mean_sq``, ``num_df``,
        ``den_df`` (Satterthwaite), ``f_value``, ``p_value``, and
        ``hypothesis`` (always ``"type III"``).

    Raises
    ------
    MixedModelsError
        For one model whose type III hypotheses cannot be built: aliased
        columns that empty cells do not explain (collinear covariates), or a
        factor made by a transform that cannot be re-evaluated.

    Warns
    -----
    RankDeficiencyWarning
        For one model with empty cells in an interaction: the hypotheses are
        then lmerTest's "type III-like" ones (a term whose columns are all
        aliased gets ``num_df`` 0 and NaN, as lmerTest's NA).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> d = mm.datasets.load("sleepstudy")
    >>> m0 = mm.lmer("Reaction ~ Days + (1 | Subject)", d)
    >>> m1 = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    >>> round(float(mm.anova(m0, m1).chisq.iloc[1]), 2)
    42.14

    One model: ``recipe`` is tested at ``temp`` = 0 (it is not contained in
    ``recipe:temp``, whose numeric variable it lacks), ``temp`` averaged over
    the recipes.

    >>> cake = mm.datasets.load("cake")
    >>> m = mm.lmer("angle ~ recipe * temp + (1 | recipe:replicate)", cake)
    >>> mm.anova(m)[["num_df", "den_df", "f_value"]].round(3)
                 num_df   den_df  f_value
    recipe            2  254.016    0.096
    temp              1  222.000   94.163
    recipe:temp       2  222.000    0.042
    """
    # The GLMM and the tests' distributions are imported here, not with the package.
    from .inference.lrt import f_test_table, likelihood_ratio_table
    from .models.glmm import GeneralizedLinearMixedModel

    if named_models:
        if names is not None:
            raise ArgumentError("give the models' names either by keyword or as names=, not both")
        names = [
            m.design.formula.source
            for m in models
            if isinstance(m, (LinearMixedModel, GeneralizedLinearMixedModel))
        ]
        names += list(named_models)
        models = (*models, *named_models.values())
    if not models:
        raise MixedModelsError("anova needs at least one fitted model")
    for i, m in enumerate(models):
        if not isinstance(m, (LinearMixedModel, GeneralizedLinearMixedModel)):
            raise ArgumentError(
                f"anova compares fitted models: argument {i + 1} is a {type(m).__name__}"
            )
        m.state  # noqa: B018 - raises NotFittedError before a fit
    refit = arguments.boolean(refit, "refit")
    if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
        raise ArgumentError(f"names must be a list of strings, one per model, not {names!r}")
    if len(models) == 1:
        if isinstance(models[0], GeneralizedLinearMixedModel):
            raise ArgumentError(
                "anova of a single GLMM (F tests of its terms) is for linear models; compare "
                "nested GLMMs by likelihood ratio: anova(m0, m1)"
            )
        return as_anova_table(
            f_test_table(models[0]),
            heading=["Type III Analysis of Variance Table with Satterthwaite's method"],
        )
    formulas = [m.design.formula.source for m in models]
    labels = model_labels(formulas, names)
    table = likelihood_ratio_table(list(models), refit=refit, names=labels)
    heading = lrt_heading(labels, formulas, [m.data_name for m in models])
    if refit and any(m.reml for m in models):
        heading.insert(0, REFIT_NOTE)
    return as_anova_table(table, heading=heading)
