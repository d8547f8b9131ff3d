"""The factor's update and the gradient in one compiled call each, for a small dense T.

On small models (sleepstudy: 18 levels and a 3×3 trailing block; Penicillin:
24 plates, 6 samples) the arithmetic of an evaluation is a few thousand
operations, and the forty-odd numpy and LAPACK calls of
:meth:`BlockedCholesky.update <mixedmodels.engine.factor.BlockedCholesky.update>`
and :meth:`ProfiledGradient.gradient
<mixedmodels.engine.gradient.ProfiledGradient.gradient>` (each a microsecond
or more) are what it costs.  Here the same computations run as two loops
compiled by numba, on the same arrays (the first term's level loops of
:mod:`~mixedmodels.engine.kernels` and :mod:`~mixedmodels.engine.gradient`
are called from them), so that a factor updated here is read by the rest of
the engine as any other:

* :func:`_update`: T ← the later terms' blocks and [X y] (Λ applied), the first
  term's levels and their downdate, then T's Cholesky factor in place;
* :func:`_gradient`: β̂ and û from one back-substitution, Σ_TT from the factor,
  the first term's part of the gradient, the later terms' parts, Zᵀe and ∂r².

The blocks of every term are laid out flat (:class:`SmallTrailing` prepares
them once per factor; the y parts are read from the cross-products at each
update, since a refit rewrites them).  Used when T has at most
:data:`MAX_ROWS` rows: beyond, LAPACK's blocked routines are faster than
these loops.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import gradient, kernels
from .blocks import CrossProducts

# T's rows up to which the compiled loops beat numpy and LAPACK (a Cholesky and
# an inverse of n³/3 operations each, against a few microseconds per call).
MAX_ROWS = 24

# The compiled loops the two kernels call: set by _kernels() before it compiles
# them (numba reads a global's value when it compiles the function using it).
_first_levels = _first_modes = _first_gradient = _cholesky = None


def _cholesky_in_place(t, n):  # pragma: no cover - numba
    """T's lower triangle ← its Cholesky factor; False if not positive definite."""
    for j in range(n):
        s = t[j, j]
        for k in range(j):
            s -= t[j, k] * t[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        t[j, j] = d
        for i in range(j + 1, n):
            s = t[i, j]
            for k in range(j):
                s -= t[i, k] * t[j, k]
            t[i, j] = s / d
    return True


def _update(
    lam_stack,
    diag0,
    level_ptr,
    rows,
    raw,
    entry_term,
    entry_comp,
    term_q,
    xz0,
    l00,
    values,
    pair_base,
    pair_pos,
    t,
    layout,
    offsets,
    diag_flat,
    xz_flat,
    xx,
    off_terms,
    off_pairs,
    pair_levels,
    data_flat,
):  # pragma: no cover - compiled by numba
    """Fill T (lower triangle) and factor the first term and T; returns Σ log diag L₀₀
    (nan when some λᵀDλ + I or T is not positive definite)."""
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
    )
    if math.isnan(logdet) or not _cholesky(t, n) or not math.isfinite(t[n - 1, n - 1]):
        return math.nan
    return logdet


