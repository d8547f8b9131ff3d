"""The Laplace gradient's sums over rows, compiled with numba.

The gradient of the Laplace objective (:mod:`~mixedmodels.engine.laplace_gradient`)
is made of a few sums over rows, given the selected inverse of the PIRLS
factor (computed once per gradient, on the factor): each row's leverage and
the traces it adds, ΛᵀZᵀc, and the row sums of the final step.  Those sums
are here, one compiled loop each; they are what a set of rows
(:class:`~mixedmodels.engine.working_rows.RowsInMemory`, or one Dask partition
of them) contributes to a gradient.
"""

from __future__ import annotations

import numpy as np

_KERNELS = None


def row_kernels() -> dict:
    """The compiled row loops: ``leverages``, ``transpose_times``, ``gradient``,
    ``weighted_steps``, and
    ``leverages_scalar``, ``gradient_scalar`` for models whose terms are all scalar
    (the same sums without the loops over each term's q, several times faster)."""
    global _KERNELS
    if _KERNELS is None:
        import numba

        jit = numba.njit(cache=True, nogil=True)
        _KERNELS = {
            "leverages": jit(_row_leverages),
            "transpose_times": jit(_transpose_times),
            "gradient": jit(_row_gradient),
            "leverages_scalar": jit(_row_leverages_scalar),
            "gradient_scalar": jit(_row_gradient_scalar),
            "weighted_steps": jit(_weighted_steps),
        }
    return _KERNELS


def _row_leverages(
    codes, z, zcol, lams, weights, s00, s0t, s_tt, entry_of, t_offset, leverage, traces
):  # pragma: no cover - compiled by numba
    """hᵣ = vᵣᵀM⁻¹vᵣ (vᵣ = ΛᵀZᵀeᵣ) and traces[t, i, j] = Σᵣ wᵣ zᵣₜᵢ (M⁻¹vᵣ)ₜⱼ.

    ``entry_of[t, r]`` is the first term's entry (in the factor's level
    layout) of row r's level of term t ≥ 1; ``t_offset[t]`` the first row of
    term t in the trailing block.
    """
    k = codes.shape[0]
    qmax = lams.shape[1]
    v = np.zeros((k, qmax))
    m = np.zeros((k, qmax))
    traces[:] = 0.0
    for r in range(codes.shape[1]):
        for t in range(k):
            c0 = zcol[t]
            q = zcol[t + 1] - c0
            for a in range(q):
                s = 0.0
                for b in range(a, q):  # (λᵀz)ₐ = Σ_b λ_ba z_b, λ lower triangular
                    s += lams[t, b, a] * z[r, c0 + b]
                v[t, a] = s
        level0 = codes[0, r]
        q0 = zcol[1] - zcol[0]
        for a in range(q0):
            s = 0.0
            for b in range(q0):
                s += s00[level0, a, b] * v[0, b]
            m[0, a] = s
        for t in range(1, k):
            qt = zcol[t + 1] - zcol[t]
            e0 = entry_of[t, r]
            # S_{0t} = S_{t0}ᵀ, rows of term t's block in s0t.
            for a in range(q0):
                s = 0.0
                for b in range(qt):
                    s += s0t[e0 + b, a] * v[t, b]
                m[0, a] += s
            for a in range(qt):
                s = 0.0
                for b in range(q0):
                    s += s0t[e0 + a, b] * v[0, b]
                row = t_offset[t] + codes[t, r] * qt + a
                for t2 in range(1, k):
                    q2 = zcol[t2 + 1] - zcol[t2]
                    col = t_offset[t2] + codes[t2, r] * q2
                    for b in range(q2):
                        s += s_tt[row, col + b] * v[t2, b]
                m[t, a] = s
        h = 0.0
        wr = weights[r]
        for t in range(k):
            c0 = zcol[t]
            q = zcol[t + 1] - c0
            for a in range(q):
                h += v[t, a] * m[t, a]
                za = wr * z[r, c0 + a]
                for b in range(q):
                    traces[t, a, b] += za * m[t, b]
        leverage[r] = h


def _transpose_times(codes, z, zcol, lams, u_offset, c, out):  # pragma: no cover - compiled
    """out = ΛᵀZᵀc, term by term, level-major."""
    out[:] = 0.0
    for t in range(codes.shape[0]):
        c0 = zcol[t]
        q = zcol[t + 1] - c0
        base = u_offset[t]
        for r in range(codes.shape[1]):
            at = base + codes[t, r] * q
            cr = c[r]
            for a in range(q):
                s = 0.0
                for b in range(a, q):
                    s += lams[t, b, a] * z[r, c0 + b]
                out[at + a] += s * cr
    return out


