"""Stage 2 of the engine: the blocks of AᵀA, computed once from the rows.

For A = [Z₁ … Z_k X y] the cross-product AᵀA has a natural block structure,
one block row/column per random-effects term plus one for [X y].  Every block
is a sum over rows, so the blocks of a data set are the sums of the blocks of
its chunks: :meth:`CrossProducts.__add__` combines partial results, which is
what lets another engine (Dask, chunk by chunk) compute this stage while the
θ loop stays untouched.

What each block holds:

* ``diag[i]`` — ZᵢᵀZᵢ, block-diagonal because every row belongs to exactly one
  level: an array ``(n_levels, q, q)``.
* ``off[(i, j)]`` for ``i > j`` — ZᵢᵀZⱼ, one q_i×q_j block per pair of levels
  that share a row: :class:`PairBlocks` in coordinate form.
* ``xz[j]`` — [X y]ᵀZⱼ, dense ``(p + 1, n_levels, q)``.
* ``xx`` — [X y]ᵀ[X y], dense ``(p + 1, p + 1)``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .block_sums import block_sums_kernel
from .least_squares import CONDITION_LIMIT, least_squares, offset_gram_kernel
from .residual_blocks import residual_blocks_kernel
from .threads import blas_threads, products_threads, threads_for

# Above this many possible level pairs (and four per row), find the pairs that
# occur by hashing rather than by counting into a dense table: a table of all
# pairs costs its size, 14 million for 10 000 students × 1 400 teachers in
# 25 000 rows (0.16 s against 1 ms).
_DENSE_PAIR_TABLE_LIMIT = 100_000
# Up to this many columns of X, β₀ and [X r]ᵀW[X r] come from compiled normal
# equations (:mod:`.least_squares`); beyond, from LAPACK's QR and BLAS.  Measured
# (one thread): 161 against 376 µs for 4 059 × 15, 6.5 against 10.8 ms for
# 10⁵ × 10, even at 10⁵ × 20 (33 ms each).
_NORMAL_EQUATIONS_COLUMNS = 16


@dataclass
class PairBlocks:
    """ZᵢᵀZⱼ as the q_i×q_j blocks of the level pairs that occur together.

    ``rows[b]`` is a level of term i, ``cols[b]`` a level of term j and
    ``data[b]`` their block.  Pairs are unique and sorted by (row, col).
    """

    rows: np.ndarray
    cols: np.ndarray
    data: np.ndarray

    @property
    def n_pairs(self) -> int:
        return len(self.rows)

    def __add__(self, other: PairBlocks) -> PairBlocks:
        rows = np.concatenate([self.rows, other.rows])
        cols = np.concatenate([self.cols, other.cols])
        data = np.concatenate([self.data, other.data])
        return _coalesce(rows, cols, data)


def _coalesce(rows: np.ndarray, cols: np.ndarray, data: np.ndarray) -> PairBlocks:
    """Sum the blocks of repeated (row, col) pairs."""
    n_cols = int(cols.max()) + 1 if len(cols) else 1
    key = rows.astype(np.int64) * n_cols + cols
    unique, inverse = np.unique(key, return_inverse=True)
    summed = np.zeros((len(unique), *data.shape[1:]))
    np.add.at(summed, inverse, data)
    return PairBlocks(
        rows=(unique // n_cols).astype(np.int32),
        cols=(unique % n_cols).astype(np.int32),
        data=summed,
    )


@dataclass
class CrossProducts:
    """The blocks of AᵀA for A = [Z₁ … Z_k X y] (see the module docstring)."""

    n_levels: tuple[int, ...]
    q: tuple[int, ...]
    diag: list[np.ndarray]
    off: dict[tuple[int, int], PairBlocks]
    xz: list[np.ndarray]
    xx: np.ndarray
    n_obs: int
    # Σ log wᵢ of the prior weights; enters the deviance as lme4 does.
    sum_log_weights: float = 0.0
    # β₀ when the y blocks hold y − Xβ₀ rather than y: with β₀ the least-squares
    # fit, y'y no longer cancels against the fitted part in the [X y] factor,
    # which keeps r² accurate for responses far from zero (e.g. around 1e9).
    beta_offset: np.ndarray | None = None

    @property
    def n_terms(self) -> int:
        return len(self.q)

    @property
    def n_fixed(self) -> int:
        """Columns of X (without y)."""
        return self.xx.shape[0] - 1

    def __add__(self, other: CrossProducts) -> CrossProducts:
        if (self.n_levels, self.q) != (other.n_levels, other.q):
            raise ValueError("partial cross-products come from different term structures")
        return CrossProducts(
            n_levels=self.n_levels,
            q=self.q,
            diag=[a + b for a, b in zip(self.diag, other.diag, strict=True)],
            off={key: self.off[key] + other.off[key] for key in self.off},
            xz=[a + b for a, b in zip(self.xz, other.xz, strict=True)],
            xx=self.xx + other.xx,
            n_obs=self.n_obs + other.n_obs,
            sum_log_weights=self.sum_log_weights + other.sum_log_weights,
            beta_offset=self.beta_offset,
        )


def _per_level_products(
    codes: np.ndarray, left: np.ndarray, right: np.ndarray, n_levels: int
) -> np.ndarray:
    """Σ over the rows of each level of leftᵀ·right: shape (n_levels, a, b)."""
    out = np.empty((n_levels, left.shape[1], right.shape[1]))
    for a in range(left.shape[1]):
        for b in range(right.shape[1]):
            out[:, a, b] = np.bincount(codes, weights=left[:, a] * right[:, b], minlength=n_levels)
    return out


def pair_structure(
    codes_i: np.ndarray, n_levels_i: int, codes_j: np.ndarray, n_levels_j: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The level pairs (i, j) that share a row, sorted: (rows, cols, each row's pair)."""
    # (No copy of codes already int64: the product is a new array.)
    key = codes_i.astype(np.int64, copy=False) * n_levels_j + codes_j
    if n_levels_i * n_levels_j <= max(_DENSE_PAIR_TABLE_LIMIT, 4 * len(key)):
        # A table of flags (a bincount's counts are not needed: 18 -> 15 µs on 3 435 rows).
        table = np.zeros(n_levels_i * n_levels_j, dtype=bool)
        table[key] = True
        present = np.flatnonzero(table)
        slot = np.empty(len(table), dtype=np.int64)
        slot[present] = np.arange(len(present))
        pair_of_row = slot[key]
    else:
        # Hashing, then sorting only the distinct pairs (np.unique sorts all rows).
        pair_of_row, present = pd.factorize(key, sort=True)
    rows, cols = np.divmod(present, n_levels_j)
    return rows.astype(np.int32), cols.astype(np.int32), pair_of_row


