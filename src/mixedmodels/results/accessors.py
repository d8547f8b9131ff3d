"""What a fitted linear mixed model reports: estimates, variance components, modes.

The mixin reads the model's public parts — ``state`` (the immutable
:class:`~mixedmodels.results.state.FittedState`), ``design`` (names, terms),
``problem`` (θ → λ) and ``rows`` (fitted values, residuals) — and presents
them with lme4's names and layout.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ..engine.optimize import BOUNDARY_TOLERANCE, OptimizationSummary
from ..errors import NotFittedError


class FitResultsMixin:
    """Results API of a fitted model (lme4's accessors, Pythonic names).

    A model keeps its fitted state in ``self._state`` (``None`` before a fit).
    """

    _state: Any

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> Any:
        """The fitted state (:class:`NotFittedError` before :meth:`fit`)."""
        if self._state is None:
            raise NotFittedError("the model has not been fitted yet: call .fit() first")
        return self._state

    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    @property
    def optsum(self) -> OptimizationSummary:
        """What the optimizer did (lme4's and MixedModels.jl's ``optsum``)."""
        return self.state.optimizer

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a diagonal element of some λ within 1e-4 of zero."""
        # θ − (−∞) is +∞: a θ without a bound is never near it.  Python floats: a
        # few values, read once per fit (numpy's three calls cost more).
        theta = self.state.theta.tolist()
        return any(
            t - b < BOUNDARY_TOLERANCE
            for t, b in zip(theta, self.lower_bounds.tolist(), strict=True)
        )

    @property
    def converged(self) -> bool:
        return bool(self.state.optimizer.converged)

    @property
    def convergence_messages(self) -> list[str]:
        return list(self.state.optimizer.messages)

    # -- fixed effects --------------------------------------------------------------

    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates β, in model-matrix column order."""
        return pd.Series(self.state.beta, index=self.design.fixed_names, name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates, σ² (R_X R_Xᵀ)⁻¹."""
        names = self.design.fixed_names
        return pd.DataFrame(self.state.vcov, index=names, columns=names)

    @property
    def coefs(self) -> pd.DataFrame:
        """Estimates, standard errors and t values of the fixed effects."""
        state = self.state
        se = state.std_errors
        return pd.DataFrame(
            {"estimate": state.beta, "std_error": se, "t_value": state.beta / se},
            index=self.design.fixed_names,
        )

    # -- scalars ----------------------------------------------------------------------

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return self.state.sigma

    @property
    def theta(self) -> np.ndarray:
        """Relative covariance parameters, per term the lower triangle of λ column-major."""
        return self.state.theta.copy()

    @property
    def theta_names(self) -> list[str]:
        return self.problem.theta_names()

    @property
    def objective(self) -> float:
        """REML criterion (REML fits) or deviance −2 log L (ML fits), lme4's scale."""
        return self.state.objective

    @property
    def nobs(self) -> int:
        return int(self.cross_products.n_obs)

    @property
    def n_dropped_missing(self) -> int:
        """Rows dropped because a column the model uses was missing."""
        return int(self.design.n_dropped_missing)

    @property
    def n_params(self) -> int:
        """Parameters counted by logLik's df: β, θ and σ."""
        return len(self.design.fixed_names) + len(self.lower_bounds) + 1

    @property
    def loglik(self) -> float:
        """Log-likelihood (the REML log-likelihood for REML fits), as lme4's ``logLik``."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return self.objective + 2 * self.n_params

    @property
    def bic(self) -> float:
        return self.objective + self.n_params * math.log(self.nobs)

    @property
    def deviance(self) -> float:
        """−2 log L at the estimates (for REML fits, the ML deviance at the REML θ)."""
        if not self.reml:
            return self.objective
        return self.problem.objective(self.state.theta, reml=False)

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return {t.group_name: t.n_levels for t in self.design.terms}

    # -- variance components --------------------------------------------------------

    @property
    def term_labels(self) -> list[str]:
        """Grouping labels per term, made unique as R does (``Subject``, ``Subject.1``)."""
        seen: Counter[str] = Counter()
        labels = []
        for t in self.design.terms:
            n = seen[t.group_name]
            labels.append(t.group_name if n == 0 else f"{t.group_name}.{n}")
            seen[t.group_name] += 1
        return labels

    def covariance_matrices(self) -> list[np.ndarray]:
        """Per term, the covariance matrix σ² λλᵀ of its random effects."""
        state = self.state
        return [state.sigma**2 * lam @ lam.T for lam in self.problem.lambdas(state.theta)]

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components, as R's ``as.data.frame(VarCorr(fit))``.

        One row per variance (``var2`` empty) and per covariance, term by term,
        then the residual.  ``sdcor`` holds the standard deviation of a variance
        row and the correlation of a covariance row.
        """
        rows = []
        for label, term, cov in zip(
            self.term_labels, self.design.terms, self.covariance_matrices(), strict=True
        ):
            names = term.column_names
            sd = np.sqrt(np.diag(cov))
            for i, name in enumerate(names):
                rows.append((label, name, None, cov[i, i], sd[i]))
            for j in range(len(names)):
                for i in range(j + 1, len(names)):
                    denom = sd[i] * sd[j]
                    corr = cov[i, j] / denom if denom > 0 else math.nan
                    rows.append((label, names[j], names[i], cov[i, j], corr))
        sigma = self.sigma
        rows.append(("Residual", None, None, sigma**2, sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    # -- conditional modes and fitted values ----------------------------------------

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects: grouping factor → levels × terms."""
        out: dict[str, pd.DataFrame] = {}
        for term, modes in zip(self.design.terms, self.state.modes, strict=True):
            frame = pd.DataFrame(modes, index=term.levels, columns=term.column_names)
            frame.index.name = term.group_name
            if term.group_name in out:
                out[term.group_name] = pd.concat([out[term.group_name], frame], axis=1)
            else:
                out[term.group_name] = frame
        return out

    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef()``: per grouping factor, the fixed effects plus each level's modes.

        Grouping factor → levels × coefficients.  Every table has the fixed
        effects' columns, preceded (as in lme4) by the random effects that
        have no fixed counterpart, whose fixed part counts as zero.
        """
        fixed = self.fixef
        modes = self.ranef
        extra = list(
            dict.fromkeys(
                name for frame in modes.values() for name in frame.columns if name not in fixed
            )
        )
        base = pd.concat([pd.Series(0.0, index=extra), fixed])
        out: dict[str, pd.DataFrame] = {}
        for group, frame in modes.items():
            table = pd.DataFrame(
                np.tile(base.to_numpy(), (len(frame), 1)), index=frame.index, columns=base.index
            )
            table[list(frame.columns)] += frame.to_numpy()
            out[group] = table
        return out

    @property
    def fitted(self) -> Any:
        """Conditional fitted values Xβ + Zb, indexed like the rows used."""
        return self.rows.fitted(self.state)

    @property
    def residuals(self) -> Any:
        """Response minus conditional fitted values."""
        return self.rows.residuals(self.state)

    def scaled_residual_quantiles(self) -> pd.Series:
        """Min, quartiles and max of the scaled residuals (as lme4's summary prints them).

        The residuals are weighted by the square roots of the prior weights and
        divided by σ̂.  ``.attrs["exact"]`` is False when they were
        approximated without bringing every row together (a Dask fit).
        """
        values, exact = self.rows.scaled_residual_quantiles(self.state)
        quantiles = pd.Series(values, index=["Min", "1Q", "Median", "3Q", "Max"])
        quantiles.attrs["exact"] = bool(exact)
        return quantiles

    # -- display --------------------------------------------------------------------

    def summary(self, ddf: str | None = "satterthwaite", correlation: bool | None = None):
        """lme4's (lmerTest's) summary: ``print(m.summary())``; HTML in a notebook.

        Parameters are those of :func:`mixedmodels.results.summary.summarize`
        (``ddf="kenward-roger"``, ``ddf=None`` for no df; ``correlation``).
        """
        from .summary import summarize

        return summarize(self, ddf=ddf, correlation=correlation)

    def glance(self) -> pd.DataFrame:
        """One row of fit statistics, as broom.mixed's ``glance``
        (:func:`mixedmodels.results.tidy.glance`)."""
        from .tidy import glance

        return glance(self)

    def tidy(self, **options) -> pd.DataFrame:
        """Fixed effects and variance parameters in one long table, as broom.mixed's
        ``tidy`` (options: :func:`mixedmodels.results.tidy.tidy`)."""
        from .tidy import tidy

        return tidy(self, **options)

    def _repr_html_(self) -> str:
        """Notebook display: the summary as HTML tables."""
        if not self.is_fitted:
            import html

            return f"<pre>{html.escape(repr(self))}</pre>"
        return self.summary().as_html()

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"<{type(self).__name__} {self.design.formula.source!r} (not fitted)>"
        return str(self.summary())
