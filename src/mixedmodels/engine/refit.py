"""Refits to new responses: the same design and blocks, a warm start (issue 18).

A new response changes only the y row and column of AᵀA — the per-level
sums ZⱼᵀWy, XᵀWy and yᵀWy — which one sparse product per term gives.  A
:class:`ResponseRefitter` keeps a private copy of those y blocks (ZᵀZ, ZᵀX and
XᵀX stay shared with the model), one workspace and the gradient's index maps,
so that each refit costs a few quasi-Newton steps from the new response's
moment estimates: no formula, no pass over the rows inside the θ loop, no
symbolic analysis.  For simulation studies and power analyses (MixedModels.jl's
``refit!``, lme4's ``refit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from .blocks import CrossProducts
from .fit import blas_threads, optimizer_threads, solution_at, theta_scale
from .gradient_fit import Evaluator, fit_quasi_newton
from .optimize import OptimizationSummary
from .problem import LinearProblem, Solution
from .start import MomentStart, start_steps

# Entries of Zⱼᵀ W up to which it is held dense (8 MB).
_DENSE_OPERATOR_SIZE = 1_000_000


class ResponseRefitter:
    """Refits a problem's θ to new responses.

    Parameters
    ----------
    problem : LinearProblem
        The fitted problem (its blocks are shared, never changed).
    codes, z : sequences of arrays
        Each term's level codes and per-row model matrix (the design's rows).
    x : ndarray (n, p)
        The fixed-effects model matrix.
    weights : ndarray (n,), optional
        Prior weights.
    """

    def __init__(
        self,
        problem: LinearProblem,
        codes: Sequence[np.ndarray],
        z: Sequence[np.ndarray],
        x: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        self.problem = problem.with_private_response()
        self.blocks = self.problem.cross_products
        n = len(x)
        self.n_obs = n
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self._weights = w
        self._xw = x * w[:, None]
        self._x = x
        # Zⱼᵀ W as sparse operators (levels·q × n).
        self._operators = []
        for c, zj, m in zip(codes, z, self.blocks.n_levels, strict=True):
            q = zj.shape[1]
            rows = (np.asarray(c, dtype=np.int64)[:, None] * q + np.arange(q)[None, :]).ravel()
            cols = np.repeat(np.arange(n), q)
            values = (zj * w[:, None]).ravel()
            operator = sp.csr_matrix((values, (rows, cols)), shape=(m * q, n))
            # Small designs dense: scipy's sparse product costs microseconds per call
            # in Python, more than a dense product of this size.
            self._operators.append(
                operator.toarray() if m * q * n <= _DENSE_OPERATOR_SIZE else operator
            )
        self.scale = theta_scale(self.problem)
        self._threads = optimizer_threads(self.problem)
        self.evaluator = Evaluator(self.problem, self.scale)
        # ZᵀZ's part of the moment start, read once for all responses.
        self._moments = MomentStart(self.blocks, self.problem.terms)

    def set_response(self, y: np.ndarray) -> None:
        """Write the y blocks of ``y`` (length n, finite) into the private copy."""
        cp = self.blocks
        p = cp.n_fixed
        if cp.beta_offset is not None:
            # The blocks hold y − Xβ₀ (see CrossProducts.beta_offset).
            y = y - self._x @ cp.beta_offset
        for j, op in enumerate(self._operators):
            cp.xz[j][-1] = (op @ y).reshape(cp.n_levels[j], cp.q[j])
        xy = self._xw.T @ y
        cp.xx[-1, :p] = xy
        cp.xx[:p, -1] = xy
        cp.xx[-1, -1] = float(np.dot(y * self._weights, y))

    def refit(
        self, y: np.ndarray, fallback: np.ndarray, hessian: np.ndarray | None = None
    ) -> tuple[OptimizationSummary, Solution, CrossProducts]:
        """Fit θ to ``y`` (Hessian ``hessian`` in θ at the start, or the average
        information there, as a fit starts).

        The start is the moment estimate for ``y`` (as a fit starts; over
        simulated responses of sleepstudy it saves steps on the fit's θ),
        or θ = ``fallback`` where there is none.  Returns the optimizer's
        summary, the solution at its θ and a copy of the blocks for ``y``
        (its y parts its own, the rest shared).
        """
        self.set_response(np.asarray(y, dtype=np.float64))
        scale = self.scale
        lower = self.problem.lower_bounds
        moments = self._moments.theta(self.blocks)
        if moments is None:
            start_phi = np.asarray(fallback, dtype=np.float64) / scale
        else:
            start_phi, _ = start_steps(moments / scale, lower)
        # Without a Hessian, the average information at the start (as a fit
        # starts): over simulated responses of sleepstudy 4.95 evaluations,
        # against 7.2 from the fit's final Hessian.
        h_phi = None if hessian is None else hessian * np.outer(scale, scale)
        with blas_threads(self._threads):
            summary = fit_quasi_newton(self.evaluator, start_phi, hessian=h_phi)
            if summary is None:
                raise FloatingPointError("the criterion is not finite at the start of the refit")
            # The workspace was last updated after set_response: current if at the optimum.
            solution = solution_at(summary, self.evaluator)
        cp = self.blocks
        own = replace(cp, xz=[a.copy() for a in cp.xz], xx=cp.xx.copy())
        return summary, solution, own
