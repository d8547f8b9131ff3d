"""Stage 3 of the engine: the blocked Cholesky factor of ΛᵀAᵀAΛ + I.

Writing Λ(θ) for the block-diagonal relative covariance factor (identity on the
[X y] block), the factor L satisfies

    L Lᵀ = ΛᵀAᵀAΛ + diag(I, 0),

computed block by block from :class:`~mixedmodels.blocks.CrossProducts`
without touching the rows.  Storage follows the real fill-in:

* the first term's diagonal block stays block-diagonal, ``(n_levels, q, q)``;
* the blocks below it keep the sparsity of ZᵢᵀZ₁ (right-multiplying by a
  block-diagonal matrix creates no fill), held as CSR matrices whose pattern
  is fixed once so that an update only rewrites their values;
* later blocks are dense: they are where the fill-in lands (their size is set
  by the number of levels of the smaller terms).

The last diagonal block, the factor of the [X y] Schur complement, carries the
fixed-effects factor R_X and the penalised residual sum of squares r², from
which the profiled objectives are read.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .blocks import CrossProducts, PairBlocks
from .smallmatrix import (
    batched_cholesky,
    batched_lower_inverse,
    batched_lower_solve_transposed,
    batched_matmul,
    congruence,
)


def _scatter_index(rows: np.ndarray, cols: np.ndarray, q_row: int, q_col: int, n_col: int):
    """Flat indices, in a dense matrix of n_col columns, of blocks ``(nb, q_row, q_col)``."""
    a = np.arange(q_row)[None, :, None]
    b = np.arange(q_col)[None, None, :]
    r = rows[:, None, None].astype(np.int64) * q_row + a
    c = cols[:, None, None].astype(np.int64) * q_col + b
    return (r * n_col + c).ravel()


class _SparseColumnBlock:
    """L[i, 0]: blocks of ZᵢᵀZ₁'s pattern, stored as CSR with a fixed structure."""

    def __init__(self, pairs: PairBlocks, q_row: int, q_col: int, shape: tuple[int, int]):
        nb = pairs.n_pairs
        a = np.broadcast_to(np.arange(q_row)[None, :, None], (nb, q_row, q_col))
        b = np.broadcast_to(np.arange(q_col)[None, None, :], (nb, q_row, q_col))
        rows = (pairs.rows[:, None, None].astype(np.int64) * q_row + a).ravel()
        cols = (pairs.cols[:, None, None].astype(np.int64) * q_col + b).ravel()
        # Build the CSR once with the element positions as values to learn the
        # permutation from our (pair, a, b) order to CSR order.
        position = np.arange(1, len(rows) + 1, dtype=np.float64)
        pattern = sp.csr_matrix((position, (rows, cols)), shape=shape)
        pattern.sort_indices()
        self.order = pattern.data.astype(np.int64) - 1
        self.matrix = pattern
        self.matrix.data = np.zeros_like(pattern.data)

    def set_values(self, block_values: np.ndarray) -> sp.csr_matrix:
        self.matrix.data = block_values.reshape(-1)[self.order]
        return self.matrix


