"""Inference methods of a fitted GLMM: intervals, profiles, simulation, the bootstrap.

:class:`GeneralizedInferenceMixin` is one of
:class:`~mixedmodels.models.glmm.GeneralizedLinearMixedModel`'s bases, the
GLMM's counterpart of :class:`~mixedmodels.inference.mixin.InferenceMixin`:
the same method names and arguments, each meaning what lme4 means for a
``glmerMod`` (Wald intervals from the z tests, the profile of the Laplace or
quadrature objective, simulation from the family, a parametric bootstrap of
refits).  It reads the model's public parts only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .. import arguments
from .bootstrap import BootstrapResult
from .condvar import conditional_covariances
from .glmm_bootstrap import check_simulable, glmm_parametric_bootstrap, simulate_glmm_responses
from .glmm_profile import glmm_profile
from .profile import sdcor_names


class _AtEstimates:
    """A fitted GLMM as :func:`conditional_covariances` reads a model: design, state,
    and a problem whose factor is the PIRLS factor at the estimates' modes."""

    def __init__(self, model: Any) -> None:
        self.design = model.design
        self.state = model.state
        self.problem = self
        self._model = model

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return self._model.problem.lambdas(theta)

    def factor_at(self, theta: np.ndarray):
        """ΛᵀZᵀWZΛ + I's factor at the modes for (θ, β̂), W the working weights there."""
        return self._model.problem.factor_at_modes(theta, self.state.beta)


class GeneralizedInferenceMixin:
    """Inference API of a fitted generalized linear mixed model."""

    @property
    def sdcor_names(self) -> list[str]:
        """lme4's names of the variance parameters (``sd_(Intercept)|herd``); ``sigma``
        only for families with a scale parameter."""
        names = sdcor_names(self)
        return names if self.family.has_dispersion else names[:-1]

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
            The profile of the fit's objective (lme4's default; not for
            families with a scale parameter, as lme4), Wald intervals of the
            fixed effects from the z tests (NaN for the variance parameters,
            as lme4), or percentiles of a parametric bootstrap of ``n_boot``
            refits.
        level : float, default 0.95
        n_boot, seed
            For ``method="bootstrap"``.
        progress : bool, optional
            A progress bar (profile: per point walked; bootstrap: per replicate).

        Returns
        -------
        pandas.DataFrame
            ``lower`` and ``upper``; rows ``sd_…|group``, ``cor_…|group``
            (``sigma`` for Gamma and inverse Gaussian), then the fixed effects.
        """
        level = arguments.level(level)
        method = arguments.choice(method, "method", ["profile", "wald", "bootstrap"])
        if method == "profile":
            return glmm_profile(self, level, progress)[0]
        if method == "bootstrap":
            return self.bootstrap(n_boot, seed=seed, progress=progress).confint(level)
        z = stats.norm.ppf(0.5 + level / 2)
        coefs = self.coefs
        names = self.sdcor_names
        nan = np.full(len(names), np.nan)
        lower = np.concatenate([nan, coefs["estimate"] - z * coefs["std_error"]])
        upper = np.concatenate([nan, coefs["estimate"] + z * coefs["std_error"]])
        return pd.DataFrame(
            {"lower": lower, "upper": upper}, index=[*names, *self.design.fixed_names]
        )

    def profile(self, level: float = 0.95, progress: bool | None = None) -> pd.DataFrame:
        """The profile behind ``confint(method="profile")``: a long table ``parameter``,
        ``value``, ``zeta`` (the signed square root of the objective's rise), what
        :func:`mixedmodels.plots.profile` draws."""
        return glmm_profile(self, arguments.level(level), progress)[1]

    def simulate(self, n: int = 1, seed: Any = None) -> pd.DataFrame:
        """Responses simulated from the fitted model: columns ``sim_1`` … ``sim_n``.

        New random effects are drawn for every column (lme4's ``simulate``);
        responses are on the model's scale (proportions of the trials for
        binomial counts).  See :mod:`mixedmodels.inference.glmm_bootstrap`.
        """
        n = arguments.positive_int(n, "n")
        rng = arguments.seed(seed)
        design = self.rows.in_memory("simulate()")
        check_simulable(self)
        values = simulate_glmm_responses(self, n, rng)
        return pd.DataFrame(
            values, index=design.row_index, columns=[f"sim_{i + 1}" for i in range(n)]
        )

    def bootstrap(self, n: int, seed: Any = None, progress: bool | None = None) -> BootstrapResult:
        """Parametric bootstrap: refit the model to ``n`` responses simulated from it.

        Each refit uses the fit's method (same ``nagq``), warm-started at the
        estimates; ``seed`` makes it reproducible.

        Returns
        -------
        BootstrapResult
            ``.replicates`` (objective, σ, β, θ per replicate) and ``.confint()``.
        """
        n = arguments.positive_int(n, "n")
        rng = arguments.seed(seed)
        return glmm_parametric_bootstrap(self, n, rng, progress=progress)

    @property
    def ranef_cov(self) -> dict[str, np.ndarray]:
        """Conditional covariances of the modes (lme4's ``condVar``): grouping factor →
        (levels, q, q), from the PIRLS factor at the estimates (times σ² for
        families with a scale parameter)."""
        return conditional_covariances(_AtEstimates(self))
