"""Parametric bootstrap on the model's own blocks, like MixedModels.jl's ``parametricbootstrap``.

Simulating a response changes only the y row and column of AᵀA: the per-level
sums ZⱼᵀW y*, XᵀW y* and y*ᵀW y*.  Those are computed for a whole batch of
replicates with one sparse product per term; each replicate then writes its
values into a private copy of the y parts of the cross-products (ZᵀZ, ZᵀX and
XᵀX are shared with the model, never rebuilt), and θ is re-optimised from the
estimate with the same BOBYQA as the fit.  No formula is parsed, no row is
revisited inside the θ loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..engine.optimize import minimize_bobyqa
from ..progress import progress_bar

if TYPE_CHECKING:
    from ..design import Design
    from ..models.lmm import LinearMixedModel

_LOG_2PI = math.log(2 * math.pi)
# BOBYQA for the refits: the fit's tolerances, but a first step of 0.1 rather
# than 0.75.  Each refit starts at θ̂, close to its own optimum; the long first
# step costs evaluations and now and then lands BOBYQA in a worse optimum
# (seen on sleepstudy: one replicate in 300 ended 1.3 above its minimum).
_TOLERANCES = {"ftol_rel": 1e-12, "ftol_abs": 1e-10, "xtol_abs": 1e-10, "initial_step": 0.1}
# Replicates whose y-dependent cross-products are computed together.
_BATCH = 256


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def simulate_responses(model: LinearMixedModel, n: int, seed=None) -> np.ndarray:
    """Responses drawn from the fitted model: an array (nobs, n).

    y* = o + Xβ̂ + Σⱼ Zⱼbⱼ + ε with bⱼ ~ N(0, σ̂²λⱼλⱼᵀ) per level and ε ~ N(0, σ̂²/w),
    o the offset (if any).
    """
    rng = _rng(seed)
    design = model.rows.in_memory("simulate()")
    state = model.state
    sigma = state.sigma
    mean = design.x @ state.beta
    if design.offset is not None:
        mean = mean + design.offset
    out = np.empty((len(mean), n))
    lambdas = model.problem.lambdas(state.theta)
    noise_scale = sigma if design.weights is None else sigma / np.sqrt(design.weights)
    for r in range(n):
        y = mean + rng.standard_normal(len(mean)) * noise_scale
        for term, lam in zip(design.terms, lambdas, strict=True):
            b = sigma * rng.standard_normal((term.n_levels, term.q)) @ lam.T
            y += np.einsum("nq,nq->n", term.z, b[term.codes])
        out[:, r] = y
    return out


@dataclass(repr=False)
class BootstrapResult:
    """Replicates of a parametric bootstrap.

    Attributes
    ----------
    replicates : pandas.DataFrame
        One row per replicate: ``objective``, ``sigma``, the fixed effects by
        name, and θ by lme4's names.
    fixed_names, theta_names : list of str
    """

    replicates: pd.DataFrame
    fixed_names: list[str]
    theta_names: list[str]
    estimates: pd.Series
    model: LinearMixedModel

    def __len__(self) -> int:
        return len(self.replicates)

    def __repr__(self) -> str:
        return f"<BootstrapResult: {len(self)} replicates of {self.model.design.formula.source!r}>"

    def sdcor(self) -> pd.DataFrame:
        """Per replicate, the random-effect sds and correlations (lme4's names) and σ."""
        from .profile import sdcor_from_theta

        names = self.model.sdcor_names
        rows = []
        for theta, sigma in zip(
            self.replicates[self.theta_names].to_numpy(),
            self.replicates["sigma"].to_numpy(),
            strict=True,
        ):
            # A GLMM without a scale parameter names no sigma: its σ (1) is left out.
            rows.append(sdcor_from_theta(self.model, theta, sigma)[: len(names)])
        return pd.DataFrame(rows, columns=names)

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals: the variance parameters (lme4's names), σ and the fixed effects."""
        alpha = (1 - level) / 2
        table = pd.concat([self.sdcor(), self.replicates[self.fixed_names]], axis=1)
        lower = table.quantile(alpha)
        upper = table.quantile(1 - alpha)
        return pd.DataFrame({"lower": lower, "upper": upper})


def _y_operators(design: Design) -> list[sp.csr_matrix]:
    """Per term, the sparse map y ↦ flattened per-level sums of w·y·z (what enters ZᵀWy)."""
    w = np.ones(len(design.y)) if design.weights is None else design.weights
    ops = []
    for term in design.terms:
        n, q = term.z.shape
        rows = (term.codes.astype(np.int64)[:, None] * q + np.arange(q)[None, :]).ravel()
        cols = np.repeat(np.arange(n), q)
        values = (term.z * w[:, None]).ravel()
        ops.append(sp.csr_matrix((values, (rows, cols)), shape=(term.n_columns, n)))
    return ops


def parametric_bootstrap(
    model: LinearMixedModel, n: int, seed=None, progress: bool | None = None
) -> BootstrapResult:
    """Refit θ to n simulated responses; see :meth:`InferenceMixin.bootstrap`."""
    rng = _rng(seed)
    design = model.rows.in_memory("bootstrap()")
    cp = model.cross_products
    p = cp.n_fixed
    w = np.ones(len(design.y)) if design.weights is None else design.weights
    xw = design.x * w[:, None]
    # A private copy of the y parts only (the Z and X blocks stay shared): the
    # factor reads the y blocks at every update, so each replicate is refitted
    # by changing them in place.
    problem = model.problem.with_private_response()
    work = problem.cross_products
    workspace = problem.workspace()

    def objective(theta: np.ndarray) -> float:
        return problem.objective(theta, workspace=workspace)

    ops = _y_operators(design)
    state = model.state
    theta_hat = state.theta.copy()
    dof = cp.n_obs - p if model.reml else cp.n_obs
    k = len(theta_hat)
    out = np.empty((n, 2 + p + k))
    for r in progress_bar(range(n), total=n, enabled=progress, desc="bootstrap", unit="replicate"):
        at = r % _BATCH
        if at == 0:
            # The y-dependent blocks of a batch of replicates at once.
            ys = simulate_responses(model, min(_BATCH, n - r), rng)
            if design.offset is not None:
                ys = ys - design.offset[:, None]  # the blocks hold y − offset
            if cp.beta_offset is not None:
                # The blocks hold y − Xβ₀ (see CrossProducts.beta_offset).
                ys = ys - (design.x @ cp.beta_offset)[:, None]
            zy = [op @ ys for op in ops]
            xy = xw.T @ ys
            yy = np.einsum("nr,n,nr->r", ys, w, ys)
        for j, term in enumerate(design.terms):
            work.xz[j][-1] = zy[j][:, at].reshape(term.n_levels, term.q)
        work.xx[-1, :p] = work.xx[:p, -1] = xy[:, at]
        work.xx[-1, -1] = yy[at]
        theta, value, _, _ = minimize_bobyqa(
            objective, theta_hat, model.lower_bounds, **_TOLERANCES
        )
        value = objective(theta)
        beta, r2 = workspace.fixed_effects(), workspace.pwrss()
        out[r] = np.concatenate([[value, math.sqrt(r2 / dof)], beta, theta])
    columns = ["objective", "sigma", *design.fixed_names, *model.theta_names]
    estimates = pd.Series(
        np.concatenate([[model.objective, state.sigma], state.beta, theta_hat]),
        index=columns,
    )
    return BootstrapResult(
        replicates=pd.DataFrame(out, columns=columns),
        fixed_names=list(design.fixed_names),
        theta_names=list(model.theta_names),
        estimates=estimates,
        model=model,
    )
