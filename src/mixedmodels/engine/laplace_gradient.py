"""The gradient of the Laplace objective in (θ, β), from the PIRLS factor.

With M = ΛᵀZᵀWZΛ + I = LLᵀ at the conditional modes û, the Laplace objective
is f = log|M| + ‖û‖² + Σᵢ devᵢ(η̂ᵢ) + c.  Differentiating (the modes move
with θ and β; the working weights wᵢ with η̂ᵢ):

* the penalized deviance's part needs only its partial derivatives, since û
  minimizes it: 2Xᵀs for β and 2sᵀZEₖû for θₖ, with sᵢ = ½ ddevᵢ/dηᵢ and
  Eₖ = ∂Λ/∂θₖ;
* log|M| changes with Λ at fixed weights, 2 tr(M⁻¹ΛᵀZᵀWZEₖ), and with the
  weights, Σᵢ hᵢ w′ᵢ dη̂ᵢ/dφ, where hᵢ = (ZΛM⁻¹ΛᵀZᵀ)ᵢᵢ and w′ᵢ = dwᵢ/dηᵢ;
  dη̂/dφ involves dû/dφ = −H⁻¹ ∂²(pdev/2)/∂u∂φ (H the Hessian of pdev/2 in
  u, = M for canonical links), which one solve v = H⁻¹ΛᵀZᵀc, c = h ⊙ w′,
  turns into row sums.

Both hᵢ and the traces need M⁻¹ only where ZᵀZ has blocks (each term's
diagonal blocks, the level pairs that share rows): the *selected inverse*,
computed from the blocked factor in the same level-by-level pattern as the
factorization itself, at about its cost.  So the gradient costs a small
multiple of one PIRLS iteration instead of 2·dim(θ, β) objective evaluations.

For families whose ``aic`` involves the dispersion (Gamma, inverse Gaussian)
aic − deviance is not constant; its slope in η joins c
(:meth:`~mixedmodels.families.Family.aic_excess_slope`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg

from ..errors import PirlsError
from .pirls import Pirls, PirlsSolution
from .terms import TermStructure
from .working_rows import SelectedInverse

_KERNELS = None
# S_TT of a factor without later terms (read only).
_NO_TRAILING = np.zeros((0, 0))


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        import numba

        globals()["_lower_inverse"] = numba.njit(cache=True, inline="always")(_lower_inverse)
        jit = numba.njit(cache=True, nogil=True)
        _KERNELS = {
            name: jit(function)
            for name, function in (
                ("levels", _selected_inverse_levels),
                ("forward", _forward_levels),
                ("backward", _backward_levels),
                ("mirror", _mirror_upper),
                ("levels_scalar", _selected_inverse_scalar),
            )
        }
    return _KERNELS


def _lower_inverse(lower, out):  # pragma: no cover - compiled by numba
    """out = lower⁻¹ for a small lower-triangular matrix."""
    q = lower.shape[0]
    for j in range(q):
        for i in range(q):
            out[i, j] = 0.0
        out[j, j] = 1.0 / lower[j, j]
        for i in range(j + 1, q):
            s = 0.0
            for k in range(j, i):
                s += lower[i, k] * out[k, j]
            out[i, j] = -s / lower[i, i]


def _mirror_upper(matrix):  # pragma: no cover - compiled by numba
    """Copy a square matrix's upper triangle onto its lower one, in place."""
    n = matrix.shape[0]
    for j in range(n):
        for i in range(j + 1, n):
            matrix[i, j] = matrix[j, i]


