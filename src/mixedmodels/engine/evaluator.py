"""The profiled criterion and its gradient in φ = θ/scale, as the quasi-Newton fit sees them.

:class:`Evaluator` evaluates on one workspace (:mod:`~mixedmodels.engine.gradient`,
:mod:`~mixedmodels.engine.information`, the compiled small path of
:mod:`~mixedmodels.engine.small_trailing`) and remembers where: the point of its
last value, the β̂ and û its last gradient read.  On the compiled small path it
also runs the whole quasi-Newton method of :mod:`~mixedmodels.engine.gradient_fit`
in one compiled call (:meth:`Evaluator.search`,
:mod:`~mixedmodels.engine.small_search`), and leaves the same record behind.
"""

from __future__ import annotations

import math

import numpy as np

from .factor import BlockedCholesky
from .gradient import ProfiledGradient, Residuals
from .information import average_information
from .problem import LinearProblem
from .quasi_newton import MAX_ITERATIONS, TOLERANCE, QuasiNewtonResult
from .small_search import INFORMATION_UNUSABLE, STATUS, compiled_search, search_layout
from .small_trailing import SmallTrailing

# The Hessian argument of the compiled search's information start (not read).
_NO_MATRIX = np.zeros((0, 0))


class Evaluator:
    """The criterion and its gradient in φ on one workspace (by default the problem's
    own for this thread, where the solution at the optimum is then read)."""

    def __init__(
        self,
        problem: LinearProblem,
        scale: np.ndarray,
        workspace: BlockedCholesky | None = None,
        *,
        compiled_search: bool = True,
    ) -> None:
        self.problem = problem
        # Whether :meth:`search` runs the quasi-Newton search in one compiled call where
        # the workspace is on the compiled small path (False: always the Python loop;
        # the tests compare the two).
        self.compiled_search = compiled_search
        self.scale = scale
        self.workspace = problem.default_workspace() if workspace is None else workspace
        # Each θ's term, row and column in λ: the problem's shape has it (a copy:
        # numba's kernels take writable arrays).
        self.theta_index = problem.layout.theta_index.copy()
        # The general gradient, made at its first use (the compiled small path,
        # decided at the first gradient, needs none): None until then.
        self._gradient_of: ProfiledGradient | None = None
        self.reml = problem.reml
        # The workspace's compiled small path (None until the first gradient decides,
        # False where there is none).
        self._small: SmallTrailing | bool | None = None
        self.theta: np.ndarray | None = None
        self._lambdas: list[np.ndarray] = []
        # What the last gradient read off the factor, for the information at its θ.
        self._residuals: Residuals | None = None
        # The problem's θ structure, read by every fit on this evaluator (a refit
        # makes many): the mirrored columns of λ and the θ of scalar terms.
        self.mirrors = problem.layout.mirrors
        self.scalar = problem.layout.scalar
        # φ = θ (nearly every model: no column on an extreme scale): nothing to rescale.
        self.unit_scale = all(s == 1.0 for s in scale.tolist())

    @property
    def theta_rows(self) -> list[np.ndarray]:
        """Each term's rows of its θ in λ (the general gradient's and information's)."""
        return [t.theta_rows for t in self.problem.terms]

    @property
    def theta_cols(self) -> list[np.ndarray]:
        """Each term's columns of its θ in λ."""
        return [t.theta_cols for t in self.problem.terms]

    def value(self, phi: np.ndarray) -> float:
        """The criterion at φ; the workspace is left there for :meth:`gradient`."""
        self.theta = theta = phi * self.scale
        self._residuals = None
        self._lambdas = lambdas = self.problem.lambdas(theta)
        # LinearProblem.objective_of's two steps, without its layer (every evaluation).
        workspace = self.workspace
        if not workspace.update(lambdas):
            return math.inf
        return self.problem.criterion(workspace, self.reml)

    def gradient(self) -> np.ndarray:
        """∇φ at the point of the last :meth:`value`."""
        small = self._small
        if small is None:
            small = self._small = self.workspace.small_path() or False
        if small:
            # The compiled path's gradient directly (ProfiledGradient would only forward).
            g, beta, modes, ze = small.gradient(self._lambdas, self.theta_index, self.reml)
            self._residuals = Residuals(beta, modes, ze)
        else:
            if self._gradient_of is None:
                self._gradient_of = ProfiledGradient(
                    self.workspace, self.theta_rows, self.theta_cols, self.theta_index
                )
            g, self._residuals = self._gradient_of.gradient_and_residuals(
                self.workspace, self._lambdas, self.reml
            )
        # (g is a new array at every call: returned as it is where φ = θ.)
        return g if self.unit_scale else g * self.scale

    def search(
        self,
        start: np.ndarray,
        lower: np.ndarray,
        hessian: np.ndarray | None,
        initial: tuple[float, np.ndarray] | None,
        scalar: np.ndarray | None = None,
        returned: tuple[np.ndarray, float] | None = None,
    ) -> QuasiNewtonResult | None:
        """:func:`_minimize` on this evaluator in one compiled call
        (:mod:`~mixedmodels.engine.small_search`: the same points, values and counts),
        leaving the evaluator and its workspace at the last point evaluated as the
        Python loop does; None where the workspace is not on the compiled small path
        (the caller runs the Python loop).

        ``hessian`` None: the information start first (f, ∇f and the average
        information at ``start``, :func:`_information_start`), ``initial`` not read;
        where f or ∇f is not finite there the status is :data:`NOT_FINITE_AT_START`,
        where the information is not usable :data:`INFORMATION_UNUSABLE` (the result's
        value, gradient and Hessian are then f, ∇ψ f and the matrix in ψ that
        positive_definite could not make a Hessian of).  ``hessian`` an array (in φ)
        and no ``initial``: f and ∇f evaluated at the start.  ``hessian`` and
        ``initial`` given: the search from there (B and ∇f in ψ), no coordinate
        logged.  ``scalar``: the θ of scalar terms, moved on a log scale where well
        inside their bound as :func:`_minimize` moves them (default none).
        ``returned``: (x, f) of the point a restart escaped from, where it stops
        once back (gradient_fit._returned).
        The result is in φ; its counts include those of the information start.
        """
        small = self._small
        if small is None:
            small = self._small = self.workspace.small_path() or False
        if not small or not self.compiled_search:
            return None
        kernel = compiled_search()
        if kernel is None:
            return None
        problem = self.problem
        cp = problem.cross_products
        p = cp.n_fixed
        reml = self.reml
        n = len(start)
        arrays = small.search_arguments(self.theta_index)
        theta = np.empty(n)
        mirror_ptr, mirror_index, scalar_terms, no_scalar = search_layout(problem.layout)
        if scalar is None:
            scalar = no_scalar
        elif scalar is not self.scalar:
            # (A writable copy: numba compiles a read-only array's type anew.)
            scalar = scalar.copy()
        else:
            scalar = scalar_terms
        if hessian is None:
            mode, b0, f0, g0 = 2, _NO_MATRIX, 0.0, theta
        elif initial is None:
            mode, b0, f0, g0 = 0, np.ascontiguousarray(hessian, dtype=np.float64), 0.0, theta
        else:
            b0 = np.ascontiguousarray(hessian, dtype=np.float64)
            mode, f0, g0 = 1, float(initial[0]), np.ascontiguousarray(initial[1], dtype=np.float64)
        x, f, g, b, has_b, status, iterations, predicted, held, counts, rx = kernel(
            arrays,
            (small.n_re_trailing, p, int(cp.n_obs), float(cp.sum_log_weights), reml),
            small.n_re_trailing + (p if reml else 0),
            float(cp.n_obs - p if reml else cp.n_obs),
            self.scale,
            theta,
            start,
            lower,
            scalar,
            mirror_ptr,
            mirror_index,
            b0,
            f0,
            g0,
            mode,
            TOLERANCE,
            MAX_ITERATIONS,
            returned is not None,
            theta if returned is None else returned[0],
            0.0 if returned is None else float(returned[1]),
        )
        n_values, n_gradients, current, logdet, scaled, *parts = counts.tolist()
        if n_values:
            # The evaluator and its workspace as value() and gradient() leave them.
            self.theta = theta
            self._lambdas = lambdas = problem.lambdas(theta)
            ok = not math.isnan(logdet)
            l00 = arrays[5]
            small.record_search(l00 if ok else None, lambdas)
            self.workspace.record_update(
                l00,
                logdet,
                lambdas if ok else None,
                None if math.isnan(parts[0]) else tuple(parts),
                rx if rx.size else None,
            )
            self._residuals = (
                Residuals(*small.residuals(arrays[15], arrays[16], arrays[17])) if current else None
            )
        return QuasiNewtonResult(
            x=x,
            value=float(f),
            gradient=g,
            hessian=b if has_b or status == INFORMATION_UNUSABLE else np.eye(n),
            n_values=int(n_values),
            n_gradients=int(n_gradients),
            n_iterations=int(iterations),
            converged=status == 1,
            status=STATUS[status],
            predicted_decrease=float(predicted),
            held=held,
            scaled_gradient=scaled,
        )

    def solved_at(self, theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """(β̂, û per term) as the last :meth:`gradient` read them off the workspace, when
        it was at exactly this θ (else None): the solution there needs no new solve."""
        residuals = self._residuals
        # (As Python floats: numpy's comparison and all() cost more on a few values.)
        if residuals is None or self.theta.tolist() != theta.tolist():
            return None
        return residuals.beta, residuals.modes

    def information(self) -> np.ndarray:
        """The average-information Hessian in φ at the point of the last :meth:`value`
        (:mod:`~mixedmodels.engine.information`)."""
        problem = self.problem
        h = average_information(
            self.workspace,
            self._lambdas,
            self.theta_rows,
            self.theta_cols,
            problem.reml,
            self._residuals,
            self.theta_index,
        )
        return h if self.unit_scale else h * outer(self.scale)


def outer(d: np.ndarray) -> np.ndarray:
    """dᵢdⱼ: numpy.outer's numbers (the same product), without its wrapper."""
    return d[:, None] * d
