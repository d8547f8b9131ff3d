"""Families and links: R's formulas, checked against scipy's distributions and derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st

from mixedmodels.engine.glm_kernels import compiled, family_codes
from mixedmodels.errors import DataError
from mixedmodels.families import (
    Binomial,
    Gamma,
    InverseGaussian,
    Link,
    NegativeBinomial,
    NonIntegerResponseWarning,
    Poisson,
    get_family,
)

RNG = np.random.default_rng(20240601)


def _data(family, n=200):
    """A response in the family's support and linear predictors in the link's domain."""
    if isinstance(family, Binomial):
        eta = RNG.normal(0.0, 1.5, n)
        if family.link.name == "log":
            eta = -np.abs(eta) - 0.05
        return RNG.integers(0, 2, n).astype(float), eta
    if isinstance(family, (Poisson, NegativeBinomial)):
        eta = RNG.normal(1.0, 0.5, n)
        if family.link.name in ("sqrt", "identity"):
            eta = np.abs(eta) + 0.5
        return RNG.poisson(3.0, n).astype(float), eta
    eta = RNG.normal(1.0, 0.2, n)
    if family.link.name in ("inverse", "1/mu^2", "identity"):
        eta = np.abs(eta) + 0.5
    return RNG.gamma(2.0, 1.0, n), eta


ALL_FAMILIES = [
    *(Binomial(link) for link in Binomial.links),
    *(Poisson(link) for link in Poisson.links),
    *(Gamma(link) for link in Gamma.links),
    *(InverseGaussian(link) for link in InverseGaussian.links),
    NegativeBinomial(2.5),
    NegativeBinomial(0.7, "sqrt"),
]


@pytest.mark.parametrize("name", Link.NAMES)
def test_link_inverse_and_derivative(name):
    link = Link(name)
    mu = np.linspace(0.1, 0.9, 17)
    eta = link.link(mu)
    np.testing.assert_allclose(link.inverse(eta), mu, rtol=1e-12)
    h = 1e-6
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-6)


def test_links_clamp_as_lme4():
    eps = np.finfo(float).eps
    assert Link("logit").inverse(np.array([-800.0]))[0] == eps
    assert Link("logit").inverse(np.array([800.0]))[0] == 1 - eps
    assert Link("log").inverse(np.array([-800.0]))[0] == eps
    assert Link("cloglog").mu_eta(np.array([800.0]))[0] == eps


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=repr)
def test_deviance_and_aic_are_the_distributions(family):
    y, eta = _data(family)
    mu = family.link.inverse(eta)
    w = np.ones_like(y)
    dev = family.deviance_residuals(y, mu, w)
    assert np.all(dev >= -1e-12)
    np.testing.assert_allclose(family.deviance_residuals(y, y.clip(1e-300), w), 0.0, atol=1e-9)
    if isinstance(family, Binomial):
        logp = st.binom.logpmf(y, 1, mu)
    elif isinstance(family, Poisson):
        logp = st.poisson.logpmf(y, mu)
    elif isinstance(family, NegativeBinomial):
        th = family.theta
        logp = st.nbinom.logpmf(y, th, th / (th + mu))
    elif isinstance(family, Gamma):
        phi = dev.sum() / len(y)
        logp = st.gamma.logpdf(y, 1 / phi, scale=mu * phi)
    else:
        phi = dev.sum() / len(y)
        logp = st.invgauss.logpdf(y, mu * phi, scale=1 / phi)
    extra = 2.0 if family.has_dispersion else 0.0
    assert family.aic(y, mu, w, dev.sum()) == pytest.approx(-2 * logp.sum() + extra, rel=1e-10)
    # The deviance is twice the log-likelihood ratio to the saturated model (μ = y).
    if not family.has_dispersion:
        saturated = family.aic(y, np.where(y > 0, y, 1e-300), w, 0.0)
        if isinstance(family, Binomial):
            saturated = family.aic(y, y.clip(1e-300, 1 - 1e-16), w, 0.0)
        assert family.aic(y, mu, w, 0.0) == pytest.approx(dev.sum() + saturated, rel=1e-9)


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=repr)
def test_compiled_row_pass_matches_the_family(family):
    row_pass = compiled()[0] if compiled() is not None else None
    if row_pass is None:
        pytest.skip("numba is not installed")
    y, eta = _data(family)
    n = len(y)
    w = RNG.uniform(0.5, 2.0, n)
    # η = base + z·b[level] for one term with two columns.
    codes = RNG.integers(0, 3, n)
    z = np.column_stack([np.ones(n), RNG.normal(0, 0.05, n)])
    b = RNG.normal(0, 0.05, (3, 2))
    base = eta - np.einsum("nq,nq->n", z, b[codes])
    working_base = RNG.normal(size=n)
    out = [np.empty(n) for _ in range(4)]
    previous = eta + RNG.normal(0, 0.1, n)
    deviance, change = row_pass(
        *family_codes(family),
        y,
        w,
        base,
        working_base,
        codes[None, :].astype(np.int64),
        z,
        np.array([0, 2]),
        b.ravel(),
        np.array([0, 6]),
        previous,
        *out,
    )
    eta_out, mu, weights, response = out
    np.testing.assert_allclose(eta_out, eta, rtol=1e-13, atol=1e-13)
    assert change == pytest.approx(np.max(np.abs(eta - previous)), rel=1e-12)
    np.testing.assert_allclose(mu, family.link.inverse(eta), rtol=1e-12)
    assert deviance == pytest.approx(family.deviance(y, mu, w), rel=1e-12)
    d = family.link.mu_eta(eta)
    np.testing.assert_allclose(weights, w * d * d / family.variance(mu), rtol=1e-12)
    np.testing.assert_allclose(response, eta - working_base + (y - mu) / d, rtol=1e-10, atol=1e-10)


def test_compiled_logit_rows_match_the_family_far_out_and_for_proportions():
    """The binomial-logit rows' direct formulas, and the general ones beyond |η| = 15."""
    row_pass = compiled()[0] if compiled() is not None else None
    if row_pass is None:
        pytest.skip("numba is not installed")
    family = Binomial()
    eta = np.concatenate([np.linspace(-40.0, 40.0, 81), RNG.normal(0.0, 3.0, 200)])
    n = len(eta)
    y = np.where(RNG.random(n) < 0.3, RNG.integers(1, 4, n) / 4.0, RNG.integers(0, 2, n))
    w = RNG.uniform(0.5, 2.0, n)
    out = [np.empty(n) for _ in range(4)]
    deviance, change = row_pass(
        *family_codes(family),
        y,
        w,
        eta,
        np.zeros(n),
        np.zeros((1, n), dtype=np.int64),
        np.zeros((n, 1)),
        np.array([0, 1]),
        np.zeros(1),
        np.array([0, 1]),
        np.empty(0),
        *out,
    )
    assert change == 0.0  # no previous η
    _, mu, weights, response = out
    np.testing.assert_allclose(mu, family.link.inverse(eta), rtol=1e-12)
    assert deviance == pytest.approx(family.deviance(y, mu, w), rel=1e-12)
    d = family.link.mu_eta(eta)
    # Both a(dμ/dη)²/V(μ) = a·dμ/dη, rounded differently: 1 − μ has a relative
    # rounding error of ε·e^|η| (1e-9 at |η| = 15, 1e-8 beyond, where the kernel's
    # general formulas and scipy's expit round it each their own way).
    expected = w * d * d / family.variance(mu)
    np.testing.assert_allclose(weights, expected, rtol=5e-8, atol=1e-15)
    # (y − μ)/(dμ/dη) is e^|η| times a rounded difference: compared where it is not
    # rounding alone.
    near = np.abs(eta) <= 15.0
    np.testing.assert_allclose(response[near], (eta + (y - mu) / d)[near], rtol=1e-8, atol=1e-10)


