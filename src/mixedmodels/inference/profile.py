"""Profile-likelihood confidence intervals, as lme4's ``profile`` and ``confint``.

The model is refitted by maximum likelihood (lme4 profiles the ML deviance,
also for REML fits).  Variance parameters are taken on lme4's standard-deviation
scale: per term the standard deviations and correlations (``sd_`` and ``cor_``
names, in θ's order), then σ; the fixed effects follow.

For each parameter the deviance is minimised over all the others at a sequence
of fixed values, giving the signed square root ζ = ±√(d − d̂).  The sequence is
lme4's: steps chosen so that ζ advances by about ``cutoff / 8`` from one point
to the next, until |ζ| passes the cutoff or the parameter its bound.  The
interval's ends are where a spline through (ζ, value) reaches ±z₁₋α/₂: a
natural cubic interpolating spline of ζ on the parameter, inverted piecewise
as a Hermite cubic (the construction of R's ``backSpline``).

* variance parameters: d(sd, cor, σ) = log|L_θ|² + r²(θ)/σ² + n log(2πσ²),
  with θ from the sds and correlations relative to σ;
* fixed effect βⱼ: its column leaves X, βⱼ xⱼ moves to an offset (a linear
  change of the [X y] blocks of AᵀA), and θ is re-optimised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import nlopt
import numpy as np
import pandas as pd
from scipy import stats
from scipy.interpolate import CubicSpline

from ..engine.blocks import CrossProducts
from ..engine.optimize import minimize_bobyqa
from ..progress import counting, step_bar

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel

_LOG_2PI = math.log(2 * math.pi)
_MAX_POINTS = 100
_ALPHA_MAX = 0.01
_DELTA_FRACTION = 1 / 8
_MAX_MULTIPLIER = 10


# -- the standard-deviation scale --------------------------------------------------


def sdcor_names(model: LinearMixedModel) -> list[str]:
    """lme4's ``oldNames=FALSE`` names of the variance parameters.

    ``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, … in θ's
    order, then ``sigma``.
    """
    names = []
    for term in model.design.terms:
        cols = term.column_names
        for i, j in zip(term.theta_rows, term.theta_cols, strict=True):
            if i == j:
                names.append(f"sd_{cols[i]}|{term.group_name}")
            else:
                names.append(f"cor_{cols[i]}.{cols[j]}|{term.group_name}")
    return [*names, "sigma"]


def sdcor_from_theta(model: LinearMixedModel, theta: np.ndarray, sigma: float) -> np.ndarray:
    """(sds and correlations per term in θ's positions, σ) from θ and σ."""
    out = []
    for term, s in zip(model.design.terms, model.problem.theta_slices, strict=True):
        lam = term.lambda_matrix(theta[s])
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        for i, j in zip(term.theta_rows, term.theta_cols, strict=True):
            if i == j:
                out.append(sd[i])
            else:
                denom = sd[i] * sd[j]
                out.append(cov[i, j] / denom if denom > 0 else 0.0)
    return np.array([*out, sigma])


def _cholesky_psd(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots allowed)."""
    q = cov.shape[0]
    lower = np.zeros_like(cov)
    for j in range(q):
        d = cov[j, j] - lower[j, :j] @ lower[j, :j]
        if d < -1e-10 * max(1.0, abs(cov[j, j])):
            raise np.linalg.LinAlgError("not positive semi-definite")
        lower[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, q):
            off = cov[i, j] - lower[i, :j] @ lower[j, :j]
            lower[i, j] = off / lower[j, j] if lower[j, j] > 0 else 0.0
    return lower


def theta_from_sdcor(model: LinearMixedModel, values: np.ndarray) -> np.ndarray:
    """θ from (sds and correlations, σ): λ = chol(Σ)/σ term by term."""
    sigma = values[-1]
    theta = np.empty(len(model.lower_bounds))
    for term, s in zip(model.design.terms, model.problem.theta_slices, strict=True):
        v = values[s]
        q = term.q
        sd = np.zeros(q)
        corr = np.eye(q)
        for value, i, j in zip(v, term.theta_rows, term.theta_cols, strict=True):
            if i == j:
                sd[i] = value
            else:
                corr[i, j] = corr[j, i] = value
        cov = corr * np.outer(sd, sd)
        lam = _cholesky_psd(cov) / sigma
        theta[s] = lam[term.theta_rows, term.theta_cols]
    return theta


def sdcor_bounds(model: LinearMixedModel) -> tuple[np.ndarray, np.ndarray]:
    """sds and σ ≥ 0, correlations in [−1, 1]."""
    diag = np.isfinite(model.lower_bounds)
    lower = np.concatenate([np.where(diag, 0.0, -1.0), [0.0]])
    upper = np.concatenate([np.where(diag, np.inf, 1.0), [np.inf]])
    return lower, upper


# -- optimisation helpers ------------------------------------------------------------


def _minimize(
    func: Callable[[np.ndarray], float], start: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, float]:
    """BOBYQA within [lower, upper]."""
    k = len(start)
    if k == 0:
        return start, float(func(start))

    best = [math.inf, start]

    def f(x, _grad):
        value = func(x)
        if value < best[0]:
            best[0], best[1] = value, x.copy()
        return value if np.isfinite(value) else 1e300

    start = np.clip(start, lower, upper)
    opt = nlopt.opt(nlopt.LN_BOBYQA, k)
    opt.set_min_objective(f)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    # The deviance to 1e-8: ζ = √(d − d̂) is then good to ~1e-4 even at
    # the first step off the optimum, far inside the intervals' tolerance.
    opt.set_ftol_abs(1e-8)
    opt.set_xtol_rel(1e-6)
    opt.set_maxeval(20_000)
    width = np.where(np.isfinite(upper - lower), (upper - lower) / 4, np.inf)
    step = np.minimum(np.maximum(0.05 * np.abs(start), 0.01), width)
    opt.set_initial_step(step)
    try:
        x = opt.optimize(start)
    except nlopt.RoundoffLimited:
        x = best[1]  # the best point seen is as good as it gets
    return np.asarray(x), float(func(np.asarray(x)))


def _feasible_start(
    func: Callable[[np.ndarray], float], start: np.ndarray, is_cor: np.ndarray
) -> np.ndarray:
    """Shrink the correlations of a start until the correlation matrices are valid.

    Fixing one correlation of a term with q ≥ 3 can make the previous point's
    other correlations impossible (no positive semi-definite matrix has them);
    BOBYQA cannot start from an infinite deviance.
    """
    x = start.copy()
    for _ in range(60):
        if math.isfinite(func(x)) or not is_cor.any():
            break
        x[is_cor] *= 0.8
    return x


def _variance_deviance(ml: LinearMixedModel) -> Callable[[np.ndarray], float]:
    problem = ml.problem
    n = problem.cross_products.n_obs
    const = problem.cross_products.sum_log_weights
    workspace = problem.workspace()

    def deviance(values: np.ndarray) -> float:
        sigma = values[-1]
        if not sigma > 0:
            return math.inf
        try:
            theta = theta_from_sdcor(ml, values)
        except np.linalg.LinAlgError:
            return math.inf
        factor = problem.factor_at(theta, workspace)
        if factor is None:
            return math.inf
        return (
            factor.logdet_theta()
            - const
            + factor.pwrss() / sigma**2
            + n * (_LOG_2PI + 2 * math.log(sigma))
        )

    return deviance


def _offset_blocks(cp: CrossProducts, j: int, value: float) -> CrossProducts:
    """Blocks for X without column j and y − value·xⱼ: a linear map of the [X y] rows."""
    p = cp.n_fixed
    keep = [c for c in range(p) if c != j]
    t = np.zeros((p + 1, p))
    t[keep, np.arange(p - 1)] = 1.0
    t[p, p - 1] = 1.0
    # The y blocks may hold y − Xβ₀ (CrossProducts.beta_offset): fixing βⱼ at
    # value is fixing the working coefficient at value − β₀ⱼ.
    offset = 0.0 if cp.beta_offset is None else float(cp.beta_offset[j])
    t[j, p - 1] = -(value - offset)
    return CrossProducts(
        n_levels=cp.n_levels,
        q=cp.q,
        diag=cp.diag,
        off=cp.off,
        xz=[np.tensordot(t.T, xz, axes=1) for xz in cp.xz],
        xx=t.T @ cp.xx @ t,
        n_obs=cp.n_obs,
        sum_log_weights=cp.sum_log_weights,
    )


# -- the profile walk ---------------------------------------------------------------


def walk_settings(n_parameters: int, level: float) -> tuple[float, float, float]:
    """(cutoff, δ, z): how far and in what steps of ζ lme4's walk goes, and the ζ of
    an interval at ``level``.

    lme4 walks to the 99 % cutoff of all ``n_parameters`` jointly in steps of
    1/8 of it; the walk here stops two steps past the interval's ζ (the points
    beyond never enter the interval).
    """
    cutoff = math.sqrt(stats.chi2.ppf(1 - _ALPHA_MAX, n_parameters))
    z = float(stats.norm.ppf(0.5 + level / 2))
    delta = cutoff * _DELTA_FRACTION
    return min(cutoff, z + 2 * delta), delta, z


def walk_profile(
    zeta_at: Callable[[float, np.ndarray], tuple[float, np.ndarray]],
    estimate: float,
    first: float,
    start: np.ndarray,
    lower: float,
    upper: float,
    cutoff: float,
    delta: float,
) -> list[tuple[float, float]]:
    """(value, ζ) pairs along one parameter in both directions, lme4's step rule.

    ``zeta_at(value, start)`` gives ζ at ``value`` and the other parameters'
    optimum there (the next point's start); the walk runs from ``first`` away
    from the estimate, then from the estimate the other way, each until |ζ|
    passes ``cutoff`` or the parameter its bound, with steps meant to advance
    ζ by ``delta``.
    """
    z_first, rest_first = zeta_at(first, start)
    points = [(estimate, 0.0), (first, z_first)]

    def fill(prev: tuple[float, float], cur: tuple[float, float], rest: np.ndarray):
        out = []
        (p0, z0), (p1, z1) = prev, cur
        for _ in range(_MAX_POINTS - 2):
            if not (lower < p1 < upper) or not math.isfinite(z1) or abs(z1) > cutoff:
                break
            num = p1 - p0
            denom = z1 - z0
            step = 1e-6 if denom == 0 or not math.isfinite(denom) else delta * num / denom
            if step < 0:
                step = 1e-6
            step = min(abs(step), _MAX_MULTIPLIER * abs(num))
            nxt = min(upper, max(lower, p1 + math.copysign(step, num)))
            z, rest = zeta_at(nxt, rest)
            out.append((nxt, z))
            (p0, z0), (p1, z1) = (p1, z1), (nxt, z)
        return out

    points += fill((estimate, 0.0), (first, z_first), rest_first)
    if estimate > lower:
        points += fill((first, z_first), (estimate, 0.0), start)
    return points


def _back_spline(values: np.ndarray, zetas: np.ndarray) -> Callable[[float], float]:
    """R's ``backSpline(interpSpline(ζ ~ value))``: value as a piecewise cubic in ζ."""
    forward = CubicSpline(values, zetas, bc_type="natural")
    slope = forward.derivative()(values)
    zk = zetas
    kdiff = np.diff(values)
    adiff = np.diff(zk)
    if not np.all(adiff > 0):
        raise ValueError("the profile is not monotone")
    nk = len(values)
    b = 1.0 / slope
    c = np.zeros(nk - 1)
    d = np.zeros(nk - 1)
    bb = b[:-1].copy()
    for i in range(nk - 1):
        a = np.array([[adiff[i] ** 2, adiff[i] ** 3], [2 * adiff[i], 3 * adiff[i] ** 2]])
        rhs = np.array([kdiff[i] - adiff[i] * b[i], b[i + 1] - b[i]])
        c[i], d[i] = np.linalg.solve(a, rhs)
    if nk > 2:
        d[0] = d[-1] = 0.0
        a = np.array([[adiff[0], adiff[0] ** 2], [1.0, 2 * adiff[0]]])
        bb[0], c[0] = np.linalg.solve(a, np.array([kdiff[0], b[1]]))
        c[-1] = (kdiff[-1] - adiff[-1] * bb[-1]) / adiff[-1] ** 2
    if c[0] > 0:
        c[0] = 0.0
        bb[0] = kdiff[0] / adiff[0]
    if c[-1] < 0:
        c[-1] = 0.0
        bb[-1] = kdiff[-1] / adiff[-1]

    def evaluate(zeta: float) -> float:
        if not (zk[0] <= zeta <= zk[-1]):
            return math.nan
        i = min(int(np.searchsorted(zk, zeta, side="right")) - 1, nk - 2)
        h = zeta - zk[i]
        return float(values[i] + h * (bb[i] + h * (c[i] + h * d[i])))

    return evaluate


def profile_interval(points: list[tuple[float, float]], z: float, lower: float, upper: float):
    """The interval's ends where a back-spline through the walked (value, ζ) reaches ∓z
    (the bound where the walk did not reach it)."""
    table = np.array(sorted(set(points)))
    values, zetas = table[:, 0], table[:, 1]
    ok = np.isfinite(zetas)
    values, zetas = values[ok], zetas[ok]
    try:
        spline = _back_spline(values, zetas)
        lo, hi = spline(-z), spline(z)
    except (ValueError, np.linalg.LinAlgError):
        # Not monotone: fall back to linear interpolation, as lme4 does.
        order = np.argsort(zetas)
        lo = float(np.interp(-z, zetas[order], values[order], left=np.nan, right=np.nan))
        hi = float(np.interp(z, zetas[order], values[order], left=np.nan, right=np.nan))
    if math.isnan(lo):
        lo = lower
    if math.isnan(hi):
        hi = upper
    return lo, hi


def profile_confint(
    model: LinearMixedModel, level: float = 0.95, progress: bool | None = None
) -> pd.DataFrame:
    """Profile intervals for every parameter (rows named as lme4's ``oldNames=FALSE``)."""
    return _profile(model, level, progress)[0]


def profile_table(
    model: LinearMixedModel, level: float = 0.95, progress: bool | None = None
) -> pd.DataFrame:
    """The profile walked for the intervals: long table ``parameter``, ``value``, ``zeta``.

    Each parameter's points run from its estimate (ζ = 0) out to a little
    beyond the ζ of the interval at ``level`` on both sides.
    """
    return _profile(model, level, progress)[1]


def _profile(
    model: LinearMixedModel, level: float, progress: bool | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    ml = model.refit_ml()
    theta_ml = ml.state.theta
    base = ml.objective
    opt = sdcor_from_theta(ml, theta_ml, ml.sigma)
    beta = ml.state.beta
    stderr = ml.state.std_errors
    nvp = len(opt)
    p = len(beta)
    cutoff, delta, z = walk_settings(nvp + p, level)
    lower_b, upper_b = sdcor_bounds(ml)
    deviance = _variance_deviance(ml)
    last = [0.0]  # |ζ| at the previous point of the current walk
    is_cor = lower_b == -1.0
    rows = []
    walked: list[list[tuple[float, float]]] = []
    # The bar ticks per point walked; a parameter takes about 2·cutoff/δ + 1.
    per_parameter = 2 * math.ceil(cutoff / delta) + 1
    bar = step_bar((nvp + p) * per_parameter, "profile", progress, unit="point")
    done = [0]

    def finished_parameter() -> None:
        # What is left is re-estimated from the parameters still to walk.
        done[0] += 1
        bar.total = bar.n + (nvp + p - done[0]) * per_parameter
        bar.refresh()

    for w in range(nvp):
        others = np.array([i for i in range(nvp) if i != w])

        def zeta_at(value, start, w=w, others=others):
            def inner(x):
                full = np.empty(nvp)
                full[w] = value
                full[others] = x
                return deviance(full)

            start = _feasible_start(inner, start, is_cor[others])
            x, fval = _minimize(inner, start, lower_b[others], upper_b[others])
            diff = max(fval - base, 0.0)
            # Starting from the previous point can leave the inner optimum
            # in a worse local minimum (near ±1 correlations, a zero sd):
            # when ζ jumps by more than two steps, start again from the
            # estimates and keep the better optimum.
            if math.sqrt(diff) > last[0] + 2 * delta and len(others):
                x2, fval2 = _minimize(inner, opt[others], lower_b[others], upper_b[others])
                if fval2 < fval:
                    x, fval = x2, fval2
                    diff = max(fval - base, 0.0)
            last[0] = math.sqrt(diff)
            return math.copysign(math.sqrt(diff), value - opt[w]), x

        pw = opt[w]
        first = 0.001 if pw == 0 else pw * 1.01
        last[0] = 0.0
        points = walk_profile(
            counting(zeta_at, bar), pw, first, opt[others], lower_b[w], upper_b[w], cutoff, delta
        )
        finished_parameter()
        walked.append(points)
        rows.append(profile_interval(points, z, lower_b[w], upper_b[w]))
    for j in range(p):

        def zeta_fixed(value, start, j=j):
            fixed = ml.problem.with_cross_products(_offset_blocks(ml.cross_products, j, value))
            workspace = fixed.workspace()
            _, fval, _, _ = minimize_bobyqa(
                lambda t: fixed.objective(t, reml=False, workspace=workspace),
                theta_ml,
                ml.lower_bounds,
            )
            diff = max(fval - base, 0.0)
            return math.copysign(math.sqrt(diff), value - beta[j]), start

        first = beta[j] + delta * stderr[j]
        zeta = counting(zeta_fixed, bar)
        points = walk_profile(zeta, beta[j], first, np.empty(0), -math.inf, math.inf, cutoff, delta)
        finished_parameter()
        walked.append(points)
        rows.append(profile_interval(points, z, -math.inf, math.inf))
    bar.close()
    names = [*sdcor_names(model), *model.design.fixed_names]
    table = pd.DataFrame(
        [
            (name, value, zeta)
            for name, points in zip(names, walked, strict=True)
            for value, zeta in sorted(points)
        ],
        columns=["parameter", "value", "zeta"],
    )
    return pd.DataFrame(rows, index=names, columns=["lower", "upper"]), table
