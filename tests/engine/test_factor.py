"""The blocked factor against dense linear algebra on small random problems."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mixedmodels.engine.blocks import cross_products
from mixedmodels.engine.factor import BlockedCholesky


def _random_problem(rng, n, levels, qs, nested=False, p=3):
    """Random codes (crossed, or the later terms nested in the first) and designs."""
    codes = []
    first = rng.integers(0, levels[0], n)
    for i, m in enumerate(levels):
        if i == 0:
            c = first
        elif nested:
            # Each level of the first term belongs to one level of this one.
            parent = rng.integers(0, m, levels[0])
            c = parent[first]
        else:
            c = rng.integers(0, m, n)
        codes.append(np.unique(c, return_inverse=True)[1].astype(np.int32))
    levels = [int(c.max()) + 1 for c in codes]
    z = [np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(q - 1)]) for q in qs]
    x = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(p - 1)])
    y = rng.normal(size=n)
    lambdas = []
    for q in qs:
        lam = np.tril(rng.normal(size=(q, q)))
        lam[np.diag_indices(q)] = np.abs(lam[np.diag_indices(q)]) + 0.1
        lambdas.append(lam)
    return codes, levels, z, x, y, lambdas


def _dense_z(codes, levels, z):
    blocks = []
    for c, m, zi in zip(codes, levels, z, strict=True):
        n, q = zi.shape
        zd = np.zeros((n, m * q))
        for r in range(q):
            zd[np.arange(n), c * q + r] = zi[:, r]
        blocks.append(zd)
    return np.hstack(blocks)


def _dense_lambda(levels, lambdas):
    from scipy.linalg import block_diag

    return block_diag(*[np.kron(np.eye(m), lam) for m, lam in zip(levels, lambdas, strict=True)])


CASES = [
    dict(n=200, levels=[30, 7], qs=[1, 1], nested=False),
    dict(n=300, levels=[40, 9, 4], qs=[2, 1, 2], nested=False),
    dict(n=250, levels=[50, 6], qs=[1, 1], nested=True),
    dict(n=400, levels=[60, 12, 3], qs=[3, 2, 1], nested=False),
    dict(n=150, levels=[25], qs=[2], nested=False),
]


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c['levels']}-{c['qs']}-nested{c['nested']}"
)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    ("use_numba", "trailing"),
    [(False, "dense"), (True, "dense"), (True, "sparse")],
    ids=["numpy", "numba", "numba-sparse"],
)
def test_blocked_factor_matches_dense(case, weighted, use_numba, trailing):
    rng = np.random.default_rng(sum(case["levels"]) + int(weighted))
    codes, levels, z, x, y, lambdas = _random_problem(rng, **case)
    w = rng.uniform(0.5, 2.0, len(y)) if weighted else None
    cp = cross_products(codes, z, levels, x, y, w)
    if trailing == "sparse" and len(levels) == 1:
        trailing = "auto"  # no trailing random effects to order
    factor = BlockedCholesky(cp, use_numba=use_numba, trailing=trailing)
    assert (factor.sparse is not None) == (trailing == "sparse")
    assert factor.update(lambdas)

    sw = np.ones(len(y)) if w is None else np.sqrt(w)
    zd = _dense_z(codes, levels, z) * sw[:, None]
    lam = _dense_lambda(levels, lambdas)
    xw, yw = x * sw[:, None], y * sw
    a = np.hstack([zd @ lam, xw, yw[:, None]])
    m = a.T @ a
    nz = zd.shape[1]
    m[:nz, :nz] += np.eye(nz)
    dense = np.linalg.cholesky(m)

    assert factor.logdet_theta() == pytest.approx(
        2 * np.sum(np.log(np.diag(dense)[:nz])), rel=1e-10
    )
    assert factor.logdet_x() == pytest.approx(2 * np.sum(np.log(np.diag(dense)[nz:-1])), rel=1e-10)
    assert factor.pwrss() == pytest.approx(dense[-1, -1] ** 2, rel=1e-10)
    # The factor of M with its rows and columns in the factor's order.
    order = factor.random_effects_order()
    lower = factor.random_effects_factor().toarray()
    np.testing.assert_array_equal(lower, np.tril(lower))
    np.testing.assert_allclose(
        lower @ lower.T, m[:nz, :nz][np.ix_(order, order)], rtol=1e-8, atol=1e-8
    )
    if factor.sparse is None:
        np.testing.assert_allclose(lower, dense[:nz, :nz], rtol=1e-8, atol=1e-10)

    # β and u solve the penalised least-squares problem.
    p = x.shape[1]
    system = m[:-1, :-1]
    rhs = m[:-1, -1]
    solution = np.linalg.solve(system, rhs)
    beta = factor.fixed_effects()
    np.testing.assert_allclose(beta, solution[nz:], rtol=1e-8, atol=1e-10)
    u = np.concatenate(factor.spherical_modes(beta))
    np.testing.assert_allclose(u, solution[:nz], rtol=1e-8, atol=1e-10)
    rinv = factor.inverse_rx()
    schur = m[nz:-1, nz:-1] - m[nz:-1, :nz] @ np.linalg.solve(m[:nz, :nz], m[:nz, nz:-1])
    np.testing.assert_allclose(rinv.T @ rinv, np.linalg.inv(schur), rtol=1e-8)
    assert len(beta) == p


def test_partial_cross_products_add_up():
    rng = np.random.default_rng(7)
    codes, levels, z, x, y, _ = _random_problem(rng, 500, [40, 8, 5], [2, 1, 1])
    whole = cross_products(codes, z, levels, x, y)
    cut = [0, 120, 121, 380, 500]
    parts = [
        cross_products([c[a:b] for c in codes], [zi[a:b] for zi in z], levels, x[a:b], y[a:b])
        for a, b in itertools.pairwise(cut)
    ]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    assert total.n_obs == whole.n_obs
    np.testing.assert_allclose(total.xx, whole.xx)
    for a, b in zip(total.diag, whole.diag, strict=True):
        np.testing.assert_allclose(a, b)
    for a, b in zip(total.xz, whole.xz, strict=True):
        np.testing.assert_allclose(a, b)
    for key, pairs in whole.off.items():
        np.testing.assert_array_equal(total.off[key].rows, pairs.rows)
        np.testing.assert_array_equal(total.off[key].cols, pairs.cols)
        np.testing.assert_allclose(total.off[key].data, pairs.data)


def test_objective_equals_dense_marginal_likelihood():
    """The profiled ML deviance equals -2 log L of y ~ N(Xβ̂, σ̂²(ZΛΛᵀZᵀ + I))."""
    import mixedmodels as mm

    rng = np.random.default_rng(3)
    n = 120
    g = rng.integers(0, 12, n)
    h = rng.integers(0, 5, n)
    xcol = rng.normal(size=n)
    y = 1 + 0.5 * xcol + rng.normal(size=12)[g] + rng.normal(size=n)
    data = {"y": y, "x": xcol, "g": g, "h": h}
    model = mm.LinearMixedModel("y ~ x + (x | g) + (1 | h)", data, reml=False)
    theta = np.array([0.8, 0.2, 0.5, 0.3])
    value = model.objective_at(theta)
    model = model.at_theta(theta)
    design = model.design
    zd = _dense_z(
        [t.codes for t in design.terms],
        [t.n_levels for t in design.terms],
        [t.z for t in design.terms],
    )
    lam = _dense_lambda([t.n_levels for t in design.terms], model.problem.lambdas(theta))
    sigma2 = model.sigma**2
    v = sigma2 * (zd @ lam @ lam.T @ zd.T + np.eye(n))
    resid = design.y - design.x @ model.fixef.to_numpy()
    _sign, logdet = np.linalg.slogdet(v)
    deviance = logdet + resid @ np.linalg.solve(v, resid) + n * math.log(2 * math.pi)
    assert value == pytest.approx(deviance, rel=1e-10)


def test_two_threads_give_the_one_thread_factor(monkeypatch):
    """The downdate split over two threads (large problems) gives the same factor."""
    from mixedmodels.engine import kernels

    if kernels.compiled_kernel() is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(11)
    codes, levels, z, x, y, lambdas = _random_problem(rng, 600, [80, 15, 4], [2, 1, 2])
    cp = cross_products(codes, z, levels, x, y)
    one = BlockedCholesky(cp, use_numba=True)
    assert one.col0.thread_split is None
    monkeypatch.setattr(kernels, "_THREAD_MIN_WORK", 0.0)
    monkeypatch.setattr(kernels, "_THREAD_WORK_PER_ROW2", 0.0)
    monkeypatch.setattr(kernels, "available_cpus", lambda: 2)
    two = BlockedCholesky(cp, use_numba=True)
    assert 0 < two.col0.thread_split < levels[0]
    assert one.update(lambdas) and two.update(lambdas)
    np.testing.assert_allclose(np.tril(two.T), np.tril(one.T), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(two.L00, one.L00, rtol=1e-12)
    assert two.logdet_theta() == pytest.approx(one.logdet_theta(), rel=1e-13)
    # The gradient's level loop splits the same way.
    from mixedmodels.engine.gradient import ProfiledGradient

    rows = [np.array([0, 1, 1]), np.array([0]), np.array([0, 1, 1])]
    cols = [np.array([0, 0, 1]), np.array([0]), np.array([0, 0, 1])]
    for reml in (True, False):
        g_one = ProfiledGradient(one, rows, cols).gradient(one, lambdas, reml)
        g_two = ProfiledGradient(two, rows, cols).gradient(two, lambdas, reml)
        np.testing.assert_allclose(g_two, g_one, rtol=1e-10, atol=1e-10)


def _nested_students(rng, n_students=600, n_teachers=60, n_schools=6):
    """Students with a teacher per year, teachers nested in schools (issue 18's design)."""
    teacher_school = np.arange(n_teachers) % n_schools
    student_school = rng.integers(0, n_schools, n_students)
    rows = []
    for s in range(n_students):
        teachers = np.flatnonzero(teacher_school == student_school[s])
        for t in rng.choice(teachers, size=3, replace=False):
            rows.append((s, t))
    student, teacher = np.array(rows).T
    school = teacher_school[teacher]
    codes = [student.astype(np.int32), teacher.astype(np.int32), school.astype(np.int32)]
    n = len(student)
    z = [np.ones((n, 1))] * 3
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) + rng.normal(size=n_teachers)[teacher]
    return cross_products(codes, z, [n_students, n_teachers, n_schools], x, y)


