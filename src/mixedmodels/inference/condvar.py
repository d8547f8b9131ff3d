"""Conditional covariances of the random effects (lme4's ``condVar``).

Given θ and β, the spherical effects u have conditional covariance σ²M⁻¹ with
M = ΛᵀZᵀZΛ + I = L Lᵀ, so b = Λu has σ² Λ M⁻¹ Λᵀ.  Only the q×q blocks of one
level (all terms sharing a grouping factor together) are wanted: the columns
of L⁻¹ for those effects are solved for a batch of levels at a time against
the sparse blocked factor, and M⁻¹'s blocks are their inner products.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse.linalg as spla

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel

# Columns of L⁻¹ solved for at once (bounds the memory: q_total × this).
_BATCH_COLUMNS = 2048


def conditional_covariances(model: LinearMixedModel) -> dict[str, np.ndarray]:
    """Grouping factor → array (levels, q, q) of the conditional covariance of its modes."""
    state = model.state
    factor = model.problem.factor_at(state.theta)  # a workspace of its own, at the estimates
    lower = factor.random_effects_factor()
    # The factor's rows follow Z's columns in the factor's own order (a
    # sparse trailing block is factored in a fill-reducing order).
    where = np.argsort(factor.random_effects_order())
    lu = spla.splu(lower, permc_spec="NATURAL", diag_pivot_thresh=0.0)
    terms = model.design.terms
    lambdas = model.problem.lambdas(state.theta)
    offsets = np.cumsum([0] + [t.n_columns for t in terms])
    sigma2 = state.sigma**2
    out: dict[str, np.ndarray] = {}
    for group in dict.fromkeys(t.group_name for t in terms):
        members = [i for i, t in enumerate(terms) if t.group_name == group]
        m = terms[members[0]].n_levels
        # Column indices in Z of every effect of each level: (levels, Q).
        cols = np.concatenate(
            [
                offsets[i] + np.arange(m)[:, None] * terms[i].q + np.arange(terms[i].q)[None, :]
                for i in members
            ],
            axis=1,
        )
        big_q = cols.shape[1]
        lam = np.zeros((big_q, big_q))
        at = 0
        for i in members:
            q = terms[i].q
            lam[at : at + q, at : at + q] = lambdas[i]
            at += q
        result = np.empty((m, big_q, big_q))
        per_batch = max(1, _BATCH_COLUMNS // big_q)
        for start in range(0, m, per_batch):
            chunk = cols[start : start + per_batch]
            rhs = np.zeros((lower.shape[0], chunk.size))
            rhs[where[chunk.ravel()], np.arange(chunk.size)] = 1.0
            x = lu.solve(rhs).reshape(lower.shape[0], len(chunk), big_q)
            minv = np.einsum("nla,nlb->lab", x, x)
            result[start : start + len(chunk)] = sigma2 * (lam @ minv @ lam.T)
        out[group] = result
    return out
