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

from ..errors import PirlsError
from ..families import Family
from .factor import BlockedCholesky
from .glm_kernels import compiled as compiled_row_pass
from .glm_kernels import family_codes, row_pass_numpy
from .terms import RandomEffectsTerm
from .weighted import WeightedCrossProducts

# lme4's limit on step halvings per iteration (pwrssUpdate's maxstephalfit).
MAX_STEP_HALVINGS = 20


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

    def laplace(
        self,
        family: Family,
        y: np.ndarray,
        prior_weights: np.ndarray,
        saturated: float | None = None,
    ) -> float:
        """lme4's Laplace objective ``ldL2 + ussq + aic`` (−2 log L, constants included).

        ``saturated`` is ``family.saturated_aic(y, prior_weights)`` when known
        (then aic = deviance + saturated, without evaluating log-gammas).
        """
        if saturated is not None:
            aic = self.deviance + saturated
        else:
            aic = family.aic(y, self.mu, prior_weights, self.deviance)
        return self.logdet + self.sum_u2 + aic


class _RowState:
    """η, μ, working weights and response at one iterate (buffers reused between iterates)."""

    def __init__(self, n: int) -> None:
        self.eta = np.empty(n)
        self.mu = np.empty(n)
        self.weights = np.empty(n)
        self.response = np.empty(n)
        self.deviance = math.inf


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
    tolerance : float, optional
        Convergence tolerance on the largest change of u and η in an
        iteration.  By default 1e-6 when the iterations are Newton's (canonical
        links, and with numba any link, whose observed information then replaces
        Fisher's): the modes are then exact to about the square of the last
        change.  Otherwise (Fisher scoring, which converges linearly) 1e-10.
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
        tolerance: float | None = None,
        max_iterations: int = 100,
    ) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.prior_weights = np.ascontiguousarray(prior_weights, dtype=np.float64)
        self.offset = np.ascontiguousarray(offset, dtype=np.float64)
        self.x = x
        self.terms = list(terms)
        self._family = family
        self.fixed_inside = fixed_inside
        self._tolerance = tolerance
        self.max_iterations = max_iterations
        carried = x if fixed_inside else np.empty((len(y), 0))
        self.blocks = WeightedCrossProducts(
            [t.codes for t in self.terms],
            [t.z for t in self.terms],
            [t.n_levels for t in self.terms],
            carried,
        )
        self.factor: BlockedCholesky = self.blocks.new_factor()
        self.u_offsets = np.cumsum([0, *(t.n_columns for t in self.terms)]).astype(np.int64)
        # (levels, q) per term, read at every iteration.
        self._shapes = [(t.n_levels, t.q) for t in self.terms]
        passes = compiled_row_pass()
        self._row_pass = passes[0] if passes is not None else None
        self._derivative_pass = passes[1] if passes is not None else None
        # Newton steps on the observed information for non-canonical links (whose
        # working weights, Fisher scoring, converge only linearly).
        self._newton = self._derivative_pass is not None and not family.is_canonical
        n = len(y)
        self._current, self._candidate = _RowState(n), _RowState(n)

    @property
    def family(self) -> Family:
        """The response distribution and link."""
        return self._family

    @family.setter
    def family(self, family: Family) -> None:
        self._family = family
        self._newton = self._derivative_pass is not None and not family.is_canonical

    @property
    def tolerance(self) -> float:
        """The convergence tolerance (see the class docstring)."""
        if self._tolerance is not None:
            return self._tolerance
        return 1e-6 if self.family.is_canonical or self._newton else 1e-10

    @property
    def n_u(self) -> int:
        return int(self.u_offsets[-1])

    # -- the linear predictor ----------------------------------------------------------

    def modes(self, lambdas: Sequence[np.ndarray], u: np.ndarray) -> list[np.ndarray]:
        """b = Λu per term, as (levels, q) arrays."""
        return [
            u[self.u_offsets[k] : self.u_offsets[k + 1]].reshape(shape) @ lam.T
            for k, (shape, lam) in enumerate(zip(self._shapes, lambdas, strict=True))
        ]

    def random_part(self, lambdas: Sequence[np.ndarray], u: np.ndarray) -> np.ndarray:
        """ZΛu for spherical modes ``u`` (all terms concatenated)."""
        out = np.zeros(len(self.y))
        for term, b in zip(self.terms, self.modes(lambdas, u), strict=True):
            out += np.einsum("nq,nq->n", term.z, b[term.codes])
        return out

    def fixed_part(self, beta: np.ndarray) -> np.ndarray:
        """o + Xβ."""
        return self.offset + self.x @ beta if self.x.shape[1] else self.offset.copy()

    def _working_base(self, base: np.ndarray) -> np.ndarray:
        """What the working response is measured from: o + Xβ, or o when β is estimated."""
        return self.offset if self.fixed_inside else base

    def _evaluate(self, state: _RowState, base: np.ndarray, modes: list[np.ndarray]) -> float:
        """Fill ``state`` at η = base + Σ Zb; returns the deviance (inf/nan: invalid)."""
        working_base = self._working_base(base)
        if self._row_pass is None:
            deviance, eta, mu, weights, response = row_pass_numpy(
                self.family, self.y, self.prior_weights, base, working_base, self.terms, modes
            )
            state.eta[:], state.mu[:] = eta, mu
            state.weights[:], state.response[:] = weights, response
        else:
            blocks = self.blocks
            b = np.concatenate([m.reshape(-1) for m in modes]) if modes else np.zeros(0)
            deviance = self._row_pass(
                *family_codes(self.family),
                self.y,
                self.prior_weights,
                base,
                working_base,
                blocks.codes,
                blocks.z,
                blocks.zcol,
                b,
                self.u_offsets,
                state.eta,
                state.mu,
                state.weights,
                state.response,
            )
        state.deviance = deviance
        return deviance

    def _factor(self, lambdas: list[np.ndarray], state: _RowState) -> None:
        """Refill the blocks with the working weights and response of ``state``; refactor."""
        self.blocks.fill(state.weights, state.response)
        self.blocks.reload_factor(self.factor)
        if not self.factor.update(lambdas):
            raise PirlsError("the penalized least-squares factor is not positive definite")

    def _factor_newton(self, lambdas: list[np.ndarray], state: _RowState, base: np.ndarray) -> bool:
        """Factor H = ΛᵀZᵀDZΛ + I (D the observed information) with the Newton right-hand
        side ΛᵀZᵀ(D·ZΛu − s); False when H is not positive definite."""
        n = len(self.y)
        score, observed, slope = np.empty(n), np.empty(n), np.empty(n)
        self._derivative_pass(
            *family_codes(self.family),
            self.y,
            self.prior_weights,
            state.eta,
            score,
            observed,
            slope,
        )
        right = observed * (state.eta - self._working_base(base)) - score
        self.blocks.fill(observed, right, response_weights=np.ones(n))
        # The response's own pivot is not used by the modes: keep it positive.
        self.blocks.cp.xx[-1, -1] = 1e30
        self.blocks.reload_factor(self.factor)
        return self.factor.update(lambdas)

    def refactor_at(self, lambdas: Sequence[np.ndarray], solution: PirlsSolution) -> None:
        """Refill and refactor at the working weights of ``solution``'s modes.

        L and R_X are then the factor's at the solution (what the standard
        errors read); its response column is not the PIRLS one.
        """
        lambdas = list(lambdas)
        state = self._candidate
        self._evaluate(state, solution.eta, [np.zeros(shape) for shape in self._shapes])
        self._factor(lambdas, state)

    def working_weights(self) -> np.ndarray:
        """The working weights of the last iterate of :meth:`solve` (those of the factor)."""
        return self._current.weights

    def refactor_with_weights(self, lambdas: Sequence[np.ndarray], weights: np.ndarray) -> None:
        """Refactor ΛᵀZᵀ diag(weights) ZΛ + I (weights may be any, e.g. observed information).

        Raises PirlsError when that matrix is not positive definite.
        """
        self.blocks.fill(np.ascontiguousarray(weights, dtype=np.float64), np.zeros(len(weights)))
        # A zero response leaves [X y]'s last pivot zero: make it 1 (it only
        # closes the factor; L's random-effects part does not depend on it).
        self.blocks.cp.xx[-1, -1] = 1.0
        self.blocks.reload_factor(self.factor)
        if not self.factor.update(list(lambdas)):
            raise PirlsError("ΛᵀZᵀWZΛ + I with these weights is not positive definite")

    # -- one solve ---------------------------------------------------------------------

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
        current, candidate = self._current, self._candidate
        base = self.fixed_part(beta)
        if eta is None:
            deviance = self._evaluate(current, base, self.modes(lambdas, u))
            if not math.isfinite(deviance):
                raise PirlsError("the starting linear predictor gives an invalid mean")
            pdev = deviance + float(u @ u)
        else:
            zero = [np.zeros(shape) for shape in self._shapes]
            if not math.isfinite(self._evaluate(current, np.asarray(eta, dtype=np.float64), zero)):
                raise PirlsError("the starting means are outside the family's range")
            pdev = math.inf
        p = self.x.shape[1]
        for iteration in range(1, self.max_iterations + 1):
            if not (self._newton and self._factor_newton(lambdas, current, base)):
                self._factor(lambdas, current)
            if self.fixed_inside:
                new_beta = self.factor.fixed_effects()
                new_u = np.concatenate(self.factor.spherical_modes(new_beta))
                new_base = self.fixed_part(new_beta)
            else:
                new_beta, new_base = beta, base
                new_u = np.concatenate(self.factor.spherical_modes(np.empty(0)))
            new_pdev = self._evaluate(candidate, new_base, self.modes(lambdas, new_u))
            new_pdev += float(new_u @ new_u)
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
                new_pdev = self._evaluate(candidate, new_base, self.modes(lambdas, new_u))
                new_pdev += float(new_u @ new_u)
            if math.isnan(new_pdev) or new_pdev == math.inf:
                raise PirlsError("PIRLS step halving ended at an invalid mean or weight")
            if new_pdev > pdev + slack:
                raise PirlsError(
                    f"PIRLS step halvings ({MAX_STEP_HALVINGS}) failed to reduce the penalized "
                    "deviance"
                )
            step_u = float(np.max(np.abs(new_u - u))) if len(u) else 0.0
            step_eta = float(np.max(np.abs(candidate.eta - current.eta)))
            current, candidate = candidate, current
            self._current, self._candidate = current, candidate
            u, beta, base, pdev = new_u, new_beta, new_base, new_pdev
            if max(step_u, step_eta) < self.tolerance:
                # The factor at the final modes, for the Laplace log-determinant.
                self._factor(lambdas, current)
                return PirlsSolution(
                    u=u,
                    beta=beta,
                    eta=current.eta.copy(),
                    mu=current.mu.copy(),
                    deviance=current.deviance,
                    logdet=self.factor.logdet_theta(),
                    iterations=iteration,
                )
        raise PirlsError(f"PIRLS did not converge in {self.max_iterations} iterations")
