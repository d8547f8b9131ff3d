"""Stage 3 of the engine: the blocked Cholesky factor of ΛᵀAᵀAΛ + I.

Writing Λ(θ) for the block-diagonal relative covariance factor (identity on the
[X y] block), the factor L satisfies

    L Lᵀ = ΛᵀAᵀAΛ + diag(I, 0),

computed from :class:`~mixedmodels.blocks.CrossProducts` without touching the
rows.  L has two parts, split where the fill-in starts:

* the first term (the one with the most levels): its diagonal block stays
  block-diagonal, ``(n_levels, q, q)``, and the column below it, L_T0, keeps
  the sparsity of [Z₂ … Z_k X y]ᵀZ₁ (right-multiplying by a block-diagonal
  matrix creates no fill).  It is held level by level: for each level, its
  rows in the trailing block and q values per row
  (:class:`~mixedmodels.kernels.LevelColumns`);
* the trailing block T — the later terms and [X y] — where the Schur
  complement T − L_T0 L_T0ᵀ puts the fill-in.  When it fills in densely
  (crossed factors sharing many levels of the first: InstEval) one LAPACK
  Cholesky of a dense T is the fastest way through; when it stays sparse
  (nested or nearly nested terms) it is factored sparse in a fill-reducing
  order (:mod:`~mixedmodels.engine.sparse_factor`).  The choice is made once,
  from the structure (``trailing="auto"``).

The last rows of T's factor carry the fixed-effects factor R_X and the
penalised residual sum of squares r², from which the profiled objectives are
read.  The y parts of the cross-products are read at every update, so a
caller may change them in place between updates (the parametric bootstrap
does).
"""

from __future__ import annotations

import itertools
import math
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blocks import CrossProducts
from .kernels import LevelColumns
from .small_trailing import MAX_ROWS, SmallTrailing
from .smallmatrix import (
    congruence,
    lower_indices,
)
from .sparse_factor import SparseTrailing
from .sparse_symbolic import analyse

TRAILING_MODES = ("auto", "dense", "sparse")

# The symbolic analysis of T is made once per cross-products (a fit makes
# several workspaces of one problem): id → (weak reference, sparse template
# and the downdate's destinations, or None for a dense T).
_ANALYSES: dict[int, tuple[weakref.ref, tuple[SparseTrailing, np.ndarray] | None]] = {}


def _cached_analysis(cp: CrossProducts, make) -> tuple[SparseTrailing, np.ndarray] | None:
    key = id(cp)
    entry = _ANALYSES.get(key)
    if entry is not None and entry[0]() is cp:
        return entry[1]
    result = make()
    _ANALYSES[key] = (weakref.ref(cp), result)
    weakref.finalize(cp, _ANALYSES.pop, key, None)
    return result


@dataclass(frozen=True)
class _TrailingIndices:
    """Where the blocks of T are stored: the later terms' diagonal blocks, their
    off-diagonal blocks, [X y] × each term, [X y]'s lower triangle (and which of
    XᵀX's entries go there), the random effects' diagonal."""

    diag: dict[int, np.ndarray]
    off: dict[tuple[int, int], np.ndarray]
    xz: dict[int, np.ndarray]
    xx_lower: tuple[np.ndarray, np.ndarray]
    xx: np.ndarray
    re_diagonal: np.ndarray


