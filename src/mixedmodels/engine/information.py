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
from .gradient import Residuals, theta_index, z_residual


def _times_g(
    cp: CrossProducts, t: int, u: np.ndarray, out: list[np.ndarray], out_x: np.ndarray
) -> None:
    """Add Z_sᵀZ_t u to ``out[s]`` for every term s and XᵀZ_t u to ``out_x``, for the
    columns u (levels, q, K) over term t's levels."""
    out[t] += np.matmul(cp.diag[t], u)
    for (i, j), pairs in cp.off.items():
        g = pairs.data  # (pairs, q_i, q_j): Z_iᵀZ_j, rows levels of i, cols levels of j
        if j == t:
            out[i] += _sum_by_level(pairs.rows, np.matmul(g, u[pairs.cols]), cp.n_levels[i])
        if i == t:
            above = np.matmul(g.transpose(0, 2, 1), u[pairs.rows])
            out[j] += _sum_by_level(pairs.cols, above, cp.n_levels[j])
    p = cp.n_fixed
    out_x += np.einsum("xla,lak->xk", cp.xz[t][:p], u)


def _sum_by_level(levels: np.ndarray, values: np.ndarray, m: int) -> np.ndarray:
    """Σ over b with levels[b] = ℓ of values[b], for every ℓ < m (bincount per column:
    np.add.at is slow)."""
    _, q, k = values.shape
    flat = values.reshape(len(levels), q * k)
    sums = [np.bincount(levels, flat[:, c], minlength=m) for c in range(q * k)]
    return np.stack(sums, axis=1).reshape(m, q, k)


def average_information(
    factor: BlockedCholesky,
    lambdas: list[np.ndarray],
    theta_rows: list[np.ndarray],
    theta_cols: list[np.ndarray],
    reml: bool,
    residuals: Residuals | None = None,
    index: np.ndarray | None = None,
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
    residuals : Residuals, optional
        What the gradient at this θ read off the factor (computed when not given).
    index : ndarray, optional
        :func:`~mixedmodels.engine.gradient.theta_index` of ``theta_rows`` and
        ``theta_cols``, when the caller holds it.

    Returns
    -------
    ndarray (n_θ, n_θ)
        Symmetric; not necessarily positive definite (the caller decides).
    """
    cp = factor.cp
    p = cp.n_fixed
    if residuals is None:
        beta, modes = factor.solution()
        ze = z_residual(cp, lambdas, beta, modes)
    else:
        ze = residuals.z_residual
    small = factor.small_path()
    if small is not None:
        if index is None:
            index = theta_index(theta_rows, theta_cols)
        return small.information(lambdas, index, reml, ze)
    dof = cp.n_obs - p if reml else cp.n_obs
    sigma2 = factor.pwrss() / dof
    n_theta = sum(len(r) for r in theta_rows)
    # Per term, u_k for its θ (levels, q, its θ), then G u_k on every term's
    # levels and Xᵀ Z u_k (all θ's columns, each filled by its own term's u).
    us, columns = [], []
    products = [np.zeros((m, q, n_theta)) for m, q in zip(cp.n_levels, cp.q, strict=True)]
    fixed = np.zeros((p, n_theta))
    a = np.zeros(n_theta)
    first = 0
    for t, (rows, cols) in enumerate(zip(theta_rows, theta_cols, strict=True)):
        k = len(rows)
        mine = slice(first, first + k)
        lam, zt = lambdas[t], ze[t]
        # u_k = (E_ij λᵀ + λ E_ji) zₗ: zₗ[i] λ[:, j], plus (λᵀzₗ)[j] in row i.
        u = zt[:, rows][:, None, :] * lam[:, cols][None, :, :]
        u[:, rows, np.arange(k)] += zt @ lam[:, cols]
        a[mine] = np.einsum("la,lak->k", zt, u)
        own = [g[:, :, mine] for g in products]
        _times_g(cp, t, u, own, fixed[:, mine])
        us.append(u)
        columns.append(mine)
        first += k
    ww = np.zeros((n_theta, n_theta))
    for t, (u, mine) in enumerate(zip(us, columns, strict=True)):
        ww[mine] = np.einsum("lak,lam->km", u, products[t])
    # c_k = [ΛᵀZᵀw_k; Xᵀw_k] on each term's levels (λᵀ per level) and X's rows.
    rhs_terms = [np.einsum("ba,lbk->lak", lam, g) for lam, g in zip(lambdas, products, strict=True)]
    z = factor.forward_solve(rhs_terms, fixed)
    b = ww - z.T @ z
    b = 0.5 * (b + b.T)
    return b / sigma2 - np.outer(a, a) / (dof * sigma2 * sigma2)
