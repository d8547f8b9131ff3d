"""What a fitted linear mixed model reports: estimates, variance components, modes, summary.

The mixin reads the state :class:`~mixedmodels.model.LinearMixedModel` leaves
after a fit (θ, β, σ, the unscaled covariance of β and the conditional modes)
and presents it with lme4's names and layout.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd


class NotFittedError(RuntimeError):
    """A result was asked of a model that has not been fitted."""


class FitResultsMixin:
    """Results API of a fitted model (lme4's accessors, Pythonic names)."""

    # -- helpers ----------------------------------------------------------------------

    def _require_fit(self) -> None:
        if getattr(self, "_theta", None) is None:
            raise NotFittedError("the model has not been fitted yet: call .fit() first")

    # -- fixed effects --------------------------------------------------------------

    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates β, in model-matrix column order."""
        self._require_fit()
        return pd.Series(self._beta, index=self.design.fixed_names, name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates, σ² (R_X R_Xᵀ)⁻¹."""
        self._require_fit()
        names = self.design.fixed_names
        return pd.DataFrame(self._sigma**2 * self._unscaled_vcov, index=names, columns=names)

    @property
    def coefs(self) -> pd.DataFrame:
        """Estimates, standard errors and t values of the fixed effects."""
        self._require_fit()
        se = self._sigma * np.sqrt(np.diag(self._unscaled_vcov))
        return pd.DataFrame(
            {"estimate": self._beta, "std_error": se, "t_value": self._beta / se},
            index=self.design.fixed_names,
        )

    # -- scalars ----------------------------------------------------------------------

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        self._require_fit()
        return self._sigma

    @property
    def theta(self) -> np.ndarray:
        """Relative covariance parameters, per term the lower triangle of λ column-major."""
        self._require_fit()
        return self._theta.copy()

    @property
    def theta_names(self) -> list[str]:
        return [name for t in self.design.terms for name in t.theta_names()]

    @property
    def objective(self) -> float:
        """REML criterion (REML fits) or deviance −2 log L (ML fits), lme4's scale."""
        self._require_fit()
        return self.optsum.objective

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
        self._require_fit()
        if not self.reml:
            return self.objective
        value = self.objective_at(self._theta, reml=False)
        self.objective_at(self._theta)
        return value

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return {t.group_name: t.n_levels for t in self.design.terms}

    # -- variance components --------------------------------------------------------

    def _term_labels(self) -> list[str]:
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
        self._require_fit()
        return [self._sigma**2 * lam @ lam.T for lam in self._lambdas(self._theta)]

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components, as R's ``as.data.frame(VarCorr(fit))``.

        One row per variance (``var2`` empty) and per covariance, term by term,
        then the residual.  ``sdcor`` holds the standard deviation of a variance
        row and the correlation of a covariance row.
        """
        rows = []
        for label, term, cov in zip(
            self._term_labels(), self.design.terms, self.covariance_matrices(), strict=True
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
        rows.append(("Residual", None, None, self._sigma**2, self._sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    # -- conditional modes and fitted values ----------------------------------------

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects: grouping factor → levels × terms."""
        self._require_fit()
        out: dict[str, pd.DataFrame] = {}
        for term, modes in zip(self.design.terms, self._modes, strict=True):
            frame = pd.DataFrame(modes, index=term.levels, columns=term.column_names)
            frame.index.name = term.group_name
            if term.group_name in out:
                out[term.group_name] = pd.concat([out[term.group_name], frame], axis=1)
            else:
                out[term.group_name] = frame
        return out

    def _fitted_array(self) -> np.ndarray:
        fitted = self.design.x @ self._beta
        for term, modes in zip(self.design.terms, self._modes, strict=True):
            fitted += np.einsum("nq,nq->n", term.z, modes[term.codes])
        return fitted

    @property
    def fitted(self) -> pd.Series:
        """Conditional fitted values Xβ + Zb, indexed like the rows used."""
        self._require_fit()
        return pd.Series(self._fitted_array(), index=self.design.row_index, name="fitted")

    @property
    def residuals(self) -> pd.Series:
        """Response minus conditional fitted values."""
        self._require_fit()
        return pd.Series(
            self.design.y - self._fitted_array(), index=self.design.row_index, name="residuals"
        )

    # -- summary --------------------------------------------------------------------

    def summary(self) -> Summary:
        """lme4-style summary; ``print(model.summary())`` shows it."""
        self._require_fit()
        from .text import lme4_summary

        return Summary(lme4_summary(self))

    def _repr_html_(self) -> str:
        """Notebook display: the summary as HTML tables."""
        if getattr(self, "_theta", None) is None:
            import html

            return f"<pre>{html.escape(repr(self))}</pre>"
        from .notebook import summary_html

        return summary_html(self)

    def __repr__(self) -> str:
        if getattr(self, "_theta", None) is None:
            return f"<LinearMixedModel {self.design.formula.source!r} (not fitted)>"
        return str(self.summary())


class Summary:
    """Printable summary text (``str()`` gives the text)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text
