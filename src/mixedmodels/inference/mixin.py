"""Inference methods of a fitted model: t tests with small-sample df, intervals,
conditional variances, predictions, simulation and the parametric bootstrap.

:class:`InferenceMixin` is one of :class:`~mixedmodels.model.LinearMixedModel`'s
bases; it reads the state a fit leaves (θ, β, σ, the factor and the blocks).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import arguments
from ..errors import MixedModelsError

if TYPE_CHECKING:
    from .bootstrap import BootstrapResult

# The methods import their modules (and scipy.stats, nlopt, scipy.interpolate
# through them) on first use: a fit needs none of them, and importing them with
# the package cost a quarter of a second.

_DDF_ALIASES = {
    "kenward_roger": "kenward-roger",
    "kr": "kenward-roger",
    "lme4": "asymptotic",
    "normal": "asymptotic",
}


# Tells "re_form not given" from re_form=None (which lme4 spells re.form=NULL).
_UNSET: Any = object()


class InferenceMixin:
    """Inference API of a fitted linear mixed model."""

    def coef_table(
        self,
        ddf: str = "satterthwaite",
        *,
        conf_int: bool = False,
        level: float = 0.95,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Fixed effects with standard errors, df, t values and two-sided p values.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "asymptotic"}
            Denominator degrees of freedom: Satterthwaite's (lmerTest's default,
            REML or ML fits), Kenward–Roger's (REML fits; the standard errors
            are then the adjusted ones, as lmerTest and pbkrtest report them),
            or none (``df`` infinite, p values from the normal distribution).
        conf_int : bool, default False
            Add ``conf_low`` and ``conf_high``: estimate ± the t quantile with
            these df (normal for ``"asymptotic"``) × standard error.
        level : float, default 0.95
            Confidence level of those intervals.
        progress : bool, optional
            Satterthwaite's progress bar: by default shown when the df take
            more than a few seconds; True always, False never.

        Returns
        -------
        pandas.DataFrame
            ``estimate``, ``std_error``, ``df``, ``t_value``, ``p_value`` per
            fixed effect (and ``conf_low``, ``conf_high``).
        """
        method = arguments.choice(
            ddf, "ddf", ["satterthwaite", "kenward-roger", "asymptotic"], _DDF_ALIASES
        )
        conf_int = arguments.boolean(conf_int, "conf_int")
        if conf_int:
            level = arguments.level(level)
        beta = self.state.beta
        if method == "kenward-roger":
            from .kenward_roger import kenward_roger_table

            se, df, p = kenward_roger_table(self)
        else:
            se = self.state.std_errors
            if method == "satterthwaite":
                from .satterthwaite import satterthwaite_table

                df, p = satterthwaite_table(self, progress)
            else:
                from scipy import stats

                df = np.full(len(beta), np.inf)
                p = 2 * stats.norm.sf(np.abs(beta / se))
        table = pd.DataFrame(
            {"estimate": beta, "std_error": se, "df": df, "t_value": beta / se, "p_value": p},
            index=self.design.fixed_names,
        )
        if conf_int:
            from ..results.tidy import with_conf_int

            table = with_conf_int(table, level)
        return table

    @property
    def sdcor_names(self) -> list[str]:
        """lme4's names of the variance parameters (``sd_(Intercept)|Subject``, ``sigma``)."""
        from .profile import sdcor_names

        return sdcor_names(self)

    def confint(
        self,
        method: str = "profile",
        level: float = 0.95,
        *,
        n_boot: int = 500,
        seed: Any = None,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Confidence intervals, rows named as lme4's ``confint(oldNames=FALSE)``.

        Parameters
        ----------
        method : {"profile", "wald", "bootstrap"}
            Profile likelihood (lme4's ``profile``: the ML deviance profiled
            along each parameter), Wald (fixed effects only; the variance
            parameters get NaN, as lme4), or the percentiles of a parametric
            bootstrap of ``n_boot`` replicates.
        level : float, default 0.95
        n_boot, seed
            For ``method="bootstrap"``.
        progress : bool, optional
            A progress bar (profile: a tick per point walked; bootstrap: per
            replicate): by default shown once the work has run for a few
            seconds; True always, False never.

        Returns
        -------
        pandas.DataFrame
            ``lower`` and ``upper``; rows ``sd_…|group``, ``cor_…|group``,
            ``sigma``, then the fixed effects.
        """
        level = arguments.level(level)
        method = arguments.choice(method, "method", ["profile", "wald", "bootstrap"])
        if method == "profile":
            from .profile import profile_confint

            return profile_confint(self, level, progress=progress)
        if method == "wald":
            from scipy import stats

            z = stats.norm.ppf(0.5 + level / 2)
            state = self.state
            se = state.std_errors
            names = self.sdcor_names
            lower = np.concatenate([np.full(len(names), np.nan), state.beta - z * se])
            upper = np.concatenate([np.full(len(names), np.nan), state.beta + z * se])
            return pd.DataFrame(
                {"lower": lower, "upper": upper}, index=[*names, *self.design.fixed_names]
            )
        return self.bootstrap(n_boot, seed=seed, progress=progress).confint(level)

    @property
    def ranef_cov(self) -> dict[str, np.ndarray]:
        """Conditional covariances of the modes (lme4's ``condVar``).

        Grouping factor → array (levels, q, q), levels in the order of
        :attr:`ranef`; terms sharing a grouping factor are taken together.
        """
        from .condvar import conditional_covariances

        return conditional_covariances(self)

    def profile(self, level: float = 0.95, progress: bool | None = None) -> pd.DataFrame:
        """The likelihood profile behind ``confint(method="profile")``.

        Returns a long table with columns ``parameter`` (lme4's names),
        ``value`` and ``zeta`` (the signed square root of the change in the
        ML deviance), what :func:`mixedmodels.plots.profile` draws.
        """
        from .profile import profile_table

        return profile_table(self, arguments.level(level), progress=progress)

    def predict(
        self,
        newdata: Any = None,
        *,
        random: bool = True,
        allow_new_levels: bool = False,
        re_form: Any = _UNSET,
        offset: Any = None,
    ) -> pd.Series:
        """Predictions, conditional on the random effects or marginal.

        Parameters
        ----------
        newdata : DataFrame or dict of columns, optional
            Rows to predict; default the rows of the fit (then the fitted values).
        random : bool, default True
            Add the conditional modes (``False``: the fixed part Xβ̂ only,
            lme4's ``re.form=NA``).
        allow_new_levels : bool, default False
            Give levels not seen in the fit a zero random effect; otherwise
            such a level raises :class:`~mixedmodels.errors.DataError`.
        re_form : None or "NA", optional
            lme4's spelling: ``re_form=None`` (R's ``re.form=NULL``, all random
            effects) is ``random=True``; ``"NA"`` (R's ``re.form=NA``, none) is
            ``random=False``.
        offset : array-like, optional
            The new rows' offset, for a model fitted with ``offset=`` given as
            an array; offsets of the formula (``offset(log(n))``) and of a
            column named by ``offset=`` are computed from ``newdata``.
        """
        self.state  # noqa: B018 - raises NotFittedError before a fit
        random = arguments.boolean(random, "random")
        allow_new_levels = arguments.boolean(allow_new_levels, "allow_new_levels")
        if re_form is not _UNSET:
            random = _re_form_to_random(re_form)
        if offset is not None and newdata is None:
            raise MixedModelsError("offset= gives the offset of new rows: pass newdata too")
        return self.rows.predict(
            self, newdata, random=random, allow_new_levels=allow_new_levels, offset=offset
        )

    def simulate(self, n: int = 1, seed: Any = None) -> pd.DataFrame:
        """Responses simulated from the fitted model: columns ``sim_1`` … ``sim_n``."""
        n = arguments.positive_int(n, "n")
        rng = arguments.seed(seed)
        design = self.rows.in_memory("simulate()")
        from .bootstrap import simulate_responses

        values = simulate_responses(self, n, rng)
        return pd.DataFrame(
            values, index=design.row_index, columns=[f"sim_{i + 1}" for i in range(n)]
        )

    def bootstrap(self, n: int, seed: Any = None, progress: bool | None = None) -> BootstrapResult:
        """Parametric bootstrap: refit θ to ``n`` responses simulated from the fit.

        Each replicate changes only the y parts of the model's cross-products
        and re-optimises θ from the estimate; ``seed`` makes it reproducible.

        Returns
        -------
        BootstrapResult
            ``.replicates`` (objective, σ, β, θ per replicate) and ``.confint()``.
        """
        n = arguments.positive_int(n, "n")
        rng = arguments.seed(seed)
        from .bootstrap import parametric_bootstrap

        return parametric_bootstrap(self, n, seed=rng, progress=progress)


def _re_form_to_random(re_form: Any) -> bool:
    """lme4's ``re.form``: NULL (None) keeps every random effect, NA drops them."""
    if re_form is None:
        return True
    if (isinstance(re_form, str) and re_form.upper() == "NA") or (
        isinstance(re_form, float) and math.isnan(re_form)
    ):
        return False
    raise MixedModelsError(
        f"re_form must be None (all random effects) or 'NA' (none), got {re_form!r}; "
        "formulas selecting some random-effects terms are not supported"
    )