def _pair_blocks(
    codes_i: np.ndarray,
    z_i: np.ndarray,
    n_levels_i: int,
    codes_j: np.ndarray,
    z_j: np.ndarray,
    n_levels_j: int,
) -> PairBlocks:
    rows, cols, pair_of_row = pair_structure(codes_i, n_levels_i, codes_j, n_levels_j)
    n_pairs = len(rows)
    data = np.empty((n_pairs, z_i.shape[1], z_j.shape[1]))
    for a in range(z_i.shape[1]):
        for b in range(z_j.shape[1]):
            data[:, a, b] = np.bincount(
                pair_of_row, weights=z_i[:, a] * z_j[:, b], minlength=n_pairs
            )
    return PairBlocks(rows=rows, cols=cols, data=data)


def cross_products(
    codes: Sequence[np.ndarray],
    z: Sequence[np.ndarray],
    n_levels: Sequence[int],
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    beta_offset: np.ndarray | None = None,
    *,
    use_numba: bool | None = None,
) -> CrossProducts:
    """Compute the blocks of AᵀA from (a chunk of) the rows.

    Parameters
    ----------
    codes : sequence of int arrays, shape (n,)
        Level codes of each random-effects term, in the engine's term order.
    z : sequence of float arrays, shape (n, q_i)
        Each term's per-row model matrix.
    n_levels : sequence of int
        Number of levels of each term's grouping factor (over the whole data,
        not only this chunk, so that partial results can be added).
    x : ndarray, shape (n, p)
        Fixed-effects model matrix.
    y : ndarray, shape (n,)
        Response.
    weights : ndarray, shape (n,), optional
        Prior weights; rows are scaled by their square roots.
    beta_offset : ndarray, shape (p,), optional
        Use y − Xβ₀ in place of y (see :attr:`CrossProducts.beta_offset`).
    use_numba : bool, optional
        Force (True) or refuse (False) the compiled pass over the rows
        (:mod:`.block_sums`); default: use it when numba is installed.
    """
    kernel = _row_kernel(use_numba)
    if beta_offset is not None:
        y = y - x @ beta_offset
    if kernel is None:
        blocks = _blocks_numpy(codes, z, n_levels, x, y, weights)
    else:
        x = np.ascontiguousarray(x, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        rows = _RowStructure.of(codes, z, n_levels, len(y), x.shape[1] + 1)
        buffer = rows.sum_blocks(kernel, x, y, _row_weights(weights, len(y)))
        layout = rows.layout
        blocks = (*rows.blocks(buffer), _gram(x, y, weights))
        return _assemble(layout.n_levels, layout.q, blocks, len(y), weights, beta_offset)
    return _assemble(
        tuple(int(m) for m in n_levels),
        tuple(zi.shape[1] for zi in z),
        blocks,
        len(y),
        weights,
        beta_offset,
    )


def residual_cross_products(
    codes: Sequence[np.ndarray],
    z: Sequence[np.ndarray],
    n_levels: Sequence[int],
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    use_numba: bool | None = None,
) -> CrossProducts:
    """:func:`cross_products` with y held as the residuals of the (weighted)
    least-squares fit of y on X: ``beta_offset`` is that fit, or one near it
    (see :mod:`.least_squares`); None when X has no columns.  With numba and a
    few columns of X, both passes over the rows run in one compiled call
    (:mod:`.residual_blocks`)."""
    kernel = _row_kernel(use_numba)
    n, p = x.shape
    dense = offset_gram_kernel() if kernel is not None and p <= _NORMAL_EQUATIONS_COLUMNS else None
    if dense is None:
        # One thread limit around the QR and the products (the limits inside are
        # then the same and set nothing): setting and restoring it costs 5–10 µs.
        with blas_threads(threads_for(n, p)):
            if p and weights is not None:
                root = np.sqrt(weights)
                beta0 = least_squares(x * root[:, None], y * root)
            else:
                beta0 = least_squares(x, y) if p else None
            return cross_products(
                codes, z, n_levels, x, y, weights, beta_offset=beta0, use_numba=use_numba
            )
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    weighted = weights is not None
    rows = _RowStructure.of(codes, z, n_levels, n, p + 1)
    layout = rows.layout
    # Both passes in one compiled call (:mod:`.residual_blocks`; it makes unit
    # weights itself: y stands in for the weights it does not read).
    done, beta0, gram, buffer = residual_blocks_kernel()(
        x,
        y,
        np.ascontiguousarray(weights, dtype=np.float64) if weighted else y,
        weighted,
        rows.codes,
        rows.z,
        layout.zcol,
        layout.diag_at,
        layout.xz_at,
        layout.xz_stride,
        rows.pair_of_row,
        layout.pair_terms,
        layout.pair_at,
        layout.size,
        CONDITION_LIMIT,
    )
    if not done:
        # Too ill-conditioned for normal equations: β₀ from the QR of W^½X.
        w = _row_weights(weights, n)
        if weighted:
            root = np.sqrt(w)
            beta0 = least_squares(x * root[:, None], y * root)
        else:
            beta0 = least_squares(x, y)
        residual = np.empty(n)
        dense(x, y, w, weighted, beta0, False, residual, gram, CONDITION_LIMIT)
        buffer = rows.sum_blocks(kernel, x, residual, w)
    return _assemble(
        layout.n_levels, layout.q, (*rows.blocks(buffer), gram), n, weights, beta0 if p else None
    )


def _row_kernel(use_numba: bool | None):
    """The compiled row pass, None for numpy's (``use_numba`` as in :func:`cross_products`)."""
    kernel = block_sums_kernel() if use_numba is not False else None
    if use_numba and kernel is None:
        raise ImportError("numba is not installed")
    return kernel


def _row_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """The weights as the compiled pass reads them (ones for none)."""
    return np.ones(n) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)


