"""Stage 3 of a GLMM as a function: (θ, β) → lme4's objective, on workspaces.

:class:`GeneralizedProblem` holds what does not change while θ and β do —
the rows (response, prior weights, offset, X, the terms' level codes and
model matrices: a *row source* such as
:class:`~mixedmodels.engine.working_rows.RowData`, or a Dask front end's
partitions), the family and the terms' λ templates — and evaluates lme4's
objectives on a :class:`PirlsWorkspace`: the problem's PIRLS solvers (each
with a blocked factor of its own, on working rows from the source) and the
last modes, from which the next evaluation starts.  Like the linear model's
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
from typing import Protocol

import numpy as np

from ..families import Family
from .glm_kernels import compiled as compiled_passes
from .laplace_gradient import LaplaceGradient
from .pirls import Pirls, PirlsSolution
from .quadrature import agq_deviance
from .terms import TermStructure
from .working_rows import RowData, WorkingRows


class RowSource(Protocol):
    """Where a GLMM's rows are, as the problem needs them.

    :class:`~mixedmodels.engine.working_rows.RowData` holds them in memory;
    the Dask front end's source keeps them in a cluster's partitions.
    """

    @property
    def n_obs(self) -> int:
        """Rows used."""

    @property
    def n_fixed(self) -> int:
        """Columns of X."""

    def working(self, fixed_inside: bool, family: Family) -> WorkingRows:
        """Working rows for a PIRLS solver (X among the blocks when ``fixed_inside``)."""

    def saturated_aic(self, family: Family) -> float | None:
        """The constant c with aic = deviance + c on these rows, if there is one."""


@dataclass(frozen=True, eq=False)
class GlmmSolution:
    """What a fit reports at (θ, β): the modes, the means, the objective, R_X's covariance."""

    theta: np.ndarray
    beta: np.ndarray
    objective: float
    # Spherical modes u (terms concatenated) and, per term, b = λu as (levels, q).
    u: np.ndarray
    modes: tuple[np.ndarray, ...]
    # η and μ of the rows (None when the rows are not in memory: a Dask fit).
    eta: np.ndarray | None
    mu: np.ndarray | None
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
        problem = self.problem
        if solver is None:
            solver = Pirls(
                problem.rows.working(fixed_inside, problem.family),
                [(t.n_levels, t.q) for t in problem.terms],
            )
            if fixed_inside:
                self._joint = solver
            else:
                self._modes = solver
        elif solver.family is not problem.family:
            solver.family = problem.family
        return solver

    def gradient(self, fixed_inside: bool) -> LaplaceGradient:
        """The Laplace gradient on that solver."""
        terms = self.problem.terms
        if fixed_inside:
            if self._joint_gradient is None:
                self._joint_gradient = LaplaceGradient(self.solver(True), terms)
            return self._joint_gradient
        if self._modes_gradient is None:
            self._modes_gradient = LaplaceGradient(self.solver(False), terms)
        return self._modes_gradient


