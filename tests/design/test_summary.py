"""The one-pass column summary the design's checks share (design/summary.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixedmodels.design import aliased_columns
from mixedmodels.design.summary import summarize_columns


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(3)
    n = 57
    return np.column_stack(
        [
            np.ones(n),
            rng.integers(0, 2, n).astype(float),
            rng.normal(5e3, 2.0, n),
            -np.abs(rng.normal(size=n)) * 1e-200,
            np.zeros(n),
        ]
    )


@pytest.mark.parametrize("use_numba", [True, False], ids=["compiled", "numpy"])
def test_summary_is_peak_indicator_and_sd(use_numba):
    if use_numba:
        pytest.importorskip("numba")
    x = _matrix()
    summary = summarize_columns(x, use_numba=use_numba)
    np.testing.assert_array_equal(summary.peak, np.max(np.abs(x), axis=0))
    assert summary.indicator.tolist() == [True, True, False, False, True]
    np.testing.assert_allclose(summary.sd, np.std(x, axis=0, ddof=1), rtol=1e-12, atol=0)
    assert summarize_columns(x, spread=False, use_numba=use_numba).sd is None


@pytest.mark.parametrize("use_numba", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_column_with_nan_or_infinity_has_a_nan_peak(use_numba, bad):
    if use_numba:
        pytest.importorskip("numba")
    x = _matrix()
    x[10, 2] = bad
    x[0, 4] = bad  # the first row: nothing before it to compare with
    summary = summarize_columns(x, use_numba=use_numba)
    assert np.isnan(summary.peak[[2, 4]]).all()
    assert np.isfinite(summary.peak[[0, 1, 3]]).all()


@pytest.mark.parametrize("n", [56, 57])
@pytest.mark.parametrize("row", [0, 1, 30, -2, -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_compiled_pass_finds_a_bad_value_in_any_row(n, row, bad):
    # It reads two rows a step (and the last row alone when their number is odd).
    pytest.importorskip("numba")
    x = _matrix()[:n].copy()
    x[row, 1] = bad
    x[row, 4] = 1e300  # the largest value, in the same row
    summary = summarize_columns(x, use_numba=True)
    assert np.isnan(summary.peak[1]) and np.isnan(summary.sd[1])
    assert summary.peak[4] == 1e300 and not summary.indicator[4]


@pytest.mark.parametrize("n", [2, 3, 56, 57])
def test_the_compiled_standard_deviation_adds_the_rows_in_order(n):
    pytest.importorskip("numba")
    x = _matrix()[:n]
    summary = summarize_columns(x, use_numba=True)
    for j in range(x.shape[1]):
        total = 0.0
        for value in x[:, j].tolist():
            total += value
        mean = total / n
        squares = 0.0
        for value in x[:, j].tolist():
            squares += (value - mean) * (value - mean)
        assert summary.sd[j] == math.sqrt(squares / (n - 1))
        assert summary.peak[j] == np.max(np.abs(x[:, j]))


@pytest.mark.parametrize("use_numba", [True, False], ids=["compiled", "numpy"])
def test_no_rows_and_one_row(use_numba):
    if use_numba:
        pytest.importorskip("numba")
    empty = summarize_columns(np.zeros((0, 3)), use_numba=use_numba)
    np.testing.assert_array_equal(empty.peak, np.zeros(3))
    one = summarize_columns(np.array([[2.0, -3.0]]), use_numba=use_numba)
    np.testing.assert_array_equal(one.peak, [2.0, 3.0])
    np.testing.assert_array_equal(one.sd, [0.0, 0.0])
    vector = summarize_columns(np.array([1.0, -4.0, 2.0]), use_numba=use_numba)
    np.testing.assert_array_equal(vector.peak, [4.0])


def test_aliased_columns_leaves_a_fortran_ordered_x_alone():
    x = np.asfortranarray(_matrix()[:, :3])
    x = np.column_stack([x, x[:, 0] + 2.0 * x[:, 2]])
    x = np.asfortranarray(x)
    before = x.copy()
    assert aliased_columns(x) == [3]
    np.testing.assert_array_equal(x, before)


def _screened(x: np.ndarray) -> bool:
    return summarize_columns(x, rank=True, use_numba=True).full_rank


def test_the_rank_screen_passes_only_matrices_the_qr_finds_full_rank():
    # Whenever the compiled screen says "full rank", the QR must find no aliased
    # column; it must say so for ordinary designs, and never near the tolerance.
    pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    passed = 0
    for trial in range(400):
        n = int(rng.integers(2, 300))
        p = int(rng.integers(1, 9))
        x = rng.normal(size=(n, p)) * 10.0 ** rng.integers(-8, 9, size=p)
        if trial % 4 == 0:
            x[:, 0] = 1.0
        if trial % 3 == 0 and p > 1:
            # Nearly aliased: a combination of the others plus a little noise.
            eps = 10.0 ** rng.integers(-12, 0)
            x[:, -1] = x[:, :-1] @ rng.normal(size=p - 1) + eps * rng.normal(size=n)
        if _screened(x):
            passed += 1
            assert aliased_columns(x) == []
    assert passed > 100


def test_the_rank_screen_leaves_doubtful_matrices_to_the_qr():
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    n = 200
    base = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    assert _screened(base)
    assert not _screened(np.column_stack([base, base[:, 1] * 2.0]))  # aliased
    assert not _screened(np.column_stack([base, base[:, 1] + 1e-3 * rng.normal(size=n)]))
    assert not _screened(np.column_stack([base, np.zeros(n)]))
    assert not _screened(np.column_stack([base, np.full(n, 1e-150)]))
    assert not _screened(base[:2])  # fewer rows than columns
    assert not summarize_columns(base, use_numba=True).full_rank  # not asked for
    assert not summarize_columns(base, rank=True, use_numba=False).full_rank
