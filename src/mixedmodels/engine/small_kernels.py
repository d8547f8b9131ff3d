"""The compiled loops of :mod:`~mixedmodels.engine.small_trailing` (numba).

Three kernels on the flat layout :class:`~mixedmodels.engine.small_trailing.SmallTrailing`
prepares: the update (T's fill, the first term's levels, T's Cholesky), the
gradient (with β̂, û and Zᵀe) and the average information.  They call the first
term's level loops of :mod:`~mixedmodels.engine.kernels` and
:mod:`~mixedmodels.engine.gradient`, compiled here as globals of this module so
that numba links them in (and caches the result).
"""

from __future__ import annotations

import math

import numpy as np

from . import gradient, kernels
from .smallmatrix import cholesky_in_place

# The compiled loops the kernels call: set by compiled_kernels() before it
# compiles them (numba reads a global's value when it compiles the function).
_first_levels = _first_modes = _first_gradient = _cholesky = None
_term_residual = _term_products = _term_info = _first_info = _unpack = None


def update_kernel(
    lam_stack,
    diag0,
    integers,
    raw,
    xz0,
    l00,
    values,
    t,
    diag_flat,
    xz_flat,
    xx,
    data_flat,
    q0_tag,
):  # pragma: no cover - compiled by numba
    """Fill T (lower triangle) and factor the first term and T; returns Σ log diag L₀₀
    (nan when some λᵀDλ + I or T is not positive definite).  ``q0_tag``: q₀ as a type
    (:func:`~mixedmodels.engine.kernels.q0_tag`), so that numba compiles this kernel
    once per q₀ with the first term's loops unrolled; ``integers``: the factor's integer
    arrays packed, see :func:`unpack_integers`)."""
    (
        level_ptr,
        rows,
        entry_term,
        entry_comp,
        term_q,
        pair_base,
        pair_pos,
        layout,
        offsets,
        off_terms,
        off_pairs,
        pair_levels,
    ) = _unpack(integers)
    n = t.shape[0]
    n_xy = xx.shape[0]
    r = n - n_xy
    for i in range(n):
        for j in range(n):
            t[i, j] = 0.0
    k = layout.shape[0]
    # Later terms' diagonal blocks λᵀDₗλ + I and [X y]ᵀZ λ.
    for term in range(1, k):
        m, q, d_at, x_at = layout[term, 0], layout[term, 1], layout[term, 2], layout[term, 3]
        base = offsets[term]
        for level in range(m):
            row0 = base + level * q
            block = d_at + level * q * q
            for a in range(q):
                for b in range(a + 1):
                    s = 1.0 if a == b else 0.0
                    for c in range(q):
                        lca = lam_stack[term, c, a]
                        if lca != 0.0:
                            for e in range(q):
                                s += lca * diag_flat[block + c * q + e] * lam_stack[term, e, b]
                    t[row0 + a, row0 + b] = s
            for x in range(n_xy):
                at = x_at + (x * m + level) * q
                for b in range(q):
                    s = 0.0
                    for c in range(q):
                        s += xz_flat[at + c] * lam_stack[term, c, b]
                    t[r + x, row0 + b] = s
    # Later terms' blocks below one another: λᵢᵀ Gₚ λⱼ.
    for o in range(off_terms.shape[0]):
        i, j = off_terms[o, 0], off_terms[o, 1]
        if j == 0:
            continue
        qi, qj = layout[i, 1], layout[j, 1]
        for b in range(off_pairs[o, 0], off_pairs[o, 1]):
            g = off_pairs[o, 2] + (b - off_pairs[o, 0]) * qi * qj
            row0 = offsets[i] + pair_levels[b, 0] * qi
            col0 = offsets[j] + pair_levels[b, 1] * qj
            for a in range(qi):
                for c in range(qj):
                    s = 0.0
                    for e in range(qi):
                        lea = lam_stack[i, e, a]
                        if lea != 0.0:
                            for f in range(qj):
                                s += lea * data_flat[g + e * qj + f] * lam_stack[j, f, c]
                    t[row0 + a, col0 + c] = s
    for x in range(n_xy):
        for y in range(x + 1):
            t[r + x, r + y] = xx[x, y]
    logdet = _first_levels(
        0,
        l00.shape[0],
        np.ascontiguousarray(lam_stack[0, : l00.shape[1], : l00.shape[1]]),
        diag0,
        level_ptr,
        rows,
        raw,
        entry_term,
        entry_comp,
        term_q,
        lam_stack,
        xz0,
        l00,
        values,
        t,
        pair_base,
        pair_pos,
        q0_tag,
    )
    if math.isnan(logdet) or not _cholesky(t, n) or not math.isfinite(t[n - 1, n - 1]):
        return math.nan
    return logdet


