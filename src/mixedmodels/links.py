"""Link functions of generalized linear mixed models: μ ↔ η.

A :class:`Link` ties a family's mean μ to the linear predictor η with lme4's
formulas (its C++ ``glmLink``), including its clamping of μ away from 0 and 1
(:mod:`.families` holds the response distributions).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special as sc

_EPS = float(np.finfo(np.float64).eps)
_LOG_2PI = math.log(2.0 * math.pi)

__all__ = ["Link"]


class Link:
    """A link function η = g(μ), its inverse and dμ/dη.

    Parameters
    ----------
    name : str
        One of ``"logit"``, ``"probit"``, ``"cloglog"``, ``"cauchit"``,
        ``"log"``, ``"identity"``, ``"sqrt"``, ``"inverse"``, ``"1/mu^2"``.
    """

    NAMES = (
        "logit",
        "probit",
        "cloglog",
        "cauchit",
        "log",
        "identity",
        "sqrt",
        "inverse",
        "1/mu^2",
    )

    def __init__(self, name: str) -> None:
        if name not in self.NAMES:
            raise ValueError(f"unknown link {name!r}; links are {', '.join(self.NAMES)}")
        self.name = name
        #: Index of the link in :attr:`NAMES`, for compiled kernels.
        self.code = self.NAMES.index(name)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Link) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def link(self, mu: np.ndarray) -> np.ndarray:
        """η = g(μ) (R's ``linkfun``)."""
        mu = np.asarray(mu, dtype=np.float64)
        name = self.name
        if name == "logit":
            return sc.logit(mu)
        if name == "probit":
            return sc.ndtri(mu)
        if name == "cloglog":
            return np.log(-np.log1p(-mu))
        if name == "cauchit":
            return np.tan(np.pi * (mu - 0.5))
        if name == "log":
            return np.log(mu)
        if name == "identity":
            return mu.copy()
        if name == "sqrt":
            return np.sqrt(mu)
        if name == "inverse":
            return 1.0 / mu
        return 1.0 / mu**2

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        """μ = g⁻¹(η) (R's ``linkinv``), kept inside the family's range as lme4 does."""
        eta = np.asarray(eta, dtype=np.float64)
        name = self.name
        if name == "logit":
            return np.clip(sc.expit(eta), _EPS, 1.0 - _EPS)
        if name == "probit":
            return np.minimum(sc.ndtr(eta), 1.0 - _EPS)
        if name == "cloglog":
            return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1.0 - _EPS)
        if name == "cauchit":
            return np.minimum(0.5 + np.arctan(eta) / np.pi, 1.0 - _EPS)
        if name == "log":
            return np.maximum(np.exp(eta), _EPS)
        if name == "identity":
            return eta.copy()
        if name == "sqrt":
            return eta * eta
        if name == "inverse":
            return 1.0 / eta
        return 1.0 / np.sqrt(eta)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """dμ/dη at η (R's ``mu.eta``)."""
        eta = np.asarray(eta, dtype=np.float64)
        name = self.name
        if name == "logit":
            p = sc.expit(eta)
            return np.maximum(p * (1.0 - p), _EPS)
        if name == "probit":
            return np.exp(-0.5 * eta * eta - 0.5 * _LOG_2PI)
        if name == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.maximum(np.exp(e - np.exp(e)), _EPS)
        if name == "cauchit":
            return 1.0 / (np.pi * (1.0 + eta * eta))
        if name == "log":
            return np.maximum(np.exp(eta), _EPS)
        if name == "identity":
            return np.ones_like(eta)
        if name == "sqrt":
            return 2.0 * eta
        if name == "inverse":
            return -1.0 / (eta * eta)
        return -0.5 / eta**1.5

    def valid_eta(self, eta: np.ndarray) -> bool:
        """Whether every η maps to a mean inside the family's range."""
        if self.name in ("inverse", "1/mu^2"):
            return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))
        return bool(np.all(np.isfinite(eta)))


# ---------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------
