"""Moment starting values for θ (engine.start.moment_start) read off the cross-products.

test_start.py checks a random-slope model against its truth and the fits
reached from the start; here the other cases: a scalar term, no fixed
effects, a response on another scale, a term with no variance, several terms,
and the terms the estimate cannot use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.engine.blocks import cross_products
from mixedmodels.engine.problem import LinearProblem
from mixedmodels.engine.start import _scalar_moment_system, moment_start
from mixedmodels.engine.terms import TermStructure
from mixedmodels.engine.vector_start import _compiled_factor, _factor_numpy


def _term(name: str, n_levels: int, q: int) -> TermStructure:
    return TermStructure(name, pd.Index(range(n_levels)), [f"c{a}" for a in range(q)])


def _start(codes, z, n_levels, x, y) -> np.ndarray | None:
    """moment_start on blocks whose y parts hold the least-squares residuals, as a fit's do."""
    offset = np.linalg.lstsq(x, y, rcond=None)[0] if x.shape[1] else None
    cp = cross_products(codes, z, n_levels, x, y, beta_offset=offset)
    terms = [
        _term(f"g{i}", m, zi.shape[1]) for i, (m, zi) in enumerate(zip(n_levels, z, strict=True))
    ]
    return moment_start(cp, terms)


def _intercepts(rng, n_levels: int, per_level: int, sd_group: float, sigma: float = 1.0):
    g = np.repeat(np.arange(n_levels), per_level).astype(np.int32)
    y = 3.0 + rng.normal(scale=sd_group, size=n_levels)[g] + rng.normal(scale=sigma, size=g.size)
    return g, y


def test_scalar_term_is_near_the_truth():
    g, y = _intercepts(np.random.default_rng(1), 300, 10, sd_group=2.0)
    ones = np.ones((len(y), 1))
    theta = _start([g], [ones], [300], ones, y)
    # θ = sd(group) / σ = 2.
    assert theta.shape == (1,)
    assert theta[0] == pytest.approx(2.0, rel=0.1)


def test_without_fixed_effects_the_response_itself_is_used():
    g, y = _intercepts(np.random.default_rng(2), 300, 10, sd_group=2.0)
    y = y - 3.0  # mean zero: no intercept to fit
    theta = _start([g], [np.ones((len(y), 1))], [300], np.empty((len(y), 0)), y)
    assert theta[0] == pytest.approx(2.0, rel=0.1)


def test_start_does_not_depend_on_the_scale_of_the_response():
    g, y = _intercepts(np.random.default_rng(3), 80, 6, sd_group=1.0)
    ones = np.ones((len(y), 1))
    theta = _start([g], [ones], [80], ones, y)
    np.testing.assert_allclose(_start([g], [ones], [80], ones, 1e4 * y), theta, rtol=1e-8)
    np.testing.assert_allclose(_start([g], [ones], [80], ones, y + 1e6), theta, rtol=1e-6)


def test_a_term_without_variance_starts_off_its_bound():
    g, y = _intercepts(np.random.default_rng(4), 100, 8, sd_group=0.0)
    ones = np.ones((len(y), 1))
    theta = _start([g], [ones], [100], ones, y)
    # The estimate is near zero or negative; its floor keeps BOBYQA off the bound.
    assert 0.0 < theta[0] < 0.2


def test_crossed_terms_each_get_their_own_estimate():
    rng = np.random.default_rng(5)
    n = 6000
    a = rng.integers(0, 200, n).astype(np.int32)
    b = rng.integers(0, 30, n).astype(np.int32)
    y = rng.normal(scale=3.0, size=200)[a] + rng.normal(scale=0.5, size=30)[b] + rng.normal(size=n)
    ones = np.ones((n, 1))
    theta = _start([a, b], [ones, ones], [200, 30], ones, y)
    # Moment estimates of 3 and 0.5, within their sampling error.
    assert theta[0] == pytest.approx(3.0, rel=0.2)
    assert theta[1] == pytest.approx(0.5, rel=0.5)


def test_balanced_crossed_terms_start_at_the_reml_optimum():
    """For balanced data REML's estimates are the moment (ANOVA) estimates when
    these are positive: the joint moment equations of the scalar terms put the
    start on the optimum, as in Penicillin (24 plates × 6 samples)."""
    rng = np.random.default_rng(12)
    plate, sample = np.meshgrid(np.arange(20), np.arange(5), indexing="ij")
    data = pd.DataFrame({"plate": plate.ravel(), "sample": sample.ravel()})
    data["y"] = (
        rng.normal(scale=1.5, size=20)[data["plate"]]
        + rng.normal(scale=3.0, size=5)[data["sample"]]
        + rng.normal(size=len(data))
    )
    model = mm.lmer("y ~ 1 + (1 | plate) + (1 | sample)", data)
    np.testing.assert_allclose(model.optsum.initial, model.optsum.final, rtol=1e-6)
    assert model.optsum.n_evaluations == 1


