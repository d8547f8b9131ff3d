"""statsmodels' ``MixedLM`` on this package's engine: the array interface and ``from_formula``.

``MixedLM(endog, exog, groups, exog_re=None, exog_vc=None, use_sqrt=True,
missing="none")`` takes statsmodels' arrays; ``MixedLM.from_formula`` (also
:func:`mixedlm`) takes a formula and data, statsmodels' ``re_formula`` and
``vc_formula``, and, beyond statsmodels, lme4 bar terms in the formula and the
article's dictionary forms (``docs/statsmodels.md``).  Either way the model is
fitted by this package's engine — the blocked Cholesky factor of lme4's
penalised least squares and BOBYQA — never by statsmodels, and reported with
statsmodels' names and parameterization (:class:`.results.MixedLMResults`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ...design import aliased_columns
from ...errors import MixedModelsError, RankDeficiencyWarning
from . import derivatives
from .fitting import FitOutcome, fitted_state, optimize, start_phi
from .formula_model import FormulaModel, build_from_formula
from .grouped import GroupedData, VCSpec, from_arrays
from .layout import Layout
from .likelihood import Likelihood
from .params import MixedLMParams
from .warning_classes import BoundaryWarning, MixedLMConvergenceWarning, SingularMatrixWarning
from .warning_classes import warn as _warn

__all__ = ["MixedLM", "ModelData", "mixedlm"]

# Keyword arguments statsmodels' fit passes to scipy's optimizers; accepted (the
# engine's BOBYQA has its own settings), anything else is warned about.
_OPTIMIZER_KWARGS = ("gtol", "maxiter", "eps", "maxcor", "ftol", "tol", "disp", "maxls")
# A relative variance this small counts as zero (a singular covariance matrix).
_SINGULAR = 1e-10


@dataclass
class ModelData:
    """statsmodels' ``model.data``: the names of everything.

    Attributes
    ----------
    xnames : list of str
        The fixed effects (``exog_names``).
    ynames : str
        The response (``endog_names``).
    exog_re_names : list of str
        The groups' random effects (the rows and columns of ``cov_re``).
    exog_re_names_full : list of str
        Names of ``cov_re``'s parameters (``"a Var"``, ``"a x b Cov"``).
    vcomp_names : list of str
        Names of the variance components (and of other terms' parameters).
    param_names : list of str
        Everything in ``params``.
    row_labels : pandas.Index or None
        Labels of the rows used (pandas input).
    frame : pandas.DataFrame or None
        The data rows used (formula models).
    """

    xnames: list[str]
    ynames: str
    exog_re_names: list[str]
    exog_re_names_full: list[str]
    vcomp_names: list[str]
    param_names: list[str]
    row_labels: pd.Index | None = None
    frame: pd.DataFrame | None = None
    use_pandas: bool = False


class MixedLM:
    """A linear mixed model as statsmodels writes it, fitted by this package's engine.

    Parameters
    ----------
    endog : array-like (n,)
        The response.
    exog : array-like (n, k_fe)
        The fixed-effects design.
    groups : array-like (n,)
        The group of each row; groups are independent.
    exog_re : array-like (n, k_re), optional
        Columns with correlated random coefficients per group (covariance
        ``cov_re``).  Default: a random intercept, unless ``exog_vc`` is given.
    exog_vc : VCSpec or dict, optional
        Variance components: ``exog_vc[name][group]`` is a matrix (the group's
        rows × any number of columns) whose columns get independent random
        coefficients of one shared variance (statsmodels' deprecated dict
        form; a :class:`VCSpec` holds the same per group).
    use_sqrt : bool, default True
        Whether packed parameter vectors (``start_params``, ``free``,
        :meth:`score`) hold the Cholesky factor of ``cov_re`` and the roots of
        the variance components.
    missing : {"none", "drop", "raise"}, default "none"
        Missing values are refused ("none", "raise") or their rows dropped.

    Notes
    -----
    The random effects of every group are those of lme4's penalised least
    squares; estimates are lme4's (``(exog_re | groups)`` and one term per
    variance component).  statsmodels' optimizer options (``method``,
    ``maxiter``, ...) are accepted; the engine always uses BOBYQA.
    """

    def __init__(
        self,
        endog: Any,
        exog: Any,
        groups: Any,
        exog_re: Any = None,
        exog_vc: Any = None,
        use_sqrt: bool = True,
        missing: str = "none",
        **kwargs: Any,
    ) -> None:
        for key in kwargs:
            if key not in ("missing_idx", "model_spec", "formula"):
                raise ValueError(f"argument {key} not permitted for MixedLM initialization")
        data = from_arrays(endog, exog, groups, exog_re, exog_vc, missing, stacklevel=3)
        pandas_input = any(isinstance(a, (pd.Series, pd.DataFrame)) for a in (endog, exog))
        self._setup(data, use_sqrt=use_sqrt, use_pandas=pandas_input)
        self._init_args = {
            "groups": groups,
            "exog_re": exog_re,
            "exog_vc": exog_vc,
            "use_sqrt": use_sqrt,
            "missing": missing,
        }
        self._init_data = (endog, exog)

    # -- construction ---------------------------------------------------------------------

    def _setup(
        self,
        data: GroupedData,
        *,
        use_sqrt: bool,
        use_pandas: bool,
        formula_model: FormulaModel | None = None,
    ) -> None:
        aliased = aliased_columns(data.exog) if data.exog.shape[1] else []
        if aliased:
            dropped = [data.exog_names[j] for j in aliased]
            keep = [j for j in range(data.exog.shape[1]) if j not in set(aliased)]
            data.exog = data.exog[:, keep]
            data.exog_names = [data.exog_names[j] for j in keep]
            warnings.warn(
                f"exog is rank deficient: dropping {', '.join(dropped)}",
                RankDeficiencyWarning,
                stacklevel=4,
            )
        self._data = data
        self._formula = formula_model
        self.use_sqrt = bool(use_sqrt)
        self.reml = True
        self.fe_pen = None
        self.cov_pen = None
        self._freepat: MixedLMParams | None = None
        self._layout = Layout(data)
        self._likelihood = Likelihood(data, self._layout)
        layout = self._layout
        names = layout.param_names()
        self.data = ModelData(
            xnames=list(data.exog_names),
            ynames=data.endog_name,
            exog_re_names=list(data.exog_re_names),
            exog_re_names_full=names[: layout.k_re2],
            vcomp_names=[c.name for c in data.vc],
            param_names=list(data.exog_names) + names,
            row_labels=data.row_labels,
            frame=None if formula_model is None else formula_model.frame,
            use_pandas=use_pandas,
        )

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: Any,
        re_formula: Any = None,
        vc_formula: Any = None,
        subset: Any = None,
        use_sparse: bool = False,
        missing: str = "none",
        *args: Any,
        **kwargs: Any,
    ) -> MixedLM:
        """A model from a formula: statsmodels' ``MixedLM.from_formula`` (and ``mixedlm``).

        Parameters
        ----------
        formula : str
            The fixed effects (``"Weight ~ Time"``); lme4 bar terms may be added
            (``"y ~ x + (1 | school)"``).
        data : pandas.DataFrame or dict of columns
            Never modified.
        re_formula : str or dict, optional
            The groups' random effects (``"~Time"``: intercept and slope);
            default an intercept, or none when ``vc_formula`` is given (as in
            statsmodels).  A dict keyed by grouping variable gives other
            groupings their terms (``{"classroom": "~1"}``).
        vc_formula : dict, optional
            ``{name: formula}``: variance components within the groups, each
            formula's columns sharing one variance (``"0 + C(cask)"``: a
            random intercept per cask in each group).  ``{grouping: "diag" |
            "unstructured"}`` sets that grouping's covariance structure.
        subset : array-like, optional
            Rows to use (booleans or index labels).
        use_sparse : bool
            Accepted; the engine keeps its own sparse structure.
        missing : {"none", "drop", "raise"}, default "none"
        groups : str or array-like
            Keyword argument: the column (or one value per row) defining the
            groups.

        Returns
        -------
        MixedLM
        """
        if args:
            raise TypeError(f"from_formula() got unexpected positional arguments {args!r}")
        groups = kwargs.pop("groups", None)
        for key in ("eval_env", "drop_cols"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"from_formula() got unexpected keyword arguments {sorted(kwargs)!r}")
        built = build_from_formula(
            formula,
            data,
            groups,
            re_formula,
            vc_formula,
            subset=subset,
            missing=missing,
        )
        model = cls.__new__(cls)
        model._setup(built.data, use_sqrt=True, use_pandas=True, formula_model=built)
        model._init_args = None
        model._init_data = None
        model.formula = formula
        return model

    formula: str | None = None

    # -- statsmodels' attributes --------------------------------------------------------

    @property
    def endog(self) -> np.ndarray:
        return self._data.endog

    @property
    def exog(self) -> np.ndarray:
        return self._data.exog

    @property
    def exog_re(self) -> np.ndarray | None:
        return self._data.exog_re

    @property
    def groups(self) -> np.ndarray:
        return self._data.groups

    @property
    def group_labels(self) -> list[Any]:
        return list(self._data.group_labels)

    @property
    def n_groups(self) -> int:
        return self._data.n_groups

    @property
    def nobs(self) -> int:
        return self._data.nobs

    n_totobs = nobs

    @property
    def k_fe(self) -> int:
        return self._data.exog.shape[1]

    @property
    def k_re(self) -> int:
        return self._layout.k_re

    @property
    def k_re2(self) -> int:
        return self._layout.k_re2

    @property
    def k_vc(self) -> int:
        return self._layout.k_vc

    @property
    def k_params(self) -> int:
        return self.k_fe + self.k_re2

    @property
    def exog_names(self) -> list[str]:
        return self.data.xnames

    @property
    def endog_names(self) -> str:
        return self.data.ynames

    @property
    def lme4_formula(self) -> str | None:
        """The lme4 formula of a formula model (None: arrays, or no lme4 spelling)."""
        return None if self._formula is None else self._formula.translation.formula

    @cached_property
    def exog_vc(self) -> VCSpec:
        """The variance components as statsmodels' :class:`VCSpec` (per group matrices)."""
        names, colnames, mats = [], [], []
        codes = self._data.group_codes
        for component in self._data.vc:
            names.append(component.name)
            colnames.append(component.column_names)
            mats.append([component.group_matrix(codes, g) for g in range(self.n_groups)])
        return VCSpec(names, colnames, mats)

    @cached_property
    def row_indices(self) -> dict[Any, list[int]]:
        """group label → positions of its rows."""
        codes = self._data.group_codes
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(self.n_groups + 1))
        return {
            label: order[bounds[g] : bounds[g + 1]].tolist()
            for g, label in enumerate(self._data.group_labels)
        }

    def group_list(self, array: Any) -> list[np.ndarray] | None:
        """``array`` split by group (groups in sorted order)."""
        if array is None:
            return None
        array = np.asarray(array)
        return [np.array(array[rows]) for rows in self.row_indices.values()]

    @property
    def endog_li(self) -> list[np.ndarray]:
        return self.group_list(self.endog)

    @property
    def exog_li(self) -> list[np.ndarray]:
        return self.group_list(self.exog)

    @property
    def exog_re_li(self) -> list[np.ndarray] | None:
        return self.group_list(self.exog_re)

    def _get_init_kwds(self) -> dict[str, Any]:
        return {} if self._init_args is None else dict(self._init_args)

    # -- parameters ---------------------------------------------------------------------

    def _as_params(self, params: Any, has_fe: bool) -> MixedLMParams:
        if isinstance(params, MixedLMParams):
            return params
        return MixedLMParams.from_packed(params, self.k_fe, self.k_re, self.use_sqrt, has_fe)

    def _psi_of(self, po: MixedLMParams) -> np.ndarray:
        cov = np.atleast_2d(np.asarray(po.cov_re, dtype=np.float64)) if self.k_re else None
        tri = cov[np.tril_indices(self.k_re)] if cov is not None else np.zeros(0)
        vcomp = np.asarray(po.vcomp, dtype=np.float64).ravel()
        if len(tri) != self.k_re2 or len(vcomp) != self.k_vc:
            raise MixedModelsError(
                f"parameters with k_re={po.k_re}, k_vc={po.k_vc} do not fit this model "
                f"(k_re={self.k_re}, k_vc={self.k_vc})"
            )
        return np.concatenate([tri, vcomp])

    def _params_object(self, beta: np.ndarray, psi: np.ndarray) -> MixedLMParams:
        cov = np.zeros((self.k_re, self.k_re))
        rows, cols = np.tril_indices(self.k_re)
        cov[rows, cols] = psi[: self.k_re2]
        cov[cols, rows] = psi[: self.k_re2]
        return MixedLMParams.from_components(
            np.array(beta, dtype=np.float64), cov_re=cov, vcomp=psi[self.k_re2 :].copy()
        )

    def _penalty(self, beta: np.ndarray, psi: np.ndarray) -> float:
        value = 0.0
        if self.fe_pen is not None:
            value += float(self.fe_pen.func(beta))
        if self.cov_pen is not None and self.k_re:
            cov = self._params_object(beta, psi).cov_re
            value += float(self.cov_pen.func(cov, np.linalg.pinv(cov)))
        return value

    # -- the likelihood -----------------------------------------------------------------

    def loglike(self, params: Any, profile_fe: bool = True) -> float:
        """statsmodels' log-likelihood with the scale profiled out.

        Parameters
        ----------
        params : MixedLMParams or array-like
            A parameter state, or a packed vector of the covariance parameters
            only (in the ``use_sqrt`` form when the model has it).
        profile_fe : bool, default True
            Replace the fixed effects by their generalised least-squares
            estimates given the covariance parameters.

        Returns
        -------
        float
            REML or ML log-likelihood (per the last fit; REML before one),
            minus any penalties given to :meth:`fit`; −inf where the covariance
            parameters are not positive semi-definite.
        """
        po = self._as_params(params, has_fe=False)
        psi = self._psi_of(po)
        phi = self._layout.phi_from_psi(psi)
        if phi is None:
            return -math.inf
        lik = self._likelihood
        ev = lik.evaluate(self._layout.lambdas(phi))
        if ev is None:
            return -math.inf
        beta = None if profile_fe else np.asarray(po.fe_params, dtype=np.float64)
        lambdas = self._layout.lambdas(phi)
        quadratic = lik.direct_quadratic(lambdas, ev.beta if beta is None else beta)
        value = lik.loglike_of(ev, self.reml, beta, quadratic)
        if self.fe_pen is not None or self.cov_pen is not None:
            value -= self._penalty(ev.beta if beta is None else beta, psi)
        return value

    def _free_vector(self, has_fe: bool) -> np.ndarray | None:
        free = self._freepat
        if free is None:
            return None
        return free.get_packed(use_sqrt=False, has_fe=has_fe)

    def score(self, params: Any, profile_fe: bool = True) -> np.ndarray:
        """The gradient of :meth:`loglike` in the packed (``use_sqrt``) parameterization.

        With ``profile_fe`` the gradient of the covariance parameters only;
        otherwise the fixed effects' first.  Computed by Richardson-extrapolated
        central differences of :meth:`loglike`; multiplied by the ``free``
        mask of the last fit, as statsmodels does.
        """
        po = self._as_params(params, has_fe=False).copy()
        has_fe = not profile_fe
        if profile_fe:
            po.fe_params = self.get_fe_params(po.cov_re, po.vcomp)[0]
        vector = po.get_packed(use_sqrt=self.use_sqrt, has_fe=has_fe)

        def f(v: np.ndarray) -> float:
            candidate = MixedLMParams.from_packed(v, self.k_fe, self.k_re, self.use_sqrt, has_fe)
            return self.loglike(candidate, profile_fe=profile_fe)

        steps = 1e-4 * np.maximum(np.abs(vector), 0.1)
        grad = derivatives.gradient(f, vector, steps)
        mask = self._free_vector(has_fe)
        return grad if mask is None else grad * mask

    def hessian(self, params: Any) -> tuple[np.ndarray, bool]:
        """statsmodels' Hessian of the log-likelihood in (fe_params, cov_re, vcomp).

        The covariance parameters are taken as they are (not their roots),
        the fixed effects are not profiled.  Central differences of
        :meth:`loglike` (penalties left out), with steps of 1 % of a fixed
        effect's standard error and 0.1 % of a variance.  Entries that need a
        step outside the positive semi-definite covariances (a variance at
        zero) are NaN.

        Returns
        -------
        hess : ndarray
        sing : bool
            Whether ``cov_re`` is singular.
        """
        if isinstance(params, MixedLMParams):
            po = params
        else:
            po = MixedLMParams.from_packed(params, self.k_fe, self.k_re, self.use_sqrt, True)
        psi = self._psi_of(po)
        beta = np.asarray(po.fe_params, dtype=np.float64)
        return self._hessian_at(beta, psi, self.reml), self._cov_singular(po.cov_re)

    def _cov_singular(self, cov: Any) -> bool:
        if not self.k_re:
            return False
        cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
        values = np.linalg.eigvalsh(cov)
        return bool(values.min() <= _SINGULAR * max(1.0, float(values.max())))

    def _hessian_at(self, beta: np.ndarray, psi: np.ndarray, reml: bool) -> np.ndarray:
        """∂²ℓ in (β, ψ): exact in β, central differences of the exact ∂ℓ/∂β across ψ,
        second differences of ℓ in ψ (steps 0.1 % of each variance's size)."""
        lik = self._likelihood
        layout = self._layout
        p, m = len(beta), len(psi)
        psi_steps = np.empty(m)
        for block in layout.blocks:
            values = psi[block.offset : block.stop]
            diag = {i: values[k] for k, (i, j) in enumerate(block.entries()) if i == j}
            for k, (i, j) in enumerate(block.entries()):
                size = diag[i] if i == j else math.sqrt(max(diag[i] * diag[j], 0.0))
                psi_steps[block.offset + k] = 1e-3 * max(abs(size), 1e-10)

        def evaluation(point: np.ndarray):
            phi = layout.phi_from_psi(point)
            return None if phi is None else lik.evaluate(layout.lambdas(phi))

        out = np.full((p + m, p + m), math.nan)
        ev = evaluation(psi)
        if ev is None:
            return out
        out[:p, :p] = lik.beta_derivatives(ev, reml, beta)[1]
        for k in range(m):
            step = np.zeros(m)
            step[k] = psi_steps[k]
            plus, minus = evaluation(psi + step), evaluation(psi - step)
            if plus is None or minus is None:
                continue
            cross = (
                lik.beta_derivatives(plus, reml, beta)[0]
                - lik.beta_derivatives(minus, reml, beta)[0]
            ) / (2 * psi_steps[k])
            out[p + k, :p] = out[:p, p + k] = cross

        def f(point: np.ndarray) -> float:
            return lik.loglike_psi(point, reml, beta)

        out[p:, p:] = derivatives.hessian(f, psi, psi_steps)
        return out

    def get_fe_params(self, cov_re: Any, vcomp: Any, tol: float = 1e-10) -> tuple[np.ndarray, bool]:
        """Generalised least-squares fixed effects given the covariance parameters.

        Returns (fe_params, singular), ``singular`` when ``cov_re`` is.
        """
        po = MixedLMParams.from_components(np.zeros(self.k_fe), cov_re=cov_re, vcomp=vcomp)
        if not self.k_re:
            po = MixedLMParams.from_components(
                np.zeros(self.k_fe), cov_re=np.zeros((0, 0)), vcomp=vcomp
            )
        phi = self._layout.phi_from_psi(self._psi_of(po))
        ev = None if phi is None else self._likelihood.evaluate(self._layout.lambdas(phi))
        if ev is None:
            raise MixedModelsError("the covariance parameters are not positive semi-definite")
        return ev.beta.copy(), self._cov_singular(po.cov_re) if self.k_re else False

    def get_scale(self, fe_params: Any, cov_re: Any, vcomp: Any) -> float:
        """The residual variance estimate Q(β)/f at given parameters."""
        po = MixedLMParams.from_components(
            np.asarray(fe_params, dtype=np.float64),
            cov_re=cov_re if self.k_re else np.zeros((0, 0)),
            vcomp=vcomp,
        )
        phi = self._layout.phi_from_psi(self._psi_of(po))
        ev = None if phi is None else self._likelihood.evaluate(self._layout.lambdas(phi))
        if ev is None:
            raise MixedModelsError("the covariance parameters are not positive semi-definite")
        return ev.quadratic(po.fe_params) / self._likelihood.dof(self.reml)

    def predict(self, params: Any, exog: Any = None) -> np.ndarray:
        """The fixed part ``exog @ fe_params`` (``params``: a state, a packed vector, or β)."""
        x = self.exog if exog is None else np.asarray(exog, dtype=np.float64)
        if isinstance(params, MixedLMParams):
            beta = np.asarray(params.fe_params, dtype=np.float64)
        else:
            beta = np.asarray(params, dtype=np.float64)[: self.k_fe]
        if x.ndim == 1:
            x = x[:, None] if self.k_fe == 1 else x[None, :]
        return x @ beta

    def get_distribution(self, params: Any, scale: float, exog: Any = None):
        """A simulator of the model's responses (statsmodels' ``get_distribution``)."""
        from .simulate import MixedLMDistribution

        return MixedLMDistribution(self, params, scale, exog)

    # -- fitting ------------------------------------------------------------------------

    def _start(self, start_params: Any, free_phi: np.ndarray) -> np.ndarray:
        layout = self._layout
        if start_params is None:
            # The engine's moment estimates, unless statsmodels' default start
            # (cov_re = I, variances 1) is better: with about as many random
            # effects per group as rows the moment estimates can be far off.
            phi = layout.default_phi()
            moments = start_phi(self._likelihood)
            if moments is not None:
                candidate = np.where(free_phi, moments, phi)
                reml = self.reml
                if self._likelihood.deviance(candidate, reml) < self._likelihood.deviance(
                    phi, reml
                ):
                    phi = candidate
            return phi
        if isinstance(start_params, MixedLMParams):
            po = start_params
        else:
            vector = np.asarray(start_params, dtype=np.float64).ravel()
            total = self.k_fe + self.k_re2 + self.k_vc
            if len(vector) == total:
                has_fe = True
            elif len(vector) == total - self.k_fe:
                has_fe = False
            else:
                raise ValueError("invalid start_params")
            po = MixedLMParams.from_packed(vector, self.k_fe, self.k_re, self.use_sqrt, has_fe)
        phi = layout.phi_from_psi(self._psi_of(po))
        if phi is None:
            raise MixedModelsError("start_params: cov_re is not positive semi-definite")
        return phi

    def _free_phi(self, free: MixedLMParams | None, start: MixedLMParams | None) -> np.ndarray:
        """Which square-root parameters are optimised (the rest keep their start values)."""
        layout = self._layout
        out = ~layout.structural
        if free is None:
            return out
        mask_cov = np.asarray(free.cov_re, dtype=float)
        mask_vc = np.asarray(free.vcomp, dtype=float).ravel()
        if self.k_re and mask_cov.shape != (self.k_re, self.k_re):
            raise MixedModelsError(f"free.cov_re must be {self.k_re}×{self.k_re}")
        if len(mask_vc) != self.k_vc:
            raise MixedModelsError(f"free.vcomp must have {self.k_vc} values")
        tri = mask_cov[np.tril_indices(self.k_re)] if self.k_re else np.zeros(0)
        fixed = np.concatenate([tri, mask_vc]) == 0
        if not self.use_sqrt and self.k_re:
            _check_exact_constraints(mask_cov == 0, start, self.k_re)
        return out & ~fixed

    def fit(
        self,
        start_params: Any = None,
        reml: bool = True,
        niter_sa: int = 0,
        do_cg: bool = True,
        fe_pen: Any = None,
        cov_pen: Any = None,
        free: MixedLMParams | None = None,
        full_output: bool = False,
        method: Any = None,
        **fit_kwargs: Any,
    ):
        """Fit by REML (default) or maximum likelihood.

        Parameters
        ----------
        start_params : array-like or MixedLMParams, optional
            Starting covariance parameters (a packed vector with or without the
            fixed effects, ``use_sqrt`` form); default: moment estimates.
        reml : bool, default True
        niter_sa : int
            Ignored (statsmodels ignores it too, and warns when it is set).
        do_cg : bool, default True
            False: no optimization, results at the starting values.
        fe_pen, cov_pen : penalty objects, optional
            statsmodels' penalties (objects with ``func``), subtracted from the
            log-likelihood as statsmodels subtracts them.
        free : MixedLMParams, optional
            A mask: 1 estimates a parameter, 0 holds it at its starting value
            (``free.cov_re = np.eye(k_re)``: independent random effects).
        full_output : bool
            Keep every evaluation in ``results.hist``.
        method : str or list, optional
            statsmodels' optimizer names are accepted (the engine uses BOBYQA);
            ``"newton"`` and ``"ncg"`` are refused as statsmodels refuses them.
        **fit_kwargs
            statsmodels' optimizer options (``gtol``, ``maxiter``, ...) are
            accepted; others are warned about and ignored, as statsmodels does.

        Returns
        -------
        MixedLMResults
        """
        from .results import MixedLMResults

        unknown = sorted(set(fit_kwargs) - set(_OPTIMIZER_KWARGS))
        if unknown:
            warnings.warn(
                f"Argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} not used by "
                "MixedLM.fit. Future versions will raise on these arguments.",
                FutureWarning,
                stacklevel=2,
            )
        methods = [method] if isinstance(method, str) else list(method or [])
        for name in methods:
            if str(name).lower() in ("newton", "ncg"):
                raise ValueError(f"method {name} not available for MixedLM")
        if niter_sa:
            warnings.warn("niter_sa is currently ignored", UserWarning, stacklevel=2)
        self.reml = bool(reml)
        self.fe_pen = fe_pen
        self.cov_pen = cov_pen
        self._freepat = free
        start_object = start_params if isinstance(start_params, MixedLMParams) else None
        free_phi = self._free_phi(free, start_object)
        phi0 = self._start(start_params, free_phi)
        if free is not None and start_params is None:
            # statsmodels' default start for what free holds fixed.
            default = self._layout.default_phi()
            phi0 = np.where(free_phi, phi0, default)
        phi0 = np.where(self._layout.structural, 0.0, phi0)
        penalty = None
        if fe_pen is not None or cov_pen is not None:

            def penalty(phi: np.ndarray, beta: np.ndarray) -> float:
                return self._penalty(beta, self._layout.psi(phi))

        if do_cg:
            outcome = optimize(
                self._likelihood,
                phi0,
                free_phi,
                self.reml,
                penalty=penalty,
                keep_history=full_output,
            )
        else:
            value = self._likelihood.deviance(phi0, self.reml)
            outcome = FitOutcome(phi0, value, 1, False, ["do_cg=False: not optimized"], 0.0)
        state = fitted_state(self._likelihood, outcome.phi, self.reml)
        self._warn_about(outcome, free_phi)
        return MixedLMResults(self, state, outcome, free=free)

    def _warn_about(self, outcome: FitOutcome, free_phi: np.ndarray) -> None:
        if not outcome.converged and outcome.messages != ["do_cg=False: not optimized"]:
            _warn(
                "MixedLM optimization failed: " + "; ".join(outcome.messages),
                MixedLMConvergenceWarning,
                stacklevel=3,
            )
        layout = self._layout
        diagonal = layout.diagonal() & free_phi
        if np.any(outcome.phi[diagonal] < 1e-4):
            _warn(
                "The MLE may be on the boundary of the parameter space.",
                BoundaryWarning,
                stacklevel=3,
            )
        main = layout.main
        if main is not None and self._cov_singular(main.covariance(outcome.phi)):
            _warn("The random effects covariance matrix is singular.", SingularMatrixWarning, 3)

    def fit_regularized(
        self,
        start_params: Any = None,
        method: Any = "l1",
        alpha: Any = 0,
        ceps: float = 1e-4,
        ptol: float = 1e-6,
        maxit: int = 200,
        **fit_kwargs: Any,
    ):
        """Fixed effects penalised, covariance held at the unpenalised estimate.

        ``method="l1"``: the lasso on the generalised least-squares criterion
        (cyclic coordinate descent); a statsmodels penalty object (with
        ``func``) is passed to :meth:`fit` as ``fe_pen`` with weight ``alpha``,
        as statsmodels does.  See :func:`.regularized.fit_l1`.
        """
        from .regularized import fit_l1

        if isinstance(method, str):
            if method.lower() != "l1":
                raise ValueError("Invalid regularization method")
            return fit_l1(self, start_params, alpha, ceps, ptol, maxit, fit_kwargs)
        if not hasattr(method, "func"):
            raise ValueError("Invalid regularization method")
        method.alpha = alpha
        return self.fit(start_params=start_params, fe_pen=method, **fit_kwargs)

    def _remove_data(self) -> None:
        """Drop the arrays (``results.remove_data()``); fitting and evaluating then fail."""
        data = self._data
        data.endog = data.exog = data.exog_re = data.groups = None  # type: ignore[assignment]
        data.vc = []
        self._likelihood = None  # type: ignore[assignment]
        self.__dict__.pop("exog_vc", None)
        self.__dict__.pop("row_indices", None)

    def __repr__(self) -> str:
        shown = self.lme4_formula or self.formula
        suffix = f" {shown!r}" if shown else ""
        return f"<MixedLM{suffix}: {self.nobs} rows, {self.n_groups} groups>"


