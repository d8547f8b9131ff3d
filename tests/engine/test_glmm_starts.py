"""The GLMM's start: the working model's maximum likelihood covariance and modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design import build_design
from mixedmodels.engine.glm_kernels import compiled
from mixedmodels.engine.glmm_fit import fit_glmm
from mixedmodels.engine.glmm_problem import GeneralizedProblem
from mixedmodels.engine.glmm_starts import _matrix_maximum, _scalar_maximum, working_start
from mixedmodels.families import Binomial, Poisson

RNG = np.random.default_rng(11)


def _working_data(q, levels=60):
    """Levels' precisions Pₗ (some singular) and hₗ = Pₗzₗ, zₗ ~ N(0, Σ + Pₗ⁻¹)."""
    sigma = np.array([[0.5, -0.2, 0.0], [-0.2, 0.3, 0.1], [0.0, 0.1, 0.4]])[:q, :q]
    precision, h = [], []
    for ell in range(levels):
        a = RNG.normal(size=(q, 4))
        p = a @ a.T
        if ell % 7 == 0 and q > 1:  # a level that says nothing about one direction
            v = RNG.normal(size=q)
            p = np.outer(v, v)
        b = RNG.multivariate_normal(np.zeros(q), sigma)
        # z = b + e with e ~ N(0, P⁻¹) (P may be singular: draw Pz directly).
        h.append(p @ b + np.linalg.cholesky(p + 1e-12 * np.eye(q)) @ RNG.normal(size=q))
        precision.append(p)
    return np.array(precision), np.array(h)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_matrix_maximum_is_the_em_fixed_point(q):
    precision, h = _working_data(q)
    found = _matrix_maximum(np.eye(q), precision, h)
    assert found is not None
    # EM on the working model: Σ ← mean(mmᵀ + (Σ⁻¹ + P)⁻¹), m = (Σ⁻¹ + P)⁻¹h.
    posterior = np.linalg.inv(np.linalg.inv(found) + precision)
    m = np.einsum("lij,lj->li", posterior, h)
    em = (m.T @ m + posterior.sum(axis=0)) / len(h)
    np.testing.assert_allclose(em, found, atol=1e-7)


def test_scalar_maximum_matches_the_matrix_one():
    precision, h = _working_data(1)
    matrix = _matrix_maximum(np.eye(1), precision, h)
    scalar = _scalar_maximum(1.0, precision[:, 0, 0], h[:, 0])
    assert matrix is not None and scalar is not None
    np.testing.assert_allclose(scalar, matrix[0, 0], rtol=1e-7)


def test_no_maximum_inside_gives_none():
    # z with less spread than its sampling variance: the likelihood's maximum is σ² = 0.
    precision = np.full(40, 1.0)
    h = np.full(40, 0.1) * np.where(np.arange(40) % 2, 1, -1)
    assert _scalar_maximum(1.0, precision, h) is None


def _problem(formula, family, n=1500, slope=False):
    g = RNG.integers(0, 40, n)
    x = RNG.normal(size=n)
    eta = -0.3 + 0.5 * x + RNG.normal(0, 0.7, 40)[g]
    if slope:
        eta += RNG.normal(0, 0.3, 40)[g] * x
    y = RNG.binomial(1, 1 / (1 + np.exp(-eta))) if isinstance(family, Binomial) else None
    if y is None:
        y = RNG.poisson(np.exp(eta))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g.astype(str)})
    design = build_design(formula, data)
    return GeneralizedProblem.in_memory(
        design.y, np.ones(n), np.zeros(n), design.x, design.terms, family
    )


@pytest.mark.skipif(compiled() is None, reason="the start needs the selected inverse (numba)")
@pytest.mark.parametrize(
    ("formula", "family", "slope"),
    [("y ~ x + (1 | g)", Binomial(), False), ("y ~ x + (x | g)", Poisson(), True)],
    ids=["scalar", "slope"],
)
def test_start_is_near_the_optimum_and_predicts_the_modes(formula, family, slope):
    problem = _problem(formula, family, slope=slope)
    ws = problem.workspace()
    theta0, solution = problem.initial(ws)
    moved = working_start(problem, ws, theta0, solution)
    assert moved is not None
    theta, modes = moved
    optimum = fit_glmm(problem, 1, hessian=False).theta
    lam = problem.lambdas(optimum)[0]
    start = problem.lambdas(theta)[0]
    lme4 = problem.lambdas(theta0)[0]
    # Closer to the optimum's covariance than lme4's start, by far.
    distance = np.abs(start @ start.T - lam @ lam.T).max()
    assert distance < 0.3 * np.abs(lme4 @ lme4.T - lam @ lam.T).max()
    # The predicted modes are PIRLS's at the new θ (β unchanged) to first order.
    exact = problem.modes(theta, solution.beta, problem.workspace()).u
    assert np.abs(modes - exact).max() < 0.2 * np.abs(exact).max()
    assert np.abs(modes - exact).max() < 0.5 * np.abs(solution.u - exact).max()
