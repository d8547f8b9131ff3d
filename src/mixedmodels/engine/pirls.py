"""Penalized iteratively reweighted least squares: the conditional modes of a GLMM.

For relative covariance factors Λ(θ) and fixed effects β, the conditional
modes û of the spherical random effects minimise the penalized deviance

    pdev(u) = Σᵢ dᵢ(yᵢ, μᵢ) + ‖u‖²,   μ = g⁻¹(η),  η = o + Xβ + ZΛu,

where dᵢ are the family's deviance residuals.  Each PIRLS iteration is one
penalized weighted least-squares problem with the working weights
wᵢ = aᵢ (dμ/dη)² / V(μᵢ) (aᵢ the prior weights) and the working response
(η − o − Xβ) + (y − μ)/(dμ/dη): its cross-products are refilled in place
(:class:`~mixedmodels.engine.weighted.WeightedCrossProducts`) and factored by
the linear model's :class:`~mixedmodels.engine.factor.BlockedCholesky`.  A
step that increases pdev is halved, up to 20 times, as lme4's
``pwrssUpdate`` does.

With ``fixed_inside=True`` (lme4's nAGQ = 0) β joins u in the least-squares
problem, so the iterations maximise over both.

Iterations stop when the largest change in u and in η falls below
``tolerance``; the factor is then refreshed at the final modes, so that the
Laplace approximation

    −2 log L ≈ log|ΛᵀZᵀWZΛ + I| + ‖û‖² + Σᵢ −2 log p(yᵢ | μ̂ᵢ)

(lme4's definition, see :meth:`PirlsSolution.laplace`) is a smooth function
of θ and β that finite differences can be taken of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..families import Family
from .factor import BlockedCholesky
from .glm_kernels import compiled as compiled_row_passes
from .glm_kernels import family_codes
from .terms import RandomEffectsTerm
from .weighted import WeightedCrossProducts

# lme4's limit on step halvings per iteration (pwrssUpdate's maxstephalfit).
MAX_STEP_HALVINGS = 20

_ADD_MODES = None
_TRIED = False


class PirlsError(RuntimeError):
    """PIRLS did not converge, or step halving could not reduce the penalized deviance."""


def _add_modes_kernel():
    global _ADD_MODES, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            return None
        _ADD_MODES = numba.njit(cache=True, nogil=True)(_add_modes)
    return _ADD_MODES


def _add_modes(eta, codes, z, b):  # pragma: no cover - compiled by numba
    """eta[r] += z[r] · b[codes[r]] for every row."""
    q = z.shape[1]
    for r in range(codes.shape[0]):
        level = codes[r]
        s = 0.0
        for a in range(q):
            s += z[r, a] * b[level, a]
        eta[r] += s


@dataclass
class PirlsSolution:
    """The conditional modes at one (θ, β) and what the Laplace objective needs.

    Attributes
    ----------
    u : ndarray
        Spherical conditional modes, all terms concatenated (term by term,
        level-major within a term).
    beta : ndarray
        Fixed effects: the given ones, or those estimated with ``fixed_inside``.
    eta, mu : ndarray
        Linear predictor (offset included) and mean at the modes.
    deviance : float
        Σ of the deviance residuals at μ.
    logdet : float
        log |ΛᵀZᵀWZΛ + I| with the working weights at the modes (lme4's ``ldL2``).
    iterations : int
        PIRLS iterations used.
    """

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    deviance: float
    logdet: float
    iterations: int

    @property
    def sum_u2(self) -> float:
        """‖u‖² (lme4's ``ussq``)."""
        return float(self.u @ self.u)

    def laplace(self, family: Family, y: np.ndarray, prior_weights: np.ndarray) -> float:
        """lme4's Laplace objective ``ldL2 + ussq + aic`` (−2 log L, constants included)."""
        return self.logdet + self.sum_u2 + family.aic(y, self.mu, prior_weights, self.deviance)


class Pirls:
    """PIRLS for one model's rows: response, prior weights, offset, X and the terms.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Response (proportions for binomial responses with trials as weights).
    prior_weights : ndarray, shape (n,)
        Prior weights (numbers of trials for binomial proportions).
    offset : ndarray, shape (n,)
        Known part of the linear predictor.
    x : ndarray, shape (n, p)
        Fixed-effects model matrix.
    terms : list of RandomEffectsTerm
        In the engine's order.
    family : Family
        Response distribution and link.
    fixed_inside : bool
        Estimate β with u in each least-squares step (lme4's nAGQ = 0) rather
        than holding it at the value given to :meth:`solve`.
    tolerance : float
        Convergence tolerance on the largest change of u and η in an iteration.
    max_iterations : int
        lme4's ``maxit``.
    """

    def __init__(
        self,
        y: np.ndarray,
        prior_weights: np.ndarray,
        offset: np.ndarray,
        x: np.ndarray,
        terms: Sequence[RandomEffectsTerm],
        family: Family,
        *,
        fixed_inside: bool,
        tolerance: float = 1e-9,
        max_iterations: int = 100,
    ) -> None:
        self.y = y
        self.prior_weights = prior_weights
        self.offset = offset
        self.x = x
        self.terms = list(terms)
        self.family = family
        self.fixed_inside = fixed_inside
        self.tolerance = tolerance
        self.max_iterations = max_iterations
        carried = x if fixed_inside else np.empty((len(y), 0))
        self.blocks = WeightedCrossProducts(
            [t.codes for t in self.terms],
            [t.z for t in self.terms],
            [t.n_levels for t in self.terms],
            carried,
        )
        self.factor: BlockedCholesky = self.blocks.new_factor()
        self.u_sizes = [t.n_columns for t in self.terms]
        self.u_offsets = np.cumsum([0, *self.u_sizes])
        self._codes = [np.ascontiguousarray(t.codes, dtype=np.int64) for t in self.terms]
        self._z = [np.ascontiguousarray(t.z, dtype=np.float64) for t in self.terms]
        self._kernel = _add_modes_kernel()
        self._row_passes = compiled_row_passes()
        n = len(y)
        self._weights = np.empty(n)
        self._response = np.empty(n)

    @property
    def n_u(self) -> int:
        return int(self.u_offsets[-1])

    # -- the linear predictor ----------------------------------------------------------

    def random_part(self, lambdas: Sequence[np.ndarray], u: np.ndarray) -> np.ndarray:
        """ZΛu for spherical modes ``u`` (all terms concatenated)."""
        out = np.zeros(len(self.y))
        for k, (term, lam) in enumerate(zip(self.terms, lambdas, strict=True)):
            b = u[self.u_offsets[k] : self.u_offsets[k + 1]].reshape(term.n_levels, term.q) @ lam.T
            if self._kernel is not None:
                self._kernel(out, self._codes[k], self._z[k], np.ascontiguousarray(b))
            else:
                out += np.einsum("nq,nq->n", term.z, b[term.codes])
        return out

    def fixed_part(self, beta: np.ndarray) -> np.ndarray:
        """o + Xβ."""
        return self.offset + self.x @ beta if self.x.shape[1] else self.offset.copy()

    # -- one solve ---------------------------------------------------------------------

    def _refactor(self, lambdas, eta, mu, base) -> bool:
        """Working weights and response at η, refilled blocks, new factor."""
        family = self.family
        if self._row_passes is not None:
            codes = family_codes(family)
            ok = self._row_passes[1](
                *codes, self.y, self.prior_weights, eta, mu, base, self._weights, self._response
            )
            if not ok:
                return False
            weights, working = self._weights, self._response
        else:
            mu_eta = family.link.mu_eta(eta)
            weights = self.prior_weights * mu_eta * mu_eta / family.variance(mu)
            working = (eta - base) + (self.y - mu) / mu_eta
            if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(working))):
                return False
        self.blocks.fill(weights, working)
        self.blocks.reload_factor(self.factor)
        return self.factor.update(list(lambdas))

    def _working_base(self, base: np.ndarray) -> np.ndarray:
        """What the working response is measured from: o + Xβ, or o when β is estimated."""
        return self.offset if self.fixed_inside else base

    def refactor_at(self, lambdas: Sequence[np.ndarray], solution: PirlsSolution) -> bool:
        """Refill and refactor at the weights of ``solution`` (e.g. to read R_X off the factor)."""
        base = self._working_base(self.fixed_part(solution.beta))
        return self._refactor(list(lambdas), solution.eta, solution.mu, base)

    def _penalized_deviance(
        self, eta: np.ndarray, u: np.ndarray
    ) -> tuple[float, np.ndarray, float]:
        """(deviance + ‖u‖², μ, deviance) at η; inf when some μ is outside the family's range."""
        if self._row_passes is not None:
            mu = np.empty_like(eta)
            deviance = self._row_passes[0](
                *family_codes(self.family), self.y, self.prior_weights, eta, mu
            )
        else:
            mu = self.family.link.inverse(eta)
            with np.errstate(all="ignore"):
                deviance = self.family.deviance(self.y, mu, self.prior_weights)
        if not math.isfinite(deviance):
            return math.inf, mu, deviance
        return deviance + float(u @ u), mu, deviance

    def solve(
        self,
        lambdas: Sequence[np.ndarray],
        beta: np.ndarray,
        u: np.ndarray | None = None,
        eta: np.ndarray | None = None,
    ) -> PirlsSolution:
        """The conditional modes at Λ and β (β the start when ``fixed_inside``).

        ``u`` is the starting value of the modes (default zero).  ``eta``, if
        given, is a starting linear predictor instead (lme4 starts from the
        family's starting means): the first iteration's weights are computed
        there and its step is taken whole.

        Raises
        ------
        PirlsError
            When the factor fails, step halving cannot reduce the penalized
            deviance, or the iterations do not converge.
        """
        lambdas = list(lambdas)
        beta = np.asarray(beta, dtype=np.float64).copy()
        u = np.zeros(self.n_u) if u is None else np.asarray(u, dtype=np.float64).copy()
        base = self.fixed_part(beta)
        if eta is None:
            eta = base + self.random_part(lambdas, u)
            pdev, mu, deviance = self._penalized_deviance(eta, u)
            if not math.isfinite(pdev):
                raise PirlsError("the starting linear predictor gives an invalid mean")
        else:
            eta = np.asarray(eta, dtype=np.float64).copy()
            _, mu, deviance = self._penalized_deviance(eta, u)
            pdev = math.inf
        p = self.x.shape[1]
        for iteration in range(1, self.max_iterations + 1):
            if not self._refactor(lambdas, eta, mu, self._working_base(base)):
                raise PirlsError("the penalized least-squares factor is not positive definite")
            if self.fixed_inside:
                new_beta = self.factor.fixed_effects()
                new_u = np.concatenate(self.factor.spherical_modes(new_beta))
                new_base = self.fixed_part(new_beta)
            else:
                new_beta = beta
                new_u = np.concatenate(self.factor.spherical_modes(np.empty(0)))
                new_base = base
            new_eta = new_base + self.random_part(lambdas, new_u)
            new_pdev, new_mu, new_deviance = self._penalized_deviance(new_eta, new_u)
            # Halve steps that increase pdev beyond rounding (near the optimum its
            # changes are of the order of the rounding of its terms).
            slack = 1e-12 * abs(pdev) if math.isfinite(pdev) else 0.0
            halvings = 0
            while not new_pdev <= pdev + slack and halvings < MAX_STEP_HALVINGS:
                halvings += 1
                new_u = 0.5 * (u + new_u)
                if self.fixed_inside and p:
                    new_beta = 0.5 * (beta + new_beta)
                    new_base = self.fixed_part(new_beta)
                new_eta = new_base + self.random_part(lambdas, new_u)
                new_pdev, new_mu, new_deviance = self._penalized_deviance(new_eta, new_u)
            if not math.isfinite(new_pdev):
                raise PirlsError("PIRLS step halving ended at an invalid mean (NaN deviance)")
            if new_pdev > pdev + slack:
                raise PirlsError(
                    f"PIRLS step halvings ({MAX_STEP_HALVINGS}) failed to reduce the penalized "
                    "deviance"
                )
            step_u = float(np.max(np.abs(new_u - u))) if len(u) else 0.0
            step_eta = float(np.max(np.abs(new_eta - eta)))
            u, beta, base, eta, mu, pdev, deviance = (
                new_u,
                new_beta,
                new_base,
                new_eta,
                new_mu,
                new_pdev,
                new_deviance,
            )
            if max(step_u, step_eta) < self.tolerance:
                # The factor at the final modes, for the Laplace log-determinant.
                if not self._refactor(lambdas, eta, mu, self._working_base(base)):
                    raise PirlsError("the penalized least-squares factor is not positive definite")
                return PirlsSolution(
                    u=u,
                    beta=beta,
                    eta=eta,
                    mu=mu,
                    deviance=deviance,
                    logdet=self.factor.logdet_theta(),
                    iterations=iteration,
                )
        raise PirlsError(f"PIRLS did not converge in {self.max_iterations} iterations")
