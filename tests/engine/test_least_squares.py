"""Stage 2's offset β₀ and [X r]ᵀW[X r] (engine.least_squares, blocks.residual_cross_products).

β₀ need only be near the least-squares fit; what must hold exactly is that
the blocks are those of r = y − Xβ₀ for the β₀ reported, computed from the
rows (not from differences of large sums), and that an ill-conditioned X
still gets a β₀ accurate enough to remove y's fitted part.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.engine.blocks import cross_products, residual_cross_products
from mixedmodels.engine.least_squares import CONDITION_LIMIT, least_squares, offset_gram_kernel
from tests.engine.dense import RandomProblem, random_problem

pytest.importorskip("numba")


def _residual_blocks(problem: RandomProblem, **kwargs):
    return residual_cross_products(
        problem.codes,
        problem.z,
        problem.n_levels,
        problem.x,
        problem.y,
        problem.weights,
        **kwargs,
    )


def _weighted_fit(problem: RandomProblem) -> np.ndarray:
    root = np.ones(problem.n) if problem.weights is None else np.sqrt(problem.weights)
    return np.linalg.lstsq(problem.x * root[:, None], problem.y * root, rcond=None)[0]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("p", [1, 2, 3, 4, 7])
def test_blocks_are_those_of_the_residual_of_the_beta_reported(p, weighted):
    problem = random_problem(seed=p, n=500, levels=[13, 5], qs=[2, 1], p=p, weighted=weighted)
    problem.y += 1e4  # far from zero: the residual is what keeps the sums small
    cp = _residual_blocks(problem)
    np.testing.assert_allclose(cp.beta_offset, _weighted_fit(problem), rtol=1e-9, atol=1e-9)
    direct = problem.cross_products(beta_offset=cp.beta_offset, use_numba=False)
    for a, b in zip(cp.diag + cp.xz, direct.diag + direct.xz, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cp.xx[:p, :p], direct.xx[:p, :p], rtol=1e-12)
    np.testing.assert_allclose(cp.xx[-1, -1], direct.xx[-1, -1], rtol=1e-11)
    # XᵀWr is all but zero (β₀ near the fit), and read from the rows, not X'Wy − X'WXβ₀.
    np.testing.assert_allclose(cp.xx[:p, -1], direct.xx[:p, -1], atol=1e-8)
    np.testing.assert_array_equal(cp.xx, cp.xx.T)
    assert cp.sum_log_weights == pytest.approx(direct.sum_log_weights, rel=1e-12)


def test_without_fixed_effects_the_response_is_kept():
    problem = random_problem(seed=3, n=80, levels=[6], qs=[1], p=1)
    problem = RandomProblem(
        problem.codes, problem.n_levels, problem.z, np.empty((80, 0)), problem.y, None
    )
    cp = _residual_blocks(problem)
    assert cp.beta_offset is None
    assert cp.xx.shape == (1, 1)
    assert cp.xx[0, 0] == pytest.approx(float(problem.y @ problem.y), rel=1e-13)
    np.testing.assert_allclose(cp.xz[0], problem.cross_products().xz[0], rtol=1e-13)


def test_ill_conditioned_x_takes_the_qr():
    """A cubic in an uncentred covariate: normal equations would lose about 13 digits
    of β₀; the kernel declines and the QR's β₀ is used."""
    rng = np.random.default_rng(7)
    n = 400
    year = rng.uniform(1990.0, 2010.0, n)
    x = np.column_stack([np.ones(n), year, year**2, year**3])
    y = 3.0 + 1e-6 * year**3 + rng.standard_normal(n)
    beta = np.empty(4)
    done = offset_gram_kernel()(
        x, y, np.ones(n), False, beta, True, np.empty(n), np.empty((5, 5)), 1e6
    )
    assert not done
    codes = [rng.integers(0, 8, n)]
    cp = residual_cross_products(codes, [np.ones((n, 1))], [8], x, y)
    np.testing.assert_allclose(cp.beta_offset, least_squares(x, y), rtol=1e-12)
    r = y - x @ cp.beta_offset
    assert cp.xx[-1, -1] == pytest.approx(float(r @ r), rel=1e-10)