def gradient_kernel(
    lam_stack,
    diag0,
    l00,
    integers,
    raw,
    xz0,
    values,
    t,
    diag_flat,
    xz_flat,
    data_flat,
    n_s,
    dof,
    theta_index,
    sigma,
    w,
    u_flat,
    ze_flat,
    out,
    q0_tag,
):  # pragma: no cover - compiled by numba
    """∇θ of the criterion at the θ of the last :func:`update_kernel`; also w (−û_T, −β, 1),
    the spherical modes û and Zᵀe (flat, by term) for the caller (``q0_tag``: as for
    :func:`update_kernel`)."""
    (
        level_ptr,
        rows,
        entry_term,
        entry_comp,
        term_q,
        pair_base,
        pair_pos,
        layout,
        offsets,
        off_terms,
        off_pairs,
        pair_levels,
    ) = _unpack(integers)
    n = t.shape[0]
    n_xy = xz0.shape[0]
    r = n - n_xy
    p = n_xy - 1
    k = layout.shape[0]
    q_max = lam_stack.shape[1]
    # Lᵀw = (0, …, 0, L_nn): w = (−û_T, −β̂, 1).
    w[n - 1] = 1.0
    for i in range(n - 2, -1, -1):
        s = 0.0
        for j in range(i + 1, n):
            s -= t[j, i] * w[j]
        w[i] = s / t[i, i]
    m0, q0 = layout[0, 0], layout[0, 1]
    _first_modes(level_ptr, rows, values, l00, w, u_flat[: m0 * q0].reshape(m0, q0), q0_tag)
    for term in range(1, k):
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        for e in range(m * q):
            u_flat[at + e] = -w[offsets[term] + e]
    # Σ_TT on the leading n_s rows: L⁻¹ by columns, then L⁻ᵀL⁻¹ (lower triangles).
    inverse = np.zeros((n_s, n_s))
    for j in range(n_s):
        inverse[j, j] = 1.0 / t[j, j]
        for i in range(j + 1, n_s):
            s = 0.0
            for c in range(j, i):
                s += t[i, c] * inverse[c, j]
            inverse[i, j] = -s / t[i, i]
    for i in range(n_s):
        for j in range(i + 1):
            s = 0.0
            for c in range(i, n_s):
                s += inverse[c, i] * inverse[c, j]
            sigma[i, j] = s
    acc = np.zeros((k, q_max, q_max))
    _first_gradient(
        0,
        m0,
        np.ascontiguousarray(lam_stack[0, :q0, :q0]),
        diag0,
        l00,
        level_ptr,
        rows,
        raw,
        entry_term,
        entry_comp,
        term_q,
        lam_stack,
        xz0,
        values,
        sigma,
        n_s,
        acc,
        pair_base,
        pair_pos,
        q0_tag,
    )
    # The later terms' diagonal blocks: Σ_(t,ℓ),(t,ℓ) λᵀDₗ, and with REML the X rows.
    for term in range(1, k):
        m, q, d_at, x_at = layout[term, 0], layout[term, 1], layout[term, 2], layout[term, 3]
        for level in range(m):
            row0 = offsets[term] + level * q
            block = d_at + level * q * q
            for a in range(q):
                for i2 in range(q):
                    s = 0.0
                    for b in range(q):
                        if a >= b:
                            sab = sigma[row0 + a, row0 + b]
                        else:
                            sab = sigma[row0 + b, row0 + a]
                        for c in range(q):
                            s += sab * lam_stack[term, c, b] * diag_flat[block + c * q + i2]
                    if n_s > r:
                        for x in range(p):
                            s += sigma[r + x, row0 + a] * xz_flat[x_at + (x * m + level) * q + i2]
                    acc[term, a, i2] += s
    # Blocks between later terms i > j: both terms' Y.
    for o in range(off_terms.shape[0]):
        i, j = off_terms[o, 0], off_terms[o, 1]
        if j == 0:
            continue
        qi, qj = layout[i, 1], layout[j, 1]
        for b in range(off_pairs[o, 0], off_pairs[o, 1]):
            g = off_pairs[o, 2] + (b - off_pairs[o, 0]) * qi * qj
            row0 = offsets[i] + pair_levels[b, 0] * qi
            col0 = offsets[j] + pair_levels[b, 1] * qj
            for a in range(qi):
                for c in range(qj):
                    s_ac = sigma[row0 + a, col0 + c]
                    for d in range(qi):
                        for i2 in range(qj):
                            # Term j: Σ λ_i[d, a] G[d, i2]; term i: Σ λ_j[i2, c] G[d, i2].
                            acc[j, c, i2] += s_ac * lam_stack[i, d, a] * data_flat[g + d * qj + i2]
                            acc[i, a, d] += s_ac * lam_stack[j, i2, c] * data_flat[g + d * qj + i2]
    # Zᵀe per term: [X y]ᵀZ's y row less β̂ᵀ[X]ᵀZ, less ZᵀZ b with b = λu (the first
    # term with q₀ a constant), then less the pairs' G b.
    n_re = u_flat.shape[0]
    b_flat = np.empty(n_re)
    q_runtime = np.empty(q_max)
    for term in range(k):
        m, q, d_at, x_at, at = (
            layout[term, 0],
            layout[term, 1],
            layout[term, 2],
            layout[term, 3],
            layout[term, 4],
        )
        args = (
            m,
            lam_stack[term],
            u_flat[at : at + m * q],
            xz_flat[x_at : x_at + n_xy * m * q],
            diag_flat[d_at : d_at + m * q * q],
            w[r : r + p],
            b_flat[at : at + m * q],
            ze_flat[at : at + m * q],
        )
        if term == 0:
            _term_residual(*args, q0_tag)
        else:
            _term_residual(*args, q_runtime[:q])
    for o in range(off_terms.shape[0]):
        i, j = off_terms[o, 0], off_terms[o, 1]
        qi, qj = layout[i, 1], layout[j, 1]
        for b in range(off_pairs[o, 0], off_pairs[o, 1]):
            g = off_pairs[o, 2] + (b - off_pairs[o, 0]) * qi * qj
            ri = layout[i, 4] + pair_levels[b, 0] * qi
            cj = layout[j, 4] + pair_levels[b, 1] * qj
            for a in range(qi):
                for c in range(qj):
                    gac = data_flat[g + a * qj + c]
                    ze_flat[ri + a] -= gac * b_flat[cj + c]
                    ze_flat[cj + c] -= gac * b_flat[ri + a]
    # ∂/∂θ = 2 Σ Y[j, i] + dof ∂r²/r², ∂r²/∂λ_t[i, j] = −2 Σₗ (Zᵀe)ₗ[i] ûₗ[j]: the sums
    # Σₗ (Zᵀe)ₗ ûₗᵀ of every term in one pass over its levels.
    products = np.zeros((k, q_max, q_max))
    for term in range(k):
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        args2 = (m, ze_flat[at : at + m * q], u_flat[at : at + m * q], products[term])
        if term == 0:
            _term_products(*args2, q0_tag)
        else:
            _term_products(*args2, q_runtime[:q])
    r2 = t[n - 1, n - 1] * t[n - 1, n - 1]
    for kk in range(theta_index.shape[0]):
        term, i, j = theta_index[kk, 0], theta_index[kk, 1], theta_index[kk, 2]
        # −2 Σ (exactly the sum of the −2 ze·u: a power of two scales without rounding).
        d_r2 = -2.0 * products[term, i, j]
        out[kk] = 2.0 * acc[term, j, i] + dof * d_r2 / r2


