"""The entries of the first term's column of L, level by level (the layout
:class:`~mixedmodels.engine.kernels.LevelColumns` works on).

Each level ℓ of the first term has one entry per row of T it touches: the
q rows of each level of a later term that shares a row of the data with ℓ
(one per pair of :class:`~mixedmodels.engine.blocks.PairBlocks`), then the
[X y] rows.  The layout puts them level-major, rows ascending within a level,
and says where each source entry (pair by pair, component by component, term
by term, then [X y] level by level) landed.

Compiled, the layout is a counting sort by level: two passes over the entries
(the pairs come sorted by the later term's level, so a level's entries arrive
in ascending rows; an insertion pass keeps any other order correct).  The
numpy version, where numba is missing, sorts a combined key.  A first term
alone needs neither: its entries are the [X y] rows, in order.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np

from .jit import compiled_on_first_use


class Layout(NamedTuple):
    """The first term's column entries, level-major (see the module's docstring)."""

    level_ptr: np.ndarray  # (levels + 1,) int64: each level's first entry
    rows: np.ndarray  # (entries,) int64: the row of T of each entry
    entry_term: np.ndarray  # (entries,) int32: its term (−1 for [X y])
    entry_comp: np.ndarray  # (entries,) int32: its component within the term's q
    dest: list[np.ndarray]  # per source (later terms, then [X y]): where its entries landed


def counting_layout(
    pair_term_rows,
    pair_levels,
    pair_ptr,
    term_q,
    term_offset,
    n_levels,
    xy_offset,
    n_xy,
    level_ptr,
    rows,
    entry_term,
    entry_comp,
    position,
):  # pragma: no cover - compiled by numba
    """Fill the layout's arrays (``position``: where each source entry landed)."""
    n_terms = pair_ptr.shape[0] - 1
    counts = np.zeros(n_levels + 1, dtype=np.int64)
    for t in range(n_terms):
        for b in range(pair_ptr[t], pair_ptr[t + 1]):
            counts[pair_levels[b] + 1] += term_q[t]
    level_ptr[0] = 0
    for level in range(n_levels):
        level_ptr[level + 1] = level_ptr[level] + counts[level + 1] + n_xy
    fill = level_ptr[:-1].copy()
    source = 0
    for t in range(n_terms):
        q = term_q[t]
        for b in range(pair_ptr[t], pair_ptr[t + 1]):
            level = pair_levels[b]
            row0 = term_offset[t] + pair_term_rows[b] * q
            for c in range(q):
                at = fill[level]
                fill[level] += 1
                rows[at] = row0 + c
                entry_term[at] = t + 1
                entry_comp[at] = c
                position[source] = at
                source += 1
    for level in range(n_levels):
        for c in range(n_xy):
            at = fill[level]
            fill[level] += 1
            rows[at] = xy_offset + c
            entry_term[at] = -1
            entry_comp[at] = c
            position[source] = at
            source += 1
    # Rows ascending within each level: already so for sorted pairs (one
    # comparison per entry); otherwise an insertion sort carries the entries
    # and their sources along.
    sorted_already = True
    for level in range(n_levels):
        for at in range(level_ptr[level] + 1, level_ptr[level + 1]):
            if rows[at] < rows[at - 1]:
                sorted_already = False
    if sorted_already:
        return
    source_of = np.empty(rows.shape[0], dtype=np.int64)
    for s in range(position.shape[0]):
        source_of[position[s]] = s
    for level in range(n_levels):
        for at in range(level_ptr[level] + 1, level_ptr[level + 1]):
            row, term, comp, src = rows[at], entry_term[at], entry_comp[at], source_of[at]
            j = at
            while j > level_ptr[level] and rows[j - 1] > row:
                rows[j] = rows[j - 1]
                entry_term[j] = entry_term[j - 1]
                entry_comp[j] = entry_comp[j - 1]
                source_of[j] = source_of[j - 1]
                j -= 1
            rows[j], entry_term[j], entry_comp[j], source_of[j] = row, term, comp, src
    for at in range(rows.shape[0]):
        position[source_of[at]] = at


counting_layout_kernel = compiled_on_first_use(counting_layout)


