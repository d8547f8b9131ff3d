"""Kenward–Roger (1997): adjusted covariance of β̂ and denominator degrees of freedom.

The marginal covariance of y is written linearly in the variance components,
Σ = Σᵣ γᵣ Gᵣ: one γ per variance and covariance of each random-effects term
(Gᵣ = Z Eᵣ Zᵀ, Eᵣ picking the matching columns of every level) and σ² for the
residual (G = I).  With Φ = (XᵀΣ⁻¹X)⁻¹,

    Pᵣ = −XᵀΣ⁻¹GᵣΣ⁻¹X,   Qᵣₛ = XᵀΣ⁻¹GᵣΣ⁻¹GₛΣ⁻¹X,

the expected information of γ and W = 2 (information)⁻¹ give the small-sample
adjustment Φ_A = Φ + 2Φ [Σᵣₛ Wᵣₛ (Qᵣₛ − PᵣΦPₛ)] Φ, and the df follow from
Kenward & Roger's moment matching, as pbkrtest computes them (with the
second derivatives of Σ zero, Σ being linear in γ).

Nothing of size n × n is formed: every product of Σ⁻¹ with X or Z goes through
the Woodbury identity Σ⁻¹ = σ⁻²(I − U M⁻¹ Uᵀ), U = ZΛ, M = UᵀU + I.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy import stats

from ..errors import MixedModelsError
from .cache import StateCache

if TYPE_CHECKING:
    from ..design import Design
    from ..models.lmm import LinearMixedModel
    from ..results.state import FittedState


@dataclass
class KenwardRogerInfo:
    """The pieces of the adjustment that the df of any contrast need."""

    vcov_beta: np.ndarray  # Φ
    vcov_adjusted: np.ndarray  # Φ_A
    p_matrices: list[np.ndarray]  # Pᵣ
    w: np.ndarray  # 2 × inverse expected information of γ


# Per fitted state (immutable), the adjustment computed at it.
_CACHE: StateCache[FittedState, KenwardRogerInfo] = StateCache()


def random_effects_matrix(design: Design) -> sp.csr_matrix:
    """Z as a sparse matrix: terms in engine order, columns level-major within a term."""
    blocks = []
    for term in design.terms:
        n, q = term.z.shape
        rows = np.repeat(np.arange(n), q)
        cols = (term.codes.astype(np.int64)[:, None] * q + np.arange(q)[None, :]).ravel()
        blocks.append(sp.csr_matrix((term.z.ravel(), (rows, cols)), shape=(n, term.n_columns)))
    return sp.hstack(blocks, format="csr")


def _relative_factor(model: LinearMixedModel) -> sp.csr_matrix:
    """Block-diagonal Λ(θ) in Z's column order."""
    blocks = [
        sp.kron(sp.identity(term.n_levels), lam)
        for term, lam in zip(
            model.design.terms, model.problem.lambdas(model.state.theta), strict=True
        )
    ]
    return sp.block_diag(blocks, format="csr")


