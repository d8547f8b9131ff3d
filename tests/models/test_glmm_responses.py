"""Responses, weights and offsets as R accepts them, and clear errors for bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import DataError, FormulaError, NonIntegerResponseWarning

RNG = np.random.default_rng(11)


def _binary(n=240, groups=12):
    g = RNG.integers(0, groups, n)
    x = RNG.normal(size=n)
    eta = -0.3 + 0.8 * x + RNG.normal(0, 0.7, groups)[g]
    y = RNG.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"g{k:02d}" for k in g]})


def _counts(n=200, groups=10):
    g = RNG.integers(0, groups, n)
    x = RNG.normal(size=n)
    exposure = RNG.uniform(0.5, 3.0, n)
    eta = np.log(exposure) + 0.2 + 0.5 * x + RNG.normal(0, 0.5, groups)[g]
    return pd.DataFrame(
        {"n": RNG.poisson(np.exp(eta)).astype(float), "x": x, "g": g.astype(str), "e": exposure}
    )


def _fit(formula, data, family="binomial", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.ConvergenceWarning)
        return mm.glmer(formula, data, family=family, **kwargs)


def _same_fit(a, b):
    assert a.objective == pytest.approx(b.objective, abs=1e-7)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def binary_fit():
    data = _binary()
    return data, _fit("y ~ x + (1 | g)", data)


def test_text_factor_and_boolean_responses_are_coded_as_glm(binary_fit):
    data, numeric = binary_fit
    text = data.assign(y=np.where(data["y"] == 1, "yes", "no"))
    before = text.copy()
    by_text = _fit("y ~ x + (1 | g)", text)
    pd.testing.assert_frame_equal(text, before)  # the caller's data are untouched
    _same_fit(by_text, numeric)
    assert by_text.response_levels == ["no", "yes"]
    _same_fit(_fit("y ~ x + (1 | g)", data.assign(y=data["y"] == 1)), numeric)
    # A factor's own level order decides which level is failure.
    reversed_levels = data.assign(
        y=pd.Categorical(np.where(data["y"] == 1, "a", "b"), categories=["b", "a"])
    )
    _same_fit(_fit("y ~ x + (1 | g)", reversed_levels), numeric)


def test_three_levels_are_refused(binary_fit):
    data, _ = binary_fit
    three = data.assign(y=np.resize(["a", "b", "c"], len(data)))
    with pytest.raises(DataError, match="has 3 levels"):
        mm.glmer("y ~ x + (1 | g)", three, family="binomial")


def test_cbind_proportions_and_weights_agree():
    data = _binary(n=60, groups=6)
    data["trials"] = RNG.integers(1, 9, len(data)).astype(float)
    p = 1 / (1 + np.exp(-(0.2 + 0.5 * data["x"])))
    data["s"] = RNG.binomial(data["trials"].astype(int), p).astype(float)
    by_counts = _fit("cbind(s, trials - s) ~ x + (1 | g)", data)
    by_weights = _fit("I(s / trials) ~ x + (1 | g)", data, weights="trials")
    _same_fit(by_counts, by_weights)
    assert by_counts.response_name == "cbind(s, trials - s)"
    # Prior weights multiply the trials: doubling every row is the data counted twice.
    doubled = _fit("cbind(s, trials - s) ~ x + (1 | g)", data, weights=np.full(len(data), 2.0))
    assert doubled.fixef.to_numpy() == pytest.approx(by_counts.fixef.to_numpy(), rel=0.2)


@pytest.mark.parametrize(
    ("formula", "family", "error", "message"),
    [
        ("cbind(s, f) ~ x + (1 | g)", "poisson", FormulaError, "binomial family"),
        ("cbind(s) ~ x + (1 | g)", "binomial", FormulaError, "two columns"),
        ("cbind(s, f, s) ~ x + (1 | g)", "binomial", FormulaError, "two columns"),
        ("cbind(s, zero) ~ x + (1 | g)", "binomial", DataError, "no trials"),
        ("cbind(s, negative) ~ x + (1 | g)", "binomial", DataError, "must be counts"),
        ("cbind(s, system(f)) ~ x + (1 | g)", "binomial", FormulaError, "not allowed"),
    ],
)
def test_bad_cbind_responses(formula, family, error, message):
    data = pd.DataFrame(
        {
            "s": [1.0, 2.0, 0.0, 3.0] * 5,
            "f": [2.0, 1.0, 3.0, 0.0] * 5,
            "zero": [1.0] * 20,
            "negative": [-1.0, 2.0, 1.0, 1.0] * 5,
            "x": np.arange(20.0),
            "g": list("abcde") * 4,
        }
    )
    data.loc[2, "zero"] = 0.0  # row 2 has s = 0 too: no trials
    with pytest.raises(error, match=message):
        mm.glmer(formula, data, family=family)


@pytest.mark.parametrize(("value", "message"), [(0.0, "is zero"), (-2.0, "is negative")])
def test_zero_or_negative_weights_are_refused(value, message):
    data = _binary(n=40, groups=4)
    weights = np.r_[value, np.full(39, 3.0)]
    with pytest.raises(DataError, match=f"weights must be positive: 1 {message}"):
        mm.glmer("y ~ x + (1 | g)", data, family="binomial", weights=weights)


def test_bad_binomial_responses():
    data = _binary(n=40, groups=4)
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        mm.glmer("y ~ x + (1 | g)", data.assign(y=data["y"] * 3), family="binomial")
    proportions = data.assign(y=np.where(data["y"] > 0, 0.5, 0.25))
    with pytest.raises(DataError, match="whole numbers"):
        mm.glmer("y ~ x + (1 | g)", proportions, family="binomial", weights=np.full(40, 2.5))
    with pytest.warns(NonIntegerResponseWarning):
        _fit("y ~ x + (1 | g)", proportions)


def test_offset_as_array_column_or_expression_is_one_model():
    data = _counts()
    by_array = _fit("n ~ x + (1 | g)", data, "poisson", offset=np.log(data["e"].to_numpy()))
    data["log_e"] = np.log(data["e"])
    _same_fit(_fit("n ~ x + (1 | g)", data, "poisson", offset="log_e"), by_array)
    _same_fit(_fit("n ~ x + (1 | g)", data, "poisson", offset="log(e)"), by_array)
    without = _fit("n ~ x + (1 | g)", data, "poisson")
    assert without.objective != pytest.approx(by_array.objective)
    # The offset enters the linear predictor.
    assert by_array.linear_predictor.iloc[0] == pytest.approx(
        np.log(by_array.fitted.iloc[0]), rel=1e-12
    )


def test_offset_follows_the_rows_dropped_for_missing_values():
    data = _counts()
    offset = np.log(data["e"].to_numpy())
    holes = data.copy()
    holes.loc[[3, 50, 120], "x"] = np.nan
    with_holes = _fit("n ~ x + (1 | g)", holes, "poisson", offset=offset)
    keep = holes["x"].notna().to_numpy()
    dropped = _fit("n ~ x + (1 | g)", data[keep], "poisson", offset=offset[keep])
    _same_fit(with_holes, dropped)
    assert with_holes.nobs == len(data) - 3


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (np.zeros(5), "one value per row"),
        (np.r_[np.inf, np.zeros(199)], "offset 'offset=' is infinite"),
        ("nonexistent_column + 1", "cannot evaluate|not"),
    ],
)
def test_bad_offsets(offset, message):
    with pytest.raises((DataError, FormulaError), match=message):
        mm.glmer("n ~ x + (1 | g)", _counts(), family="poisson", offset=offset)


def test_a_missing_offset_drops_its_row_as_r_does():
    """R's model.frame puts the offset among the variables: NA there drops the row."""
    data = _counts()
    offset = np.log(data["e"].to_numpy())
    offset[7] = np.nan
    model = _fit("n ~ x + (1 | g)", data, "poisson", offset=offset)
    assert model.nobs == len(data) - 1
    assert 7 not in model.fitted.index
    keep = np.arange(len(data)) != 7
    _same_fit(model, _fit("n ~ x + (1 | g)", data[keep], "poisson", offset=offset[keep]))


