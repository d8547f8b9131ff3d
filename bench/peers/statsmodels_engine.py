"""statsmodels' ``MixedLM``, where the model has one top-level grouping factor."""

from __future__ import annotations

import warnings

import pandas as pd

from bench.models import BenchModel
from bench.peers import python_package_missing

NAME = "statsmodels"
PACKAGE = "statsmodels.formula.api"
"""What the worker imports before timing, so no fit pays for the import."""


def unavailable() -> str | None:
    """None if statsmodels imports, else how to install it."""
    return python_package_missing(
        "statsmodels", 'pip install statsmodels, or pip install -e ".[bench]"'
    )


def unsupported(model: BenchModel) -> str | None:
    """Why MixedLM cannot write the model, or None.

    MixedLM has one top-level grouping factor, with independent variance
    components nested in it: crossed factors and correlated slopes at a
    nested level cannot be written.
    """
    if model.family is not None:
        return "statsmodels has no frequentist GLMM (only the Bayesian BinomialBayesMixedGLM)"
    if model.statsmodels is None:
        return "not expressible in MixedLM (crossed factors or correlated nested slopes)"
    return None


def fit(model: BenchModel, data: pd.DataFrame) -> float:
    """Fit ``MixedLM.from_formula(...).fit(reml=...)``; return −2 log L."""
    import statsmodels.formula.api as smf

    spec = model.statsmodels
    if spec is None:
        raise ValueError(unsupported(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = smf.mixedlm(
            spec.fixed,
            data,
            groups=spec.groups,
            re_formula=spec.re_formula,
            vc_formula=spec.vc_formula or None,
        ).fit(reml=model.reml)
    return -2.0 * float(fitted.llf)
