"""The fitted state is one immutable record; evaluating elsewhere never changes it (issue 12)."""

from __future__ import annotations

import dataclasses
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_data() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep(sleepstudy_slope_fit) -> mm.LinearMixedModel:
    return sleepstudy_slope_fit


def _snapshot(model: mm.LinearMixedModel) -> dict:
    return {
        "theta": model.theta,
        "fixef": model.fixef.to_numpy(),
        "sigma": model.sigma,
        "objective": model.objective,
        "ranef": model.ranef["Subject"].to_numpy(),
        "vcov": model.vcov.to_numpy(),
        "fitted": model.fitted.to_numpy(),
    }


def _assert_same(a: dict, b: dict) -> None:
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_state_is_frozen(sleep):
    state = sleep.state
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.sigma = 1.0
    for array in (state.theta, state.beta, state.unscaled_vcov, *state.modes):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0.0


def test_unfitted_model_says_so(sleep_data):
    model = mm.LinearMixedModel(FORMULA, sleep_data)
    assert not model.is_fitted
    for read in (lambda: model.fixef, lambda: model.state, lambda: model.coef_table()):
        with pytest.raises(mm.NotFittedError, match="fit"):
            read()
    assert "not fitted" in repr(model)


def test_evaluations_elsewhere_leave_the_fit_unchanged(sleep):
    before = _snapshot(sleep)
    sleep.objective_at(np.array([0.1, 0.0, 0.1]))
    sleep.objective_at(np.array([3.0, -1.0, 0.5]), reml=False)
    sleep.coef_table()
    sleep.coef_table(ddf="kenward-roger")
    sleep.ranef_cov  # noqa: B018
    sleep.confint(method="profile")
    sleep.bootstrap(5, seed=1)
    sleep.deviance  # noqa: B018
    _assert_same(before, _snapshot(sleep))


def test_concurrent_results_match_serial(sleep):
    serial = [sleep.objective_at(np.array([t, 0.0, t])) for t in np.linspace(0.2, 2, 16)]

    def work(t):
        return sleep.objective_at(np.array([t, 0.0, t]))

    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(work, np.linspace(0.2, 2, 16)))
    assert parallel == serial


def test_at_theta_gives_a_new_model_at_that_point(sleep):
    original = sleep.theta
    theta = original * 1.1
    moved = sleep.at_theta(theta)
    np.testing.assert_array_equal(moved.theta, theta)
    assert moved.objective == pytest.approx(sleep.objective_at(theta), rel=1e-12)
    assert moved.objective > sleep.objective
    assert moved.cross_products is sleep.cross_products
    np.testing.assert_array_equal(sleep.theta, original)
    with pytest.raises(ValueError, match="values"):
        sleep.at_theta(theta[:2])
    with pytest.raises(ValueError, match="lower bounds"):
        sleep.at_theta(-theta)


def test_refit_ml_is_the_ml_fit(sleep_data, sleep):
    ml = sleep.refit_ml()
    direct = mm.lmer(FORMULA, sleep_data, reml=False)
    assert not ml.reml and sleep.reml
    assert ml.objective == pytest.approx(direct.objective, abs=1e-6)
    np.testing.assert_allclose(ml.fixef, direct.fixef, rtol=1e-6)
    assert direct.refit_ml() is direct


def test_a_model_pickles_with_its_state(sleep):
    clone = pickle.loads(pickle.dumps(sleep))
    _assert_same(_snapshot(sleep), _snapshot(clone))
    assert clone.objective_at(sleep.theta) == pytest.approx(sleep.objective, rel=1e-12)


def test_model_from_cross_products_fits_like_the_original(sleep):
    rebuilt = mm.LinearMixedModel.from_cross_products(
        sleep.cross_products, sleep.design, reml=True, rows=sleep.rows
    ).fit()
    np.testing.assert_allclose(rebuilt.theta, sleep.theta, rtol=1e-6)
    assert rebuilt.objective == pytest.approx(sleep.objective, abs=1e-8)


def test_optimizer_summary_is_public_and_frozen(sleep):
    summary = sleep.optsum
    assert summary.n_evaluations > 0
    assert summary.seconds > 0
    np.testing.assert_array_equal(summary.final, sleep.theta)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.converged = False
