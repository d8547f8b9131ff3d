"""The first term's column layout: the compiled counting sort against numpy's sort."""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.engine.column_layout import _sorted_layout, lay_out


def _random_blocks(rng: np.random.Generator, n_levels: int, shuffle: bool):
    blocks, offset = [], 0
    for _ in range(rng.integers(0, 4)):
        m, q = int(rng.integers(1, 20)), int(rng.integers(1, 4))
        key = np.unique(rng.integers(0, m * n_levels, size=rng.integers(0, m * n_levels + 1)))
        term_rows = (key // n_levels).astype(np.int32)
        levels = (key % n_levels).astype(np.int32)
        if shuffle:
            order = rng.permutation(len(key))
            term_rows, levels = term_rows[order], levels[order]
        blocks.append((term_rows, levels, np.zeros((len(key), q, 1)), q, offset))
        offset += m * q
    return blocks, offset


@pytest.mark.parametrize("shuffle", [False, True], ids=["sorted pairs", "shuffled pairs"])
def test_counting_layout_is_the_sorted_layout(shuffle):
    rng = np.random.default_rng(7)
    for _ in range(100):
        n_levels = int(rng.integers(1, 30))
        blocks, xy_offset = _random_blocks(rng, n_levels, shuffle)
        n_xy = int(rng.integers(0, 4))
        counted = lay_out(blocks, n_levels, xy_offset, n_xy, compiled=True)
        sorted_ = lay_out(blocks, n_levels, xy_offset, n_xy, compiled=False)
        for name in ("level_ptr", "rows", "entry_term", "entry_comp"):
            a, b = getattr(counted, name), getattr(sorted_, name)
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert len(counted.dest) == len(blocks) + 1
        for a, b in zip(counted.dest, sorted_.dest, strict=True):
            np.testing.assert_array_equal(a, b)


def test_layout_is_level_major_with_ascending_rows():
    # Two levels of the first term; a later term (q = 2, rows from 0) whose level 1
    # meets both; [X y] (two rows) from row 4.
    blocks = [(np.array([0, 1, 1]), np.array([1, 0, 1]), np.zeros((3, 2, 1)), 2, 0)]
    layout = lay_out(blocks, n_levels=2, xy_offset=4, n_xy=2)
    np.testing.assert_array_equal(layout.level_ptr, [0, 4, 10])
    np.testing.assert_array_equal(layout.rows, [2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(layout.entry_term, [1, 1, -1, -1, 1, 1, 1, 1, -1, -1])
    np.testing.assert_array_equal(layout.entry_comp, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    # Pair 0 (level 1, rows 0-1) landed at 4-5; pair 1 (level 0, rows 2-3) at 0-1.
    np.testing.assert_array_equal(layout.dest[0], [4, 5, 0, 1, 6, 7])
    np.testing.assert_array_equal(layout.dest[1], [2, 3, 8, 9])


@pytest.mark.parametrize("n_xy", [0, 1, 3])
def test_one_term_layout_is_the_sorted_layout(n_xy):
    # A first term alone is laid out without a sort: the same arrays.
    layout = lay_out([], n_levels=5, xy_offset=0, n_xy=n_xy)
    level_ptr, rows, entry_term, entry_comp, position = _sorted_layout([], 5, 0, n_xy)
    for a, b in zip(layout[:4], (level_ptr, rows, entry_term, entry_comp), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(layout.dest[0], position)
