"""Penalized iteratively reweighted least squares: the conditional modes of a GLMM.

For relative covariance factors Λ(θ) and fixed effects β, the conditional
modes û of the spherical random effects minimise the penalized deviance

    pdev(u) = Σᵢ dᵢ(yᵢ, μᵢ) + ‖u‖²,   μ = g⁻¹(η),  η = o + Xβ + ZΛu,

where dᵢ are the family's deviance residuals.  Each PIRLS iteration is one
penalized weighted least-squares problem with the working weights
wᵢ = aᵢ (dμ/dη)² / V(μᵢ) (aᵢ the prior weights) and the working response
(η − o − Xβ) + (y − μ)/(dμ/dη): its cross-products are refilled in place
(:class:`~mixedmodels.engine.weighted.WeightedCrossProducts`) and factored by
the linear model's :class:`~mixedmodels.engine.factor.BlockedCholesky`.  The
rows themselves are behind a
:class:`~mixedmodels.engine.working_rows.WorkingRows` object: one evaluation
at a new iterate gives its deviance, the change of η and the blocks refilled
there, in one pass over the rows — in memory, or one map-reduce over a Dask
DataFrame's partitions.  A
step that increases pdev is halved, up to 20 times, as lme4's
``pwrssUpdate`` does.

With ``fixed_inside=True`` (lme4's nAGQ = 0) β joins u in the least-squares
problem, so the iterations maximise over both.

Iterations stop when the largest change in u and in η falls below
``tolerance``; the factor is then refreshed at the final modes, so that the
Laplace approximation

    −2 log L ≈ log|ΛᵀZᵀWZΛ + I| + ‖û‖² + Σᵢ −2 log p(yᵢ | μ̂ᵢ)

(lme4's definition, see
:meth:`~mixedmodels.engine.glmm_problem.GeneralizedProblem.laplace`) is a smooth function
of θ and β that finite differences can be taken of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from ..errors import PirlsError
from ..families import Family
from .factor import BlockedCholesky
from .working_rows import Point, WorkingRows

# lme4's limit on step halvings per iteration (pwrssUpdate's maxstephalfit).
MAX_STEP_HALVINGS = 20
# With Newton's steps an iterate whose own step (u and a bound on η's change) is below
# this fraction of the tolerance is taken as the solution without another pass.
_NEXT_STEP_FRACTION = 5e-3


@dataclass
class PirlsSolution:
    """The conditional modes at one (θ, β) and what the Laplace objective needs.

    Attributes
    ----------
    u : ndarray
        Spherical conditional modes, all terms concatenated (term by term,
        level-major within a term).
    beta : ndarray
        Fixed effects: the given ones, or those estimated with ``fixed_inside``.
    point : Point
        The linear predictor at the modes (β and b = Λu), for the working rows.
    deviance : float
        Σ of the deviance residuals at the modes.
    logdet : float
        log |ΛᵀZᵀWZΛ + I| with the working weights at the modes (lme4's ``ldL2``).
    iterations : int
        PIRLS iterations used.
    """

    u: np.ndarray
    beta: np.ndarray
    point: Point
    deviance: float
    logdet: float
    iterations: int

    @property
    def sum_u2(self) -> float:
        """‖u‖² (lme4's ``ussq``)."""
        return float(self.u @ self.u)


class Pirls:
    """PIRLS on one set of working rows.

    Parameters
    ----------
    rows : WorkingRows
        The rows (response, prior weights, offset, X, the terms, the family)
        and the weighted blocks they refill; X is among the blocks when
        ``rows.fixed_inside`` (β estimated with u in each least-squares step,
        lme4's nAGQ = 0) rather than held at the value given to :meth:`solve`.
    shapes : sequence of (int, int)
        Per term, (levels, q), in the engine's order.
    tolerance : float, optional
        Convergence tolerance on the largest change of u and η in an
        iteration.  By default 1e-6 when the iterations are Newton's (canonical
        links, and with numba any link, whose observed information then replaces
        Fisher's): the modes are then exact to about the square of the last
        change.  Otherwise (Fisher scoring, which converges linearly) 1e-10.
    max_iterations : int
        lme4's ``maxit``.
    """

    def __init__(
        self,
        rows: WorkingRows,
        shapes: Sequence[tuple[int, int]],
        *,
        tolerance: float | None = None,
        max_iterations: int = 100,
    ) -> None:
        self.rows = rows
        self.fixed_inside = rows.fixed_inside
        self.n_fixed = rows.n_fixed
        self._tolerance = tolerance
        self.max_iterations = max_iterations
        self.factor: BlockedCholesky = rows.blocks.new_factor()
        self._shapes = [(int(m), int(q)) for m, q in shapes]
        self.u_offsets = np.array(list(accumulate((m * q for m, q in self._shapes), initial=0)))
        self._scalar_terms = all(q == 1 for _, q in self._shapes)
        self._level_key: tuple[float, ...] | None = None
        self._level_values = np.zeros(0)

    @property
    def family(self) -> Family:
        """The response distribution and link."""
        return self.rows.family

    @family.setter
    def family(self, family: Family) -> None:
        self.rows.family = family

    @property
    def newton(self) -> bool:
        """Newton steps on the observed information (non-canonical links, whose working
        weights, Fisher scoring, converge only linearly)."""
        return self.rows.has_newton and not self.family.is_canonical

    @property
    def tolerance(self) -> float:
        """The convergence tolerance (see the class docstring)."""
        if self._tolerance is not None:
            return self._tolerance
        return 1e-6 if self.family.is_canonical or self.newton else 1e-10

    @property
    def n_u(self) -> int:
        return int(self.u_offsets[-1])

    # -- the linear predictor ----------------------------------------------------------

    def modes(self, lambdas: Sequence[np.ndarray], u: np.ndarray) -> list[np.ndarray]:
        """b = Λu per term, as (levels, q) arrays."""
        return [
            u[self.u_offsets[k] : self.u_offsets[k + 1]].reshape(shape) @ lam.T
            for k, (shape, lam) in enumerate(zip(self._shapes, lambdas, strict=True))
        ]

    def point(self, lambdas: Sequence[np.ndarray], beta: np.ndarray, u: np.ndarray) -> Point:
        """The linear predictor at β and spherical modes u."""
        if self._scalar_terms:
            # b = λu level by level: one product with each level's λ.
            return Point(np.asarray(beta, dtype=np.float64), u * self._level_lambdas(lambdas))
        modes = self.modes(lambdas, u)
        b = np.concatenate([m.reshape(-1) for m in modes]) if modes else np.zeros(0)
        return Point(np.asarray(beta, dtype=np.float64), b)

    def _level_lambdas(self, lambdas: Sequence[np.ndarray]) -> np.ndarray:
        """Scalar terms: each level's λ, in u's order (kept while λ stays the same)."""
        key = tuple(float(lam[0, 0]) for lam in lambdas)
        if self._level_key != key:
            self._level_key = key
            self._level_values = np.repeat(np.array(key), [m for m, _ in self._shapes])
        return self._level_values

    # -- factoring -----------------------------------------------------------------------

    def _update(self, lambdas: list[np.ndarray]) -> bool:
        """Refactor with the blocks as they are filled now."""
        self.rows.blocks.reload_factor(self.factor)
        return self.factor.update(lambdas)

    def _factor_fisher(self, lambdas: list[np.ndarray], at: Point) -> None:
        """Refill at ``at`` with the working weights and response; refactor."""
        self.rows.evaluate(at, fill="fisher")
        if not self._update(lambdas):
            raise PirlsError("the penalized least-squares factor is not positive definite")

    def refactor_at(self, lambdas: Sequence[np.ndarray], solution: PirlsSolution) -> None:
        """Refill and refactor at the working weights of ``solution``'s modes.

        L and R_X are then the factor's at the solution (what the standard
        errors read).
        """
        self._factor_fisher(list(lambdas), solution.point)

    def refactor_observed(self, lambdas: Sequence[np.ndarray], at: Point) -> None:
        """Refactor ΛᵀZᵀDZΛ + I with D the observed information at ``at``.

        Raises PirlsError when that matrix is not positive definite.
        """
        self.rows.evaluate(at, fill="observed")
        if not self._update(list(lambdas)):
            raise PirlsError("ΛᵀZᵀDZΛ + I with the observed information is not positive definite")

    def at_modes(
        self, lambdas: Sequence[np.ndarray], beta: np.ndarray, u: np.ndarray
    ) -> PirlsSolution:
        """The quantities of a solution at the modes ``u`` as given, without iterating.

        For a point whose modes are already known well enough — a finite
        difference's side, with the modes predicted to second order in its step
        (:meth:`~mixedmodels.engine.laplace_gradient.LaplaceGradient.mode_slopes`):
        one pass over the rows and one factorisation (Fisher's weights) instead of
        a solve's two of each.  β is held fixed.

        Raises
        ------
        PirlsError
            When the mean or the factor is not valid there.
        """
        lambdas = list(lambdas)
        beta = np.asarray(beta, dtype=np.float64)
        u = np.asarray(u, dtype=np.float64)
        point = self.point(lambdas, beta, u)
        found = self.rows.evaluate(point, fill="fisher")
        if not math.isfinite(found.deviance):
            raise PirlsError("the linear predictor gives an invalid mean")
        if not self._update(lambdas):
            raise PirlsError("the penalized least-squares factor is not positive definite")
        return PirlsSolution(
            u=u,
            beta=beta,
            point=point,
            deviance=found.deviance,
            logdet=self.factor.logdet_theta(),
            iterations=0,
        )

    # -- one solve ---------------------------------------------------------------------

    def _step(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The least-squares solution (β, u) of the factored problem."""
        if self.fixed_inside:
            new_beta = self.factor.fixed_effects()
            return new_beta, np.concatenate(self.factor.spherical_modes(new_beta))
        return beta, np.concatenate(self.factor.spherical_modes(np.empty(0)))

    def solve(
        self,
        lambdas: Sequence[np.ndarray],
        beta: np.ndarray,
        u: np.ndarray | None = None,
        *,
        from_start_means: bool = False,
        tolerance: float | None = None,
    ) -> PirlsSolution:
        """The conditional modes at Λ and β (β the start when ``fixed_inside``).

        ``u`` is the starting value of the modes (default zero).  With
        ``from_start_means`` the first iterate is instead the family's starting
        means (as lme4 starts): the first iteration's weights are computed
        there and its step is taken whole.  ``tolerance`` replaces the
        solver's for this solve (a start that need not be exact).

        Raises
        ------
        PirlsError
            When the factor fails, step halving cannot reduce the penalized
            deviance, or the iterations do not converge.
        """
        lambdas = list(lambdas)
        rows = self.rows
        beta = np.asarray(beta, dtype=np.float64).copy()
        u = np.zeros(self.n_u) if u is None else np.asarray(u, dtype=np.float64).copy()
        fill = "newton" if self.newton else "fisher"
        if from_start_means:
            current = Point.start()
            if not math.isfinite(rows.evaluate(current, fill=fill).deviance):
                raise PirlsError("the starting means are outside the family's range")
            pdev = math.inf
        else:
            current = self.point(lambdas, beta, u)
            start = rows.evaluate(current, fill=fill)
            if not math.isfinite(start.deviance):
                raise PirlsError("the starting linear predictor gives an invalid mean")
            pdev = start.deviance + float(u @ u)
        p = self.n_fixed
        limit = self.tolerance if tolerance is None else tolerance
        # Newton's steps (not Fisher scoring's, which converge linearly) may stop at an
        # iterate whose own step is below a fraction of the tolerance (see below).
        bound = getattr(rows, "eta_change_bound", None)
        next_limit = _NEXT_STEP_FRACTION * limit
        quadratic = bound is not None and (self.family.is_canonical or self.newton)
        deviance = math.nan if from_start_means else start.deviance
        for iteration in range(1, self.max_iterations + 1):
            # The blocks hold the current iterate's (filled when it was evaluated).
            if not self._update(lambdas):
                if fill == "fisher":
                    raise PirlsError("the penalized least-squares factor is not positive definite")
                self._factor_fisher(lambdas, current)  # the Newton system is not: Fisher's
            new_beta, new_u = self._step(beta)
            candidate = self.point(lambdas, new_beta, new_u)
            step_u = float(np.max(np.abs(new_u - u))) if len(u) else 0.0
            # The step from the current iterate is (to second order) its distance from the
            # modes: below a small fraction of the tolerance, the current iterate is the
            # solution, and the factor is already there (no pass at the candidate to find
            # that its step was small).
            if (
                quadratic
                and step_u < next_limit
                and not current.is_start
                and bound(current, candidate) < next_limit
            ):
                return self._converged(lambdas, current, u, beta, deviance, iteration, fill)
            found = rows.evaluate(candidate, previous=current, fill=fill)
            new_pdev = found.deviance + float(new_u @ new_u)
            # Halve steps that increase pdev beyond rounding (near the optimum its
            # changes are of the order of the rounding of its terms).
            slack = 1e-12 * abs(pdev) if math.isfinite(pdev) else 0.0
            halvings = 0
            while not new_pdev <= pdev + slack and halvings < MAX_STEP_HALVINGS:
                halvings += 1
                new_u = 0.5 * (u + new_u)
                if self.fixed_inside and p:
                    new_beta = 0.5 * (beta + new_beta)
                candidate = self.point(lambdas, new_beta, new_u)
                found = rows.evaluate(candidate, previous=current, fill=fill)
                new_pdev = found.deviance + float(new_u @ new_u)
            if math.isnan(new_pdev) or new_pdev == math.inf:
                raise PirlsError("PIRLS step halving ended at an invalid mean or weight")
            if new_pdev > pdev + slack:
                raise PirlsError(
                    f"PIRLS step halvings ({MAX_STEP_HALVINGS}) failed to reduce the penalized "
                    "deviance"
                )
            if halvings and len(u):
                step_u = float(np.max(np.abs(new_u - u)))
            current, u, beta, pdev = candidate, new_u, new_beta, new_pdev
            deviance = found.deviance
            if max(step_u, found.eta_change) < limit:
                # The factor at the final modes, with Fisher's weights, for the
                # Laplace log-determinant (the blocks are already there for them).
                if fill == "fisher" and not self._update(lambdas):
                    raise PirlsError("the penalized least-squares factor is not positive definite")
                return self._converged(lambdas, current, u, beta, deviance, iteration, fill)
        raise PirlsError(f"PIRLS did not converge in {self.max_iterations} iterations")

    def _converged(self, lambdas, current, u, beta, deviance, iteration, fill) -> PirlsSolution:
        """The solution at ``current``, whose blocks (``fill``) the factor has been updated
        with: refactored with Fisher's weights after Newton's."""
        if fill != "fisher":
            self._factor_fisher(lambdas, current)
        return PirlsSolution(
            u=u,
            beta=beta,
            point=current,
            deviance=deviance,
            logdet=self.factor.logdet_theta(),
            iterations=iteration,
        )
