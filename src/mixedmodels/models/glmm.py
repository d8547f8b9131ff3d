"""The generalized linear mixed model: a family, PIRLS and the outer optimization.

``GeneralizedLinearMixedModel`` shares stages 1–3 with the linear model (the
design, the cross-products' structure and the blocked factor) and wraps a
penalized weighted least-squares problem (:class:`~mixedmodels.engine.pirls.Pirls`)
instead of subclassing the linear model.  The fit follows lme4's two stages:

1. θ alone, with β estimated inside PIRLS (lme4's nAGQ = 0), by BOBYQA;
2. (θ, β) together on the Laplace (nAGQ = 1) or adaptive quadrature
   (nAGQ > 1) objective, from stage 1's optimum, with β measured in units
   of stage 1's standard errors so that every coordinate has the same scale.

Standard errors are lme4's: from the finite-difference Hessian of the
objective in (θ, β) when nAGQ > 0 (``vcov = 2 H⁻¹`` restricted to β), from
the factor's R_X otherwise.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats
from threadpoolctl import ThreadpoolController

from ..design import Design, build_design
from ..engine.curvature import central_derivatives, hessian_from_gradient
from ..engine.glm_kernels import compiled as compiled_passes
from ..engine.laplace_gradient import LaplaceGradient
from ..engine.optimize import BOUNDARY_TOLERANCE, GRADIENT_TOLERANCE, minimize_bobyqa
from ..engine.pirls import Pirls, PirlsError, PirlsSolution
from ..engine.quadrature import agq_deviance
from ..errors import ConvergenceWarning, DataError, FormulaError, SingularFitWarning
from ..families import Family, NegativeBinomial, get_family
from .glm_response import evaluate_expression, prepare_response

# Inspecting the loaded BLAS libraries takes milliseconds: done once.
_BLAS: ThreadpoolController | None = None


def _single_threaded_blas():
    """The factor's many small LAPACK calls run faster on one thread (as in the linear model)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


@dataclass
class GlmmFitSummary:
    """What the optimizer did (both stages), kept on the fitted model."""

    nagq: int
    objective: float
    n_evaluations: tuple[int, int]
    return_codes: tuple[str, str]
    converged: bool
    messages: list[str] = field(default_factory=list)
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None