def _assemble(
    n_levels: tuple[int, ...],
    q: tuple[int, ...],
    blocks: _Blocks,
    n_obs: int,
    weights: np.ndarray | None,
    beta_offset: np.ndarray | None,
) -> CrossProducts:
    diag, off, xz, xx = blocks
    return CrossProducts(
        n_levels=n_levels,
        q=q,
        diag=diag,
        off=off,
        xz=xz,
        xx=xx,
        n_obs=n_obs,
        sum_log_weights=0.0 if weights is None else float(np.sum(np.log(weights))),
        beta_offset=beta_offset,
    )


_Blocks = tuple[list[np.ndarray], dict[tuple[int, int], PairBlocks], list[np.ndarray], np.ndarray]


def _blocks_numpy(
    codes: Sequence[np.ndarray],
    z: Sequence[np.ndarray],
    n_levels: Sequence[int],
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
) -> _Blocks:
    """(diag, off, xz, xx) by one ``bincount`` per pair of columns (without numba)."""
    xy = np.column_stack([x, y]).astype(np.float64, copy=False)
    z = [np.asarray(zi, dtype=np.float64) for zi in z]
    if weights is not None:
        root = np.sqrt(weights)
        xy = xy * root[:, None]
        z = [zi * root[:, None] for zi in z]
    k = len(z)
    diag = [_per_level_products(codes[i], z[i], z[i], n_levels[i]) for i in range(k)]
    off = {
        (i, j): _pair_blocks(codes[i], z[i], n_levels[i], codes[j], z[j], n_levels[j])
        for i in range(k)
        for j in range(i)
    }
    xz = [
        _per_level_products(codes[j], xy, z[j], n_levels[j]).transpose(1, 0, 2).copy()
        for j in range(k)
    ]
    return diag, off, xz, xy.T @ xy