def _check_exact_constraints(fixed: np.ndarray, start: MixedLMParams | None, k: int) -> None:
    """With ``use_sqrt=False``, can the fixed entries of ``cov_re`` be held via its factor?

    Holding an entry of the Cholesky factor L fixed holds the matching entry of
    LLᵀ fixed when the entries before it in its row and column's rows are
    fixed at zero; off-diagonal entries must start at zero.
    """
    start_cov = None if start is None else np.asarray(start.cov_re, dtype=float)
    for i in range(k):
        for j in range(i + 1):
            if not fixed[i, j]:
                continue
            if i != j and start_cov is not None and start_cov[i, j] != 0:
                raise MixedModelsError(
                    f"free holds cov_re[{i}, {j}] at {start_cov[i, j]:g}: with use_sqrt=False "
                    "only zero covariances can be held fixed; use use_sqrt=True"
                )
            earlier = [m for m in range(j) if not (fixed[i, m] or fixed[j, m])]
            if earlier:
                raise MixedModelsError(
                    f"free holds cov_re[{i}, {j}] fixed, which the engine's Cholesky "
                    "parameters cannot express unless the entries before it in rows "
                    f"{i} and {j} are fixed too; use use_sqrt=True"
                )


def mixedlm(
    formula: str,
    data: Any,
    re_formula: Any = None,
    vc_formula: Any = None,
    subset: Any = None,
    use_sparse: bool = False,
    missing: str = "none",
    *args: Any,
    **kwargs: Any,
) -> MixedLM:
    """A linear mixed model from a formula, as statsmodels' ``smf.mixedlm``.

    See :meth:`MixedLM.from_formula`; ``groups`` is a keyword argument.

    Examples
    --------
    >>> import mixedmodels as smf
    >>> data = smf.datasets.load("dietox")
    >>> md = smf.mixedlm("Weight ~ Time", data, groups=data["Pig"])
    >>> md.lme4_formula
    'Weight ~ Time + (1 | Pig)'
    >>> round(md.fit().scale, 4)
    11.3669
    """
    return MixedLM.from_formula(
        formula, data, re_formula, vc_formula, subset, use_sparse, missing, *args, **kwargs
    )
