"""Cross-products of a fixed block structure, refilled in place for new row weights.

Penalized iteratively reweighted least squares (PIRLS) solves one weighted
least-squares problem per iteration: the rows, their level codes and the
pairs of levels that share a row never change, only the working weights and
the working response do.  :class:`WeightedCrossProducts` finds the structure
once (the level pairs that share rows as
:func:`~mixedmodels.engine.blocks.cross_products` finds them, so the blocks
are laid out exactly as the blocked factor expects), puts every block's
values in one flat buffer, and records where each row lands in it;
:meth:`WeightedCrossProducts.fill` then recomputes all blocks in one compiled
pass over the rows (:mod:`.block_sums`, shared with the linear model's
stage 2), writing into the same arrays.  A
:class:`~mixedmodels.engine.factor.BlockedCholesky` built on
:attr:`WeightedCrossProducts.cp` reads the new values at its next update
(after :meth:`WeightedCrossProducts.reload_factor`).

Without numba the blocks are recomputed by ``cross_products`` and copied in.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

import numpy as np

from .block_sums import block_sums_kernel
from .blocks import CrossProducts, PairBlocks, cross_products, pair_structure
from .factor import BlockedCholesky


def _empty_like(structure: CrossProducts, n_fixed: int) -> CrossProducts:
    """Zero blocks with the level pairs of ``structure`` and ``n_fixed`` columns of X."""
    c = n_fixed + 1
    return CrossProducts(
        n_levels=structure.n_levels,
        q=structure.q,
        diag=[np.zeros_like(d) for d in structure.diag],
        off={
            key: PairBlocks(pairs.rows.copy(), pairs.cols.copy(), np.zeros_like(pairs.data))
            for key, pairs in structure.off.items()
        },
        xz=[np.zeros((c, m, q)) for m, q in zip(structure.n_levels, structure.q, strict=True)],
        xx=np.zeros((c, c)),
        n_obs=0,
    )


def _zero_structure(
    codes: np.ndarray, q: Sequence[int], n_levels: Sequence[int], n_fixed: int
) -> tuple[CrossProducts, np.ndarray]:
    """Zero blocks with the level pairs that share rows, and each row's pair per pair of
    terms (the structure :func:`cross_products` would find, without its sums)."""
    k = len(q)
    keys = [(i, j) for i in range(k) for j in range(i)]
    pair_of_row = np.empty((len(keys), codes.shape[1]), dtype=np.int64)
    off = {}
    for b, (i, j) in enumerate(keys):
        rows, cols, pair_of_row[b] = pair_structure(codes[i], n_levels[i], codes[j], n_levels[j])
        off[(i, j)] = PairBlocks(rows, cols, np.zeros((len(rows), q[i], q[j])))
    c = n_fixed + 1
    cp = CrossProducts(
        n_levels=tuple(n_levels),
        q=tuple(q),
        diag=[np.zeros((m, qi, qi)) for m, qi in zip(n_levels, q, strict=True)],
        off=off,
        xz=[np.zeros((c, m, qi)) for m, qi in zip(n_levels, q, strict=True)],
        xx=np.zeros((c, c)),
        n_obs=0,
    )
    return cp, pair_of_row


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
        Force or refuse the compiled pass (default: use it when available).
    structure : CrossProducts, optional
        The block structure to fill (its level pairs; values are ignored), when
        these rows are a part of the data: the blocks then have the layout of
        the whole data's, so that the parts' buffers add up to the
        whole's (a Dask partition's share).  Default: the structure of these rows.
    like : WeightedCrossProducts, optional
        Blocks of the same rows and terms (other columns of X): their codes,
        model matrices, level pairs and each row's pair are taken as they are
        (a GLMM's two PIRLS solvers) instead of found again.

    Attributes
    ----------
    cp : CrossProducts
        The blocks; their arrays are views into one buffer that :meth:`fill`
        rewrites.
    codes : ndarray, shape (k, n)
        Level codes of the terms, one row per term.
    z : ndarray, shape (n, Σq)
        The terms' model matrices side by side; term t's columns are
        ``zcol[t]:zcol[t + 1]``.
    """

    def __init__(
        self,
        codes: Sequence[np.ndarray],
        z: Sequence[np.ndarray],
        n_levels: Sequence[int],
        x: np.ndarray,
        use_numba: bool | None = None,
        structure: CrossProducts | None = None,
        like: WeightedCrossProducts | None = None,
    ) -> None:
        n = x.shape[0]
        self.n_levels = [int(m) for m in n_levels]
        if like is not None:
            self.codes, self.z, self.zcol = like.codes, like.z, like.zcol
        else:
            self.codes = np.ascontiguousarray(
                np.vstack([np.asarray(c) for c in codes]) if len(codes) else np.zeros((0, n))
            ).astype(np.int64)
            self.z = np.ascontiguousarray(np.column_stack(list(z)), dtype=np.float64)
            self.zcol = np.array(list(accumulate((zi.shape[1] for zi in z), initial=0)))
        self.n_fixed = x.shape[1]
        # [X y] with y refilled by each fill(): X's columns are written once.  Column-major:
        # the weighting and the BLAS product below run down whole columns (numpy's
        # row-by-row broadcast over a few columns costs about half as much again).
        self.xy = np.zeros((n, self.n_fixed + 1), order="F")
        self.xy[:, : self.n_fixed] = x
        # X contiguous for the compiled pass (which reads y from the caller's array), and
        # the weighted [X y] of the BLAS product that gives [X y]ᵀW[X y] with many columns.
        self._x = np.ascontiguousarray(self.xy[:, : self.n_fixed])
        self._weighted = np.empty_like(self.xy) if self.n_fixed > 1 else None
        pair_of_row = None
        if like is not None:
            structure, pair_of_row = _empty_like(like.cp, self.n_fixed), like.row_pairs
        elif structure is None:
            q = [zi.shape[1] for zi in z]
            structure, pair_of_row = _zero_structure(self.codes, q, self.n_levels, self.n_fixed)
        else:
            structure = _empty_like(structure, self.n_fixed)
        self.cp: CrossProducts = structure
        self._layout(structure, pair_of_row)
        self._kernel = block_sums_kernel() if use_numba is not False else None
        if use_numba and self._kernel is None:
            raise ImportError("numba is not installed")

    def _layout(self, cp: CrossProducts, pair_of_row: np.ndarray | None = None) -> None:
        """Move every block into one flat buffer (the blocks become views) and index it
        (``pair_of_row``: each row's level pair per pair of terms, when known)."""
        blocks = [*cp.diag, *(pairs.data for pairs in cp.off.values()), *cp.xz, cp.xx]
        sizes = [b.size for b in blocks]
        starts = np.array(list(accumulate(sizes, initial=0)))
        self.buffer = np.zeros(int(starts[-1]))
        views = [
            self.buffer[a:b].reshape(block.shape)
            for a, b, block in zip(starts[:-1], starts[1:], blocks, strict=True)
        ]
        k = len(cp.diag)
        keys = list(cp.off)
        cp.diag = views[:k]
        for key, view in zip(keys, views[k : k + len(keys)], strict=True):
            cp.off[key].data = view
        cp.xz = views[k + len(keys) : 2 * k + len(keys)]
        cp.xx = views[-1]
        self._diag_at = starts[:k].astype(np.int64)
        self._pair_at = starts[k : k + len(keys)].astype(np.int64)
        self._xz_at = starts[k + len(keys) : 2 * k + len(keys)].astype(np.int64)
        self._xz_stride = np.array(
            [m * q for m, q in zip(cp.n_levels, cp.q, strict=True)], np.int64
        )
        self._xx_at = int(starts[-2])
        self._pair_terms = np.array(keys, dtype=np.int64).reshape(-1, 2)
        if pair_of_row is not None:
            self._pair_of_row = pair_of_row
            return
        self._pair_of_row = np.zeros((len(keys), self.xy.shape[0]), dtype=np.int64)
        for p, (i, j) in enumerate(keys):
            pairs = cp.off[(i, j)]
            m_j = self.n_levels[j]
            sorted_keys = pairs.rows.astype(np.int64) * m_j + pairs.cols
            row_keys = self.codes[i] * m_j + self.codes[j]
            found = np.minimum(np.searchsorted(sorted_keys, row_keys), len(sorted_keys) - 1)
            if len(row_keys) and not np.array_equal(sorted_keys[found], row_keys):
                raise ValueError(f"some rows pair levels of terms {i} and {j} the structure lacks")
            self._pair_of_row[p] = found

    def __setstate__(self, state: dict) -> None:
        # Pickling (a Dask partition moving between workers) copies the blocks apart
        # from the buffer: make them views of it again, as fill() and the factor expect.
        self.__dict__.update(state)
        cp = self.cp
        buffer = self.buffer

        def view(start: int, block: np.ndarray) -> np.ndarray:
            return buffer[start : start + block.size].reshape(block.shape)

        cp.diag = [view(int(a), d) for a, d in zip(self._diag_at, cp.diag, strict=True)]
        for a, pairs in zip(self._pair_at, cp.off.values(), strict=True):
            pairs.data = view(int(a), pairs.data)
        cp.xz = [view(int(a), xz) for a, xz in zip(self._xz_at, cp.xz, strict=True)]
        cp.xx = view(self._xx_at, cp.xx)

    @property
    def n_rows(self) -> int:
        return self.xy.shape[0]

    def load(self, buffer: np.ndarray) -> None:
        """Set every block from a flat buffer of this layout (e.g. the parts' buffers summed)."""
        self.buffer[:] = buffer

    @property
    def row_pairs(self) -> np.ndarray:
        """Per pair of terms (in ``cp.off``'s order), each row's index among its level pairs."""
        return self._pair_of_row

    def pair_index(self, i: int, j: int) -> np.ndarray:
        """For each row, the index of its level pair in ``cp.off[(i, j)]``."""
        return self._pair_of_row[list(self.cp.off).index((i, j))]

    def fill(
        self,
        weights: np.ndarray,
        response: np.ndarray,
        response_weights: np.ndarray | None = None,
    ) -> None:
        """Recompute every block for row weights ``weights`` and last column ``response``.

        ``response_weights``, if given, weight the response's products instead
        of ``weights`` (a Newton step's right-hand side is not a weighted
        response; its [X y]ᵀ[X y] is then left for the caller to set).
        """
        if self._kernel is None:
            if response_weights is not None:
                raise NotImplementedError("separate response weights need numba")
            self.xy[:, -1] = response
            self._fill_numpy(weights)
            return
        response = np.ascontiguousarray(response, dtype=np.float64)
        self._kernel(
            self.codes,
            self.z,
            self.zcol,
            self._x,
            response,
            weights,
            weights if response_weights is None else response_weights,
            self.buffer,
            self._diag_at,
            self._xz_at,
            self._xz_stride,
            self._pair_of_row,
            self._pair_terms,
            self._pair_at,
            self._xx_at if self.xy.shape[1] <= 2 else -1,
        )
        if self.xy.shape[1] > 2:
            self.xy[:, -1] = response
            weighted = np.multiply(self.xy, weights[:, None], out=self._weighted)
            if response_weights is not None:
                weighted[:, -1] = self.xy[:, -1] * response_weights
            np.matmul(weighted.T, self.xy, out=self.cp.xx)

    def _fill_numpy(self, weights: np.ndarray) -> None:
        z = [self.z[:, a:b] for a, b in zip(self.zcol[:-1], self.zcol[1:], strict=True)]
        fresh = cross_products(
            list(self.codes), z, self.n_levels, self.xy[:, :-1], self.xy[:, -1], weights
        )
        cp = self.cp
        for target, source in zip(cp.diag, fresh.diag, strict=True):
            target[...] = source
        for key, pairs in cp.off.items():
            # These rows' pairs, placed among the structure's (which may hold more).
            i, j = key
            index = self.pair_index(i, j)
            for a in range(z[i].shape[1]):
                for b in range(z[j].shape[1]):
                    pairs.data[:, a, b] = np.bincount(
                        index, weights=weights * z[i][:, a] * z[j][:, b], minlength=pairs.n_pairs
                    )
        for target, source in zip(cp.xz, fresh.xz, strict=True):
            target[...] = source
        cp.xx[...] = fresh.xx

    def new_factor(self) -> BlockedCholesky:
        """A blocked factor reading these blocks (call :meth:`reload_factor` after a fill).

        Its trailing block is dense: the Laplace gradient reads T as an array
        (the sparse trailing block of the linear model is not wired in here).
        """
        return BlockedCholesky(self.cp, trailing="dense")

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
