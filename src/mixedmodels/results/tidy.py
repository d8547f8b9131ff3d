"""Tables to paste into papers: broom.mixed's ``glance`` and ``tidy``, intervals.

- :func:`glance` — one row of fit statistics (nobs, sigma, logLik, AIC, BIC,
  deviance, the REML criterion, residual df), as broom.mixed's ``glance``;
- :func:`tidy` — fixed effects and variance parameters in one long table, as
  broom.mixed's ``tidy`` (``effect``, ``group``, ``term``, ``estimate``, …);
- :func:`with_conf_int` — a coefficient table with confidence-interval
  columns (what ``coef_table(conf_int=True)`` returns).

Everything is read from the model's public attributes.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import MixedModelsError

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel


def _check_level(level: float) -> float:
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise MixedModelsError(f"level must be between 0 and 1, got {level!r}")
    return float(level)


def with_conf_int(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Add ``conf_low`` and ``conf_high``: estimate ± t quantile × standard error.

    The quantile is Student's t with the table's ``df`` (Satterthwaite's or
    Kenward–Roger's), the normal one where ``df`` is infinite (Wald intervals,
    ``ddf="asymptotic"``).

    Parameters
    ----------
    table : pandas.DataFrame
        With ``estimate``, ``std_error`` and ``df`` columns (``coef_table()``).
    level : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        A copy with the two columns added.
    """
    level = _check_level(level)
    df = table["df"].to_numpy(dtype=float)
    q = np.where(
        np.isfinite(df),
        stats.t.ppf(0.5 + level / 2, np.where(np.isfinite(df), df, 1.0)),
        stats.norm.ppf(0.5 + level / 2),
    )
    out = table.copy()
    half = q * out["std_error"].to_numpy(dtype=float)
    out["conf_low"] = out["estimate"] - half
    out["conf_high"] = out["estimate"] + half
    return out


def glance(model: LinearMixedModel) -> pd.DataFrame:
    """One row of fit statistics, as broom.mixed's ``glance``.

    Columns ``nobs``, ``sigma``, ``loglik`` (the REML log-likelihood for REML
    fits, as lme4's ``logLik``), ``aic``, ``bic``, ``deviance`` (−2 log L at
    the estimates: for REML fits the ML deviance at the REML estimates),
    ``reml_criterion`` (NaN for ML fits) and ``df_residual`` (nobs minus the
    number of parameters).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> m.glance()[["nobs", "df_residual"]].to_dict("records")
    [{'nobs': 180, 'df_residual': 174}]
    """
    row = {
        "nobs": int(model.nobs),
        "sigma": float(model.sigma),
        "loglik": float(model.loglik),
        "aic": float(model.aic),
        "bic": float(model.bic),
        "deviance": float(model.deviance),
        "reml_criterion": float(model.objective) if model.reml else math.nan,
        "df_residual": int(model.nobs - model.n_params),
    }
    return pd.DataFrame([row])


def _profile_name(group: str, var1: str | None, var2: str | None, ngroups) -> str:
    """The row name lme4's ``confint(oldNames = FALSE)`` gives a variance parameter."""
    if group == "Residual":
        return "sigma"
    base = re.sub(r"\.\d+$", "", group)
    factor = base if (base != group and base in ngroups) else group
    if var2 is None:
        return f"sd_{var1}|{factor}"
    return f"cor_{var2}.{var1}|{factor}"


def _lme4_order(varcorr: pd.DataFrame) -> list:
    """``as.data.frame(VarCorr)`` rows in lme4's parameter order: per term, each
    column's sd followed by its correlations with the later columns."""
    out = []
    for _, rows in varcorr.groupby("group", sort=False):
        variances = [r for r in rows.itertuples(index=False) if not isinstance(r.var2, str)]
        covariances = [r for r in rows.itertuples(index=False) if isinstance(r.var2, str)]
        for v in variances:
            out.append(v)
            out += [c for c in covariances if c.var1 == v.var1]
    return out


