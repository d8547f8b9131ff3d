"""The analytic gradient of the Laplace objective against central differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design import build_design
from mixedmodels.engine.curvature import central_derivatives, hessian_from_forward_gradients
from mixedmodels.engine.glm_kernels import compiled
from mixedmodels.engine.laplace_gradient import LaplaceGradient
from mixedmodels.engine.pirls import Pirls
from mixedmodels.engine.working_rows import RowData
from mixedmodels.families import Binomial, Gamma, InverseGaussian, NegativeBinomial, Poisson

pytestmark = pytest.mark.skipif(compiled() is None, reason="the gradient needs numba")
RNG = np.random.default_rng(3)


def _design(family, n=400):
    """Crossed g × h, a correlated random slope on g and a third, nested-in-g term."""
    g = RNG.integers(0, 25, n)
    h = RNG.integers(0, 6, n)
    k = g * 2 + RNG.integers(0, 2, n)
    x = RNG.normal(size=n)
    eta = 0.2 + 0.4 * x + RNG.normal(0, 0.4, 25)[g] + RNG.normal(0, 0.2, 25)[g] * x
    eta += RNG.normal(0, 0.3, 6)[h] + RNG.normal(0, 0.2, 50)[k]
    if isinstance(family, Binomial):
        y = RNG.binomial(1, 1 / (1 + np.exp(-eta)))
    elif isinstance(family, (Poisson, NegativeBinomial)):
        y = RNG.poisson(np.exp(eta))
    else:
        y = RNG.gamma(4.0, np.exp(eta) / 4.0)
    data = pd.DataFrame(
        {"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str), "k": k.astype(str)}
    )
    return build_design("y ~ x + (x | g) + (1 | h) + (1 | k)", data)


FAMILIES = [
    Poisson(),
    Binomial(),
    Binomial("probit"),
    Gamma("log"),
    InverseGaussian("log"),
    NegativeBinomial(3.0),
]


def _lambdas(design, theta):
    out, at = [], 0
    for term in design.terms:
        out.append(term.lambda_matrix(theta[at : at + term.n_theta]))
        at += term.n_theta
    return out


@pytest.mark.parametrize("fixed_inside", [False, True], ids=["theta_beta", "theta_only"])
@pytest.mark.parametrize("family", FAMILIES, ids=repr)
def test_gradient_matches_central_differences(family, fixed_inside):
    design = _design(family)
    n = len(design.y)
    rows = RowData(design.y, np.ones(n), np.zeros(n), design.x, design.terms)
    pirls = Pirls(rows.working(fixed_inside, family), [(t.n_levels, t.q) for t in design.terms])
    gradient = LaplaceGradient(pirls, design.terms)
    theta = np.array([0.5, 0.1, 0.3, 0.4, 0.3])[: sum(t.n_theta for t in design.terms)]
    beta = np.array([0.25, 0.35])
    if isinstance(family, InverseGaussian):
        beta = np.array([0.3, 0.1])
    saturated = family.saturated_aic(design.y, np.ones(n))
    first = pirls.solve(_lambdas(design, theta), beta)

    def objective(x):
        th, b = (x, first.beta) if fixed_inside else (x[: len(theta)], x[len(theta) :])
        solution = pirls.solve(_lambdas(design, th), b, first.u)
        aic = (
            solution.deviance + saturated
            if saturated is not None
            else pirls.rows.aic(solution.point, solution.deviance)
        )
        return solution.logdet + solution.sum_u2 + aic

    point = theta if fixed_inside else np.concatenate([theta, beta])
    numeric, _ = central_derivatives(objective, point, step=1e-5)
    solution = pirls.solve(_lambdas(design, theta), beta, first.u)
    analytic = gradient(_lambdas(design, theta), solution)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-5, atol=2e-5 * np.abs(numeric).max())


def test_hessian_from_an_exact_gradient():
    a = np.array([[2.0, 0.3], [0.3, 1.0]])
    x = np.array([0.5, -1.0])

    def gradient(x):
        return a @ x + np.array([x[0] ** 3, 0.0])

    hessian = hessian_from_forward_gradients(lambda _i, y: gradient(y), x, gradient(x))
    exact = a + np.diag([3 * x[0] ** 2, 0.0])
    # Forward differences: O(step) = O(1e-4) off where the third derivative is nonzero.
    np.testing.assert_allclose(hessian, exact, atol=1e-3)
    assert abs(hessian[0, 0] - exact[0, 0]) > 1e-6


@pytest.mark.parametrize("fixed_inside", [False, True], ids=["theta_beta", "theta_only"])
@pytest.mark.parametrize("family", [Poisson(), Binomial()], ids=repr)
def test_gradient_with_a_small_dense_trailing_block(family, fixed_inside):
    """Two scalar terms, the second with 6 levels: T is the factor's small dense
    path (its own compiled update), whose triangle the selected inverse reads."""
    n = 300
    g = RNG.integers(0, 30, n)
    h = RNG.integers(0, 6, n)
    x = RNG.normal(size=n)
    eta = 0.1 + 0.4 * x + RNG.normal(0, 0.5, 30)[g] + RNG.normal(0, 0.3, 6)[h]
    if isinstance(family, Binomial):
        y = RNG.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = RNG.poisson(np.exp(eta))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str)})
    design = build_design("y ~ x + (1 | g) + (1 | h)", data)
    rows = RowData(design.y, np.ones(n), np.zeros(n), design.x, design.terms)
    pirls = Pirls(rows.working(fixed_inside, family), [(t.n_levels, t.q) for t in design.terms])
    assert pirls.factor.small_path() is not None
    gradient = LaplaceGradient(pirls, design.terms)
    theta, beta = np.array([0.6, 0.4]), np.array([0.1, 0.3])
    saturated = family.saturated_aic(design.y, np.ones(n))
    first = pirls.solve(_lambdas(design, theta), beta)

    def objective(x):
        th, b = (x, first.beta) if fixed_inside else (x[:2], x[2:])
        solution = pirls.solve(_lambdas(design, th), b, first.u)
        return solution.logdet + solution.sum_u2 + solution.deviance + saturated

    point = theta if fixed_inside else np.concatenate([theta, beta])
    numeric, _ = central_derivatives(objective, point, step=1e-5)
    solution = pirls.solve(_lambdas(design, theta), beta, first.u)
    analytic = gradient(_lambdas(design, theta), solution)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-5, atol=2e-5 * np.abs(numeric).max())


def test_scalar_row_loops_match_the_general_ones():
    """The scalar terms' leverages and gradient row sums equal the general loops'."""
    from mixedmodels.engine.laplace_rows import row_kernels

    kernels = row_kernels()
    n, levels = 200, [7, 5, 4]
    k = len(levels)
    codes = np.vstack([RNG.integers(0, m, n) for m in levels]).astype(np.int64)
    z = RNG.normal(size=(n, k))
    zcol = np.arange(k + 1, dtype=np.int64)
    lam = RNG.uniform(0.2, 1.5, k)
    lams = lam.reshape(k, 1, 1).copy()
    weights = RNG.uniform(0.1, 1.0, n)
    s00 = RNG.normal(size=(levels[0], 1, 1))
    entries = 40
    s0t = RNG.normal(size=(entries, 1))
    t_offset = np.array([0, 0, levels[1]], dtype=np.int64)
    s_tt = RNG.normal(size=(levels[1] + levels[2],) * 2)
    entry_of = RNG.integers(0, entries, (k, n)).astype(np.int64)
    out = [(np.empty(n), np.empty((k, 1, 1))) for _ in range(2)]
    common = (weights, s00, s0t, s_tt, entry_of, t_offset)
    kernels["leverages"](codes, z, zcol, lams, *common, *out[0])
    kernels["leverages_scalar"](codes, z, lam, *common, *out[1])
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    u_offset = np.concatenate([[0], np.cumsum(levels)]).astype(np.int64)
    u, x = RNG.normal(size=sum(levels)), RNG.normal(size=sum(levels))
    rows = [RNG.normal(size=n) for _ in range(4)]  # shift, c, observed, score
    found = [(np.empty(n), np.empty((k, 1, 1)), np.empty((k, 1, 1))) for _ in range(2)]
    kernels["gradient"](codes, z, zcol, lams, u_offset, u, x, *rows, *found[0])
    kernels["gradient_scalar"](codes, z, lam, u_offset, u, x, *rows, *found[1])
    for a, b in zip(found[0], found[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_scalar_selected_inverse_matches_the_general_loop():
    """A scalar first term's selected inverse (pairs read once) equals the general loop's."""
    n = 300
    g = RNG.integers(0, 30, n)
    h = RNG.integers(0, 8, n)
    x = RNG.normal(size=n)
    y = RNG.poisson(np.exp(0.2 + 0.3 * x + RNG.normal(0, 0.5, 30)[g]))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str)})
    design = build_design("y ~ x + (1 | g) + (1 | h)", data)
    rows = RowData(design.y, np.ones(n), np.zeros(n), design.x, design.terms)
    for fixed_inside in (False, True):
        shapes = [(t.n_levels, 1) for t in design.terms]
        pirls = Pirls(rows.working(fixed_inside, Poisson()), shapes)
        gradient = LaplaceGradient(pirls, design.terms)
        pirls.solve(_lambdas(design, np.array([0.7, 0.5])), np.array([0.2, 0.3]))
        factor = pirls.factor
        column = factor.col0
        r = factor.n_re_trailing
        s_tt = gradient.selected_inverse().s_tt
        found = []
        for name, extra in (("levels", ()), ("levels_scalar", (np.empty(n),))):
            s00 = np.empty_like(factor.L00)
            s0t = np.zeros_like(column.values)
            gradient.kernels[name](
                factor.L00, column.values, column.rows, column.level_ptr, r, s_tt, s00, s0t, *extra
            )
            found.append((s00, s0t))
        np.testing.assert_allclose(found[1][0], found[0][0], rtol=1e-12)
        np.testing.assert_allclose(found[1][1], found[0][1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("family", [Poisson(), Binomial(), Binomial("probit")], ids=repr)
def test_mode_slopes_predict_the_modes_to_first_order(family):
    """du/d(θ, β) from the factor: the modes at a step h away are predicted within O(h²)
    (exactly the observed information's for canonical links, Fisher's otherwise)."""
    n = 300
    g = RNG.integers(0, 30, n)
    h = RNG.integers(0, 8, n)
    x = RNG.normal(size=n)
    eta = 0.1 + 0.4 * x + RNG.normal(0, 0.5, 30)[g] + RNG.normal(0, 0.3, 8)[h]
    if isinstance(family, Binomial):
        y = RNG.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = RNG.poisson(np.exp(eta))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str), "h": h.astype(str)})
    design = build_design("y ~ x + (1 | g) + (1 | h)", data)
    rows = RowData(design.y, np.ones(n), np.zeros(n), design.x, design.terms)
    pirls = Pirls(rows.working(False, family), [(t.n_levels, 1) for t in design.terms])
    gradient = LaplaceGradient(pirls, design.terms)
    point = np.array([0.6, 0.4, 0.1, 0.3])
    solution = pirls.solve(_lambdas(design, point[:2]), point[2:])
    step = 1e-3
    slopes = gradient.mode_slopes(_lambdas(design, point[:2]), solution, np.eye(4) * step)
    for i in range(4):
        moved = point + np.eye(4)[i] * step
        found = pirls.solve(_lambdas(design, moved[:2]), moved[2:], solution.u)
        change = found.u - solution.u
        error = np.max(np.abs(change - slopes[:, i]))
        # First order: the error is a small fraction of the change (O(h²) against
        # O(h)); with Fisher's weights for the observed ones (probit) a start only.
        bound = 0.05 if family.is_canonical else 0.5
        assert error < bound * np.max(np.abs(change))
    # Not available with β inside PIRLS or a vector-valued term.
    joint = Pirls(rows.working(True, family), [(t.n_levels, 1) for t in design.terms])
    assert LaplaceGradient(joint, design.terms).mode_slopes([], solution, np.eye(4)) is None