def _selectors(model: LinearMixedModel) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per variance component (lower triangle, column-major, as θ): column indices (a, b)."""
    out = []
    offset = 0
    for term in model.design.terms:
        levels = np.arange(term.n_levels) * term.q + offset
        for i, j in zip(term.theta_rows, term.theta_cols, strict=True):
            out.append((levels + i, levels + j))
        offset += term.n_columns
    return out


def _sandwich(left: np.ndarray, sel: tuple[np.ndarray, np.ndarray], right: np.ndarray):
    """leftᵀ E right for E the symmetric selector of a (co)variance component."""
    a, b = sel
    if np.array_equal(a, b):
        return left[a].T @ right[a]
    return left[a].T @ right[b] + left[b].T @ right[a]


def kenward_roger_info(model: LinearMixedModel) -> KenwardRogerInfo:
    """Φ, Φ_A, the Pᵣ and W at the fit (cached on the model)."""
    return _CACHE.get(model.state, lambda: _kenward_roger_info(model))


def _kenward_roger_info(model: LinearMixedModel) -> KenwardRogerInfo:
    state = model.state
    if not model.reml:
        raise MixedModelsError(
            "Kenward-Roger's method needs a REML fit (as in lmerTest and pbkrtest): "
            "refit with reml=True or use ddf='satterthwaite'"
        )
    design = model.rows.in_memory("Kenward–Roger df")
    if design.weights is not None:
        raise MixedModelsError(
            "Kenward-Roger's method is not implemented for models with prior weights; "
            "use ddf='satterthwaite'"
        )
    x = design.x
    n = x.shape[0]
    sigma2 = state.sigma**2
    z = random_effects_matrix(design)
    u = (z @ _relative_factor(model)).tocsc()
    utu = (u.T @ u).toarray()
    m_chol = scipy.linalg.cho_factor(utu + np.eye(utu.shape[0]), lower=True)

    def sinv(a):
        """Σ⁻¹ a for a dense (n, k) array."""
        return (a - u @ scipy.linalg.cho_solve(m_chol, u.T @ a)) / sigma2

    w_x = sinv(x)
    w_z = sinv(z.toarray())
    b = z.T @ w_x  # ZᵀΣ⁻¹X
    s = z.T @ w_z  # ZᵀΣ⁻¹Z
    b2 = w_z.T @ w_x  # ZᵀΣ⁻²X
    s2 = w_z.T @ w_z  # ZᵀΣ⁻²Z
    x3x = w_x.T @ sinv(w_x)  # XᵀΣ⁻³X
    minv_utu = scipy.linalg.cho_solve(m_chol, utu)
    trace_s2 = (n - 2 * np.trace(minv_utu) + np.sum(minv_utu * minv_utu.T)) / sigma2**2

    sels = _selectors(model)
    g = len(sels) + 1  # the residual variance last
    phi = state.vcov
    p_mats = [-_sandwich(b, sel, b) for sel in sels] + [-(w_x.T @ w_x)]
    # E_r S, for the traces tr(G_r Σ⁻¹ G_s Σ⁻¹) = tr(E_r S E_s S).
    es = []
    for a_idx, b_idx in sels:
        m = np.zeros_like(s)
        m[a_idx] += s[b_idx]
        if not np.array_equal(a_idx, b_idx):
            m[b_idx] += s[a_idx]
        es.append(m)

    def q_matrix(r: int, t: int) -> np.ndarray:
        if r < g - 1 and t < g - 1:
            left = _sandwich(b, sels[r], s)  # Bᵀ E_r S
            sel_t = sels[t]
            a_idx, b_idx = sel_t
            out = left[:, a_idx] @ b[b_idx]
            if not np.array_equal(a_idx, b_idx):
                out = out + left[:, b_idx] @ b[a_idx]
            return out
        if r < g - 1:
            return _sandwich(b, sels[r], b2)
        if t < g - 1:
            return _sandwich(b2, sels[t], b)
        return x3x

    k_trace = np.empty((g, g))
    for r in range(g):
        for t in range(r, g):
            if r < g - 1 and t < g - 1:
                value = np.sum(es[r] * es[t].T)
            elif r < g - 1:
                a_idx, b_idx = sels[r]
                value = np.sum(s2[a_idx, b_idx]) * (1 if np.array_equal(a_idx, b_idx) else 2)
            else:
                value = trace_s2
            k_trace[r, t] = k_trace[t, r] = value

    q_mats = {(r, t): q_matrix(r, t) for r in range(g) for t in range(r, g)}
    info = np.empty((g, g))
    for r in range(g):
        phi_p = phi @ p_mats[r]
        for t in range(r, g):
            value = (
                k_trace[r, t] - 2 * np.sum(phi * q_mats[(r, t)]) + np.sum(phi_p * (p_mats[t] @ phi))
            )
            info[r, t] = info[t, r] = value
    eig = np.linalg.eigvalsh(info)
    w = 2 * (np.linalg.inv(info) if np.min(np.abs(eig)) > 1e-10 else np.linalg.pinv(info))
    adjust = np.zeros_like(phi)
    for r in range(g):
        for t in range(r + 1, g):
            adjust += w[r, t] * (q_mats[(r, t)] - p_mats[r] @ phi @ p_mats[t])
    adjust = adjust + adjust.T
    for r in range(g):
        adjust += w[r, r] * (q_mats[(r, r)] - p_mats[r] @ phi @ p_mats[r])
    result = KenwardRogerInfo(
        vcov_beta=phi,
        vcov_adjusted=phi + 2 * phi @ adjust @ phi,
        p_matrices=p_mats,
        w=w,
    )
    return result


def contrast_ddf(info: KenwardRogerInfo, contrasts: np.ndarray) -> float:
    """Kenward–Roger denominator df for the hypothesis Lβ = 0 (L of full row rank)."""
    ell = np.atleast_2d(np.asarray(contrasts, dtype=np.float64))
    phi = info.vcov_beta
    theta = ell.T @ np.linalg.solve(ell @ phi @ ell.T, ell)
    theta_phi = theta @ phi
    us = [theta_phi @ p @ phi for p in info.p_matrices]
    a1 = a2 = 0.0
    g = len(us)
    for r in range(g):
        for t in range(r, g):
            e = 1.0 if r == t else 2.0
            a1 += e * info.w[r, t] * np.trace(us[r]) * np.trace(us[t])
            a2 += e * info.w[r, t] * np.sum(us[r] * us[t].T)
    q = np.linalg.matrix_rank(ell)
    b = (a1 + 6 * a2) / (2 * q)
    gg = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
    denom = 3 * q + 2 * (1 - gg)
    c1, c2, c3 = gg / denom, (q - gg) / denom, (q + 2 - gg) / denom
    v0 = 1 + c1 * b
    v1 = 1 - c2 * b
    v2 = 1 - c3 * b
    if abs(v0) < 1e-10:
        v0 = 0.0
    ratio = (1 - a2 / q) / v1 if v1 != 0 else np.inf
    rho = ratio**2 * v0 / (q * v2)
    return float(4 + (q + 2) / (q * rho - 1))


def kenward_roger_table(model: LinearMixedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per fixed effect: (adjusted standard error, df, p value)."""
    info = kenward_roger_info(model)
    beta = model.state.beta
    p = len(beta)
    se = np.sqrt(np.diag(info.vcov_adjusted))
    dfs = np.array([contrast_ddf(info, np.eye(p)[j]) for j in range(p)])
    t = beta / se
    return se, dfs, 2 * stats.t.sf(np.abs(t), dfs)
