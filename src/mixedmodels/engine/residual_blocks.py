"""Stage 2 of the linear model in one compiled call: β₀, r = y − Xβ₀ and the blocks.

:func:`.blocks.residual_cross_products` needs two passes over the rows, the
normal equations' (:func:`.least_squares.offset_gram`: β₀, r and [X r]ᵀW[X r])
and then the blocks' (:func:`.block_sums.sum_blocks` with r in place of y).
Called from Python one after the other, each costs a call and the arrays
around it (β₀, r, the block, the buffer, unit weights) cost an allocation
each; here both loops are linked into one compiled function that allocates
what they fill.  The arithmetic is theirs, unchanged.
"""

from __future__ import annotations

import functools

import numpy as np

from .block_sums import sum_blocks
from .jit import compiled
from .least_squares import offset_gram, offset_gram_kernel


def residual_blocks(
    x,
    y,
    w,
    weighted,
    codes,
    z,
    zcol,
    diag_at,
    xz_at,
    xz_stride,
    pair_of_row,
    pair_terms,
    pair_at,
    size,
    condition_limit,
):  # pragma: no cover - compiled by numba
    """(done, β₀, [X r]ᵀW[X r], the blocks' buffer); ``done`` False where the normal
    equations are too ill-conditioned for β₀ (the rest is then unset: the caller
    takes β₀ from a QR and runs the two passes itself).

    ``x``, ``y``, ``w`` and ``weighted`` as :func:`.least_squares.offset_gram`
    reads them (``w`` is not read unless ``weighted``: unit weights are made
    here); the rest as :func:`.block_sums.sum_blocks` reads them, ``size`` the
    buffer's.
    """
    n, p = x.shape
    beta = np.empty(p)
    gram = np.empty((p + 1, p + 1))
    out = np.empty(size)
    residual = np.empty(n)
    if not _offset_gram(x, y, w, weighted, beta, True, residual, gram, condition_limit):
        return False, beta, gram, out
    weights = w if weighted else np.ones(n)
    _sum_blocks(
        codes,
        z,
        zcol,
        x,
        residual,
        weights,
        weights,
        out,
        diag_at,
        xz_at,
        xz_stride,
        pair_of_row,
        pair_terms,
        pair_at,
        -1,
    )
    return True, beta, gram, out


# The two loops residual_blocks calls, compiled: set by residual_blocks_kernel().
_offset_gram = None
_sum_blocks = None


@functools.cache
def residual_blocks_kernel():
    """:func:`residual_blocks` compiled with its two loops linked in (None without numba)."""
    # offset_gram_kernel() sets the Cholesky loop offset_gram calls.
    if offset_gram_kernel() is None:
        return None
    names = globals()
    names["_offset_gram"] = compiled(offset_gram)
    names["_sum_blocks"] = compiled(sum_blocks)
    return compiled(residual_blocks)
