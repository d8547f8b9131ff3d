"""Starting values for θ from moment estimates (mixedmodels.start)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.engine.start import moment_start, start_steps
from mixedmodels.models.lmm import LinearMixedModel


def _simulated(rng, n_groups=400, per_group=25):
    """y ~ x + (x | g) with σ = 2, sd(intercept) = 3, sd(slope) = 1, correlation 0.5."""
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    cov = np.array([[9.0, 1.5], [1.5, 1.0]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=n_groups)
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(scale=2.0, size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g}), cov / 4.0


def test_moment_start_is_near_the_truth():
    data, relative = _simulated(np.random.default_rng(5))
    model = LinearMixedModel("y ~ x + (x | g)", data)
    theta = moment_start(model.cross_products, model.design.terms)
    lam = model.design.terms[0].lambda_matrix(theta)
    np.testing.assert_allclose(lam @ lam.T, relative, rtol=0.25, atol=0.05)


def test_moment_start_needs_residuals_in_the_y_blocks():
    data, _ = _simulated(np.random.default_rng(6), n_groups=50)
    model = LinearMixedModel("y ~ x + (1 | g)", data)
    cp = model.cross_products
    cp_raw = type(cp)(**{**cp.__dict__, "beta_offset": None})
    assert moment_start(cp_raw, model.design.terms) is None


def test_start_steps_keep_starts_off_their_bounds():
    start = np.array([0.01, -0.2, 2.0])
    lower = np.array([0.0, -np.inf, 0.0])
    lifted, steps = start_steps(start, lower)
    np.testing.assert_allclose(steps, [0.05, 0.06, 0.5])
    np.testing.assert_allclose(lifted, [0.05, -0.2, 2.0])


@pytest.mark.parametrize(
    "dataset, formula",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
        ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
    ],
)
def test_moment_and_lme4_starts_reach_the_same_fit(dataset, formula):
    data = mm.datasets.load(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = mm.lmer(formula, data)
        lme4 = mm.lmer(formula, data, start="lme4")
    assert ours.objective == pytest.approx(lme4.objective, abs=1e-6)
    np.testing.assert_allclose(ours.theta, lme4.theta, rtol=1e-3, atol=1e-4)


def test_unknown_start_is_refused():
    data = mm.datasets.load("sleepstudy")
    model = LinearMixedModel("Reaction ~ Days + (1 | Subject)", data)
    with pytest.raises(ValueError, match="'lme4'"):
        model.fit(start="identity")
