"""statsmodels' ``MixedLMResults`` for fits of this package's engine.

The estimates are the engine's (lme4's optimum); everything is reported in
statsmodels' parameterization and with its names:

* ``params``: the fixed effects, then ``cov_re``'s lower triangle and the
  variance components *relative to the scale* (``"Group Var"``,
  ``"Group x Time Cov"``, ``"cask Var"``); ``params_object`` holds the same
  as a :class:`~.params.MixedLMParams`;
* ``cov_params()``: statsmodels' inverse of minus the Hessian of the
  log-likelihood profiled over the scale, in (fixed effects, relative
  covariance parameters) — so ``bse_fe`` are statsmodels' numbers (which agree
  with lme4's ``vcov`` where statsmodels and lme4 agree), ``bse`` of a variance
  is relative to the scale and ``bse_re = √scale · bse``; parameters held
  fixed by ``free`` get zeros, those on the boundary (a zero variance), where
  the log-likelihood has no two-sided derivative, NaN;
* ``aic`` and ``bic`` are NaN for REML fits, as in statsmodels.

Results come as pandas objects when the model was built from a formula or
from pandas arrays and as numpy arrays otherwise, as statsmodels' wrappers
return them.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.stats

from ...errors import MixedModelsError
from . import evaluation
from .contrasts import ContrastResults, t_test, wald_test
from .fitting import FitOutcome, FittedState
from .params import MixedLMParams

if TYPE_CHECKING:
    from .model import MixedLM

__all__ = ["MixedLMResults"]


class MixedLMResults:
    """A fitted :class:`~.model.MixedLM`, with statsmodels' attributes.

    Attributes
    ----------
    model : MixedLM
    params_object : MixedLMParams
        Fixed effects and covariance parameters relative to the scale.
    fe_params, cov_re, cov_re_unscaled, vcomp, scale
        The estimates (``cov_re`` and ``vcomp`` on the data's scale).
    fitted_state : FittedState
        The engine's estimates (square-root parameters, β, σ², modes).
    fit_outcome : FitOutcome
        What the optimizer did.
    method : {"REML", "ML"}
    converged : bool
    hist : list of dict or None
        Every evaluation of the optimizer (``fit(full_output=True)``).
    """

    use_t = False

    def __init__(
        self,
        model: MixedLM,
        state: FittedState,
        outcome: FitOutcome,
        *,
        free: MixedLMParams | None = None,
        kept_fe: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.fitted_state = state
        self.fit_outcome = outcome
        self.reml = state.reml
        self.method = "REML" if state.reml else "ML"
        self.converged = bool(outcome.converged)
        self.hist = outcome.history
        self.freepat = free
        self.cov_pen = model.cov_pen
        self.use_sqrt = model.use_sqrt
        self.k_fe = model.k_fe
        self.k_re = model.k_re
        self.k_re2 = model.k_re2
        self.k_vc = model.k_vc
        self.nobs = model.nobs
        self.scale = float(state.scale)
        self.params_object = evaluation.params_object(model, state.beta, state.psi)
        self._kept_fe = kept_fe
        self.summary_cache: dict[str, Any] = {}

    # -- presentation helpers ---------------------------------------------------------

    @property
    def _pandas(self) -> bool:
        return bool(self.model.data.use_pandas)

    def _vector(self, values: np.ndarray, names: list[str]) -> np.ndarray | pd.Series:
        values = np.asarray(values, dtype=np.float64)
        return pd.Series(values, index=list(names)) if self._pandas else values

    def _matrix(self, values: np.ndarray, names: list[str]) -> np.ndarray | pd.DataFrame:
        values = np.asarray(values, dtype=np.float64)
        if not self._pandas:
            return values
        return pd.DataFrame(values, index=list(names), columns=list(names))

    @property
    def _param_names(self) -> list[str]:
        return list(self.model.data.param_names)

    # -- estimates --------------------------------------------------------------------

    @property
    def params(self) -> np.ndarray | pd.Series:
        """Fixed effects, then covariance parameters relative to the scale."""
        return self._vector(
            np.concatenate([self.fitted_state.beta, self.fitted_state.psi]), self._param_names
        )

    @property
    def fe_params(self) -> np.ndarray | pd.Series:
        return self._vector(self.fitted_state.beta, self.model.data.xnames)

    @property
    def cov_re_unscaled(self) -> np.ndarray | pd.DataFrame:
        """Covariance of the groups' random effects divided by the scale."""
        return self._matrix(self.params_object.cov_re, self.model.data.exog_re_names)

    @property
    def cov_re(self) -> np.ndarray | pd.DataFrame:
        """Covariance of the groups' random effects."""
        return self._matrix(
            self.scale * np.asarray(self.params_object.cov_re), self.model.data.exog_re_names
        )

    @property
    def vcomp(self) -> np.ndarray:
        """The variance components, on the data's scale.

        For formula models with lme4 terms of other groupings, their variances
        follow (their covariances are in ``params``, not here).
        """
        layout = self.model.layout
        variances = [
            block.offset + k
            for block in layout.blocks
            if block.role != "re"
            for k, (i, j) in enumerate(block.entries())
            if i == j
        ]
        return self.scale * self.fitted_state.psi[variances]

    @property
    def df_resid(self) -> int:
        return self.nobs - self.k_fe

    # -- standard errors ------------------------------------------------------------------

    def _estimated(self) -> np.ndarray:
        """Which entries of ``params`` are estimated (not held by ``free`` or the model)."""
        k = self.k_fe + len(self.fitted_state.psi)
        out = np.ones(k, dtype=bool)
        out[self.k_fe :] = ~self.model.layout.structural
        if self.freepat is not None:
            out &= self.freepat.get_packed(use_sqrt=False, has_fe=True) != 0
        return out

    @cached_property
    def _cov(self) -> np.ndarray:
        hessian = evaluation.hessian_at(
            self.model, self.fitted_state.beta, self.fitted_state.psi, self.reml
        )
        return covariance_from_hessian(hessian, self._estimated(), self._kept_fe)

    def cov_params(self, r_matrix: Any = None, column: Any = None) -> np.ndarray | pd.DataFrame:
        """Covariance of ``params``: the inverse of minus the log-likelihood's Hessian.

        With ``r_matrix`` (or ``column``), the covariance of R·params (or of
        those entries).
        """
        cov = self._cov
        if r_matrix is not None:
            r = np.atleast_2d(np.asarray(r_matrix, dtype=np.float64))
            return r @ cov @ r.T
        if column is not None:
            idx = np.atleast_1d(column)
            return cov[np.ix_(idx, idx)]
        return self._matrix(cov, self._param_names)

    @property
    def normalized_cov_params(self) -> np.ndarray:
        return self._cov

    @property
    def bse(self) -> np.ndarray | pd.Series:
        """Standard errors of ``params``."""
        with np.errstate(invalid="ignore"):
            return self._vector(np.sqrt(np.diag(self._cov)), self._param_names)

    @property
    def bse_fe(self) -> np.ndarray | pd.Series:
        with np.errstate(invalid="ignore"):
            values = np.sqrt(np.diag(self._cov)[: self.k_fe])
        return self._vector(values, self.model.data.xnames)

    @property
    def bse_re(self) -> np.ndarray | pd.Series:
        """Standard errors of the covariance parameters on the data's scale (√scale · bse)."""
        with np.errstate(invalid="ignore"):
            values = np.sqrt(self.scale * np.diag(self._cov)[self.k_fe :])
        return self._vector(values, self._param_names[self.k_fe :])

    @property
    def tvalues(self) -> np.ndarray | pd.Series:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.concatenate([self.fitted_state.beta, self.fitted_state.psi]) / np.sqrt(
                np.diag(self._cov)
            )
        return self._vector(values, self._param_names)

    @property
    def pvalues(self) -> np.ndarray | pd.Series:
        """Two-sided p-values of the z statistics."""
        t = np.asarray(self.tvalues, dtype=np.float64)
        return self._vector(2 * scipy.stats.norm.sf(np.abs(t)), self._param_names)

    def conf_int(self, alpha: float = 0.05, cols: Any = None) -> np.ndarray | pd.DataFrame:
        """Wald intervals ``params ± z(1 − alpha/2)·bse`` (columns 0 and 1)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        z = scipy.stats.norm.ppf(1 - alpha / 2)
        params = np.concatenate([self.fitted_state.beta, self.fitted_state.psi])
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.diag(self._cov))
        out = np.column_stack([params - z * se, params + z * se])
        if cols is not None:
            out = out[np.atleast_1d(cols)]
            names = [self._param_names[i] for i in np.atleast_1d(cols)]
        else:
            names = self._param_names
        return pd.DataFrame(out, index=names) if self._pandas else out

    # -- fit statistics -----------------------------------------------------------------

    @property
    def llf(self) -> float:
        """Log-likelihood (REML log-likelihood for REML fits)."""
        return float(self.fitted_state.loglike)

    def _df(self) -> int:
        return int(self._estimated().sum()) + 1

    @property
    def aic(self) -> float:
        """Akaike's criterion; NaN for REML fits (as statsmodels)."""
        return math.nan if self.reml else -2 * (self.llf - self._df())

    @property
    def bic(self) -> float:
        """Schwarz's criterion; NaN for REML fits (as statsmodels)."""
        return math.nan if self.reml else -2 * self.llf + math.log(self.nobs) * self._df()

    @property
    def is_singular(self) -> bool:
        """Whether a variance is estimated as zero (or a correlation as ±1), lme4's test."""
        layout = self.model.layout
        diag = layout.diagonal() & ~layout.structural
        return bool(np.any(self.fitted_state.phi[diag] < 1e-4))

    @property
    def convergence_messages(self) -> list[str]:
        return list(self.fit_outcome.messages)

    @property
    def n_evaluations(self) -> int:
        return int(self.fit_outcome.n_evaluations)

    @property
    def lme4_formula(self) -> str | None:
        return self.model.lme4_formula

    @cached_property
    def lmm(self):
        """The same model as lme4 writes it, fitted by :func:`~mixedmodels.lmer` (on first use).

        For formula models with an lme4 spelling (:attr:`lme4_formula`): the
        lme4-style results (``varcorr``, ``ranef`` of every grouping,
        ``confint``, ``summary()``) of the model this fit estimates.
        """
        formula = self.model.lme4_formula
        built = self.model.formula_model
        if formula is None or built is None:
            raise MixedModelsError(
                "this model has no lme4 formula (it was given as arrays, or a variance "
                "component shares one variance across several columns)"
            )
        from ...models.lmm import LinearMixedModel

        return LinearMixedModel(formula, built.frame, reml=self.reml).fit(warn=False)

    def group_sizes(self) -> np.ndarray:
        """Rows per group, groups in sorted order."""
        if "group_sizes" not in self.summary_cache:
            codes = self.model.grouped_data.group_codes
            self.summary_cache["group_sizes"] = np.bincount(codes, minlength=self.model.n_groups)
        return self.summary_cache["group_sizes"]

    # -- random effects and fitted values -----------------------------------------------

    def _re_names(self, g: int) -> list[str]:
        names = list(self.model.data.exog_re_names)
        for component in self.model.grouped_data.vc:
            names += [f"{component.name}[{c}]" for c in component.column_names[g]]
        return names

    def _group_effects(self) -> list[np.ndarray]:
        layout = self.model.layout
        modes = self.fitted_state.modes
        main = layout.main
        n_vc = len(self.model.grouped_data.vc)
        out = []
        for g in range(self.model.n_groups):
            pieces = [] if main is None else [modes[main.term][g, : main.q]]
            pieces += [layout.component_effects(modes, k, g) for k in range(n_vc)]
            out.append(np.concatenate(pieces) if pieces else np.zeros(0))
        return out

    @cached_property
    def random_effects(self) -> dict[Any, pd.Series]:
        """Conditional modes (means) of each group's random effects: label → Series.

        The groups' own effects (named as ``exog_re``) then each variance
        component's (``"name[column]"``).
        """
        effects = self._group_effects()
        return {
            label: pd.Series(effects[g], index=self._re_names(g))
            for g, label in enumerate(self.model.group_labels)
        }

    @cached_property
    def random_effects_cov(self) -> dict[Any, pd.DataFrame]:
        """Conditional covariance of each group's random effects given the data (β fixed)."""
        model = self.model
        data = model.grouped_data
        if data.extra:
            raise MixedModelsError(
                "random_effects_cov is available for statsmodels' models (random effects "
                "nested in the groups); this model has terms of other groupings"
            )
        layout = model.layout
        phi = self.fitted_state.phi
        main = layout.main
        lam_main = main.factor(phi) if main is not None else np.zeros((0, 0))
        roots = [phi[b.offset] for b in layout.blocks if b.role == "vc"]
        order = np.argsort(data.group_codes, kind="stable")
        bounds = np.searchsorted(data.group_codes[order], np.arange(model.n_groups + 1))
        out = {}
        for g, label in enumerate(model.group_labels):
            rows = order[bounds[g] : bounds[g + 1]]
            columns = [] if data.exog_re is None else [data.exog_re[rows]]
            scales = [np.ones(0)]
            for component, root in zip(data.vc, roots, strict=True):
                columns.append(component.values[rows, : component.widths[g]])
                scales.append(np.full(component.widths[g], root))
            z = np.hstack(columns) if columns else np.zeros((len(rows), 0))
            q = z.shape[1]
            lam = np.zeros((q, q))
            lam[: model.k_re, : model.k_re] = lam_main
            diag = np.concatenate(scales)
            lam[model.k_re :, model.k_re :] = np.diag(diag)
            zl = z @ lam
            inner = zl.T @ zl + np.eye(q)
            cov = self.scale * lam @ np.linalg.solve(inner, lam.T)
            names = self._re_names(g)
            out[label] = pd.DataFrame(cov, index=names, columns=names)
        return out

    def _fitted_array(self) -> np.ndarray:
        layout = self.model.layout
        fitted = self.model.exog @ self.fitted_state.beta
        for term, modes in zip(layout.terms, self.fitted_state.modes, strict=True):
            fitted = fitted + np.einsum("nq,nq->n", term.z, modes[term.codes])
        return fitted

    @cached_property
    def fittedvalues(self) -> np.ndarray | pd.Series:
        """Fitted values with the random effects (Xβ + Zb)."""
        values = self._fitted_array()
        labels = self.model.data.row_labels
        if self._pandas and labels is not None:
            return pd.Series(values, index=labels)
        return values

    @cached_property
    def resid(self) -> np.ndarray | pd.Series:
        """Response minus ``fittedvalues``."""
        values = self.model.endog - np.asarray(self.fittedvalues)
        labels = self.model.data.row_labels
        if self._pandas and labels is not None:
            return pd.Series(values, index=labels)
        return values

    def predict(self, exog: Any = None, transform: bool = True) -> np.ndarray | pd.Series:
        """Predictions of the fixed part only (Xβ), as statsmodels' ``predict``.

        ``exog``: for a formula model, new data holding the formula's columns
        (rows with a missing value predict NaN); otherwise a matrix.
        """
        beta = self.fitted_state.beta
        formula = self.model.formula_model
        if exog is None:
            values = self.model.exog @ beta
            labels = self.model.data.row_labels
            return pd.Series(values, index=labels) if self._pandas else values
        if formula is not None and transform and not isinstance(exog, np.ndarray):
            from ...inference.predict import NewRows, design_fixed_matrix

            # Read as the fit read its data: unseen levels refused, missing rows NaN.
            rows = NewRows.read(formula.design, exog)
            x = design_fixed_matrix(formula.design, rows)
            return pd.Series(x @ beta, index=rows.frame.index)
        return self.model.predict(beta, np.asarray(exog, dtype=np.float64))

    # -- tests --------------------------------------------------------------------------

    def t_test(self, r_matrix: Any, use_t: bool | None = None) -> ContrastResults:
        """Tests of linear combinations of the fixed effects (``r_matrix``: k_fe columns).

        z tests, or t tests on the residual degrees of freedom with ``use_t``.
        """
        return t_test(self, r_matrix, bool(use_t))

    def wald_test(
        self, r_matrix: Any, q_matrix: Any = None, use_f: bool | None = None, scalar: bool = True
    ) -> ContrastResults:
        """Joint Wald test of R·params = q (chi-squared; F with ``use_f``).

        ``scalar=False`` gives the statistic as a 1×1 array, as statsmodels once did.
        """
        out = wald_test(self, r_matrix, q_matrix, bool(use_f))
        if not scalar:
            out.statistic = np.array([[out.statistic]])
        return out

    def f_test(self, r_matrix: Any, q_matrix: Any = None) -> ContrastResults:
        """Joint F test of R·params = q."""
        return wald_test(self, r_matrix, q_matrix, True)

    def profile_re(
        self,
        re_ix: Any,
        vtype: str,
        num_low: int = 5,
        dist_low: float = 1.0,
        num_high: int = 5,
        dist_high: float = 1.0,
        **fit_kwargs: Any,
    ) -> np.ndarray:
        """Profile likelihood of one variance (see :func:`.profile.profile_re`)."""
        from .profile import profile_re

        return profile_re(self, re_ix, vtype, num_low, dist_low, num_high, dist_high, fit_kwargs)

    # -- summary ------------------------------------------------------------------------

    def summary(
        self,
        yname: str | None = None,
        xname_fe: list[str] | None = None,
        xname_re: list[str] | None = None,
        title: str | None = None,
        alpha: float = 0.05,
    ):
        """statsmodels' summary: model facts, then a row per parameter."""
        from .summary import make_summary

        return make_summary(self, yname, xname_fe, xname_re, title, alpha)

    def remove_data(self) -> None:
        """Drop the model's arrays (for smaller pickles); the summary keeps working."""
        self.summary_cache["llf"] = self.llf
        self.group_sizes()
        _ = self._cov
        for name in ("fittedvalues", "resid", "random_effects", "random_effects_cov"):
            self.__dict__.pop(name, None)
        self.model.remove_data()

    def __repr__(self) -> str:
        shown = self.model.lme4_formula or self.model.formula or "arrays"
        return f"<MixedLMResults {shown!r} ({self.method})>"


def covariance_from_hessian(
    hessian: np.ndarray, estimated: np.ndarray, kept_fe: np.ndarray | None = None
) -> np.ndarray:
    """statsmodels' ``cov_params``: the inverse of −H over the estimated parameters.

    Parameters held fixed get zero rows; parameters where the Hessian is not
    defined (a variance on the boundary: no two-sided derivative) get NaN and
    are left out of the inversion, as are fixed effects the lasso dropped
    (``kept_fe`` False).
    """
    defined = estimated & np.isfinite(np.diag(hessian))
    if kept_fe is not None:
        defined[: len(kept_fe)] &= kept_fe
    while True:
        index = np.flatnonzero(defined)
        block = hessian[np.ix_(index, index)]
        bad = ~np.all(np.isfinite(block), axis=1)
        if not bad.any():
            break
        defined[index[bad]] = False
    cov = np.zeros_like(hessian)
    undefined = estimated & ~defined
    cov[undefined, :] = math.nan
    cov[:, undefined] = math.nan
    if len(index):
        try:
            cov[np.ix_(index, index)] = np.linalg.inv(-block)
        except np.linalg.LinAlgError:
            cov[np.ix_(index, index)] = math.nan
    return cov
