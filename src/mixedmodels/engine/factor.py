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
* the trailing block T — the later terms and [X y] — is dense: the Schur
  complement T − L_T0 L_T0ᵀ is where the fill-in lands, and one LAPACK
  Cholesky of it is the fastest way through (its size is set by the levels
  of the smaller terms).

The last rows of T's factor carry the fixed-effects factor R_X and the
penalised residual sum of squares r², from which the profiled objectives are
read.  The y parts of the cross-products are read at every update, so a
caller may change them in place between updates (the parametric bootstrap
does).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blocks import CrossProducts
from .kernels import LevelColumns
from .smallmatrix import batched_lower_solve_transposed, congruence


def _block_index(
    rows: np.ndarray, cols: np.ndarray, q_row: int, q_col: int, row0: int, col0: int, n_col: int
) -> np.ndarray:
    """Flat indices, in a matrix of n_col columns, of blocks ``(nb, q_row, q_col)``.

    Block b sits at rows ``row0 + rows[b]·q_row …`` and columns ``col0 + cols[b]·q_col …``.
    """
    a = np.arange(q_row)[None, :, None]
    b = np.arange(q_col)[None, None, :]
    r = row0 + rows[:, None, None].astype(np.int64) * q_row + a
    c = col0 + cols[:, None, None].astype(np.int64) * q_col + b
    return (r * n_col + c).ravel()


