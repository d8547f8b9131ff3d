"""``anova``: likelihood-ratio tests of nested models, or F tests of one model's fixed terms.

Several models: as lme4's ``anova(m0, m1, ...)`` — REML fits are refitted by
maximum likelihood first (unless ``refit=False``), models are ordered by their
number of parameters, and each is tested against the one before it by
χ² = difference of deviances on the difference of parameter counts.

One model: lmerTest's ``anova(m)`` (type III, the default): an F test of
each fixed-effect term's type III hypothesis with Satterthwaite denominator
df.  For a term contained in an interaction with a factor (``x`` in
``x * group``) that is the effect averaged over the factor's levels, not the
coefficient at its reference level; :mod:`.type3` builds the hypotheses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
from scipy import stats

from ..errors import MixedModelsError
from .satterthwaite import f_test
from .type3 import type3_contrasts

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel


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
    for i, m in enumerate(models[1:], start=1):
        if not models[0].rows.same_response(m.rows):
            raise MixedModelsError(
                f"models {names[0]!r} and {names[i]!r} were not fitted to the same data "
                "(their responses or prior weights differ): a likelihood-ratio test "
                "compares fits to the same rows"
            )
    fits = [m.refit_ml() if refit else m for m in models]
    order = sorted(range(len(fits)), key=lambda i: fits[i].n_params)
    rows = []
    prev = None
    for i in order:
        m = fits[i]
        dev = m.objective
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


def _r_term_labels(model: LinearMixedModel) -> dict[str, str]:
    """formulaic's term label → R's, as lmerTest's table prints it.

    R names an interaction by its variables in the order they first appear in
    the formula (``grp + Days + I(Days^2):grp`` has ``grp:I(Days^2)``);
    formulaic keeps the order written.
    """
    parsed = model.design.formula
    return {
        str(structure.term): parsed.term_label(str(f) for f in structure.term.factors)
        for structure in model.design.fixed_spec.structure
    }


def f_test_table(model: LinearMixedModel) -> pd.DataFrame:
    """lmerTest's ``anova(m)``: per term, the Satterthwaite F test of its type III hypothesis.

    The hypotheses come from :func:`mixedmodels.inference.type3.type3_contrasts`.
    """
    labels = _r_term_labels(model)
    sigma2 = model.sigma**2
    rows, index = [], []
    for label, ell in type3_contrasts(model).items():
        if ell.shape[0]:
            num_df, den_df, f_value, p_value = f_test(model, ell)
        else:  # every column of the term was aliased: nothing to test (NA in lmerTest)
            num_df, den_df, f_value, p_value = 0, math.nan, math.nan, math.nan
        # As lmerTest: the mean square is F on σ²'s scale.
        mean_sq = f_value * sigma2
        rows.append(
            {
                "sum_sq": mean_sq * num_df,
                "mean_sq": mean_sq,
                "num_df": num_df,
                "den_df": den_df,
                "f_value": f_value,
                "p_value": p_value,
                "hypothesis": "type III",
            }
        )
        index.append(labels[label])
    columns = ["sum_sq", "mean_sq", "num_df", "den_df", "f_value", "p_value", "hypothesis"]
    return pd.DataFrame(rows, index=index, columns=columns)
