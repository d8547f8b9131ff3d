"""Results of :func:`~mixedmodels.mixedlm` fits, with statsmodels' names and layout.

:class:`MixedLMResults` wraps a fitted
:class:`~mixedmodels.model.LinearMixedModel` and reports it as statsmodels'
``MixedLMResults`` does:

* ``fe_params``, ``bse_fe``, ``cov_re`` (the covariance of the ``groups``'
  random effects), ``vcomp`` (the other variances), ``scale`` (σ²), ``llf``;
* ``params`` is statsmodels' parameter vector: the fixed effects, then each
  variance and covariance *relative to the scale* (statsmodels' "unscaled"
  parametrisation), named ``"Group Var"``, ``"Group x Time Cov"``, ``"cask Var"``;
* ``bse`` of those variance parameters comes, as in statsmodels, from the
  Hessian of the log-likelihood profiled over the scale, taken with respect to
  the fixed effects and the unscaled variances (here by finite differences of
  the engine's profiled criterion).  ``summary()`` prints ``sqrt(scale) * bse``
  beside each variance, which is what statsmodels prints.

The numbers themselves are lme4's: estimates, ``bse_fe`` (lme4's ``vcov``),
``llf``, ``aic`` and ``bic`` are those of the lme4 formula the call means.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.stats

from ...errors import DataError
from ...formula import TRANSFORMS, parse_formula

if TYPE_CHECKING:
    from ...models.lmm import LinearMixedModel
    from .model import MixedLM

__all__ = ["MixedLMResults", "MixedLMSummary"]

# A relative variance below this (or a Cholesky pivot below it) is on the
# boundary: its standard error is undefined and reported as NaN.
_BOUNDARY = 1e-8
# Relative step of the finite differences for the Hessian.
_STEP = 1e-3


@dataclass(frozen=True)
class _Param:
    """One variance or covariance parameter: entry (i, j) of term ``term``'s Ψ."""

    name: str
    term: int
    i: int
    j: int
    main: bool


def _term_specs_in_design_order(model: LinearMixedModel):
    """The parsed term behind each of ``model.design.terms`` (which are in lme4's order)."""
    specs = model.design.formula.random
    levels = {t.group_name: t.n_levels for t in model.design.terms}
    # build_design orders terms by decreasing number of levels, stably.
    order = sorted(range(len(specs)), key=lambda i: -levels[specs[i].name])
    return [specs[i] for i in order]


