"""Negative binomial GLMMs with the shape θ estimated, as lme4's ``glmer.nb``.

For a fixed shape θ the negative binomial is an ordinary family; ``glmer.nb``
estimates θ by an outer one-dimensional optimization of −2 log L over log θ,
refitting the GLMM at each trial value.  It starts from a Poisson GLMM and
the maximum-likelihood θ of a negative binomial with that model's fitted
means (MASS's ``theta.ml``), and searches log θ within ±3 of that start.
Each refit here starts from the previous one's estimates and modes, so the
refits after the first take a fraction of a full fit.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special as sc

from ..errors import ConvergenceWarning, DataError
from ..families import NegativeBinomial, Poisson
from .glmm import GeneralizedLinearMixedModel

# glmer.nb's tolerance on log θ (passed to R's optimize) and half-width of its interval.
LOG_THETA_TOLERANCE = 5e-5
LOG_THETA_HALF_WIDTH = 3.0


def theta_ml(
    y: np.ndarray, mu: np.ndarray, weights: np.ndarray, limit: int = 20, eps: float = 1e-4
) -> float:
    """Maximum-likelihood negative binomial shape θ for counts y with means μ (Newton's method).

    Starts, as MASS's ``theta.ml``, from the moment estimate n / Σ w (y/μ − 1)².
    """
    n = float(np.sum(weights))
    theta = n / float(np.sum(weights * (y / mu - 1.0) ** 2))
    for _ in range(limit):
        theta = abs(theta)
        score = np.sum(
            weights
            * (
                sc.digamma(theta + y)
                - sc.digamma(theta)
                + math.log(theta)
                + 1.0
                - np.log(theta + mu)
                - (y + theta) / (mu + theta)
            )
        )
        information = np.sum(
            weights
            * (
                -sc.polygamma(1, theta + y)
                + sc.polygamma(1, theta)
                - 1.0 / theta
                + 2.0 / (mu + theta)
                - (y + theta) / (mu + theta) ** 2
            )
        )
        step = score / information
        theta += step
        if abs(step) <= eps:
            break
    if not (theta > 0 and math.isfinite(theta)):
        raise ValueError("the negative binomial θ of the Poisson fit's means is not positive")
    return float(theta)


def glmer_nb(
    formula: str,
    data: Any,
    *,
    link: str = "log",
    weights: Any = None,
    offset: Any = None,
    missing: str = "drop",
    check_convergence: bool = True,
) -> GeneralizedLinearMixedModel:
    """Fit a negative binomial GLMM, estimating its shape θ as lme4's ``glmer.nb``.

    Parameters
    ----------
    formula : str
        lme4 formula with a count response.
    data : pandas.DataFrame or dict of columns
        The data; never modified.
    link : str, default "log"
        ``"log"``, ``"sqrt"`` or ``"identity"``.
    weights, offset, missing
        As for :func:`~mixedmodels.glmer`.
    check_convergence : bool, default True
        Check the final fit's optimum by finite differences.

    Returns
    -------
    GeneralizedLinearMixedModel
        Fitted with ``family`` the negative binomial at the estimated θ
        (``model.family.theta``).
    """
    if type(data).__module__.split(".")[0] == "dask":
        raise DataError(
            "glmer_nb needs the rows in memory (θ is estimated from the means of a Poisson "
            "fit): call .compute() on the Dask DataFrame, or fit mm.glmer with "
            "family=mm.families.NegativeBinomial(theta=...) for a given θ"
        )
    model = GeneralizedLinearMixedModel(
        formula, data, Poisson(link), weights=weights, offset=offset, missing=missing
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(hessian=False)
    y, mu = model.design.y, model.fitted.to_numpy()
    start = math.log(theta_ml(y, mu, model.prior_weights))
    fits: dict[float, tuple[float, np.ndarray, np.ndarray]] = {}

    last = {"theta": model.theta, "beta": model.fixef.to_numpy()}

    def deviance(log_theta: float) -> float:
        model.set_family(NegativeBinomial(math.exp(log_theta), link))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(start=last, hessian=False)
        last["theta"], last["beta"] = model.theta, model.fixef.to_numpy()
        fits[log_theta] = (model.objective, model.theta, model.fixef.to_numpy())
        return model.objective

    result = scipy.optimize.minimize_scalar(
        deviance,
        bounds=(start - LOG_THETA_HALF_WIDTH, start + LOG_THETA_HALF_WIDTH),
        method="bounded",
        options={"xatol": LOG_THETA_TOLERANCE},
    )
    best = min(fits, key=lambda k: fits[k][0])
    _, theta, beta = fits[best]
    model.set_family(NegativeBinomial(math.exp(best), link))
    model.fit(start={"theta": theta, "beta": beta}, check_convergence=check_convergence)
    if abs(best - start) > LOG_THETA_HALF_WIDTH - 1e-3:
        warnings.warn(
            f"the negative binomial θ estimate ({math.exp(best):.4g}) is at the edge of the "
            f"search interval around the starting value {math.exp(start):.4g}",
            ConvergenceWarning,
            stacklevel=2,
        )
    model.nb_evaluations = int(result.nfev)
    return model