@dataclass(frozen=True, eq=False)
class _Layout:
    """Where the compiled pass puts each block in its flat buffer, for one structure.

    The integer arrays are handed to the kernel as they are (writeable: numba
    compiles read-only arrays as another type); nothing writes to them.
    """

    n_levels: tuple[int, ...]
    q: tuple[int, ...]
    keys: tuple[tuple[int, int], ...]
    zcol: np.ndarray
    diag_at: np.ndarray
    xz_at: np.ndarray
    xz_stride: np.ndarray
    pair_terms: np.ndarray
    pair_at: np.ndarray
    # Each block's (start, stop, shape) in the buffer, and the buffer's size.
    views: tuple[tuple[int, int, tuple[int, ...]], ...]
    size: int


@functools.lru_cache(maxsize=64)
def _layout(
    n_levels: tuple[int, ...], q: tuple[int, ...], n_columns: int, n_pairs: tuple[int, ...]
) -> _Layout:
    """The :class:`_Layout` of terms with ``n_levels`` levels and ``q`` columns, ``n_pairs``
    level pairs per pair of terms and [X y] of ``n_columns`` columns (the same for every
    fit of a model of that shape: built once, not at every fit)."""
    n_levels = tuple(int(m) for m in n_levels)
    k = len(q)
    zcol = [0, *itertools.accumulate(q)]
    keys = tuple((i, j) for i in range(k) for j in range(i))
    shapes = [
        *((m, qi, qi) for m, qi in zip(n_levels, q, strict=True)),
        *((count, q[i], q[j]) for (i, j), count in zip(keys, n_pairs, strict=True)),
        *((n_columns, m, qi) for m, qi in zip(n_levels, q, strict=True)),
    ]
    starts = [0, *itertools.accumulate(math.prod(shape) for shape in shapes)]
    n_keys = len(keys)
    return _Layout(
        n_levels=n_levels,
        q=tuple(q),
        keys=keys,
        zcol=np.array(zcol, dtype=np.int64),
        diag_at=np.array(starts[:k], dtype=np.int64),
        xz_at=np.array(starts[k + n_keys : 2 * k + n_keys], dtype=np.int64),
        xz_stride=np.array([m * qi for m, qi in zip(n_levels, q, strict=True)], dtype=np.int64),
        pair_terms=np.array(keys, dtype=np.int64).reshape(n_keys, 2),
        pair_at=np.array(starts[k : k + n_keys], dtype=np.int64),
        views=tuple(zip(starts[:-1], starts[1:], shapes, strict=True)),
        size=starts[-1],
    )


