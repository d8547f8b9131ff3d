"""The PyPI package ``glmm`` (Rust kernel): ``glmm.fit(data, formula)``."""

from __future__ import annotations

import warnings

import pandas as pd

from bench.models import BenchModel
from bench.peers import python_package_missing

NAME = "glmm"
PACKAGE = "glmm"
"""What the worker imports before timing, so no fit pays for the import."""


def unavailable() -> str | None:
    """None if ``glmm`` imports, else how to install it."""
    return python_package_missing("glmm", 'pip install glmm, or pip install -e ".[bench]"')


def unsupported(_model: BenchModel) -> str | None:
    """None: glmm reads lme4 formulas."""
    return None


def fit(model: BenchModel, data: pd.DataFrame) -> float:
    """Fit; return −2 log L (REML or ML), comparable with lme4's criterion.

    ``satterthwaite=False`` skips glmm's optional degrees-of-freedom pass,
    which mixedmodels does not do during a fit either.
    """
    import glmm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model.family is not None:
            # A GLMM: Laplace by default, as lme4 (its documented call).
            weights = None if model.weights is None else data[model.weights].to_numpy(float)
            fitted = glmm.fit(data, model.formula, family=model.family, weights=weights)
        else:
            fitted = glmm.fit(data, model.formula, reml=model.reml, satterthwaite=False)
    return -2.0 * float(fitted.loglik)
