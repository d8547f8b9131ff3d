"""The first term's part of the factor, level by level: compiled with numba, or numpy.

The first random-effects term (the one with the most levels) contributes, for
each of its levels ℓ,

* a q×q diagonal block of L: Lₗ = chol(λᵀDₗλ + I), Dₗ = ZₗᵀZₗ;
* a short column of L below it, L_Tℓ = Λ_Tᵀ A_Tℓ λ Lₗ⁻ᵀ, whose rows are the
  levels of the later terms that share a row of the data with ℓ, plus the
  [X y] rows (:class:`LevelColumns` lays these entries out);
* the downdate T ← T − L_Tℓ L_Tℓᵀ of the dense trailing block.

Done level by level in one compiled loop, all of this costs what its
arithmetic costs: Σ over levels of (rows of the level)² for the downdate.
Written with numpy the same work needs a sparse matrix product that builds a
new sparse result on every call and a dozen whole-array passes, several
times slower; that version remains the fallback where numba is missing.
numba is imported on first use (its compiled code is cached on disk).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from .column_layout import lay_out
from .jit import compiled, compiled_on_first_use
from .smallmatrix import (
    batched_cholesky,
    batched_lower_inverse,
    batched_lower_solve_transposed,
    batched_matmul,
    congruence,
)

# Two threads split the downdate when it has at least this many products
# (about a millisecond) and this many per element of T they must add up.
_THREAD_MIN_WORK = 1e6
_THREAD_WORK_PER_ROW2 = 4.0
_WORKER: ThreadPoolExecutor | None = None


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def q0_tag(q0: int) -> tuple[int, ...]:
    """q₀ as a type for the compiled first-term loops: a tuple of q₀ zeros.

    numba compiles a function once per type of its arguments; with a tuple's
    length, q₀ is a constant of the compiled code, whose loops over q₀ it then
    unrolls (about twice as fast at q₀ = 1 or 2 as loops of a runtime length).
    """
    return (0,) * q0


def worker() -> ThreadPoolExecutor:
    """The one worker thread the compiled kernels share (created on first use)."""
    global _WORKER
    if _WORKER is None:
        _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixedmodels")
    return _WORKER


def first_term_levels(
    lo,
    hi,
    lam0,
    diag0,
    level_ptr,
    rows,
    raw,
    entry_term,
    entry_comp,
    term_q,
    lams,
    xz0,
    l00,
    values,
    out,
    pair_base,
    pair_pos,
    q0_tag,
):  # pragma: no cover - compiled by numba (run as Python only in a debugger)
    """For levels ``lo:hi``: fill ``l00`` and ``values``, downdate ``out``.

    Returns their Σ log diag L₀₀, or nan if some λᵀDₗλ + I is not positive definite.

    ``out`` is T, dense (its lower triangle), or — when ``pair_pos`` has more
    than one element — one row holding the values of T's sparse factor, where
    the pairs of a level's entries e₁ ≥ e₂ land at
    ``pair_pos[pair_base[ℓ] + i₁(i₁ + 1)/2 + i₂]`` (iₖ = eₖ − first entry).

    Entries of a level are ``level_ptr[ℓ]:level_ptr[ℓ + 1]``, rows ascending.
    An entry of a later term t (``entry_term`` ≥ 1) is row ``entry_comp`` = a
    of its q_t×q₀ block of A, the block's rows being consecutive entries; an
    [X y] entry (``entry_term`` = −1) is row ``entry_comp`` of ``xz0[:, ℓ]``.
    ``q0_tag`` is :func:`q0_tag` (q₀ as a type).
    """
    q0 = len(q0_tag)
    s_mat = np.empty((q0, q0))
    chol = np.zeros((q0, q0))
    right = np.empty((q0, q0))
    # Σ log of the diagonal of L₀₀ as log Π: a logarithm costs as much as the rest
    # of a level's arithmetic, a product of diagonals (each ≥ 1 but for rounding)
    # far less; the product is logged and restarted before it could overflow.
    logdet = 0.0
    det = 1.0
    for level in range(lo, hi):
        # λᵀDₗλ + I, lower triangle.
        for i in range(q0):
            for j in range(i + 1):
                s = 1.0 if i == j else 0.0
                for a in range(q0):
                    la = lam0[a, i]
                    if la != 0.0:
                        for b in range(q0):
                            s += la * diag0[level, a, b] * lam0[b, j]
                s_mat[i, j] = s
        for j in range(q0):
            s = s_mat[j, j]
            for kk in range(j):
                s -= chol[j, kk] * chol[j, kk]
            if not s > 0.0:
                return math.nan
            d = math.sqrt(s)
            chol[j, j] = d
            det *= d
            if not 1e-150 < det < 1e150:
                logdet += math.log(det)
                det = 1.0
            for i in range(j + 1, q0):
                s = s_mat[i, j]
                for kk in range(j):
                    s -= chol[i, kk] * chol[j, kk]
                chol[i, j] = s / d
        for i in range(q0):
            for j in range(q0):
                l00[level, i, j] = chol[i, j]
        # right = λ Lₗ⁻ᵀ, row by row by forward substitution.
        for r in range(q0):
            for j in range(q0):
                s = lam0[r, j]
                for kk in range(j):
                    s -= right[r, kk] * chol[j, kk]
                right[r, j] = s / chol[j, j]
        start = level_ptr[level]
        stop = level_ptr[level + 1]
        for e in range(start, stop):
            t = entry_term[e]
            a = entry_comp[e]
            for c in range(q0):
                s = 0.0
                if t < 0:
                    for c2 in range(q0):
                        s += xz0[a, level, c2] * right[c2, c]
                else:
                    base = e - a
                    for a2 in range(a, term_q[t]):  # λₜ is lower triangular
                        la = lams[t, a2, a]
                        if la != 0.0:
                            for c2 in range(q0):
                                s += la * raw[base + a2, c2] * right[c2, c]
                values[e, c] = s
        if len(pair_pos) > 1:
            flat = out[0]
            k = pair_base[level]
            for e1 in range(start, stop):
                for e2 in range(start, e1 + 1):
                    s = 0.0
                    for c in range(q0):
                        s += values[e1, c] * values[e2, c]
                    flat[pair_pos[k]] -= s
                    k += 1
            continue
        # The downdate, on and below the diagonal (rows ascend within a level).
        for e1 in range(start, stop):
            out_row = out[rows[e1]]
            if q0 == 1:
                v0 = values[e1, 0]
                for e2 in range(start, e1 + 1):
                    out_row[rows[e2]] -= v0 * values[e2, 0]
            elif q0 == 2:
                v0 = values[e1, 0]
                v1 = values[e1, 1]
                for e2 in range(start, e1 + 1):
                    out_row[rows[e2]] -= v0 * values[e2, 0] + v1 * values[e2, 1]
            else:
                for e2 in range(start, e1 + 1):
                    s = 0.0
                    for c in range(q0):
                        s += values[e1, c] * values[e2, c]
                    out_row[rows[e2]] -= s
    return logdet + math.log(det)


#: The compiled level loop (None without numba).
compiled_kernel = compiled_on_first_use(first_term_levels)


def first_term_modes(level_ptr, rows, values, l00, w, out, q0_tag):  # pragma: no cover - numba
    """out[ℓ] = Lₗ⁻ᵀ Σ_e values[e] w[rows[e]] over level ℓ's entries, for every level
    (``q0_tag``: :func:`q0_tag`)."""
    q0 = len(q0_tag)
    r = np.empty(q0)
    for level in range(l00.shape[0]):
        for c in range(q0):
            r[c] = 0.0
        for e in range(level_ptr[level], level_ptr[level + 1]):
            we = w[rows[e]]
            for c in range(q0):
                r[c] += values[e, c] * we
        for i in range(q0 - 1, -1, -1):
            s = r[i]
            for j in range(i + 1, q0):
                s -= l00[level, j, i] * out[level, j]
            out[level, i] = s / l00[level, i, i]


def first_term_forward(level_ptr, rows, values, l00, c0, rhs):  # pragma: no cover - numba
    """c0[ℓ] ← Lₗ⁻¹ c0[ℓ] (columns K) and rhs[rows[e]] −= values[e] · c0[ℓ] for its entries."""
    q0 = l00.shape[1]
    n_rhs = c0.shape[2]
    for level in range(l00.shape[0]):
        for k in range(n_rhs):
            for i in range(q0):
                s = c0[level, i, k]
                for j in range(i):
                    s -= l00[level, i, j] * c0[level, j, k]
                c0[level, i, k] = s / l00[level, i, i]
        for e in range(level_ptr[level], level_ptr[level + 1]):
            row = rows[e]
            for k in range(n_rhs):
                s = 0.0
                for c in range(q0):
                    s += values[e, c] * c0[level, c, k]
                rhs[row, k] -= s


_SOLVES = None


def _solve_kernels():
    """(modes, forward) compiled, or (None, None) without numba."""
    global _SOLVES
    if _SOLVES is None:
        _SOLVES = (compiled(first_term_modes), compiled(first_term_forward))
    return _SOLVES


class LevelColumns:
    """L_T0, the first term's column of L below its diagonal, held level by level.

    Parameters
    ----------
    blocks : list of (rows, levels, data, q, offset)
        One per later term: the pairs (``rows`` level of the term, ``levels``
        level of the first term) that share a row of the data, their blocks
        ``data`` (pairs, q, q₀) of A, the term's q and its first row in T.
    n_levels, q0 : int
        Levels and q of the first term.
    xy_offset, n_xy : int
        First row of [X y] in T and its number of rows.
    use_numba : bool, optional
        Force (True) or refuse (False) the compiled loop; default: use it when
        numba imports.
    """

    def __init__(
        self,
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
        n_levels: int,
        q0: int,
        xy_offset: int,
        n_xy: int,
        use_numba: bool | None = None,
    ):
        self.n_levels, self.q0, self.n_xy = n_levels, q0, n_xy
        self._lay_out(blocks, n_levels, xy_offset, n_xy, use_numba is not False)
        q_max = max(1, *(b[3] for b in blocks)) if blocks else 1
        self._lams = np.zeros((len(blocks) + 1, q_max, q_max))
        self.raw = np.zeros((len(self.rows), q0))
        for dest, (_, _, data, _, _) in zip(self.dest, blocks, strict=False):
            self.raw[dest] = data.reshape(-1, q0)
        self.values = np.zeros((len(self.rows), q0))
        self.q0_tag = q0_tag(q0)
        self.blocks = blocks
        self._kernel = compiled_kernel() if use_numba is not False else None
        if use_numba and self._kernel is None:
            raise ImportError("numba is not installed")
        self._pattern: sp.csr_matrix | None = None
        self._split = self._two_way_split(xy_offset + n_xy) if self._kernel is not None else None
        self._buffer: np.ndarray | None = None
        # Dense T by default; see use_sparse_destinations.
        self.pair_base = np.zeros(n_levels + 1, dtype=np.int64)
        self.pair_pos = np.zeros(1, dtype=np.int64)

    def _lay_out(
        self,
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
        n_levels: int,
        xy_offset: int,
        n_xy: int,
        compiled: bool,
    ) -> None:
        """The entries of the later terms' blocks and [X y], level-major, rows ascending."""
        layout = lay_out(blocks, n_levels, xy_offset, n_xy, compiled)
        self.dest = layout.dest
        self.level_ptr = layout.level_ptr
        self.rows = layout.rows
        self.entry_term = layout.entry_term
        self.entry_comp = layout.entry_comp
        self.term_q = np.array([0, *(b[3] for b in blocks)], dtype=np.int64)

    def use_sparse_destinations(self, positions: np.ndarray) -> None:
        """Downdate into a sparse factor's values, the pair e₁ ≥ e₂ of level ℓ's entries
        (iₖ = eₖ − its first entry) at ``positions[base_ℓ + i₁(i₁ + 1)/2 + i₂]``."""
        counts = np.diff(self.level_ptr)
        self.pair_base = np.concatenate([[0], np.cumsum(counts * (counts + 1) // 2)]).astype(
            np.int64
        )
        self.pair_pos = np.asarray(positions, dtype=np.int64)
        if len(self.pair_pos) < 2:
            # The kernel tells the modes apart by the length: pad a tiny problem.
            self.pair_pos = np.concatenate([self.pair_pos, [0, 0]])
        self._split = None

    @property
    def compiled(self) -> bool:
        """Whether the level loop runs compiled (numba)."""
        return self._kernel is not None

    @property
    def sparse_destinations(self) -> bool:
        return len(self.pair_pos) > 1

    @property
    def thread_split(self) -> int | None:
        """The level at which the downdate is split over two threads (None: one thread)."""
        return self._split

    def _two_way_split(self, n_rows: int) -> int | None:
        """A level splitting the downdate's work in halves, when two threads pay off.

        They do when the work is large (milliseconds) against the extra pass
        that adds the second thread's n_rows² buffer into T.
        """
        if len(self.rows) ** 2 < _THREAD_MIN_WORK:
            return None  # Σ counts² ≤ (Σ counts)²: a small model needs no sum.
        counts = np.diff(self.level_ptr).astype(np.float64)
        total = float(counts @ counts)
        if total < _THREAD_MIN_WORK or total < _THREAD_WORK_PER_ROW2 * n_rows**2:
            return None
        if available_cpus() < 2:
            return None
        work = np.cumsum(counts**2)
        return int(np.searchsorted(work, work[-1] / 2)) + 1

    def lambda_stack(self, lambdas: list[np.ndarray]) -> np.ndarray:
        """The later terms' λ in one array (terms + 1, q_max, q_max), index 0 unused."""
        for t, lam in enumerate(lambdas, start=1):
            self._lams[t, : lam.shape[0], : lam.shape[1]] = lam
        return self._lams

    def update(
        self,
        lam0: np.ndarray,
        diag0: np.ndarray,
        lambdas: list[np.ndarray],
        xz0: np.ndarray,
        out: np.ndarray,
    ) -> tuple[np.ndarray, float]:
        """Refresh the values and downdate ``out`` (T's lower triangle) by L_T0 L_T0ᵀ.

        ``lambdas`` are the later terms' λ; ``xz0`` is [X y]ᵀZ₀ (n_xy, levels, q₀).
        Returns (L₀₀ (levels, q₀, q₀), Σ log diag L₀₀); raises
        ``numpy.linalg.LinAlgError`` when λᵀDₗλ + I is not positive definite.
        """
        if self._kernel is not None:
            self.lambda_stack(lambdas)
            l00 = np.empty_like(diag0)
            arrays = (
                np.ascontiguousarray(lam0),
                diag0,
                self.level_ptr,
                self.rows,
                self.raw,
                self.entry_term,
                self.entry_comp,
                self.term_q,
                self._lams,
                np.ascontiguousarray(xz0),
                l00,
                self.values,
            )
            pairs = (self.pair_base, self.pair_pos, self.q0_tag)
            if self._split is None:
                logdet = self._kernel(0, self.n_levels, *arrays, out, *pairs)
            else:
                # Two halves of the levels (by work) at once, the second into
                # its own buffer: the kernel releases the GIL.
                if self._buffer is None:
                    self._buffer = np.empty_like(out)
                self._buffer.fill(0.0)
                other = worker().submit(
                    self._kernel, self._split, self.n_levels, *arrays, self._buffer, *pairs
                )
                logdet = self._kernel(0, self._split, *arrays, out, *pairs)
                logdet += other.result()
                out += self._buffer
            if math.isnan(logdet):
                raise np.linalg.LinAlgError("λᵀDλ + I is not positive definite")
            return l00, logdet
        return self._update_numpy(lam0, diag0, lambdas, xz0, out)

    def _update_numpy(self, lam0, diag0, lambdas, xz0, out):
        m0, q0 = self.n_levels, self.q0
        scaled = congruence(lam0, diag0)
        for a in range(q0):
            scaled[:, a, a] += 1.0
        l00 = batched_cholesky(scaled)
        inv_l00 = batched_lower_inverse(l00)
        right = batched_matmul(np.broadcast_to(lam0, (m0, q0, q0)), inv_l00.transpose(0, 2, 1))
        values = self.values
        for dest, lam, (_, term_levels, data, _, _) in zip(
            self.dest[:-1], lambdas, self.blocks, strict=True
        ):
            left = congruence(lam, data, np.eye(q0))
            values[dest] = batched_matmul(left, right[term_levels]).reshape(-1, q0)
        xy = xz0.transpose(1, 0, 2)[:, :, None, :]  # (levels, n_xy, 1, q0)
        values[self.dest[-1]] = (xy @ right[:, None]).reshape(-1, q0)
        matrix = self._csr(values)
        out -= np.tril((matrix @ matrix.T).toarray())
        return l00, float(np.sum(np.log(np.diagonal(l00, axis1=1, axis2=2))))

    def _csr(self, values: np.ndarray) -> sp.csr_matrix:
        """L_T0 as a CSR matrix (rows of T × levels·q₀) with a pattern built once."""
        if self._pattern is None:
            counts = np.diff(self.level_ptr)
            level = np.repeat(np.arange(self.n_levels), counts)
            cols = (level[:, None] * self.q0 + np.arange(self.q0)[None, :]).ravel()
            rows = np.repeat(self.rows, self.q0)
            position = np.arange(1, len(rows) + 1, dtype=np.float64)
            n_rows = int(self.rows.max()) + 1
            pattern = sp.csr_matrix(
                (position, (rows, cols)), shape=(n_rows, self.n_levels * self.q0)
            )
            pattern.sort_indices()
            self._order = pattern.data.astype(np.int64) - 1
            self._pattern = pattern
        self._pattern.data = values.reshape(-1)[self._order]
        return self._pattern

    def modes(self, l00: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Lₗ⁻ᵀ (L_T0ᵀ w)ₗ for every level ℓ: (levels, q₀), for w over the rows of T."""
        kernel = _solve_kernels()[0] if self._kernel is not None else None
        if kernel is None:
            return batched_lower_solve_transposed(l00, self.transpose_times(w))
        out = np.empty((self.n_levels, self.q0))
        kernel(self.level_ptr, self.rows, self.values, l00, w, out, self.q0_tag)
        return out

    def forward(self, l00: np.ndarray, c0: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """z0 = Lₗ⁻¹ c0ₗ for every level (c0 (levels, q₀, K)), and rhs (rows of T, K) less
        L_T0 z0 in place; returns z0."""
        kernel = _solve_kernels()[1] if self._kernel is not None else None
        if kernel is None:
            z0 = batched_matmul(batched_lower_inverse(l00), c0)
            level = np.repeat(np.arange(self.n_levels), np.diff(self.level_ptr))
            subtract = np.einsum("ea,eak->ek", self.values, z0[level])
            for c in range(rhs.shape[1]):
                rhs[:, c] -= np.bincount(self.rows, subtract[:, c], minlength=rhs.shape[0])
            return z0
        z0 = np.array(c0, dtype=np.float64, order="C")
        kernel(self.level_ptr, self.rows, self.values, l00, z0, rhs)
        return z0

    def transpose_times(self, w: np.ndarray) -> np.ndarray:
        """L_T0ᵀ w as an array (levels, q₀), for w over the rows of T."""
        weighted = self.values * w[self.rows][:, None]
        # Every level has entries (at least the [X y] rows), so reduceat's
        # segments are never empty.
        return np.add.reduceat(weighted, self.level_ptr[:-1], axis=0)

    def to_sparse(self, n_rows: int) -> sp.csr_matrix:
        """The first ``n_rows`` rows of L_T0 as a CSR matrix."""
        keep = self.rows < n_rows
        level = np.repeat(np.arange(self.n_levels), np.diff(self.level_ptr))[keep]
        cols = (level[:, None] * self.q0 + np.arange(self.q0)[None, :]).ravel()
        rows = np.repeat(self.rows[keep], self.q0)
        return sp.csr_matrix(
            (self.values[keep].ravel(), (rows, cols)), shape=(n_rows, self.n_levels * self.q0)
        )
