"""The trailing block of the factor, sparse: ordering, symbolic analysis, numeric Cholesky.

The trailing block T (the later terms and [X y], see
:mod:`~mixedmodels.engine.factor`) is the Schur complement left after the
first term's levels are eliminated.  When the later terms are nested in one
another or share few levels of the first term (teachers in schools, students
in classrooms, subjects in areas), it stays sparse, and a dense Cholesky of
it wastes almost all of its work.  Here, once per model:

* **ordering** — minimum degree on the graph of T's random-effects levels
  (one node per level, q rows), with the fill each elimination creates;
  the [X y] rows, which touch everything, stay last;
* **symbolic analysis** — the pattern of L falls out of the same
  elimination (a node's neighbours when it is eliminated are its column),
  stored column by column, rows ascending (compressed sparse columns);

and for every θ, in compiled loops (numba):

* **numeric factorization** — left-looking, in place on L's pattern, from
  T's values written into that pattern;
* **selected inverse** — the entries of T⁻¹ on L's pattern (Takahashi's
  recurrences), which the gradient needs (:mod:`~mixedmodels.engine.gradient`).

Whether to use it is decided from the ordering's own count of the work: the
sparse factorization must cost well under the dense one (LAPACK's blocked
code runs several times more flops per second than a simplicial loop).
InstEval's instructors, crossed with its students, fill in completely and
stay dense; the teacher/student design of issue 18 is factored sparse.

All of it is our own code (MIT, like the package): a supernodal library such
as CHOLMOD would be faster on large fills but its supernodal module is GPL.
"""

from __future__ import annotations

import math

import numpy as np

from .kernels import compiled

# Use the sparse factor when its flops are below this fraction of the dense
# Cholesky's (n³/3): the simplicial loop runs far fewer flops per second.
SPARSE_FLOP_FRACTION = 0.1
# The ordering holds an n×n adjacency matrix of the levels: above this many
# levels the trailing block stays dense (it would be too large to factor dense
# anyway; a quotient-graph ordering would lift the limit).
MAX_ORDERED_NODES = 8_000
# A graph this dense before any fill is factored dense without ordering it.
DENSE_EDGE_FRACTION = 0.25