def test_compiled_logit_derivatives_are_the_binomial_s():
    """Score, observed weight and its slope in η for binomial-logit rows (the direct
    formulas, used up to |η| = 15)."""
    if compiled() is None:
        pytest.skip("numba is not installed")
    derivative_pass = compiled()[1]
    family = Binomial()
    eta = np.concatenate([np.linspace(-15.0, 15.0, 31), RNG.normal(0.0, 2.0, 100)])
    n = len(eta)
    y = np.where(RNG.random(n) < 0.3, 0.25, RNG.integers(0, 2, n)).astype(float)
    a = RNG.uniform(0.5, 2.0, n)
    score, observed, slope = np.empty(n), np.empty(n), np.empty(n)
    derivative_pass(*family_codes(family), y, a, eta, score, observed, slope)
    mu = family.link.inverse(eta)
    variance = mu * (1.0 - mu)
    # μ(1 − μ) rounds 1 − μ: relative ε·e^|η| (1e-9 at |η| = 15).
    np.testing.assert_allclose(score, -a * (y - mu), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(observed, a * variance, rtol=5e-8, atol=1e-15)
    np.testing.assert_allclose(slope, a * variance * (1.0 - 2.0 * mu), rtol=5e-8, atol=1e-15)


def test_compiled_row_pass_reports_an_invalid_mean():
    row_pass = compiled()[0] if compiled() is not None else None
    if row_pass is None:
        pytest.skip("numba is not installed")
    family = Poisson("identity")
    out = [np.empty(2) for _ in range(4)]
    value, _ = row_pass(
        *family_codes(family),
        np.ones(2),
        np.ones(2),
        np.array([1.0, -1.0]),
        np.zeros(2),
        np.zeros((1, 2), dtype=np.int64),
        np.zeros((2, 1)),
        np.array([0, 1]),
        np.zeros(1),
        np.array([0, 1]),
        np.empty(0),
        *out,
    )
    assert value == math.inf


def test_starting_means_are_r_s():
    y = np.array([0.0, 1.0, 0.5])
    w = np.array([1.0, 1.0, 4.0])
    np.testing.assert_allclose(Binomial().initial_mean(y, w), (w * y + 0.5) / (w + 1))
    np.testing.assert_allclose(Poisson().initial_mean(y, w), y + 0.1)
    np.testing.assert_allclose(NegativeBinomial(1.0).initial_mean(y, w), [1 / 6, 1.0, 0.5])
    np.testing.assert_allclose(Gamma().initial_mean(y + 1, w), y + 1)


def test_get_family_names_and_objects():
    assert get_family("binomial") == Binomial()
    assert get_family("Gamma", "log") == Gamma("log")
    assert get_family('binomial(link = "probit")') == Binomial("probit")
    assert get_family("poisson('sqrt')") == Poisson("sqrt")
    assert get_family("inverse.gaussian").link.name == "1/mu^2"
    probit = Binomial(link="probit")
    assert get_family(probit) is probit
    assert repr(NegativeBinomial(7.4167)) == "NegativeBinomial(theta=7.4167, link='log')"
    assert NegativeBinomial(7.4167).name == "Negative Binomial(7.4167)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_family("gaussian"), "lmer"),
        (lambda: get_family("negative.binomial"), "glmer_nb"),
        (lambda: get_family("quasipoisson"), "unknown family"),
        (lambda: Binomial("sqrt"), "not available for the binomial"),
        (lambda: get_family(Binomial(), "probit"), "contradicts"),
        (lambda: NegativeBinomial(-1.0), "positive"),
        (lambda: get_family(3), "family must be"),
    ],
)
def test_bad_families_are_refused(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_responses_outside_the_support_are_refused():
    with pytest.raises(DataError, match=r"must lie in \[0, 1\].*position 1 holds 2"):
        Binomial().check_response(np.array([0.0, 2.0]), None, "y")
    with pytest.raises(DataError, match="trials and must be whole numbers"):
        Binomial().check_response(np.array([0.5, 0.25]), np.array([4.0, 2.5]), "p")
    with pytest.raises(DataError, match="must be counts"):
        Poisson().check_response(np.array([1.0, -1.0]), None, "n")
    with pytest.raises(DataError, match="must be positive"):
        Gamma().check_response(np.array([1.0, 0.0]), None, "t")
    with pytest.raises(DataError, match="must be positive"):
        InverseGaussian().check_response(np.array([-1.0]), None, "t")
    with pytest.raises(DataError, match="must be counts"):
        NegativeBinomial(1.0).check_response(np.array([-2.0]), None, "n")


def test_non_integer_counts_warn_as_r_does():
    with pytest.warns(NonIntegerResponseWarning, match="counts in 'n'"):
        Poisson().check_response(np.array([1.0, 2.5]), None, "n")
    with pytest.warns(NonIntegerResponseWarning, match="numbers of successes"):
        Binomial().check_response(np.array([0.3, 0.5]), None, "p")


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=repr)
def test_saturated_constant_turns_the_deviance_into_aic(family):
    y, eta = _data(family)
    mu = family.link.inverse(eta)
    w = RNG.integers(1, 4, len(y)).astype(float)
    constant = family.saturated_aic(y, w)
    if family.has_dispersion:
        assert constant is None
        return
    deviance = family.deviance(y, mu, w)
    assert family.aic(y, mu, w, deviance) == pytest.approx(deviance + constant, rel=1e-12)


def test_no_saturated_constant_for_rounded_binomial_successes():
    assert Binomial().saturated_aic(np.array([0.3, 0.5]), np.ones(2)) is None


def test_bernoulli_rows_have_a_zero_saturated_constant():
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    mu = np.array([0.2, 0.7, 0.9, 0.4, 0.5])
    w = np.ones(len(y))
    family = Binomial()
    assert family.saturated_aic(y, w) == 0.0
    deviance = family.deviance(y, mu, w)
    assert family.aic(y, mu, w, deviance) == pytest.approx(deviance, rel=1e-12)
