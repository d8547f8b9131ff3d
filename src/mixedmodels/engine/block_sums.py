"""The blocks of AᵀWA for A = [Z₁ … Z_k X y], summed row by row in one compiled pass.

Every block of the cross-product (:mod:`.blocks`) is a sum over the rows, and
the rows of a level land in that level's block: one pass over the rows adds
each row's products where they belong.  Written with numpy the same sums need
one ``bincount`` per pair of columns, each on a freshly allocated product of
two columns; compiled, the pass costs what its additions cost.

Two callers share the pass: :func:`.blocks.cross_products` (stage 2 of the
linear model, once per fit) and :class:`.weighted.WeightedCrossProducts`
(refilled at every step of the GLMM's PIRLS).  Both lay the blocks out in one
flat buffer; the kernel is told where each block starts.
"""

from __future__ import annotations

import numpy as np

from .jit import compiled_on_first_use


def sum_blocks(
    codes,
    z,
    zcol,
    x,
    y,
    w,
    w_y,
    out,
    diag_at,
    xz_at,
    xz_stride,
    pair_of_row,
    pair_terms,
    pair_at,
    xx_at,
):  # pragma: no cover - compiled by numba
    """Every block of AᵀWA, summed row by row into the flat buffer ``out``.

    ``codes`` (terms, rows) are the level codes; term t's columns of ``z``
    are ``zcol[t]:zcol[t + 1]``.  [X y] is ``x`` (rows, p) beside ``y``.
    Term t's diagonal block of level ℓ starts at ``diag_at[t] + ℓq²``; its
    [X y]ᵀZ block, (p + 1, levels, q), at ``xz_at[t]`` with ``xz_stride[t]``
    = levels·q between columns of [X y]; pair block p (terms
    ``pair_terms[p]``) of the row's level pair ``pair_of_row[p, r]`` at
    ``pair_at[p] + index·qᵢqⱼ``; [X y]ᵀ[X y] at ``xx_at`` (skipped when
    ``xx_at`` < 0: with many columns a BLAS product is faster).  Products
    with y are weighted by ``w_y`` instead of ``w``.  Block by block, so that
    each loop's offsets stay in registers.
    """
    # Every offset into ``out`` is an unsigned integer (uint64 throughout: numba
    # turns a mix of signed and unsigned into floats): indexed with a signed one,
    # numba adds a test for negative indices at every access, and this loop is
    # mostly accesses (4 059 rows, q = 2, p = 3: 29 -> 23 µs).
    out[:] = 0.0
    one = np.uint64(1)
    n = y.shape[0]
    p = x.shape[1]
    pu = np.uint64(p)
    for t in range(codes.shape[0]):
        c0 = zcol[t]
        q = zcol[t + 1] - c0
        d0 = np.uint64(diag_at[t])
        x0 = np.uint64(xz_at[t])
        stride = np.uint64(xz_stride[t])
        y0 = x0 + pu * stride
        level_codes = codes[t]
        if q == 1:
            for r in range(n):
                level = np.uint64(level_codes[r])
                zr = z[r, c0]
                zw = w[r] * zr
                out[d0 + level] += zw * zr
                at_xz = x0 + level
                for k in range(p):
                    out[at_xz] += zw * x[r, k]
                    at_xz += stride
                out[y0 + level] += w_y[r] * zr * y[r]
        elif q == 2:
            # A random intercept and slope, the commonest vector term, unrolled.
            two = np.uint64(2)
            for r in range(n):
                level = np.uint64(level_codes[r])
                at = d0 + np.uint64(4) * level
                at_xz = x0 + two * level
                z0 = z[r, c0]
                z1 = z[r, c0 + 1]
                wz0 = w[r] * z0
                wz1 = w[r] * z1
                out[at] += wz0 * z0
                out[at + one] += wz0 * z1
                out[at + two] += wz1 * z0
                out[at + np.uint64(3)] += wz1 * z1
                for k in range(p):
                    xk = x[r, k]
                    out[at_xz] += wz0 * xk
                    out[at_xz + one] += wz1 * xk
                    at_xz += stride
                wy = w_y[r]
                yr = y[r]
                at_y = y0 + two * level
                out[at_y] += wy * z0 * yr
                out[at_y + one] += wy * z1 * yr
        else:
            qu = np.uint64(q)
            for r in range(n):
                level = np.uint64(level_codes[r])
                at = d0 + level * qu * qu
                at_x = x0 + level * qu
                at_y = y0 + level * qu
                wr = w[r]
                wy = w_y[r]
                yr = y[r]
                for a in range(q):
                    za = wr * z[r, c0 + a]
                    for bb in range(q):
                        out[at] += za * z[r, c0 + bb]
                        at += one
                    at_xz = at_x
                    for k in range(p):
                        out[at_xz] += za * x[r, k]
                        at_xz += stride
                    out[at_y] += wy * z[r, c0 + a] * yr
                    at_x += one
                    at_y += one
    for b in range(pair_terms.shape[0]):
        i = pair_terms[b, 0]
        j = pair_terms[b, 1]
        ci = zcol[i]
        cj = zcol[j]
        qi = zcol[i + 1] - ci
        qj = zcol[j + 1] - cj
        p0 = np.uint64(pair_at[b])
        index = pair_of_row[b]
        if qi == 1 and qj == 1:
            for r in range(n):
                out[p0 + np.uint64(index[r])] += w[r] * z[r, ci] * z[r, cj]
        else:
            size = np.uint64(qi * qj)
            for r in range(n):
                at = p0 + np.uint64(index[r]) * size
                for a in range(qi):
                    za = w[r] * z[r, ci + a]
                    for bb in range(qj):
                        out[at] += za * z[r, cj + bb]
                        at += one
    if xx_at >= 0:
        c = p + 1
        for r in range(n):
            wr = w[r]
            for k1 in range(p):
                v = wr * x[r, k1]
                for k2 in range(p):
                    out[xx_at + k1 * c + k2] += v * x[r, k2]
                out[xx_at + k1 * c + p] += v * y[r]
            wy = w_y[r] * y[r]
            for k2 in range(p):
                out[xx_at + p * c + k2] += wy * x[r, k2]
            out[xx_at + p * c + p] += wy * y[r]


#: The compiled :func:`sum_blocks` (None without numba), compiled at first use.
block_sums_kernel = compiled_on_first_use(sum_blocks)