@dataclass
class _RowStructure:
    """The rows as the compiled pass reads them: codes (terms, rows) as int64, the
    terms' Z side by side, the level pairs that occur and each row's pair, and
    the buffer's :class:`_Layout`."""

    codes: np.ndarray
    z: np.ndarray
    keys: list[tuple[int, int]]
    pairs: list[tuple[np.ndarray, np.ndarray]]
    pair_of_row: np.ndarray
    layout: _Layout

    @classmethod
    def of(
        cls,
        codes: Sequence[np.ndarray],
        z: Sequence[np.ndarray],
        n_levels: Sequence[int],
        n: int,
        n_columns: int,
    ) -> _RowStructure:
        """The structure of terms with these codes, Z and levels, ``n`` rows and [X y] of
        ``n_columns`` columns."""
        k = len(z)
        if k == 1:
            # One term (the usual model): no level pairs, nothing to find.
            z_all = np.ascontiguousarray(z[0], dtype=np.float64)
            # (No copy of codes already int64 and contiguous: the kernel only reads them.)
            return cls(
                codes=np.ascontiguousarray(codes[0], dtype=np.int64).reshape(1, n),
                z=z_all,
                keys=[],
                pairs=[],
                pair_of_row=_NO_PAIRS,
                layout=_layout((n_levels[0],), (z_all.shape[1],), n_columns, ()),
            )
        q = tuple(zi.shape[1] for zi in z)
        # Column by column into one array (np.hstack of (n, 1) arrays costs more).
        z_all = np.empty((n, sum(q)))
        a = 0
        for zi, qi in zip(z, q, strict=True):
            z_all[:, a : a + qi] = zi
            a += qi
        codes_all = np.empty((k, n), dtype=np.int64)
        for t in range(k):
            codes_all[t] = codes[t]
        keys = [(i, j) for i in range(k) for j in range(i)]
        pair_of_row = np.empty((len(keys), n), dtype=np.int64)
        pairs = []
        for b, (i, j) in enumerate(keys):
            rows, cols, pair_of_row[b] = pair_structure(
                codes_all[i], int(n_levels[i]), codes_all[j], int(n_levels[j])
            )
            pairs.append((rows, cols))
        layout = _layout(tuple(n_levels), q, n_columns, tuple(len(r) for r, _ in pairs))
        return cls(codes_all, z_all, keys, pairs, pair_of_row, layout)

    def sum_blocks(self, kernel, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The blocks' buffer summed by the compiled pass over the C-ordered float
        ``x`` and ``y`` with weights ``w``."""
        layout = self.layout
        buffer = np.empty(layout.size)
        kernel(
            self.codes,
            self.z,
            layout.zcol,
            x,
            y,
            w,
            w,
            buffer,
            layout.diag_at,
            layout.xz_at,
            layout.xz_stride,
            self.pair_of_row,
            layout.pair_terms,
            layout.pair_at,
            -1,
        )
        return buffer

    def blocks(
        self, buffer: np.ndarray
    ) -> tuple[list[np.ndarray], dict[tuple[int, int], PairBlocks], list[np.ndarray]]:
        """(diag, off, xz) as views of the buffer."""
        views = [buffer[a:b].reshape(shape) for a, b, shape in self.layout.views]
        k = self.codes.shape[0]
        if k == 1:
            return views[:1], {}, views[1:]
        n_pairs = len(self.pairs)
        off = {
            key: PairBlocks(rows=rows, cols=cols, data=data)
            for key, (rows, cols), data in zip(
                self.keys, self.pairs, views[k : k + n_pairs], strict=True
            )
        }
        return views[:k], off, views[k + n_pairs :]


# The level pairs of a single term: none (the kernel reads no row of this).
_NO_PAIRS = np.empty((0, 0), dtype=np.int64)


def _gram(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """[X y]ᵀW[X y] by BLAS products of X and y (without stacking them)."""
    n, p = x.shape
    out = np.empty((p + 1, p + 1))
    xw = x if weights is None else x * weights[:, None]
    yw = y if weights is None else y * weights
    # On one thread below a hundred million operations: BLAS's threads on a busy
    # machine took 8 ms for the 10⁵ × 2 product that one thread does in 0.4 ms.
    with blas_threads(products_threads(n, p)):
        out[:p, :p] = xw.T @ x
        out[:p, p] = xw.T @ y
        out[p, p] = yw @ y
    out[p, :p] = out[:p, p]
    return out