def unpack_integers(integers):  # pragma: no cover - compiled by numba
    """The factor's integer arrays from the one array
    :class:`~mixedmodels.engine.small_trailing.SmallTrailing` packs them in (views):
    the first term's level pointers, rows, entry terms and components, the terms' q,
    the pair bases and positions, then the layout (terms, 5), the terms' first rows
    in T, the pairs' terms (·, 2), ranges (·, 3) and levels (·, 2).  The array
    starts with the 13 bounds of these 12 segments."""
    b = integers
    return (
        integers[b[0] : b[1]],
        integers[b[1] : b[2]],
        integers[b[2] : b[3]],
        integers[b[3] : b[4]],
        integers[b[4] : b[5]],
        integers[b[5] : b[6]],
        integers[b[6] : b[7]],
        integers[b[7] : b[8]].reshape((-1, 5)),
        integers[b[8] : b[9]],
        integers[b[9] : b[10]].reshape((-1, 2)),
        integers[b[10] : b[11]].reshape((-1, 3)),
        integers[b[11] : b[12]].reshape((-1, 2)),
    )


def _term_residual_loop(m, lam, u, xz, diag, beta, b, ze, q_tag):  # pragma: no cover - numba
    """One term's b = λu and Zᵀe less its diagonal blocks' ZᵀZ b, level by level
    (``q_tag``: the term's q as a type, a tuple, for the first term, or as an
    array's length for the others; ``beta`` is −β̂)."""
    q = len(q_tag)
    p = beta.shape[0]
    for level in range(m):
        base = level * q
        for a in range(q):
            s = 0.0
            for c in range(a + 1):
                s += lam[a, c] * u[base + c]
            b[base + a] = s
        for a in range(q):
            s = xz[(p * m + level) * q + a]
            for x in range(p):
                s += beta[x] * xz[(x * m + level) * q + a]
            for c in range(q):
                s -= diag[level * q * q + a * q + c] * b[base + c]
            ze[base + a] = s


