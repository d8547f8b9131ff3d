"""``anova``: likelihood-ratio tests of nested models, or F tests of one model's fixed terms.

Several models: as lme4's ``anova(m0, m1, ...)`` — REML fits are refitted by
maximum likelihood first (unless ``refit=False``), models are ordered by their
number of parameters, and each is tested against the one before it by
χ² = difference of deviances on the difference of parameter counts.

One model: lmerTest's ``anova(m)`` F tests of each fixed-effect term with
Satterthwaite denominator df.  The hypothesis of a term is that all its
coefficients are zero.  That is lmerTest's type III test except for a term
contained in an interaction with a factor (``x`` in ``x * group``): type III
averages over the factor's levels, the coefficients are the effect at its
first level.  The table says which hypothesis each row tests.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ..design import lme4_column_name
from ..errors import MixedModelsError
from .profile import ml_model
from .satterthwaite import f_test

if TYPE_CHECKING:
    from ..model import LinearMixedModel


def likelihood_ratio_table(
    models: list[LinearMixedModel], refit: bool = True, names: list[str] | None = None
) -> pd.DataFrame:
    """The table of lme4's ``anova(m0, m1, ...)``."""
    if names is None:
        names = [f"m{i}" for i in range(len(models))]
    elif len(names) != len(models):
        raise MixedModelsError(f"got {len(names)} names for {len(models)} models")
    nobs = {m.nobs for m in models}
    if len(nobs) > 1:
        raise MixedModelsError(
            f"models were fitted to different numbers of rows ({sorted(nobs)}); "
            "a likelihood-ratio test needs the same data"
        )
    responses = {m.design.response_name for m in models}
    if len(responses) > 1:
        raise MixedModelsError(f"models have different responses: {sorted(responses)}")
    fits = [ml_model(m) if (refit and m.reml) else m for m in models]
    order = sorted(range(len(fits)), key=lambda i: fits[i].n_params)
    rows = []
    prev = None
    for i in order:
        m = fits[i]
        dev = m.objective_at(m._theta) if not m.reml else m.objective
        row = {
            "npar": m.n_params,
            "aic": m.aic,
            "bic": m.bic,
            "loglik": m.loglik,
            "deviance": dev,
            "chisq": math.nan,
            "df": math.nan,
            "p_value": math.nan,
        }
        if prev is not None:
            df = m.n_params - prev["npar"]
            chisq = prev["deviance"] - dev
            row["chisq"] = chisq
            row["df"] = df
            row["p_value"] = float(stats.chi2.sf(chisq, df)) if df > 0 else math.nan
        rows.append(row)
        prev = row
    index = [names[i] for i in order]
    return pd.DataFrame(rows, index=index)


def _fixed_terms(model: LinearMixedModel) -> dict[str, tuple[list[int], set[str]]]:
    """Fixed-effect term → (its columns among the kept columns of X, its variables).

    The intercept is left out.
    """
    spec = model.design.fixed_spec
    kept = {name: i for i, name in enumerate(model.design.fixed_names)}
    source = model.design.formula.source
    out: dict[str, tuple[list[int], set[str]]] = {}
    for structure in spec.structure:
        label = str(structure.term)
        if label == "1":
            continue
        cols = [kept[n] for c in structure.columns if (n := lme4_column_name(c, source)) in kept]
        if cols:
            variables = {str(f) for f in structure.term.factors}
            out[_r_term_label(lme4_column_name(label, source))] = (cols, variables)
    return out


def _r_term_label(label: str) -> str:
    return label.replace(" ** ", "^").replace("**", "^")


def _is_type3(variables: set[str], terms: dict, categorical: set[str]) -> bool:
    """Whether testing a term's coded coefficients is lmerTest's type III test.

    With treatment contrasts it is, unless the term is contained in a term
    that adds a categorical variable: type III then averages over that
    factor's levels where the coefficients are effects at its first level.
    """
    for _, other in terms.values():
        if variables < other and (other - variables) & categorical:
            return False
    return True


def f_test_table(model: LinearMixedModel) -> pd.DataFrame:
    """Per fixed-effect term: Satterthwaite F test that its coefficients are zero."""
    terms = _fixed_terms(model)
    encoders = model.design.fixed_spec.encoder_state
    categorical = {
        name for name, (kind, _) in encoders.items() if str(kind).endswith("CATEGORICAL")
    }
    p = len(model._beta)
    rows = []
    for cols, variables in terms.values():
        ell = np.zeros((len(cols), p))
        ell[np.arange(len(cols)), cols] = 1.0
        num_df, den_df, f_value, p_value = f_test(model, ell)
        rows.append(
            {
                "num_df": num_df,
                "den_df": den_df,
                "f_value": f_value,
                "p_value": p_value,
                "hypothesis": "type III"
                if _is_type3(variables, terms, categorical)
                else "coefficients as coded",
            }
        )
    return pd.DataFrame(rows, index=list(terms))


def anova(
    *models: LinearMixedModel, refit: bool = True, names: list[str] | None = None
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
        Row labels for the models, in the order given (default ``m0``, ``m1``, …).

    Returns
    -------
    pandas.DataFrame
        For several models: ``npar``, ``aic``, ``bic``, ``loglik``,
        ``deviance``, ``chisq``, ``df``, ``p_value`` (one row per model, by
        increasing ``npar``).  For one model: ``num_df``, ``den_df``,
        ``f_value``, ``p_value`` per fixed-effect term (Satterthwaite), and
        ``hypothesis``: ``"type III"`` (lmerTest's test), or ``"coefficients
        as coded"`` for a term contained in an interaction with a factor,
        where type III would average over that factor's levels and this
        tests the effect at its first level.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> d = mm.datasets.load("sleepstudy")
    >>> m0 = mm.lmer("Reaction ~ Days + (1 | Subject)", d)
    >>> m1 = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    >>> round(float(mm.anova(m0, m1).chisq.iloc[1]), 2)
    42.14
    """
    if not models:
        raise MixedModelsError("anova needs at least one fitted model")
    for m in models:
        m._require_fit()
    if len(models) == 1:
        return f_test_table(models[0])
    return likelihood_ratio_table(list(models), refit=refit, names=names)