class MixedLMResults:
    """A fitted :class:`~mixedmodels.statsmodels_api.MixedLM`, read as statsmodels reads it.

    Attributes
    ----------
    model : MixedLM
        The model that was fitted (``model.lme4_formula`` is its lme4 formula).
    lmm : LinearMixedModel
        The fitted engine model, for lme4-style results (``varcorr``,
        ``ranef`` of every grouping factor, ``summary()`` in lme4's layout).
    """

    def __init__(self, model: MixedLM, lmm: LinearMixedModel) -> None:
        self.model = model
        self.lmm = lmm
        self.reml = lmm.reml
        self.method = "REML" if lmm.reml else "ML"
        self._specs = _term_specs_in_design_order(lmm)
        self._main = self._main_grouping()
        self._params = self._parameters()

    # -- structure --------------------------------------------------------------------

    def _main_grouping(self) -> frozenset[str]:
        """The grouping whose covariance is ``cov_re``: ``groups``, else the formula's first."""
        if self.model.group_column is not None:
            return frozenset({self.model.group_column})
        return frozenset(self.lmm.design.formula.random[0].group)

    def _main_terms(self) -> list[int]:
        return [k for k, spec in enumerate(self._specs) if frozenset(spec.group) == self._main]

    def _column_labels(self, k: int) -> list[str]:
        """statsmodels' names of term ``k``'s random effects.

        The groups' own effects: ``Group`` (or the groups column's name) for the
        intercept, the variable for a slope (``Time``).  A variance component:
        its ``vc_formula`` name.  Any other term: its grouping factor for the
        intercept, ``x|g`` for a slope of ``x``.
        """
        term = self.lmm.design.terms[k]
        spec = self._specs[k]
        names = list(self.lmm.design.term_specs[k].column_names)
        vc = self._vc_label(spec)
        if vc is not None and term.q == 1:
            return [vc]
        if frozenset(spec.group) == self._main:
            groups = self.model.group_column
            label = self.model.group_label if groups is not None else term.group_name
            if groups is not None and self._main != frozenset({groups}):
                label = term.group_name
            return [label if name == "Intercept" else name for name in names]
        return [
            term.group_name if name == "Intercept" else f"{name}|{term.group_name}"
            for name in names
        ]

    @cached_property
    def _vc_specs(self) -> dict[tuple[str, frozenset[str]], str]:
        out = {}
        for text, label in self.model.vc_labels.items():
            for spec in parse_formula(f"y ~ 0 + {text}").random:
                out[(spec.lhs, frozenset(spec.group))] = label
        return out

    def _vc_label(self, spec) -> str | None:
        return self._vc_specs.get((spec.lhs, frozenset(spec.group)))

    def _parameters(self) -> list[_Param]:
        main = self._main_terms()
        rest = [k for k in range(len(self._specs)) if k not in main]
        params: list[_Param] = []
        seen: dict[str, int] = {}
        for k in [*main, *rest]:
            labels = self._column_labels(k)
            for i in range(len(labels)):
                for j in range(i + 1):
                    name = f"{labels[i]} Var" if i == j else f"{labels[j]} x {labels[i]} Cov"
                    if name in seen:  # the same label twice (a repeated term)
                        seen[name] += 1
                        name = f"{name}.{seen[name] - 1}"
                    else:
                        seen[name] = 1
                    params.append(_Param(name, k, i, j, k in main))
        return params

    def _relative_covariances(self) -> list[np.ndarray]:
        return [lam @ lam.T for lam in self.lmm.problem.lambdas(self.lmm.state.theta)]

    # -- fixed effects ------------------------------------------------------------------

    @cached_property
    def _fe_names(self) -> list[str]:
        """statsmodels' (patsy's) names of the fixed effects: ``Intercept``, ``sex[T.M]``."""
        design = self.lmm.design
        names = list(design.fixed_spec.column_names)
        keep = self._fe_kept
        return [names[j] for j in keep]

    @cached_property
    def _fe_kept(self) -> list[int]:
        """Columns of formulaic's fixed-effects matrix that survived the rank check."""
        design = self.lmm.design
        names = design.formula.column_names(design.fixed_spec.column_names)
        dropped = set(design.dropped_columns)
        keep = [j for j, name in enumerate(names) if name not in dropped]
        if len(keep) != len(design.fixed_names):  # names did not line up: keep all
            keep = list(range(len(design.fixed_names)))
        return keep

    @property
    def fe_params(self) -> pd.Series:
        """Fixed-effects estimates."""
        return pd.Series(self.lmm.state.beta, index=self._fe_names)

    @property
    def bse_fe(self) -> pd.Series:
        """Standard errors of the fixed effects (lme4's ``vcov``)."""
        vcov = self.lmm.state.sigma**2 * self.lmm.state.unscaled_vcov
        return pd.Series(np.sqrt(np.diag(vcov)), index=self._fe_names)

    @property
    def k_fe(self) -> int:
        return len(self._fe_names)

    # -- variance parameters ------------------------------------------------------------

    @property
    def scale(self) -> float:
        """Residual variance σ²."""
        return self.lmm.state.sigma**2

    def _psi_values(self) -> np.ndarray:
        psis = self._relative_covariances()
        return np.array([psis[p.term][p.i, p.j] for p in self._params])

    @property
    def cov_re_unscaled(self) -> pd.DataFrame:
        """``cov_re`` divided by the scale."""
        return self.cov_re / self.scale

    @property
    def cov_re(self) -> pd.DataFrame:
        """Covariance matrix of the random effects of the ``groups`` (its main grouping)."""
        psis = self._relative_covariances()
        labels: list[str] = []
        blocks: list[np.ndarray] = []
        for k in self._main_terms():
            labels += self._column_labels(k)
            blocks.append(psis[k])
        size = len(labels)
        cov = np.zeros((size, size))
        at = 0
        for block in blocks:
            q = block.shape[0]
            cov[at : at + q, at : at + q] = block
            at += q
        return pd.DataFrame(self.scale * cov, index=labels, columns=labels)

    @property
    def vcomp(self) -> np.ndarray:
        """Variances of the other random effects (in the order of ``params``)."""
        values = self._psi_values()
        return np.array(
            [
                self.scale * v
                for p, v in zip(self._params, values, strict=True)
                if not p.main and p.i == p.j
            ]
        )

    @property
    def k_re2(self) -> int:
        return sum(p.main for p in self._params)

    @property
    def k_vc(self) -> int:
        return len(self._params) - self.k_re2

    @property
    def params(self) -> pd.Series:
        """Fixed effects, then variances and covariances relative to the scale."""
        values = np.concatenate([self.lmm.state.beta, self._psi_values()])
        return pd.Series(values, index=self._fe_names + [p.name for p in self._params])

    @cached_property
    def _psi_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of minus the profiled log-likelihood's Hessian: (ψ block, ψ × β block)."""
        return psi_covariance(self.lmm, self._params)

    def cov_params(self) -> pd.DataFrame:
        """Covariance of ``params``: lme4's ``vcov`` for β, the inverse Hessian for the rest."""
        p = self.k_fe
        psi_cov, cross = self._psi_covariance
        m = p + len(self._params)
        out = np.full((m, m), np.nan)
        out[:p, :p] = self.lmm.state.sigma**2 * self.lmm.state.unscaled_vcov
        out[p:, p:] = psi_cov
        out[p:, :p] = cross
        out[:p, p:] = cross.T
        names = list(self.params.index)
        return pd.DataFrame(out, index=names, columns=names)

    @property
    def bse(self) -> pd.Series:
        """Standard errors of ``params`` (NaN for a variance on the boundary)."""
        psi_cov, _ = self._psi_covariance
        with np.errstate(invalid="ignore"):
            psi_se = np.sqrt(np.diag(psi_cov))
        return pd.Series(np.concatenate([self.bse_fe.to_numpy(), psi_se]), index=self.params.index)

    @property
    def bse_re(self) -> pd.Series:
        """Standard errors of the variance parameters."""
        return self.bse.iloc[self.k_fe :]

    @property
    def tvalues(self) -> pd.Series:
        """``params / bse`` (z statistics)."""
        return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of the z statistics, from the normal distribution."""
        return pd.Series(2 * scipy.stats.norm.sf(np.abs(self.tvalues)), index=self.params.index)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals ``params ± z(1 - alpha/2) bse``, columns 0 and 1."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        z = scipy.stats.norm.ppf(1 - alpha / 2)
        params, bse = self.params, self.bse
        return pd.DataFrame({0: params - z * bse, 1: params + z * bse})

    # -- fit statistics -----------------------------------------------------------------

    @property
    def llf(self) -> float:
        """Log-likelihood (REML log-likelihood for REML fits), lme4's ``logLik``."""
        return self.lmm.loglik

    @property
    def aic(self) -> float:
        """lme4's ``AIC`` (statsmodels reports NaN for REML fits; see the docs)."""
        return self.lmm.aic

    @property
    def bic(self) -> float:
        """lme4's ``BIC``."""
        return self.lmm.bic

    @property
    def converged(self) -> bool:
        return self.lmm.converged

    @property
    def nobs(self) -> int:
        return self.lmm.nobs

    @property
    def is_singular(self) -> bool:
        return self.lmm.is_singular

    @property
    def lme4_formula(self) -> str:
        return self.model.lme4_formula

    def group_sizes(self) -> pd.Series:
        """Rows per group: per level of ``groups`` (of the main grouping without it)."""
        column = self.model.group_column
        if column is not None:
            values = self.model.data[column].loc[self.lmm.design.row_index]
            return values.astype(object).value_counts()
        term = self.lmm.design.terms[self._main_terms()[0]]
        return pd.Series(np.bincount(term.codes, minlength=term.n_levels), index=term.levels)

    @property
    def n_groups(self) -> int:
        """Number of groups (levels of ``groups``, or of the main grouping without it)."""
        return len(self.group_sizes())

    # -- random effects and predictions -------------------------------------------------

    @property
    def random_effects(self) -> dict[Any, pd.Series]:
        """Conditional modes of the main grouping's random effects: level → Series.

        Other groupings' modes are in ``lmm.ranef``.
        """
        main = self._main_terms()
        if not main:  # groups with re_formula="0": only variance components
            return {}
        labels = [name for k in main for name in self._column_labels(k)]
        modes = np.hstack([self.lmm.state.modes[k] for k in main])
        levels = self._level_keys(main[0])
        return {level: pd.Series(modes[i], index=labels) for i, level in enumerate(levels)}

    def _level_keys(self, k: int) -> list[Any]:
        """The levels of term ``k``'s grouping as the data hold them (``4601``, not ``"4601"``).

        The engine labels levels by text; statsmodels keys ``random_effects`` by
        the values themselves.  Both number the levels in sorted order, so the
        sorted distinct values of the rows used line up with the engine's levels.
        """
        term = self.lmm.design.terms[k]
        group = self._specs[k].group
        if len(group) == 1 and group[0] in self.model.data.columns:
            values = self.model.data[group[0]].loc[self.lmm.design.row_index]
            uniques = pd.factorize(values, sort=True)[1]
            if len(uniques) == term.n_levels:
                return list(uniques)
        return list(term.levels)

    @property
    def fittedvalues(self) -> pd.Series:
        """Fitted values including the random effects (Xβ + Zb)."""
        return self.lmm.fitted.rename(None)

    @property
    def resid(self) -> pd.Series:
        """Response minus ``fittedvalues``."""
        return self.lmm.residuals.rename(None)

    def predict(self, exog: Any = None) -> pd.Series:
        """Predictions from the fixed effects only (Xβ), as statsmodels' ``predict``.

        Parameters
        ----------
        exog : DataFrame or dict of columns, optional
            New data holding the fixed effects' columns; by default the rows
            used in the fit.  Rows with a missing value predict NaN.

        Returns
        -------
        pandas.Series
        """
        design = self.lmm.design
        if exog is None:
            return pd.Series(design.x @ self.lmm.state.beta, index=design.row_index)
        from ...design import as_data_frame

        frame = as_data_frame(exog)
        try:
            matrix = design.fixed_spec.get_model_matrix(
                frame, context=TRANSFORMS, na_action="ignore"
            )
        except Exception as err:
            raise DataError(f"cannot build the fixed effects for the new data: {err}") from err
        x = np.asarray(matrix, dtype=np.float64)[:, self._fe_kept]
        return pd.Series(x @ self.lmm.state.beta, index=frame.index)

    # -- summary ------------------------------------------------------------------------

    def summary(self, alpha: float = 0.05) -> MixedLMSummary:
        """statsmodels' summary table; ``print(results.summary())`` shows it."""
        return MixedLMSummary(self, alpha=alpha)

    def __repr__(self) -> str:
        return f"<MixedLMResults {self.model.lme4_formula!r} ({self.method})>"


