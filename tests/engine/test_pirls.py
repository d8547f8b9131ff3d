"""PIRLS and its pieces: refilled weighted blocks, optimal modes, quadrature, derivatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.integrate

from mixedmodels.design import build_design
from mixedmodels.engine.blocks import cross_products
from mixedmodels.engine.curvature import central_derivatives
from mixedmodels.engine.pirls import Pirls
from mixedmodels.engine.quadrature import agq_deviance, gauss_hermite_rule
from mixedmodels.engine.weighted import WeightedCrossProducts
from mixedmodels.engine.working_rows import RowData
from mixedmodels.errors import PirlsError
from mixedmodels.families import Binomial, Poisson

RNG = np.random.default_rng(7)


def _crossed(n=600, family="poisson"):
    """Crossed g × h with a random slope on g; counts or 0/1 outcomes."""
    g = RNG.integers(0, 30, n)
    h = RNG.integers(0, 8, n)
    x = RNG.normal(size=n)
    eta = 0.3 + 0.5 * x + RNG.normal(0, 0.5, 30)[g] + RNG.normal(0, 0.3, 30)[g] * x
    eta += RNG.normal(0, 0.4, 8)[h]
    if family == "poisson":
        y = RNG.poisson(np.exp(eta))
    else:
        y = RNG.binomial(1, 1 / (1 + np.exp(-eta)))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str)})
    return build_design("y ~ x + (x | g) + (1 | h)", data)


def _pirls(design, family, fixed_inside):
    n = len(design.y)
    rows = RowData(design.y, np.ones(n), np.zeros(n), design.x, design.terms)
    return Pirls(rows.working(fixed_inside, family), [(t.n_levels, t.q) for t in design.terms])


def _laplace(pirls, solution):
    """lme4's Laplace objective of a solution (the family's aic at its means)."""
    rows = pirls.rows
    return solution.logdet + solution.sum_u2 + rows.aic(solution.point, solution.deviance)


@pytest.mark.parametrize("use_numba", [True, False])
def test_refilled_blocks_equal_fresh_cross_products(use_numba):
    design = _crossed()
    terms = design.terms
    args = ([t.codes for t in terms], [t.z for t in terms], [t.n_levels for t in terms])
    blocks = WeightedCrossProducts(*args, design.x, use_numba=use_numba)
    for _ in range(2):  # a second fill must overwrite, not accumulate
        w = RNG.uniform(0.1, 3.0, len(design.y))
        r = RNG.normal(size=len(design.y))
        blocks.fill(w, r)
    fresh = cross_products(*args, design.x, r, w)
    cp = blocks.cp
    for a, b in zip(cp.diag, fresh.diag, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for key in fresh.off:
        np.testing.assert_array_equal(cp.off[key].rows, fresh.off[key].rows)
        np.testing.assert_allclose(cp.off[key].data, fresh.off[key].data, rtol=1e-12, atol=1e-12)
    for a, b in zip(cp.xz, fresh.xz, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.xx, fresh.xx, rtol=1e-12)


def test_blocks_built_like_others_fill_as_fresh_ones():
    design = _crossed()
    terms = design.terms
    args = ([t.codes for t in terms], [t.z for t in terms], [t.n_levels for t in terms])
    joint = WeightedCrossProducts(*args, design.x)
    no_x = np.empty((len(design.y), 0))
    blocks = WeightedCrossProducts(*args, no_x, like=joint)
    joint.fill(RNG.uniform(0.1, 3.0, len(design.y)), RNG.normal(size=len(design.y)))
    w = RNG.uniform(0.1, 3.0, len(design.y))
    r = RNG.normal(size=len(design.y))
    blocks.fill(w, r)
    fresh = cross_products(*args, no_x, r, w)
    cp = blocks.cp
    assert cp.xx.shape == fresh.xx.shape == (1, 1)
    for a, b in zip(cp.diag, fresh.diag, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for key in fresh.off:
        np.testing.assert_allclose(cp.off[key].data, fresh.off[key].data, rtol=1e-12, atol=1e-12)
    for a, b in zip(cp.xz, fresh.xz, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.xx, fresh.xx, rtol=1e-12)


def _score(pirls, design, family, solution, lambdas):
    """2u + ΛᵀZᵀd and Xᵀd, d = ∂deviance/∂η: zero at the modes (and at β̂ when inside)."""
    eta, mu = pirls.rows.means(solution.point)
    d = -2.0 * (design.y - mu) * family.link.mu_eta(eta) / family.variance(mu)
    parts = []
    for k, (term, lam) in enumerate(zip(design.terms, lambdas, strict=True)):
        per_level = np.zeros((term.n_levels, term.q))
        np.add.at(per_level, term.codes, term.z * d[:, None])
        u = solution.u[pirls.u_offsets[k] : pirls.u_offsets[k + 1]].reshape(term.n_levels, -1)
        parts.append((2.0 * u + per_level @ lam).ravel())
    return np.concatenate(parts), design.x.T @ d


@pytest.mark.parametrize("family", [Poisson(), Binomial("probit")], ids=repr)
def test_modes_are_the_penalized_deviance_minimum(family):
    design = _crossed(family=family.name)
    lambdas = [np.array([[0.6, 0.0], [0.1, 0.3]]), np.array([[0.5]])]
    beta = np.array([0.2, 0.4])
    pirls = _pirls(design, family, fixed_inside=False)
    solution = pirls.solve(lambdas, beta)
    score_u, _ = _score(pirls, design, family, solution, lambdas)
    assert np.max(np.abs(score_u)) < 1e-6
    np.testing.assert_array_equal(solution.beta, beta)
    # A warm start reaches the same modes.
    again = pirls.solve(lambdas, beta, solution.u + 0.05)
    np.testing.assert_allclose(again.u, solution.u, atol=1e-8)
    assert _laplace(pirls, again) == pytest.approx(_laplace(pirls, solution), abs=1e-9)


def test_fixed_effects_inside_pirls_also_solve_their_score():
    design = _crossed()
    lambdas = [np.array([[0.6, 0.0], [0.1, 0.3]]), np.array([[0.5]])]
    pirls = _pirls(design, Poisson(), fixed_inside=True)
    solution = pirls.solve(lambdas, np.zeros(2), from_start_means=True)
    score_u, score_beta = _score(pirls, design, Poisson(), solution, lambdas)
    assert np.max(np.abs(score_u)) < 1e-6
    assert np.max(np.abs(score_beta)) < 1e-6
    # log|L|² at the final weights: recompute by refactoring at the solution.
    logdet = solution.logdet
    pirls.refactor_at(lambdas, solution)
    assert pirls.factor.logdet_theta() == pytest.approx(logdet, rel=1e-12)


def test_pirls_failure_is_an_error():
    design = _crossed()
    pirls = _pirls(design, Poisson("identity"), fixed_inside=False)
    lambdas = [np.eye(2), np.eye(1)]
    with pytest.raises(PirlsError):
        pirls.solve(lambdas, np.array([-50.0, 0.0]))


def test_gauss_hermite_rule_integrates_normal_moments():
    z, w, log_phi = gauss_hermite_rule(9)
    assert w.sum() == pytest.approx(1.0)
    for power, moment in ((0, 1.0), (2, 1.0), (4, 3.0), (6, 15.0), (8, 105.0)):
        assert np.sum(w * z**power) == pytest.approx(moment, rel=1e-10)
    np.testing.assert_allclose(z, -z[::-1])
    np.testing.assert_allclose(log_phi, -0.5 * z**2 - 0.5 * np.log(2 * np.pi))
    with pytest.raises(ValueError, match=r"1\.\.100"):
        gauss_hermite_rule(0)


def test_quadrature_converges_with_more_points():
    n = 300
    g = RNG.integers(0, 20, n)
    eta = -0.2 + RNG.normal(0, 1.2, 20)[g]
    data = pd.DataFrame(
        {"y": RNG.binomial(1, 1 / (1 + np.exp(-eta))).astype(float), "g": g.astype(str)}
    )
    design = build_design("y ~ 1 + (1 | g)", data)
    pirls = _pirls(design, Binomial(), fixed_inside=False)
    lam = np.array([[1.2]])
    beta = np.array([-0.2])
    solution = pirls.solve([lam], beta)
    sd = 1.0 / pirls.factor.L00[:, 0, 0]
    values = [agq_deviance(pirls, lam, beta, solution, sd, k) for k in (1, 5, 11, 25)]
    assert abs(values[2] - values[3]) < 1e-4
    assert abs(values[1] - values[3]) < 1e-2
    assert abs(values[0] - values[3]) > abs(values[1] - values[3])
    # Against direct integration per level: −2 log ∫ Πᵢ p(yᵢ | b) φ(b; 0, λ²) db,
    # less the saturated constant that lme4's quadrature objective leaves out.
    y = design.y
    codes = design.terms[0].codes
    total = 0.0
    for level in range(design.terms[0].n_levels):
        rows = y[codes == level]

        def density(b, rows=rows):
            p = 1 / (1 + np.exp(-(beta[0] + b)))
            return (
                np.exp(np.sum(rows * np.log(p) + (1 - rows) * np.log1p(-p)))
                * np.exp(-0.5 * (b / lam[0, 0]) ** 2)
                / (lam[0, 0] * np.sqrt(2 * np.pi))
            )

        total += -2 * np.log(scipy.integrate.quad(density, -12, 12, epsabs=1e-14)[0])
    assert values[3] == pytest.approx(total, abs=1e-6)  # 0/1 data: the saturated −2 log L is 0


def test_central_derivatives_of_a_quadratic_are_exact():
    a = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, -0.3], [0.5, -0.3, 1.5]])
    b = np.array([1.0, -2.0, 0.5])

    def f(x):
        return 0.5 * x @ a @ x + b @ x

    x = np.array([0.3, -0.2, 1.0])
    gradient, hessian = central_derivatives(f, x)
    np.testing.assert_allclose(hessian, a, rtol=1e-6)
    np.testing.assert_allclose(gradient, a @ x + b, rtol=1e-8)