def tidy(
    model: LinearMixedModel,
    *,
    effects: str = "all",
    ddf: str = "satterthwaite",
    conf_int: bool = False,
    level: float = 0.95,
    conf_method: str = "wald",
) -> pd.DataFrame:
    """Fixed effects and variance parameters in one long table, as broom.mixed's ``tidy``.

    Parameters
    ----------
    model : LinearMixedModel
        A fitted model.
    effects : {"all", "fixed", "ran_pars"}
        Which rows: the fixed effects (``effect == "fixed"``), the standard
        deviations and correlations of the random effects and the residual
        standard deviation (``"ran_pars"``), or both.
    ddf : str, default "satterthwaite"
        The df of the fixed effects' t tests (see ``coef_table``).
    conf_int : bool, default False
        Add ``conf_low`` and ``conf_high``.
    level : float, default 0.95
    conf_method : {"wald", "profile"}
        Wald intervals (t with the table's df) for the fixed effects and none
        (NaN) for the variance parameters, as broom.mixed; or profile
        intervals for every row (``m.confint(method="profile")``, slower).

    Returns
    -------
    pandas.DataFrame
        Columns ``effect``, ``group`` (None for fixed effects), ``term``
        (``sd__(Intercept)``, ``cor__(Intercept).Days``, ``sd__Observation``
        for the residual, as broom.mixed), ``estimate``, ``std_error``,
        ``statistic``, ``df``, ``p_value``, and the interval columns.
    """
    if effects not in ("all", "fixed", "ran_pars"):
        raise MixedModelsError(f"effects must be 'all', 'fixed' or 'ran_pars', got {effects!r}")
    method = str(conf_method).lower()
    if method not in ("wald", "profile"):
        raise MixedModelsError(f"conf_method must be 'wald' or 'profile', got {conf_method!r}")
    rows = []
    profile = None
    if conf_int and method == "profile":
        profile = model.confint(method="profile", level=_check_level(level))
    if effects in ("all", "fixed"):
        table = model.coef_table(ddf=ddf)
        if conf_int:
            table = with_conf_int(table, level)
        for term, r in table.iterrows():
            row = {
                "effect": "fixed",
                "group": None,
                "term": str(term),
                "estimate": r.estimate,
                "std_error": r.std_error,
                "statistic": r.t_value,
                "df": r.df,
                "p_value": r.p_value,
            }
            if conf_int:
                low, high = (r.conf_low, r.conf_high)
                if profile is not None:
                    low, high = profile.loc[str(term), ["lower", "upper"]]
                row.update(conf_low=low, conf_high=high)
            rows.append(row)
    if effects in ("all", "ran_pars"):
        ngroups = model.ngroups
        for r in _lme4_order(model.varcorr):
            var1 = r.var1 if isinstance(r.var1, str) else None
            var2 = r.var2 if isinstance(r.var2, str) else None
            if r.group == "Residual":
                term = "sd__Observation"
            elif var2 is None:
                term = f"sd__{var1}"
            else:
                term = f"cor__{var1}.{var2}"
            row = {
                "effect": "ran_pars",
                "group": r.group,
                "term": term,
                "estimate": r.sdcor,
                "std_error": math.nan,
                "statistic": math.nan,
                "df": math.nan,
                "p_value": math.nan,
            }
            if conf_int:
                low = high = math.nan
                if profile is not None:
                    name = _profile_name(r.group, var1, var2, ngroups)
                    if name in profile.index:
                        low, high = profile.loc[name, ["lower", "upper"]]
                row.update(conf_low=low, conf_high=high)
            rows.append(row)
    columns = ["effect", "group", "term", "estimate", "std_error", "statistic", "df", "p_value"]
    if conf_int:
        columns += ["conf_low", "conf_high"]
    return pd.DataFrame(rows, columns=columns)