def test_the_joint_moment_equations_hold_in_expectation():
    """The expectations of the residual and explained sums of squares that the
    scalar terms' start solves, on an unbalanced crossed design with a covariate,
    against their average over simulated responses."""
    rng = np.random.default_rng(13)
    n = 400
    a = rng.integers(0, 40, n).astype(np.int32)
    b = rng.integers(0, 20, n).astype(np.int32)
    x = np.column_stack([np.ones(n), rng.normal(size=n) + 0.1 * b])
    ones = np.ones((n, 1))
    variances = np.array([1.0, 2.0, 0.5])  # σ², σ_a², σ_b²
    sums = []
    for _ in range(1000):
        y = (
            x @ [1.0, 2.0]
            + rng.normal(scale=np.sqrt(2.0), size=40)[a]
            + rng.normal(scale=np.sqrt(0.5), size=20)[b]
            + rng.normal(size=n)
        )
        offset = np.linalg.lstsq(x, y, rcond=None)[0]
        cp = cross_products([a, b], [ones, ones], [40, 20], x, y, beta_offset=offset)
        explained = [float(np.sum(cp.xz[j][-1, :, 0] ** 2 / cp.diag[j][:, 0, 0])) for j in (0, 1)]
        sums.append([float(cp.xx[-1, -1]), *explained])
    cp_design = cross_products([a, b], [ones, ones], [40, 20], x, y, beta_offset=offset)
    system = _scalar_moment_system(cp_design, [40, 20])
    # Their Monte Carlo standard errors are about 0.5 %.
    np.testing.assert_allclose(np.mean(sums, axis=0), system @ variances, rtol=0.02)


def test_a_vector_term_gives_a_lower_triangular_factor_of_positive_diagonal():
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(150), 12).astype(np.int32)
    x = rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0], [[4.0, -1.0], [-1.0, 1.0]], size=150)
    y = 1 + 2 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=g.size)
    z = np.column_stack([np.ones_like(x), x])
    theta = _start([g], [z], [150], z, y)
    term = _term("g0", 150, 2)
    lam = term.lambda_matrix(theta)
    assert lam[0, 0] > 0 and lam[1, 1] > 0
    np.testing.assert_allclose(lam @ lam.T, [[4.0, -1.0], [-1.0, 1.0]], rtol=0.3, atol=0.3)


def test_a_vector_term_weights_its_levels_by_their_precision():
    """Levels of two to four rows with little spread in x give slopes estimated
    so poorly that, unweighted, they swamp the many well-measured levels."""
    rng = np.random.default_rng(10)
    sizes = np.where(np.arange(200) % 2 == 0, 40, rng.integers(2, 5, 200))
    g = np.repeat(np.arange(200), sizes).astype(np.int32)
    spread = np.where(sizes >= 40, 1.0, 0.05)[g]
    x = rng.normal(size=g.size) * spread
    truth = np.array([[1.0, 0.3], [0.3, 0.25]])
    b = rng.multivariate_normal([0, 0], truth, size=200)
    y = 1 + 2 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=g.size)
    z = np.column_stack([np.ones_like(x), x])
    lam = _term("g0", 200, 2).lambda_matrix(_start([g], [z], [200], z, y))
    np.testing.assert_allclose(lam @ lam.T, truth, atol=0.15)