def test_offset_terms_in_the_formula_and_the_argument_add_up():
    data = _counts()
    data["half"] = 0.5 * np.log(data["e"])
    both = _fit("n ~ x + offset(half) + (1 | g)", data, "poisson", offset="half")
    whole = _fit("n ~ x + (1 | g)", data, "poisson", offset="log(e)")
    _same_fit(both, whole)
    # New rows compute their own offset, from the formula term or the expression.
    new = data.head(5)
    np.testing.assert_allclose(both.predict(new), whole.predict(new), rtol=1e-7)
    np.testing.assert_allclose(whole.predict(new), whole.predict().iloc[:5], rtol=1e-7)


def test_count_responses():
    data = _counts()
    with pytest.raises(DataError, match="must be counts"):
        mm.glmer("n ~ x + (1 | g)", data.assign(n=-data["n"] - 1), family="poisson")
    with pytest.warns(NonIntegerResponseWarning):
        _fit("n ~ x + (1 | g)", data.assign(n=data["n"] + 0.5), "poisson")


def test_quadrature_needs_one_scalar_term():
    data = _binary()
    data["h"] = RNG.integers(0, 5, len(data)).astype(str)
    with pytest.raises(ValueError, match="single, scalar random-effects term"):
        mm.glmer("y ~ x + (1 | g) + (1 | h)", data, family="binomial", nagq=5)
    with pytest.raises(ValueError, match="single, scalar random-effects term"):
        mm.glmer("y ~ x + (x | g)", data, family="binomial", nagq=5)
    with pytest.raises(ValueError, match="non-negative integer"):
        mm.glmer("y ~ x + (1 | g)", data, family="binomial", nagq=-1)


def test_no_random_effects_and_gaussian_are_refused():
    data = _binary()
    with pytest.raises(FormulaError, match="no random-effects terms"):
        mm.glmer("y ~ x", data, family="binomial")
    with pytest.raises(ValueError, match="lmer"):
        mm.glmer("y ~ x + (1 | g)", data, family="gaussian")


