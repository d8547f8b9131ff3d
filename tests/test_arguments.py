"""Public arguments are checked where they enter, with messages naming them (issue 15)."""

from __future__ import annotations

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


@pytest.mark.parametrize("bad", ["False", "True", 0, 1, None, "REML"])
def test_reml_must_be_a_boolean(sleep_data, bad):
    with pytest.raises(mm.ArgumentError, match="reml must be True or False"):
        mm.lmer(FORMULA, sleep_data, reml=bad)
    with pytest.raises(TypeError, match="reml"):
        mm.LinearMixedModel(FORMULA, sleep_data, reml=bad)


def test_lme4_spelling_of_reml(sleep_data, sleep):
    ml = mm.lmer(FORMULA, sleep_data, REML=False)
    assert not ml.reml
    assert ml.objective == pytest.approx(mm.lmer(FORMULA, sleep_data, reml=False).objective)
    assert mm.lmer(FORMULA, sleep_data, REML=True).objective == pytest.approx(sleep.objective)
    with pytest.raises(mm.ArgumentError, match="not both"):
        mm.lmer(FORMULA, sleep_data, reml=False, REML=True)


@pytest.mark.parametrize("bad", ["0.9", None, True, [0.9]])
def test_confidence_level_of_the_wrong_kind(sleep, bad):
    with pytest.raises(mm.ArgumentError, match="level must be a number"):
        sleep.confint(method="wald", level=bad)


@pytest.mark.parametrize("bad", [0, 1, 95, -0.5, float("nan")])
def test_confidence_level_out_of_range(sleep, bad):
    with pytest.raises(mm.MixedModelsError, match="level must be between 0 and 1"):
        sleep.confint(method="wald", level=bad)


@pytest.mark.parametrize("bad", ["x", 1.5, -1, True, object()])
def test_seed_of_the_wrong_kind(sleep, bad):
    with pytest.raises(mm.MixedModelsError, match="seed must be"):
        sleep.bootstrap(2, seed=bad)
    with pytest.raises(mm.MixedModelsError, match="seed must be"):
        sleep.simulate(1, seed=bad)


def test_seeds_numpy_accepts(sleep):
    a = sleep.simulate(2, seed=np.random.default_rng(5))
    b = sleep.simulate(2, seed=5)
    c = sleep.simulate(2, seed=np.random.SeedSequence(5))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(b, c)


@pytest.mark.parametrize("bad", [2.0, "3", 0, -1, False])
def test_counts(sleep, bad):
    with pytest.raises(mm.MixedModelsError, match="n must be a positive integer"):
        sleep.simulate(bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.coef_table(ddf=3), "ddf must be one of"),
        (lambda m: m.coef_table(ddf="welch"), "unknown ddf 'welch'"),
        (lambda m: m.confint(method="boot-t"), "unknown method 'boot-t'"),
        (lambda m: m.predict(random="no"), "random must be True or False"),
        (lambda m: m.predict(allow_new_levels=1), "allow_new_levels must be True or False"),
        (lambda m: m.predict(re_form="~(1|Subject)"), "re_form must be None"),
    ],
)
def test_method_arguments(sleep, call, message):
    with pytest.raises(mm.MixedModelsError, match=message):
        call(sleep)


def test_re_form_spellings(sleep):
    marginal = sleep.predict(random=False)
    pd.testing.assert_series_equal(sleep.predict(re_form="NA"), marginal)
    pd.testing.assert_series_equal(sleep.predict(re_form=float("nan")), marginal)
    pd.testing.assert_series_equal(sleep.predict(re_form=None), sleep.predict())


def test_fit_arguments(sleep_data):
    model = mm.LinearMixedModel(FORMULA, sleep_data)
    with pytest.raises(mm.ArgumentError, match="warn"):
        model.fit(warn="no")
    with pytest.raises(mm.ArgumentError, match="check_convergence"):
        model.fit(check_convergence="yes")
    with pytest.raises(mm.ArgumentError, match="max_restarts"):
        model.fit(max_restarts=-1)
    assert not model.is_fitted