def test_levels_of_equal_precision_give_the_unweighted_moment_estimate():
    """Where every level's Dₗ is the same, weighting by precision cannot move
    the estimate (the steps are skipped there): the start is the unweighted one."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(60), 10).astype(np.int32)
    x = np.tile(np.linspace(-1, 1, 10), 60)
    b = rng.multivariate_normal([0, 0], [[1.0, 0.2], [0.2, 0.3]], size=60)
    y = 1 + x + b[g, 0] + b[g, 1] * x + rng.normal(size=g.size)
    z = np.column_stack([np.ones_like(x), x])
    start = _start([g], [z], [60], z, y)
    # The unweighted estimate, computed here: mean(b̂b̂ᵀ) − σ² D⁻¹, σ² pooled within levels.
    d = z[:10].T @ z[:10]
    r = y - z @ np.linalg.lstsq(z, y, rcond=None)[0]
    bhat = np.array([np.linalg.solve(d, z[:10].T @ r[g == k]) for k in range(60)])
    sigma2 = (r @ r - sum(bh @ d @ bh for bh in bhat)) / (600 - 120)
    relative = (bhat.T @ bhat / 60 - sigma2 * np.linalg.inv(d)) / sigma2
    lam = _term("g0", 60, 2).lambda_matrix(start)
    np.testing.assert_allclose(lam @ lam.T, relative, rtol=1e-8)


def _factor_inputs(rng, q: int, levels: int, relative: np.ndarray):
    """A vector term's inputs to the factor: levels whose Dₗ⁻¹ differ by orders of
    magnitude (so that the weighted steps are taken) and their b̂ₗ/σ."""
    root = rng.normal(size=(levels, q, q)) * np.logspace(-1, 1, levels)[:, None, None]
    d_inv = root @ root.transpose(0, 2, 1) + 0.01 * np.eye(q)
    b = rng.normal(size=(levels, q)) * 2.0
    return relative, b, d_inv, d_inv.sum(axis=0) / levels


@pytest.mark.parametrize("q", [2, 3, 4])
@pytest.mark.parametrize(
    "kind", ["random", "indefinite", "repeated eigenvalues", "rank one", "zero"]
)
def test_compiled_factor_matches_numpys_eigh_solve_and_cholesky(q, kind):
    """The compiled factor's own Jacobi eigen-decomposition, elimination and Cholesky
    factor (in place of numba's LAPACK wrappers, slow to load) give numpy's
    numbers, with and without the weighted steps."""
    compiled = _compiled_factor()
    if compiled is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(q)
    root = rng.normal(size=(q, q))
    relative = {
        "random": root @ root.T,
        "indefinite": root @ root.T - 2.0 * np.eye(q),
        "repeated eigenvalues": 3.0 * np.eye(q),
        "rank one": np.outer(root[0], root[0]),
        "zero": np.zeros((q, q)),
    }[kind]
    for levels, heterogeneity in [(30, 0.25), (30, np.inf)]:
        inputs = _factor_inputs(rng, q, levels, relative)
        expected = _factor_numpy(*inputs, 4, 1e-4, heterogeneity)
        lam = compiled(*inputs, 4, 1e-4, heterogeneity, (0,) * q)
        assert np.all(np.triu(lam, 1) == 0.0)
        np.testing.assert_allclose(lam, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_compiled_factor_fails_with_nan_where_numpy_raises():
    compiled = _compiled_factor()
    if compiled is None:
        pytest.skip("numba is not installed")
    inputs = _factor_inputs(np.random.default_rng(1), 2, 10, np.full((2, 2), np.nan))
    with pytest.raises(np.linalg.LinAlgError):
        _factor_numpy(*inputs, 4, 1e-4, 0.25)
    assert np.isnan(compiled(*inputs, 4, 1e-4, 0.25, (0, 0))).all()


def test_no_usable_level_gives_none():
    """A slope term whose every level has one row: no level's ZᵀZ can be inverted."""
    rng = np.random.default_rng(7)
    n = 40
    g = np.arange(n, dtype=np.int32)
    z = np.column_stack([np.ones(n), rng.normal(size=n)])
    assert _start([g], [z], [n], np.ones((n, 1)), rng.normal(size=n)) is None


def test_blocks_of_the_raw_response_give_none():
    """With X's columns but y not replaced by its residuals, the moments would be wrong."""
    g, y = _intercepts(np.random.default_rng(8), 30, 5, sd_group=1.0)
    ones = np.ones((len(y), 1))
    cp = cross_products([g], [ones], [30], ones, y)
    assert moment_start(cp, [_term("g", 30, 1)]) is None


def test_the_start_is_a_point_where_the_criterion_is_defined():
    g, y = _intercepts(np.random.default_rng(9), 60, 5, sd_group=1.5)
    ones = np.ones((len(y), 1))
    offset = np.linalg.lstsq(ones, y, rcond=None)[0]
    cp = cross_products([g], [ones], [60], ones, y, beta_offset=offset)
    terms = [_term("g", 60, 1)]
    theta = moment_start(cp, terms)
    problem = LinearProblem(cp, terms, reml=True)
    assert np.isfinite(problem.objective(theta))
    # Closer to the optimum than lme4's start of θ = 1 on this problem (θ near 1.5).
    assert problem.objective(theta) < problem.objective(np.ones(1))
