"""The families' per-row arithmetic in one compiled pass over the rows.

A PIRLS iteration needs, for every row, the linear predictor η at the new
modes, the mean μ = g⁻¹(η), the deviance residual (for the penalized deviance
that step halving compares), the working weight aᵢ(dμ/dη)²/V(μ) and the
working response.  Done with numpy that is a dozen whole-array operations and
temporaries per iteration; here it is one loop compiled by numba, the family
and link chosen by the integer
codes of :class:`~mixedmodels.families.Family` and
:class:`~mixedmodels.links.Link`.  The formulas are those of
:mod:`mixedmodels.families` (lme4's), which the tests compare them with;
without numba, :class:`~mixedmodels.engine.pirls.Pirls` calls the family's
numpy methods instead.
"""

from __future__ import annotations

import math

import numpy as np

from ..families import Family

_EPS = float(np.finfo(np.float64).eps)
# |η| up to which binomial-logit rows take the direct formulas.
_LOGIT_DIRECT = 15.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_COMPILED = None
_TRIED = False


def _link_inverse(link, eta):  # pragma: no cover - compiled by numba
    """(μ, dμ/dη) at η, sharing their transcendental functions."""
    if link == 0:  # logit
        e = math.exp(-abs(eta))
        p = 1.0 / (1.0 + e)
        p = p if eta >= 0.0 else e * p
        return min(max(p, _EPS), 1.0 - _EPS), max(e / ((1.0 + e) * (1.0 + e)), _EPS)
    if link == 1:  # probit
        p = min(0.5 * math.erfc(-eta / math.sqrt(2.0)), 1.0 - _EPS)
        return p, math.exp(-0.5 * eta * eta - _LOG_SQRT_2PI)
    if link == 2:  # cloglog
        e = math.exp(min(eta, 700.0))
        p = min(max(-math.expm1(-e), _EPS), 1.0 - _EPS)
        return p, max(e * math.exp(-e), _EPS)
    if link == 3:  # cauchit
        return min(0.5 + math.atan(eta) / math.pi, 1.0 - _EPS), 1.0 / (math.pi * (1.0 + eta * eta))
    if link == 4:  # log
        m = max(math.exp(eta), _EPS)
        return m, m
    if link == 5:  # identity
        return eta, 1.0
    if link == 6:  # sqrt
        return eta * eta, 2.0 * eta
    if link == 7:  # inverse
        return 1.0 / eta, -1.0 / (eta * eta)
    root = math.sqrt(eta)  # 1/mu^2
    return 1.0 / root, -0.5 / (eta * root)


def _link_second(link, eta, g):  # pragma: no cover - compiled by numba
    """d²μ/dη² at η, given g = dμ/dη there."""
    if link == 0:  # logit: g = p(1 − p)
        e = math.exp(-abs(eta))
        p = 1.0 / (1.0 + e)
        p = p if eta >= 0.0 else e * p
        return g * (1.0 - 2.0 * p)
    if link == 1:
        return -eta * g
    if link == 2:
        return g * (1.0 - math.exp(min(eta, 700.0)))
    if link == 3:
        return -2.0 * eta * math.pi * g * g
    if link == 4:
        return g
    if link == 5:
        return 0.0
    if link == 6:
        return 2.0
    if link == 7:
        return 2.0 / (eta * eta * eta)
    return 0.75 / (eta * eta * math.sqrt(eta))


def _variance_slope(family, mu, theta):  # pragma: no cover - compiled by numba
    """dV/dμ."""
    if family == 0:
        return 1.0 - 2.0 * mu
    if family == 1:
        return 1.0
    if family == 2:
        return 2.0 * mu
    if family == 3:
        return 3.0 * mu * mu
    return 1.0 + 2.0 * mu / theta


