"""m.refit(y) (issue 18): a fit to a new response on the same design and blocks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.inference.bootstrap import simulate_responses

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.mark.parametrize("reml", [True, False])
def test_refit_equals_a_fresh_fit(sleep, reml):
    model = mm.lmer(FORMULA, sleep, reml=reml)
    before = (model.objective, model.theta.copy(), model.fixef.copy())
    ys = simulate_responses(model, 5, seed=18)
    for r in range(ys.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refitted = model.refit(ys[:, r])
            fresh = mm.lmer(FORMULA, sleep.assign(Reaction=ys[:, r]), reml=reml)
        assert refitted.objective == pytest.approx(fresh.objective, abs=1e-7)
        assert refitted.objective <= fresh.objective + 1e-7
        np.testing.assert_allclose(refitted.theta, fresh.theta, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(refitted.fixef, fresh.fixef, rtol=1e-6)
        assert refitted.sigma == pytest.approx(fresh.sigma, rel=1e-6)
        np.testing.assert_allclose(refitted.fitted, fresh.fitted, rtol=1e-6)
        np.testing.assert_allclose(refitted.coefs["std_error"], fresh.coefs["std_error"], rtol=1e-5)
        assert refitted.converged
    # The model refitted from is not changed.
    assert model.objective == before[0]
    np.testing.assert_array_equal(model.theta, before[1])
    np.testing.assert_array_equal(model.fixef, before[2])


def test_refit_with_weights_dropped_rows_and_crossed_terms():
    rng = np.random.default_rng(4)
    n = 400
    data = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "g": rng.integers(0, 30, n),
            "h": rng.integers(0, 8, n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )
    data.loc[[3, 77], "x"] = np.nan  # rows dropped: refit takes the rows used
    formula = "y ~ x + (1 | g) + (1 | h)"
    model = mm.lmer(formula, data, weights="w")
    kept = data.dropna()
    new_y = rng.normal(size=len(kept)) + rng.normal(size=30)[kept.g]
    refitted = model.refit(new_y)
    fresh = mm.lmer(formula, kept.assign(y=new_y), weights="w")
    assert refitted.nobs == model.nobs == len(kept)
    assert refitted.objective == pytest.approx(fresh.objective, abs=1e-7)
    np.testing.assert_allclose(refitted.fixef, fresh.fixef, rtol=1e-6, atol=1e-9)


def test_refit_refuses_bad_responses(sleep):
    model = mm.lmer(FORMULA, sleep)
    with pytest.raises(mm.DataError, match="one value per row used"):
        model.refit(np.ones(10))
    with pytest.raises(mm.DataError, match="missing or infinite"):
        y = sleep["Reaction"].to_numpy().copy()
        y[4] = np.nan
        model.refit(y)
    with pytest.raises(mm.NotFittedError):
        mm.LinearMixedModel(FORMULA, sleep).refit(sleep["Reaction"])
