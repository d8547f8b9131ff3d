"""Stage 3 of a GLMM as a function: (θ, β) → lme4's objective, on workspaces.

:class:`GeneralizedProblem` holds what does not change while θ and β do —
the rows (response, prior weights, offset, X, the terms' level codes and
model matrices), the family and the terms' λ templates — and evaluates
lme4's objectives on a :class:`PirlsWorkspace`: the problem's PIRLS solvers
(each with a blocked factor of its own) and the last modes, from which the
next evaluation starts.  Like the linear model's
:class:`~mixedmodels.engine.problem.LinearProblem`, nothing that evaluates
the objective changes a fitted model; each caller evaluates on a workspace
it owns, or on the problem's per-thread default one.

The objectives (lme4's, see the reference README):

* Laplace (nAGQ = 1): log|L|² + ‖û‖² + aic(μ̂) at the modes û for (θ, β);
* adaptive quadrature (nAGQ > 1, one scalar term):
  :func:`~mixedmodels.engine.quadrature.agq_deviance`;
* nAGQ = 0: the Laplace formula at θ with β estimated inside PIRLS.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..families import Family
from .glm_kernels import compiled as compiled_passes
from .laplace_gradient import LaplaceGradient
from .pirls import Pirls, PirlsSolution
from .quadrature import agq_deviance
from .terms import RandomEffectsTerm


@dataclass(frozen=True, eq=False)
class GlmmSolution:
    """What a fit reports at (θ, β): the modes, the means, the objective, R_X's covariance."""

    theta: np.ndarray
    beta: np.ndarray
    objective: float
    # Spherical modes u (terms concatenated) and, per term, b = λu as (levels, q).
    u: np.ndarray
    modes: tuple[np.ndarray, ...]
    eta: np.ndarray
    mu: np.ndarray
    # Σ deviance residuals at μ̂ (lme4's deviance()), ‖û‖², log|L|².
    deviance: float
    sum_u2: float
    logdet: float
    # σ (1, or lme4's sqrt((Σ pearson² + ‖u‖²)/n) for families with a dispersion).
    sigma: float
    # σ²(R_XᵀR_X)⁻¹ at the final working weights (lme4's vcov(use.hessian = FALSE)).
    vcov_rx: np.ndarray


class PirlsWorkspace:
    """One caller's evaluation state: the problem's PIRLS solvers and their last modes."""

    def __init__(self, problem: GeneralizedProblem) -> None:
        self.problem = problem
        self._modes: Pirls | None = None
        self._joint: Pirls | None = None
        self._modes_gradient: LaplaceGradient | None = None
        self._joint_gradient: LaplaceGradient | None = None
        #: Modes of the last β-fixed solve, the next one's start.
        self.last_u: np.ndarray | None = None
        #: The last solution with β inside PIRLS, the next one's start.
        self.last_joint: PirlsSolution | None = None

    def solver(self, fixed_inside: bool) -> Pirls:
        """The PIRLS solver with β held fixed, or estimated inside (built on first use)."""
        solver = self._joint if fixed_inside else self._modes
        if solver is None:
            problem = self.problem
            solver = Pirls(
                problem.y,
                problem.prior_weights,
                problem.offset,
                problem.x,
                problem.terms,
                problem.family,
                fixed_inside=fixed_inside,
            )
            if fixed_inside:
                self._joint = solver
            else:
                self._modes = solver
        return solver

    def gradient(self, fixed_inside: bool) -> LaplaceGradient:
        """The Laplace gradient on that solver."""
        if fixed_inside:
            if self._joint_gradient is None:
                self._joint_gradient = LaplaceGradient(self.solver(True))
            return self._joint_gradient
        if self._modes_gradient is None:
            self._modes_gradient = LaplaceGradient(self.solver(False))
        return self._modes_gradient