# ---------------------------------------------------------------------------
# Standard errors of the variance parameters
# ---------------------------------------------------------------------------


def _free(lmm: LinearMixedModel, params: list[_Param]) -> np.ndarray:
    """Parameters whose term is away from the boundary (positive definite Ψ)."""
    out = np.zeros(len(params), dtype=bool)
    for n, p in enumerate(params):
        lam = lmm.problem.lambdas(lmm.state.theta)[p.term]
        out[n] = bool(np.all(np.abs(np.diag(lam)) > math.sqrt(_BOUNDARY)))
    return out


def psi_covariance(lmm: LinearMixedModel, params: list[_Param]) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' covariance of the unscaled variance parameters ψ.

    statsmodels inverts minus the Hessian of its log-likelihood profiled over
    the scale, as a function of the fixed effects β and the variances and
    covariances relative to the scale.  That function is, with
    ``V = I + Z Ψ Zᵀ`` and ``f = n − p`` (REML) or ``n`` (ML),

        ℓ(β, ψ) = −½ log|V| − ½ [REML] log|XᵀV⁻¹X| − f/2 log((y − Xβ)ᵀV⁻¹(y − Xβ)),

    and every piece is read off the engine's factor at the θ whose λλᵀ is Ψ:
    ``log|V|`` is ``logdet_theta``, ``log|XᵀV⁻¹X|`` is ``logdet_x`` and the
    quadratic form is ``pwrss + (β − β̂)ᵀ XᵀV⁻¹X (β − β̂)``.  The Hessian is taken
    by central differences.

    Returns
    -------
    (ndarray, ndarray)
        The ψ × ψ block and the ψ × β block of the inverse; rows of parameters
        on the boundary are NaN.
    """
    theta0 = lmm.state.theta.copy()
    beta0 = lmm.state.beta.copy()
    n, p = lmm.cross_products.n_obs, lmm.cross_products.n_fixed
    fac = n - p if lmm.reml else n
    lambdas0 = lmm.problem.lambdas(theta0)
    psis0 = [lam @ lam.T for lam in lambdas0]
    psi0 = np.array([psis0[q.term][q.i, q.j] for q in params])
    free = _free(lmm, params)
    index = np.flatnonzero(free)
    k = len(params)
    psi_cov = np.full((k, k), np.nan)
    cross = np.full((k, p), np.nan)
    if not len(index):
        return psi_cov, cross

    cache: dict[tuple[float, ...], tuple | None] = {}
    workspace = lmm.problem.workspace()

    def state(psi: np.ndarray):
        key = tuple(psi)
        if key in cache:
            return cache[key]
        theta = theta0.copy()
        result = None
        try:
            for t, (term, sl) in enumerate(
                zip(lmm.design.terms, lmm.problem.theta_slices, strict=True)
            ):
                mat = psis0[t].copy()
                for q, value in zip(params, psi, strict=True):
                    if q.term == t:
                        mat[q.i, q.j] = mat[q.j, q.i] = value
                lam = np.linalg.cholesky(mat) if np.any(mat) else np.zeros_like(mat)
                theta[sl] = lam[term.theta_rows, term.theta_cols]
            f = lmm.problem.factor_at(theta, workspace)
            if f is not None:
                rinv = f.inverse_rx()
                a = np.linalg.inv(rinv.T @ rinv)
                result = (f.logdet_theta(), f.logdet_x(), f.pwrss(), f.fixed_effects(), a)
        except np.linalg.LinAlgError:
            result = None
        cache[key] = result
        return result

    def loglik(z: np.ndarray) -> float:
        beta = z[:p]
        psi = psi0.copy()
        psi[index] = z[p:]
        s = state(psi)
        if s is None:
            return math.nan
        logdet_v, logdet_x, r2, beta_hat, a = s
        d = beta - beta_hat
        value = -0.5 * logdet_v - 0.5 * fac * math.log(r2 + d @ a @ d)
        if lmm.reml:
            value -= 0.5 * logdet_x
        return value

    se_beta = lmm.state.sigma * np.sqrt(np.diag(lmm.state.unscaled_vcov))
    scale_psi = []
    for q in (params[i] for i in index):
        if q.i == q.j:
            scale_psi.append(abs(psi0[params.index(q)]))
        else:
            scale_psi.append(math.sqrt(psis0[q.term][q.i, q.i] * psis0[q.term][q.j, q.j]))
    steps = _STEP * np.concatenate([np.maximum(se_beta, 1e-12), np.maximum(scale_psi, 1e-12)])
    z0 = np.concatenate([beta0, psi0[index]])
    hessian = _central_hessian(loglik, z0, steps)
    try:
        inverse = np.linalg.inv(-hessian)
    except np.linalg.LinAlgError:
        return psi_cov, cross
    psi_cov[np.ix_(index, index)] = inverse[p:, p:]
    cross[index, :] = inverse[p:, :p]
    return psi_cov, cross


def _central_hessian(func, z0: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Hessian of ``func`` at ``z0`` by central differences with per-coordinate steps."""
    m = len(z0)
    hessian = np.empty((m, m))
    f0 = func(z0)
    for a in range(m):
        ea = np.zeros(m)
        ea[a] = steps[a]
        hessian[a, a] = (func(z0 + ea) - 2 * f0 + func(z0 - ea)) / steps[a] ** 2
        for b in range(a):
            eb = np.zeros(m)
            eb[b] = steps[b]
            value = (
                func(z0 + ea + eb) - func(z0 + ea - eb) - func(z0 - ea + eb) + func(z0 - ea - eb)
            ) / (4 * steps[a] * steps[b])
            hessian[a, b] = hessian[b, a] = value
    return hessian


