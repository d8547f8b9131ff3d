"""The blocked factor (engine.factor.BlockedCholesky) updated in place, against dense Cholesky.

test_factor.py checks one update per problem; here one factor is updated again
and again — at other λ, on the boundary (a zero diagonal of λ, λ = 0), back
where it started — and must each time equal the dense Cholesky factor of

    ΛᵀAᵀAΛ + diag(I, 0)

computed afresh, with nothing left over from the previous update.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.engine.factor import BlockedCholesky
from mixedmodels.engine.kernels import compiled_kernel
from tests.engine.dense import RandomProblem, dense_lambda, random_lambdas, random_problem

NUMBA = [False, True] if compiled_kernel() is not None else [False]


def _dense_factor(problem: RandomProblem, lambdas: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """The lower Cholesky factor of ΛᵀAᵀAΛ + diag(I, 0), and the number of random effects."""
    a = problem.dense_a()
    nz = a.shape[1] - problem.x.shape[1] - 1
    lam = dense_lambda(problem.n_levels, lambdas)
    big = np.eye(a.shape[1])
    big[:nz, :nz] = lam
    m = big.T @ (a.T @ a) @ big
    m[:nz, :nz] += np.eye(nz)
    return np.linalg.cholesky(m), nz


def _assert_factor_is_dense(factor: BlockedCholesky, problem: RandomProblem, lambdas) -> None:
    dense, nz = _dense_factor(problem, lambdas)
    np.testing.assert_allclose(
        factor.random_effects_factor().toarray(), dense[:nz, :nz], rtol=1e-9, atol=1e-11
    )
    np.testing.assert_allclose(factor.L_xx, dense[nz:, nz:], rtol=1e-9, atol=1e-11)
    diag = np.diag(dense)
    assert factor.logdet_theta() == pytest.approx(2 * np.sum(np.log(diag[:nz])), rel=1e-11)
    assert factor.logdet_x() == pytest.approx(2 * np.sum(np.log(diag[nz:-1])), rel=1e-11)
    assert factor.pwrss() == pytest.approx(diag[-1] ** 2, rel=1e-10)
    # β̂ and u solve the penalised least-squares system read off the dense factor.
    system = dense[:-1, :-1] @ dense[:-1, :-1].T
    solution = np.linalg.solve(system, dense[:-1, :-1] @ dense[-1, :-1])
    beta = factor.fixed_effects()
    np.testing.assert_allclose(beta, solution[nz:], rtol=1e-8, atol=1e-10)
    u = np.concatenate(factor.spherical_modes(beta))
    np.testing.assert_allclose(u, solution[:nz], rtol=1e-8, atol=1e-10)


PROBLEMS = {
    "vector and scalar terms, weighted": dict(levels=[25, 6, 3], qs=[2, 1, 2], weighted=True),
    "two vector terms": dict(levels=[18, 5], qs=[3, 2], weighted=False),
    "one term": dict(levels=[30], qs=[2], weighted=True),
}


@pytest.mark.parametrize("use_numba", NUMBA, ids=lambda b: "numba" if b else "numpy")
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_repeated_updates_match_a_fresh_dense_factor(name, use_numba):
    problem = random_problem(seed=len(name), n=200, p=3, **PROBLEMS[name])
    qs = [zi.shape[1] for zi in problem.z]
    factor = BlockedCholesky(problem.cross_products(), use_numba=use_numba)
    first = random_lambdas(1, qs)
    boundary = [lam.copy() for lam in random_lambdas(2, qs)]
    boundary[0][0, 0] = 0.0  # a variance on its bound
    zero = [np.zeros_like(lam) for lam in first]  # no random effects at all
    large = [10.0 * lam for lam in random_lambdas(3, qs)]
    for lambdas in (first, boundary, zero, large, first):
        assert factor.update(lambdas)
        _assert_factor_is_dense(factor, problem, lambdas)


def test_zero_lambda_gives_the_least_squares_fit():
    """With λ = 0 the penalised problem is ordinary (weighted) least squares."""
    problem = random_problem(seed=12, n=120, levels=[10, 4], qs=[2, 1], weighted=True)
    factor = BlockedCholesky(problem.cross_products())
    assert factor.update([np.zeros((2, 2)), np.zeros((1, 1))])
    root = np.sqrt(problem.weights)
    beta, rss, *_ = np.linalg.lstsq(problem.x * root[:, None], problem.y * root, rcond=None)
    np.testing.assert_allclose(factor.fixed_effects(), beta, rtol=1e-10)
    assert factor.pwrss() == pytest.approx(rss[0], rel=1e-10)
    assert factor.logdet_theta() == pytest.approx(0.0, abs=1e-12)
    assert all(not u.any() for u in factor.spherical_modes(beta))


def test_singular_fixed_effects_block_is_reported_not_factored():
    """A column of X that is zero leaves [X y]'s block singular: update says so."""
    problem = random_problem(seed=13, n=80, levels=[8], qs=[1])
    problem.x[:, 2] = 0.0
    factor = BlockedCholesky(problem.cross_products())
    assert not factor.update([np.ones((1, 1))])


def test_factors_of_the_same_blocks_are_independent():
    """Two workspaces on the same cross-products: updating one leaves the other as it was."""
    problem = random_problem(seed=14, n=150, levels=[20, 5], qs=[2, 1])
    cp = problem.cross_products()
    one, two = BlockedCholesky(cp), BlockedCholesky(cp)
    first, second = random_lambdas(4, [2, 1]), random_lambdas(5, [2, 1])
    assert one.update(first)
    before = (one.random_effects_factor().toarray(), one.L_xx.copy(), one.pwrss())
    assert two.update(second)
    np.testing.assert_array_equal(one.random_effects_factor().toarray(), before[0])
    np.testing.assert_array_equal(one.L_xx, before[1])
    assert one.pwrss() == before[2]
    _assert_factor_is_dense(one, problem, first)
    _assert_factor_is_dense(two, problem, second)
