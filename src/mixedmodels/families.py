"""Response distributions of generalized linear mixed models (links: :mod:`.links`).

A :class:`Family` says how the response varies around its mean μ (variance
function, deviance, log-likelihood) and which :class:`Link` ties μ to the
linear predictor η.  The formulas are lme4's (its C++ ``glmFamily``), so that
objectives and log-likelihoods are on lme4's scale: the same clamping of μ
away from 0 and 1, the same ``aic`` (−2 log L of the observations at μ, with
the binomial and Poisson constants), the same starting means as R's
``family$initialize``.

>>> import mixedmodels as mm
>>> mm.families.Binomial(link="probit")
Binomial(link='probit')
>>> mm.families.get_family("poisson").link.name
'log'
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import scipy.special as sc

from .errors import DataError, NonIntegerResponseWarning
from .links import Link

_EPS = float(np.finfo(np.float64).eps)

__all__ = [
    "Binomial",
    "Family",
    "Gamma",
    "InverseGaussian",
    "Link",
    "NegativeBinomial",
    "Poisson",
    "get_family",
]


def _y_log_y(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """y log(y/μ), taken as 0 where y = 0 (lme4's ``Y_log_Y``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(y / mu), 0.0)


class Family:
    """A response distribution with its link (abstract; use a subclass).

    Subclasses set :attr:`name` (R's ``family$family``), :attr:`links` (the
    links allowed, canonical first) and :attr:`code` (for compiled kernels),
    and define the variance, the deviance residuals, ``aic`` and the starting
    means.
    """

    name: str = ""
    links: tuple[str, ...] = ()
    code: int = -1
    #: Whether the family has a dispersion parameter lme4 reports (σ ≠ 1).
    has_dispersion: bool = False

    def __init__(self, link: str | Link | None = None) -> None:
        if isinstance(link, Link):
            link = link.name
        link = self.links[0] if link is None else link
        if link not in self.links:
            raise ValueError(
                f"link {link!r} is not available for the {self.name} family; "
                f"use one of {', '.join(map(repr, self.links))}"
            )
        self.link = Link(link)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))

    @property
    def is_canonical(self) -> bool:
        """Whether the link is the family's canonical link."""
        return self.link.name == self.links[0]

    # -- what every family defines ---------------------------------------------------

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """The variance function V(μ)."""
        raise NotImplementedError

    def deviance_residuals(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Each observation's contribution to the deviance (R's ``dev.resids``; ≥ 0)."""
        raise NotImplementedError

    def aic(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray, deviance: float) -> float:
        """lme4's ``aic``: −2 log p(y | μ) summed over observations (with constants)."""
        raise NotImplementedError

    def initial_mean(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Starting means, as R's ``family$initialize`` sets ``mustart``."""
        raise NotImplementedError

    def check_response(self, y: np.ndarray, weights: np.ndarray | None, name: str) -> None:
        """Refuse responses outside the family's support (clear errors), warn as R does."""
        raise NotImplementedError

    def saturated_aic(self, y: np.ndarray, weights: np.ndarray) -> float | None:
        """The constant c with aic(μ) = deviance(μ) + c for these data, if there is one.

        For the binomial (with whole numbers of successes), Poisson and negative
        binomial families c is the saturated model's −2 log L (μ = y), so the
        Laplace objective needs no log-gamma terms at each evaluation; for
        families whose aic involves the dispersion there is none (None).
        """
        return None

    def aic_excess_slope(
        self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray, deviance: float
    ) -> np.ndarray | None:
        """∂(aic − deviance)/∂μᵢ, or None where aic − deviance is a constant.

        The gradient of the Laplace objective needs it for families whose aic
        involves the dispersion estimated from the deviance.
        """
        return None

    # -- derived ---------------------------------------------------------------------

    def deviance(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> float:
        """Σ of the deviance residuals."""
        return float(np.sum(self.deviance_residuals(y, mu, weights)))

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """μ = g⁻¹(η)."""
        return self.link.inverse(eta)


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _warn_non_integer(values: np.ndarray, what: str, name: str) -> None:
    off = np.abs(values - np.round(values)) > 1e-3
    if off.any():
        i = _first_row(off)
        warnings.warn(
            f"{what} in {name!r} are not whole numbers ({int(off.sum())} rows, first at "
            f"position {i}: {values[i]:g}); the likelihood rounds them, as R does",
            NonIntegerResponseWarning,
            stacklevel=4,
        )


class Binomial(Family):
    """Binomial responses: 0/1 outcomes, or proportions of ``weights`` trials.

    Links: logit (canonical), probit, cloglog, cauchit, log.
    """

    name = "binomial"
    links = ("logit", "probit", "cloglog", "cauchit", "log")
    code = 0

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return np.maximum(mu * (1.0 - mu), _EPS)

    def deviance_residuals(self, y, mu, weights):
        return 2.0 * weights * (_y_log_y(y, mu) + _y_log_y(1.0 - y, 1.0 - mu))

    def aic(self, y, mu, weights, deviance):
        m = np.round(weights)
        successes = np.round(weights * y)
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = (
                sc.gammaln(m + 1.0)
                - sc.gammaln(successes + 1.0)
                - sc.gammaln(m - successes + 1.0)
                + sc.xlogy(successes, mu)
                + sc.xlog1py(m - successes, -mu)
            )
            scale = np.where(m > 0, weights / np.where(m > 0, m, 1.0), 0.0)
        return float(-2.0 * np.sum(scale * np.where(m > 0, logp, 0.0)))

    def initial_mean(self, y, weights):
        return (weights * y + 0.5) / (weights + 1.0)

    def saturated_aic(self, y, weights):
        # One trial a row (the common case) needs only y's check.
        single = bool(np.all(weights == 1.0))
        successes = y if single else weights * y
        if np.any(np.abs(successes - np.round(successes)) > 1e-8) or (
            not single and np.any(np.abs(weights - np.round(weights)) > 1e-8)
        ):
            return None  # aic rounds the successes and trials; the deviance does not
        if single:
            return 0.0  # 0/1 outcomes: p(y | μ = y) = 1 in every row
        return self.aic(y, y, weights, 0.0)

    def check_response(self, y, weights, name):
        bad = (y < 0) | (y > 1)
        if bad.any():
            i = _first_row(bad)
            raise DataError(
                f"the binomial response {name!r} must lie in [0, 1] (0/1 outcomes or "
                f"proportions with weights= trials); position {i} holds {y[i]:g}. For counts "
                "of successes out of n trials use cbind(successes, n - successes) ~ ..."
            )
        proportions = (y > 0) & (y < 1)
        if weights is not None and proportions.any():
            fractional = np.abs(weights - np.round(weights)) > 1e-3
            if fractional.any():
                i = _first_row(fractional)
                raise DataError(
                    f"the binomial response {name!r} holds proportions, so weights are numbers "
                    f"of trials and must be whole numbers; position {i} has weight "
                    f"{weights[i]:g}"
                )
        w = np.ones_like(y) if weights is None else weights
        _warn_non_integer(w * y, "numbers of successes", name)


class Poisson(Family):
    """Poisson counts.  Links: log (canonical), sqrt, identity."""

    name = "poisson"
    links = ("log", "sqrt", "identity")
    code = 1

    def variance(self, mu):
        return mu

    def deviance_residuals(self, y, mu, weights):
        return 2.0 * weights * (_y_log_y(y, mu) - (y - mu))

    def aic(self, y, mu, weights, deviance):
        logp = sc.xlogy(y, mu) - mu - sc.gammaln(y + 1.0)
        return float(-2.0 * np.sum(weights * logp))

    def initial_mean(self, y, weights):
        return y + 0.1

    def saturated_aic(self, y, weights):
        return self.aic(y, y, weights, 0.0)

    def check_response(self, y, weights, name):
        negative = y < 0
        if negative.any():
            i = _first_row(negative)
            raise DataError(
                f"the Poisson response {name!r} must be counts (≥ 0); position {i} holds {y[i]:g}"
            )
        _warn_non_integer(y, "counts", name)


def _dispersion(deviance: float, total_weight: float) -> float:
    """The dispersion as lme4 estimates it, deviance / Σw (Gamma, inverse Gaussian);
    refused where the model fits the response exactly (relative residuals at the
    rounding level, below 1e-13: the likelihood is unbounded there, its value noise)."""
    dispersion = deviance / total_weight
    if not dispersion > 1e-26:
        raise DataError(
            "the model fits the response exactly (its residual deviance is rounding "
            "error): the dispersion, estimated from it, is zero"
        )
    return dispersion


class Gamma(Family):
    """Gamma responses (positive, constant coefficient of variation).

    Links: inverse (canonical), log, identity.  Its dispersion is estimated
    as lme4 does (see :meth:`aic`).
    """

    name = "Gamma"
    links = ("inverse", "log", "identity")
    code = 2
    has_dispersion = True

    def variance(self, mu):
        return mu * mu

    def deviance_residuals(self, y, mu, weights):
        return -2.0 * weights * (np.log(y / mu) - (y - mu) / mu)

    def aic(self, y, mu, weights, deviance):
        # lme4 (as R's Gamma()$aic): dispersion = deviance / Σw, shape 1/dispersion.
        dispersion = _dispersion(deviance, float(np.sum(weights)))
        shape = 1.0 / dispersion
        scale = mu * dispersion
        logp = (shape - 1.0) * np.log(y) - y / scale - sc.gammaln(shape) - shape * np.log(scale)
        return float(-2.0 * np.sum(weights * logp) + 2.0)

    def initial_mean(self, y, weights):
        return y.copy()

    def aic_excess_slope(self, y, mu, weights, deviance):
        total = float(np.sum(weights))
        dispersion = _dispersion(deviance, total)
        shape = 1.0 / dispersion
        # d aic/d dispersion, then the chain through dispersion = deviance / Σw.
        per_row = -np.log(y) + y / mu + sc.digamma(shape) + np.log(mu * dispersion) - 1.0
        by_dispersion = -2.0 * float(np.sum(weights * per_row)) / dispersion**2
        deviance_slope = -2.0 * weights * (y - mu) / (mu * mu)
        direct = -2.0 * weights * (y - mu) / (mu * mu * dispersion)
        return direct + by_dispersion * deviance_slope / total - deviance_slope

    def check_response(self, y, weights, name):
        bad = y <= 0
        if bad.any():
            i = _first_row(bad)
            raise DataError(
                f"the Gamma response {name!r} must be positive; position {i} holds {y[i]:g}"
            )


class InverseGaussian(Family):
    """Inverse Gaussian responses (positive).  Links: 1/mu^2 (canonical), inverse, identity, log."""

    name = "inverse.gaussian"
    links = ("1/mu^2", "inverse", "identity", "log")
    code = 3
    has_dispersion = True

    def variance(self, mu):
        return mu**3

    def deviance_residuals(self, y, mu, weights):
        return weights * (y - mu) ** 2 / (y * mu * mu)

    def aic(self, y, mu, weights, deviance):
        total = float(np.sum(weights))
        return float(
            total * (math.log(_dispersion(deviance, total) * 2.0 * math.pi) + 1.0)
            + 3.0 * np.sum(np.log(y) * weights)
            + 2.0
        )

    def initial_mean(self, y, weights):
        return y.copy()

    def aic_excess_slope(self, y, mu, weights, deviance):
        dispersion = _dispersion(deviance, float(np.sum(weights)))
        deviance_slope = -2.0 * weights * (y - mu) / mu**3
        return (1.0 / dispersion - 1.0) * deviance_slope

    def check_response(self, y, weights, name):
        bad = y <= 0
        if bad.any():
            i = _first_row(bad)
            raise DataError(
                f"the inverse Gaussian response {name!r} must be positive; position {i} "
                f"holds {y[i]:g}"
            )


class NegativeBinomial(Family):
    """Negative binomial counts with shape θ: variance μ + μ²/θ (MASS's ``negative.binomial``).

    Parameters
    ----------
    theta : float
        The shape θ > 0 (``glmer_nb`` estimates it).
    link : str, default "log"
        log, sqrt or identity.
    """

    links = ("log", "sqrt", "identity")
    code = 4

    def __init__(self, theta: float, link: str | Link | None = None) -> None:
        theta = float(theta)
        if not (theta > 0 and math.isfinite(theta)):
            raise ValueError(f"the negative binomial θ must be positive and finite, got {theta}")
        self.theta = theta
        super().__init__(link)

    @property
    def name(self) -> str:  # type: ignore[override]
        """R's family name, e.g. ``Negative Binomial(7.4167)``."""
        return f"Negative Binomial({self.theta:.5g})"

    def __repr__(self) -> str:
        return f"NegativeBinomial(theta={self.theta!r}, link={self.link.name!r})"

    @property
    def is_canonical(self) -> bool:
        return False

    def variance(self, mu):
        return mu + mu * mu / self.theta

    def deviance_residuals(self, y, mu, weights):
        th = self.theta
        return 2.0 * weights * (_y_log_y(y, mu) - (y + th) * np.log((y + th) / (mu + th)))

    def aic(self, y, mu, weights, deviance):
        th = self.theta
        term = (
            (y + th) * np.log(mu + th)
            - sc.xlogy(y, mu)
            + sc.gammaln(y + 1.0)
            - th * math.log(th)
            + math.lgamma(th)
            - sc.gammaln(th + y)
        )
        return float(2.0 * np.sum(weights * term))

    def initial_mean(self, y, weights):
        return y + (y == 0) / 6.0

    def saturated_aic(self, y, weights):
        return self.aic(y, y, weights, 0.0)

    def check_response(self, y, weights, name):
        negative = y < 0
        if negative.any():
            i = _first_row(negative)
            raise DataError(
                f"the negative binomial response {name!r} must be counts (≥ 0); position {i} "
                f"holds {y[i]:g}"
            )
        _warn_non_integer(y, "counts", name)


_BY_NAME: dict[str, type[Family]] = {
    "binomial": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "inverse.gaussian": InverseGaussian,
    "inverse_gaussian": InverseGaussian,
    "inversegaussian": InverseGaussian,
}
# R's spelling with the link in the string: binomial(link = "probit"), poisson("sqrt").
_CALL = re.compile(r"""^\s*([\w.]+)\s*\(\s*(?:link\s*=\s*)?["']?([^"')]*)["']?\s*\)\s*$""")


def get_family(family: str | Family, link: str | None = None) -> Family:
    """The :class:`Family` meant by ``family``: an instance, a class or a name.

    Names are R's (``"binomial"``, ``"poisson"``, ``"Gamma"``,
    ``"inverse.gaussian"``), case-insensitive, optionally with the link as in
    R: ``'binomial(link = "probit")'``.  The negative binomial needs its θ:
    use :class:`NegativeBinomial` or ``glmer_nb``.
    """
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            raise ValueError(
                f"link={link!r} contradicts the family object's link {family.link.name!r}"
            )
        return family
    if isinstance(family, type) and issubclass(family, Family):
        if family is NegativeBinomial:
            raise ValueError("NegativeBinomial needs its θ: NegativeBinomial(theta=...)")
        return family(link)
    if not isinstance(family, str):
        raise TypeError(
            f"family must be a name such as 'binomial' or a mixedmodels.families object, "
            f"not {type(family).__name__}"
        )
    text = family
    match = _CALL.match(text)
    if match:
        text, in_string = match.group(1), match.group(2).strip() or None
        if in_string is not None and link is not None and in_string != link:
            raise ValueError(f"family {family!r} and link={link!r} disagree")
        link = link or in_string
    key = text.strip().lower()
    if key in ("negative.binomial", "negative_binomial", "negativebinomial", "nb"):
        raise ValueError(
            "the negative binomial family needs its θ: use glmer_nb(...) to estimate it, or "
            "family=mixedmodels.families.NegativeBinomial(theta=...)"
        )
    if key == "gaussian":
        raise ValueError("family 'gaussian' is a linear mixed model: use lmer(...)")
    if key not in _BY_NAME:
        raise ValueError(
            f"unknown family {family!r}; families are binomial, poisson, Gamma, "
            "inverse.gaussian (and the negative binomial through glmer_nb)"
        )
    return _BY_NAME[key](link)
