"""The generalized linear mixed model: a design, a problem in (θ, β) and, once fitted, a state.

``GeneralizedLinearMixedModel`` is composed as the linear model is:

* ``design`` — formula, names, random-effects terms (stage 1, shared with
  the linear model; the response is prepared by
  :mod:`~mixedmodels.models.glm_response`);
* ``problem`` — lme4's objectives as functions of (θ, β)
  (:class:`~mixedmodels.engine.glmm_problem.GeneralizedProblem`: PIRLS on
  the blocked factor of the linear model, a family);
* ``rows`` — the rows, for fitted values and residuals
  (:class:`~mixedmodels.models.glmm_rows.GlmmRows`);

and ``fit`` (:func:`~mixedmodels.engine.glmm_fit.fit_glmm`) adds ``state``,
the immutable :class:`~mixedmodels.results.glmm_state.GeneralizedFittedState`.
The results are the linear model's (:class:`~mixedmodels.results.accessors.FitResultsMixin`)
where they mean the same thing, and the GLMM's own where they do not (z
tests, residual types, the deviance, lme4's glmer summary).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from .. import arguments
from ..design import build_design
from ..engine.fit import blas_threads
from ..engine.glmm_fit import fit_glmm
from ..engine.glmm_problem import GeneralizedProblem
from ..errors import (
    ArgumentError,
    ConvergenceWarning,
    DataError,
    FormulaError,
    MixedModelsError,
    PirlsError,
    SeparationWarning,
    SingularFitWarning,
    user_stacklevel,
)
from ..families import Family, NegativeBinomial, get_family
from ..inference.glmm_mixin import GeneralizedInferenceMixin
from ..results.accessors import FitResultsMixin
from ..results.glmm_state import GeneralizedFittedState
from .glm_response import offset_in_formula, offset_values, prepare_response
from .glmm_rows import GlmmRows
from .separation import Separation, find_separation, fit_limit


class GeneralizedLinearMixedModel(GeneralizedInferenceMixin, FitResultsMixin):
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
        R expression of columns (``"log(expected)"``, which is the formula
        term ``offset(log(expected))``); added to the formula's ``offset()``
        terms.  A row whose offset is missing is dropped, as R does.
    missing : {"drop", "raise"}, default "drop"
        Rows with missing values in a used column are dropped (lme4's
        ``na.omit``) or refused.

    Attributes
    ----------
    design : Design
        The model's formula, names, terms and rows.
    problem : GeneralizedProblem
        lme4's objectives as functions of (θ, β).
    rows : GlmmRows
        The rows, for fitted values and residuals.
    state : GeneralizedFittedState
        The estimates (after :meth:`fit`).
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
        family = get_family(family)
        prepared = prepare_response(formula, data, family, weights)
        frame = prepared.frame
        if not frame.index.is_unique:
            frame = frame.reset_index(drop=True)
        # The offset is the design's: formula terms and offset= (an expression of columns
        # becomes a formula term, so that new rows compute it too).
        design_formula, design_offset = offset_in_formula(prepared.formula, offset, frame)
        design = build_design(
            design_formula,
            frame,
            weights=prepared.weights,
            offset=design_offset,
            missing=missing,
            allow_n=True,
        )
        if not design.terms:
            raise FormulaError(
                f"no random-effects terms in {formula!r}: add at least one term such as (1 | group)"
            )
        n = len(design.y)
        prior_weights = np.ones(n) if design.weights is None else design.weights
        offset_rows = np.zeros(n) if design.offset is None else design.offset
        family.check_response(design.y, design.weights, prepared.response_name)
        problem = GeneralizedProblem.in_memory(
            design.y, prior_weights, offset_rows, design.x, design.terms, family
        )
        self._compose(
            design,
            problem,
            GlmmRows(design, prior_weights, offset_rows),
            formula,
            prepared.response_name,
            prepared.response_levels,
        )

    @classmethod
    def from_problem(
        cls,
        problem: GeneralizedProblem,
        design: Any,
        rows: Any,
        formula: str,
        response_name: str,
    ) -> GeneralizedLinearMixedModel:
        """A model whose rows are elsewhere (a front end built its problem: Dask).

        Parameters
        ----------
        problem : GeneralizedProblem
            The objectives, on the front end's row source.
        design : Design or a description with its naming attributes
            ``formula``, ``fixed_names``, ``terms``, ``dropped_columns``,
            ``n_dropped_missing`` (see :meth:`LinearMixedModel.from_cross_products`).
        rows : object
            Where fitted values, residuals and predictions come from.
        formula, response_name : str
            The formula as given and its response as written.
        """
        model = cls.__new__(cls)
        cls._compose(model, design, problem, rows, formula, response_name, None)
        return model

    def _compose(
        self,
        design: Any,
        problem: GeneralizedProblem,
        rows: Any,
        formula: str,
        response_name: str,
        response_levels: list[str] | None,
    ) -> None:
        self.design = design
        #: The formula as given (the design's holds the prepared response column).
        self.formula = formula
        self.response_name = response_name
        self.response_levels = response_levels
        self.problem = problem
        self.rows = rows
        self.data_name: str | None = None
        self._workspace = problem.workspace()
        self._state: GeneralizedFittedState | None = None
        # The coefficients heading to ±∞ when the fit found separation.
        self._separation: list[str] | None = None

    # -- what the model is --------------------------------------------------------------

    @property
    def family(self) -> Family:
        """The response distribution and link."""
        return self.problem.family

    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds of θ (0 for the diagonal of each λ, −∞ below it)."""
        return self.problem.lower_bounds

    @property
    def prior_weights(self) -> np.ndarray:
        """Prior weights of the rows used (trials for binomial proportions)."""
        return self.rows.prior_weights

    @property
    def offset(self) -> np.ndarray:
        """The offset of the rows used (zeros without one)."""
        return self.rows.offset

    def set_family(self, family: str | Family) -> None:
        """Use another family for the same rows (e.g. another negative binomial θ).

        The model is then unfitted; PIRLS starts from the last modes at the next fit.
        """
        family = get_family(family)
        family.check_response(self.design.y, self.design.weights, self.response_name)
        last_u = self._workspace.last_u
        self.problem = self.problem.with_family(family)
        self._workspace = self.problem.workspace()
        self._workspace.last_u = last_u
        self._state = None

    def objective_at(self, theta: Any, beta: Any, nagq: int = 1) -> float:
        """lme4's objective at (θ, β): Laplace (``nagq=1``) or adaptive quadrature (> 1).

        Evaluated on the problem's own workspace: the fit is not changed.
        """
        nagq = self._check_nagq(nagq, allow_zero=False)
        return self.problem.objective(
            np.asarray(theta, dtype=np.float64), np.asarray(beta, dtype=np.float64), nagq
        )

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
        """Estimate θ and β (see :mod:`mixedmodels.engine.glmm_fit`).

        Parameters
        ----------
        nagq : int, default 1
            1 for the Laplace approximation, > 1 for adaptive Gauss–Hermite
            quadrature with that many points (one scalar random-effects term
            only), 0 for θ alone with β estimated inside PIRLS.
        start : dict, optional
            ``{"theta": ..., "beta": ...}`` to start from (lme4's
            ``start = list(theta =, fixef =)``).
        hessian : bool, default True
            Estimate the Hessian of the objective in (θ, β), for lme4's
            standard errors and convergence check (lme4's ``calc.derivs``);
            False gives R_X-based standard errors.
        check_convergence : bool, default True
            Report a doubtful optimum found by the gradient and Hessian.
        warn : bool, default True
            Warn about doubtful convergence and singular fits.
        """
        nagq = self._check_nagq(nagq)
        given = self._check_start(start) if start is not None else None
        self._separation = None
        with blas_threads(1):
            try:
                optimum = fit_glmm(
                    self.problem,
                    nagq,
                    given,
                    hessian=bool(hessian),
                    check=bool(check_convergence),
                    workspace=self._workspace,
                )
                beta = None if nagq == 0 else optimum.beta
                solution = self.problem.solve(
                    optimum.theta, beta, nagq, self._workspace, optimum.known()
                )
                failure = None
            except PirlsError as err:
                failure = err
            except DataError as err:
                # Raised by the family on the rows (an exactly fitted response): named here.
                raise DataError(
                    f"{err} (response {self.response_name!r}, {self.family.name} family)"
                ) from None
            # A fit that fails or does not converge may be heading to ±∞: separation?
            # (Checked on rows in memory.)
            if isinstance(self.rows, GlmmRows) and (
                failure is not None or not optimum.summary.converged
            ):
                separation = find_separation(self.design.x, self.design.y, self.family)
                if separation is not None:
                    optimum, solution = self._fit_limit(separation, nagq)
                    failure = None
        if failure is not None:
            raise MixedModelsError(
                f"the conditional modes of {self.formula!r} ({self.family.name}, "
                f"{self.family.link.name} link) could not be found: {failure}.  The "
                "link may not reach the responses (an identity or log link giving "
                "means outside the family's range), or the model may be too rich for "
                "the data; check the data or change the link"
            ) from None
        if not math.isfinite(solution.objective):
            raise DataError("the objective is not finite at the estimates")
        self._state = GeneralizedFittedState.from_fit(solution, optimum, nagq, self.family)
        if warn:
            self._warn()
        return self

    def _fit_limit(self, separation: Separation, nagq: int):
        """The separated fit's limit (:mod:`~mixedmodels.models.separation`) and its solution."""
        names = separation.coefficients(self.design.fixed_names)
        message = (
            f"complete separation: the fixed effects predict the outcomes of "
            f"{int(separation.rows.sum())} rows exactly, so the estimates of "
            f"{', '.join(names)} head to ±∞; they are reported where those rows' fitted "
            "values are within 1e-10 of the end of their range, with meaningless standard "
            "errors (a boundary fit: the likelihood has no maximum at finite values)"
        )
        try:
            limit = fit_limit(
                self.problem,
                self.design.x,
                self.design.y,
                self.prior_weights,
                self.offset,
                self.design.terms,
                separation,
                nagq,
                message,
            )
            solution = self.problem.solve(
                limit.theta, limit.beta, max(nagq, 1), self.problem.workspace()
            )
        except (PirlsError, ValueError) as err:
            raise MixedModelsError(
                f"the fixed effects of {self.formula!r} separate the outcomes completely "
                f"(the estimates of {', '.join(names)} head to ±∞) and the rest cannot be "
                f"fitted: {err}"
            ) from None
        self._separation = names
        return limit.optimum, solution

    def _warn(self) -> None:
        if self._separation:
            warnings.warn(
                self.state.optimizer.messages[0], SeparationWarning, stacklevel=user_stacklevel()
            )
            return
        for message in self.state.optimizer.messages:
            warnings.warn(message, ConvergenceWarning, stacklevel=user_stacklevel())
        if self.is_singular:
            warnings.warn(
                "boundary (singular) fit: some variance component is estimated as zero "
                "or a correlation as ±1; see is_singular",
                SingularFitWarning,
                stacklevel=user_stacklevel(),
            )

    def _check_start(self, start: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(start, dict) or not {"theta", "beta"} <= set(start):
            raise ArgumentError("start must be a dict with 'theta' and 'beta'")
        theta = np.asarray(start["theta"], dtype=np.float64).reshape(-1)
        beta = np.asarray(start["beta"], dtype=np.float64).reshape(-1)
        if theta.shape != self.lower_bounds.shape:
            raise ArgumentError(f"start['theta'] must have {len(self.lower_bounds)} values")
        if beta.shape != (self.problem.n_fixed,):
            raise ArgumentError(f"start['beta'] must have {self.problem.n_fixed} values")
        return np.maximum(theta, self.lower_bounds), beta

    def _check_nagq(self, nagq: Any, allow_zero: bool = True) -> int:
        if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or nagq < 0:
            raise ArgumentError(f"nagq must be a non-negative integer, got {nagq!r}")
        if nagq > 100:
            raise ArgumentError(f"nagq must be at most 100, got {nagq}")
        if nagq == 0 and not allow_zero:
            raise ArgumentError("nagq = 0 estimates β inside PIRLS: give nagq ≥ 1 here")
        terms = self.design.terms
        if nagq > 1 and (len(terms) != 1 or terms[0].q != 1):
            raise ArgumentError(
                "nAGQ > 1 is only available for models with a single, scalar random-effects "
                f"term; {self.design.formula.source!r} has {len(terms)} term(s) with "
                f"{', '.join(str(t.q) for t in terms)} random effect(s) per level"
            )
        return int(nagq)

    # -- state ---------------------------------------------------------------------------

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular`` (a diagonal element of some λ within 1e-4 of zero), or a
        separated fit (:attr:`separation`): estimates on the boundary either way."""
        return super().is_singular or bool(self.separation)

    @property
    def separation(self) -> list[str]:
        """The fixed effects heading to ±∞ because they separate the outcomes (empty when
        they do not; see :mod:`~mixedmodels.models.separation`)."""
        self.state  # noqa: B018 - raises NotFittedError before a fit
        return list(self._separation or [])

    # -- results that differ from the linear model's ------------------------------------

    @property
    def reml(self) -> bool:
        """GLMMs are fitted by maximum likelihood (an approximation of it)."""
        return False

    @property
    def nobs(self) -> int:
        return self.problem.n_obs

    def refit_ml(self) -> GeneralizedLinearMixedModel:
        """The model itself: GLMMs are fitted by maximum likelihood (lme4 does not refit
        them in ``anova``)."""
        return self

    @property
    def stderr_source(self) -> str:
        """``"Hessian"`` or ``"RX"``: what the standard errors come from (as lme4)."""
        return self.state.stderr_source

    @property
    def vcov_rx(self) -> pd.DataFrame:
        """σ²(R_XᵀR_X)⁻¹ at the final weights (lme4's ``vcov(use.hessian = FALSE)``)."""
        names = self.design.fixed_names
        return pd.DataFrame(self.state.vcov_rx, index=names, columns=names)

    @property
    def coefs(self) -> pd.DataFrame:
        """Estimates, standard errors, z values and two-sided normal p values (lme4's)."""
        state = self.state
        se = state.std_errors
        z = state.beta / se
        return pd.DataFrame(
            {
                "estimate": state.beta,
                "std_error": se,
                "z_value": z,
                "p_value": 2.0 * scipy.stats.norm.sf(np.abs(z)),
            },
            index=self.design.fixed_names,
        )

    def coef_table(
        self,
        ddf: str | None = None,  # noqa: ARG002 (the linear signature)
        *,
        conf_int: bool = False,
        level: float = 0.95,
    ) -> pd.DataFrame:
        """The z tests as a coefficient table (``df`` = ∞: z is t with infinite df).

        ``ddf`` is accepted for the linear model's signature and ignored: a
        GLMM's Wald tests are asymptotic, as lme4's.  ``conf_int`` adds
        ``conf_low`` and ``conf_high``, the Wald intervals at ``level``.
        """
        coefs = self.coefs
        table = pd.DataFrame(
            {
                "estimate": coefs["estimate"],
                "std_error": coefs["std_error"],
                "df": np.inf,
                "t_value": coefs["z_value"],
                "p_value": coefs["p_value"],
            }
        )
        if conf_int:
            from ..results.tidy import with_conf_int

            table = with_conf_int(table, arguments.level(level))
        return table

    @property
    def n_params(self) -> int:
        """Parameters in logLik's df: θ, β, and the dispersion (Gamma, inverse Gaussian)
        or the negative binomial θ, as lme4 counts them."""
        family = self.family
        extra = 1 if family.has_dispersion or isinstance(family, NegativeBinomial) else 0
        return self.problem.n_theta + self.problem.n_fixed + extra

    @property
    def deviance(self) -> float:
        """Σ of squared deviance residuals at the conditional modes (lme4's ``deviance``)."""
        return self.state.deviance

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as ``as.data.frame(VarCorr(fit))``; a residual row only
        for families with a dispersion."""
        table = super().varcorr
        return table if self.family.has_dispersion else table.iloc[:-1].reset_index(drop=True)

    def random_effect_sds(self) -> list[np.ndarray]:
        """Per term, the standard deviations of its random effects."""
        return [np.sqrt(np.diag(cov)) for cov in self.covariance_matrices()]

    @property
    def linear_predictor(self) -> pd.Series:
        """η̂ = o + Xβ̂ + Zb̂ (link scale, offset included)."""
        return self.rows.linear_predictor(self.state)

    def residuals(self, type: str = "deviance") -> pd.Series:
        """Residuals of type ``"deviance"``, ``"pearson"``, ``"response"`` or ``"working"``."""
        return self.rows.residuals(self.state, type)

    def predict(
        self,
        newdata: Any = None,
        *,
        type: str = "link",
        random: bool = True,
        allow_new_levels: bool = False,
        offset: Any = None,
    ) -> pd.Series:
        """Predictions on the link (``type="link"``) or response scale (``"response"``).

        Parameters
        ----------
        newdata : DataFrame or dict of columns, optional
            Rows to predict; default the rows of the fit.
        type : {"link", "response"}
            η = o + Xβ̂ (+ Zb̂), or the mean g⁻¹(η) (lme4's ``type``).
        random : bool, default True
            Add the conditional modes (``False``: lme4's ``re.form = NA``).
        allow_new_levels : bool, default False
            Give levels not seen in the fit a zero random effect.
        offset : array-like, optional
            The new rows' offset, for a model fitted with an offset given as an
            array (one fitted with offset terms or an offset column or
            expression computes the new rows' own).
        """
        from ..inference.predict import predict_new_rows

        if type not in ("link", "response"):
            raise ArgumentError(f"type must be 'link' or 'response', not {type!r}")
        state = self.state
        if not isinstance(self.rows, GlmmRows):  # rows elsewhere (Dask): lazy predictions
            return self.rows.predict(self, newdata, type, random, allow_new_levels)
        if newdata is None:
            if random and offset is None:
                eta = np.asarray(state.eta)
            else:
                given = self.offset if offset is None else offset_values(offset, len(self.design.y))
                eta = given + self.design.x @ state.beta
                if random:
                    eta = eta + (np.asarray(state.eta) - self.offset - self.design.x @ state.beta)
            index = self.design.row_index
        else:
            predicted = predict_new_rows(
                self, newdata, random=random, allow_new_levels=allow_new_levels, offset=offset
            )
            eta, index = predicted.to_numpy(), predicted.index
        values = self.family.link.inverse(eta) if type == "response" else eta
        return pd.Series(values, index=index, name="prediction")

    def summary(self, correlation: bool | None = None):  # type: ignore[override]
        """lme4's glmer summary (:class:`~mixedmodels.results.summary.ModelSummary`):
        ``print(m.summary())``; HTML in a notebook."""
        from ..results.glmm_summary import summarize_glmm

        return summarize_glmm(self, correlation=correlation)
