"""The linear mixed model: stages 1–4 tied together.

``LinearMixedModel`` owns the design (stage 1), the cross-products (stage 2,
computed once), the blocked factor (stage 3) and the optimisation of θ
(stage 4).  Everything a user reads after the fit lives in
:class:`~mixedmodels.results.FitResultsMixin`.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from ..design import Design, build_design
from ..engine.blocks import CrossProducts, cross_products
from ..engine.factor import BlockedCholesky
from ..engine.kernels import available_cpus
from ..engine.optimize import (
    BOUNDARY_TOLERANCE,
    OptimizationSummary,
    minimize_bobyqa,
    restart_steps,
)
from ..engine.optimize import check_convergence as check_optimum
from ..engine.start import moment_start, start_steps
from ..errors import ConvergenceWarning, FormulaError, SingularFitWarning
from ..inference.mixin import InferenceMixin
from ..results.accessors import FitResultsMixin

_LOG_2PI = math.log(2 * math.pi)
# The convergence check evaluates on two threads above this time per evaluation.
_PARALLEL_MIN_SECONDS = 2e-3
# Inspecting the loaded BLAS libraries takes milliseconds: do it once.
_BLAS_CONTROLLER: ThreadpoolController | None = None


def _blas_limit(threads: int | None):
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=threads, user_api="blas")


class LinearMixedModel(InferenceMixin, FitResultsMixin):
    """A linear mixed-effects model given by an lme4 formula.

    Parameters
    ----------
    formula : str
        lme4 model formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame or dict of columns
        The data; never modified.
    reml : bool, default True
        Fit by REML (True) or maximum likelihood (False).
    weights : array-like or str, optional
        Prior weights (or the name of their column).
    missing : {"drop", "raise"}, default "drop"
        Rows with missing values in a used column are dropped, as lme4's
        ``na.omit`` does, or refused.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> data = mm.datasets.load("sleepstudy")
    >>> model = mm.LinearMixedModel("Reaction ~ Days + (Days | Subject)", data).fit()
    >>> round(model.objective, 2)
    1743.63
    """

    def __init__(
        self,
        formula: str,
        data: Any,
        *,
        reml: bool = True,
        weights: Any = None,
        missing: str = "drop",
    ) -> None:
        design = build_design(formula, data, weights=weights, missing=missing)
        if not design.terms:
            raise FormulaError(
                f"no random-effects terms in {formula!r}: add at least one term such as "
                "(1 | group); for a model without random effects use ordinary least squares"
            )
        self._init_from(design, reml=reml)

    def _init_from(self, design: Design, *, reml: bool, cp: CrossProducts | None = None) -> None:
        self.design = design
        self.reml = bool(reml)
        self.data_name: str | None = None
        if cp is None:
            offset = (
                np.linalg.lstsq(design.x, design.y, rcond=None)[0] if design.x.shape[1] else None
            )
            cp = cross_products(
                [t.codes for t in design.terms],
                [t.z for t in design.terms],
                [t.n_levels for t in design.terms],
                design.x,
                design.y,
                design.weights,
                beta_offset=offset,
            )
        self.cross_products = cp
        self.factor = BlockedCholesky(self.cross_products)
        bounds = np.cumsum([0] + [t.n_theta for t in design.terms])
        self._theta_slices = [slice(a, b) for a, b in itertools.pairwise(bounds)]
        self.lower_bounds = np.concatenate([t.theta_lower_bounds() for t in design.terms])
        self.optsum: OptimizationSummary | None = None
        self._theta: np.ndarray | None = None

    # -- the objective --------------------------------------------------------------

    def _lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return [
            t.lambda_matrix(theta[s])
            for t, s in zip(self.design.terms, self._theta_slices, strict=True)
        ]

    def objective_at(self, theta: np.ndarray, reml: bool | None = None) -> float:
        """The REML criterion or ML deviance at θ (lme4's scale); refreshes the factor."""
        reml = self.reml if reml is None else reml
        if not self.factor.update(self._lambdas(np.asarray(theta, dtype=np.float64))):
            return math.inf
        cp = self.cross_products
        n, p = cp.n_obs, cp.n_fixed
        r2 = self.factor.pwrss()
        if r2 <= 0.0:
            return math.inf
        value = self.factor.logdet_theta() - cp.sum_log_weights
        if reml:
            dof = n - p
            value += self.factor.logdet_x() + dof * (1.0 + _LOG_2PI + math.log(r2 / dof))
        else:
            value += n * (1.0 + _LOG_2PI + math.log(r2 / n))
        return value

    # -- fitting --------------------------------------------------------------------

    def fit(
        self,
        *,
        start: np.ndarray | str | None = None,
        check_convergence: bool = True,
        warn: bool = True,
        max_restarts: int = 3,
    ) -> LinearMixedModel:
        """Estimate θ, then β, σ and the conditional modes.

        Parameters
        ----------
        start : array or "lme4", optional
            Initial θ.  By default, moment estimates of the variance components
            read off the cross-products (:func:`mixedmodels.start.moment_start`),
            which reach the optimum in about half the evaluations; ``"lme4"``
            starts where lme4 does (identity relative covariance factors).
        check_convergence : bool, default True
            Estimate the gradient and Hessian at the optimum and report a doubtful
            convergence in :attr:`converged` and :attr:`convergence_messages`.
        warn : bool, default True
            Issue warnings for singular fits and doubtful convergence.
        max_restarts : int, default 3
            Restarts of the optimizer from a boundary optimum, kept while they
            lower the objective.
        """
        scale = self._theta_scale()
        identity = np.concatenate([t.theta_start() for t in self.design.terms])
        steps: np.ndarray | float = 0.75
        if start is None:
            moments = moment_start(self.cross_products, self.design.terms)
            if moments is None:
                start_phi = identity
            else:
                start_phi, steps = start_steps(moments / scale, self.lower_bounds)
        elif isinstance(start, str):
            if start != "lme4":
                raise ValueError(f"start must be an array of θ or 'lme4', got {start!r}")
            # lme4's start λ = I applies to the rescaled columns.
            start_phi = identity
        else:
            given = np.asarray(start, dtype=np.float64)
            if given.shape != self.lower_bounds.shape:
                raise ValueError(
                    f"start must have {len(self.lower_bounds)} values (one per θ), "
                    f"got {given.shape}"
                )
            start_phi = given / scale
        # The θ loop works on many small matrices, and even InstEval's 1128×1128
        # Cholesky ran no faster with two OpenBLAS threads than with one
        # (measured on this 2-core machine): BLAS stays single-threaded here.
        with _blas_limit(1):
            return self._fit(start_phi, steps, scale, check_convergence, warn, max_restarts)

    def _theta_scale(self) -> np.ndarray:
        """θ = scale · φ, where φ is what the optimizer moves.

        A random-effects column on an extreme scale (root mean square outside
        [1e-3, 1e3]) needs θ near the inverse of that scale, far from lme4's
        start of 1 and from BOBYQA's unit steps.  Writing Zλ = (Z S⁻¹)(Sλ) with
        S the columns' scales, φ = Sλ is of order one.  Columns on ordinary
        scales keep θ = φ, so the path is lme4's.
        """
        cp = self.cross_products
        factors = []
        for term, diag in zip(self.design.terms, cp.diag, strict=True):
            rms = np.sqrt(np.einsum("lii->i", diag) / max(cp.n_obs, 1))
            extreme = (rms > 0) & ((rms < 1e-3) | (rms > 1e3))
            row_factor = np.where(extreme, 1.0 / np.where(rms > 0, rms, 1.0), 1.0)
            factors.append(row_factor[term.theta_rows])
        return np.concatenate(factors)

    def _fit(
        self,
        start: np.ndarray,
        steps: np.ndarray | float,
        scale: np.ndarray,
        check_convergence: bool,
        warn: bool,
        max_restarts: int,
    ) -> LinearMixedModel:
        """Optimize φ (θ = scale·φ, see :meth:`_theta_scale`) from ``start``."""

        def objective(phi: np.ndarray) -> float:
            return self.objective_at(phi * scale)

        clock = time.perf_counter()
        theta, value, n_eval, status = minimize_bobyqa(
            objective, start, self.lower_bounds, initial_step=steps
        )
        seconds = time.perf_counter() - clock
        # On the boundary BOBYQA can stop at a point that is not the optimum.
        # Restarting with full-size steps (which BOBYQA uses to move the start
        # off or onto bounds) escapes such points; a last restart with steps
        # that keep the start in place then polishes the best point found.
        if np.any(theta - self.lower_bounds < BOUNDARY_TOLERANCE):
            for _ in range(max_restarts):
                again, again_value, n_more, again_status = minimize_bobyqa(
                    objective, theta, self.lower_bounds
                )
                n_eval += n_more
                if again_value >= value - 1e-6:
                    if again_value < value:
                        theta, value, status = again, again_value, again_status
                    break
                theta, value, status = again, again_value, again_status
            polished, polished_value, n_more, polished_status = minimize_bobyqa(
                objective,
                theta,
                self.lower_bounds,
                initial_step=restart_steps(theta, self.lower_bounds),
            )
            n_eval += n_more
            if polished_value < value:
                theta, value, status = polished, polished_value, polished_status
        # Snap values within rounding of a bound onto it, as lme4 reports them.
        at_bound = np.isfinite(self.lower_bounds) & (theta - self.lower_bounds < 1e-10)
        theta = np.where(at_bound, self.lower_bounds, theta)
        messages: list[str] = []
        ok = status not in ("maximum number of evaluations reached", "maximum time reached")
        if not ok:
            messages.append(f"the optimizer stopped early: {status}")
        gradient = None
        if check_convergence:
            passed, found, gradient = check_optimum(
                objective,
                theta,
                self.lower_bounds,
                evaluate_many=self._parallel_evaluator(scale, seconds / max(n_eval, 1)),
            )
            ok = ok and passed
            messages.extend(found)
        theta = theta * scale
        value = self._set_solution(theta)
        self.optsum = OptimizationSummary(
            initial=start * scale,
            lower=self.lower_bounds.copy(),
            final=theta,
            objective=value,
            n_evaluations=n_eval,
            return_code=status,
            converged=ok,
            messages=messages,
            gradient=gradient,
        )
        if warn:
            for message in messages:
                warnings.warn(message, ConvergenceWarning, stacklevel=2)
            if self.is_singular:
                warnings.warn(
                    "boundary (singular) fit: some variance component is estimated as zero "
                    "or a correlation as ±1; see is_singular",
                    SingularFitWarning,
                    stacklevel=2,
                )
        return self

    def _parallel_evaluator(self, scale: np.ndarray, seconds_per_evaluation: float):
        """Evaluate a batch of points (in φ) on two threads when evaluations are slow.

        The convergence check's points are independent; a second factor on the
        same cross-products lets a worker thread evaluate half of them while
        the compiled loop and LAPACK release the GIL.  Below a few milliseconds
        per evaluation the threads' overhead would eat the gain: None.
        """
        if seconds_per_evaluation < _PARALLEL_MIN_SECONDS or available_cpus() < 2:
            return None

        def evaluate_many(points: list[np.ndarray]) -> list[float]:
            twin = copy.copy(self)
            twin.factor = BlockedCholesky(self.cross_products)
            with ThreadPoolExecutor(max_workers=1) as pool:
                second = pool.submit(lambda: [twin.objective_at(p * scale) for p in points[1::2]])
                first = [self.objective_at(p * scale) for p in points[::2]]
                values = [0.0] * len(points)
                values[::2] = first
                values[1::2] = second.result()
            return values

        return evaluate_many

    def _set_solution(self, theta: np.ndarray) -> float:
        """Refresh the factor at θ, read β, u, b and σ off it; returns the objective."""
        value = self.objective_at(theta)
        self._theta = np.asarray(theta, dtype=np.float64)
        self._beta = self.factor.fixed_effects()
        u = self.factor.spherical_modes(self._beta)
        lambdas = self._lambdas(self._theta)
        self._modes = [
            (ui.reshape(t.n_levels, t.q) @ lam.T)
            for ui, t, lam in zip(u, self.design.terms, lambdas, strict=True)
        ]
        cp = self.cross_products
        dof = cp.n_obs - cp.n_fixed if self.reml else cp.n_obs
        self._sigma = math.sqrt(self.factor.pwrss() / dof)
        rinv = self.factor.inverse_rx()
        self._unscaled_vcov = rinv.T @ rinv
        return value

    # -- state ----------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return self._theta is not None

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a diagonal element of some λ within 1e-4 of zero."""
        self._require_fit()
        finite = np.isfinite(self.lower_bounds)
        return bool(np.any(self._theta[finite] - self.lower_bounds[finite] < BOUNDARY_TOLERANCE))

    @property
    def converged(self) -> bool:
        self._require_fit()
        return bool(self.optsum.converged)

    @property
    def convergence_messages(self) -> list[str]:
        self._require_fit()
        return list(self.optsum.messages)


def lmer(
    formula: str,
    data: Any,
    reml: bool = True,
    *,
    weights: Any = None,
    missing: str = "drop",
    start: np.ndarray | str | None = None,
    check_convergence: bool = True,
) -> LinearMixedModel:
    """Fit a linear mixed model, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        lme4 model formula with random-effects terms in parentheses.
    data : pandas.DataFrame or dict of columns
        The data; never modified.
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    weights, missing
        See :class:`LinearMixedModel`.
    start : array or "lme4", optional
        Initial θ (default: moment estimates; see :meth:`LinearMixedModel.fit`).
    check_convergence : bool, default True
        Check the optimum by finite differences (see :meth:`LinearMixedModel.fit`).

    Returns
    -------
    LinearMixedModel
        The fitted model.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> m.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    """
    # distributed imports this module, so the import waits until a call.
    from ..frontends.dask import fit_dask, is_dask_dataframe

    if is_dask_dataframe(data):
        return fit_dask(
            formula,
            data,
            reml=reml,
            weights=weights,
            missing=missing,
            start=start,
            check_convergence=check_convergence,
        )
    model = LinearMixedModel(formula, data, reml=reml, weights=weights, missing=missing)
    return model.fit(start=start, check_convergence=check_convergence)