# ---------------------------------------------------------------------------
# The printed summary
# ---------------------------------------------------------------------------


def _cell(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else ""


class MixedLMSummary:
    """statsmodels' ``MixedLM`` summary: model facts, then a row per parameter.

    ``str()`` (and :meth:`as_text`) give the text; ``tables`` holds the two
    tables as DataFrames of strings.
    """

    title = "Mixed Linear Model Regression Results"

    def __init__(self, results: MixedLMResults, alpha: float = 0.05) -> None:
        sizes = results.group_sizes()
        info = {
            "Model:": "MixedLM",
            "No. Observations:": str(results.nobs),
            "No. Groups:": str(results.n_groups),
            "Min. group size:": f"{sizes.min():.0f}",
            "Max. group size:": f"{sizes.max():.0f}",
            "Mean group size:": f"{sizes.mean():.1f}",
            "Dependent Variable:": results.lmm.design.response_name,
            "Method:": results.method,
            "Scale:": f"{results.scale:.4f}",
            "Log-Likelihood:": f"{results.llf:.4f}",
            "Converged:": "Yes" if results.converged else "No",
        }
        pairs = list(info.items())
        half = (len(pairs) + 1) // 2
        left, right = pairs[:half], pairs[half:]
        right += [("", "")] * (half - len(right))
        self.info = pd.DataFrame(
            [[lk, lv, rk, rv] for (lk, lv), (rk, rv) in zip(left, right, strict=True)]
        )

        z = scipy.stats.norm.ppf(1 - alpha / 2)
        fe, se = results.fe_params, results.bse_fe
        rows = []
        for name in fe.index:
            stat = fe[name] / se[name]
            p = 2 * scipy.stats.norm.sf(abs(stat))
            cells = [fe[name], se[name], stat, p, fe[name] - z * se[name], fe[name] + z * se[name]]
            rows.append([name, *(_cell(c) for c in cells)])
        scaled = results._psi_values() * results.scale  # noqa: SLF001 (issue 17 reworks)
        bse_re = results.bse_re.to_numpy() * math.sqrt(results.scale)
        params = results._params  # noqa: SLF001 (issue 17 reworks)
        for param, value, err in zip(params, scaled, bse_re, strict=True):
            rows.append([param.name, _cell(value), _cell(err), "", "", "", ""])
        header = ["", "Coef.", "Std.Err.", "z", "P>|z|", f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"]
        self.params = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows])
        self.params.columns = header[1:]
        self.notes: list[str] = []
        if results.is_singular:
            self.notes.append(
                "The fit is singular: a variance is estimated as zero or a correlation as "
                "±1, and the standard errors of its parameters are not available."
            )
        if results.lmm.convergence_messages:
            self.notes.extend(results.lmm.convergence_messages)
        self.tables = [self.info, self.params]

    def as_text(self) -> str:
        """The summary as statsmodels prints it."""
        info_cells = self.info.to_numpy().tolist()
        param_cells = [
            [str(i), *row]
            for i, row in zip(self.params.index, self.params.to_numpy().tolist(), strict=True)
        ]
        header = ["", *self.params.columns]
        info_width = _natural_width(info_cells)
        param_width = _natural_width([header, *param_cells])
        widest = max(info_width, param_width)
        # statsmodels widens the narrower table by padding its column separators
        # evenly (counted without the row labels) and the first column with the rest.
        info_sep, info_pad = _padding(widest, info_width, 4)
        param_sep, param_pad = _padding(widest, param_width, len(header) - 1)
        info_lines = _render(info_cells, None, info_sep, info_pad, left_data=True)
        param_lines = _render(param_cells, header, param_sep, param_pad, left_data=False)
        info_lines[0] = "=" * widest
        lines = [*info_lines, *param_lines, "=" * widest]
        title = self.title
        if len(title) < widest:
            title = " " * int(widest / 2 - len(title) / 2) + title
        notes = "\n".join("\n".join(textwrap.wrap(note, widest)) for note in self.notes)
        return f"{title}\n" + "\n".join(lines) + f"\n{notes}"

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()


