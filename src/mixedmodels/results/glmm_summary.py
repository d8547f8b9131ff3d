"""The summary content of a fitted GLMM: lme4's ``summary(glmer(...))`` as a ModelSummary.

The linear model's :class:`~mixedmodels.results.summary.ModelSummary` holds
a GLMM's summary too (its renderers print the family line, the z tests and
no residual row when there is no scale parameter); this fills it from a
fitted :class:`~mixedmodels.models.glmm.GeneralizedLinearMixedModel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

# The linear summary's builders of the variance-component rows, the
# correlation block and the notes, shared rather than copied.
from .summary import (
    CORRELATION_MAX,
    ModelSummary,
    fit_notes,
    fixed_effect_correlation,
    variance_components,
)

if TYPE_CHECKING:
    from ..models.glmm import GeneralizedLinearMixedModel


def _method(nagq: int) -> str:
    approximation = (
        "Laplace Approximation"
        if nagq == 1
        else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq}"
    )
    return f"maximum likelihood ({approximation})"


def summarize_glmm(
    model: GeneralizedLinearMixedModel, *, correlation: bool | None = None
) -> ModelSummary:
    """The summary content of a fitted GLMM, laid out as lme4's.

    Parameters
    ----------
    model : GeneralizedLinearMixedModel
        A fitted model.
    correlation : bool, optional
        Show the correlations of the fixed effects (default: up to 12, as lme4).
    """
    state = model.state
    coefs = model.coefs
    fixed = pd.DataFrame(
        {
            "estimate": coefs["estimate"],
            "std_error": coefs["std_error"],
            "statistic": coefs["z_value"],
            "p_value": coefs["p_value"],
        }
    )
    components, residual = variance_components(model.varcorr)
    p = len(fixed)
    show = (p <= CORRELATION_MAX) if correlation is None else bool(correlation)
    family = model.family
    return ModelSummary(
        model_type="Generalized linear mixed model",
        method=_method(state.nagq),
        formula=model.formula,
        data=model.data_name,
        # lme4 prints −2 log L under "deviance" in a GLMM's summary.
        criteria={
            "AIC": float(model.aic),
            "BIC": float(model.bic),
            "logLik": float(model.loglik),
            "deviance": float(model.objective),
            "df.resid": float(model.nobs - model.n_params),
        },
        scaled_residuals=model.scaled_residual_quantiles(),
        random_effects=tuple(components),
        residual=residual,
        nobs=int(model.nobs),
        ngroups=dict(model.ngroups),
        n_dropped=int(model.n_dropped_missing),
        fixed_effects=fixed,
        # lme4 labels the statistic t for families with a dispersion (its p stays normal).
        statistic="t" if family.has_dispersion else "z",
        family=family.name,
        link=family.link.name,
        correlation=fixed_effect_correlation(model.vcov) if show and p > 1 else None,
        correlation_omitted=p if (correlation is None and p > CORRELATION_MAX) else None,
        notes=tuple(fit_notes(model)),
    )