class BlockedCholesky:
    """The blocked factor L for a fixed block structure, updated in place for each θ.

    Parameters
    ----------
    cp : CrossProducts
        The blocks of AᵀA, terms in the engine's order (the largest first).
    use_numba : bool, optional
        Force or refuse the compiled downdate (default: use it when available).
    """

    def __init__(self, cp: CrossProducts, use_numba: bool | None = None):
        self.cp = cp
        self.k = k = cp.n_terms
        self.sizes = [m * q for m, q in zip(cp.n_levels, cp.q, strict=True)]
        self.n_xy = cp.xx.shape[0]
        # T holds terms 1 … k−1 then [X y].
        self.offsets = np.cumsum([0, *self.sizes[1:]]).tolist()
        self.n_re_trailing = self.offsets[-1]
        n = self.n_t = self.n_re_trailing + self.n_xy
        self.T = np.zeros((n, n))
        self._diag_index = {
            j: _block_index(
                np.arange(cp.n_levels[j]),
                np.arange(cp.n_levels[j]),
                cp.q[j],
                cp.q[j],
                self.offsets[j - 1],
                self.offsets[j - 1],
                n,
            )
            for j in range(1, k)
        }
        self._off_index = {
            (i, j): _block_index(
                pairs.rows,
                pairs.cols,
                cp.q[i],
                cp.q[j],
                self.offsets[i - 1],
                self.offsets[j - 1],
                n,
            )
            for (i, j), pairs in cp.off.items()
            if j > 0
        }
        if k:
            self._init_first_column(use_numba)
        self.L00 = np.empty((cp.n_levels[0], cp.q[0], cp.q[0])) if k else None
        self._half_logdet0 = 0.0

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

    def update(self, lambdas: list[np.ndarray]) -> bool:
        """Refactor for new relative covariance factors; False if not positive definite."""
        cp = self.cp
        self._fill_trailing(lambdas)
        if self.k:
            try:
                self.L00, self._half_logdet0 = self.col0.update(
                    lambdas[0], cp.diag[0], lambdas[1:], cp.xz[0], self.T
                )
            except np.linalg.LinAlgError:
                return False
        # T is C-ordered with its lower triangle filled: as a Fortran array its
        # transpose holds the same numbers in the upper triangle, which LAPACK
        # factors in place (an upper factor of Tᵀ is the lower factor of T).
        _, info = scipy.linalg.lapack.dpotrf(self.T.T, lower=0, clean=0, overwrite_a=1)
        return info == 0 and bool(np.isfinite(self.T[-1, -1]))

    def _fill_trailing(self, lambdas: list[np.ndarray]) -> None:
        """T ← Λᵀ A Λ + diag(I, 0) on its lower triangle (terms 1 … k−1 and [X y])."""
        cp = self.cp
        t = self.T
        r = self.n_re_trailing
        # The [X y] rows are overwritten whole below; the terms' rows are sparse.
        t[:r].fill(0.0)
        flat = t.reshape(-1)
        for j in range(1, self.k):
            lam = lambdas[j]
            flat[self._diag_index[j]] = congruence(lam, cp.diag[j]).reshape(-1)
            lo, hi = self.offsets[j - 1], self.offsets[j]
            t[r:, lo:hi] = (cp.xz[j] @ lam).reshape(self.n_xy, -1)
        for (i, j), index in self._off_index.items():
            flat[index] = congruence(lambdas[i], cp.off[(i, j)].data, lambdas[j]).reshape(-1)
        if r:
            diag = np.arange(r)
            t[diag, diag] += 1.0
        t[r:, r:] = cp.xx

    # -- what is read off the factor ------------------------------------------------

    @property
    def L_xx(self) -> np.ndarray:
        """The factor of the [X y] Schur complement: R_X and, last, r."""
        r = self.n_re_trailing
        return np.tril(self.T[r:, r:])

    def logdet_theta(self) -> float:
        """log |Λᵀ ZᵀZ Λ + I| = 2 Σ log diag of the random-effects part of L."""
        if not self.k:
            return 0.0
        total = self._half_logdet0
        r = self.n_re_trailing
        if r:
            total += np.sum(np.log(np.diagonal(self.T)[:r]))
        return 2.0 * float(total)

    def logdet_x(self) -> float:
        """log |R_Xᵀ R_X|, the REML correction."""
        r = self.n_re_trailing
        p = self.n_xy - 1
        return 2.0 * float(np.sum(np.log(np.diagonal(self.T)[r : r + p])))

    def pwrss(self) -> float:
        """Penalised weighted residual sum of squares r²."""
        return float(self.T[-1, -1] ** 2)

    def fixed_effects(self) -> np.ndarray:
        """β̂ at the current θ (in the original coordinates of y)."""
        r = self.n_re_trailing
        p = self.n_xy - 1
        offset = self.cp.beta_offset
        if p == 0:
            return np.zeros(0)
        # R_X sits on and below the diagonal of T's [X y] rows (C order): its
        # transpose, read as a Fortran array, is the upper factor LAPACK solves with.
        block = self.T[r : r + p, r : r + p]
        beta, info = scipy.linalg.lapack.dtrtrs(block.T, self.T[-1, r : r + p], lower=0)
        if info != 0:
            raise np.linalg.LinAlgError("R_X is singular")
        return beta if offset is None else beta + offset

    def spherical_modes(self, beta: np.ndarray) -> list[np.ndarray]:
        """u = L_ZZ⁻ᵀ (c − L_XZᵀ β): the spherical random effects, one array per term."""
        if self.cp.beta_offset is not None:
            beta = beta - self.cp.beta_offset
        r = self.n_re_trailing
        p = self.n_xy - 1
        t = self.T
        # w = (−u_T, −β, 1) over the rows of T gives the right-hand sides as Lᵀw.
        w = np.empty(self.n_t)
        w[r : r + p] = -beta
        w[-1] = 1.0
        if r:
            rhs = t[r:, :r].T @ w[r:]
            # The terms' rows of T are zero above the diagonal (see _fill_trailing).
            solved, info = scipy.linalg.lapack.dtrtrs(t[:r, :r].T, rhs, lower=0)
            if info != 0:
                raise np.linalg.LinAlgError("the factor is singular")
            w[:r] = -solved
        m0, q0 = self.cp.n_levels[0], self.cp.q[0]
        rhs0 = self.col0.transpose_times(w)
        u0 = batched_lower_solve_transposed(self.L00, rhs0.reshape(m0, q0)).reshape(-1)
        return [u0, *(-w[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True))]

    def inverse_rx(self) -> np.ndarray:
        """R_X⁻¹ where R_X R_Xᵀ = the fixed-effects block of the Schur complement."""
        p = self.n_xy - 1
        # LAPACK's triangular inverse: a triangular solve against I (BLAS trsm)
        # took milliseconds for a 2×2 R_X when OpenBLAS runs on several threads.
        inverse, info = scipy.linalg.lapack.dtrtri(self.L_xx[:p, :p], lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("R_X is singular")
        return np.tril(inverse)

    def random_effects_factor(self) -> sp.csc_matrix:
        """The random-effects part of L (all terms) as one sparse lower-triangular matrix."""
        l00 = sp.block_diag(list(self.L00), format="csr")
        r = self.n_re_trailing
        if not r:
            return l00.tocsc()
        below = self.col0.to_sparse(r)
        trailing = sp.csr_matrix(np.tril(self.T[:r, :r]))
        return sp.bmat([[l00, None], [below, trailing]], format="csc")
