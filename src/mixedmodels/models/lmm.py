"""The linear mixed model: a design, a problem in θ and, once fitted, a state.

``LinearMixedModel`` is composed of three parts:

* ``design`` — what the model is (formula, fixed-effect names, random-effects
  terms and the specs that rebuild its matrices on new data);
* ``problem`` — stage 3 as a function of θ
  (:class:`~mixedmodels.engine.problem.LinearProblem`: the cross-products of
  stage 2 and the terms' λ templates), evaluated on workspaces of its own;
* ``rows`` — where the rows are (:mod:`~mixedmodels.models.rows`), for the
  results that need them;

and ``fit`` adds ``state``, the immutable
:class:`~mixedmodels.results.state.FittedState`.  A front end that computes
the cross-products elsewhere (Dask) builds the model with
:meth:`LinearMixedModel.from_cross_products`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import arguments
from ..engine.blocks import CrossProducts, residual_cross_products
from ..engine.fit import optimize_theta, optimizer_threads
from ..engine.optimize import OptimizationSummary
from ..engine.problem import LinearProblem, Solution
from ..engine.refit import ResponseRefitter
from ..engine.threads import blas_threads
from ..errors import (
    ArgumentError,
    ConvergenceWarning,
    DataError,
    FormulaError,
    MixedModelsError,
    SingularFitWarning,
    user_stacklevel,
)
from ..inference.mixin import InferenceMixin
from ..results.accessors import FitResultsMixin
from ..results.state import FittedState
from .rows import InMemoryRows, RowSource

if TYPE_CHECKING:
    from ..design import Design


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
    offset : array-like or str, optional
        A known part of the linear predictor (lme4's ``offset``): one value
        per row, or the name of their column; added to the formula's
        ``offset(...)`` terms.  Fitted values and predictions include it.
    contrasts : dict of str to str, optional
        The coding of factors of the fixed part, as lme4's ``contrasts``:
        ``{"f": "contr.sum"}`` (also ``"contr.helmert"``, ``"contr.poly"``,
        ``"contr.treatment"``, ``"contr.treatment(base = 2)"``, ``"contr.SAS"``).

    Attributes
    ----------
    design : Design
        The model's formula, names, terms and the rows it was built from.
    problem : LinearProblem
        The criterion as a function of θ, on the model's cross-products.
    rows : RowSource
        Where the rows are, for results that need them.
    state : FittedState
        The estimates (after :meth:`fit`).

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
        offset: Any = None,
        contrasts: Any = None,
    ) -> None:
        reml = arguments.boolean(reml, "reml")
        # The design stage (and formulaic with it) is imported on first use, not
        # with the package.
        from ..design import build_design

        try:
            design = build_design(
                formula, data, weights=weights, missing=missing, offset=offset, contrasts=contrasts
            )
        except MixedModelsError as err:
            # The message names the fault; the parser's frames would only bury it.
            raise err.with_traceback(None) from None
        if not design.terms:
            raise FormulaError(
                f"no random-effects terms in {formula!r}: add at least one term such as "
                "(1 | group); for a model without random effects use ordinary least squares"
            )
        self._compose(design, _cross_products_of(design), reml, InMemoryRows(design))
        # What update() refits with by default (the data by reference, not copied).
        self._arguments = {
            "data": data,
            "weights": weights,
            "missing": missing,
            "offset": offset,
            "contrasts": contrasts,
        }

    @classmethod
    def from_cross_products(
        cls,
        cross_products: CrossProducts,
        design: Any,
        *,
        reml: bool,
        rows: RowSource,
        fitted_at: OptimizationSummary | None = None,
    ) -> LinearMixedModel:
        """A model from cross-products computed elsewhere (stage 2 done by a front end).

        Parameters
        ----------
        cross_products : CrossProducts
            The summed blocks of AᵀA, terms in ``design.terms``' order.
        design : Design or a description with the same naming attributes
            ``formula``, ``fixed_names``, ``terms`` (level labels and column
            names), ``response_name``, ``dropped_columns``,
            ``n_dropped_missing``, ``fixed_spec``, ``term_specs``.
        reml : bool
            REML (True) or maximum likelihood (False).
        rows : RowSource
            Where the rows are (fitted values, residuals, predictions).
        fitted_at : OptimizationSummary, optional
            A fit's optimizer summary: the model is returned fitted at its final θ.
        """
        model = cls.__new__(cls)
        cls._compose(model, design, cross_products, reml, rows)
        if fitted_at is not None:
            cls._set_state(model, fitted_at)
        return model

    def _compose(
        self,
        design: Any,
        cp: CrossProducts,
        reml: Any,
        rows: RowSource,
        problem: LinearProblem | None = None,
    ) -> None:
        """Set the model's parts (``problem``: one already built on ``cp``, or None)."""
        self.design = design
        self.problem = (
            LinearProblem(cp, design.terms, arguments.boolean(reml, "reml"))
            if problem is None
            else problem
        )
        self.rows = rows
        self.data_name: str | None = None
        self._state: FittedState | None = None
        # Built by the first refit() and kept for the next ones.
        self._refitter: ResponseRefitter | None = None
        self._arguments: dict[str, Any] | None = None

    # -- what the model is --------------------------------------------------------------

    @property
    def formula(self) -> str:
        """The model's formula as given (lme4's ``formula(fit)``)."""
        return self.design.formula.source

    @property
    def reml(self) -> bool:
        """Whether the model is fitted by REML (else maximum likelihood)."""
        return self.problem.reml

    @property
    def cross_products(self) -> CrossProducts:
        """The blocks of AᵀA (stage 2)."""
        return self.problem.cross_products

    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds of θ (0 for the diagonal of each λ, −∞ below it)."""
        return self.problem.lower_bounds

    def objective_at(self, theta: np.ndarray, reml: bool | None = None) -> float:
        """The REML criterion or ML deviance at θ (lme4's scale); the fit is not changed."""
        theta = arguments.theta(theta, self.lower_bounds)
        if reml is not None:
            reml = arguments.boolean(reml, "reml")
        return self.problem.objective(theta, reml=reml)

    # -- fitting ----------------------------------------------------------------------------

    def fit(
        self,
        *,
        start: np.ndarray | str | None = None,
        check_convergence: bool = True,
        warn: bool = True,
        max_restarts: int = 3,
        optimizer: str = "auto",
    ) -> LinearMixedModel:
        """Estimate θ, then β, σ and the conditional modes.

        Parameters
        ----------
        start : array or "lme4", optional
            Initial θ.  By default, moment estimates of the variance components
            read off the cross-products (:func:`mixedmodels.engine.start.moment_start`),
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
        optimizer : {"auto", "quasi-newton", "bobyqa"}, default "auto"
            The quasi-Newton method with the exact gradient (the default where
            numba is installed) or BOBYQA, lme4's derivative-free default.
        """
        check_convergence = arguments.boolean(check_convergence, "check_convergence")
        warn = arguments.boolean(warn, "warn")
        if isinstance(start, str):
            start = arguments.choice(start, "start", ["lme4"])
        elif start is not None:
            start = arguments.theta(start, self.lower_bounds, "start", bounded=False)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ArgumentError(
                f"max_restarts must be a non-negative integer, not {max_restarts!r}"
            )
        summary, solution = optimize_theta(
            self.problem,
            start,
            check=check_convergence,
            max_restarts=max_restarts,
            optimizer=optimizer,
        )
        if solution is None:
            criterion = "REML criterion" if self.reml else "deviance"
            raise DataError(
                f"the {criterion} is not finite at any θ the optimizer tried: the fixed "
                "effects fit the response exactly (no residual variation left), or the "
                "response's values are too large to square in floating point"
            )
        self._set_state(summary, solution)
        if warn:
            for message in summary.messages:
                warnings.warn(message, ConvergenceWarning, stacklevel=user_stacklevel())
            if self.is_singular:
                warnings.warn(
                    "boundary (singular) fit: some variance component is estimated as zero "
                    "or a correlation as ±1; see is_singular",
                    SingularFitWarning,
                    stacklevel=user_stacklevel(),
                )
        return self

    def _set_state(self, summary: OptimizationSummary, solution: Solution | None = None) -> None:
        """The fitted state at the summary's θ (from ``solution`` when the caller has it),
        with the criterion as the solution read it."""
        if solution is None:
            # On this thread's workspace of the problem, whose blocks do not
            # change: where it was last updated at this θ, it is read as it is.
            with blas_threads(optimizer_threads(self.problem)):
                solution = self.problem.solve(summary.final, refresh=False)
        if solution.objective != summary.objective:
            summary = replace(summary, objective=solution.objective)
        self._state = FittedState.from_solution(solution, self.reml, summary)

    def update(
        self,
        formula: str | None = None,
        *,
        data: Any = None,
        reml: bool | None = None,
        **arguments: Any,
    ) -> LinearMixedModel:
        """This model refitted with a changed formula, data or arguments (lme4's ``update``).

        Parameters
        ----------
        formula : str, optional
            The new formula, where ``.`` stands for the old sides as in R:
            ``". ~ . - x"``, ``". ~ . + (1 | item)"``, ``"log(.) ~ ."``.
        data : DataFrame, optional
            New data (default: the data this model was fitted to).
        reml : bool, optional
            REML or ML (default: this model's).
        **arguments
            Any other argument of :func:`mixedmodels.lmer` (``weights``,
            ``offset``, ``contrasts``, ``missing``, ``start``,
            ``check_convergence``); the model's own are kept otherwise.

        Returns
        -------
        LinearMixedModel
            The refitted model (this one is not changed).
        """
        from ..formula.update import update_formula

        given = dict(self._arguments or {})
        if data is None and "data" not in given:
            raise ArgumentError(
                "this model does not keep its data (it was built from cross-products): "
                "pass data= to update()"
            )
        if data is not None:
            given["data"] = data
        if type(given["data"]).__module__.startswith("dask"):
            raise ArgumentError(
                "update() refits in memory; for a Dask DataFrame call mixedmodels.lmer with "
                "the updated formula (mixedmodels.formula.update_formula gives it)"
            )
        new_formula = self.formula if formula is None else update_formula(self.formula, formula)
        given.update(arguments)
        fit_options = {k: given.pop(k) for k in ("start", "check_convergence") if k in given}
        model = LinearMixedModel(
            new_formula, given.pop("data"), reml=self.reml if reml is None else reml, **given
        )
        model.fit(**fit_options)
        model.data_name = self.data_name
        return model

    def at_theta(self, theta: np.ndarray) -> LinearMixedModel:
        """A copy of this model with its estimates at a given θ, without optimizing.

        For results at another program's estimates (lme4's θ, say) or at a
        point of a grid; the design and the cross-products are shared.
        """
        theta = arguments.theta(theta, self.lower_bounds)
        given = OptimizationSummary(
            initial=theta,
            lower=self.lower_bounds.copy(),
            final=theta,
            objective=math.nan,
            n_evaluations=0,
            return_code="θ given by the caller",
            converged=True,
        )
        twin = LinearMixedModel.from_cross_products(
            self.cross_products, self.design, reml=self.reml, rows=self.rows, fitted_at=given
        )
        twin.data_name = self.data_name
        return twin

    def refit(self, y: Any) -> LinearMixedModel:
        """This model fitted to a new response: same design and blocks.

        For simulation studies, power analyses and bootstraps (lme4's
        ``refit``, MixedModels.jl's ``refit!``): only the response's blocks
        are recomputed, and θ is re-optimised from the new response's moment
        estimates (this fit's θ where there are none) with the average
        information as the optimizer's first Hessian.

        Parameters
        ----------
        y : array-like, length ``nobs``
            The new response, for the rows this model was fitted to (after
            dropping rows with missing values), in their order.

        Returns
        -------
        LinearMixedModel
            A new fitted model; this one is not changed.
        """
        state = self.state
        design = self.rows.in_memory("refit()")
        values = np.asarray(y, dtype=np.float64).reshape(-1) if np.ndim(y) else None
        if values is None or values.shape != design.y.shape:
            raise DataError(
                f"refit() needs a response with one value per row used ({len(design.y)}), "
                f"got {np.shape(y)}"
            )
        if not np.all(np.isfinite(values)):
            raise DataError("refit(): the new response has missing or infinite values")
        if self._refitter is None:
            self._refitter = ResponseRefitter(
                self.problem,
                [t.codes for t in design.terms],
                [t.z for t in design.terms],
                design.x,
                design.weights,
            )
        # With an offset the blocks hold y − offset, as the fit's do.
        response = values if design.offset is None else values - design.offset
        summary, solution, blocks = self._refitter.refit(response, state.theta)
        new_design = replace(design, y=values.copy())
        twin = LinearMixedModel.__new__(LinearMixedModel)
        LinearMixedModel._compose(
            twin,
            new_design,
            blocks,
            self.reml,
            InMemoryRows(new_design),
            self.problem.with_cross_products(blocks),
        )
        LinearMixedModel._set_state(twin, summary, solution)
        twin.data_name = self.data_name
        return twin

    def refit_ml(self) -> LinearMixedModel:
        """This model refitted by maximum likelihood from its estimates (lme4's ``refitML``).

        A model fitted by ML is returned as it is; the refit shares the
        design and the cross-products.
        """
        if not self.reml:
            return self
        ml = LinearMixedModel.from_cross_products(
            self.cross_products, self.design, reml=False, rows=self.rows
        )
        ml.data_name = self.data_name
        # Zero variances are moved off the bound first: BOBYQA started exactly
        # on a bound can stop at once.
        theta = self.state.theta.copy()
        on_bound = np.isfinite(self.lower_bounds) & (theta - self.lower_bounds < 1e-4)
        theta[on_bound] = 0.1
        return ml.fit(start=theta, check_convergence=False, warn=False)


def _cross_products_of(design: Design) -> CrossProducts:
    """Stage 2 on the design's rows, y held as residuals of the least-squares fit.

    With an offset the model is fitted to y − offset.
    """
    y = design.y if design.offset is None else design.y - design.offset
    terms = design.terms
    cp = residual_cross_products(
        [t.codes for t in terms],
        [t.z for t in terms],
        [t.n_levels for t in terms],
        design.x,
        y,
        design.weights,
    )
    if design.x.shape[1]:
        _check_residual_variation(cp, y, design.weights, design.response_name)
    return cp


# Least-squares residuals whose norm is below this fraction of the response's
# (some 450 units in the last place) are rounding error: the criterion at every θ
# is then noise, and an optimizer would chase it.
_EXACT_FIT = 1e-13


def _check_residual_variation(
    cp: CrossProducts, y: np.ndarray, weights: np.ndarray | None, response: str
) -> None:
    """Refuse a response that the fixed effects fit exactly.

    Raises
    ------
    DataError
    """
    total = float(y @ y) if weights is None else float((weights * y) @ y)
    if float(cp.xx[-1, -1]) <= _EXACT_FIT**2 * total:
        raise DataError(
            f"the fixed effects fit the response {response!r} exactly (its least-squares "
            "residuals are rounding error): no variation is left for the random effects "
            "and the residual variance to explain"
        )