def test_observation_level_effects_are_allowed():
    data = _counts(n=80, groups=8)
    data["obs"] = np.arange(len(data)).astype(str)
    model = _fit("n ~ x + (1 | g) + (1 | obs)", data, "poisson")
    assert model.design.terms[0].n_levels == len(data)


def test_nagq0_and_laplace_reach_close_optima(binary_fit):
    data, laplace = binary_fit
    fast = _fit("y ~ x + (1 | g)", data, nagq=0)
    assert fast.stderr_source == "RX"
    assert laplace.stderr_source == "Hessian"
    np.testing.assert_allclose(fast.fixef, laplace.fixef, atol=0.05)
    # At its own θ, β, the Laplace objective is no higher than at nAGQ = 0's.
    assert laplace.objective <= laplace.objective_at(fast.theta, fast.fixef) + 1e-8


def test_complete_separation_is_a_boundary_fit_with_a_warning():
    """Every outcome predicted by x: lme4 stops ("pwrssUpdate did not converge"); here the
    likelihood's limit is returned, the separating coefficients far out, with a warning."""
    n = 200
    x = RNG.normal(size=n)
    data = pd.DataFrame(
        {"y": (x > 0).astype(float), "x": x, "g": RNG.integers(0, 10, n).astype(str)}
    )
    with pytest.warns(mm.SeparationWarning, match=r"estimates of \(Intercept\), x head to ±∞"):
        model = mm.glmer("y ~ x + (1 | g)", data, family="binomial")
    assert model.separation == ["(Intercept)", "x"]
    assert model.is_singular and not model.converged
    assert issubclass(mm.SeparationWarning, mm.SingularFitWarning)
    # Every row fitted exactly: probabilities at the ends, the variances not identified.
    fitted = model.fitted.to_numpy()
    np.testing.assert_allclose(fitted, data["y"], atol=1e-9)
    assert model.theta[0] == 0.0
    assert model.objective == pytest.approx(0.0, abs=1e-6)
    assert any("separation" in note for note in model.summary().notes)


def test_quasi_complete_separation_fits_the_other_rows_at_their_limit():
    """One level of f has only successes: (Intercept) and fb head to ±∞ together while
    their sum, the log-odds of level b, stays finite at the fit of b's rows alone."""
    n = 240
    g = RNG.integers(0, 12, n)
    f = np.where(np.arange(n) % 4 == 0, "a", "b")
    eta = 0.3 + RNG.normal(0, 0.6, 12)[g]
    y = np.where(f == "a", 1.0, RNG.binomial(1, 1 / (1 + np.exp(-eta))).astype(float))
    data = pd.DataFrame({"y": y, "f": f, "g": g.astype(str)})
    with pytest.warns(mm.SeparationWarning, match="60 rows exactly"):
        model = mm.glmer("y ~ f + (1 | g)", data, family="binomial")
    assert model.separation == ["(Intercept)", "fb"]
    beta = model.fixef
    assert beta["(Intercept)"] > 20 and beta["fb"] < -20
    assert model.coefs["std_error"].min() > 100  # meaningless, and shown to be
    b_rows = data[data["f"] == "b"]
    alone = _fit("y ~ 1 + (1 | g)", b_rows)
    assert beta.sum() == pytest.approx(alone.fixef["(Intercept)"], abs=1e-5)
    np.testing.assert_allclose(model.theta, alone.theta, rtol=1e-4)
    # The limit's objective: level a's rows add nothing to −2 log L.
    assert model.objective == pytest.approx(alone.objective, abs=1e-6)
    np.testing.assert_allclose(model.fitted[data["f"] == "a"], 1.0, atol=1e-10)


def test_a_level_without_counts_separates_poisson_outcomes():
    data = _counts(n=160, groups=8)
    data["k"] = np.where(np.arange(len(data)) % 5 == 0, "none", "some")
    data.loc[data["k"] == "none", "n"] = 0.0
    with pytest.warns(mm.SeparationWarning):
        model = mm.glmer("n ~ x + k + (1 | g)", data, family="poisson")
    assert model.separation == ["(Intercept)", "ksome"]


def test_pirls_failure_names_the_model():
    n = 200
    x = RNG.normal(size=n)
    data = pd.DataFrame(
        {"y": RNG.poisson(np.exp(2 * x)).astype(float), "x": x, "g": RNG.integers(0, 8, n)}
    )
    family = mm.families.Poisson("identity")
    with pytest.raises(mm.MixedModelsError, match=r"'y ~ x \+ \(1 \| g\)' \(poisson, identity"):
        mm.glmer("y ~ x + (1 | g)", data.astype({"g": str}), family=family)


def test_gamma_response_fitted_exactly_is_refused():
    # Found by fuzzing: x is a function of the factor s, so the residual deviance is
    # rounding error and the dispersion estimated from it zero or noise (a division
    # by zero, or an objective of -3068 from that noise).
    data = pd.DataFrame({"x": [2.0, 1.0, 2.0], "s": list("pqp"), "h": list("uvu")})
    with pytest.raises(DataError, match=r"fits the response exactly.*response 'x', Gamma"):
        mm.glmer("x ~ s + (1 | h)", data, "Gamma")