def block_coordinates(
    rows: np.ndarray, cols: np.ndarray, q_row: int, q_col: int, row0: int, col0: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns in T of the entries of blocks ``(nb, q_row, q_col)``, flattened.

    Block b sits at rows ``row0 + rows[b]·q_row …`` and columns ``col0 + cols[b]·q_col …``.
    """
    a = np.arange(q_row)[None, :, None]
    b = np.arange(q_col)[None, None, :]
    r = row0 + rows[:, None, None].astype(np.int64) * q_row + a
    c = col0 + cols[:, None, None].astype(np.int64) * q_col + b
    r, c = np.broadcast_arrays(r, c)
    return r.ravel(), c.ravel()


class BlockedCholesky:
    """The blocked factor L for a fixed block structure, updated in place for each θ.

    Parameters
    ----------
    cp : CrossProducts
        The blocks of AᵀA, terms in the engine's order (the largest first).
    use_numba : bool, optional
        Force or refuse the compiled downdate (default: use it when available).
    trailing : {"auto", "dense", "sparse"}
        How T is held (default: chosen from its structure).
    small : bool, default True
        Update and differentiate a small dense T in one compiled call each
        (:mod:`~mixedmodels.engine.small_trailing`); False keeps the general
        path (the tests compare the two).
    """

    def __init__(
        self,
        cp: CrossProducts,
        use_numba: bool | None = None,
        trailing: str = "auto",
        small: bool = True,
    ):
        if trailing not in TRAILING_MODES:
            raise ValueError(f"trailing must be one of {TRAILING_MODES}, got {trailing!r}")
        self.cp = cp
        self.k = k = cp.n_terms
        self.sizes = [m * q for m, q in zip(cp.n_levels, cp.q, strict=True)]
        self.n_xy = cp.xx.shape[0]
        # T holds terms 1 … k−1 then [X y].
        self.offsets = [0, *itertools.accumulate(self.sizes[1:])]
        self.n_re_trailing = self.offsets[-1]
        n = self.n_t = self.n_re_trailing + self.n_xy
        if k:
            self._init_first_column(use_numba)
        # The sparse factor of T, or None when T is held dense.
        self.sparse: SparseTrailing | None = None
        # A T small enough for the compiled dense path is held dense without an
        # analysis (which cost more than a small fit's evaluations).
        small_dense = trailing == "auto" and n <= MAX_ROWS
        if k and trailing != "dense" and use_numba is not False and not small_dense:
            if trailing == "sparse":
                analysis = self._analyse_trailing(force=True)
            else:
                analysis = _cached_analysis(cp, self._analyse_trailing)
            if analysis is not None:
                template, destinations = analysis
                self.sparse = template.fresh()
                self.col0.use_sparse_destinations(destinations)
            elif trailing == "sparse":
                raise ValueError("the trailing block cannot be factored sparse here")
        if self.sparse is None:
            self.T = np.zeros((n, n))
            self._storage = self.T.reshape(-1)
        else:
            self.T = None
            self._storage = self.sparse.values
        # Where _fill_trailing writes each block in T: built on first use (the
        # compiled path of a small T does not need them).
        self._indices: _TrailingIndices | None = None
        self.L00 = np.empty((cp.n_levels[0], cp.q[0], cp.q[0])) if k else None
        self._half_logdet0 = 0.0
        # The λ of the last successful update (None before one, or after a failure).
        self.updated_with: list[list[list[float]]] | None = None
        # The compiled path of a small dense T: None until decided, False when not used.
        self._small: SmallTrailing | bool | None = None if small else False
        # (profiled_parts, R_X⁻¹ or None) of the current factor as a compiled caller
        # read them (record_update), until the next update; R_X⁻¹ handed out once.
        self._read_off: tuple[tuple[float, float, float], np.ndarray | None] | None = None

    def trailing_index(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Where T's entries (rows, cols) are stored: flat indices into the dense T (as
        given, lower triangle expected) or positions in the sparse factor's values."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if self.sparse is not None:
            return self.sparse.storage_index(rows, cols)
        return rows * self.n_t + cols

    def _trailing_indices(self) -> _TrailingIndices:
        """Where each block of T is stored (see :meth:`trailing_index`)."""
        cp = self.cp
        k = self.k
        r = self.n_re_trailing
        diag = {
            j: self.trailing_index(
                *block_coordinates(
                    np.arange(cp.n_levels[j]),
                    np.arange(cp.n_levels[j]),
                    cp.q[j],
                    cp.q[j],
                    self.offsets[j - 1],
                    self.offsets[j - 1],
                )
            )
            for j in range(1, k)
        }
        off = {
            (i, j): self.trailing_index(
                *block_coordinates(
                    pairs.rows,
                    pairs.cols,
                    cp.q[i],
                    cp.q[j],
                    self.offsets[i - 1],
                    self.offsets[j - 1],
                )
            )
            for (i, j), pairs in cp.off.items()
            if j > 0
        }
        # [X y] × term j (rows r…, the term's columns) and [X y] × [X y] (lower).
        xy_rows = r + np.arange(self.n_xy)
        xz = {
            j: self.trailing_index(
                np.repeat(xy_rows, self.sizes[j]),
                self.offsets[j - 1] + np.arange(self.sizes[j] * self.n_xy) % self.sizes[j],
            )
            for j in range(1, k)
        }
        low_r, low_c = lower_indices(self.n_xy)
        return _TrailingIndices(
            diag=diag,
            off=off,
            xz=xz,
            xx_lower=(low_r, low_c),
            xx=self.trailing_index(r + low_r, r + low_c),
            re_diagonal=self.trailing_index(np.arange(r), np.arange(r)),
        )

    def _analyse_trailing(self, force: bool = False) -> tuple[SparseTrailing, np.ndarray] | None:
        """A sparse factor of T when its fill is sparse (see sparse_factor.analyse), and
        where the first term's downdate lands in it."""
        cp = self.cp
        later = range(1, self.k)
        if not len(later):
            return None
        n_levels = [cp.n_levels[t] for t in later]
        q = [cp.q[t] for t in later]
        node_start = np.cumsum([0, *n_levels])
        pairs = [
            (i - 1, j - 1, blocks.rows.astype(np.int64), blocks.cols.astype(np.int64))
            for (i, j), blocks in cp.off.items()
            if j > 0
        ]
        # The nodes (levels of T's terms) each level of the first term joins.
        col0 = self.col0
        rows = col0.rows
        level = np.repeat(np.arange(col0.n_levels), np.diff(col0.level_ptr))
        in_terms = rows < self.n_re_trailing
        rows, level = rows[in_terms], level[in_terms]
        term = np.searchsorted(np.asarray(self.offsets[1:]), rows, side="right")
        node = node_start[term] + (rows - np.asarray(self.offsets)[term]) // np.asarray(q)[term]
        # A level's entries ascend by row, hence by node: its q rows of one node
        # are consecutive, and a comparison with the previous entry drops the
        # repeats (np.unique's sort took most of the analysis of a dense T).
        first = np.ones(len(node), dtype=bool)
        first[1:] = (node[1:] != node[:-1]) | (level[1:] != level[:-1])
        members = node[first]
        pointers = np.searchsorted(level[first], np.arange(col0.n_levels + 1))
        sparse = analyse(
            n_levels, q, self.offsets, self.n_xy, pairs, (pointers, members), force=force
        )
        if sparse is None:
            return None
        return sparse, sparse.level_pair_positions(col0.level_ptr, col0.rows)

    def _init_first_column(self, use_numba: bool | None) -> None:
        cp = self.cp
        blocks = [
            (
                cp.off[(i, 0)].rows,
                cp.off[(i, 0)].cols,
                cp.off[(i, 0)].data,
                cp.q[i],
                self.offsets[i - 1],
            )
            for i in range(1, self.k)
        ]
        self.col0 = LevelColumns(
            blocks, cp.n_levels[0], cp.q[0], self.n_re_trailing, self.n_xy, use_numba
        )

    # -- the update -----------------------------------------------------------------

    def small_path(self) -> SmallTrailing | None:
        """The compiled update and gradient of a small dense T (decided at first use)."""
        if self._small is None:
            self._small = SmallTrailing.for_factor(self) or False
        return self._small or None

    def update(self, lambdas: list[np.ndarray]) -> bool:
        """Refactor for new relative covariance factors; False if not positive definite."""
        cp = self.cp
        self.updated_with = None
        self._read_off = None
        # small_path() without its call once decided (False: no compiled path).
        small = self._small
        if small is None:
            small = self.small_path()
        if small:
            done = small.update(lambdas)
            if done is None:
                return False
            self.L00, self._half_logdet0 = done
            # As nested lists (what is_current compares; cheaper than array copies).
            self.updated_with = [lam.tolist() for lam in lambdas]
            return True
        self._fill_trailing(lambdas)
        if self.k:
            out = self.T if self.sparse is None else self._storage.reshape(1, -1)
            try:
                self.L00, self._half_logdet0 = self.col0.update(
                    lambdas[0], cp.diag[0], lambdas[1:], cp.xz[0], out
                )
            except np.linalg.LinAlgError:
                return False
        if self.sparse is not None:
            ok = self.sparse.factorize() and bool(np.isfinite(self.sparse.diagonal()[-1]))
        else:
            # T is C-ordered with its lower triangle filled: as a Fortran array its
            # transpose holds the same numbers in the upper triangle, which LAPACK
            # factors in place (an upper factor of Tᵀ is the lower factor of T).
            _, info = scipy.linalg.lapack.dpotrf(self.T.T, lower=0, clean=0, overwrite_a=1)
            ok = info == 0 and bool(np.isfinite(self.T[-1, -1]))
        if ok:
            self.updated_with = [lam.tolist() for lam in lambdas]
        return ok

    def record_update(
        self,
        l00: np.ndarray,
        half_logdet0: float,
        lambdas: list[np.ndarray] | None,
        parts: tuple[float, float, float] | None = None,
        rx_inverse: np.ndarray | None = None,
    ) -> None:
        """What :meth:`update` leaves, after a compiled caller updated T and the first
        term's column in place on the small path (:mod:`~mixedmodels.engine.small_search`):
        an update at ``lambdas`` with this L₀₀ and Σ log diag L₀₀, or a failed one (None);
        ``parts`` and ``rx_inverse``: :meth:`profiled_parts` and :meth:`inverse_rx` of
        this factor as the caller read them (the same numbers), until the next update."""
        self._read_off = None
        if lambdas is None:
            self.updated_with = None
            return
        self.L00, self._half_logdet0 = l00, half_logdet0
        self.updated_with = [lam.tolist() for lam in lambdas]
        if parts is not None:
            self._read_off = (parts, rx_inverse)

    def is_current(self, lambdas: list[np.ndarray]) -> bool:
        """Whether the last update succeeded with exactly these λ (and the
        cross-products were not changed since: the caller knows)."""
        done = self.updated_with
        # As nested lists (shapes and values): numpy's comparison and all() cost a
        # microsecond per term on these few numbers.
        return done is not None and done == [b.tolist() for b in lambdas]

    def _fill_trailing(self, lambdas: list[np.ndarray]) -> None:
        """T ← Λᵀ A Λ + diag(I, 0) on its lower triangle (terms 1 … k−1 and [X y])."""
        cp = self.cp
        r = self.n_re_trailing
        flat = self._storage
        if self._indices is None:
            self._indices = self._trailing_indices()
        at = self._indices
        if self.sparse is None:
            # The [X y] rows are overwritten whole below; the terms' rows are sparse.
            self.T[:r].fill(0.0)
        else:
            flat.fill(0.0)
        for j in range(1, self.k):
            lam = lambdas[j]
            flat[at.diag[j]] = congruence(lam, cp.diag[j]).reshape(-1)
            flat[at.xz[j]] = (cp.xz[j] @ lam).reshape(-1)
        for (i, j), index in at.off.items():
            flat[index] = congruence(lambdas[i], cp.off[(i, j)].data, lambdas[j]).reshape(-1)
        if r:
            flat[at.re_diagonal] += 1.0
        flat[at.xx] = cp.xx[at.xx_lower]

    def _diagonal(self) -> np.ndarray:
        """The diagonal of T's factor (dense order, or the sparse factor's order: the
        random effects first either way, [X y] last in its own order)."""
        if self.sparse is not None:
            return self.sparse.diagonal()
        return self.T.diagonal()

    # -- what is read off the factor ------------------------------------------------

    @property
    def L_xx(self) -> np.ndarray:
        """The factor of the [X y] Schur complement: R_X and, last, r."""
        r = self.n_re_trailing
        if self.sparse is not None:
            return self.sparse.lower_block(r)
        return np.tril(self.T[r:, r:])

    def profiled_parts(self) -> tuple[float, float, float]:
        """(log|ΛᵀZᵀZΛ + I|, log|R_XᵀR_X|, r²) from one read of the diagonal (the
        three pieces of the profiled criteria; see :meth:`logdet_theta`)."""
        if self._read_off is not None:
            return self._read_off[0]
        r = self.n_re_trailing
        p = self.n_xy - 1
        diagonal = self._diagonal()
        if len(diagonal) <= 64:
            # Python floats: numpy's per-call cost dominates on a few values.
            d = diagonal.tolist()
            log = math.log
            try:
                theta_part = 2.0 * (self._half_logdet0 + sum(map(log, d[:r]))) if self.k else 0.0
                return theta_part, 2.0 * sum(map(log, d[r : r + p])), d[-1] * d[-1]
            except ValueError:
                pass  # a diagonal not positive (no factor): numpy's -inf and nan below
        return self.logdet_theta(), self.logdet_x(), self.pwrss()

    def logdet_theta(self) -> float:
        """log |Λᵀ ZᵀZ Λ + I| = 2 Σ log diag of the random-effects part of L."""
        if not self.k:
            return 0.0
        total = self._half_logdet0
        r = self.n_re_trailing
        if r:
            total += np.sum(np.log(self._diagonal()[:r]))
        return 2.0 * float(total)

    def logdet_x(self) -> float:
        """log |R_Xᵀ R_X|, the REML correction."""
        r = self.n_re_trailing
        p = self.n_xy - 1
        return 2.0 * float(np.sum(np.log(self._diagonal()[r : r + p])))

    def pwrss(self) -> float:
        """Penalised weighted residual sum of squares r²."""
        if self._read_off is not None:
            return self._read_off[0][2]
        return float(self._diagonal()[-1] ** 2)

    def fixed_effects(self) -> np.ndarray:
        """β̂ at the current θ (in the original coordinates of y)."""
        r = self.n_re_trailing
        p = self.n_xy - 1
        offset = self.cp.beta_offset
        if p == 0:
            return np.zeros(0)
        # R_X sits on and below the diagonal of T's [X y] rows (C order): its
        # transpose, read as a Fortran array, is the upper factor LAPACK solves with.
        xy = self.T[r:, r:] if self.sparse is None else self.sparse.lower_block(r)
        beta, info = scipy.linalg.lapack.dtrtrs(xy[:p, :p].T, xy[-1, :p], lower=0)
        if info != 0:
            raise np.linalg.LinAlgError("R_X is singular")
        return beta if offset is None else beta + offset

    def spherical_modes(self, beta: np.ndarray) -> list[np.ndarray]:
        """u = L_ZZ⁻ᵀ (c − L_XZᵀ β): the spherical random effects, one array per term."""
        if self.cp.beta_offset is not None:
            beta = beta - self.cp.beta_offset
        r = self.n_re_trailing
        p = self.n_xy - 1
        # w = (−u_T, −β, 1) over the rows of T gives the right-hand sides as Lᵀw.
        w = np.empty(self.n_t)
        w[r : r + p] = -beta
        w[-1] = 1.0
        if r and self.sparse is not None:
            rows, cols, values = self.sparse.rows_below(r)
            rhs = np.bincount(cols, weights=values * w[rows], minlength=r)
            w[self.sparse.order[:r]] = -self.sparse.solve_transposed(rhs, r)
        elif r:
            t = self.T
            rhs = t[r:, :r].T @ w[r:]
            # The terms' rows of T are zero above the diagonal (see _fill_trailing).
            solved, info = scipy.linalg.lapack.dtrtrs(t[:r, :r].T, rhs, lower=0)
            if info != 0:
                raise np.linalg.LinAlgError("the factor is singular")
            w[:r] = -solved
        u0 = self.col0.modes(self.L00, w).reshape(-1)
        return [u0, *(-w[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True))]

    def solution(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(β̂, û) at the current θ: :meth:`fixed_effects` and :meth:`spherical_modes`.

        With a dense T both come from one triangular solve with T's whole
        factor, Lᵀw = (0, …, 0, r) for w = (−u_T, −β, 1), which reads T in
        place (the solve with its leading block alone copies it).
        """
        if self.sparse is not None:
            beta = self.fixed_effects()
            return beta, self.spherical_modes(beta)
        r = self.n_re_trailing
        p = self.n_xy - 1
        rhs = np.zeros(self.n_t)
        rhs[-1] = self.T[-1, -1]
        # T's lower triangle (C order) is the upper triangle of T.T (Fortran order).
        w = scipy.linalg.blas.dtrsv(self.T.T, rhs, lower=0)
        beta = -w[r : r + p]
        offset = self.cp.beta_offset
        u0 = self.col0.modes(self.L00, w).reshape(-1)
        modes = [u0, *(-w[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True))]
        return (beta if offset is None else beta + offset), modes

    def forward_solve(self, rhs_terms: list[np.ndarray], rhs_x: np.ndarray) -> np.ndarray:
        """z with L z = c for the random effects' and fixed effects' rows of L (not y's).

        ``rhs_terms`` holds c on each term's rows, arrays (levels, q, K);
        ``rhs_x`` on the fixed effects' rows, (p, K).  Returns z (rows, K), the
        rows in the factor's own order (first term, then T's rows in
        :meth:`random_effects_order`'s order, then the fixed effects): what a
        Gram matrix zᵀz, c_kᵀ Ω⁻¹ c_l, needs.
        """
        n_rhs = rhs_x.shape[1]
        p = self.n_xy - 1
        if not self.k:
            return np.zeros((p, n_rhs)) if not p else self._solve_trailing(rhs_x)
        m0, q0 = self.cp.n_levels[0], self.cp.q[0]
        # T's right-hand side less L_T0 z0 (the y row is left at zero and not returned).
        rhs = np.zeros((self.n_t, n_rhs))
        for j in range(1, self.k):
            rhs[self.offsets[j - 1] : self.offsets[j]] = rhs_terms[j].reshape(-1, n_rhs)
        rhs[self.n_re_trailing : self.n_re_trailing + p] = rhs_x
        z0 = self.col0.forward(self.L00, rhs_terms[0], rhs)  # (m0, q0, K)
        z_t = self._solve_trailing(rhs[:-1])
        return np.concatenate([z0.reshape(m0 * q0, n_rhs), z_t])

    def _solve_trailing(self, rhs: np.ndarray) -> np.ndarray:
        """z with L_T z = rhs on T's leading rows (all but y's), rows in the factor's order."""
        n = rhs.shape[0]
        if self.sparse is not None:
            return self.sparse.solve_lower(rhs[self.sparse.order[:n]], n)
        # T's lower triangle (C order) is the upper triangle of T.T (Fortran order):
        # L z = rhs is (T.T)ᵀ z = rhs.
        full = np.zeros((self.n_t, rhs.shape[1]))
        full[:n] = rhs
        z, info = scipy.linalg.lapack.dtrtrs(self.T.T, full, lower=0, trans=1)
        if info != 0:
            raise np.linalg.LinAlgError("the factor is singular")
        return z[:n]

    def inverse_rx(self) -> np.ndarray:
        """R_X⁻¹ where R_X R_Xᵀ = the fixed-effects block of the Schur complement."""
        p = self.n_xy - 1
        if not p:
            # No fixed effects (y ~ 0 + (1 | g)): LAPACK refuses an empty matrix.
            return np.zeros((0, 0))
        read_off = self._read_off
        if read_off is not None and read_off[1] is not None:
            # The compiled search's (the same LAPACK call): the caller's, once.
            self._read_off = (read_off[0], None)
            return read_off[1]
        # LAPACK's triangular inverse: a triangular solve against I (BLAS trsm)
        # took milliseconds for a 2×2 R_X when OpenBLAS runs on several threads.
        # dtrtri reads the lower triangle only: a dense T's block as it is.
        r = self.n_re_trailing
        block = self.L_xx[:p, :p] if self.sparse is not None else self.T[r : r + p, r : r + p]
        inverse, info = scipy.linalg.lapack.dtrtri(block, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("R_X is singular")
        if p > 8:
            return np.tril(inverse)
        # A few rows cleared above the diagonal cost less than np.tril's masks.
        for i in range(p - 1):
            inverse[i, i + 1 :] = 0.0
        return inverse

    def random_effects_factor(self) -> sp.csc_matrix:
        """The random-effects part of L (all terms) as one sparse lower-triangular matrix.

        Its rows and columns are Z's columns in the order
        :meth:`random_effects_order` gives (Z's own order unless T is sparse).
        """
        l00 = sp.block_diag(list(self.L00), format="csr")
        r = self.n_re_trailing
        if not r:
            return l00.tocsc()
        below = self.col0.to_sparse(r)
        if self.sparse is not None:
            # Rows of T in the sparse factor's order.
            below = below[self.sparse.order[:r]]
            trailing = self.sparse.as_csc(r)
        else:
            trailing = sp.csr_matrix(np.tril(self.T[:r, :r]))
        return sp.bmat([[l00, None], [below, trailing]], format="csc")

    def random_effects_order(self) -> np.ndarray:
        """Z's column at each row (and column) of :meth:`random_effects_factor`."""
        first = self.sizes[0] if self.k else 0
        tail = (
            np.arange(self.n_re_trailing)
            if self.sparse is None
            else self.sparse.order[: self.n_re_trailing]
        )
        return np.concatenate([np.arange(first), first + tail])
