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

import warnings
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ...design import aliased_columns
from ...errors import MixedModelsError, RankDeficiencyWarning, user_stacklevel
from . import evaluation
from .estimation import fit_model
from .formula_model import FormulaModel, build_from_formula
from .grouped import GroupedData, ModelData, VCSpec, from_arrays
from .layout import Layout
from .likelihood import Likelihood
from .params import MixedLMParams

__all__ = ["MixedLM", "mixedlm"]


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

    Attributes
    ----------
    grouped_data : GroupedData
        The checked arrays and their names.
    layout : Layout
        The engine's terms and the map between statsmodels' covariance
        parameters and the terms' relative covariance factors.
    likelihood : Likelihood
        statsmodels' profiled log-likelihood on the engine's factor (a
        workspace of the model's own).
    formula_model : FormulaModel or None
        For formula models: the lme4 translation and the design (for new data).
    free_pattern : MixedLMParams or None
        The ``free`` mask of the last fit.

    Notes
    -----
    Estimates are those of lme4's penalised least squares for the same model
    (where lme4 can write it: ``(exog_re | groups)`` and a term per variance
    component).  statsmodels' optimizer options (``method``, ``maxiter``, ...)
    are accepted; the engine always uses BOBYQA.
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
        data = from_arrays(endog, exog, groups, exog_re, exog_vc, missing)
        pandas_input = any(isinstance(a, (pd.Series, pd.DataFrame)) for a in (endog, exog))
        init_kwds = {
            "groups": groups,
            "exog_re": exog_re,
            "exog_vc": exog_vc,
            "use_sqrt": use_sqrt,
            "missing": missing,
        }
        _initialize(self, data, use_sqrt, pandas_input, None, init_kwds)

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: Any,
        re_formula: Any = None,
        vc_formula: Any = None,
        subset: Any = None,
        use_sparse: bool = False,  # noqa: ARG003 - accepted: the engine's blocks are sparse
        missing: str = "none",
        *args: Any,
        groups: Any = None,
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
        *args
            None are accepted (statsmodels passes them to the model).
        groups : str or array-like
            Keyword argument: the column (or one value per row) defining the
            groups (optional only with lme4 bar terms or a ``re_formula`` dict).
        **kwargs
            statsmodels' ``eval_env`` is accepted and ignored (formulas here
            call only the functions the formula language allows).

        Returns
        -------
        MixedLM
        """
        if args:
            raise TypeError(f"from_formula() got unexpected positional arguments {args!r}")
        for key in ("eval_env", "drop_cols"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"from_formula() got unexpected keyword arguments {sorted(kwargs)!r}")
        try:
            built = build_from_formula(
                formula,
                data,
                groups,
                re_formula,
                vc_formula,
                subset=subset,
                missing=missing,
            )
        except MixedModelsError as err:
            # The message names the fault; the parser's frames would only bury it.
            raise err.with_traceback(None) from None
        model = cls.__new__(cls)
        _initialize(model, built.data, True, True, built, None)
        model.formula = formula
        return model

    formula: str | None = None

    # -- statsmodels' attributes --------------------------------------------------------

    @property
    def endog(self) -> np.ndarray:
        return self.grouped_data.endog

    @property
    def exog(self) -> np.ndarray:
        return self.grouped_data.exog

    @property
    def exog_re(self) -> np.ndarray | None:
        return self.grouped_data.exog_re

    @property
    def groups(self) -> np.ndarray:
        return self.grouped_data.groups

    @property
    def group_labels(self) -> list[Any]:
        return list(self.grouped_data.group_labels)

    @property
    def n_groups(self) -> int:
        return self.grouped_data.n_groups

    @property
    def nobs(self) -> int:
        return self.grouped_data.nobs

    n_totobs = nobs

    @property
    def k_fe(self) -> int:
        return self.grouped_data.exog.shape[1]

    @property
    def k_re(self) -> int:
        return self.layout.k_re

    @property
    def k_re2(self) -> int:
        return self.layout.k_re2

    @property
    def k_vc(self) -> int:
        return self.layout.k_vc

    @property
    def k_params(self) -> int:
        return self.k_fe + self.k_re2

    @property
    def exog_names(self) -> list[str]:
        return self.data.xnames

    @property
    def exog_re_names(self) -> list[str]:
        """Names of the groups' random effects (the rows and columns of ``cov_re``)."""
        return self.data.exog_re_names

    @property
    def endog_names(self) -> str:
        return self.data.ynames

    @property
    def lme4_formula(self) -> str | None:
        """The lme4 formula of a formula model (None: arrays, or no lme4 spelling)."""
        return None if self.formula_model is None else self.formula_model.translation.formula

    @cached_property
    def exog_vc(self) -> VCSpec:
        """The variance components as statsmodels' :class:`VCSpec` (per group matrices)."""
        names, colnames, mats = [], [], []
        codes = self.grouped_data.group_codes
        for component in self.grouped_data.vc:
            names.append(component.name)
            colnames.append(component.column_names)
            mats.append([component.group_matrix(codes, g) for g in range(self.n_groups)])
        return VCSpec(names, colnames, mats)

    @cached_property
    def row_indices(self) -> dict[Any, list[int]]:
        """group label → positions of its rows."""
        codes = self.grouped_data.group_codes
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(self.n_groups + 1))
        return {
            label: order[bounds[g] : bounds[g + 1]].tolist()
            for g, label in enumerate(self.grouped_data.group_labels)
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
        """The constructor's keyword arguments (statsmodels' name)."""
        return {} if self.init_kwds is None else dict(self.init_kwds)

    # -- statsmodels' likelihood functions ------------------------------------------

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
        return evaluation.loglike(self, params, profile_fe)

    def score(self, params: Any, profile_fe: bool = True) -> np.ndarray:
        """The gradient of :meth:`loglike` in the packed (``use_sqrt``) parameterization.

        With ``profile_fe`` the gradient of the covariance parameters only;
        otherwise the fixed effects' first.  Computed by Richardson-extrapolated
        central differences of :meth:`loglike`; multiplied by the ``free``
        mask of the last fit, as statsmodels does.
        """
        return evaluation.score(self, params, profile_fe)

    def hessian(self, params: Any) -> tuple[np.ndarray, bool]:
        """statsmodels' Hessian of the log-likelihood in (fe_params, cov_re, vcomp).

        The covariance parameters are taken as they are (not their roots) and
        the fixed effects are not profiled; penalties are left out.  Exact in
        the fixed effects, finite differences in the covariance parameters;
        entries needing a step outside the positive semi-definite covariances
        (a variance at zero) are NaN.

        Returns
        -------
        hess : ndarray
        sing : bool
            Whether ``cov_re`` is singular.
        """
        po = evaluation.as_params(self, params, has_fe=True)
        psi = evaluation.psi_of(self, po)
        beta = np.asarray(po.fe_params, dtype=np.float64)
        hess = evaluation.hessian_at(self, beta, psi, self.reml)
        return hess, evaluation.cov_singular(po.cov_re)

    def get_fe_params(
        self,
        cov_re: Any,
        vcomp: Any,
        tol: float = 1e-10,  # noqa: ARG002 - statsmodels' signature; singularity is tested here
    ) -> tuple[np.ndarray, bool]:
        """Generalised least-squares fixed effects given the (relative) covariance parameters.

        Returns (fe_params, singular), ``singular`` when ``cov_re`` is.
        """
        po = MixedLMParams.from_components(
            np.zeros(self.k_fe), cov_re=cov_re if self.k_re else None, vcomp=vcomp
        )
        return evaluation.gls(self, po)[0], evaluation.cov_singular(po.cov_re)

    def get_scale(self, fe_params: Any, cov_re: Any, vcomp: Any) -> float:
        """The residual variance estimate Q(β)/f at given parameters."""
        po = MixedLMParams.from_components(
            np.asarray(fe_params, dtype=np.float64),
            cov_re=cov_re if self.k_re else None,
            vcomp=vcomp,
        )
        ev = evaluation.gls(self, po)[1]
        return ev.quadratic(po.fe_params) / self.likelihood.dof(self.reml)

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
        return fit_model(
            self,
            start_params,
            reml,
            niter_sa,
            do_cg,
            fe_pen,
            cov_pen,
            free,
            full_output,
            method,
            fit_kwargs,
        )

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

    def remove_data(self) -> None:
        """Drop the arrays (for ``results.remove_data()``); fitting and evaluating then fail."""
        data = self.grouped_data
        data.endog = data.exog = data.exog_re = data.groups = None  # type: ignore[assignment]
        data.vc = []
        self.likelihood = None  # type: ignore[assignment]
        self.__dict__.pop("exog_vc", None)
        self.__dict__.pop("row_indices", None)

    def __repr__(self) -> str:
        shown = self.lme4_formula or self.formula
        suffix = f" {shown!r}" if shown else ""
        return f"<MixedLM{suffix}: {self.nobs} rows, {self.n_groups} groups>"


def _initialize(
    model: MixedLM,
    data: GroupedData,
    use_sqrt: bool,
    use_pandas: bool,
    formula_model: FormulaModel | None,
    init_kwds: dict[str, Any] | None,
) -> None:
    """Set a model's state from its checked data (both constructors end here)."""
    aliased = aliased_columns(data.exog) if data.exog.shape[1] else []
    if aliased:
        dropped = [data.exog_names[j] for j in aliased]
        keep = [j for j in range(data.exog.shape[1]) if j not in set(aliased)]
        data.exog = data.exog[:, keep]
        data.exog_names = [data.exog_names[j] for j in keep]
        warnings.warn(
            f"exog is rank deficient: dropping {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=user_stacklevel(),
        )
    model.grouped_data = data
    model.formula_model = formula_model
    model.init_kwds = init_kwds
    model.use_sqrt = bool(use_sqrt)
    model.reml = True
    model.fe_pen = None
    model.cov_pen = None
    model.free_pattern = None
    model.layout = Layout(data)
    model.likelihood = Likelihood(data, model.layout)
    names = model.layout.param_names()
    model.data = ModelData(
        xnames=list(data.exog_names),
        ynames=data.endog_name,
        exog_re_names=list(data.exog_re_names),
        exog_re_names_full=names[: model.layout.k_re2],
        vcomp_names=[c.name for c in data.vc],
        param_names=list(data.exog_names) + names,
        row_labels=data.row_labels,
        frame=None if formula_model is None else formula_model.frame,
        use_pandas=use_pandas,
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
    groups: Any = None,
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
        formula,
        data,
        re_formula,
        vc_formula,
        subset,
        use_sparse,
        missing,
        *args,
        groups=groups,
        **kwargs,
    )