def _weighted_steps(
    codes, z, zcol, lams, u_offset, direction, mode_steps, weights, out
):  # pragma: no cover - compiled by numba
    """out[:, s] = ΛᵀZᵀW δηₛ with δηₛ = ``direction[:, s]`` + Z·mode_steps[:, s] for every
    step s (``mode_steps`` (modes, steps) in the modes' order; ``direction`` X's part),
    step by step in one call."""
    out[:] = 0.0
    for s in range(out.shape[1]):
        for r in range(codes.shape[1]):
            step = direction[r, s]
            for t in range(codes.shape[0]):
                c0 = zcol[t]
                q = zcol[t + 1] - c0
                at = u_offset[t] + codes[t, r] * q
                for a in range(q):
                    step += z[r, c0 + a] * mode_steps[at + a, s]
            step *= weights[r]
            for t in range(codes.shape[0]):
                c0 = zcol[t]
                q = zcol[t + 1] - c0
                at = u_offset[t] + codes[t, r] * q
                for a in range(q):
                    lz = 0.0
                    for b in range(a, q):  # (λᵀz)ₐ, λ lower triangular
                        lz += lams[t, b, a] * z[r, c0 + b]
                    out[at + a, s] += lz * step


def _row_gradient(
    codes, z, zcol, lams, u_offset, u, x, shift, c, observed, score, total, first, second
):  # pragma: no cover - compiled by numba
    """Row sums for the gradient: with residual = c − D·(ZΛx + shift), total = residual + 2s
    (returned per row: β's gradient is Xᵀtotal) and, per term,
    first[t, i, j] = Σ total z_i u_j, second[t, i, j] = Σ s z_i x_j."""
    k = codes.shape[0]
    first[:] = 0.0
    second[:] = 0.0
    for r in range(codes.shape[1]):
        zlx = 0.0
        for t in range(k):
            c0 = zcol[t]
            q = zcol[t + 1] - c0
            at = u_offset[t] + codes[t, r] * q
            for a in range(q):
                s = 0.0
                for b in range(a + 1):  # (λx)ₐ = Σ_b λ_ab x_b
                    s += lams[t, a, b] * x[at + b]
                zlx += z[r, c0 + a] * s
        sr = score[r]
        row_total = c[r] - observed[r] * (zlx + shift[r]) + 2.0 * sr
        total[r] = row_total
        for t in range(k):
            c0 = zcol[t]
            q = zcol[t + 1] - c0
            at = u_offset[t] + codes[t, r] * q
            for i in range(q):
                zi = z[r, c0 + i]
                for j in range(q):
                    first[t, i, j] += row_total * zi * u[at + j]
                    second[t, i, j] += sr * zi * x[at + j]


def _row_leverages_scalar(
    codes, z, lam, weights, s00, s0t, s_tt, entry_of, t_offset, leverage, traces
):  # pragma: no cover - compiled by numba
    """:func:`_row_leverages` when every term is scalar (``lam[t]`` its λ, z's column t)."""
    k = codes.shape[0]
    v = np.empty(k)
    m = np.empty(k)
    rows = np.empty(k, dtype=np.int64)
    acc = np.zeros(k)
    for r in range(codes.shape[1]):
        for t in range(k):
            v[t] = lam[t] * z[r, t]
        for t in range(1, k):
            rows[t] = t_offset[t] + codes[t, r]
        m0 = s00[codes[0, r], 0, 0] * v[0]
        for t in range(1, k):
            s_t0 = s0t[entry_of[t, r], 0]
            m0 += s_t0 * v[t]
            s = s_t0 * v[0]
            row = s_tt[rows[t]]
            for t2 in range(1, k):
                s += row[rows[t2]] * v[t2]
            m[t] = s
        m[0] = m0
        h = 0.0
        wr = weights[r]
        for t in range(k):
            h += v[t] * m[t]
            acc[t] += wr * z[r, t] * m[t]
        leverage[r] = h
    traces[:] = 0.0
    for t in range(k):
        traces[t, 0, 0] = acc[t]


def _row_gradient_scalar(
    codes, z, lam, u_offset, u, x, shift, c, observed, score, total, first, second
):  # pragma: no cover - compiled by numba
    """:func:`_row_gradient` when every term is scalar (``lam[t]`` its λ, z's column t)."""
    k = codes.shape[0]
    acc_first = np.zeros(k)
    acc_second = np.zeros(k)
    for r in range(codes.shape[1]):
        zlx = 0.0
        for t in range(k):
            zlx += z[r, t] * lam[t] * x[u_offset[t] + codes[t, r]]
        sr = score[r]
        row_total = c[r] - observed[r] * (zlx + shift[r]) + 2.0 * sr
        total[r] = row_total
        for t in range(k):
            at = u_offset[t] + codes[t, r]
            zt = z[r, t]
            acc_first[t] += row_total * zt * u[at]
            acc_second[t] += sr * zt * x[at]
    first[:] = 0.0
    second[:] = 0.0
    for t in range(k):
        first[t, 0, 0] = acc_first[t]
        second[t, 0, 0] = acc_second[t]
