"""The offset β₀ of stage 2 and the [X r]ᵀW[X r] block, r = y − Xβ₀.

The cross-products (:mod:`.blocks`) hold y − Xβ₀ in place of y with β₀ near
the least-squares fit, so that y'y does not cancel against the fitted part
(see :attr:`.blocks.CrossProducts.beta_offset`).  Any β₀ close to the fit
serves: the θ loop solves for β − β₀ from the blocks.

For a few columns, normal equations cost far less than a QR: one compiled
pass forms XᵀWX and XᵀWy, a Cholesky factor of the p×p matrix gives β₀, and a
second pass forms r, XᵀWr and rᵀWr from the rows themselves (so that nothing
is computed by subtracting large sums).  Measured on a 4 059 × 3 X: 21 µs,
against 70 µs for LAPACK's QR, the residual and three BLAS products, whose
small products OpenBLAS handles slowly.  Normal equations lose accuracy as
the square of X's condition number: where the unit-diagonal scaling of XᵀWX
has a condition number above :data:`CONDITION_LIMIT` (a polynomial in an
uncentred covariate, a year beside an intercept), β₀ comes from the
Householder QR (:func:`least_squares`) instead, and the pass forms r and the
block from that β₀.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from .jit import compiled_on_first_use
from .smallmatrix import cholesky_in_place
from .threads import blas_threads, threads_for

#: Above this condition number (1-norm) of the unit-diagonal scaling of XᵀWX,
#: β₀ comes from the QR: the normal equations' β₀ has a relative error of
#: about the condition number times the rounding unit, 2e-10 here, so r keeps
#: all but a negligible part of y's fitted component removed.
CONDITION_LIMIT = 1e6


def least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """β minimising |y − Xβ|² for an X of full column rank (the design dropped aliased
    columns): LAPACK's Householder QR of a Fortran-order copy, factored in place,
    then Qᵀy and the triangular solve (dgels does the same with a scaling pass
    and copies: twice the time on a tall X); the SVD where it fails."""
    n, p = x.shape
    with blas_threads(threads_for(n, p)):
        if n >= p:
            lapack = scipy.linalg.lapack
            qr, tau, _, info = lapack.dgeqrf(
                np.array(x, dtype=np.float64, order="F"), overwrite_a=True
            )
            if info == 0:
                qty, _, info = lapack.dormqr("L", "T", qr, tau, y.reshape(-1, 1), 64)
            if info == 0:
                beta, info = lapack.dtrtrs(qr[:p], qty[:p], lower=0)
                beta = beta.ravel()
                if info == 0 and np.all(np.isfinite(beta)):
                    return beta
        return np.linalg.lstsq(x, y, rcond=None)[0]


def offset_gram(
    x, y, w, weighted, beta, solve, residual, gram, condition_limit
):  # pragma: no cover - compiled by numba
    """β₀, r = y − Xβ₀ and [X r]ᵀW[X r] in passes over the rows; False where the
    normal equations are too ill-conditioned for β₀ (nothing else is then set).

    ``x`` (n, p) C-ordered, ``y`` and ``w`` (n,) (``w`` read only if
    ``weighted``); with ``solve`` β₀ is computed into ``beta`` (p,), otherwise
    ``beta`` is read as given.  ``residual`` (n,) receives r and ``gram``
    (p + 1, p + 1) the block.  Columns are taken two at a time with their
    products in scalar accumulators: summed into an array, every row's products
    would go through memory (twice the time).  A last column alone (p odd) rides
    along in passes that would otherwise repeat a column's products (p = 3:
    three passes, not five; 28 → 21 µs on 4 059 rows), each sum's additions
    unchanged.
    """
    n, p = x.shape
    # Sums of blocks of rows (then of the blocks' sums): a single running sum of
    # n terms errs by up to n rounding units, these by about 2√n (measured on
    # InstEval's 73 421 rows: rᵀr off by 4e-13 against 6e-15 relative, the
    # REML criterion then by 3e-8).
    block = max(64, int(math.sqrt(n)))
    # XᵀWX (upper triangle) and XᵀWy, two columns a, a1 against two b, b1 per pass.
    for a in range(0, p, 2):
        a1 = a + 1 if a + 1 < p else a
        if a1 == a and a > 0:
            # The last column alone (p odd): its sums came with the first pair's pass.
            break
        s00 = s01 = s11 = s0y = s1y = 0.0
        for start in range(0, n, block):
            t00 = t01 = t11 = t0y = t1y = 0.0
            for i in range(start, min(start + block, n)):
                u0 = x[i, a]
                u1 = x[i, a1]
                if weighted:
                    wu0 = w[i] * u0
                    wu1 = w[i] * u1
                else:
                    wu0 = u0
                    wu1 = u1
                t00 += wu0 * u0
                t01 += wu0 * u1
                t11 += wu1 * u1
                t0y += wu0 * y[i]
                t1y += wu1 * y[i]
            s00 += t00
            s01 += t01
            s11 += t11
            s0y += t0y
            s1y += t1y
        gram[a, a] = s00
        gram[a, a1] = s01
        gram[a1, a1] = s11
        gram[a, p] = s0y
        gram[a1, p] = s1y
        for b in range(a + 2, p, 2):
            b1 = b + 1 if b + 1 < p else b
            # Against the last column alone (p odd) the pass has two sums to spare:
            # the first pair's pass takes that column's own sums (its XᵀWX and XᵀWy
            # entries, the same additions in the same order as a pass of their own).
            alone = b1 == b
            own = alone and a == 0
            s00 = s01 = s10 = s11 = 0.0
            for start in range(0, n, block):
                t00 = t01 = t10 = t11 = 0.0
                if alone:
                    for i in range(start, min(start + block, n)):
                        u0 = x[i, a]
                        u1 = x[i, a1]
                        if weighted:
                            u0 = w[i] * u0
                            u1 = w[i] * u1
                        v0 = x[i, b]
                        t00 += u0 * v0
                        t10 += u1 * v0
                        # (Column b's own sums, kept only against the first pair.)
                        wv = w[i] * v0 if weighted else v0
                        t01 += wv * v0
                        t11 += wv * y[i]
                else:
                    for i in range(start, min(start + block, n)):
                        u0 = x[i, a]
                        u1 = x[i, a1]
                        if weighted:
                            u0 = w[i] * u0
                            u1 = w[i] * u1
                        v0 = x[i, b]
                        v1 = x[i, b1]
                        t00 += u0 * v0
                        t01 += u0 * v1
                        t10 += u1 * v0
                        t11 += u1 * v1
                s00 += t00
                s01 += t01
                s10 += t10
                s11 += t11
            gram[a, b] = s00
            gram[a1, b] = s10
            if own:
                gram[b, b] = s01
                gram[b, p] = s11
            elif not alone:
                gram[a, b1] = s01
                gram[a1, b1] = s11
    if solve and p:
        # Cholesky factor L of S XᵀWX S, S = diag(XᵀWX)^(-1/2), in a lower triangle.
        scale = np.empty(p)
        for k in range(p):
            if not gram[k, k] > 0.0:
                return False
            scale[k] = 1.0 / math.sqrt(gram[k, k])
        lower = np.empty((p, p))
        for j in range(p):
            for i in range(j, p):
                lower[i, j] = gram[j, i] * scale[i] * scale[j]
        norm = 0.0  # ‖S XᵀWX S‖₁, before the factor overwrites it
        for j in range(p):
            column = 0.0
            for i in range(p):
                column += abs(lower[i, j] if i >= j else lower[j, i])
            norm = max(norm, column)
        if not _cholesky(lower, p):
            return False
        # ‖(S XᵀWX S)⁻¹‖₁ from L⁻¹ (the inverse is L⁻ᵀL⁻¹): p³ operations, nothing
        # beside the passes for the few columns this runs on.
        inverse = np.zeros((p, p))
        for j in range(p):
            inverse[j, j] = 1.0 / lower[j, j]
            for i in range(j + 1, p):
                s = 0.0
                for k in range(j, i):
                    s -= lower[i, k] * inverse[k, j]
                inverse[i, j] = s / lower[i, i]
        norm_inverse = 0.0
        for j in range(p):
            column = 0.0
            for i in range(p):
                s = 0.0
                for k in range(max(i, j), p):
                    s += inverse[k, i] * inverse[k, j]
                column += abs(s)
            norm_inverse = max(norm_inverse, column)
        if not norm * norm_inverse < condition_limit:
            return False
        # β₀ = S L⁻ᵀ L⁻¹ S XᵀWy.
        for i in range(p):
            s = gram[i, p] * scale[i]
            for k in range(i):
                s -= lower[i, k] * beta[k]
            beta[i] = s / lower[i, i]
        for i in range(p - 1, -1, -1):
            s = beta[i]
            for k in range(i + 1, p):
                s -= lower[k, i] * beta[k]
            beta[i] = s / lower[i, i]
        for i in range(p):
            beta[i] *= scale[i]
    # r, rᵀWr and the first two columns' XᵀWr in one pass; the others in pairs.
    rr = s0 = s1 = 0.0
    if p == 0:
        for i in range(n):
            residual[i] = y[i]
            rr += (w[i] * y[i] if weighted else y[i]) * y[i]
        gram[0, 0] = rr
        return True
    # The first two coefficients outside the loop over columns (the same
    # operations in the same order; the whole kernel on 4 059 × 3: ~30 → ~28 µs).
    a1 = 1 if p > 1 else 0
    b0 = beta[0]
    b1 = beta[1] if p > 1 else 0.0
    # The last column alone (p odd, from 3) in this pass too, not in one of its own
    # (two loops: a test inside the one loop slowed the others by 7 %).
    fold = p > 2 and p % 2 == 1
    if fold:
        last = p - 1
        s2 = 0.0
        for start in range(0, n, block):
            trr = t0 = t1 = t2 = 0.0
            for i in range(start, min(start + block, n)):
                u0 = x[i, 0]
                u1 = x[i, a1]
                r = y[i] - u0 * b0
                r -= u1 * b1
                for k in range(2, p):
                    r -= x[i, k] * beta[k]
                residual[i] = r
                wr = w[i] * r if weighted else r
                trr += wr * r
                t0 += u0 * wr
                t1 += u1 * wr
                t2 += x[i, last] * wr
            rr += trr
            s0 += t0
            s1 += t1
            s2 += t2
        gram[last, p] = s2
    else:
        for start in range(0, n, block):
            trr = t0 = t1 = 0.0
            for i in range(start, min(start + block, n)):
                u0 = x[i, 0]
                u1 = x[i, a1]
                r = y[i] - u0 * b0
                r -= u1 * b1
                for k in range(2, p):
                    r -= x[i, k] * beta[k]
                residual[i] = r
                wr = w[i] * r if weighted else r
                trr += wr * r
                t0 += u0 * wr
                t1 += u1 * wr
            rr += trr
            s0 += t0
            s1 += t1
    gram[p, p] = rr
    gram[0, p] = s0
    gram[a1, p] = s1
    for a in range(2, p, 2):
        a1 = a + 1 if a + 1 < p else a
        if a1 == a:
            break
        s0 = s1 = 0.0
        for start in range(0, n, block):
            t0 = t1 = 0.0
            for i in range(start, min(start + block, n)):
                wr = w[i] * residual[i] if weighted else residual[i]
                t0 += x[i, a] * wr
                t1 += x[i, a1] * wr
            s0 += t0
            s1 += t1
        gram[a, p] = s0
        gram[a1, p] = s1
    for i in range(p + 1):
        for j in range(i):
            gram[i, j] = gram[j, i]
    return True


# The Cholesky loop offset_gram calls, compiled: set by offset_gram_kernel() before
# it compiles offset_gram.
_cholesky = None

#: The compiled :func:`offset_gram` (None without numba), compiled at first use.
offset_gram_kernel = compiled_on_first_use(offset_gram, _cholesky=cholesky_in_place)
