"""A GLMM's inference: residuals of every type, conditional variances, profile and
bootstrap intervals, simulation from every family — against lme4 where it has the
same thing (tests/data/glmm_results, made by dev/make_glmm_results_reference.R)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError
from mixedmodels.families import Binomial, Gamma, InverseGaussian, NegativeBinomial, Poisson
from mixedmodels.inference.glmm_bootstrap import draw_responses

from .test_glmm_reference import DATA, fitted

RESULTS = Path(__file__).parent.parent / "data" / "glmm_results"


def _results():
    for path in sorted(RESULTS.glob("*.json")):
        yield pytest.param(json.loads(path.read_text()), id=path.stem)


@pytest.mark.parametrize("result", _results())
def test_residuals_of_every_type_and_fitted_values_are_lme4_s(result):
    _, model = fitted(DATA / f"{result['id']}.json")
    for kind, theirs in result["residuals"].items():
        ours = model.residuals(type=kind).to_numpy()[: len(theirs)]
        scale = np.max(np.abs(theirs))
        np.testing.assert_allclose(ours, theirs, atol=1e-3 * scale, err_msg=kind)
    np.testing.assert_allclose(model.fitted.to_numpy()[:20], result["fitted"], rtol=1e-3)


@pytest.mark.parametrize("result", _results())
def test_conditional_variances_are_lme4_s(result):
    _, model = fitted(DATA / f"{result['id']}.json")
    ours = model.ranef_cov
    for group in result["condvar"]:
        levels = list(model.ranef[group["group"]].index.astype(str))
        at = [levels.index(label) for label in group["levels"]]
        mine = ours[group["group"]][at]
        theirs = np.array(group["postvar"], dtype=float).reshape(mine.shape)
        np.testing.assert_allclose(mine, theirs, rtol=2e-3, atol=1e-8)


def _profile_matches(name: str) -> None:
    ref, model = fitted(DATA / f"{name}.json")
    theta = model.theta
    ci = model.confint(method="profile", progress=False)
    profile = ref["confint"]["profile"]
    assert list(ci.index) == profile["names"]
    lower = np.array(profile["lower"], dtype=float)
    upper = np.array(profile["upper"], dtype=float)
    width = upper - lower
    np.testing.assert_array_less(np.abs(ci["lower"].to_numpy() - lower), 2e-3 * width)
    np.testing.assert_array_less(np.abs(ci["upper"].to_numpy() - upper), 2e-3 * width)
    # Profiling evaluates on a workspace of its own: the fit is as it was.
    np.testing.assert_array_equal(model.theta, theta)
    beta = model.fixef.to_numpy()
    assert model.objective_at(theta, beta) == pytest.approx(model.objective, abs=1e-8)


@pytest.mark.parametrize("name", ["cbpp_trials_logit", "mmmec_offset_poisson"])
def test_profile_intervals_are_lme4_s(name):
    _profile_matches(name)


def test_profile_intervals_of_three_crossed_terms_are_lme4_s():
    """Three crossed terms, one variance on its bound (LOCATION): a few seconds."""
    _profile_matches("grouseticks_poisson")


def test_profile_table_is_the_walk_behind_the_intervals():
    _, model = fitted(DATA / "cbpp_trials_logit.json")
    table = model.profile(progress=False)
    assert list(dict.fromkeys(table["parameter"])) == [
        "sd_(Intercept)|herd",
        *model.design.fixed_names,
    ]
    for name, part in table.groupby("parameter", sort=False):
        part = part.sort_values("value")
        zeta = part["zeta"].to_numpy()
        assert np.all(np.diff(zeta) > 0), name  # ζ increases with the parameter
        assert zeta.min() < -1.96 < 1.96 < zeta.max()
    estimate = table[(table.parameter == "period2") & (table.zeta == 0.0)]["value"]
    assert float(estimate.iloc[0]) == pytest.approx(model.fixef["period2"])


def test_profiles_lme4_does_not_have_are_refused():
    _, gamma = fitted(DATA / "gcsemv_gamma_log_na.json")
    with pytest.raises(ArgumentError, match="scale parameter"):
        gamma.confint(method="profile")
    _, nagq0 = fitted(DATA / "grouseticks_poisson_nagq0.json")
    with pytest.raises(ArgumentError, match="nagq=0"):
        nagq0.profile()


def test_default_intervals_are_profile_ones_as_lme4():
    _, model = fitted(DATA / "mmmec_offset_poisson.json")
    default = model.confint(progress=False)
    pd.testing.assert_frame_equal(default, model.confint("profile", progress=False))


# -- simulation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "variance"),
    [
        (Binomial(), lambda mu, w, s2: mu * (1 - mu) / w),
        (Poisson(), lambda mu, w, s2: mu),
        (NegativeBinomial(2.5), lambda mu, w, s2: mu + mu**2 / 2.5),
        (Gamma("log"), lambda mu, w, s2: s2 * mu**2 / w),
        (InverseGaussian("log"), lambda mu, w, s2: s2 * mu**3 / w),
    ],
    ids=lambda f: getattr(f, "name", ""),
)
def test_each_family_draws_responses_with_its_mean_and_variance(family, variance):
    """The responses drawn at given means: their moments, from 20 000 draws per row."""
    rng = np.random.default_rng(5)
    mu = np.array([0.2, 0.5, 0.7, 0.35, 0.6, 0.9])
    if not isinstance(family, Binomial):
        mu = mu * 4
    weights = np.array([1.0, 3.0, 5.0, 2.0, 1.0, 4.0])
    sigma = 1.3 if family.has_dispersion else 1.0
    draws = np.column_stack(
        [draw_responses(family, mu, weights, sigma, rng) for _ in range(20_000)]
    )
    np.testing.assert_allclose(draws.mean(axis=1), mu, rtol=0.06, atol=0.01)
    w = weights if isinstance(family, (Binomial, Gamma, InverseGaussian)) else np.ones(6)
    np.testing.assert_allclose(draws.var(axis=1), variance(mu, w, sigma**2), rtol=0.2)


def test_simulate_is_reproducible_and_shaped_as_the_rows():
    _, model = fitted(DATA / "cbpp_trials_logit.json")
    a = model.simulate(3, seed=11)
    b = model.simulate(3, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["sim_1", "sim_2", "sim_3"]
    assert a.index.equals(model.fitted.index)
    trials = model.prior_weights
    successes = a.to_numpy() * trials[:, None]
    np.testing.assert_allclose(successes, np.round(successes), atol=1e-9)
    assert ((a >= 0) & (a <= 1)).all().all()
    assert not a.equals(model.simulate(3, seed=12))


def test_non_integer_trials_cannot_be_simulated():
    data = pd.DataFrame(
        {"y": [0.0, 1.0, 1.0, 0.0] * 5, "w": [1.0, 1.5, 2.5, 1.0] * 5, "g": list("abcde") * 4}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mm.glmer("y ~ 1 + (1 | g)", data, weights="w")
    with pytest.raises(ArgumentError, match="non-integer prior weights"):
        model.simulate(1)


# -- the parametric bootstrap -----------------------------------------------------------


def test_bootstrap_replicates_and_intervals():
    _, model = fitted(DATA / "cbpp_trials_logit.json")
    boot = model.bootstrap(60, seed=3, progress=False)
    again = model.bootstrap(60, seed=3, progress=False)
    pd.testing.assert_frame_equal(boot.replicates, again.replicates)
    replicates = boot.replicates
    assert list(replicates.columns) == [
        "objective",
        "sigma",
        *model.design.fixed_names,
        *model.theta_names,
    ]
    assert replicates.notna().all().all()
    assert (replicates["sigma"] == 1.0).all()
    # The refits scatter around the estimates about as the standard errors say.
    spread = replicates[model.design.fixed_names].std()
    ratio = spread / model.coefs["std_error"]
    assert ratio.between(0.6, 1.5).all(), ratio
    ci = model.confint(method="bootstrap", n_boot=60, seed=3, progress=False)
    assert list(ci.index) == ["sd_(Intercept)|herd", *model.design.fixed_names]
    pd.testing.assert_frame_equal(ci, boot.confint())
    estimates = np.concatenate([model.theta, model.fixef.to_numpy()])
    assert np.all((ci["lower"] < estimates) & (estimates < ci["upper"]))


def test_bootstrap_of_a_model_with_a_scale_keeps_sigma():
    _, model = fitted(DATA / "gcsemv_gamma_log_na.json")
    boot = model.bootstrap(4, seed=1, progress=False)
    assert boot.replicates["sigma"].between(0.5 * model.sigma, 2 * model.sigma).all()
    assert list(boot.sdcor().columns) == ["sd_(Intercept)|school", "sigma"]
    assert math.isfinite(boot.confint().loc["sigma", "upper"])