def _term_products_loop(m, ze, u, out, q_tag):  # pragma: no cover - numba
    """out[i, j] += Σₗ (Zᵀe)ₗ[i] ûₗ[j] over one term's levels (``q_tag``: as for
    :func:`_term_residual_loop`)."""
    q = len(q_tag)
    for level in range(m):
        base = level * q
        for i in range(q):
            zi = ze[base + i]
            for j in range(q):
                out[i, j] += zi * u[base + j]


def information_kernel(
    lam_stack,
    l00,
    integers,
    values,
    t,
    diag_flat,
    xz_flat,
    data_flat,
    ze_flat,
    theta_index,
    p,
    sigma2,
    dof,
    out,
    q0_tag,
):  # pragma: no cover - compiled by numba
    """The average information (see :mod:`~mixedmodels.engine.information`) into ``out``
    (``q0_tag``, ``integers``: as for :func:`update_kernel`)."""
    level_ptr, rows, _, _, _, _, _, layout, offsets, off_terms, off_pairs, pair_levels = _unpack(
        integers
    )
    n = t.shape[0]
    k = layout.shape[0]
    n_re = ze_flat.shape[0]
    n_theta = theta_index.shape[0]
    r = n - 1 - p
    # u_k = (E_ij λᵀ + λ E_ji) Zᵀe on its term's levels, and a_k = eᵀV_k e.
    u = np.zeros((n_re, n_theta))
    a = np.zeros(n_theta)
    for kk in range(n_theta):
        term, i, j = theta_index[kk, 0], theta_index[kk, 1], theta_index[kk, 2]
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        for level in range(m):
            base = at + level * q
            s = 0.0
            for c in range(q):
                s += lam_stack[term, c, j] * ze_flat[base + c]
            for c in range(q):
                u[base + c, kk] = ze_flat[base + i] * lam_stack[term, c, j]
            u[base + i, kk] += s
            for c in range(q):
                a[kk] += ze_flat[base + c] * u[base + c, kk]
    # G u on every term's levels, Xᵀ Z u.
    gu = np.zeros((n_re, n_theta))
    gx = np.zeros((max(p, 1), n_theta))
    q_runtime = np.empty(lam_stack.shape[1])
    for term in range(k):
        m, q, d_at, x_at, at = (
            layout[term, 0],
            layout[term, 1],
            layout[term, 2],
            layout[term, 3],
            layout[term, 4],
        )
        args = (
            m,
            diag_flat[d_at : d_at + m * q * q],
            xz_flat[x_at : x_at + (p + 1) * m * q],
            u[at : at + m * q],
            gu[at : at + m * q],
            gx,
            p,
        )
        if term == 0:
            _term_info(*args, q0_tag)
        else:
            _term_info(*args, q_runtime[:q])
    for o in range(off_terms.shape[0]):
        i, j = off_terms[o, 0], off_terms[o, 1]
        qi, qj = layout[i, 1], layout[j, 1]
        for b in range(off_pairs[o, 0], off_pairs[o, 1]):
            g = off_pairs[o, 2] + (b - off_pairs[o, 0]) * qi * qj
            ri = layout[i, 4] + pair_levels[b, 0] * qi
            cj = layout[j, 4] + pair_levels[b, 1] * qj
            for c in range(qi):
                for e in range(qj):
                    gce = data_flat[g + c * qj + e]
                    for kk in range(n_theta):
                        gu[ri + c, kk] += gce * u[cj + e, kk]
                        gu[cj + e, kk] += gce * u[ri + c, kk]
    # uᵀ G u: u_k1 is 0 off its term's levels (the sums leave those zeros out).
    for k1 in range(n_theta):
        m, q, at = (
            layout[theta_index[k1, 0], 0],
            layout[theta_index[k1, 0], 1],
            layout[theta_index[k1, 0], 4],
        )
        for k2 in range(n_theta):
            s = 0.0
            for e in range(at, at + m * q):
                s += u[e, k1] * gu[e, k2]
            out[k1, k2] = s
    # c = [λᵀ G u; Xᵀ Z u], then z = L⁻¹c: the first term level by level, T's rows
    # less L_T0 z₀, T's leading rows (all but y's) by forward substitution.
    m0, q0 = layout[0, 0], layout[0, 1]
    rhs = np.zeros((n, n_theta))
    for term in range(1, k):
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        for level in range(m):
            base = at + level * q
            for a2 in range(q):
                for kk in range(n_theta):
                    s = 0.0
                    for c in range(q):
                        s += lam_stack[term, c, a2] * gu[base + c, kk]
                    rhs[offsets[term] + level * q + a2, kk] = s
    for x in range(p):
        for kk in range(n_theta):
            rhs[r + x, kk] = gx[x, kk]
    zz = np.zeros((n_theta, n_theta))
    _first_info(lam_stack[0], gu[: m0 * q0], l00, level_ptr, rows, values, rhs, zz, q0_tag)
    for kk in range(n_theta):
        for i in range(n - 1):
            s = rhs[i, kk]
            for j in range(i):
                s -= t[i, j] * rhs[j, kk]
            rhs[i, kk] = s / t[i, i]
    for k1 in range(n_theta):
        for k2 in range(n_theta):
            s = zz[k1, k2]
            for e in range(n - 1):
                s += rhs[e, k1] * rhs[e, k2]
            zz[k1, k2] = s
    for k1 in range(n_theta):
        for k2 in range(k1 + 1):
            b = 0.5 * (out[k1, k2] - zz[k1, k2] + out[k2, k1] - zz[k2, k1])
            h = b / sigma2 - a[k1] * a[k2] / (dof * sigma2 * sigma2)
            out[k1, k2] = h
            out[k2, k1] = h