def _gradient(
    lam_stack,
    diag0,
    l00,
    level_ptr,
    rows,
    raw,
    entry_term,
    entry_comp,
    term_q,
    xz0,
    values,
    pair_base,
    pair_pos,
    t,
    layout,
    offsets,
    diag_flat,
    xz_flat,
    off_terms,
    off_pairs,
    pair_levels,
    data_flat,
    n_s,
    dof,
    theta_index,
    sigma,
    w,
    u_flat,
    ze_flat,
    out,
):  # pragma: no cover - compiled by numba
    """∇θ of the criterion at the θ of the last :func:`_update`; also w (−û_T, −β, 1),
    the spherical modes û and Zᵀe (flat, by term) for the caller."""
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
    _first_modes(level_ptr, rows, values, l00, w, u_flat[: m0 * q0].reshape(m0, q0))
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
    # Zᵀe per term: [X y]ᵀZ's y row less β̂ᵀ[X]ᵀZ, less ZᵀZ b with b = λu.
    n_re = u_flat.shape[0]
    b_flat = np.empty(n_re)
    for term in range(k):
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        for level in range(m):
            for a in range(q):
                s = 0.0
                for c in range(a + 1):
                    s += lam_stack[term, a, c] * u_flat[at + level * q + c]
                b_flat[at + level * q + a] = s
    for term in range(k):
        m, q, d_at, x_at, at = (
            layout[term, 0],
            layout[term, 1],
            layout[term, 2],
            layout[term, 3],
            layout[term, 4],
        )
        for level in range(m):
            for a in range(q):
                s = xz_flat[x_at + (p * m + level) * q + a]
                for x in range(p):
                    s += w[r + x] * xz_flat[x_at + (x * m + level) * q + a]
                for c in range(q):
                    s -= diag_flat[d_at + level * q * q + a * q + c] * b_flat[at + level * q + c]
                ze_flat[at + level * q + a] = s
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
    # ∂/∂θ = 2 Σ Y[j, i] + dof ∂r²/r², ∂r²/∂λ_t[i, j] = −2 Σₗ (Zᵀe)ₗ[i] ûₗ[j].
    r2 = t[n - 1, n - 1] * t[n - 1, n - 1]
    for kk in range(theta_index.shape[0]):
        term, i, j = theta_index[kk, 0], theta_index[kk, 1], theta_index[kk, 2]
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        d_r2 = 0.0
        for level in range(m):
            d_r2 -= 2.0 * ze_flat[at + level * q + i] * u_flat[at + level * q + j]
        out[kk] = 2.0 * acc[term, j, i] + dof * d_r2 / r2


def _information(
    lam_stack,
    l00,
    level_ptr,
    rows,
    values,
    t,
    layout,
    offsets,
    diag_flat,
    xz_flat,
    off_terms,
    off_pairs,
    pair_levels,
    data_flat,
    ze_flat,
    theta_index,
    p,
    sigma2,
    dof,
    out,
):  # pragma: no cover - compiled by numba
    """The average information (see :mod:`~mixedmodels.engine.information`) into ``out``."""
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
    for term in range(k):
        m, q, d_at, x_at, at = (
            layout[term, 0],
            layout[term, 1],
            layout[term, 2],
            layout[term, 3],
            layout[term, 4],
        )
        for level in range(m):
            base = at + level * q
            block = d_at + level * q * q
            for c in range(q):
                for e in range(q):
                    d = diag_flat[block + c * q + e]
                    for kk in range(n_theta):
                        gu[base + c, kk] += d * u[base + e, kk]
            for x in range(p):
                for c in range(q):
                    v = xz_flat[x_at + (x * m + level) * q + c]
                    for kk in range(n_theta):
                        gx[x, kk] += v * u[base + c, kk]
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
    for k1 in range(n_theta):
        for k2 in range(n_theta):
            s = 0.0
            for e in range(n_re):
                s += u[e, k1] * gu[e, k2]
            out[k1, k2] = s
    # c = [λᵀ G u; Xᵀ Z u], then z = L⁻¹c: the first term level by level, T's rows
    # less L_T0 z₀, T's leading rows (all but y's) by forward substitution.
    c_vec = np.empty((n_re, n_theta))
    for term in range(k):
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        for level in range(m):
            base = at + level * q
            for a2 in range(q):
                for kk in range(n_theta):
                    s = 0.0
                    for c in range(q):
                        s += lam_stack[term, c, a2] * gu[base + c, kk]
                    c_vec[base + a2, kk] = s
    m0, q0 = layout[0, 0], layout[0, 1]
    rhs = np.zeros((n, n_theta))
    for term in range(1, k):
        m, q, at = layout[term, 0], layout[term, 1], layout[term, 4]
        for e in range(m * q):
            for kk in range(n_theta):
                rhs[offsets[term] + e, kk] = c_vec[at + e, kk]
    for x in range(p):
        for kk in range(n_theta):
            rhs[r + x, kk] = gx[x, kk]
    zz = np.zeros((n_theta, n_theta))
    z0 = np.empty(q0)
    for kk in range(n_theta):
        for level in range(m0):
            for i in range(q0):
                s = c_vec[level * q0 + i, kk]
                for j in range(i):
                    s -= l00[level, i, j] * z0[j]
                z0[i] = s / l00[level, i, i]
            for e in range(level_ptr[level], level_ptr[level + 1]):
                s = 0.0
                for c in range(q0):
                    s += values[e, c] * z0[c]
                rhs[rows[e], kk] -= s
            for i in range(q0):
                c_vec[level * q0 + i, kk] = z0[i]
        for i in range(n - 1):
            s = rhs[i, kk]
            for j in range(i):
                s -= t[i, j] * rhs[j, kk]
            rhs[i, kk] = s / t[i, i]
    for k1 in range(n_theta):
        for k2 in range(n_theta):
            s = 0.0
            for e in range(m0 * q0):
                s += c_vec[e, k1] * c_vec[e, k2]
            for e in range(n - 1):
                s += rhs[e, k1] * rhs[e, k2]
            zz[k1, k2] = s
    for k1 in range(n_theta):
        for k2 in range(k1 + 1):
            b = 0.5 * (out[k1, k2] - zz[k1, k2] + out[k2, k1] - zz[k2, k1])
            h = b / sigma2 - a[k1] * a[k2] / (dof * sigma2 * sigma2)
            out[k1, k2] = h
            out[k2, k1] = h


