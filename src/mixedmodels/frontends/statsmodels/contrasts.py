"""Wald tests of linear hypotheses on a fit's parameters (statsmodels' ``t_test``, ``f_test``).

statsmodels' ``MixedLMResults.t_test`` tests combinations of the fixed
effects only (the matrix has ``k_fe`` columns); ``wald_test`` and ``f_test``
take a matrix over all parameters (or over the fixed effects, padded here).
Statistics are z (normal) and chi-squared, or F with ``use_f``, from
``cov_params()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.stats

if TYPE_CHECKING:
    from .results import MixedLMResults

__all__ = ["ContrastResults", "t_test", "wald_test"]


@dataclass
class ContrastResults:
    """The outcome of a test, with statsmodels' ``ContrastResults`` attribute names.

    Attributes
    ----------
    effect : ndarray or None
        R·params − q for each row (t tests).
    sd : ndarray or None
        Their standard errors.
    statistic : ndarray or float
        z values (t tests), the chi-squared or F statistic (Wald tests).
    pvalue : ndarray or float
    distribution : {"norm", "t", "chi2", "F"}
    df_num, df_denom : float
    """

    statistic: Any
    pvalue: Any
    distribution: str
    effect: np.ndarray | None = None
    sd: np.ndarray | None = None
    df_num: float | None = None
    df_denom: float | None = None

    @property
    def tvalue(self) -> Any:
        return self.statistic

    @property
    def fvalue(self) -> Any:
        return self.statistic

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """Intervals for the effects (t tests only)."""
        if self.effect is None or self.sd is None:
            raise ValueError("confidence intervals are defined for t tests only")
        if self.distribution == "t":
            z = scipy.stats.t.ppf(1 - alpha / 2, self.df_denom)
        else:
            z = scipy.stats.norm.ppf(1 - alpha / 2)
        return np.column_stack([self.effect - z * self.sd, self.effect + z * self.sd])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """The t tests as a table (coef, std err, z, P>|z|, interval)."""
        ci = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "coef": self.effect,
                "std err": self.sd,
                "z": self.statistic,
                "P>|z|": self.pvalue,
                "Conf. Int. Low": ci[:, 0],
                "Conf. Int. Upp.": ci[:, 1],
            },
            index=[f"c{i}" for i in range(len(self.effect))],
        )

    def summary(self, alpha: float = 0.05) -> str:
        if self.effect is not None:
            return self.summary_frame(alpha).to_string()
        return (
            f"<{self.distribution} test: statistic={float(self.statistic):.4g}, "
            f"p-value={float(self.pvalue):.4g}, df_num={self.df_num}, df_denom={self.df_denom}>"
        )

    def __str__(self) -> str:
        return self.summary()


def _restrictions(results: MixedLMResults, r_matrix: Any, what: str) -> np.ndarray:
    if isinstance(r_matrix, str):
        raise ValueError(f"{what}: give the restrictions as a matrix, not a string")
    r = np.atleast_2d(np.asarray(r_matrix, dtype=np.float64))
    k_all = len(np.asarray(results.params))
    if r.shape[1] == results.k_fe:
        r = np.hstack([r, np.zeros((r.shape[0], k_all - results.k_fe))])
    if r.shape[1] != k_all:
        raise ValueError(
            f"r_matrix for {what} should have {results.k_fe:d} or {k_all:d} columns, "
            f"got {r.shape[1]}"
        )
    return r


def t_test(results: MixedLMResults, r_matrix: Any, use_t: bool = False) -> ContrastResults:
    """z (or t) tests of R·fe_params = 0, one per row of ``r_matrix`` (``k_fe`` columns)."""
    r = np.atleast_2d(np.asarray(r_matrix, dtype=np.float64))
    if r.shape[1] != results.k_fe:
        raise ValueError(f"r_matrix for t-test should have {results.k_fe:d} columns")
    r = _restrictions(results, r, "t-test")
    params = np.asarray(results.params, dtype=np.float64)
    cov = results.normalized_cov_params
    effect = r @ params
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.diag(r @ cov @ r.T))
        z = effect / sd
    if use_t:
        df = float(results.df_resid)
        pvalue = 2 * scipy.stats.t.sf(np.abs(z), df)
        return ContrastResults(z, pvalue, "t", effect=effect, sd=sd, df_denom=df)
    pvalue = 2 * scipy.stats.norm.sf(np.abs(z))
    return ContrastResults(z, pvalue, "norm", effect=effect, sd=sd, df_denom=np.inf)


def wald_test(
    results: MixedLMResults, r_matrix: Any, q_matrix: Any = None, use_f: bool = False
) -> ContrastResults:
    """Joint test of R·params = q: chi-squared, or F (df: rows of R, residual df)."""
    r = _restrictions(results, r_matrix, "wald_test")
    q = np.zeros(r.shape[0]) if q_matrix is None else np.asarray(q_matrix, dtype=float).ravel()
    if len(q) != r.shape[0]:
        raise ValueError(f"q_matrix must have {r.shape[0]} values, got {len(q)}")
    params = np.asarray(results.params, dtype=np.float64)
    diff = r @ params - q
    cov = r @ results.normalized_cov_params @ r.T
    statistic = float(diff @ np.linalg.pinv(cov) @ diff)
    df_num = float(np.linalg.matrix_rank(cov))
    if use_f:
        statistic /= df_num
        df_denom = float(results.df_resid)
        pvalue = float(scipy.stats.f.sf(statistic, df_num, df_denom))
        return ContrastResults(statistic, pvalue, "F", df_num=df_num, df_denom=df_denom)
    pvalue = float(scipy.stats.chi2.sf(statistic, df_num))
    return ContrastResults(statistic, pvalue, "chi2", df_num=df_num)