def test_moderately_conditioned_x_takes_the_normal_equations():
    rng = np.random.default_rng(8)
    n = 300
    x = np.column_stack([np.ones(n), rng.standard_normal(n), rng.uniform(0.0, 9.0, n)])
    y = rng.standard_normal(n)
    beta = np.empty(3)
    gram = np.empty((4, 4))
    residual = np.empty(n)
    assert offset_gram_kernel()(
        x, y, np.ones(n), False, beta, True, residual, gram, CONDITION_LIMIT
    )
    np.testing.assert_allclose(beta, least_squares(x, y), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(residual, y - x @ beta, rtol=1e-13, atol=1e-14)
    xr = np.column_stack([x, residual])
    np.testing.assert_allclose(gram, xr.T @ xr, rtol=1e-12, atol=1e-12)


def test_weighted_fit_matches_numpys_path():
    """Without numba the same β₀ (the weighted fit) comes from the QR."""
    problem = random_problem(seed=12, n=200, levels=[9], qs=[2], p=3, weighted=True)
    compiled = _residual_blocks(problem, use_numba=True)
    fallback = _residual_blocks(problem, use_numba=False)
    np.testing.assert_allclose(compiled.beta_offset, fallback.beta_offset, rtol=1e-10)
    np.testing.assert_allclose(compiled.xx[:3, :3], fallback.xx[:3, :3], rtol=1e-12)
    np.testing.assert_allclose(compiled.xx[3, 3], fallback.xx[3, 3], rtol=1e-10)
    np.testing.assert_allclose(compiled.xz[0], fallback.xz[0], rtol=1e-10, atol=1e-9)


def test_cross_products_keep_a_given_offset():
    problem = random_problem(seed=2, n=120, levels=[7], qs=[1], p=2)
    beta0 = np.array([0.3, -0.2])
    cp = cross_products(
        problem.codes, problem.z, problem.n_levels, problem.x, problem.y, None, beta0
    )
    np.testing.assert_array_equal(cp.beta_offset, beta0)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    ("levels", "qs", "p"),
    [([11], [2], 3), ([11], [1], 1), ([9, 4], [2, 1], 5), ([7, 5], [1, 3], 2)],
)
def test_one_call_is_the_two_passes_bit_for_bit(levels, qs, p, weighted):
    """Stage 2's single compiled call (engine.residual_blocks) adds exactly what
    offset_gram and then the block pass over r add: the same β₀, the same
    [X r]ᵀW[X r] and the same blocks, to the last bit."""
    problem = random_problem(seed=p, n=300, levels=levels, qs=qs, p=p, weighted=weighted)
    problem.y += 1e3
    cp = _residual_blocks(problem)
    n = problem.n
    w = np.ones(n) if problem.weights is None else problem.weights
    beta = np.empty(p)
    residual = np.empty(n)
    gram = np.empty((p + 1, p + 1))
    assert offset_gram_kernel()(
        problem.x, problem.y, w, weighted, beta, True, residual, gram, CONDITION_LIMIT
    )
    np.testing.assert_array_equal(cp.beta_offset, beta)
    np.testing.assert_array_equal(cp.xx, gram)
    # The block pass over r with the same weights (cross_products' compiled path).
    separate = cross_products(
        problem.codes, problem.z, problem.n_levels, problem.x, residual, problem.weights
    )
    for a, b in zip(cp.diag + cp.xz, separate.diag + separate.xz, strict=True):
        np.testing.assert_array_equal(a, b)
    for key, blocks in cp.off.items():
        np.testing.assert_array_equal(blocks.data, separate.off[key].data)
        np.testing.assert_array_equal(blocks.rows, separate.off[key].rows)