class GeneralizedProblem:
    """lme4's GLMM objectives as functions of (θ, β), on the model's rows.

    Parameters
    ----------
    rows : RowSource
        The rows (response, prior weights, offset, X, the terms' codes and Z):
        :class:`~mixedmodels.engine.working_rows.RowData` in memory.
    terms : sequence of TermStructure
        The random-effects terms, in the engine's order (λ templates, levels).
    family : Family
        Response distribution and link.
    """

    def __init__(self, rows: RowSource, terms: Sequence[TermStructure], family: Family) -> None:
        self.rows = rows
        self.terms = list(terms)
        self.family = family
        self.saturated = rows.saturated_aic(family)
        bounds = list(itertools.accumulate([t.n_theta for t in self.terms], initial=0))
        self.theta_slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.lower_bounds = np.concatenate([t.theta_lower_bounds() for t in self.terms])
        self._local = threading.local()
        # (θ's bytes, its λs) of the last call to lambdas(): an evaluation, its gradient
        # and the solvers ask again at the same θ.
        self._last_lambdas: tuple[bytes, tuple[np.ndarray, ...]] | None = None

    @classmethod
    def in_memory(
        cls,
        y: np.ndarray,
        prior_weights: np.ndarray,
        offset: np.ndarray,
        x: np.ndarray,
        terms: Sequence,
        family: Family,
    ) -> GeneralizedProblem:
        """The problem on rows in memory (terms with their codes and Z)."""
        return cls(RowData(y, prior_weights, offset, x, terms), terms, family)

    def with_response(self, y: np.ndarray) -> GeneralizedProblem:
        """The same model for another response on the same rows (rows in memory only)."""
        with_response = getattr(self.rows, "with_response", None)
        if with_response is None:
            raise TypeError("a new response needs the rows in memory")
        return GeneralizedProblem(with_response(y), self.terms, self.family)

    def with_family(self, family: Family) -> GeneralizedProblem:
        """The same rows with another family (e.g. another negative binomial θ)."""
        return GeneralizedProblem(self.rows, self.terms, family)

    # -- θ and β -------------------------------------------------------------------------

    @property
    def n_theta(self) -> int:
        return len(self.lower_bounds)

    @property
    def n_fixed(self) -> int:
        return self.rows.n_fixed

    @property
    def n_obs(self) -> int:
        return self.rows.n_obs

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term, the relative covariance factor λ at θ (read-only arrays: the same ones
        are handed out again at the same θ)."""
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        last = self._last_lambdas
        if last is not None and last[0] == key:
            return list(last[1])
        found = tuple(
            t.lambda_matrix(theta[s]) for t, s in zip(self.terms, self.theta_slices, strict=True)
        )
        for lam in found:
            lam.flags.writeable = False
        self._last_lambdas = (key, found)
        return list(found)

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

    def laplace(self, solution: PirlsSolution, rows: WorkingRows | None = None) -> float:
        """lme4's Laplace objective ``ldL2 + ussq + aic`` of a PIRLS solution (−2 log L,
        constants included).

        aic is the deviance plus the saturated constant when there is one (no
        log-gamma terms at each evaluation), else the family's aic at the
        modes, summed over ``rows`` (the working rows that found them).
        """
        if self.saturated is not None:
            aic = solution.deviance + self.saturated
        elif rows is None:
            raise ValueError("the aic of this family needs the working rows of the solution")
        else:
            aic = rows.aic(solution.point, solution.deviance)
        return solution.logdet + solution.sum_u2 + aic

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
        return self.evaluate(theta, beta, nagq, workspace)[0]

    def evaluate(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        nagq: int = 1,
        workspace: PirlsWorkspace | None = None,
    ) -> tuple[float, PirlsSolution]:
        """lme4's objective at (θ, β) and the PIRLS solution it was computed at."""
        ws = self._default(workspace)
        solution = self.modes(theta, beta, ws)
        if nagq <= 1:
            return self.laplace(solution, ws.solver(False).rows), solution
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
        value = self.laplace(solution, ws.solver(False).rows)
        return value, ws.gradient(False)(self.lambdas(theta), solution)

    def initial(
        self, workspace: PirlsWorkspace | None = None, tolerance: float | None = None
    ) -> tuple[np.ndarray, PirlsSolution]:
        """lme4's first PIRLS: θ at λ = I, β and u from the family's starting means
        (to ``tolerance`` when given, e.g. for a start only)."""
        ws = self._default(workspace)
        theta = np.concatenate([t.theta_start() for t in self.terms])
        solution = ws.solver(True).solve(
            self.lambdas(theta),
            np.zeros(self.n_fixed),
            from_start_means=True,
            tolerance=tolerance,
        )
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
        return self.laplace(solution, ws.solver(True).rows), solution

    def joint_value_and_gradient(
        self, theta: np.ndarray, workspace: PirlsWorkspace | None = None
    ) -> tuple[float, np.ndarray]:
        """The nAGQ = 0 objective and its gradient in θ."""
        ws = self._default(workspace)
        value, solution = self.joint(theta, ws)
        gradient = ws.gradient(True)(self.lambdas(theta), solution)
        return value, gradient

    def factor_at_modes(self, theta: np.ndarray, beta: np.ndarray):
        """The factor of ΛᵀZᵀWZΛ + I at the modes for (θ, β), W the working weights there
        (on a workspace of its own: what lme4's ``condVar`` reads)."""
        ws = self.workspace()
        self.modes(np.asarray(theta, dtype=np.float64), np.asarray(beta, dtype=np.float64), ws)
        return ws.solver(False).factor

    def fixed_effect_covariance(
        self, theta: np.ndarray, solution: PirlsSolution, workspace: PirlsWorkspace | None = None
    ) -> np.ndarray:
        """(R_X R_Xᵀ)⁻¹ at a solution's working weights (β's covariance with σ = 1)."""
        if not self.n_fixed:
            return np.zeros((0, 0))
        joint = self._default(workspace).solver(True)
        joint.refactor_at(self.lambdas(theta), solution)
        rinv = joint.factor.inverse_rx()
        return rinv.T @ rinv

    def fixed_effect_scale(
        self, theta: np.ndarray, solution: PirlsSolution, workspace: PirlsWorkspace | None = None
    ) -> np.ndarray:
        """R_X-based standard errors of β at a solution (units for the optimizer's β)."""
        covariance = self.fixed_effect_covariance(theta, solution, workspace)
        se = np.sqrt(np.diagonal(covariance))
        return np.where(np.isfinite(se) & (se > 0), se, 1.0)

    # -- the solution a fit reports ----------------------------------------------------

    def solve(
        self,
        theta: np.ndarray,
        beta: np.ndarray | None,
        nagq: int,
        workspace: PirlsWorkspace | None = None,
        known: tuple[float, PirlsSolution] | None = None,
    ) -> GlmmSolution:
        """Everything a fit reports at θ and β (β estimated inside PIRLS when None).

        ``known``, the objective and PIRLS's solution at (θ, β) when the caller has
        them (a fit's at its estimates, on this workspace), saves solving again.
        """
        ws = self._default(workspace)
        theta = np.array(theta, dtype=np.float64)
        if known is not None and beta is not None:
            value, solution = known
        elif beta is None:
            value, solution = self.joint(theta, ws)
        else:
            value, solution = self.evaluate(theta, np.asarray(beta, dtype=np.float64), nagq, ws)
        lambdas = self.lambdas(theta)
        # R_X at the solution's weights; the joint rows then hold its η and μ (the modes'
        # rows may have moved on: a Hessian's sides).
        joint = ws.solver(True)
        joint.refactor_at(lambdas, solution)
        rows = joint.rows
        modes_solver = ws.solver(False)
        modes = tuple(
            solution.u[modes_solver.u_offsets[k] : modes_solver.u_offsets[k + 1]].reshape(
                term.n_levels, term.q
            )
            @ lam.T
            for k, (term, lam) in enumerate(zip(self.terms, lambdas, strict=True))
        )
        if self.family.has_dispersion:
            pearson2 = rows.pearson_chi2(solution.point)
            sigma = math.sqrt((pearson2 + solution.sum_u2) / self.n_obs)
        else:
            sigma = 1.0
        means = rows.means(solution.point)
        eta, mu = (None, None) if means is None else means
        rinv = joint.factor.inverse_rx()
        return GlmmSolution(
            theta=theta,
            beta=solution.beta.copy(),
            objective=value,
            u=solution.u,
            modes=modes,
            eta=eta,
            mu=mu,
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
