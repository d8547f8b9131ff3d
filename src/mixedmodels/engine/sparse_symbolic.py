"""The trailing block's symbolic analysis: fill-reducing order, L's pattern, sparse or dense.

The trailing block T (the later terms and [X y], see
:mod:`~mixedmodels.engine.factor`) is the Schur complement left after the
first term's levels are eliminated.  When the later terms are nested in one
another, or share few levels of the first term, much of it stays sparse
(teachers in schools, students in classrooms, subjects in areas); when they
are crossed with it, it fills in (InstEval's instructors, rated by the same
students).  Once per model, here:

* the graph of T's random-effects levels (one node per level, q rows; an
  edge where T or the first term's downdate joins two levels);
* **minimum degree** elimination on it, with the fill each elimination
  creates, stopped when what is left is nearly a clique: those levels and
  the [X y] rows (which touch everything) form a dense tail, factored by
  LAPACK — a sparse front and a dense tail, the two-level form of a
  supernodal factorization;
* L's pattern falls out of the same elimination (a node's neighbours when it
  is eliminated are its column);
* the choice: the front's simplicial work, weighted by how much slower it
  runs per flop than LAPACK, plus the tail's, against the dense Cholesky of
  all of T (:func:`analyse` returns None for dense).

The numeric side is :class:`~mixedmodels.engine.sparse_factor.SparseTrailing`.
"""

from __future__ import annotations

import numpy as np

from .jit import compiled
from .sparse_factor import SparseTrailing

# Relative costs per multiply-add, against LAPACK's blocked Cholesky of the
# dense tail (measured on InstEval's fill): the front's left-looking columns
# and the scattered subtraction of the front from the tail.
SIMPLICIAL_SLOWDOWN = 10.0
TAIL_DOWNDATE_SLOWDOWN = 30.0
# The sparse form is used when its estimated cost is below this fraction of
# the dense Cholesky's.
SPARSE_COST_FRACTION = 0.7
# Elimination stops, leaving a dense tail, once the node of minimum degree
# is joined to at least this fraction of the rows left.
TAIL_DENSITY = 0.7
# The ordering holds an n×n adjacency matrix of the levels: above this many
# levels the trailing block stays dense (a quotient-graph ordering would lift
# the limit).
MAX_ORDERED_NODES = 8_000


def _join_cliques(adjacency, pointers, members):  # pragma: no cover - compiled by numba
    """Mark every pair of each clique's members adjacent."""
    for c in range(len(pointers) - 1):
        for a in range(pointers[c], pointers[c + 1]):
            x = members[a]
            for b in range(pointers[c], pointers[c + 1]):
                y = members[b]
                if x != y:
                    adjacency[x, y] = True


