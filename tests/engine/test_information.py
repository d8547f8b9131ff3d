"""The average-information Hessian and the factor's forward solve against dense algebra."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.engine.factor import BlockedCholesky
from mixedmodels.engine.gradient_fit import Evaluator
from mixedmodels.engine.information import average_information
from mixedmodels.engine.problem import LinearProblem
from tests.engine.dense import dense_lambda, random_lambdas, random_problem, theta_of

# (levels, q per term, weighted, trailing): one term; crossed terms with a dense
# or a sparse trailing block; vector terms; prior weights.
CASES = [
    ([12], [2], False, "dense"),
    ([15, 6], [1, 1], False, "dense"),
    ([15, 6], [1, 1], True, "sparse"),
    ([10, 5, 3], [2, 1, 2], True, "dense"),
    ([10, 5, 3], [2, 1, 2], False, "sparse"),
]


def _dense_information(prob, lambdas, reml):
    """eᵀV_kP₀V_l e/σ² − (eᵀV_k e)(eᵀV_l e)/(dof σ⁴) with n×n matrices."""
    z = prob.dense_z()
    x, y = prob.x, prob.y
    w = np.ones(prob.n) if prob.weights is None else prob.weights
    root = np.sqrt(w)
    z, x, y = z * root[:, None], x * root[:, None], y * root
    big_lambda = dense_lambda(prob.n_levels, lambdas)
    v = z @ big_lambda @ big_lambda.T @ z.T + np.eye(prob.n)
    v_inv = np.linalg.inv(v)
    p0 = v_inv - v_inv @ x @ np.linalg.solve(x.T @ v_inv @ x, x.T @ v_inv)
    e = p0 @ y
    dof = prob.n - x.shape[1] if reml else prob.n
    sigma2 = float(y @ e) / dof
    derivatives = []
    for t, lam in enumerate(lambdas):
        q = lam.shape[0]
        rows, cols = np.tril_indices(q)
        order = np.lexsort((rows, cols))
        for i, j in zip(rows[order], cols[order], strict=True):
            unit = np.zeros((q, q))
            unit[i, j] = 1.0
            d_lambdas = [np.zeros_like(other) for other in lambdas]
            d_lambdas[t] = unit
            d_big = dense_lambda(prob.n_levels, d_lambdas)
            derivatives.append(z @ (d_big @ big_lambda.T + big_lambda @ d_big.T) @ z.T)
    a = np.array([e @ vk @ e for vk in derivatives])
    b = np.array([[e @ vk @ p0 @ vl @ e for vl in derivatives] for vk in derivatives])
    return b / sigma2 - np.outer(a, a) / (dof * sigma2**2)


@pytest.mark.parametrize(("levels", "qs", "weighted", "trailing"), CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_average_information_matches_dense(levels, qs, weighted, trailing, reml):
    prob = random_problem(7, 150, levels, qs, weighted=weighted)
    cp = prob.cross_products()
    lambdas = random_lambdas(11, qs)
    terms = prob.terms()
    problem = LinearProblem(cp, terms, reml)
    try:
        factor = BlockedCholesky(cp, trailing=trailing)
    except ValueError:
        pytest.skip("this structure has no sparse trailing block")
    assert problem.factor_at(theta_of(terms, lambdas), factor) is factor
    info = average_information(
        factor,
        lambdas,
        [t.theta_rows for t in terms],
        [t.theta_cols for t in terms],
        reml,
    )
    np.testing.assert_allclose(info, _dense_information(prob, lambdas, reml), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("levels", "qs", "weighted", "trailing"), CASES)
def test_forward_solve_gives_the_gram_matrix_of_the_inverse(levels, qs, weighted, trailing):
    """zᵀz for z = L⁻¹c is cᵀΩ⁻¹c with Ω = ΛᵀZᵀZΛ + I on the Z rows, [Z X] crossed."""
    prob = random_problem(3, 120, levels, qs, weighted=weighted)
    cp = prob.cross_products()
    lambdas = random_lambdas(5, qs)
    try:
        factor = BlockedCholesky(cp, trailing=trailing)
    except ValueError:
        pytest.skip("this structure has no sparse trailing block")
    assert factor.update(lambdas)
    a = prob.dense_a()[:, :-1]
    n_re = a.shape[1] - prob.x.shape[1]
    big = np.eye(a.shape[1])
    big[:n_re, :n_re] = dense_lambda(prob.n_levels, lambdas)
    omega = big.T @ a.T @ a @ big
    omega[np.arange(n_re), np.arange(n_re)] += 1.0
    rng = np.random.default_rng(0)
    c = rng.normal(size=(a.shape[1], 3))
    rhs_terms = [
        c[s].reshape(m, zi.shape[1], 3)
        for s, m, zi in zip(prob.term_columns(), prob.n_levels, prob.z, strict=True)
    ]
    z = factor.forward_solve(rhs_terms, c[n_re:])
    np.testing.assert_allclose(z.T @ z, c.T @ np.linalg.solve(omega, c), rtol=1e-9, atol=1e-10)


def test_evaluator_information_is_in_the_optimizers_coordinates():
    """φ = θ/scale: the Hessian in φ is scale·H_θ·scale."""
    prob = random_problem(1, 100, [8], [2])
    terms = prob.terms()
    problem = LinearProblem(prob.cross_products(), terms, True)
    scale = np.array([2.0, 0.5, 3.0])
    evaluator = Evaluator(problem, scale, workspace=problem.workspace())
    theta = np.array([0.8, 0.3, 0.6])
    evaluator.value(theta / scale)
    lambdas = problem.lambdas(theta)
    plain = average_information(
        evaluator.workspace, lambdas, [terms[0].theta_rows], [terms[0].theta_cols], True
    )
    np.testing.assert_allclose(evaluator.information(), plain * np.outer(scale, scale))