def test_trailing_block_is_sparse_when_its_fill_is():
    rng = np.random.default_rng(18)
    nested = BlockedCholesky(_nested_students(rng), use_numba=True)
    assert nested.sparse is not None
    # Crossed factors sharing most levels: the Schur complement fills in.
    n = 3000
    codes = [rng.integers(0, m, n).astype(np.int32) for m in (200, 60)]
    codes = [np.unique(c, return_inverse=True)[1].astype(np.int32) for c in codes]
    crossed = cross_products(
        codes, [np.ones((n, 1))] * 2, [200, 60], np.ones((n, 1)), rng.normal(size=n)
    )
    assert BlockedCholesky(crossed, use_numba=True).sparse is None
    assert BlockedCholesky(crossed, use_numba=True, trailing="sparse").sparse is not None
    with pytest.raises(ValueError, match="trailing"):
        BlockedCholesky(crossed, trailing="banded")


@pytest.mark.parametrize("reml", [True, False])
def test_sparse_and_dense_trailing_blocks_agree(reml):
    from mixedmodels.engine.gradient import ProfiledGradient, gradient_available

    if not gradient_available():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(5)
    cp = _nested_students(rng)
    lambdas = [np.array([[0.9]]), np.array([[0.4]]), np.array([[0.7]])]
    rows = [np.array([0])] * 3
    results = []
    for trailing in ("dense", "sparse"):
        factor = BlockedCholesky(cp, use_numba=True, trailing=trailing)
        assert factor.update(lambdas)
        gradient = ProfiledGradient(factor, rows, rows).gradient(factor, lambdas, reml)
        beta = factor.fixed_effects()
        results.append(
            (
                factor.logdet_theta(),
                factor.logdet_x(),
                factor.pwrss(),
                beta,
                np.concatenate(factor.spherical_modes(beta)),
                factor.inverse_rx(),
                gradient,
            )
        )
    for dense, sparse in zip(*results, strict=True):
        np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-10)