def _selected_inverse_levels(
    l00, values, rows, level_ptr, n_trailing, s_tt, s00, s0t
):  # pragma: no cover
    """M⁻¹ on the first term's blocks: s00[ℓ] (q₀×q₀) and s0t[e] (row e of T × level ℓ).

    With C the level's column of L below it (its entries with rows < n_trailing)
    and S_TT = (L_TT L_TTᵀ)⁻¹: S_T0 = −S_TT C L⁻¹ and S_00 = L⁻ᵀ(I + CᵀS_TT C)L⁻¹.
    """
    q0 = l00.shape[1]
    inverse = np.empty((q0, q0))
    g = np.empty(q0)
    inner = np.empty((q0, q0))
    for level in range(l00.shape[0]):
        _lower_inverse(l00[level], inverse)
        start = level_ptr[level]
        stop = level_ptr[level + 1]
        for a in range(q0):
            for b in range(q0):
                inner[a, b] = 1.0 if a == b else 0.0
        for e in range(start, stop):
            re = rows[e]
            if re >= n_trailing:
                continue
            for c in range(q0):
                s = 0.0
                for e2 in range(start, stop):
                    r2 = rows[e2]
                    if r2 < n_trailing:
                        s += s_tt[re, r2] * values[e2, c]
                g[c] = s
            for c in range(q0):
                s = 0.0
                for k in range(q0):
                    s += g[k] * inverse[k, c]
                s0t[e, c] = -s
            for a in range(q0):
                for b in range(q0):
                    inner[a, b] += values[e, a] * g[b]
        for a in range(q0):
            for b in range(q0):
                s = 0.0
                for i in range(q0):
                    for j in range(q0):
                        s += inverse[i, a] * inner[i, j] * inverse[j, b]
                s00[level, a, b] = s


def _selected_inverse_scalar(
    l00, values, rows, level_ptr, n_trailing, s_tt, s00, s0t, g
):  # pragma: no cover - compiled by numba
    """:func:`_selected_inverse_levels` for a scalar first term, S_TT read once per pair.

    A level's entries in T's rows (ascending, before any [X y] row) give
    g = S_EE v by the pairs e₂ < e₁, each adding to both ends; ``g`` is scratch
    (at least the largest level's entries).
    """
    for level in range(l00.shape[0]):
        inverse = 1.0 / l00[level, 0, 0]
        start = level_ptr[level]
        stop = start
        while stop < level_ptr[level + 1] and rows[stop] < n_trailing:
            stop += 1
        for e in range(start, stop):
            g[e - start] = s_tt[rows[e], rows[e]] * values[e, 0]
        for e1 in range(start + 1, stop):
            row = s_tt[rows[e1]]
            v1 = values[e1, 0]
            acc = 0.0
            for e2 in range(start, e1):
                s = row[rows[e2]]
                acc += s * values[e2, 0]
                g[e2 - start] += s * v1
            g[e1 - start] += acc
        inner = 1.0
        for e in range(start, stop):
            s0t[e, 0] = -g[e - start] * inverse
            inner += values[e, 0] * g[e - start]
        s00[level, 0, 0] = inner * inverse * inverse


def _forward_levels(l00, values, rows, level_ptr, n_trailing, rhs0, rhs_t):  # pragma: no cover
    """Forward elimination of the first term's levels: rhs0 ← L₀₀⁻¹rhs0, rhs_T −= L_T0 rhs0."""
    q0 = l00.shape[1]
    for level in range(l00.shape[0]):
        lower = l00[level]
        at = level * q0
        for a in range(q0):
            s = rhs0[at + a]
            for b in range(a):
                s -= lower[a, b] * rhs0[at + b]
            rhs0[at + a] = s / lower[a, a]
        for e in range(level_ptr[level], level_ptr[level + 1]):
            row = rows[e]
            if row < n_trailing:
                s = 0.0
                for c in range(q0):
                    s += values[e, c] * rhs0[at + c]
                rhs_t[row] -= s


def _backward_levels(l00, values, rows, level_ptr, n_trailing, y0, x_t):  # pragma: no cover
    """Back substitution of the first term's levels: y0 ← L₀₀⁻ᵀ(y0 − L_T0ᵀ x_T)."""
    q0 = l00.shape[1]
    for level in range(l00.shape[0]):
        lower = l00[level]
        at = level * q0
        for e in range(level_ptr[level], level_ptr[level + 1]):
            row = rows[e]
            if row < n_trailing:
                for c in range(q0):
                    y0[at + c] -= values[e, c] * x_t[row]
        for a in range(q0 - 1, -1, -1):
            s = y0[at + a]
            for b in range(a + 1, q0):
                s -= lower[b, a] * y0[at + b]
            y0[at + a] = s / lower[a, a]