def _term_info_loop(m, diag, xz, u, gu, gx, p, q_tag):  # pragma: no cover - numba
    """gu += G u on one term's diagonal blocks, gx += Xᵀ Z u on its levels (``q_tag``:
    as for :func:`_term_residual_loop`)."""
    q = len(q_tag)
    n_theta = u.shape[1]
    for level in range(m):
        base = level * q
        block = level * q * q
        for c in range(q):
            for e in range(q):
                d = diag[block + c * q + e]
                for kk in range(n_theta):
                    gu[base + c, kk] += d * u[base + e, kk]
        for x in range(p):
            for c in range(q):
                v = xz[(x * m + level) * q + c]
                for kk in range(n_theta):
                    gx[x, kk] += v * u[base + c, kk]


def _first_info_loop(lam, gu, l00, level_ptr, rows, values, rhs, zz, q0_tag):  # pragma: no cover
    """The first term's levels in one pass: z = Lₗ⁻¹ λᵀ (G u)ₗ, rhs[rows] −= values · z,
    zz += zᵀz (``q0_tag``: :func:`~mixedmodels.engine.kernels.q0_tag`)."""
    q0 = len(q0_tag)
    n_theta = gu.shape[1]
    z = np.empty((q0, n_theta))
    for level in range(l00.shape[0]):
        base = level * q0
        for kk in range(n_theta):
            for i in range(q0):
                s = 0.0
                for c in range(q0):
                    s += lam[c, i] * gu[base + c, kk]
                z[i, kk] = s
            for i in range(q0):
                s = z[i, kk]
                for j in range(i):
                    s -= l00[level, i, j] * z[j, kk]
                z[i, kk] = s / l00[level, i, i]
            for e in range(level_ptr[level], level_ptr[level + 1]):
                s = 0.0
                for c in range(q0):
                    s += values[e, c] * z[c, kk]
                rhs[rows[e], kk] -= s
        for i in range(q0):
            for k1 in range(n_theta):
                for k2 in range(n_theta):
                    zz[k1, k2] += z[i, k1] * z[i, k2]


_COMPILED = None


def compiled_kernels():
    """(update, gradient, information) compiled, or None without numba.

    The first term's loops they call are compiled here as globals of this
    module, so that numba links them into the two kernels (and caches them).
    """
    global _COMPILED
    if _COMPILED is None:
        try:
            import numba
        except ImportError:  # pragma: no cover - exercised where numba is absent
            _COMPILED = False
            return None
        jit = numba.njit(cache=True, nogil=True)
        names = globals()
        names["_first_levels"] = jit(kernels.first_term_levels)
        names["_first_modes"] = jit(kernels.first_term_modes)
        names["_first_gradient"] = jit(gradient.first_term_gradient)
        names["_cholesky"] = jit(cholesky_in_place)
        names["_term_residual"] = jit(_term_residual_loop)
        names["_term_products"] = jit(_term_products_loop)
        names["_term_info"] = jit(_term_info_loop)
        names["_first_info"] = jit(_first_info_loop)
        names["_unpack"] = jit(unpack_integers)
        _COMPILED = (jit(update_kernel), jit(gradient_kernel), jit(information_kernel))
    return _COMPILED or None