def _minimum_degree(adjacency, size, extra, budget):  # pragma: no cover - compiled by numba
    """Minimum-degree elimination order of a graph; the neighbours of each node when eliminated.

    ``adjacency`` (n×n bool, symmetric, no diagonal) is consumed.  Degrees count
    rows (``size`` per node).  Returns (order, pointers, neighbours, flops); flops
    is the work Σ (column rows)² of the factor (``extra`` dense rows below every
    column), and the elimination stops early, returning order[0] = −1, when it
    passes ``budget``.
    """
    n = adjacency.shape[0]
    degree = np.zeros(n, dtype=np.int64)
    for v in range(n):
        s = 0
        for u in range(n):
            if adjacency[v, u]:
                s += size[u]
        degree[v] = s
    eliminated = np.zeros(n, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    pointers = np.zeros(n + 1, dtype=np.int64)
    capacity = 4 * n + 16
    neighbours = np.empty(capacity, dtype=np.int64)
    scratch = np.empty(n, dtype=np.int64)
    used = 0
    flops = 0.0
    for step in range(n):
        best = -1
        best_degree = 0
        for v in range(n):
            if not eliminated[v] and (best < 0 or degree[v] < best_degree):
                best = v
                best_degree = degree[v]
        v = best
        m = 0
        for u in range(n):
            if adjacency[v, u] and not eliminated[u]:
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
        if flops > budget:
            order[0] = -1
            return order, pointers, neighbours[:used], flops
        eliminated[v] = True
        for a in range(m):
            x = scratch[a]
            adjacency[x, v] = False
            degree[x] -= size[v]
            for b in range(m):
                y = scratch[b]
                if x != y and not adjacency[x, y]:
                    adjacency[x, y] = True
                    degree[x] += size[y]
    return order, pointers, neighbours[:used], flops


def _join_cliques(adjacency, pointers, members, limit):  # pragma: no cover - numba
    """Mark every pair of each clique's members adjacent; stop past ``limit`` edges.

    Returns the number of (directed) edges, or −1 when it passed the limit.
    """
    edges = 0
    for v in range(adjacency.shape[0]):
        for u in range(adjacency.shape[1]):
            if adjacency[v, u]:
                edges += 1
    for c in range(len(pointers) - 1):
        for a in range(pointers[c], pointers[c + 1]):
            x = members[a]
            for b in range(pointers[c], pointers[c + 1]):
                y = members[b]
                if x != y and not adjacency[x, y]:
                    adjacency[x, y] = True
                    edges += 1
        if edges > limit:
            return -1
    return edges


def _factor_left_looking(n, colptr, rowidx, values, work, head, link, first):  # pragma: no cover
    """Cholesky in place on L's pattern (values hold T's lower triangle there).

    Left-looking: column j gathers the updates of the columns k < j with
    L[j, k] ≠ 0, found through linked lists (``head``/``link``, one list per
    row, ``first`` the position of each column's next row).  Returns the
    column where T stops being positive definite, or −1.
    """
    for j in range(n):
        head[j] = -1
    for j in range(n):
        start = colptr[j]
        stop = colptr[j + 1]
        for p in range(start, stop):
            work[rowidx[p]] = values[p]
        k = head[j]
        while k != -1:
            following = link[k]
            p0 = first[k]
            ljk = values[p0]
            for p in range(p0, colptr[k + 1]):
                work[rowidx[p]] -= values[p] * ljk
            p0 += 1
            first[k] = p0
            if p0 < colptr[k + 1]:
                row = rowidx[p0]
                link[k] = head[row]
                head[row] = k
            k = following
        d = work[j]
        if not d > 0.0:
            return j
        d = math.sqrt(d)
        values[start] = d
        for p in range(start + 1, stop):
            values[p] = work[rowidx[p]] / d
        first[j] = start + 1
        if start + 1 < stop:
            row = rowidx[start + 1]
            link[j] = head[row]
            head[row] = j
    return -1


def _selected_inverse(n_s, colptr, rowidx, values, out):  # pragma: no cover - numba
    """T⁻¹ on L's pattern for the leading ``n_s`` rows and columns (Takahashi).

    Σ[i, j] = −(1/L_jj) Σ_k Σ[i, k] L[k, j] over the rows k > j of column j,
    Σ[j, j] = (1/L_jj)(1/L_jj − Σ_k L[k, j] Σ[k, j]), columns right to left;
    every Σ[i, k] needed lies on the pattern (the rows of a column form a
    clique of L's graph).  Entries of rows ≥ n_s are left untouched.
    """
    for j in range(n_s - 1, -1, -1):
        start = colptr[j]
        stop = start + 1
        while stop < colptr[j + 1] and rowidx[stop] < n_s:
            stop += 1
        d = values[start]
        # Σ[i_a, j] for the rows below the diagonal, one column i_b at a time:
        # the rows i_a ≥ i_b of column j are found in column i_b by a merge.
        for p in range(start + 1, stop):
            out[p] = 0.0
        for pb in range(start + 1, stop):
            ib = rowidx[pb]
            lb = values[pb]
            # Σ[i_b, i_b] and the rows below it in column i_b.
            q = colptr[ib]
            for pa in range(pb, stop):
                ia = rowidx[pa]
                while rowidx[q] < ia:
                    q += 1
                s = out[q]
                out[pa] -= s * lb
                if pa != pb:
                    # Σ[i_b, i_a] = Σ[i_a, i_b] contributes to row i_b.
                    out[pb] -= s * values[pa]
        t = 0.0
        for p in range(start + 1, stop):
            out[p] /= d
            t += values[p] * out[p]
        out[start] = (1.0 / d - t) / d


def _solve_lower_transposed(n, colptr, rowidx, values, rhs):  # pragma: no cover - numba
    """Solve Lᵀ x = rhs in place over the first n columns (rows ≥ n ignored)."""
    for j in range(n - 1, -1, -1):
        s = rhs[j]
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rowidx[p]
            if i < n:
                s -= values[p] * rhs[i]
        rhs[j] = s / values[colptr[j]]


def _pair_positions(level_ptr, rows, position, colptr, rowidx):  # pragma: no cover
    """Positions in L's values of every pair e₁ ≥ e₂ of a level's entries (kernel order).

    ``rows`` are rows of T (original order), ``position`` their new places; each
    pair is found in column min by bisection.  −1 marks a pair off the pattern.
    """
    n_levels = len(level_ptr) - 1
    total = 0
    for level in range(n_levels):
        m = level_ptr[level + 1] - level_ptr[level]
        total += m * (m + 1) // 2
    out = np.empty(total, dtype=np.int64)
    k = 0
    for level in range(n_levels):
        start = level_ptr[level]
        for e1 in range(start, level_ptr[level + 1]):
            p1 = position[rows[e1]]
            for e2 in range(start, e1 + 1):
                p2 = position[rows[e2]]
                lo = min(p1, p2)
                hi = max(p1, p2)
                a = colptr[lo]
                b = colptr[lo + 1]
                while a < b:
                    mid = (a + b) // 2
                    if rowidx[mid] < hi:
                        a = mid + 1
                    else:
                        b = mid
                out[k] = a if a < colptr[lo + 1] and rowidx[a] == hi else -1
                k += 1
    return out


_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = (
            compiled(_minimum_degree),
            compiled(_factor_left_looking),
            compiled(_selected_inverse),
            compiled(_solve_lower_transposed),
            compiled(_column_pattern),
            compiled(_pair_positions),
            compiled(_join_cliques),
        )
    return _KERNELS


def sparse_available() -> bool:
    """Whether the compiled sparse kernels can be had (numba imports)."""
    return _kernels()[0] is not None


class SparseTrailing:
    """The trailing block's factor L on a fixed sparse pattern, in a fill-reducing order.

    Parameters
    ----------
    order : ndarray of int
        ``order[i]`` is the row of T placed i-th (the [X y] rows last).
    colptr, rowidx : ndarray of int
        L's pattern in the new order (compressed columns, rows ascending,
        the diagonal first).
    """

    def __init__(self, order: np.ndarray, colptr: np.ndarray, rowidx: np.ndarray) -> None:
        self.n = n = len(order)
        self.order = order
        self.position = np.empty(n, dtype=np.int64)
        self.position[order] = np.arange(n)
        self.colptr = colptr
        self.rowidx = rowidx
        # Sorted keys column·n + row of the stored entries, to find positions.
        columns = np.repeat(np.arange(n, dtype=np.int64), np.diff(colptr))
        self._keys = columns * n + rowidx
        self._allocate()

    def fresh(self) -> SparseTrailing:
        """Another factor on the same pattern (shared), with values of its own."""
        twin = object.__new__(SparseTrailing)
        twin.__dict__.update(self.__dict__)
        twin._allocate()
        return twin

    def _allocate(self) -> None:
        n = self.n
        self.values = np.zeros(len(self.rowidx))
        self._work = np.zeros(n)
        self._head = np.empty(n, dtype=np.int64)
        self._link = np.empty(n, dtype=np.int64)
        self._first = np.empty(n, dtype=np.int64)
        self.diagonal_index = self.colptr[:-1].copy()

    @property
    def nnz(self) -> int:
        return len(self.rowidx)

    def storage_index(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Positions in :attr:`values` of T's entries (rows, cols) (original order, either
        triangle); raises KeyError for an entry outside the pattern."""
        r = self.position[np.asarray(rows, dtype=np.int64)]
        c = self.position[np.asarray(cols, dtype=np.int64)]
        lo, hi = np.minimum(r, c), np.maximum(r, c)
        keys = lo * self.n + hi
        where = np.searchsorted(self._keys, keys)
        inside = where < len(self._keys)
        if not (np.all(inside) and np.array_equal(self._keys[where], keys)):
            raise KeyError("an entry of T lies outside the sparse pattern")
        return where

    def level_pair_positions(self, level_ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Positions of the pairs of each level's entries (see kernels.LevelColumns)."""
        out = _kernels()[5](
            level_ptr, rows.astype(np.int64), self.position, self.colptr, self.rowidx
        )
        if np.any(out < 0):
            raise KeyError("an entry of T lies outside the sparse pattern")
        return out

    def factorize(self) -> bool:
        """Factor in place (values hold T's lower triangle on L's pattern); False if T is
        not positive definite."""
        factor = _kernels()[1]
        failed = factor(
            self.n,
            self.colptr,
            self.rowidx,
            self.values,
            self._work,
            self._head,
            self._link,
            self._first,
        )
        return failed < 0

    def diagonal(self) -> np.ndarray:
        """L's diagonal, in the new order."""
        return self.values[self.diagonal_index]

    def selected_inverse(self, n_s: int) -> np.ndarray:
        """T⁻¹ on L's pattern for its leading ``n_s`` rows (new order), as an array like
        :attr:`values` (other entries zero)."""
        inverse = _kernels()[2]
        out = np.zeros_like(self.values)
        inverse(n_s, self.colptr, self.rowidx, self.values, out)
        return out

    def solve_transposed(self, rhs: np.ndarray, n: int) -> np.ndarray:
        """x with L_nnᵀ x = rhs for the leading n rows (new order)."""
        solve = _kernels()[3]
        x = np.array(rhs, dtype=np.float64)
        solve(n, self.colptr, self.rowidx, self.values, x)
        return x

    def lower_block(self, start: int) -> np.ndarray:
        """The dense lower triangle of L's trailing rows and columns from ``start`` on."""
        size = self.n - start
        out = np.zeros((size, size))
        for j in range(start, self.n):
            p = slice(self.colptr[j], self.colptr[j + 1])
            rows = self.rowidx[p]
            out[rows - start, j - start] = self.values[p]
        return out

    def rows_below(self, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, columns, values) of L's entries in rows ≥ start and columns < start."""
        columns = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.colptr))
        keep = (self.rowidx >= start) & (columns < start)
        return self.rowidx[keep], columns[keep], self.values[keep]

    def as_csc(self, n: int):
        """L's leading n×n block as a scipy CSC matrix (new order)."""
        import scipy.sparse as sp

        columns = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.colptr))
        keep = (self.rowidx < n) & (columns < n)
        return sp.csc_matrix((self.values[keep], (self.rowidx[keep], columns[keep])), shape=(n, n))


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
        Analyse sparse whatever the fill (None only without numba or beyond
        :data:`MAX_ORDERED_NODES`).
    """
    if not sparse_available():
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
    np.fill_diagonal(adjacency, False)
    rows_t = int(size.sum())
    dense_flops = (rows_t + n_xy) ** 3 / 3.0
    limit = n_nodes * n_nodes if force else DENSE_EDGE_FRACTION * n_nodes * n_nodes
    edges = _kernels()[6](
        adjacency, np.asarray(pointers, dtype=np.int64), np.asarray(members, dtype=np.int64), limit
    )
    if edges < 0:
        return None
    budget = math.inf if force else SPARSE_FLOP_FRACTION * dense_flops
    order_nodes, node_ptr, node_nbrs, _ = _kernels()[0](adjacency, size, n_xy, budget)
    if order_nodes[0] < 0:
        return None
    return _expand(order_nodes, node_ptr, node_nbrs, size, node_start, q, offsets, n_xy)


def _column_pattern(order_nodes, node_ptr, node_nbrs, size, n_xy):  # pragma: no cover
    """L's columns (new positions, rows ascending) from the node elimination.

    Node v's rows are contiguous in the new order; its column a holds its own
    rows from a on, the rows of the nodes it was adjacent to when eliminated
    (all eliminated later), and the [X y] rows; the [X y] columns are dense.
    """
    n_nodes = len(order_nodes)
    start = np.empty(n_nodes, dtype=np.int64)
    at = 0
    for step in range(n_nodes):
        start[order_nodes[step]] = at
        at += size[order_nodes[step]]
    n_re = at
    n = n_re + n_xy
    colptr = np.zeros(n + 1, dtype=np.int64)
    col = 0
    for step in range(n_nodes):
        v = order_nodes[step]
        others = 0
        for p in range(node_ptr[step], node_ptr[step + 1]):
            others += size[node_nbrs[p]]
        for a in range(size[v]):
            colptr[col + 1] = colptr[col] + (size[v] - a) + others + n_xy
            col += 1
    for a in range(n_xy):
        colptr[col + 1] = colptr[col] + (n_xy - a)
        col += 1
    rowidx = np.empty(colptr[n], dtype=np.int64)
    col = 0
    for step in range(n_nodes):
        v = order_nodes[step]
        nbrs = node_nbrs[node_ptr[step] : node_ptr[step + 1]]
        firsts = np.sort(start[nbrs])
        sizes = np.empty(len(nbrs), dtype=np.int64)
        for b in range(len(nbrs)):
            # The node whose rows begin at firsts[b] (starts are distinct).
            for c in range(len(nbrs)):
                if start[nbrs[c]] == firsts[b]:
                    sizes[b] = size[nbrs[c]]
        for a in range(size[v]):
            p = colptr[col]
            for i in range(start[v] + a, start[v] + size[v]):
                rowidx[p] = i
                p += 1
            for b in range(len(nbrs)):
                for i in range(firsts[b], firsts[b] + sizes[b]):
                    rowidx[p] = i
                    p += 1
            for i in range(n_re, n):
                rowidx[p] = i
                p += 1
            col += 1
    for a in range(n_xy):
        p = colptr[col]
        for i in range(n_re + a, n):
            rowidx[p] = i
            p += 1
        col += 1
    return start, colptr, rowidx


def _expand(order_nodes, node_ptr, node_nbrs, size, node_start, q, offsets, n_xy):
    """Scalar rows from the node elimination: the order of T's rows and L's pattern."""
    start, colptr, rowidx = _kernels()[4](order_nodes, node_ptr, node_nbrs, size, n_xy)
    n_nodes = len(order_nodes)
    term_of = np.repeat(np.arange(len(q)), np.diff(node_start))
    level_of = np.arange(n_nodes) - node_start[term_of]
    first_row = np.asarray(offsets, dtype=np.int64)[term_of] + level_of * np.asarray(q)[term_of]
    n_re = int(size.sum())
    # order[new position] = row of T.
    order = np.empty(n_re + n_xy, dtype=np.int64)
    node_at = np.repeat(np.arange(n_nodes), size)
    offset_in_node = np.arange(n_re) - np.repeat(np.cumsum(size) - size, size)
    order[start[node_at] + offset_in_node] = first_row[node_at] + offset_in_node
    order[n_re:] = offsets[-1] + np.arange(n_xy)
    return SparseTrailing(order, colptr, rowidx)