def _derivative_pass(
    family, link, theta, y, prior, eta, score, observed, weight_slope
):  # pragma: no cover
    """Per row, at η: ½ d dev/dη, ½ d² dev/dη² and d w/dη (w the working weight).

    With ℓ the log-likelihood, d dev/dη = −2aℓ' = −2a(y − μ)g/V (g = dμ/dη);
    its half-derivative is the observed weight w − a(y − μ)(g′V − g²V′)/V²,
    which equals w for canonical links.
    """
    logit = family == 0 and link == 0
    for r in range(y.shape[0]):
        e = eta[r]
        if logit and abs(e) <= _LOGIT_DIRECT:
            # V(μ) = dμ/dη = g, dV/dμ = 1 − 2μ, d²μ/dη² = g(1 − 2μ): the observed
            # weight is w = a·g and dw/dη = a·g(1 − 2μ).
            ex = math.exp(-abs(e))
            inverse = 1.0 / (1.0 + ex)
            m = inverse if e >= 0.0 else ex * inverse
            g = ex * inverse * inverse
            a = prior[r]
            score[r] = -a * (y[r] - m)
            observed[r] = a * g
            weight_slope[r] = a * g * (1.0 - 2.0 * m)
            continue
        m, g = _link_inverse(link, e)
        g2 = _link_second(link, e, g)
        v = _variance(family, m, theta)
        v1 = _variance_slope(family, m, theta)
        a = prior[r]
        resid = y[r] - m
        score[r] = -a * resid * g / v
        w = a * g * g / v
        observed[r] = w - a * resid * (g2 * v - g * g * v1) / (v * v)
        weight_slope[r] = a * (2.0 * g * g2 / v - g * g * g * v1 / (v * v))


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


def _row_pass(
    family,
    link,
    theta,
    y,
    prior,
    base,
    working_base,
    codes,
    z,
    zcol,
    b,
    boff,
    previous,
    eta,
    mu,
    weights,
    response,
):  # pragma: no cover - compiled by numba
    """One pass over the rows at modes b: η, μ, working weights and response; the deviance
    and the largest change of η from ``previous`` (0 when ``previous`` is empty).

    η = base + Σₜ zₜ·bₜ[level], μ = g⁻¹(η); returns (Σ aᵢdᵢ, change), Σ aᵢdᵢ inf if
    some μ is outside the family's range and nan if some working weight or
    response is not finite.  Term t's columns of ``z`` are ``zcol[t]:zcol[t+1]``
    and its modes (levels × q, row-major) ``b[boff[t]:boff[t+1]]``.
    """
    n = y.shape[0]
    eta[:] = base
    # Term by term, so each loop's constants stay in registers.
    for t in range(codes.shape[0]):
        c0 = zcol[t]
        q = zcol[t + 1] - c0
        b0 = boff[t]
        level_codes = codes[t]
        if q == 1:
            for r in range(n):
                eta[r] += z[r, c0] * b[b0 + level_codes[r]]
        else:
            for r in range(n):
                at = b0 + level_codes[r] * q
                s = 0.0
                for a in range(q):
                    s += z[r, c0 + a] * b[at + a]
                eta[r] += s
    change = 0.0
    if previous.shape[0] == n:
        for r in range(n):
            change = max(change, abs(eta[r] - previous[r]))
    if family == 0 and link == 0:
        return _logit_rows(y, prior, working_base, eta, mu, weights, response, theta), change
    deviance = _general_rows(
        family, link, theta, y, prior, working_base, eta, mu, weights, response
    )
    return deviance, change


def _logit_rows(y, prior, working_base, eta, mu, weights, response, theta):  # pragma: no cover
    """:func:`_general_rows` for binomial responses with the logit link.

    There V(μ) = dμ/dη, and log μ and log(1 − μ) share log(1 + e^−|η|): one
    exp, one log and two divisions a row.  Rows with |η| above
    ``_LOGIT_DIRECT`` take the general formulas (μ's clamps to [ε, 1 − ε] and
    the variance's rounding there are lme4's).
    """
    total = 0.0
    for r in range(y.shape[0]):
        e = eta[r]
        if abs(e) > _LOGIT_DIRECT:
            row = _general_row(0, 0, theta, y[r], prior[r], working_base[r], e)
            if not row[0] <= math.inf:  # nan: stop as the general pass does
                return math.nan
            if row[0] == math.inf:
                return math.inf
            total += row[0]
            mu[r], weights[r], response[r] = row[1], row[2], row[3]
            continue
        ex = math.exp(-abs(e))
        inverse = 1.0 / (1.0 + ex)
        m = inverse if e >= 0.0 else ex * inverse
        g = ex * inverse * inverse
        yr = y[r]
        softplus = math.log(1.0 + ex)
        d = yr * (softplus + max(-e, 0.0)) + (1.0 - yr) * (softplus + max(e, 0.0))
        if 0.0 < yr < 1.0:  # proportions: the saturated model's part
            d += yr * math.log(yr) + (1.0 - yr) * math.log(1.0 - yr)
        total += prior[r] * 2.0 * d
        mu[r] = m
        weights[r] = prior[r] * g
        response[r] = (e - working_base[r]) + (yr - m) / g
    return total


