"""Adaptive Gauss–Hermite quadrature for a GLMM with one scalar random-effects term.

With a single scalar term the levels' random effects are independent given
β, so −2 log L is a sum over levels of one-dimensional integrals

    −2 log ∫ p(yₗ | u) φ(u) du.

Centring each integral at the conditional mode ûₗ and scaling by the
conditional standard deviation σₗ = 1/Lₗₗ (L the PIRLS factor), the rule
with nodes zₖ and weights wₖ for ∫ f(z) φ(z) dz gives lme4's ``glmerAGQ``
value

    Σₗ [dₗ(ûₗ) + ûₗ²] + log|L|² − 2 Σₗ log Σₖ wₖ exp(−½(dₗ(ûₗ + zₖσₗ)
                                      + (ûₗ + zₖσₗ)² − dₗ(ûₗ) − ûₗ²) + zₖ²/2),

dₗ the level's sum of deviance residuals.  Like lme4 this leaves out the
saturated model's −2 log L (a constant of the data), which its Laplace
objective (nAGQ = 1) includes: compare quadrature fits with quadrature fits.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .pirls import Pirls, PirlsSolution


@functools.lru_cache(maxsize=32)
def gauss_hermite_rule(n_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes z, weights w (summing to 1) for ∫ f(z) φ(z) dz, and log φ(z).

    The rule is made exactly symmetric (nodes averaged with their negated
    mirror, weights with their mirror), as lme4's ``GHrule`` does.
    """
    if not 1 <= n_points <= 100:
        raise ValueError(f"the number of quadrature points must be in 1..100, got {n_points}")
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_points)
    weights = weights / weights.sum()
    nodes = (nodes - nodes[::-1]) / 2.0
    weights = (weights + weights[::-1]) / 2.0
    log_phi = -0.5 * nodes * nodes - 0.5 * math.log(2.0 * math.pi)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    log_phi.setflags(write=False)
    return nodes, weights, log_phi


def agq_deviance(
    pirls: Pirls,
    lam: np.ndarray,
    beta: np.ndarray,
    solution: PirlsSolution,
    level_sd: np.ndarray,
    n_points: int,
) -> float:
    """lme4's adaptive quadrature objective at the modes of ``solution``.

    All nodes are evaluated in one pass over the rows
    (:meth:`~mixedmodels.engine.working_rows.WorkingRows.level_deviances`).

    Parameters
    ----------
    pirls : Pirls
        The model's PIRLS problem (one scalar random-effects term).
    lam : ndarray, shape (1, 1)
        The term's λ.
    beta : ndarray
        Fixed effects.
    solution : PirlsSolution
        Modes at (λ, β), from ``pirls.solve``.
    level_sd : ndarray
        σₗ = 1/Lₗₗ per level, from the factor at the modes.
    n_points : int
        Quadrature points.
    """
    nodes, weights, log_phi = gauss_hermite_rule(n_points)
    u0 = solution.u
    # Each node shifts every level's mode by z·σₗ: u = û + z σ, per (node, level).
    shifted = u0[None, :] + nodes[:, None] * level_sd[None, :]
    devc = pirls.rows.level_deviances(beta, lam, shifted)
    devc += shifted * shifted
    centre = int(np.argmin(np.abs(nodes)))
    if nodes[centre] == 0.0:
        devc0 = devc[centre]
    else:
        devc0 = pirls.rows.level_deviances(beta, lam, u0[None, :])[0] + u0 * u0
    # log Σₖ wₖ exp(−½Δₖ + zₖ²/2), with the largest term factored out.
    log_terms = (
        -0.5 * (devc - devc0[None, :])
        - log_phi[:, None]
        + np.log(weights)[:, None]
        - 0.5 * math.log(2.0 * math.pi)
    )
    top = np.max(log_terms, axis=0)
    log_mult = top + np.log(np.sum(np.exp(log_terms - top[None, :]), axis=0))
    return float(np.sum(devc0) + solution.logdet - 2.0 * np.sum(log_mult))
