"""Cross-products of a fixed block structure, refilled in place for new row weights.

Penalized iteratively reweighted least squares (PIRLS) solves one weighted
least-squares problem per iteration: the rows, their level codes and the
pairs of levels that share a row never change, only the working weights and
the working response do.  :class:`WeightedCrossProducts` finds the structure
once (from :func:`~mixedmodels.engine.blocks.cross_products`, so the blocks
are laid out exactly as the blocked factor expects) and records, for every
row, where it lands in each block; :meth:`WeightedCrossProducts.fill` then
recomputes the blocks' values in one compiled pass per block, writing into
the same arrays.  A :class:`~mixedmodels.engine.factor.BlockedCholesky` built
on :attr:`WeightedCrossProducts.cp` reads the new values at its next update
(after :meth:`WeightedCrossProducts.reload_factor`).

Without numba the blocks are recomputed by ``cross_products`` and copied in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .blocks import CrossProducts, cross_products
from .factor import BlockedCholesky

_KERNELS = None
_TRIED = False


def _kernels():
    """The compiled per-block passes, or None when numba is missing."""
    global _KERNELS, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            return None
        jit = numba.njit(cache=True, nogil=True)
        _KERNELS = (jit(_term_pass), jit(_pair_pass))
    return _KERNELS


def _term_pass(codes, z, xy, w, diag, xz):  # pragma: no cover - compiled by numba
    """diag[ℓ] = Σ w zzᵀ and xz[:, ℓ] = Σ w (xy)zᵀ over the rows of each level ℓ."""
    diag[:] = 0.0
    xz[:] = 0.0
    q = z.shape[1]
    c = xy.shape[1]
    for r in range(codes.shape[0]):
        level = codes[r]
        wr = w[r]
        for a in range(q):
            za = wr * z[r, a]
            for b in range(q):
                diag[level, a, b] += za * z[r, b]
            for k in range(c):
                xz[k, level, a] += xy[r, k] * za


def _pair_pass(pair, zi, zj, w, out):  # pragma: no cover - compiled by numba
    """out[pair] = Σ w zᵢzⱼᵀ over the rows of each pair of levels."""
    out[:] = 0.0
    qi = zi.shape[1]
    qj = zj.shape[1]
    for r in range(pair.shape[0]):
        b = pair[r]
        wr = w[r]
        for a in range(qi):
            za = wr * zi[r, a]
            for c in range(qj):
                out[b, a, c] += za * zj[r, c]


class WeightedCrossProducts:
    """The blocks of AᵀWA for A = [Z₁ … Z_k X y], W diagonal, for changing W and y.

    Parameters
    ----------
    codes, z, n_levels
        Each term's level codes, per-row model matrix and number of levels,
        in the engine's term order (as for :func:`cross_products`).
    x : ndarray, shape (n, p)
        The fixed-effects columns to carry (``p`` may be 0).
    use_numba : bool, optional
        Force or refuse the compiled passes (default: use them when available).
    """

    def __init__(
        self,
        codes: Sequence[np.ndarray],
        z: Sequence[np.ndarray],
        n_levels: Sequence[int],
        x: np.ndarray,
        use_numba: bool | None = None,
    ) -> None:
        self.codes = [np.ascontiguousarray(c, dtype=np.int64) for c in codes]
        self.z = [np.ascontiguousarray(zi, dtype=np.float64) for zi in z]
        self.n_levels = [int(m) for m in n_levels]
        n = len(self.codes[0]) if self.codes else x.shape[0]
        self.n_fixed = x.shape[1]
        # [X y] with y refilled by each fill(): X's columns are written once.
        self.xy = np.empty((n, self.n_fixed + 1))
        self.xy[:, : self.n_fixed] = x
        self.xy[:, -1] = 0.0
        self.cp: CrossProducts = cross_products(
            self.codes, self.z, self.n_levels, x, self.xy[:, -1]
        )
        self._pair_of_row = {key: self._rows_to_pairs(key) for key in self.cp.off}
        self._kernels = _kernels() if use_numba is not False else None
        if use_numba and self._kernels is None:
            raise ImportError("numba is not installed")

    def _rows_to_pairs(self, key: tuple[int, int]) -> np.ndarray:
        """For each row, the index of its (level i, level j) pair in ``cp.off[key]``."""
        i, j = key
        pairs = self.cp.off[key]
        m_j = self.n_levels[j]
        sorted_keys = pairs.rows.astype(np.int64) * m_j + pairs.cols
        row_keys = self.codes[i] * m_j + self.codes[j]
        return np.searchsorted(sorted_keys, row_keys).astype(np.int64)

    def fill(self, weights: np.ndarray, response: np.ndarray) -> None:
        """Recompute every block for row weights ``weights`` and last column ``response``."""
        self.xy[:, -1] = response
        cp = self.cp
        if self._kernels is None:
            fresh = cross_products(
                self.codes, self.z, self.n_levels, self.xy[:, :-1], response, weights
            )
            for target, source in zip(cp.diag, fresh.diag, strict=True):
                target[...] = source
            for key, pairs in cp.off.items():
                pairs.data[...] = fresh.off[key].data
            for target, source in zip(cp.xz, fresh.xz, strict=True):
                target[...] = source
            cp.xx[...] = fresh.xx
            return
        term_pass, pair_pass = self._kernels
        w = np.ascontiguousarray(weights, dtype=np.float64)
        for t in range(len(self.codes)):
            term_pass(self.codes[t], self.z[t], self.xy, w, cp.diag[t], cp.xz[t])
        for (i, j), pairs in cp.off.items():
            pair_pass(self._pair_of_row[(i, j)], self.z[i], self.z[j], w, pairs.data)
        weighted = self.xy * w[:, None]
        np.matmul(weighted.T, self.xy, out=cp.xx)

    def new_factor(self) -> BlockedCholesky:
        """A blocked factor reading these blocks (call :meth:`reload_factor` after a fill)."""
        return BlockedCholesky(self.cp)

    def reload_factor(self, factor: BlockedCholesky) -> None:
        """Copy the refilled Zᵢᵀ W Z₀ blocks into the factor's first-term column.

        The factor copies those blocks when it is built and reads every other
        block at each update; this puts the new values where it reads them.
        """
        if factor.k < 2:
            return
        column = factor.col0
        q0 = self.cp.q[0]
        for i in range(1, factor.k):
            column.raw[column.dest[i - 1]] = self.cp.off[(i, 0)].data.reshape(-1, q0)
