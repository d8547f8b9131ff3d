"""The one-pass column summary the design's checks share (design/summary.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import aliased_columns
from mixedmodels.design.checks import warn_predictor_scales
from mixedmodels.design.summary import summarize_columns, summarize_fixed
from mixedmodels.errors import PredictorScaleWarning


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


def _scale_warning(x: np.ndarray) -> bool:
    """Whether lme4's scale check, on the exact standard deviations, warns."""
    summary = summarize_columns(x, use_numba=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_predictor_scales(summary.sd, summary.indicator, [str(j) for j in range(x.shape[1])])
    return any(issubclass(w.category, PredictorScaleWarning) for w in caught)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 57])
def test_the_fixed_summary_is_the_column_summary_with_the_response(n):
    pytest.importorskip("numba")
    x = _matrix()[:n, :3].copy()
    y = np.linspace(-2.0, 7.0, n)
    both = summarize_fixed(y, x)
    alone = summarize_columns(x, rank=True, use_numba=True)
    np.testing.assert_array_equal(both.columns.peak, alone.peak)
    np.testing.assert_array_equal(both.columns.indicator, alone.indicator)
    assert both.columns.full_rank == alone.full_rank
    assert both.columns.sd is None
    assert both.response_peak == 7.0 and not both.response_constant
    assert summarize_fixed(np.full(n, 3.5), x).response_constant


@pytest.mark.parametrize("n", [56, 57])
@pytest.mark.parametrize("row", [0, 1, 2, 30, -2, -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_fixed_summary_finds_a_bad_value_in_any_row(n, row, bad):
    # Four rows of X a step, two of y (and the rows left over one by one).
    pytest.importorskip("numba")
    x = _matrix()[:n, :3].copy()
    y = np.linspace(1.0, 2.0, n)
    x[row, 2] = bad
    y[row] = bad
    both = summarize_fixed(y, x)
    assert np.isnan(both.response_peak)
    assert np.isnan(both.columns.peak[2]) and np.isfinite(both.columns.peak[:2]).all()


def test_the_fixed_summary_passes_the_scale_check_only_where_it_surely_passes():
    # "usual_scales" must never hide a warning the exact check gives, and must hold
    # for ordinary designs.
    pytest.importorskip("numba")
    rng = np.random.default_rng(2)
    usual = 0
    for trial in range(400):
        n = int(rng.integers(2, 200))
        p = int(rng.integers(1, 6))
        x = rng.normal(size=(n, p)) * 10.0 ** rng.uniform(-4, 4, size=p)
        x += 10.0 ** rng.uniform(-3, 8, size=p) * (trial % 2)  # far from zero half the time
        if trial % 5 == 0:
            x[:, 0] = 1.0
        if trial % 7 == 0:
            x[:, -1] = 0.1  # constant, not an indicator
        if summarize_fixed(np.arange(n, dtype=float), x).usual_scales:
            usual += 1
            assert not _scale_warning(x)
    assert usual > 50
    rng = np.random.default_rng(3)
    ordinary = np.column_stack([np.ones(100), rng.normal(size=100), rng.integers(0, 2, 100)])
    assert summarize_fixed(np.ones(100), ordinary).usual_scales
    # Values far from zero are measured from the first: their spread is seen.
    far = ordinary + np.array([0.0, 1e9, 0.0])
    assert summarize_fixed(np.ones(100), far).usual_scales and not _scale_warning(far)
    # Near the threshold, and a constant column that is not an indicator (whose
    # exact standard deviation may be rounding error): left to the check.
    assert not summarize_fixed(np.ones(100), ordinary * np.array([1.0, 999.5, 1.0])).usual_scales
    ordinary[:, 2] = 0.1
    assert not summarize_fixed(np.ones(100), ordinary).usual_scales


def test_columns_left_unread_are_the_indicators_the_scan_would_find():
    # The intercept and a factor's level indicators (each holding a 1) need not be
    # read: their summary is known, and the rest of the summary is unchanged.
    pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    n = 61
    level = rng.integers(0, 3, n)
    level[:3] = [0, 1, 2]
    x = np.column_stack([np.ones(n), rng.normal(size=n), level == 1, level == 2]).astype(float)
    y = rng.normal(size=n)
    everything = summarize_fixed(y, x)
    known = summarize_fixed(y, x, np.array([False, True, False, False]))
    np.testing.assert_array_equal(known.columns.peak, everything.columns.peak)
    np.testing.assert_array_equal(known.columns.indicator, everything.columns.indicator)
    assert known.columns.full_rank == everything.columns.full_rank
    assert known.usual_scales == everything.usual_scales
    assert known.response_peak == everything.response_peak


def test_a_plain_part_marks_its_numeric_and_logical_columns_to_read():
    from mixedmodels.design import plain
    from mixedmodels.formula import parse_formula

    frame = pd.DataFrame(
        {
            "y": [1.0, 2.0, 0.0, 4.0],
            "x": [0.5, 1.5, 2.5, 3.5],
            "f": ["a", "b", "c", "a"],
            "g": pd.Categorical(["u", "v", "u", "v"]),
            "flag": [True, False, True, True],
        }
    )
    parsed = parse_formula("y ~ f + x + g + flag + (1 | f)")
    parsed = mm.design.codings.coded_formula(parsed, {c: frame[c] for c in frame})
    columns = {c: frame[c] for c in frame}
    part = plain.plain_plan(parsed, columns).fixed
    assert part is not None
    keep = np.ones(4, dtype=bool)
    rows = plain.PlainRows(columns, lambda name: columns[name].to_numpy(), keep, None, 4)
    x, names, scan = part.matrix(rows)
    assert names == ["Intercept", "f[T.b]", "f[T.c]", "x", "g[T.v]", "logical(flag)[TRUE]"]
    assert scan.tolist() == [False, False, False, True, False, True]
    # Each column left unread is an indicator holding a 1.
    assert all(set(x[:, j]) == {0.0, 1.0} or set(x[:, j]) == {1.0} for j in np.flatnonzero(~scan))