def _natural_width(rows: list[list[str]]) -> int:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return sum(widths) + len(widths) - 1


def _padding(widest: int, width: int, n_columns: int) -> tuple[int, int]:
    n_sep = max(n_columns - 1, 1)
    extra = (widest - width) // n_sep
    return extra, widest - (width + n_sep * extra)


def _render(
    rows: list[list[str]], header: list[str] | None, sep: int, pad: int, *, left_data: bool
) -> list[str]:
    """A table as statsmodels' SimpleTable writes it: rule, [header, rule,] rows."""
    rows = [[r[0] + " " * pad, *r[1:]] for r in rows]
    everything = rows if header is None else [header, *rows]
    widths = [max(len(r[c]) for r in everything) for c in range(len(everything[0]))]
    gap = " " * (sep + 1)

    def line(cells: list[str], align) -> str:
        return gap.join(align(c, w, n) for n, (c, w) in enumerate(zip(cells, widths, strict=True)))

    def data_align(cell: str, width: int, n: int) -> str:
        return cell.ljust(width) if (left_data or n == 0) else cell.rjust(width)

    def header_align(cell: str, width: int, n: int) -> str:
        return cell.ljust(width) if n == 0 else cell.center(width)

    body = [line(r, data_align) for r in rows]
    rule = "-" * len(body[-1])
    if header is None:
        return [rule, *body]
    return [rule, line(header, header_align), rule, *body]
