"""The trailing block's factor on a sparse front and a dense tail: numeric side.

:mod:`~mixedmodels.engine.sparse_symbolic` orders T's rows and finds L's
pattern once; here, for every θ:

* **numeric factorization** — the front's columns left-looking, in place on
  their pattern (compiled with numba), the front's contribution subtracted
  from the dense tail, and the tail factored by LAPACK;
* **selected inverse** — the entries of T⁻¹ on L's pattern (Takahashi's
  recurrences on the front, LAPACK's inverse on the tail), which the
  gradient needs (:mod:`~mixedmodels.engine.gradient`);
* solves with Lᵀ and the pieces of L the rest of the engine reads.

T's values live in one array: the front's columns (compressed, rows
ascending, the diagonal first), then the tail's m×m block (C order, lower
triangle).  All of it is our own code (MIT, like the package): a supernodal
library such as CHOLMOD would factor large fills faster, but its supernodal
module is GPL.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .jit import compiled


def _factor_front(front, colptr, rowidx, values, work, head, link, first):  # pragma: no cover
    """Left-looking Cholesky of the front's columns, in place on their pattern.

    Column j gathers the updates of the columns k < j with L[j, k] ≠ 0,
    found through linked lists (``head``/``link``, one list per row, ``first``
    the position of each column's next row).  Returns the column where T
    stops being positive definite, or −1.
    """
    for j in range(front):
        head[j] = -1
    for j in range(front):
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
            if p0 < colptr[k + 1] and rowidx[p0] < front:
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
        if start + 1 < stop and rowidx[start + 1] < front:
            row = rowidx[start + 1]
            link[j] = head[row]
            head[row] = j
    return -1


def _downdate_tail(front, colptr, rowidx, values, tail):  # pragma: no cover - numba
    """tail ← tail − Σ_j L[tail, j] L[tail, j]ᵀ over the front's columns (lower triangle)."""
    for j in range(front):
        stop = colptr[j + 1]
        p0 = stop
        while p0 > colptr[j] and rowidx[p0 - 1] >= front:
            p0 -= 1
        for pa in range(p0, stop):
            ra = rowidx[pa] - front
            va = values[pa]
            for pb in range(p0, pa + 1):
                tail[ra, rowidx[pb] - front] -= va * values[pb]


def _selected_inverse(n_s, front, colptr, rowidx, values, out, tail_sigma):  # pragma: no cover
    """T⁻¹ on the front's pattern for its leading ``n_s`` rows (Takahashi), columns
    right to left; ``tail_sigma`` holds the tail's (lower triangle, already computed).

    Σ[i, j] = −(1/L_jj) Σ_k Σ[i, k] L[k, j] over the rows k > j of column j,
    Σ[j, j] = (1/L_jj)(1/L_jj − Σ_k L[k, j] Σ[k, j]); every Σ[i, k] needed lies
    on the pattern (the rows of a column form a clique of L's graph).
    """
    for j in range(min(n_s, front) - 1, -1, -1):
        start = colptr[j]
        stop = start + 1
        while stop < colptr[j + 1] and rowidx[stop] < n_s:
            stop += 1
        d = values[start]
        for p in range(start + 1, stop):
            out[p] = 0.0
        for pb in range(start + 1, stop):
            ib = rowidx[pb]
            lb = values[pb]
            q = colptr[ib] if ib < front else 0
            for pa in range(pb, stop):
                ia = rowidx[pa]
                if ib >= front:
                    s = tail_sigma[ia - front, ib - front]
                else:
                    # The rows i_a ≥ i_b of column j, found in column i_b by a merge.
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


def _solve_front_transposed(n, front, colptr, rowidx, values, rhs):  # pragma: no cover
    """Back-substitution with the front's columns of Lᵀ (rows ≥ n ignored), rhs in place."""
    for j in range(min(n, front) - 1, -1, -1):
        s = rhs[j]
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rowidx[p]
            if i < n:
                s -= values[p] * rhs[i]
        rhs[j] = s / values[colptr[j]]


def _solve_front(n, front, colptr, rowidx, values, rhs):  # pragma: no cover - numba
    """Forward substitution with the front's columns of L (rows ≥ n ignored): rhs (n, K)
    in place, the tail's rows left with the front's contributions subtracted."""
    for j in range(min(n, front)):
        d = values[colptr[j]]
        for c in range(rhs.shape[1]):
            rhs[j, c] /= d
        for p in range(colptr[j] + 1, colptr[j + 1]):
            i = rowidx[p]
            if i < n:
                for c in range(rhs.shape[1]):
                    rhs[i, c] -= values[p] * rhs[j, c]


def _pair_positions(level_ptr, rows, position, front, tail, colptr, rowidx):  # pragma: no cover
    """Storage positions of every pair e₁ ≥ e₂ of a level's entries (the kernels' order).

    ``rows`` are rows of T (original order), ``position`` their new places;
    a front pair is found in column min by bisection, a tail pair by its
    place in the dense tail.  −1 marks a pair off the pattern.
    """
    n_levels = len(level_ptr) - 1
    total = 0
    for level in range(n_levels):
        m = level_ptr[level + 1] - level_ptr[level]
        total += m * (m + 1) // 2
    out = np.empty(total, dtype=np.int64)
    k = 0
    nnz = colptr[front]
    for level in range(n_levels):
        start = level_ptr[level]
        for e1 in range(start, level_ptr[level + 1]):
            p1 = position[rows[e1]]
            for e2 in range(start, e1 + 1):
                p2 = position[rows[e2]]
                lo = min(p1, p2)
                hi = max(p1, p2)
                if lo >= front:
                    out[k] = nnz + (hi - front) * tail + (lo - front)
                else:
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
            compiled(_factor_front),
            compiled(_downdate_tail),
            compiled(_selected_inverse),
            compiled(_solve_front_transposed),
            compiled(_pair_positions),
            compiled(_solve_front),
        )
    return _KERNELS