_COMPILED = None


def _kernels():
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
        names["_cholesky"] = jit(_cholesky_in_place)
        _COMPILED = (jit(_update), jit(_gradient), jit(_information))
    return _COMPILED or None


class SmallTrailing:
    """A factor's compiled update and gradient when its trailing block is small and dense.

    Built by :meth:`for_factor`; it writes into the factor's own arrays (T, L₀₀
    and the first term's column), so that the factor reads as after any update.
    """

    def __init__(self, factor, update, gradient_kernel, information_kernel) -> None:
        cp: CrossProducts = factor.cp
        self.factor = factor
        self._update, self._gradient = update, gradient_kernel
        self._information = information_kernel
        k = cp.n_terms
        m, q, n_xy = cp.n_levels, cp.q, cp.xx.shape[0]
        self.lam_stack = np.zeros((k, max(q), max(q)))
        # Start of each term's values in the flat layouts (Python integers: numpy's
        # cumsum on short lists costs more than the arithmetic).
        re_at = [0, *itertools.accumulate(a * b for a, b in zip(m, q, strict=True))]
        diag_at = [0, *itertools.accumulate(a * b * b for a, b in zip(m, q, strict=True))]
        xz_at = [0, *itertools.accumulate(n_xy * a * b for a, b in zip(m, q, strict=True))]
        self.layout = np.array(
            [[m[t], q[t], diag_at[t], xz_at[t], re_at[t]] for t in range(k)], dtype=np.int64
        )
        self.offsets = np.array([0, *factor.offsets[: k - 1]], dtype=np.int64)
        keys = list(cp.off)
        pair_at = [0, *itertools.accumulate(cp.off[key].n_pairs for key in keys)]
        data_at = [0, *itertools.accumulate(cp.off[key].data.size for key in keys)]
        self.off_terms = np.array(keys, dtype=np.int64).reshape(-1, 2)
        self.off_pairs = np.array(
            [[pair_at[o], pair_at[o + 1], data_at[o]] for o in range(len(keys))], dtype=np.int64
        ).reshape(-1, 3)
        self.pair_levels = (
            np.column_stack(
                [
                    np.concatenate([cp.off[key].rows for key in keys]),
                    np.concatenate([cp.off[key].cols for key in keys]),
                ]
            ).astype(np.int64)
            if keys
            else np.zeros((0, 2), dtype=np.int64)
        )
        n = factor.n_t
        self.sigma = np.zeros((n, n))
        self.n_re = re_at[-1]

    @classmethod
    def for_factor(cls, factor) -> SmallTrailing | None:
        """The compiled path for ``factor``, or None when it does not apply (a sparse
        or large T, the first term's loop on two threads, numba missing)."""
        if factor.sparse is not None or not factor.k or factor.n_t > MAX_ROWS:
            return None
        column = factor.col0
        if not column.compiled or column.thread_split is not None:
            return None
        kernels_ = _kernels()
        if kernels_ is None:
            return None
        return cls(factor, *kernels_)

    def _blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blocks flat, read from the cross-products now (a refit or the GLMM's
        working weights rewrite them between updates)."""
        cp = self.factor.cp
        if cp.n_terms == 1:
            diag, xz = cp.diag[0].reshape(-1), cp.xz[0].reshape(-1)
        else:
            diag = np.concatenate([d.reshape(-1) for d in cp.diag])
            xz = np.concatenate([x.reshape(-1) for x in cp.xz])
        data = (
            np.concatenate([pairs.data.reshape(-1) for pairs in cp.off.values()])
            if cp.off
            else np.zeros(0)
        )
        return diag, xz, data

    def update(self, lambdas: list[np.ndarray]) -> tuple[np.ndarray, float] | None:
        """Refactor at these λ: (L₀₀, Σ log diag L₀₀), or None if not positive definite."""
        factor = self.factor
        cp = factor.cp
        stack = self.lam_stack
        for t, lam in enumerate(lambdas):
            stack[t, : lam.shape[0], : lam.shape[1]] = lam
        column = factor.col0
        l00 = np.empty_like(cp.diag[0])
        diag, xz, data = self._blocks()
        logdet = self._update(
            stack,
            cp.diag[0],
            column.level_ptr,
            column.rows,
            column.raw,
            column.entry_term,
            column.entry_comp,
            column.term_q,
            np.ascontiguousarray(cp.xz[0]),
            l00,
            column.values,
            column.pair_base,
            column.pair_pos,
            factor.T,
            self.layout,
            self.offsets,
            diag,
            xz,
            np.ascontiguousarray(cp.xx),
            self.off_terms,
            self.off_pairs,
            self.pair_levels,
            data,
        )
        if math.isnan(logdet):
            return None
        return l00, logdet

    def gradient(
        self, lambdas: list[np.ndarray], theta_index: np.ndarray, reml: bool
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(∇θ, β̂, û per term, Zᵀe per term) at the θ of the factor's last update.

        ``lambdas`` are λ at that θ; ``theta_index`` (n_θ, 3) gives each θ's
        term and its (row, column) in λ.
        """
        for t, lam in enumerate(lambdas):
            self.lam_stack[t, : lam.shape[0], : lam.shape[1]] = lam
        factor = self.factor
        cp = factor.cp
        p = cp.n_fixed
        n = factor.n_t
        column = factor.col0
        diag, xz, data = self._blocks()
        w = np.zeros(n)
        u_flat = np.empty(self.n_re)
        ze_flat = np.empty(self.n_re)
        out = np.empty(len(theta_index))
        self._gradient(
            self.lam_stack,
            cp.diag[0],
            factor.L00,
            column.level_ptr,
            column.rows,
            column.raw,
            column.entry_term,
            column.entry_comp,
            column.term_q,
            np.ascontiguousarray(cp.xz[0]),
            column.values,
            column.pair_base,
            column.pair_pos,
            factor.T,
            self.layout,
            self.offsets,
            diag,
            xz,
            self.off_terms,
            self.off_pairs,
            self.pair_levels,
            data,
            factor.n_re_trailing + (p if reml else 0),
            float(cp.n_obs - p if reml else cp.n_obs),
            theta_index,
            self.sigma,
            w,
            u_flat,
            ze_flat,
            out,
        )
        r = factor.n_re_trailing
        beta = -w[r : r + p]
        if cp.beta_offset is not None:
            beta = beta + cp.beta_offset
        bounds = [*self.layout[:, 4].tolist(), self.n_re]
        modes = [u_flat[a:b] for a, b in itertools.pairwise(bounds)]
        ze = [
            ze_flat[a:b].reshape(m, q)
            for a, b, m, q in zip(bounds[:-1], bounds[1:], cp.n_levels, cp.q, strict=True)
        ]
        return out, beta, modes, ze

    def information(
        self,
        lambdas: list[np.ndarray],
        theta_index: np.ndarray,
        reml: bool,
        z_residual: list[np.ndarray],
    ) -> np.ndarray:
        """The average-information Hessian in θ at the factor's θ (Zᵀe per term given)."""
        for t, lam in enumerate(lambdas):
            self.lam_stack[t, : lam.shape[0], : lam.shape[1]] = lam
        factor = self.factor
        cp = factor.cp
        column = factor.col0
        diag, xz, data = self._blocks()
        dof = cp.n_obs - cp.n_fixed if reml else cp.n_obs
        out = np.empty((len(theta_index), len(theta_index)))
        self._information(
            self.lam_stack,
            factor.L00,
            column.level_ptr,
            column.rows,
            column.values,
            factor.T,
            self.layout,
            self.offsets,
            diag,
            xz,
            self.off_terms,
            self.off_pairs,
            self.pair_levels,
            data,
            np.concatenate([z.reshape(-1) for z in z_residual]),
            theta_index,
            cp.n_fixed,
            factor.pwrss() / dof,
            float(dof),
            out,
        )
        return out
