"""The PyPI package ``mixedlm`` (an lme4 port): ``mixedlm.lmer(formula, data)``."""

from __future__ import annotations

import warnings

import pandas as pd

from bench.models import BenchModel
from bench.peers import python_package_missing

NAME = "mixedlm"
PACKAGE = "mixedlm"
"""What the worker imports before timing, so no fit pays for the import."""


def unavailable() -> str | None:
    """None if ``mixedlm`` imports, else how to install it."""
    return python_package_missing("mixedlm", 'pip install mixedlm, or pip install -e ".[bench]"')


def unsupported(_model: BenchModel) -> str | None:
    """None: mixedlm reads lme4 formulas."""
    return None


def fit(model: BenchModel, data: pd.DataFrame) -> float:
    """Fit with mixedlm's defaults; return −2 log L (REML or ML)."""
    import mixedlm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model.family is not None:
            # A GLMM: mixedlm's glmer, Laplace by default (nAGQ = 1), as lme4.
            family = {"binomial": mixedlm.families.Binomial, "poisson": mixedlm.families.Poisson}
            weights = None if model.weights is None else data[model.weights].to_numpy(float)
            fitted = mixedlm.glmer(
                model.formula, data, family=family[model.family](), weights=weights
            )
        else:
            fitted = mixedlm.lmer(model.formula, data, REML=model.reml)
    return -2.0 * float(fitted.logLik().value)
