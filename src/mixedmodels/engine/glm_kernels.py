"""The families' per-row arithmetic in two compiled passes over the rows.

A PIRLS iteration needs, for every row, the mean μ = g⁻¹(η), the deviance
residual (for the penalized deviance that step halving compares), the
working weight aᵢ(dμ/dη)²/V(μ) and the working response.  Done with numpy
that is a dozen whole-array operations and temporaries per iteration; here it
is two loops compiled by numba, the family and link chosen by the integer
codes of :class:`~mixedmodels.families.Family` and
:class:`~mixedmodels.families.Link`.  The formulas are those of
:mod:`mixedmodels.families` (lme4's), which the tests compare them with;
without numba, :class:`~mixedmodels.engine.pirls.Pirls` calls the family's
numpy methods instead.
"""

from __future__ import annotations

import math

import numpy as np

from ..families import Family

_EPS = float(np.finfo(np.float64).eps)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_COMPILED = None
_TRIED = False


def _link_inverse(link, eta):  # pragma: no cover - compiled by numba
    if link == 0:  # logit
        if eta >= 0.0:
            p = 1.0 / (1.0 + math.exp(-eta))
        else:
            e = math.exp(eta)
            p = e / (1.0 + e)
        return min(max(p, _EPS), 1.0 - _EPS)
    if link == 1:  # probit
        return min(0.5 * math.erfc(-eta / math.sqrt(2.0)), 1.0 - _EPS)
    if link == 2:  # cloglog
        return min(max(-math.expm1(-math.exp(eta)), _EPS), 1.0 - _EPS)
    if link == 3:  # cauchit
        return min(0.5 + math.atan(eta) / math.pi, 1.0 - _EPS)
    if link == 4:  # log
        return max(math.exp(eta), _EPS)
    if link == 5:  # identity
        return eta
    if link == 6:  # sqrt
        return eta * eta
    if link == 7:  # inverse
        return 1.0 / eta
    return 1.0 / math.sqrt(eta)  # 1/mu^2


def _mu_eta(link, eta):  # pragma: no cover - compiled by numba
    if link == 0:
        if eta >= 0.0:
            p = 1.0 / (1.0 + math.exp(-eta))
        else:
            e = math.exp(eta)
            p = e / (1.0 + e)
        return max(p * (1.0 - p), _EPS)
    if link == 1:
        return math.exp(-0.5 * eta * eta - _LOG_SQRT_2PI)
    if link == 2:
        e = min(eta, 700.0)
        return max(math.exp(e - math.exp(e)), _EPS)
    if link == 3:
        return 1.0 / (math.pi * (1.0 + eta * eta))
    if link == 4:
        return max(math.exp(eta), _EPS)
    if link == 5:
        return 1.0
    if link == 6:
        return 2.0 * eta
    if link == 7:
        return -1.0 / (eta * eta)
    return -0.5 / eta**1.5


def _variance(family, mu, theta):  # pragma: no cover - compiled by numba
    if family == 0:
        return max(mu * (1.0 - mu), _EPS)
    if family == 1:
        return mu
    if family == 2:
        return mu * mu
    if family == 3:
        return mu * mu * mu
    return mu + mu * mu / theta


def _y_log_y(y, mu):  # pragma: no cover - compiled by numba
    return y * math.log(y / mu) if y > 0.0 else 0.0


def _unit_deviance(family, y, mu, theta):  # pragma: no cover - compiled by numba
    """The deviance residual of one row with prior weight 1 (nan outside the support)."""
    if family == 0:
        if not (0.0 < mu < 1.0):
            return math.nan
        return 2.0 * (_y_log_y(y, mu) + _y_log_y(1.0 - y, 1.0 - mu))
    if not mu > 0.0:
        return math.nan
    if family == 1:
        return 2.0 * (_y_log_y(y, mu) - (y - mu))
    if family == 2:
        return -2.0 * (math.log(y / mu) - (y - mu) / mu)
    if family == 3:
        return (y - mu) * (y - mu) / (y * mu * mu)
    return 2.0 * (_y_log_y(y, mu) - (y + theta) * math.log((y + theta) / (mu + theta)))


def _update_mean(family, link, theta, y, prior, eta, mu):  # pragma: no cover - compiled
    """μ = g⁻¹(η) into ``mu``; returns the deviance Σ aᵢdᵢ (inf if some μ is invalid)."""
    total = 0.0
    for r in range(eta.shape[0]):
        m = _link_inverse(link, eta[r])
        mu[r] = m
        d = _unit_deviance(family, y[r], m, theta)
        if not math.isfinite(d):
            return math.inf
        total += prior[r] * d
    return total


def _working(family, link, theta, y, prior, eta, mu, base, weights, response):  # pragma: no cover
    """Working weights aᵢ(dμ/dη)²/V(μ) and response (η − base) + (y − μ)/(dμ/dη).

    Returns False if some weight or response is not finite.
    """
    for r in range(eta.shape[0]):
        d = _mu_eta(link, eta[r])
        w = prior[r] * d * d / _variance(family, mu[r], theta)
        z = (eta[r] - base[r]) + (y[r] - mu[r]) / d
        if not (math.isfinite(w) and math.isfinite(z)):
            return False
        weights[r] = w
        response[r] = z
    return True


def compiled():
    """(update_mean, working) compiled, or None when numba is not installed."""
    global _COMPILED, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            return None
        inline = numba.njit(cache=True, inline="always")
        scope = globals()
        for name in ("_link_inverse", "_mu_eta", "_variance", "_y_log_y", "_unit_deviance"):
            scope[name] = inline(scope[name])
        jit = numba.njit(cache=True, nogil=True)
        _COMPILED = (jit(_update_mean), jit(_working))
    return _COMPILED


def family_codes(family: Family) -> tuple[int, int, float]:
    """(family code, link code, negative-binomial θ or 1) for the kernels."""
    return family.code, family.link.code, float(getattr(family, "theta", 1.0))
