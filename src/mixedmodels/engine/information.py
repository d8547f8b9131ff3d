"""The average-information approximation of the criterion's Hessian in θ, from the blocks.

The quasi-Newton fit needs a first Hessian.  Forward differences of the exact
gradient cost one evaluation and one gradient per θ (on InstEval a third of
the fit); the *average information* of AI-REML (Gilmour, Thompson & Cullis
1995), the mean of the observed and the expected information, costs a few
products with the blocks of G = AᵀA and one triangular solve with the factor
already refreshed at θ.

With V₀ = ZΛΛᵀZᵀ + I, P₀ = V₀⁻¹ − V₀⁻¹X(XᵀV₀⁻¹X)⁻¹XᵀV₀⁻¹, e = P₀y (the
conditional residual y − Xβ̂ − ZΛû), σ̂² = r²/dof and V_k = ∂V₀/∂θ_k, the
profiled criterion d(θ) = log|V₀| [+ log|XᵀV₀⁻¹X|] + dof·log r² has

    ∂²d/∂θ_k∂θ_l ≈ eᵀV_k P₀ V_l e / σ̂² − (eᵀV_k e)(eᵀV_l e) / (dof σ̂⁴)

(the trace terms of the observed and expected information cancel in their
mean; the last term is the profiling over σ²).  Writing V_k e = Z u_k with
u_k = M_k Zᵀe (M_k = E_ij λᵀ + λ E_ji on the levels of θ_k's term),
eᵀV_kP₀V_l e = u_kᵀ G_ZZ u_l − c_kᵀ Ω⁻¹ c_l with c_k = [ΛᵀZᵀZu_k; XᵀZu_k] and
Ω = LLᵀ the matrix the factor holds: the Gram matrix of L⁻¹c_k.  Nothing of
size n is formed, so it works on blocks summed elsewhere (Dask) as well.
"""

from __future__ import annotations

import numpy as np

from .blocks import CrossProducts
from .factor import BlockedCholesky
from .gradient import z_residual
from .smallmatrix import batched_matmul


def _times_g(cp: CrossProducts, t: int, u: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """(Z_sᵀ Z_t u for every term s, X ᵀ Z_t u) for u over term t's levels (levels, q)."""
    out = [np.zeros((m, q)) for m, q in zip(cp.n_levels, cp.q, strict=True)]
    out[t] = batched_matmul(cp.diag[t], u[:, :, None])[:, :, 0]
    for (i, j), pairs in cp.off.items():
        g = pairs.data  # (pairs, q_i, q_j): Z_iᵀZ_j, rows levels of i, cols levels of j
        if j == t:
            below = batched_matmul(g, u[pairs.cols][:, :, None])[:, :, 0]
            for a in range(cp.q[i]):
                out[i][:, a] += np.bincount(pairs.rows, below[:, a], minlength=cp.n_levels[i])
        if i == t:
            above = batched_matmul(g.transpose(0, 2, 1), u[pairs.rows][:, :, None])[:, :, 0]
            for a in range(cp.q[j]):
                out[j][:, a] += np.bincount(pairs.cols, above[:, a], minlength=cp.n_levels[j])
    p = cp.n_fixed
    xz = cp.xz[t][:p]  # (p, levels, q)
    return out, np.einsum("xla,la->x", xz, u)


def average_information(
    factor: BlockedCholesky,
    lambdas: list[np.ndarray],
    theta_rows: list[np.ndarray],
    theta_cols: list[np.ndarray],
    reml: bool,
) -> np.ndarray:
    """The average-information Hessian of the criterion in θ at the factor's θ.

    Parameters
    ----------
    factor : BlockedCholesky
        A factor refreshed at θ (not changed).
    lambdas : list of ndarray
        λ of each term at θ.
    theta_rows, theta_cols : list of int arrays
        Per term, the (row, column) of λ of each θ (lme4's order).
    reml : bool
        REML criterion or ML deviance (their residual degrees of freedom).

    Returns
    -------
    ndarray (n_θ, n_θ)
        Symmetric; not necessarily positive definite (the caller decides).
    """
    cp = factor.cp
    p = cp.n_fixed
    beta, modes = factor.solution()
    ze = z_residual(cp, lambdas, beta, modes)
    dof = cp.n_obs - p if reml else cp.n_obs
    sigma2 = factor.pwrss() / dof
    # u_k and what the blocks give of them, one θ at a time.
    terms, us, a = [], [], []
    products, fixed = [], []
    for t, (rows, cols) in enumerate(zip(theta_rows, theta_cols, strict=True)):
        lam = lambdas[t]
        for i, j in zip(rows, cols, strict=True):
            u = ze[t][:, i : i + 1] * lam[:, j][None, :]
            u[:, i] += ze[t] @ lam[:, j]
            terms.append(t)
            us.append(u)
            a.append(float(np.sum(ze[t] * u)))
            g, gx = _times_g(cp, t, u)
            products.append(g)
            fixed.append(gx)
    n_theta = len(us)
    a = np.asarray(a)
    ww = np.empty((n_theta, n_theta))
    for k in range(n_theta):
        for m in range(n_theta):
            ww[k, m] = np.sum(us[k] * products[m][terms[k]])
    # c_k = [ΛᵀZᵀw_k; Xᵀw_k], per term (levels, q, n_θ), and the X part (p, n_θ).
    rhs_terms = [
        np.stack([products[k][s] @ lambdas[s] for k in range(n_theta)], axis=-1)
        for s in range(cp.n_terms)
    ]
    rhs_x = np.stack(fixed, axis=-1) if n_theta else np.zeros((p, 0))
    z = factor.forward_solve(rhs_terms, rhs_x)
    b = ww - z.T @ z
    b = 0.5 * (b + b.T)
    return b / sigma2 - np.outer(a, a) / (dof * sigma2 * sigma2)