class SparseTrailing:
    """T's factor: a sparse front of columns and a dense tail, in a fill-reducing order.

    Parameters
    ----------
    order : ndarray of int
        ``order[i]`` is the row of T placed i-th (the [X y] rows last).
    front : int
        Columns factored sparse; the rows from ``front`` on form the dense tail.
    colptr, rowidx : ndarray of int
        The front's columns (``front + 1`` pointers; rows ascending, the
        diagonal first, tail rows included).
    """

    def __init__(
        self, order: np.ndarray, front: int, colptr: np.ndarray, rowidx: np.ndarray
    ) -> None:
        self.n = n = len(order)
        self.order = order
        self.position = np.empty(n, dtype=np.int64)
        self.position[order] = np.arange(n)
        self.front = int(front)
        self.tail = n - self.front
        self.colptr = colptr
        self.rowidx = rowidx
        self.nnz_front = int(colptr[-1])
        # Sorted keys column·n + row of the front's entries, to find positions.
        columns = np.repeat(np.arange(self.front, dtype=np.int64), np.diff(colptr))
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
        self.values = np.zeros(self.nnz_front + self.tail * self.tail)
        self.tail_block = self.values[self.nnz_front :].reshape(self.tail, self.tail)
        self._work = np.zeros(n)
        self._head = np.empty(n, dtype=np.int64)
        self._link = np.empty(n, dtype=np.int64)
        self._first = np.empty(n, dtype=np.int64)

    @property
    def nnz(self) -> int:
        """Stored entries (the tail counted whole)."""
        return len(self.values)

    def storage_index(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Positions in :attr:`values` of T's entries (rows, cols) (original order, either
        triangle); raises KeyError for an entry outside the pattern."""
        r = self.position[np.asarray(rows, dtype=np.int64)]
        c = self.position[np.asarray(cols, dtype=np.int64)]
        lo, hi = np.minimum(r, c), np.maximum(r, c)
        out = np.empty(lo.shape, dtype=np.int64)
        in_tail = lo >= self.front
        out[in_tail] = (
            self.nnz_front + (hi[in_tail] - self.front) * self.tail + (lo[in_tail] - self.front)
        )
        keys = lo[~in_tail] * self.n + hi[~in_tail]
        where = np.searchsorted(self._keys, keys)
        inside = where < len(self._keys)
        if not (np.all(inside) and np.array_equal(self._keys[where], keys)):
            raise KeyError("an entry of T lies outside the sparse pattern")
        out[~in_tail] = where
        return out

    def level_pair_positions(self, level_ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Positions of the pairs of each level's entries (see kernels.LevelColumns)."""
        out = _kernels()[4](
            level_ptr,
            rows.astype(np.int64),
            self.position,
            self.front,
            self.tail,
            self.colptr,
            self.rowidx,
        )
        if np.any(out < 0):
            raise KeyError("an entry of T lies outside the sparse pattern")
        return out

    def factorize(self) -> bool:
        """Factor in place (values hold T's lower triangle); False if T is not positive
        definite."""
        factor, downdate = _kernels()[:2]
        failed = factor(
            self.front,
            self.colptr,
            self.rowidx,
            self.values,
            self._work,
            self._head,
            self._link,
            self._first,
        )
        if failed >= 0:
            return False
        if self.tail:
            downdate(self.front, self.colptr, self.rowidx, self.values, self.tail_block)
            # C-order lower triangle = Fortran-order upper triangle of the transpose.
            _, info = scipy.linalg.lapack.dpotrf(self.tail_block.T, lower=0, clean=0, overwrite_a=1)
            if info != 0:
                return False
        return True

    def diagonal(self) -> np.ndarray:
        """L's diagonal, in the new order."""
        return np.concatenate([self.values[self.colptr[:-1]], np.diagonal(self.tail_block)])

    def selected_inverse(self, n_s: int) -> np.ndarray:
        """T⁻¹ on L's pattern for its leading ``n_s`` rows (new order), laid out as
        :attr:`values` (other entries zero)."""
        out = np.zeros_like(self.values)
        k = n_s - self.front
        tail_sigma = out[self.nnz_front :].reshape(self.tail, self.tail)
        if k > 0:
            lead = np.array(self.tail_block[:k, :k])
            _, info = scipy.linalg.lapack.dpotri(lead.T, lower=0, overwrite_c=1)
            if info != 0:
                raise np.linalg.LinAlgError("the trailing block is singular")
            tail_sigma[:k, :k] = lead
        _kernels()[2](n_s, self.front, self.colptr, self.rowidx, self.values, out, tail_sigma)
        return out

    def solve_transposed(self, rhs: np.ndarray, n: int) -> np.ndarray:
        """x with L_nnᵀ x = rhs for the leading n rows (new order)."""
        x = np.array(rhs, dtype=np.float64)
        k = n - self.front
        if k > 0:
            solved, info = scipy.linalg.lapack.dtrtrs(
                self.tail_block[:k, :k].T, x[self.front : n], lower=0
            )
            if info != 0:
                raise np.linalg.LinAlgError("the factor is singular")
            x[self.front : n] = solved
        _kernels()[3](n, self.front, self.colptr, self.rowidx, self.values, x)
        return x

    def solve_lower(self, rhs: np.ndarray, n: int) -> np.ndarray:
        """z with L_nn z = rhs for the leading n rows (new order); rhs (n, K)."""
        z = np.array(rhs, dtype=np.float64, order="C")
        _kernels()[5](n, self.front, self.colptr, self.rowidx, self.values, z)
        k = n - self.front
        if k > 0:
            # The tail's lower triangle (C order) is the upper one of its transpose.
            solved, info = scipy.linalg.lapack.dtrtrs(
                self.tail_block[:k, :k].T, z[self.front : n], lower=0, trans=1
            )
            if info != 0:
                raise np.linalg.LinAlgError("the factor is singular")
            z[self.front : n] = solved
        return z

    def lower_block(self, start: int) -> np.ndarray:
        """The dense lower triangle of L's rows and columns from ``start`` (in the tail) on."""
        return np.tril(self.tail_block[start - self.front :, start - self.front :])

    def _front_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        columns = np.repeat(np.arange(self.front, dtype=np.int64), np.diff(self.colptr))
        return self.rowidx, columns, self.values[: self.nnz_front]

    def rows_below(self, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, columns, values) of L's entries in rows ≥ start and columns < start."""
        rows, cols, values = self._front_entries()
        keep = (rows >= start) & (cols < start)
        rows, cols, values = [rows[keep]], [cols[keep]], [values[keep]]
        if start > self.front:
            block = self.tail_block[start - self.front :, : start - self.front]
            r, c = np.nonzero(np.ones_like(block, dtype=bool))
            rows.append(r + start)
            cols.append(c + self.front)
            values.append(block.ravel())
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)

    def as_csc(self, n: int) -> sp.csc_matrix:
        """L's leading n×n block as a scipy CSC matrix (new order)."""
        rows, cols, values = self._front_entries()
        keep = (rows < n) & (cols < n)
        rows, cols, values = [rows[keep]], [cols[keep]], [values[keep]]
        k = n - self.front
        if k > 0:
            r, c = np.tril_indices(k)
            rows.append(r + self.front)
            cols.append(c + self.front)
            values.append(self.tail_block[r, c])
        return sp.csc_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )


def sparse_available() -> bool:
    """Whether the compiled sparse kernels can be had (numba imports)."""
    return _kernels()[0] is not None