def _general_row(family, link, theta, y, prior, working_base, e):  # pragma: no cover
    """One row's (aᵢdᵢ, μ, w, working response); aᵢdᵢ inf outside the family's range, nan
    when w or the response is not finite."""
    m, g = _link_inverse(link, e)
    d = _unit_deviance(family, y, m, theta)
    if not math.isfinite(d):
        return math.inf, m, 0.0, 0.0
    w = prior * g * g / _variance(family, m, theta)
    v = (e - working_base) + (y - m) / g
    if not (math.isfinite(w) and math.isfinite(v)):
        return math.nan, m, w, v
    return prior * d, m, w, v


def _general_rows(
    family, link, theta, y, prior, working_base, eta, mu, weights, response
):  # pragma: no cover - compiled by numba
    """μ, working weights and response at η, for any family and link; returns Σ aᵢdᵢ
    (inf if some μ is outside the family's range, nan if some w or response is not
    finite)."""
    n = y.shape[0]
    total = 0.0
    for r in range(n):
        e = eta[r]
        m, g = _link_inverse(link, e)
        mu[r] = m
        d = _unit_deviance(family, y[r], m, theta)
        if not math.isfinite(d):
            return math.inf
        total += prior[r] * d
        w = prior[r] * g * g / _variance(family, m, theta)
        v = (e - working_base[r]) + (y[r] - m) / g
        if not (math.isfinite(w) and math.isfinite(v)):
            return math.nan
        weights[r] = w
        response[r] = v
    return total


def row_pass_numpy(family, y, prior, base, working_base, codes, z, modes):
    """:func:`_row_pass` with numpy, for when numba is missing: (deviance, η, μ, w, response).

    ``codes``, ``z`` and ``modes`` are per term: level codes, model matrix (n, q)
    and modes (levels, q).
    """
    eta = base.copy()
    for term_codes, term_z, b in zip(codes, z, modes, strict=True):
        eta += np.einsum("nq,nq->n", term_z, b[term_codes])
    with np.errstate(all="ignore"):
        mu = family.link.inverse(eta)
        deviance = family.deviance(y, mu, prior)
        g = family.link.mu_eta(eta)
        weights = prior * g * g / family.variance(mu)
        response = (eta - working_base) + (y - mu) / g
    if not math.isfinite(deviance):
        return math.inf, eta, mu, weights, response
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(response))):
        return math.nan, eta, mu, weights, response
    return deviance, eta, mu, weights, response


def compiled():
    """(row pass, derivative pass) compiled, or None when numba is not installed."""
    global _COMPILED, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            return None
        inline = numba.njit(cache=True, inline="always")
        scope = globals()
        for name in (
            "_link_inverse",
            "_link_second",
            "_variance",
            "_variance_slope",
            "_y_log_y",
            "_unit_deviance",
            "_general_row",
            "_logit_rows",
            "_general_rows",
        ):
            scope[name] = inline(scope[name])
        jit = numba.njit(cache=True, nogil=True)
        _COMPILED = (jit(_row_pass), jit(_derivative_pass))
    return _COMPILED


def family_codes(family: Family) -> tuple[int, int, float]:
    """(family code, link code, negative-binomial θ or 1) for the kernels."""
    return family.code, family.link.code, float(getattr(family, "theta", 1.0))