class BlockedCholesky:
    """The blocked factor L for a fixed block structure, updated in place for each θ.

    Parameters
    ----------
    cp : CrossProducts
        The blocks of AᵀA, terms in the engine's order (the largest first).
    """

    def __init__(self, cp: CrossProducts):
        self.cp = cp
        k = cp.n_terms
        self.k = k
        self.sizes = [m * q for m, q in zip(cp.n_levels, cp.q, strict=True)]
        self.n_xy = cp.xx.shape[0]
        # Pre-computed scatter indices for dense copies of the A blocks.
        self._diag_index = [
            _scatter_index(np.arange(m), np.arange(m), q, q, m * q)
            for m, q in zip(cp.n_levels, cp.q, strict=True)
        ]
        self._off_index: dict[tuple[int, int], np.ndarray] = {}
        self._sparse: dict[int, _SparseColumnBlock] = {}
        for (i, j), pairs in cp.off.items():
            if j == 0:
                self._sparse[i] = _SparseColumnBlock(
                    pairs, cp.q[i], cp.q[0], (self.sizes[i], self.sizes[0])
                )
            else:
                self._off_index[(i, j)] = _scatter_index(
                    pairs.rows, pairs.cols, cp.q[i], cp.q[j], self.sizes[j]
                )
        # Factor storage (filled by update).
        self.L00: np.ndarray = np.empty((cp.n_levels[0], cp.q[0], cp.q[0])) if k else None
        self.L_col0: dict[int, sp.csr_matrix] = {}
        self.L_dense: dict[tuple[int, int], np.ndarray] = {}
        self.L_x: list[np.ndarray] = [np.empty((self.n_xy, s)) for s in self.sizes]
        self.L_xx = np.empty((self.n_xy, self.n_xy))

    # -- the update -----------------------------------------------------------------

    def update(self, lambdas: list[np.ndarray]) -> bool:
        """Refactor for new relative covariance factors; False if not positive definite."""
        k = self.k
        try:
            if k:
                self._update_first_column(lambdas)
            for j in range(1, k):
                self._update_column(j, lambdas)
            self._update_xx()
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            return False
        return bool(np.all(np.isfinite(self.L_xx)))

    def _update_first_column(self, lambdas: list[np.ndarray]) -> None:
        cp = self.cp
        lam0 = lambdas[0]
        m0, q0 = cp.n_levels[0], cp.q[0]
        scaled = congruence(lam0, cp.diag[0])
        for a in range(q0):
            scaled[:, a, a] += 1.0
        self.L00 = batched_cholesky(scaled)
        inv_l00 = batched_lower_inverse(self.L00)
        # Right-multiplying by Λ₁ L₁₁⁻ᵀ acts level by level.
        self._right0 = batched_matmul(
            np.broadcast_to(lam0, (m0, q0, q0)), inv_l00.transpose(0, 2, 1)
        )
        for i, block in self._sparse.items():
            pairs = cp.off[(i, 0)]
            left = congruence(lambdas[i], pairs.data, np.eye(q0))
            values = batched_matmul(left, self._right0[pairs.cols])
            self.L_col0[i] = block.set_values(values)
        # L_x[0][:, l] = xzₗ · right0ₗ, summed over the q×q entries of right0 so
        # that every operation runs over whole (p + 1, levels) arrays.
        xz = cp.xz[0]  # (p + 1, levels, q)
        out = np.empty_like(xz)
        for b in range(q0):
            acc = xz[:, :, 0] * self._right0[None, :, 0, b]
            for a in range(1, q0):
                acc += xz[:, :, a] * self._right0[None, :, a, b]
            out[:, :, b] = acc
        self.L_x[0] = out.reshape(self.n_xy, -1)

    def _dense_scaled_off(self, i: int, j: int, lambdas: list[np.ndarray]) -> np.ndarray:
        """Dense Λᵢᵀ ZᵢᵀZⱼ Λⱼ for j ≥ 1."""
        pairs = self.cp.off[(i, j)]
        out = np.zeros((self.sizes[i], self.sizes[j]))
        values = congruence(lambdas[i], pairs.data, lambdas[j])
        out.ravel()[self._off_index[(i, j)]] = values.ravel()
        return out

    def _product_col(self, i: int, j: int, kk: int) -> np.ndarray:
        """L[i, kk] L[j, kk]ᵀ as a dense array (i, j term indices, or k for the [X y] row)."""
        left = self._block(i, kk)
        right = self._block(j, kk)
        if sp.issparse(left) and sp.issparse(right):
            return (left @ right.T).toarray()
        if sp.issparse(right):
            return (right @ left.T).T
        return left @ right.T

    def _block(self, i: int, j: int):
        if i == self.k:
            return self.L_x[j]
        if j == 0:
            return self.L_col0[i]
        return self.L_dense[(i, j)]

    def _update_column(self, j: int, lambdas: list[np.ndarray]) -> None:
        cp = self.cp
        lam = lambdas[j]
        size = self.sizes[j]
        diag = np.zeros((size, size))
        diag.ravel()[self._diag_index[j]] = congruence(lam, cp.diag[j]).ravel()
        diag[np.diag_indices(size)] += 1.0
        for kk in range(j):
            diag -= self._product_col(j, j, kk)
        ljj = scipy.linalg.cholesky(diag, lower=True, overwrite_a=True, check_finite=False)
        self.L_dense[(j, j)] = ljj
        for i in range(j + 1, self.k):
            block = self._dense_scaled_off(i, j, lambdas)
            for kk in range(j):
                block -= self._product_col(i, j, kk)
            self.L_dense[(i, j)] = scipy.linalg.solve_triangular(
                ljj, block.T, lower=True, check_finite=False
            ).T
        xz = (cp.xz[j].reshape(-1, lam.shape[0]) @ lam).reshape(self.n_xy, -1)
        for kk in range(j):
            xz = xz - self._product_col(self.k, j, kk)
        self.L_x[j] = scipy.linalg.solve_triangular(ljj, xz.T, lower=True, check_finite=False).T

    def _update_xx(self) -> None:
        s = self.cp.xx.copy()
        for kk in range(self.k):
            lx = self.L_x[kk]
            s -= lx @ lx.T
        self.L_xx = scipy.linalg.cholesky(s, lower=True, check_finite=False)

    # -- what is read off the factor ------------------------------------------------

    def logdet_theta(self) -> float:
        """log |Λᵀ ZᵀZ Λ + I| = 2 Σ log diag of the random-effects part of L."""
        if not self.k:
            return 0.0
        total = np.sum(np.log(np.diagonal(self.L00, axis1=1, axis2=2)))
        for j in range(1, self.k):
            total += np.sum(np.log(np.diag(self.L_dense[(j, j)])))
        return 2.0 * float(total)

    def logdet_x(self) -> float:
        """log |R_Xᵀ R_X|, the REML correction."""
        p = self.n_xy - 1
        return 2.0 * float(np.sum(np.log(np.diag(self.L_xx)[:p])))

    def pwrss(self) -> float:
        """Penalised weighted residual sum of squares r²."""
        return float(self.L_xx[-1, -1] ** 2)

    def fixed_effects(self) -> np.ndarray:
        """β̂ at the current θ (in the original coordinates of y)."""
        p = self.n_xy - 1
        rx = self.L_xx[:p, :p]
        beta = scipy.linalg.solve_triangular(rx.T, self.L_xx[p, :p], lower=False)
        offset = self.cp.beta_offset
        return beta if offset is None else beta + offset

    def spherical_modes(self, beta: np.ndarray) -> list[np.ndarray]:
        """u = L_ZZ⁻ᵀ (c − L_XZᵀ β): the spherical random effects, one array per term."""
        p = self.n_xy - 1
        if self.cp.beta_offset is not None:
            beta = beta - self.cp.beta_offset
        u: list[np.ndarray | None] = [None] * self.k
        for j in reversed(range(self.k)):
            lx = self.L_x[j]
            rhs = lx[p] - lx[:p].T @ beta
            for i in range(j + 1, self.k):
                rhs = rhs - self._block(i, j).T @ u[i]
            if j == 0:
                m, q = self.cp.n_levels[0], self.cp.q[0]
                u[j] = batched_lower_solve_transposed(self.L00, rhs.reshape(m, q)).reshape(-1)
            else:
                u[j] = scipy.linalg.solve_triangular(
                    self.L_dense[(j, j)].T, rhs, lower=False, check_finite=False
                )
        return u  # type: ignore[return-value]

    def inverse_rx(self) -> np.ndarray:
        """R_X⁻¹ where R_X R_Xᵀ = the fixed-effects block of the Schur complement."""
        p = self.n_xy - 1
        return scipy.linalg.solve_triangular(
            self.L_xx[:p, :p], np.eye(p), lower=True, check_finite=False
        )
