"""The compiled path of a small dense trailing block against the general one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mixedmodels.engine.factor import BlockedCholesky
from mixedmodels.engine.gradient import ProfiledGradient
from mixedmodels.engine.information import average_information
from mixedmodels.engine.problem import LinearProblem
from mixedmodels.engine.small_trailing import MAX_ROWS
from tests.engine.dense import random_lambdas, random_problem, theta_of

# (levels, q per term, fixed columns, weighted): one term (sleepstudy's
# shape), crossed and nested-like terms, vector terms on later terms,
# no fixed effects, prior weights.
CASES = [
    ([18], [2], 2, False),
    ([24, 6], [1, 1], 1, False),
    ([12, 5], [2, 2], 3, True),
    ([10, 4, 3], [1, 2, 1], 2, False),
    ([9, 3, 2], [3, 1, 2], 1, True),
    ([15], [1], 0, False),
]


def _pair(prob):
    cp = prob.cross_products()
    general = BlockedCholesky(cp, small=False)
    small = BlockedCholesky(cp)
    return cp, general, small


@pytest.mark.parametrize(("levels", "qs", "p", "weighted"), CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_update_gradient_and_residuals_agree(levels, qs, p, weighted, reml):
    prob = random_problem(5, 160, levels, qs, p=max(p, 1), weighted=weighted)
    if p == 0:
        prob = replace(prob, x=prob.x[:, :0])
    cp, general, small = _pair(prob)
    assert small.n_t <= MAX_ROWS
    terms = prob.terms()
    problem = LinearProblem(cp, terms, reml)
    rows = [t.theta_rows for t in terms]
    cols = [t.theta_cols for t in terms]
    for seed in range(3):
        lambdas = random_lambdas(seed, qs)
        theta = theta_of(terms, lambdas)
        assert general.update(lambdas) and small.update(lambdas)
        assert small.small_path() is not None and general.small_path() is None
        np.testing.assert_allclose(
            problem.criterion(small, reml), problem.criterion(general, reml), rtol=1e-12
        )
        np.testing.assert_allclose(small.L00, general.L00, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.tril(small.T), np.tril(general.T), rtol=1e-10, atol=1e-12)
        g_general, res_general = ProfiledGradient(general, rows, cols).gradient_and_residuals(
            general, lambdas, reml
        )
        g_small, res_small = ProfiledGradient(small, rows, cols).gradient_and_residuals(
            small, lambdas, reml
        )
        np.testing.assert_allclose(g_small, g_general, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(res_small.beta, res_general.beta, rtol=1e-10, atol=1e-12)
        for a, b in zip(res_small.modes, res_general.modes, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        for a, b in zip(res_small.z_residual, res_general.z_residual, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
        # The solution and the information read the small path's arrays as any others.
        for a, b in zip(small.solution()[1], general.solution()[1], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            average_information(small, lambdas, rows, cols, reml),
            average_information(general, lambdas, rows, cols, reml),
            rtol=1e-9,
            atol=1e-9,
        )
        assert np.isfinite(problem.objective(theta, workspace=small))


def test_not_positive_definite_is_refused_as_by_the_general_path():
    prob = random_problem(2, 80, [10, 4], [1, 1])
    _, general, small = _pair(prob)
    # λ with a NaN: neither path may report a factor.
    lambdas = [np.array([[np.nan]]), np.array([[1.0]])]
    assert not small.update(lambdas)
    assert not general.update(lambdas)
    assert small.updated_with is None


def test_blocks_are_read_at_every_update():
    """A refit rewrites the y blocks in place: the compiled path must see them."""
    prob = random_problem(4, 120, [12, 5], [1, 1], p=2)
    cp, general, small = _pair(prob)
    lambdas = random_lambdas(1, [1, 1])
    assert small.update(lambdas)
    before = small.pwrss()
    for block in cp.xz:
        block[-1] *= 2.0
    cp.xx[-1, :] *= 2.0
    cp.xx[:, -1] *= 2.0
    assert small.update(lambdas) and general.update(lambdas)
    assert small.pwrss() != before
    np.testing.assert_allclose(small.pwrss(), general.pwrss(), rtol=1e-12)


def test_large_or_sparse_trailing_blocks_keep_the_general_path():
    prob = random_problem(3, 400, [40, MAX_ROWS + 5], [1, 1])
    factor = BlockedCholesky(prob.cross_products())
    assert factor.n_t > MAX_ROWS
    assert factor.small_path() is None