class LaplaceGradient:
    """The gradient of the Laplace objective for one model's PIRLS problem.

    Parameters
    ----------
    pirls : Pirls
        The model's PIRLS problem.  With β held fixed (nAGQ = 1) the gradient
        is in (θ, β); with β estimated inside PIRLS (lme4's nAGQ = 0) it is in
        θ alone, β̂ moving with θ like the modes (the joint factor gives both).
    terms : sequence of TermStructure
        The terms, in the engine's order (which element of λ each θ is).

    Notes
    -----
    The factor-level work (the selected inverse, the solve) is done here; the
    sums over rows are the working rows' (``gradient_rhs``, ``gradient_sums``).
    """

    def __init__(self, pirls: Pirls, terms: Sequence[TermStructure]) -> None:
        self.pirls = pirls
        self.kernels = _kernels()
        factor = pirls.factor
        k = len(terms)
        self.q = [t.q for t in terms]
        self.q_max = max(self.q)
        self.t_offset = np.zeros(k, dtype=np.int64)
        for t in range(1, k):
            self.t_offset[t] = factor.offsets[t - 1]
        self.dest = list(factor.col0.dest) if k > 1 else []
        self._levels = np.diff(pirls.u_offsets)
        # The scalar selected inverse's scratch: the longest level's entries (the
        # factor's pattern does not change).
        ptr = factor.col0.level_ptr
        self._scratch = np.empty(int(np.max(np.diff(ptr))) if len(ptr) > 1 else 0)
        # (λs, their packed array) of the last read-only λs given to packed().
        self._last_packed: tuple[tuple[np.ndarray, ...], np.ndarray] | None = None
        # Which (term, i, j) each θ is: column-major lower triangle per term.
        self.theta_index = [
            (t, int(i), int(j))
            for t, term in enumerate(terms)
            for i, j in zip(term.theta_rows, term.theta_cols, strict=True)
        ]

    def packed(self, lambdas: list[np.ndarray]) -> np.ndarray:
        """The terms' λ as one (terms, q, q) array (the row kernels read it, never write).

        Kept for the last λs when they are read-only (the problem's, handed out again
        at the same θ): a Hessian's β columns and an evaluation's gradient ask again.
        """
        last = self._last_packed
        if (
            last is not None
            and len(last[0]) == len(lambdas)
            and all(a is b for a, b in zip(last[0], lambdas, strict=True))
        ):
            return last[1]
        out = np.zeros((len(lambdas), self.q_max, self.q_max))
        for t, lam in enumerate(lambdas):
            out[t, : lam.shape[0], : lam.shape[1]] = lam
        if not any(lam.flags.writeable for lam in lambdas):
            self._last_packed = (tuple(lambdas), out)
        return out

    def _solve(self, rhs: np.ndarray) -> np.ndarray:
        """H⁻¹rhs with the factor currently in ``pirls.factor`` (with β: the joint system)."""
        x = rhs.copy()
        self._solve_in_place(x)
        return x

    def _solve_in_place(self, x: np.ndarray) -> None:
        """x ← H⁻¹x (``x`` contiguous)."""
        factor = self.pirls.factor
        column = factor.col0
        # The trailing rows solved for: later terms, and X when β is estimated too.
        n = factor.n_re_trailing + (self.pirls.n_fixed if self.pirls.fixed_inside else 0)
        m0q0 = factor.L00.shape[0] * factor.L00.shape[1]
        y0, y_t = x[:m0q0], x[m0q0:]
        self.kernels["forward"](
            factor.L00, column.values, column.rows, column.level_ptr, n, y0, y_t
        )
        if n:
            # (L Lᵀ)⁻¹ y_T in one LAPACK call: read as a Fortran array, T[:n, :n]ᵀ holds
            # U = Lᵀ in its upper triangle (scipy's solve_triangular costs ~50 µs a
            # call in checks on a small T).
            solved, info = scipy.linalg.lapack.dpotrs(factor.T[:n, :n].T, y_t, lower=0)
            if info:
                raise PirlsError("the trailing factor is singular")
            y_t[:] = solved
        self.kernels["backward"](
            factor.L00, column.values, column.rows, column.level_ptr, n, y0, y_t
        )

    def selected_inverse(self) -> SelectedInverse:
        """M⁻¹ where the row sums need it, from the factor at the solution."""
        factor = self.pirls.factor
        column = factor.col0
        r = factor.n_re_trailing
        if r:
            # Read as a Fortran array, T[:r, :r]ᵀ has the upper factor U = Lᵀ in its
            # upper triangle, the only one dpotri reads (no tril copy); it leaves
            # the upper triangle of (UᵀU)⁻¹ = (LLᵀ)⁻¹ in a copy.
            inverse, info = scipy.linalg.lapack.dpotri(factor.T[:r, :r].T, lower=0)
            if info:
                raise PirlsError("the trailing factor is singular")
            self.kernels["mirror"](inverse)
            s_tt = inverse.T  # C-ordered (the kernels read its rows)
        else:
            s_tt = _NO_TRAILING
        m0, q0 = factor.L00.shape[0], factor.L00.shape[1]
        s00 = np.empty((m0, q0, q0))
        s0t = np.zeros_like(column.values)
        arguments = (factor.L00, column.values, column.rows, column.level_ptr, r, s_tt, s00, s0t)
        if q0 == 1:
            self.kernels["levels_scalar"](*arguments, self._scratch)
        else:
            self.kernels["levels"](*arguments)
        return SelectedInverse(s00, s0t, s_tt, self.t_offset, self.dest)

    def mode_slopes(
        self, lambdas: list[np.ndarray], solution: PirlsSolution, steps: np.ndarray
    ) -> np.ndarray | None:
        """How the modes move with steps in (θ, β): one column du per row of ``steps``.

        From the stationarity of the penalized deviance, F(u; θ, β) = ΛᵀZᵀs + u = 0
        (s = ½ ddev/dη): du = −M⁻¹(∂F/∂θ dθ + ∂F/∂β dβ), with M the factor's
        matrix at ``solution`` (Fisher's weights: the observed ones for canonical
        links, an approximation otherwise).  For scalar terms with θ > 0,
        ∂F/∂θₖ = −uₖ/θₖ on term k's levels plus ΛᵀZᵀW Zₖuₖ.  None where that does
        not apply (vector terms, θ on its bound, β estimated inside PIRLS, rows
        without ``weighted_transpose``); the caller then starts PIRLS as before.
        Only a start for PIRLS: its convergence test decides the modes.
        """
        pirls = self.pirls
        weighted = getattr(pirls.rows, "weighted_transpose", None)
        theta = [float(lam[0, 0]) for lam in lambdas]
        if (
            weighted is None
            or pirls.fixed_inside
            or self.q_max != 1
            or not all(value > 0 for value in theta)
        ):
            return None
        lams = self.packed(lambdas)
        levels = self._levels
        u = solution.u
        k = len(theta)
        steps = np.asarray(steps, dtype=np.float64)
        # A step dθₖ moves b = θu by dθₖ·u at fixed u: per level and step, (modes, steps).
        mode_steps = np.repeat(steps[:, :k].T, levels, axis=0) * u[:, None]
        out = weighted(solution.point, lams, mode_steps, steps[:, k:].T)
        out -= mode_steps / np.repeat(theta, levels)[:, None]
        for i in range(len(steps)):
            self._solve_in_place(out[:, i])
        np.negative(out, out=out)
        return out

    def __call__(self, lambdas: list[np.ndarray], solution: PirlsSolution) -> np.ndarray:
        """∂f/∂(θ, β), or ∂f/∂θ with β inside PIRLS, at ``solution`` (the factor's).

        Leaves the factor at the observed weights when the link is not canonical.
        """
        pirls = self.pirls
        rows = pirls.rows
        lams = self.packed(lambdas)
        inverse = self.selected_inverse()
        at = solution.point
        traces, rhs = rows.gradient_rhs(at, lams, inverse, solution.deviance)
        if not pirls.family.is_canonical:
            pirls.refactor_observed(lambdas, at)
        x = self._solve(rhs)
        first, second, grad_beta = rows.gradient_sums(
            at, lams, inverse, solution.u, x, solution.deviance
        )
        grad_theta = np.array(
            [
                2.0 * traces[t, i, j] + first[t, i, j] - second[t, i, j]
                for t, i, j in self.theta_index
            ]
        )
        if grad_beta is None:
            return grad_theta
        return np.concatenate([grad_theta, grad_beta])