class GeneralizedLinearMixedModel:
    """A generalized linear mixed model given by an lme4 formula and a family.

    Parameters
    ----------
    formula : str
        lme4 model formula; the response may be ``cbind(successes, failures)``.
    data : pandas.DataFrame or dict of columns
        The data; never modified.
    family : str or Family, default "binomial"
        ``"binomial"``, ``"poisson"``, ``"Gamma"``, ``"inverse.gaussian"`` or a
        :mod:`mixedmodels.families` object (``Binomial(link="probit")``).
    weights : array-like or str, optional
        Prior weights (or their column): numbers of trials for binomial proportions.
    offset : array-like or str, optional
        A known term of the linear predictor: an array, a column name or an
        R expression of columns (``"log(expected)"``).
    missing : {"drop", "raise"}, default "drop"
        Rows with missing values in a used column are dropped (lme4's
        ``na.omit``) or refused.
    """

    def __init__(
        self,
        formula: str,
        data: Any,
        family: str | Family = "binomial",
        *,
        weights: Any = None,
        offset: Any = None,
        missing: str = "drop",
    ) -> None:
        self.family = get_family(family)
        prepared = prepare_response(formula, data, self.family, weights)
        frame = prepared.frame
        if not frame.index.is_unique:
            frame = frame.reset_index(drop=True)
        design = build_design(
            prepared.formula, frame, weights=prepared.weights, missing=missing, allow_n=True
        )
        if not design.terms:
            raise FormulaError(
                f"no random-effects terms in {formula!r}: add at least one term such as (1 | group)"
            )
        self.formula = formula
        self.response_name = prepared.response_name
        self.response_levels = prepared.response_levels
        self.design = design
        n = len(design.y)
        self.prior_weights = np.ones(n) if design.weights is None else design.weights
        self.offset = self._offset_rows(offset, frame, design)
        self.family.check_response(design.y, design.weights, self.response_name)
        self._saturated = self.family.saturated_aic(design.y, self.prior_weights)
        self.lower_bounds = np.concatenate([t.theta_lower_bounds() for t in design.terms])
        bounds = np.cumsum([0] + [t.n_theta for t in design.terms])
        self._theta_slices = [slice(a, b) for a, b in itertools.pairwise(bounds)]
        self._pirls_joint: Pirls | None = None
        self._pirls_modes: Pirls | None = None
        self._gradient: LaplaceGradient | None = None
        self.fit_summary: GlmmFitSummary | None = None
        self._solution: PirlsSolution | None = None

    # -- inputs -----------------------------------------------------------------------

    @staticmethod
    def _offset_rows(offset: Any, frame: pd.DataFrame, design: Design) -> np.ndarray:
        """The offset on the rows used (zeros if none)."""
        n = len(design.y)
        if offset is None:
            return np.zeros(n)
        if isinstance(offset, str):
            if offset in frame.columns:
                values = pd.to_numeric(frame[offset], errors="coerce").to_numpy(dtype=np.float64)
            else:
                values = evaluate_expression(offset, frame, "the offset")
        else:
            values = np.asarray(offset, dtype=np.float64).reshape(-1)
            if values.shape[0] != len(frame):
                raise DataError(
                    f"offset must have one value per row of the data ({len(frame)}), "
                    f"got {values.shape[0]}"
                )
        rows = frame.index.get_indexer(design.row_index)
        used = values[rows]
        bad = np.flatnonzero(~np.isfinite(used))
        if bad.size:
            raise DataError(
                f"the offset is missing or infinite in {bad.size} row"
                f"{'s' if bad.size > 1 else ''} used (first at row {design.row_index[bad[0]]!r})"
            )
        return used

    def set_family(self, family: str | Family) -> None:
        """Use another family for the same data (e.g. a new negative binomial θ); refit after."""
        family = get_family(family)
        family.check_response(self.design.y, self.design.weights, self.response_name)
        self.family = family
        self._saturated = family.saturated_aic(self.design.y, self.prior_weights)
        for solver in (self._pirls_joint, self._pirls_modes):
            if solver is not None:
                solver.family = family

    # -- the pieces --------------------------------------------------------------------

    def _lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return [
            t.lambda_matrix(theta[s])
            for t, s in zip(self.design.terms, self._theta_slices, strict=True)
        ]

    def _pirls(self, fixed_inside: bool) -> Pirls:
        attribute = "_pirls_joint" if fixed_inside else "_pirls_modes"
        solver = getattr(self, attribute)
        if solver is None:
            solver = Pirls(
                self.design.y,
                self.prior_weights,
                self.offset,
                self.design.x,
                self.design.terms,
                self.family,
                fixed_inside=fixed_inside,
            )
            setattr(self, attribute, solver)
        return solver

    def _laplace(self, solution: PirlsSolution) -> float:
        return solution.laplace(self.family, self.design.y, self.prior_weights, self._saturated)

    def objective_at(self, theta: Any, beta: Any, nagq: int = 1) -> float:
        """lme4's objective at (θ, β): Laplace (``nagq=1``) or adaptive quadrature (> 1).

        PIRLS starts from the fitted modes when the model has been fitted.
        """
        nagq = self._check_nagq(nagq)
        if nagq == 0:
            raise ValueError("objective_at evaluates nagq ≥ 1 (β is given, not estimated)")
        theta = np.asarray(theta, dtype=np.float64)
        beta = np.asarray(beta, dtype=np.float64)
        start = self._solution.u if self._solution is not None else None
        return self._objective(theta, beta, nagq, start)[0]

    def _objective(
        self, theta: np.ndarray, beta: np.ndarray, nagq: int, u: np.ndarray | None
    ) -> tuple[float, PirlsSolution]:
        """lme4's objective at (θ, β) for nAGQ ≥ 1, and the PIRLS solution."""
        pirls = self._pirls(fixed_inside=False)
        lambdas = self._lambdas(theta)
        solution = pirls.solve(lambdas, beta, u)
        if nagq <= 1:
            return self._laplace(solution), solution
        level_sd = 1.0 / pirls.factor.L00[:, 0, 0]
        value = agq_deviance(pirls, lambdas[0], beta, solution, level_sd, nagq)
        return value, solution

    # -- fitting -----------------------------------------------------------------------

    def fit(
        self,
        *,
        nagq: int = 1,
        start: dict[str, Any] | None = None,
        hessian: bool = True,
        check_convergence: bool = True,
        warn: bool = True,
    ) -> GeneralizedLinearMixedModel:
        """Estimate θ and β as lme4's ``glmer`` does (two stages; see the module docstring).

        Parameters
        ----------
        nagq : int, default 1
            1 for the Laplace approximation, > 1 for adaptive Gauss–Hermite
            quadrature with that many points (one scalar random-effects term
            only), 0 for θ alone with β estimated inside PIRLS.
        start : dict, optional
            ``{"theta": ..., "beta": ...}`` to start the second stage from
            (lme4's ``start = list(theta =, fixef =)``); the first stage is
            then skipped.  A refit also starts PIRLS from the last modes.
        hessian : bool, default True
            Estimate the Hessian of the objective in (θ, β) by finite
            differences, for lme4's standard errors and convergence check
            (lme4's ``calc.derivs``); False gives R_X-based standard errors.
        check_convergence : bool, default True
            Report a doubtful optimum found by the gradient and Hessian.
        warn : bool, default True
            Warn about doubtful convergence and singular fits.
        """
        nagq = self._check_nagq(nagq)
        given = self._check_start(start) if start is not None else None
        with _single_threaded_blas():
            self._fit(nagq, given, hessian, check_convergence)
        if warn:
            for message in self.fit_summary.messages:
                warnings.warn(message, ConvergenceWarning, stacklevel=2)
            if self.is_singular:
                warnings.warn(
                    "boundary (singular) fit: some variance component is estimated as zero "
                    "or a correlation as ±1; see is_singular",
                    SingularFitWarning,
                    stacklevel=2,
                )
        return self

    def _check_start(self, start: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(start, dict) or not {"theta", "beta"} <= set(start):
            raise ValueError("start must be a dict with 'theta' and 'beta'")
        theta = np.asarray(start["theta"], dtype=np.float64).reshape(-1)
        beta = np.asarray(start["beta"], dtype=np.float64).reshape(-1)
        if theta.shape != self.lower_bounds.shape:
            raise ValueError(f"start['theta'] must have {len(self.lower_bounds)} values")
        if beta.shape != (self.design.x.shape[1],):
            raise ValueError(f"start['beta'] must have {self.design.x.shape[1]} values")
        return np.maximum(theta, self.lower_bounds), beta

    def _fit(
        self,
        nagq: int,
        start: tuple[np.ndarray, np.ndarray] | None,
        hessian: bool,
        check_convergence: bool,
    ) -> None:
        previous_u = self._solution.u if self._solution is not None else None
        if start is None and self._gradient_available(nagq):
            # With the gradient, stage 2 needs no first stage for a start: lme4's
            # initial PIRLS solution is as good a start (measured on the references:
            # the same optima in no more stage-2 evaluations).
            theta, first = self._initial_pirls()
            beta, u, n_eval0, status0 = first.beta, first.u, 1, "initial PIRLS"
        elif start is None or nagq == 0:
            theta, beta, u, n_eval0, status0 = self._fit_joint_pirls()
        else:
            (theta, beta), u, n_eval0, status0 = start, previous_u, 0, "start given"
        if nagq == 0:
            pirls = self._pirls(fixed_inside=True)
            solution = pirls.solve(self._lambdas(theta), beta, u)
            value = self._laplace(solution)
            self._set_solution(theta, solution, nagq, value)
            self.fit_summary = GlmmFitSummary(
                nagq=0,
                objective=value,
                n_evaluations=(n_eval0, 0),
                return_codes=(status0, ""),
                converged=True,
            )
        else:
            self._fit_modes(theta, beta, u, nagq, n_eval0, status0, hessian, check_convergence)

    def _check_nagq(self, nagq: int) -> int:
        if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or nagq < 0:
            raise ValueError(f"nagq must be a non-negative integer, got {nagq!r}")
        if nagq > 100:
            raise ValueError(f"nagq must be at most 100, got {nagq}")
        terms = self.design.terms
        if nagq > 1 and (len(terms) != 1 or terms[0].q != 1):
            raise ValueError(
                "nAGQ > 1 is only available for models with a single, scalar random-effects "
                f"term; {self.formula!r} has {len(terms)} term(s) with "
                f"{', '.join(str(t.q) for t in terms)} random effect(s) per level"
            )
        return int(nagq)

    def _initial_pirls(self) -> tuple[np.ndarray, PirlsSolution]:
        """lme4's first PIRLS: θ at λ = I, β and u from the family's starting means."""
        pirls = self._pirls(fixed_inside=True)
        family = self.family
        start_eta = family.link.link(family.initial_mean(self.design.y, self.prior_weights))
        theta0 = np.concatenate([t.theta_start() for t in self.design.terms])
        p = self.design.x.shape[1]
        return theta0, pirls.solve(self._lambdas(theta0), np.zeros(p), eta=start_eta)

    def _fit_joint_pirls(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str]:
        """Stage 1: θ with β and u inside PIRLS at each θ (lme4's nAGQ = 0).

        With the analytic gradient, by L-BFGS-B; otherwise by BOBYQA, as lme4.
        """
        pirls = self._pirls(fixed_inside=True)
        theta0, first = self._initial_pirls()
        last = [first]
        count = [0]

        def solve(theta: np.ndarray) -> PirlsSolution:
            count[0] += 1
            previous = last[0]
            solution = pirls.solve(self._lambdas(theta), previous.beta, previous.u)
            last[0] = solution
            return solution

        if compiled_passes() is not None:
            gradient = LaplaceGradient(pirls)

            def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
                try:
                    solution = solve(theta)
                except PirlsError:
                    return math.inf, np.zeros_like(theta)
                value = self._laplace(solution)
                return value, gradient(self._lambdas(theta), solution.beta, solution)

            result = scipy.optimize.minimize(
                value_and_gradient,
                theta0,
                jac=True,
                method="L-BFGS-B",
                bounds=[(lo if np.isfinite(lo) else None, None) for lo in self.lower_bounds],
                options={"ftol": 1e-15, "gtol": 1e-7, "maxiter": 1000},
            )
            theta, status = result.x, str(result.message)
        else:

            def objective(theta: np.ndarray) -> float:
                try:
                    return self._laplace(solve(theta))
                except PirlsError:
                    return math.inf

            theta, _, _, status = minimize_bobyqa(
                objective,
                theta0,
                self.lower_bounds,
                initial_step=0.2,
                ftol_rel=1e-10,
                ftol_abs=1e-7,
            )
        solution = pirls.solve(self._lambdas(theta), last[0].beta, last[0].u)
        return theta, solution.beta, solution.u, count[0], status

    def _fit_modes(
        self,
        theta0: np.ndarray,
        beta0: np.ndarray,
        u0: np.ndarray,
        nagq: int,
        n_eval0: int,
        status0: str,
        hessian: bool,
        check_convergence: bool,
    ) -> None:
        """Stage 2: (θ, β) on the Laplace or quadrature objective."""
        n_theta = len(theta0)
        scale = self._stage1_standard_errors(theta0, beta0, u0)
        last = {"u": u0}

        def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return x[:n_theta], beta0 + scale * x[n_theta:]

        def objective(x: np.ndarray) -> float:
            theta, beta = split(x)
            try:
                value, solution = self._objective(theta, beta, nagq, last["u"])
            except PirlsError:
                return math.inf
            last["u"] = solution.u
            return value

        start = np.concatenate([theta0, np.zeros(len(beta0))])
        lower = np.concatenate([self.lower_bounds, np.full(len(beta0), -np.inf)])
        if self._gradient_available(nagq):
            x, n_eval, status = self._minimize_with_gradient(start, lower, split, scale, last)
        else:
            steps = np.concatenate(
                [np.maximum(0.1 * np.abs(theta0), 0.02), np.full(len(beta0), 0.2)]
            )
            x, _, n_eval, status = minimize_bobyqa(
                objective, start, lower, initial_step=steps, ftol_rel=1e-12, ftol_abs=1e-9
            )
        at_bound = np.isfinite(lower) & (x - lower < 1e-10)
        x = np.where(at_bound, lower, x)
        theta, beta = split(x)
        value, solution = self._objective(theta, beta, nagq, last["u"])
        self._set_solution(theta, solution, nagq, value)
        messages: list[str] = []
        gradient = curvature = None
        if hessian:
            gradient, curvature = self._derivatives(theta, beta, value, solution.u, nagq)
            self._set_hessian_vcov(curvature, n_theta, messages)
            if check_convergence:
                point = np.concatenate([theta, beta])
                messages.extend(self._convergence_messages(point, lower, gradient, curvature))
        self.fit_summary = GlmmFitSummary(
            nagq=nagq,
            objective=value,
            n_evaluations=(n_eval0, n_eval),
            return_codes=(status0, status),
            converged=not messages,
            messages=messages,
            gradient=gradient,
            hessian=curvature,
        )

    def _gradient_available(self, nagq: int) -> bool:
        """The analytic gradient covers the Laplace objective (with numba)."""
        return nagq == 1 and compiled_passes() is not None

    def _gradient_at(
        self, theta: np.ndarray, beta: np.ndarray, u: np.ndarray | None
    ) -> tuple[float, np.ndarray, PirlsSolution]:
        """Laplace objective, its gradient in (θ, β), and the modes."""
        pirls = self._pirls(fixed_inside=False)
        if self._gradient is None:
            self._gradient = LaplaceGradient(pirls)
        lambdas = self._lambdas(theta)
        solution = pirls.solve(lambdas, beta, u)
        value = self._laplace(solution)
        return value, self._gradient(lambdas, beta, solution), solution

    def _minimize_with_gradient(self, start, lower, split, scale, last):
        """L-BFGS-B on (θ, β/scale) with the analytic gradient."""
        n_theta = len(self.lower_bounds)
        count = [0]

        def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
            count[0] += 1
            theta, beta = split(x)
            try:
                value, gradient, solution = self._gradient_at(theta, beta, last["u"])
            except PirlsError:
                return math.inf, np.zeros_like(x)
            last["u"] = solution.u
            gradient[n_theta:] *= scale
            return value, gradient

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        result = scipy.optimize.minimize(
            value_and_gradient,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-7, "maxiter": 1000, "maxcor": 20},
        )
        return result.x, count[0], str(result.message)

    def _derivatives(
        self, theta: np.ndarray, beta: np.ndarray, value: float, u: np.ndarray, nagq: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """lme4's calc.derivs: gradient and Hessian of the objective in (θ, β)."""
        n_theta = len(theta)
        center_u = u
        if self._gradient_available(nagq):

            def gradient(y: np.ndarray) -> np.ndarray:
                return self._gradient_at(y[:n_theta], y[n_theta:], center_u)[1]

            point = np.concatenate([theta, beta])
            curvature = hessian_from_gradient(gradient, point)
            # The gradient at the optimum itself, and the factor back at the estimates.
            return self._gradient_at(theta, beta, center_u)[1], curvature

        def in_original_units(y: np.ndarray) -> float:
            try:
                return self._objective(y[:n_theta], y[n_theta:], nagq, center_u)[0]
            except PirlsError:
                return math.inf

        point = np.concatenate([theta, beta])
        return central_derivatives(in_original_units, point, value)

    def _stage1_standard_errors(
        self, theta: np.ndarray, beta: np.ndarray, u: np.ndarray
    ) -> np.ndarray:
        """R_X-based standard errors at stage 1's optimum: stage 2's unit for β."""
        if not len(beta):
            return np.ones(0)
        pirls = self._pirls(fixed_inside=True)
        pirls.solve(self._lambdas(theta), beta, u)  # leaves the factor at the joint optimum
        rinv = pirls.factor.inverse_rx()
        se = np.sqrt(np.einsum("ij,ij->j", rinv, rinv))
        return np.where(np.isfinite(se) & (se > 0), se, 1.0)

    def _set_solution(self, theta: np.ndarray, solution: PirlsSolution, nagq: int, value: float):
        """Keep the estimates and read what the results need off the factor."""
        self._theta = np.asarray(theta, dtype=np.float64)
        self._solution = solution
        self._beta = solution.beta.copy()
        self._objective_value = value
        self._nagq = nagq
        lambdas = self._lambdas(self._theta)
        self._modes = []
        for k, (term, lam) in enumerate(zip(self.design.terms, lambdas, strict=True)):
            pirls = self._pirls(fixed_inside=False)
            u = solution.u[pirls.u_offsets[k] : pirls.u_offsets[k + 1]]
            self._modes.append(u.reshape(term.n_levels, term.q) @ lam.T)
        # R_X from the joint factor at the final weights (lme4's vcov(use.hessian=FALSE)).
        joint = self._pirls(fixed_inside=True)
        joint.refactor_at(lambdas, solution)
        rinv = joint.factor.inverse_rx()
        family, y, mu, w = self.family, self.design.y, solution.mu, self.prior_weights
        if family.has_dispersion:
            pearson2 = float(np.sum(w * (y - mu) ** 2 / family.variance(mu)))
            self._sigma = math.sqrt((pearson2 + solution.sum_u2) / len(y))
        else:
            self._sigma = 1.0
        self._vcov_rx = self._sigma**2 * (rinv.T @ rinv)
        self._vcov = self._vcov_rx
        self.stderr_source = "RX"

    def _set_hessian_vcov(self, hessian: np.ndarray, n_theta: int, messages: list[str]) -> None:
        """vcov = 2 H⁻¹ restricted to β (lme4's calc.vcov.hess), if H is usable."""
        try:
            inverse = np.linalg.inv(hessian)
        except np.linalg.LinAlgError:
            inverse = None
        if inverse is not None:
            block = inverse[n_theta:, n_theta:]
            vcov = block + block.T
            if np.all(np.isfinite(vcov)) and np.min(np.linalg.eigvalsh(vcov)) > 0:
                self._vcov = vcov
                self.stderr_source = "Hessian"
                return
        messages.append(
            "the finite-difference Hessian is not positive definite: standard errors from R_X"
        )

    def _convergence_messages(
        self, point: np.ndarray, lower: np.ndarray, gradient: np.ndarray, hessian: np.ndarray
    ) -> list[str]:
        """lme4's checkConv: the scaled gradient R⁻¹g (H = RᵀR) at interior coordinates."""
        interior = ~(np.isfinite(lower) & (point - lower < BOUNDARY_TOLERANCE))
        g = gradient[interior]
        h = hessian[np.ix_(interior, interior)]
        try:
            chol = np.linalg.cholesky(h)
            scaled = float(np.max(np.abs(np.linalg.solve(chol.T, g)))) if len(g) else 0.0
            measure = "scaled gradient"
        except np.linalg.LinAlgError:
            return ["the Hessian at the optimum is not positive definite"]
        if scaled > GRADIENT_TOLERANCE:
            return [
                f"the optimizer may not have converged: max |{measure}| = {scaled:.3g} "
                f"(tolerance {GRADIENT_TOLERANCE})"
            ]
        return []

    # -- results (phase 1: the numbers; the full results API comes with the shared state) --

    def _require_fit(self) -> None:
        if self._solution is None:
            raise RuntimeError("the model has not been fitted yet: call .fit() first")

    @property
    def theta(self) -> np.ndarray:
        self._require_fit()
        return self._theta.copy()

    @property
    def fixef(self) -> pd.Series:
        self._require_fit()
        return pd.Series(self._beta, index=self.design.fixed_names, name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of β̂ as lme4's ``vcov``: from the Hessian if available (``stderr_source``)."""
        self._require_fit()
        names = self.design.fixed_names
        return pd.DataFrame(self._vcov, index=names, columns=names)

    @property
    def vcov_rx(self) -> pd.DataFrame:
        """σ²(R_XᵀR_X)⁻¹ at the final weights (lme4's ``vcov(use.hessian = FALSE)``)."""
        self._require_fit()
        names = self.design.fixed_names
        return pd.DataFrame(self._vcov_rx, index=names, columns=names)

    @property
    def coefs(self) -> pd.DataFrame:
        """Estimates, standard errors, z values and two-sided normal p values."""
        self._require_fit()
        se = np.sqrt(np.diag(self._vcov))
        z = self._beta / se
        return pd.DataFrame(
            {
                "estimate": self._beta,
                "std_error": se,
                "z_value": z,
                "p_value": 2.0 * scipy.stats.norm.sf(np.abs(z)),
            },
            index=self.design.fixed_names,
        )

    @property
    def sigma(self) -> float:
        """1, or for families with a dispersion lme4's sqrt((Σ pearson² + ‖u‖²)/n)."""
        self._require_fit()
        return self._sigma

    @property
    def objective(self) -> float:
        """lme4's criterion (see the reference README: Laplace, quadrature or nAGQ = 0)."""
        self._require_fit()
        return self._objective_value

    @property
    def n_params(self) -> int:
        """Parameters counted in logLik's df: θ, β, and the dispersion (Gamma, inverse
        Gaussian) or the negative binomial θ, as lme4 counts them."""
        extra = 1 if self.family.has_dispersion or isinstance(self.family, NegativeBinomial) else 0
        return len(self.lower_bounds) + self.design.x.shape[1] + extra

    @property
    def loglik(self) -> float:
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.n_params

    @property
    def bic(self) -> float:
        return self.objective + self.n_params * math.log(self.nobs)

    @property
    def deviance(self) -> float:
        """Σ of squared deviance residuals at the conditional modes (lme4's ``deviance``)."""
        self._require_fit()
        return self._solution.deviance

    @property
    def nobs(self) -> int:
        return len(self.design.y)

    @property
    def is_singular(self) -> bool:
        self._require_fit()
        finite = np.isfinite(self.lower_bounds)
        return bool(np.any(self._theta[finite] - self.lower_bounds[finite] < BOUNDARY_TOLERANCE))

    @property
    def converged(self) -> bool:
        self._require_fit()
        return bool(self.fit_summary.converged)

    def random_effect_sds(self) -> list[np.ndarray]:
        """Per term, the standard deviations of its random effects (σ·|rows of λ|)."""
        self._require_fit()
        return [
            self._sigma * np.sqrt(np.sum(lam * lam, axis=1)) for lam in self._lambdas(self._theta)
        ]

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes b = Λû: grouping factor → levels × terms."""
        self._require_fit()
        out: dict[str, pd.DataFrame] = {}
        for term, modes in zip(self.design.terms, self._modes, strict=True):
            frame = pd.DataFrame(modes, index=term.levels, columns=term.column_names)
            frame.index.name = term.group_name
            out[term.group_name] = (
                pd.concat([out[term.group_name], frame], axis=1)
                if term.group_name in out
                else frame
            )
        return out

    @property
    def fitted(self) -> pd.Series:
        """Conditional means μ̂ (response scale)."""
        self._require_fit()
        return pd.Series(self._solution.mu, index=self.design.row_index, name="fitted")

    @property
    def linear_predictor(self) -> pd.Series:
        """η̂ = o + Xβ̂ + Zb̂ (link scale, offset included)."""
        self._require_fit()
        return pd.Series(self._solution.eta, index=self.design.row_index, name="linpred")

    def residuals(self, type: str = "deviance") -> pd.Series:
        """Residuals of type ``"deviance"``, ``"pearson"``, ``"response"`` or ``"working"``."""
        self._require_fit()
        y, mu, w = self.design.y, self._solution.mu, self.prior_weights
        if type == "deviance":
            d = self.family.deviance_residuals(y, mu, w)
            values = np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        elif type == "pearson":
            values = (y - mu) * np.sqrt(w / self.family.variance(mu))
        elif type == "response":
            values = y - mu
        elif type == "working":
            values = (y - mu) / self.family.link.mu_eta(self._solution.eta)
        else:
            raise ValueError(
                f"type must be 'deviance', 'pearson', 'response' or 'working', not {type!r}"
            )
        return pd.Series(values, index=self.design.row_index, name="residuals")


def glmer(
    formula: str,
    data: Any,
    family: str | Family = "binomial",
    *,
    weights: Any = None,
    offset: Any = None,
    nagq: int = 1,
    missing: str = "drop",
    check_convergence: bool = True,
) -> GeneralizedLinearMixedModel:
    """Fit a generalized linear mixed model, as lme4's ``glmer``.

    Parameters
    ----------
    formula : str
        lme4 formula; ``cbind(successes, failures) ~ ...`` for binomial counts.
    data : pandas.DataFrame or dict of columns
        The data; never modified.
    family : str or Family, default "binomial"
        See :class:`GeneralizedLinearMixedModel`.
    weights, offset, missing
        See :class:`GeneralizedLinearMixedModel`.
    nagq : int, default 1
        Laplace (1), adaptive quadrature points (> 1) or 0; see
        :meth:`GeneralizedLinearMixedModel.fit`.
    check_convergence : bool, default True
        Check the optimum by finite differences.

    Examples
    --------
    >>> import mixedmodels as mm  # doctest: +SKIP
    >>> m = mm.glmer("r2 ~ Anger + Gender + btype + situ + (1|id) + (1|item)",
    ...              verbagg, family="binomial")  # doctest: +SKIP
    """
    model = GeneralizedLinearMixedModel(
        formula, data, family, weights=weights, offset=offset, missing=missing
    )
    return model.fit(nagq=nagq, check_convergence=check_convergence)