def test_anova_refuses_what_is_not_a_model(sleep):
    for other in ["m1", 3, None, pd.DataFrame()]:
        with pytest.raises(TypeError, match="argument 2"):
            mm.anova(sleep, other)
    with pytest.raises(mm.ArgumentError, match="refit"):
        mm.anova(sleep, sleep, refit="yes")
    with pytest.raises(mm.ArgumentError, match="names"):
        mm.anova(sleep, sleep, names="ab")


def test_anova_refuses_models_of_different_data_with_the_same_rows(sleep_data):
    # Same number of rows, same column names: only the values differ.  lme4
    # refuses such a comparison; a χ² of two unrelated fits would mean nothing.
    other = sleep_data.assign(Reaction=sleep_data["Reaction"].to_numpy()[::-1])
    m0 = mm.lmer("Reaction ~ 1 + (1 | Subject)", sleep_data)
    m1 = mm.lmer(FORMULA, other)
    with pytest.raises(mm.MixedModelsError, match="not fitted to the same data"):
        mm.anova(m0, m1)
    weighted = mm.lmer(FORMULA, sleep_data.assign(w=2.0), weights="w")
    with pytest.raises(mm.MixedModelsError, match="not fitted to the same data"):
        mm.anova(m0, weighted)


def test_anova_of_nested_models_still_works(sleep_data, sleep):
    m0 = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep_data)
    table = mm.anova(m0, sleep, names=["intercept", "slope"])
    assert list(table.index) == ["intercept", "slope"]
    assert table["chisq"].iloc[1] > 0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: m.at_theta("x"), mm.ArgumentError, "theta must be 3 numbers"),
        (lambda m: m.at_theta([1.0]), mm.MixedModelsError, "theta must have 3 values"),
        (lambda m: m.at_theta([np.nan, 0.0, 1.0]), mm.MixedModelsError, "theta must be finite"),
        (lambda m: m.at_theta([-1.0, 0.0, 1.0]), mm.MixedModelsError, "lower bounds"),
        (lambda m: m.objective_at({"a": 1}), mm.ArgumentError, "theta must be 3 numbers"),
        # A θ of the wrong length was evaluated anyway.
        (lambda m: m.objective_at([1.0]), mm.MixedModelsError, "theta must have 3 values"),
        (lambda m: m.objective_at(m.theta, reml="no"), mm.ArgumentError, "reml must be"),
        (lambda m: m.coef_table(conf_int="yes"), mm.ArgumentError, "conf_int must be"),
        (lambda m: m.coef_table(conf_int=True, level="95%"), mm.ArgumentError, "level must"),
    ],
)
def test_theta_and_table_arguments(sleep, call, error, message):
    with pytest.raises(error, match=message):
        call(sleep)


@pytest.mark.parametrize(
    ("start", "error", "message"),
    [
        ("x", mm.MixedModelsError, "unknown start 'x'"),
        ([1.0, 2.0], mm.MixedModelsError, "start must have 3 values"),
        ([np.inf, 0.0, 1.0], mm.MixedModelsError, "start must be finite"),
        (["a", "b", "c"], mm.ArgumentError, "start must be 3 numbers"),
    ],
)
def test_fit_start(sleep_data, start, error, message):
    # Were numpy's or the engine's ValueError, or a fit from a NaN start.
    model = mm.LinearMixedModel(FORMULA, sleep_data)
    with pytest.raises(error, match=message):
        model.fit(start=start)


def test_weights_given_as_text_are_refused(sleep_data):
    # pandas would read "1.5" as a number; R refuses weights that are not numeric.
    with pytest.raises(mm.DataError, match="weights must be numbers, not text"):
        mm.lmer(FORMULA, sleep_data, weights=["1.5"] * len(sleep_data))
    data = sleep_data.assign(w="2")
    with pytest.raises(mm.DataError, match="weights column 'w' must be numbers"):
        mm.lmer(FORMULA, data, weights="w")
