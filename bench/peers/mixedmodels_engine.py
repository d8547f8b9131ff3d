"""mixedmodels itself: ``mixedmodels.lmer(formula, data)``."""

from __future__ import annotations

import warnings

import pandas as pd

from bench.models import BenchModel

NAME = "mixedmodels"
PACKAGE = "mixedmodels"
"""What the worker imports before timing, so no fit pays for the import."""


def unavailable() -> str | None:
    """None: the package under test is always there."""
    return None


def unsupported(_model: BenchModel) -> str | None:
    """None: every benchmark model is an lme4 formula."""
    return None


def fit(model: BenchModel, data: pd.DataFrame) -> float:
    """Fit with the defaults a user gets; return the REML criterion or deviance
    (−2 log L of a GLMM, lme4's Laplace objective)."""
    import mixedmodels as mm

    with warnings.catch_warnings():
        # Singular or near-boundary fits warn; the bench only times them.
        warnings.simplefilter("ignore")
        if model.family is not None:
            fitted = mm.glmer(model.formula, data, model.family, weights=model.weights)
        else:
            fitted = mm.lmer(model.formula, data, reml=model.reml)
    return float(fitted.objective)
