"""Stage 2: the blocks of AᵀA (engine.blocks.cross_products) against a dense AᵀA.

A = [Z₁ … Z_k X y] is built row by row (tests/engine/dense.py); every block
the engine keeps must be the corresponding block of AᵀA, every block it does
not keep must be zero, and the blocks of chunks of the rows must add up to the
blocks of all of them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mixedmodels.engine.blocks import CrossProducts, PairBlocks, cross_products
from tests.engine.dense import RandomProblem, random_problem

CASES = {
    "one scalar term": dict(levels=[9], qs=[1]),
    "one vector term": dict(levels=[12], qs=[3]),
    "two crossed terms": dict(levels=[15, 4], qs=[2, 1]),
    "three terms": dict(levels=[20, 6, 3], qs=[1, 2, 2]),
}


def _problem(name: str, weighted: bool) -> RandomProblem:
    return random_problem(
        seed=len(name) + int(weighted), n=240, **CASES[name], p=3, weighted=weighted
    )


def _assert_blocks_equal_dense(cp: CrossProducts, problem: RandomProblem) -> None:
    a = problem.dense_a()
    ata = a.T @ a
    cols = problem.term_columns()
    p1 = problem.x.shape[1] + 1
    xy = slice(ata.shape[0] - p1, ata.shape[0])
    for i, (m, q) in enumerate(zip(cp.n_levels, cp.q, strict=True)):
        zz = ata[cols[i], cols[i]].reshape(m, q, m, q)
        # ZᵢᵀZᵢ is block-diagonal: the engine keeps the diagonal blocks only.
        np.testing.assert_allclose(cp.diag[i], np.einsum("lalb->lab", zz), atol=1e-10)
        off_diagonal = zz.copy()
        off_diagonal[np.arange(m), :, np.arange(m), :] = 0.0
        assert not off_diagonal.any()
        # [X y]ᵀZᵢ as (p + 1, levels, q).
        np.testing.assert_allclose(cp.xz[i], ata[xy, cols[i]].reshape(p1, m, q), atol=1e-10)
    for i, j in itertools.combinations(range(cp.n_terms), 2):
        i, j = j, i  # the engine keeps ZᵢᵀZⱼ for i > j
        pairs = cp.off[(i, j)]
        dense = ata[cols[i], cols[j]].reshape(cp.n_levels[i], cp.q[i], cp.n_levels[j], cp.q[j])
        kept = np.zeros((cp.n_levels[i], cp.n_levels[j]), dtype=bool)
        kept[pairs.rows, pairs.cols] = True
        np.testing.assert_allclose(pairs.data, dense[pairs.rows, :, pairs.cols, :], atol=1e-10)
        # The pairs not kept never share a row: their blocks are zero.
        assert not dense.transpose(0, 2, 1, 3)[~kept].any()
        # Unique pairs, sorted by (row, col).
        keys = pairs.rows.astype(np.int64) * cp.n_levels[j] + pairs.cols
        assert np.all(np.diff(keys) > 0)
    np.testing.assert_allclose(cp.xx, ata[xy, xy], rtol=1e-12)
    assert set(cp.off) == {(i, j) for i in range(cp.n_terms) for j in range(i)}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_blocks_are_those_of_the_dense_cross_product(name, weighted):
    problem = _problem(name, weighted)
    cp = problem.cross_products()
    assert cp.n_levels == tuple(problem.n_levels)
    assert cp.q == tuple(zi.shape[1] for zi in problem.z)
    assert cp.n_obs == problem.n
    assert cp.n_fixed == problem.x.shape[1]
    _assert_blocks_equal_dense(cp, problem)
    expected = 0.0 if problem.weights is None else float(np.sum(np.log(problem.weights)))
    assert cp.sum_log_weights == pytest.approx(expected, rel=1e-12)


def test_levels_without_rows_have_zero_blocks():
    """Levels are counted over the whole data: a level absent from these rows has zero blocks."""
    problem = random_problem(seed=4, n=60, levels=[10, 5], qs=[2, 1])
    problem.codes[0][problem.codes[0] == 3] = 4
    problem.codes[1][problem.codes[1] == 0] = 1
    cp = problem.cross_products()
    assert cp.diag[0].shape == (10, 2, 2)
    assert not cp.diag[0][3].any() and not cp.xz[0][:, 3].any()
    assert not cp.diag[1][0].any()
    assert 3 not in cp.off[(1, 0)].cols and 0 not in cp.off[(1, 0)].rows
    _assert_blocks_equal_dense(cp, problem)


def test_beta_offset_replaces_y_by_its_residual():
    problem = random_problem(seed=5, n=150, levels=[11, 4], qs=[2, 1], weighted=True)
    beta0 = np.array([0.5, -1.0, 2.0])
    cp = problem.cross_products(beta_offset=beta0)
    shifted = RandomProblem(
        problem.codes,
        problem.n_levels,
        problem.z,
        problem.x,
        problem.y - problem.x @ beta0,
        problem.weights,
    )
    _assert_blocks_equal_dense(cp, shifted)
    np.testing.assert_array_equal(cp.beta_offset, beta0)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_blocks_of_chunks_add_up_to_the_whole(weighted):
    problem = _problem("three terms", weighted)
    whole = problem.cross_products()
    # Uneven chunks, one of a single row: many level pairs occur in one chunk only.
    cuts = [0, 70, 71, 180, problem.n]
    parts = [problem.cross_products(slice(a, b)) for a, b in itertools.pairwise(cuts)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    assert total.n_obs == whole.n_obs
    assert total.sum_log_weights == pytest.approx(whole.sum_log_weights, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(total.xx, whole.xx, rtol=1e-12)
    for a, b in zip(total.diag + total.xz, whole.diag + whole.xz, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert set(total.off) == set(whole.off)
    for key, pairs in whole.off.items():
        np.testing.assert_array_equal(total.off[key].rows, pairs.rows)
        np.testing.assert_array_equal(total.off[key].cols, pairs.cols)
        np.testing.assert_allclose(total.off[key].data, pairs.data, rtol=1e-12, atol=1e-12)
    # The order of addition does not matter.
    reverse = parts[-1]
    for part in parts[-2::-1]:
        reverse = reverse + part
    np.testing.assert_allclose(reverse.xx, whole.xx, rtol=1e-12)
    _assert_blocks_equal_dense(total, problem)


def test_pair_blocks_sum_repeated_pairs():
    a = PairBlocks(
        rows=np.array([0, 2], dtype=np.int32),
        cols=np.array([1, 0], dtype=np.int32),
        data=np.array([[[1.0]], [[2.0]]]),
    )
    b = PairBlocks(
        rows=np.array([0, 1], dtype=np.int32),
        cols=np.array([1, 1], dtype=np.int32),
        data=np.array([[[10.0]], [[20.0]]]),
    )
    total = a + b
    assert total.n_pairs == 3
    # Sorted by (row, col), the shared pair (0, 1) summed.
    assert list(zip(total.rows, total.cols, strict=True)) == [(0, 1), (1, 1), (2, 0)]
    np.testing.assert_array_equal(total.data[:, 0, 0], [11.0, 20.0, 2.0])


def test_chunks_of_different_structures_are_refused():
    problem = random_problem(seed=8, n=50, levels=[6, 3], qs=[1, 1])
    other = random_problem(seed=8, n=50, levels=[6, 3], qs=[2, 1])
    with pytest.raises(ValueError, match="different term structures"):
        problem.cross_products() + other.cross_products()


def test_no_terms_leaves_only_the_fixed_block():
    problem = random_problem(seed=9, n=40, levels=[5], qs=[1])
    cp = cross_products([], [], [], problem.x, problem.y)
    assert cp.n_terms == 0 and not cp.diag and not cp.off and not cp.xz
    xy = np.column_stack([problem.x, problem.y])
    np.testing.assert_allclose(cp.xx, xy.T @ xy, rtol=1e-12)
    assert math.isclose(cp.sum_log_weights, 0.0)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_pass_matches_the_numpy_one(name, weighted):
    """The compiled pass over the rows (numba) and the bincount fallback give the
    same blocks (the fallback is what runs where numba is missing)."""
    pytest.importorskip("numba")
    problem = _problem(name, weighted)
    beta0 = np.array([0.25, -1.0, 0.5])
    compiled = problem.cross_products(beta_offset=beta0, use_numba=True)
    fallback = problem.cross_products(beta_offset=beta0, use_numba=False)
    assert (compiled.n_levels, compiled.q) == (fallback.n_levels, fallback.q)
    for a, b in zip(compiled.diag + compiled.xz, fallback.diag + fallback.xz, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-12)
    assert set(compiled.off) == set(fallback.off)
    for key, pairs in fallback.off.items():
        np.testing.assert_array_equal(compiled.off[key].rows, pairs.rows)
        np.testing.assert_array_equal(compiled.off[key].cols, pairs.cols)
        np.testing.assert_allclose(compiled.off[key].data, pairs.data, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(compiled.xx, fallback.xx, rtol=1e-13)
    assert compiled.sum_log_weights == fallback.sum_log_weights
    np.testing.assert_array_equal(compiled.beta_offset, beta0)


def test_compiled_pass_finds_sparse_level_pairs_by_hashing():
    """Many levels crossed in few rows (the pairs found by hashing, not a dense table)."""
    pytest.importorskip("numba")
    problem = random_problem(seed=11, n=300, levels=[400, 350], qs=[1, 2])
    cp = problem.cross_products(use_numba=True)
    _assert_blocks_equal_dense(cp, problem)