def lay_out(
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
    n_levels: int,
    xy_offset: int,
    n_xy: int,
    compiled: bool = True,
) -> Layout:
    """The :class:`Layout` of the first term's column.

    ``blocks`` holds one (rows, levels, data, q, offset) per later term: the
    pairs' level of that term and of the first term, their blocks, the term's
    q and its first row in T.  ``compiled=False`` (or numba missing) sorts
    with numpy.
    """
    if not blocks:
        return _xy_layout(n_levels, xy_offset, n_xy)
    # Where each source's entries start: the later terms' (q per pair), then [X y].
    bounds = [0, *itertools.accumulate(len(b[0]) * b[3] for b in blocks)]
    kernel = counting_layout_kernel() if compiled else None
    if kernel is None:
        level_ptr, rows, entry_term, entry_comp, position = _sorted_layout(
            blocks, n_levels, xy_offset, n_xy
        )
    else:
        later = (
            np.concatenate([b[0] for b in blocks]).astype(np.int64, copy=False),
            np.concatenate([b[1] for b in blocks]).astype(np.int64, copy=False),
            np.array([0, *itertools.accumulate(len(b[0]) for b in blocks)]),
            np.array([b[3] for b in blocks], dtype=np.int64),
            np.array([b[4] for b in blocks], dtype=np.int64),
        )
        total = bounds[-1] + n_levels * n_xy
        level_ptr = np.empty(n_levels + 1, dtype=np.int64)
        rows = np.empty(total, dtype=np.int64)
        position = np.empty(total, dtype=np.int64)
        entry_term = np.empty(total, dtype=np.int32)
        entry_comp = np.empty(total, dtype=np.int32)
        kernel(
            *later,
            n_levels,
            xy_offset,
            n_xy,
            level_ptr,
            rows,
            entry_term,
            entry_comp,
            position,
        )
    dest = [position[a:b] for a, b in itertools.pairwise(bounds)]
    dest.append(position[bounds[-1] :])
    return Layout(level_ptr, rows, entry_term, entry_comp, dest)


@functools.lru_cache(maxsize=16)
def _xy_layout(n_levels: int, xy_offset: int, n_xy: int) -> Layout:
    """The layout of a first term alone: each level's entries are the [X y] rows, in
    order already (no sort, and no kernel to load for a one-term model's first fit).

    A function of the three sizes only, so made once per shape (every fit of a
    one-term model makes a workspace; its arrays are only read, by all that share
    them; writeable still, as numba compiles a read-only array's type anew)."""
    total = n_levels * n_xy
    xy_comp = np.arange(total, dtype=np.int64) % n_xy if n_xy else np.zeros(0, np.int64)
    level_ptr = (
        np.arange(0, total + 1, n_xy, dtype=np.int64)
        if n_xy
        else np.zeros(n_levels + 1, dtype=np.int64)
    )
    return Layout(
        level_ptr,
        xy_offset + xy_comp,
        np.full(total, -1, dtype=np.int32),
        xy_comp.astype(np.int32),
        [np.arange(total)],
    )


def _sorted_layout(
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
    n_levels: int,
    xy_offset: int,
    n_xy: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`counting_layout` by numpy: every entry's (level, row), then one stable sort."""
    levels, rows, terms, comps = [], [], [], []
    for t, (term_rows, term_levels, _, q, offset) in enumerate(blocks, start=1):
        terms.append(np.full(len(term_rows) * q, t, dtype=np.int32))
        levels.append(np.repeat(term_levels.astype(np.int64), q))
        rows.append(
            offset + (term_rows.astype(np.int64)[:, None] * q + np.arange(q)[None, :]).ravel()
        )
        comps.append((np.arange(len(term_rows) * q) % q).astype(np.int32))
    levels.append(np.arange(n_levels * n_xy, dtype=np.int64) // max(n_xy, 1))
    xy_comp = np.arange(n_levels * n_xy, dtype=np.int64) % n_xy if n_xy else np.zeros(0, int)
    rows.append(xy_offset + xy_comp)
    terms.append(np.full(n_levels * n_xy, -1, dtype=np.int32))
    comps.append(xy_comp.astype(np.int32))
    level = np.concatenate(levels)
    row = np.concatenate(rows)
    # Each (level, row) occurs once: one sort of a combined key orders them as
    # np.lexsort((row, level)) does, in less time.
    width = int(row.max()) + 1 if len(row) else 1
    order = np.argsort(level * width + row, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    level_ptr = np.zeros(n_levels + 1, dtype=np.int64)
    np.cumsum(np.bincount(level, minlength=n_levels), out=level_ptr[1:])
    return (
        level_ptr,
        row[order],
        np.concatenate(terms)[order],
        np.concatenate(comps)[order],
        position,
    )