class GeneralizedProblem:
    """lme4's GLMM objectives as functions of (θ, β), on the model's rows.

    Parameters
    ----------
    y, prior_weights, offset : ndarray, shape (n,)
        Response, prior weights (trials for binomial proportions) and offset.
    x : ndarray, shape (n, p)
        Fixed-effects model matrix.
    terms : sequence of RandomEffectsTerm
        The random-effects terms with their rows, in the engine's order.
    family : Family
        Response distribution and link.
    """

    def __init__(
        self,
        y: np.ndarray,
        prior_weights: np.ndarray,
        offset: np.ndarray,
        x: np.ndarray,
        terms: Sequence[RandomEffectsTerm],
        family: Family,
    ) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.prior_weights = np.ascontiguousarray(prior_weights, dtype=np.float64)
        self.offset = np.ascontiguousarray(offset, dtype=np.float64)
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.terms = list(terms)
        self.family = family
        self.saturated = family.saturated_aic(self.y, self.prior_weights)
        bounds = np.cumsum([0] + [t.n_theta for t in self.terms])
        self.theta_slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.lower_bounds = np.concatenate([t.theta_lower_bounds() for t in self.terms])
        self._local = threading.local()

    def with_family(self, family: Family) -> GeneralizedProblem:
        """The same rows with another family (e.g. another negative binomial θ)."""
        return GeneralizedProblem(
            self.y, self.prior_weights, self.offset, self.x, self.terms, family
        )

    # -- θ and β -------------------------------------------------------------------------

    @property
    def n_theta(self) -> int:
        return len(self.lower_bounds)

    @property
    def n_fixed(self) -> int:
        return self.x.shape[1]

    @property
    def n_obs(self) -> int:
        return len(self.y)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the relative covariance factor λ at θ."""
        theta = np.asarray(theta, dtype=np.float64)
        return [
            t.lambda_matrix(theta[s]) for t, s in zip(self.terms, self.theta_slices, strict=True)
        ]

    def theta_names(self) -> list[str]:
        return [name for t in self.terms for name in t.theta_names()]

    @property
    def has_gradient(self) -> bool:
        """Whether the analytic gradient is available (it is compiled with numba)."""
        return compiled_passes() is not None

    # -- workspaces --------------------------------------------------------------------

    def workspace(self) -> PirlsWorkspace:
        """Fresh PIRLS solvers for this problem, owned by the caller."""
        return PirlsWorkspace(self)

    def _default(self, workspace: PirlsWorkspace | None) -> PirlsWorkspace:
        if workspace is not None:
            return workspace
        current = getattr(self._local, "workspace", None)
        if current is None:
            current = self._local.workspace = self.workspace()
        return current

    # -- evaluations -------------------------------------------------------------------

    def laplace(self, solution: PirlsSolution) -> float:
        """The Laplace objective of a PIRLS solution."""
        return solution.laplace(self.family, self.y, self.prior_weights, self.saturated)

    def modes(
        self, theta: np.ndarray, beta: np.ndarray, workspace: PirlsWorkspace | None = None
    ) -> PirlsSolution:
        """PIRLS at (θ, β), from the workspace's last modes (raises PirlsError)."""
        ws = self._default(workspace)
        solution = ws.solver(False).solve(self.lambdas(theta), beta, ws.last_u)
        ws.last_u = solution.u
        return solution

    def objective(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        nagq: int = 1,
        workspace: PirlsWorkspace | None = None,
    ) -> float:
        """lme4's objective at (θ, β): Laplace (nagq = 1) or adaptive quadrature (> 1)."""
        return self._evaluate(theta, beta, nagq, self._default(workspace))[0]

    def _evaluate(
        self, theta: np.ndarray, beta: np.ndarray, nagq: int, ws: PirlsWorkspace
    ) -> tuple[float, PirlsSolution]:
        solution = self.modes(theta, beta, ws)
        if nagq <= 1:
            return self.laplace(solution), solution
        solver = ws.solver(False)
        # The modes' conditional standard deviations: 1/L of each level.
        level_sd = 1.0 / solver.factor.L00[:, 0, 0]
        value = agq_deviance(solver, self.lambdas(theta)[0], beta, solution, level_sd, nagq)
        return value, solution

    def value_and_gradient(
        self, theta: np.ndarray, beta: np.ndarray, workspace: PirlsWorkspace | None = None
    ) -> tuple[float, np.ndarray]:
        """The Laplace objective and its gradient in (θ, β)."""
        ws = self._default(workspace)
        solution = self.modes(theta, beta, ws)
        value = self.laplace(solution)
        return value, ws.gradient(False)(self.lambdas(theta), solution)

    def initial(self, workspace: PirlsWorkspace | None = None) -> tuple[np.ndarray, PirlsSolution]:
        """lme4's first PIRLS: θ at λ = I, β and u from the family's starting means."""
        ws = self._default(workspace)
        family = self.family
        start_eta = family.link.link(family.initial_mean(self.y, self.prior_weights))
        theta = np.concatenate([t.theta_start() for t in self.terms])
        solution = ws.solver(True).solve(self.lambdas(theta), np.zeros(self.n_fixed), eta=start_eta)
        ws.last_joint = solution
        return theta, solution

    def joint(
        self, theta: np.ndarray, workspace: PirlsWorkspace | None = None
    ) -> tuple[float, PirlsSolution]:
        """The nAGQ = 0 objective at θ (β estimated inside PIRLS) and its solution."""
        ws = self._default(workspace)
        if ws.last_joint is None:
            self.initial(ws)
        previous = ws.last_joint
        solution = ws.solver(True).solve(self.lambdas(theta), previous.beta, previous.u)
        ws.last_joint = solution
        return self.laplace(solution), solution

    def joint_value_and_gradient(
        self, theta: np.ndarray, workspace: PirlsWorkspace | None = None
    ) -> tuple[float, np.ndarray]:
        """The nAGQ = 0 objective and its gradient in θ."""
        ws = self._default(workspace)
        value, solution = self.joint(theta, ws)
        gradient = ws.gradient(True)(self.lambdas(theta), solution)
        return value, gradient

    def fixed_effect_scale(
        self, theta: np.ndarray, solution: PirlsSolution, workspace: PirlsWorkspace | None = None
    ) -> np.ndarray:
        """R_X-based standard errors of β at a solution (units for the optimizer's β)."""
        if not self.n_fixed:
            return np.ones(0)
        joint = self._default(workspace).solver(True)
        joint.refactor_at(self.lambdas(theta), solution)
        rinv = joint.factor.inverse_rx()
        se = np.sqrt(np.einsum("ij,ij->j", rinv, rinv))
        return np.where(np.isfinite(se) & (se > 0), se, 1.0)

    # -- the solution a fit reports ----------------------------------------------------

    def solve(
        self,
        theta: np.ndarray,
        beta: np.ndarray | None,
        nagq: int,
        workspace: PirlsWorkspace | None = None,
    ) -> GlmmSolution:
        """Everything a fit reports at θ and β (β estimated inside PIRLS when None)."""
        ws = self._default(workspace)
        theta = np.array(theta, dtype=np.float64)
        if beta is None:
            value, solution = self.joint(theta, ws)
        else:
            value, solution = self._evaluate(theta, np.asarray(beta, dtype=np.float64), nagq, ws)
        lambdas = self.lambdas(theta)
        modes_solver = ws.solver(False)
        modes = tuple(
            solution.u[modes_solver.u_offsets[k] : modes_solver.u_offsets[k + 1]].reshape(
                term.n_levels, term.q
            )
            @ lam.T
            for k, (term, lam) in enumerate(zip(self.terms, lambdas, strict=True))
        )
        family, y, mu, w = self.family, self.y, solution.mu, self.prior_weights
        if family.has_dispersion:
            pearson2 = float(np.sum(w * (y - mu) ** 2 / family.variance(mu)))
            sigma = math.sqrt((pearson2 + solution.sum_u2) / len(y))
        else:
            sigma = 1.0
        joint = ws.solver(True)
        joint.refactor_at(lambdas, solution)
        rinv = joint.factor.inverse_rx()
        return GlmmSolution(
            theta=theta,
            beta=solution.beta.copy(),
            objective=value,
            u=solution.u,
            modes=modes,
            eta=solution.eta,
            mu=solution.mu,
            deviance=solution.deviance,
            sum_u2=solution.sum_u2,
            logdet=solution.logdet,
            sigma=sigma,
            vcov_rx=sigma**2 * (rinv.T @ rinv),
        )

    # -- pickling: workspaces are rebuilt where they are needed ------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