def _minimum_degree(adjacency, size, extra, density):  # pragma: no cover - compiled by numba
    """Minimum-degree elimination until the rest is nearly a clique.

    ``adjacency`` (n×n bool, symmetric, no diagonal) is consumed; degrees count
    rows (``size`` per node).  Returns (order, eliminated, pointers,
    neighbours, front_flops): the nodes in order, the eliminated ones first
    (then the tail's in index order), each eliminated node's neighbours when
    it was eliminated, and Σ (rows of each eliminated column)² with ``extra``
    dense rows below every column.
    """
    n = adjacency.shape[0]
    degree = np.zeros(n, dtype=np.int64)
    for v in range(n):
        s = 0
        for u in range(n):
            if adjacency[v, u]:
                s += size[u]
        degree[v] = s
    remaining = 0
    for v in range(n):
        remaining += size[v]
    done = np.zeros(n, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    pointers = np.zeros(n + 1, dtype=np.int64)
    capacity = 4 * n + 16
    neighbours = np.empty(capacity, dtype=np.int64)
    scratch = np.empty(n, dtype=np.int64)
    used = 0
    flops = 0.0
    step = 0
    while step < n:
        best = -1
        best_degree = 0
        for v in range(n):
            if not done[v] and (best < 0 or degree[v] < best_degree):
                best = v
                best_degree = degree[v]
        v = best
        if best_degree >= density * (remaining - size[v]) and remaining - size[v] > 0:
            break
        m = 0
        for u in range(n):
            if adjacency[v, u] and not done[u]:
                scratch[m] = u
                m += 1
        if used + m > capacity:
            capacity = 2 * (used + m)
            grown = np.empty(capacity, dtype=np.int64)
            grown[:used] = neighbours[:used]
            neighbours = grown
        for a in range(m):
            neighbours[used + a] = scratch[a]
        used += m
        order[step] = v
        pointers[step + 1] = used
        rows = degree[v] + size[v] + extra
        flops += size[v] * float(rows) * rows
        done[v] = True
        remaining -= size[v]
        step += 1
        for a in range(m):
            x = scratch[a]
            adjacency[x, v] = False
            degree[x] -= size[v]
            for b in range(m):
                y = scratch[b]
                if x != y and not adjacency[x, y]:
                    adjacency[x, y] = True
                    degree[x] += size[y]
    eliminated = step
    for v in range(n):
        if not done[v]:
            order[step] = v
            step += 1
    return order, eliminated, pointers[: eliminated + 1], neighbours[:used], flops


def _column_pattern(order, eliminated, node_ptr, node_nbrs, size, n_xy):  # pragma: no cover
    """The rows' new places and the front's columns (new positions, rows ascending).

    Nodes' rows are contiguous in the new order (eliminated nodes first, then
    the tail's, then [X y]); an eliminated node's column a holds its own rows
    from a on, the rows of its neighbours when eliminated, and the tail's
    [X y] rows.
    """
    n_nodes = len(order)
    start = np.empty(n_nodes, dtype=np.int64)
    at = 0
    for step in range(n_nodes):
        start[order[step]] = at
        at += size[order[step]]
    n = at + n_xy
    front = 0
    for step in range(eliminated):
        front += size[order[step]]
    colptr = np.zeros(front + 1, dtype=np.int64)
    col = 0
    for step in range(eliminated):
        v = order[step]
        others = 0
        for p in range(node_ptr[step], node_ptr[step + 1]):
            others += size[node_nbrs[p]]
        for a in range(size[v]):
            colptr[col + 1] = colptr[col] + (size[v] - a) + others + n_xy
            col += 1
    rowidx = np.empty(colptr[front], dtype=np.int64)
    col = 0
    for step in range(eliminated):
        v = order[step]
        nbrs = node_nbrs[node_ptr[step] : node_ptr[step + 1]]
        # The neighbours by their first row (the rows ascend within a column).
        by_row = nbrs[np.argsort(start[nbrs])]
        for a in range(size[v]):
            p = colptr[col]
            for i in range(start[v] + a, start[v] + size[v]):
                rowidx[p] = i
                p += 1
            for u in by_row:
                for i in range(start[u], start[u] + size[u]):
                    rowidx[p] = i
                    p += 1
            for i in range(n - n_xy, n):
                rowidx[p] = i
                p += 1
            col += 1
    return start, front, colptr, rowidx


_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = (
            compiled(_join_cliques),
            compiled(_minimum_degree),
            compiled(_column_pattern),
        )
    return _KERNELS


def analyse(
    n_levels: list[int],
    q: list[int],
    offsets: list[int],
    n_xy: int,
    pairs: list[tuple[int, int, np.ndarray, np.ndarray]],
    cliques: tuple[np.ndarray, np.ndarray],
    force: bool = False,
) -> SparseTrailing | None:
    """A sparse factor for T, or None when T should be factored dense.

    Parameters
    ----------
    n_levels, q : list of int
        Levels and q of T's terms (the later terms, in order).
    offsets : list of int
        First row in T of each of those terms (and, last, of [X y]).
    n_xy : int
        Rows of [X y] (p + 1), placed last.
    pairs : list of (i, j, rows, cols)
        The level pairs of T's off-diagonal blocks: term i's level ``rows[b]``
        with term j's level ``cols[b]`` (terms numbered within T).
    cliques : (pointers, members)
        The sets of T's nodes (levels) that the first term's downdate joins:
        ``members[pointers[c]:pointers[c + 1]]`` for each level of the first term.
    force : bool
        Sparse whatever the costs (None only without numba or beyond
        :data:`MAX_ORDERED_NODES`).
    """
    join, minimum_degree, column_pattern = _kernels()
    if join is None:
        return None
    node_start = np.cumsum([0, *n_levels])
    n_nodes = int(node_start[-1])
    if n_nodes == 0 or n_nodes > MAX_ORDERED_NODES:
        return None
    size = np.repeat(np.asarray(q, dtype=np.int64), n_levels)
    adjacency = np.zeros((n_nodes, n_nodes), dtype=np.bool_)
    for i, j, rows, cols in pairs:
        a = node_start[i] + rows
        b = node_start[j] + cols
        adjacency[a, b] = True
        adjacency[b, a] = True
    pointers, members = cliques
    join(adjacency, np.asarray(pointers, dtype=np.int64), np.asarray(members, dtype=np.int64))
    np.fill_diagonal(adjacency, False)
    order, eliminated, node_ptr, node_nbrs, front_flops = minimum_degree(
        adjacency, size, n_xy, 1.0 + 1e-9 if force else TAIL_DENSITY
    )
    rows_t = int(size.sum())
    n = rows_t + n_xy
    if eliminated == 0 and not force:
        return None
    start, front, colptr, rowidx = column_pattern(
        order, eliminated, node_ptr, node_nbrs, size, n_xy
    )
    tail = n - front
    in_tail = np.add.reduceat((rowidx >= front).astype(np.float64), colptr[:-1]) if front else 0
    cost = (
        SIMPLICIAL_SLOWDOWN * front_flops / 2
        + TAIL_DOWNDATE_SLOWDOWN * float(np.sum(np.square(in_tail))) / 2
        + tail**3 / 3
    )
    if not force and cost > SPARSE_COST_FRACTION * n**3 / 3:
        return None
    # order of T's rows: row placed i-th.
    term_of = np.repeat(np.arange(len(q)), np.diff(node_start))
    level_of = np.arange(n_nodes) - node_start[term_of]
    first_row = np.asarray(offsets, dtype=np.int64)[term_of] + level_of * np.asarray(q)[term_of]
    node_at = np.repeat(np.arange(n_nodes), size)
    within = np.arange(rows_t) - np.repeat(np.cumsum(size) - size, size)
    row_order = np.empty(n, dtype=np.int64)
    row_order[start[node_at] + within] = first_row[node_at] + within
    row_order[rows_t:] = offsets[-1] + np.arange(n_xy)
    return SparseTrailing(row_order, front, colptr, rowidx)
