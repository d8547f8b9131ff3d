"""The rows as PIRLS works them: sums over rows at a point of the linear predictor.

PIRLS (:mod:`~mixedmodels.engine.pirls`), the Laplace gradient
(:mod:`~mixedmodels.engine.laplace_gradient`) and adaptive quadrature never
touch the rows themselves.  At a :class:`~mixedmodels.engine.row_protocol.Point`
of the linear predictor η = o + Xβ + Σₜ Zₜbₜ (β and the modes b) they ask a
*working rows* object (:class:`~mixedmodels.engine.row_protocol.WorkingRows`,
whose protocol and value types are in :mod:`~mixedmodels.engine.row_protocol`,
re-exported here) for sums over the rows: the deviance, the largest
change of η since the previous point, the weighted blocks AᵀWA (refilled in
the layout the blocked factor reads), the gradient's row sums, the
quadrature's per-level deviances.  Each is a sum (or a maximum) over rows, so
rows held in parts add up: :class:`RowsInMemory` does the work on rows in
memory, and the Dask front end runs one per partition and reduces their
results — one map-reduce per call, the PIRLS logic unchanged.

:class:`RowData` is a GLMM's rows in memory, which hands out the working rows
of a PIRLS solver (with or without X among the blocks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import numpy as np

from ..families import Family
from .glm_kernels import compiled as compiled_row_pass
from .glm_kernels import family_codes, row_pass_numpy
from .laplace_rows import row_kernels
from .row_protocol import FILLS, PassResult, Point, SelectedInverse, WorkingRows
from .terms import RandomEffectsTerm
from .weighted import WeightedCrossProducts

# No previous η to measure the change from (the row pass's empty argument).
_NO_ETA = np.empty(0)


def _column_max_abs(a: np.ndarray) -> np.ndarray:
    """Each column's largest |value| (on a column-ordered copy: numpy reduces a
    row-ordered (n, p) array over its rows ~8x slower, ~40 µs at 2 000 × 7)."""
    return np.abs(np.asfortranarray(a)).max(axis=0)


class _RowState:
    """η, μ, working weights and response at one point (buffers reused between points)."""

    def __init__(self, n: int) -> None:
        self.eta = np.empty(n)
        self.mu = np.empty(n)
        self.weights = np.empty(n)
        self.response = np.empty(n)
        self.deviance = math.inf
        self.point: Point | None = None


class RowsInMemory:
    """Working rows held in memory (all of a model's, or one part of them).

    Parameters
    ----------
    y, prior_weights, offset : ndarray, shape (n,)
        Response, prior weights (trials for binomial proportions), offset.
    x : ndarray, shape (n, p)
        Fixed-effects model matrix.
    codes, z : sequence of ndarray
        Per term: level codes (n,) and model matrix (n, q).
    n_levels : sequence of int
        Levels per term (of the whole data).
    family : Family
        Response distribution and link.
    fixed_inside : bool
        Carry X among the blocks (β estimated inside PIRLS).
    structure : CrossProducts, optional
        The whole data's block structure, when these rows are a part of it
        (see :class:`~mixedmodels.engine.weighted.WeightedCrossProducts`).
    like : WeightedCrossProducts, optional
        Blocks already built on these rows and terms, whose structure is reused.
    """

    def __init__(
        self,
        y: np.ndarray,
        prior_weights: np.ndarray,
        offset: np.ndarray,
        x: np.ndarray,
        codes: Sequence[np.ndarray],
        z: Sequence[np.ndarray],
        n_levels: Sequence[int],
        family: Family,
        *,
        fixed_inside: bool,
        structure=None,
        like: WeightedCrossProducts | None = None,
    ) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.prior_weights = np.ascontiguousarray(prior_weights, dtype=np.float64)
        self.offset = np.ascontiguousarray(offset, dtype=np.float64)
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.fixed_inside = bool(fixed_inside)
        self.n_fixed = self.x.shape[1]
        n = len(self.y)
        carried = self.x if fixed_inside else np.empty((n, 0))
        self.blocks = WeightedCrossProducts(
            codes, z, n_levels, carried, structure=structure, like=like
        )
        self._codes = [np.asarray(c) for c in codes]
        self._z = [np.asarray(zi, dtype=np.float64) for zi in z]
        self._shapes = [(int(m), zi.shape[1]) for m, zi in zip(n_levels, self._z, strict=True)]
        self.u_offsets = np.array(list(accumulate((m * q for m, q in self._shapes), initial=0)))
        # Every term scalar: the gradient's row loops without the loops over q.
        self._scalar_terms = all(q == 1 for _, q in self._shapes)
        passes = compiled_row_pass()
        self._row_pass = passes[0] if passes is not None else None
        self._derivative_pass = passes[1] if passes is not None else None
        self.family = family
        self._states = [_RowState(n), _RowState(n)]
        # The gradient's shift of η without β among the blocks (read only).
        self._no_shift = np.zeros(n)
        self._scratch: _RowState | None = None
        # The last gradient_rhs's per-row pieces, reused by gradient_sums.
        self._gradient_rows: tuple[Point, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._entry_of: tuple[list[np.ndarray], np.ndarray] | None = None
        self._fixed_cache: tuple[np.ndarray, np.ndarray] | None = None
        # (point, fill, family) of the blocks' last fill.
        self._filled: tuple[Point, str, Family] | None = None
        # Σ over Z's columns of max |z|, and each column of X's max |x|: η's change
        # between two points is at most these times the largest changes of b and β.
        z_all = self.blocks.z
        self._z_scale = float(_column_max_abs(z_all).sum()) if z_all.size else 0.0
        self._x_scale = _column_max_abs(self.x) if self.x.size else np.zeros(self.n_fixed)

    @property
    def n_obs(self) -> int:
        return len(self.y)

    @property
    def has_newton(self) -> bool:
        return self._derivative_pass is not None

    # -- one point ----------------------------------------------------------------------

    def _holding(self, at: Point | None) -> _RowState | None:
        """A state computed at ``at`` (the same object, or equal values: a point
        shipped to a Dask worker arrives as a copy of the one evaluated last time)."""
        if at is None:
            return None
        states = [state for state in (*self._states, self._scratch) if state is not None]
        for state in states:
            if state.point is at:
                return state
        for state in states:
            if state.point is not None and state.point.same_as(at):
                return state
        return None

    def _bases(self, at: Point) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """(base, working base, modes per term): η = base + Σ Zb; the working response
        is measured from the working base (o when β is estimated, else o + Xβ)."""
        if at.is_start:
            family = self.family
            base = family.link.link(family.initial_mean(self.y, self.prior_weights))
            modes = [np.zeros(shape) for shape in self._shapes]
        else:
            base = self.offset + self.x @ at.beta if self.n_fixed else self.offset.copy()
            modes = [
                at.modes[a:b].reshape(shape)
                for a, b, shape in zip(
                    self.u_offsets[:-1], self.u_offsets[1:], self._shapes, strict=True
                )
            ]
        working_base = self.offset if self.fixed_inside else base
        return base, working_base, modes

    def _fixed_part(self, beta: np.ndarray) -> np.ndarray:
        """o + Xβ (kept for the last β: PIRLS with β held fixed asks for it each iteration)."""
        # β's bytes as the key: compared in a fraction of np.array_equal's time.
        key = beta.tobytes()
        cached = self._fixed_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        base = self.offset + self.x @ beta if self.n_fixed else self.offset
        self._fixed_cache = (key, base)
        return base

    def _compute(
        self, state: _RowState, at: Point, previous_eta: np.ndarray | None = None
    ) -> float:
        """Fill ``state`` at ``at``; returns the largest change of η from ``previous_eta``
        (0 without it)."""
        state.point = None
        change = 0.0
        if self._row_pass is None:
            base, working_base, modes = self._bases(at)
            deviance, eta, mu, weights, response = row_pass_numpy(
                self.family,
                self.y,
                self.prior_weights,
                base,
                working_base,
                self._codes,
                self._z,
                modes,
            )
            state.eta[:], state.mu[:] = eta, mu
            state.weights[:], state.response[:] = weights, response
            if previous_eta is not None and self.n_obs:
                change = float(np.max(np.abs(eta - previous_eta)))
        else:
            if at.is_start:
                base, working_base, modes = self._bases(at)
                b = np.concatenate([m.reshape(-1) for m in modes]) if modes else np.zeros(0)
            else:
                # The compiled pass reads b whole; η's base is o + Xβ.
                base = self._fixed_part(at.beta)
                working_base = self.offset if self.fixed_inside else base
                b = at.modes
            deviance, change = self._row_pass(
                *family_codes(self.family),
                self.y,
                self.prior_weights,
                base,
                working_base,
                self.blocks.codes,
                self.blocks.z,
                self.blocks.zcol,
                b,
                self.u_offsets,
                _NO_ETA if previous_eta is None else previous_eta,
                state.eta,
                state.mu,
                state.weights,
                state.response,
            )
        state.deviance = float(deviance)
        state.point = at
        return change

    def _state_at(self, at: Point) -> _RowState:
        """A state holding ``at`` (computed into a scratch buffer if none does)."""
        state = self._holding(at)
        if state is None:
            if self._scratch is None:
                self._scratch = _RowState(self.n_obs)
            state = self._scratch
            self._compute(state, at)
        return state

    def evaluate(
        self, at: Point, previous: Point | None = None, fill: str | None = None
    ) -> PassResult:
        if previous is None and fill is not None:
            filled = self._filled
            if filled is not None and filled[0] is at and filled[1] == fill:
                # The blocks already hold this fill at this very point (a refactor at a
                # solution PIRLS just left): nothing to recompute.
                state = self._holding(at)
                if state is not None and state.point is at and filled[2] is self.family:
                    return PassResult(state.deviance, 0.0)
        held = self._holding(previous)
        state = self._states[1] if held is self._states[0] else self._states[0]
        previous_eta = None
        if previous is not None:
            previous_eta = held.eta if held is not None else self._state_at(previous).eta
        change = self._compute(state, at, previous_eta)
        if fill is not None and math.isfinite(state.deviance):
            self._fill(state, fill)
        return PassResult(state.deviance, change)

    def _derivatives(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row at η: the score s, the observed information and dw/dη."""
        n = self.n_obs
        score, observed, slope = np.empty(n), np.empty(n), np.empty(n)
        self._derivative_pass(
            *family_codes(self.family), self.y, self.prior_weights, eta, score, observed, slope
        )
        return score, observed, slope

    def _state_derivatives(self, state: _RowState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_derivatives` at a state's η, from its μ and weights where the link is
        canonical and V′ simple: binomial-logit and Poisson-log rows.

        There g = dμ/dη = V(μ), so the score is a(μ − y), the observed information
        is the working weight w = aV and dw/dη = aV′g = wV′ (V′ = 1 − 2μ, 1): three
        array operations instead of a pass that recomputes μ (bitwise the pass's
        values for binomial rows with |η| ≤ 15, within rounding otherwise).
        """
        family = self.family
        codes = (family.code, family.link.code)
        if codes == (0, 0) or codes == (1, 4):
            mu, weights = state.mu, state.weights
            score = self.prior_weights * (mu - self.y)
            slope = weights * (1.0 - 2.0 * mu) if codes == (0, 0) else weights.copy()
            return score, weights.copy(), slope
        return self._derivatives(state.eta)

    def _fill(self, state: _RowState, kind: str) -> None:
        self._filled = (state.point, kind, self.family)
        blocks = self.blocks
        if kind == "fisher":
            blocks.fill(state.weights, state.response)
            return
        if kind not in FILLS:
            raise ValueError(f"unknown fill {kind!r}")
        score, observed, _ = self._derivatives(state.eta)
        if kind == "newton":
            _, working_base, _ = self._bases(state.point)
            right = observed * (state.eta - working_base) - score
            blocks.fill(observed, right, response_weights=np.ones(self.n_obs))
            # The response's own pivot is not used by the modes: keep it positive.
            blocks.cp.xx[-1, -1] = 1e30
        else:
            blocks.fill(observed, np.zeros(self.n_obs))
            # A zero response leaves [X y]'s last pivot zero: make it 1 (it only
            # closes the factor; L's random-effects part does not depend on it).
            blocks.cp.xx[-1, -1] = 1.0

    def eta_change_bound(self, at: Point, to: Point) -> float:
        """A bound on max |η(to) − η(at)| over the rows, without a pass (neither point the
        starting means)."""
        found = 0.0
        if len(at.modes):
            found = self._z_scale * float(np.max(np.abs(to.modes - at.modes)))
        if self.n_fixed and to.beta is not at.beta:
            found += float(self._x_scale @ np.abs(to.beta - at.beta))
        return found

    # -- sums at a point ---------------------------------------------------------------

    def aic(self, at: Point, deviance: float) -> float:
        state = self._state_at(at)
        return self.family.aic(self.y, state.mu, self.prior_weights, deviance)

    def pearson_chi2(self, at: Point) -> float:
        mu = self._state_at(at).mu
        return float(np.sum(self.prior_weights * (self.y - mu) ** 2 / self.family.variance(mu)))

    def means(self, at: Point) -> tuple[np.ndarray, np.ndarray]:
        state = self._state_at(at)
        return state.eta.copy(), state.mu.copy()

    def level_deviances(self, beta: np.ndarray, lam: np.ndarray, shifted: np.ndarray) -> np.ndarray:
        codes, z = self._codes[0], self._z[0][:, 0]
        m = self._shapes[0][0]
        base = self.offset + self.x @ beta if self.n_fixed else self.offset
        slope = lam[0, 0] * z
        eta = base[None, :] + slope[None, :] * shifted[:, codes]
        with np.errstate(all="ignore"):
            mu = self.family.link.inverse(eta)
            residuals = self.family.deviance_residuals(
                self.y[None, :], mu, self.prior_weights[None, :]
            )
        k = shifted.shape[0]
        keys = (np.arange(k)[:, None] * m + codes[None, :]).ravel()
        return np.bincount(keys, weights=residuals.ravel(), minlength=k * m).reshape(k, m)

    # -- the gradient's row sums -------------------------------------------------------

    def _entries(self, inverse: SelectedInverse) -> np.ndarray:
        """Row r's entry of its term-t level in the first term's column (t ≥ 1)."""
        if self._entry_of is not None and self._entry_of[0] is inverse.dest:
            return self._entry_of[1]
        k = len(self._shapes)
        entry_of = np.zeros((k, self.n_obs), dtype=np.int64)
        for t in range(1, k):
            pair = self.blocks.pair_index(t, 0)
            entry_of[t] = inverse.dest[t - 1][pair * self._shapes[t][1]]
        self._entry_of = (inverse.dest, entry_of)
        return entry_of

    def _gradient_pieces(
        self, at: Point, lams: np.ndarray, inverse: SelectedInverse, deviance: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(c, score, observed, traces) at ``at``: c = h·dw/dη (+ the aic excess)."""
        state = self._state_at(at)
        score, observed, slope = self._state_derivatives(state)
        kernels = row_kernels()
        blocks = self.blocks
        k = len(self._shapes)
        q_max = lams.shape[1]
        leverage = np.empty(self.n_obs)
        traces = np.empty((k, q_max, q_max))
        if self._scalar_terms:
            kernels["leverages_scalar"](
                blocks.codes,
                blocks.z,
                np.ascontiguousarray(lams[:, 0, 0]),
                state.weights,
                inverse.s00,
                inverse.s0t,
                inverse.s_tt,
                self._entries(inverse),
                inverse.t_offset,
                leverage,
                traces,
            )
        else:
            kernels["leverages"](
                blocks.codes,
                blocks.z,
                blocks.zcol,
                lams,
                state.weights,
                inverse.s00,
                inverse.s0t,
                inverse.s_tt,
                self._entries(inverse),
                inverse.t_offset,
                leverage,
                traces,
            )
        c = leverage * slope
        excess = self.family.aic_excess_slope(self.y, state.mu, self.prior_weights, deviance)
        if excess is not None:
            # aic − deviance depends on μ too (through the dispersion): its slope in η.
            c += excess * self.family.link.mu_eta(state.eta)
        self._gradient_rows = (at, c, score, observed)
        return c, score, observed, traces

    def weighted_transpose(
        self, at: Point, lams: np.ndarray, mode_steps: np.ndarray, beta_steps: np.ndarray
    ) -> np.ndarray:
        """ΛᵀZᵀW δη at ``at``'s working weights, one column per column of
        δη = Z·``mode_steps`` + X·``beta_steps`` (``mode_steps`` one row per mode, in the
        modes' order; ``beta_steps`` (p, steps)): (modes, steps)."""
        state = self._state_at(at)
        blocks = self.blocks
        n_steps = mode_steps.shape[1]
        # X's part by BLAS; each column contiguous, here and in ``out`` (for the solves).
        direction = np.empty((self.n_obs, n_steps), order="F")
        np.matmul(self.x, beta_steps, out=direction)
        out = np.empty((int(self.u_offsets[-1]), n_steps), order="F")
        row_kernels()["weighted_steps"](
            blocks.codes,
            blocks.z,
            blocks.zcol,
            lams,
            self.u_offsets,
            direction,
            np.ascontiguousarray(mode_steps),
            state.weights,
            out,
        )
        return out

    def gradient_rhs(
        self, at: Point, lams: np.ndarray, inverse: SelectedInverse, deviance: float
    ) -> tuple[np.ndarray, np.ndarray]:
        c, _, _, traces = self._gradient_pieces(at, lams, inverse, deviance)
        n_u = int(self.u_offsets[-1])
        rhs = np.empty(n_u + (self.n_fixed if self.fixed_inside else 0))
        blocks = self.blocks
        row_kernels()["transpose_times"](
            blocks.codes, blocks.z, blocks.zcol, lams, self.u_offsets, c, rhs[:n_u]
        )
        if self.fixed_inside:
            rhs[n_u:] = self.x.T @ c
        return traces, rhs

    def gradient_sums(
        self,
        at: Point,
        lams: np.ndarray,
        inverse: SelectedInverse,
        u: np.ndarray,
        solved: np.ndarray,
        deviance: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        cached = self._gradient_rows
        if cached is not None and cached[0] is at:
            _, c, score, observed = cached
        else:
            c, score, observed, _ = self._gradient_pieces(at, lams, inverse, deviance)
        n_u = int(self.u_offsets[-1])
        # X dβ̂ enters the linear predictor's response with the modes' (nAGQ = 0).
        shift = self.x @ solved[n_u:] if self.fixed_inside else self._no_shift
        k = len(self._shapes)
        q_max = lams.shape[1]
        total = np.empty(self.n_obs)
        first = np.empty((k, q_max, q_max))
        second = np.empty_like(first)
        blocks = self.blocks
        if self._scalar_terms:
            kernel, lam_argument = (
                row_kernels()["gradient_scalar"],
                (np.ascontiguousarray(lams[:, 0, 0]),),
            )
        else:
            kernel, lam_argument = row_kernels()["gradient"], (blocks.zcol, lams)
        kernel(
            blocks.codes,
            blocks.z,
            *lam_argument,
            self.u_offsets,
            u,
            solved,
            shift,
            c,
            observed,
            score,
            total,
            first,
            second,
        )
        grad_beta = None if self.fixed_inside else self.x.T @ total
        return first, second, grad_beta


class RowData:
    """A GLMM's rows in memory: response, prior weights, offset, X and the terms.

    Parameters
    ----------
    y, prior_weights, offset : ndarray, shape (n,)
        Response (proportions for binomial responses with trials as weights),
        prior weights and offset.
    x : ndarray, shape (n, p)
        Fixed-effects model matrix.
    terms : sequence of RandomEffectsTerm
        The random-effects terms with their rows, in the engine's order.
    """

    def __init__(
        self,
        y: np.ndarray,
        prior_weights: np.ndarray,
        offset: np.ndarray,
        x: np.ndarray,
        terms: Sequence[RandomEffectsTerm],
    ) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.prior_weights = np.ascontiguousarray(prior_weights, dtype=np.float64)
        self.offset = np.ascontiguousarray(offset, dtype=np.float64)
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.terms = list(terms)
        # The first working rows' blocks, whose structure later ones reuse.
        self._blocks: WeightedCrossProducts | None = None

    @property
    def n_obs(self) -> int:
        return len(self.y)

    @property
    def n_fixed(self) -> int:
        return self.x.shape[1]

    def __getstate__(self) -> dict:
        # The blocks are rebuilt where the rows arrive (they are as large as the rows).
        return {**self.__dict__, "_blocks": None}

    def with_response(self, y: np.ndarray) -> RowData:
        """The same rows with another response (a simulated one: the bootstrap)."""
        return RowData(y, self.prior_weights, self.offset, self.x, self.terms)

    def working(self, fixed_inside: bool, family: Family) -> RowsInMemory:
        """Working rows for one PIRLS solver (X among the blocks when ``fixed_inside``)."""
        rows = RowsInMemory(
            self.y,
            self.prior_weights,
            self.offset,
            self.x,
            [t.codes for t in self.terms],
            [t.z for t in self.terms],
            [t.n_levels for t in self.terms],
            family,
            fixed_inside=fixed_inside,
            like=self._blocks,
        )
        if self._blocks is None:
            self._blocks = rows.blocks
        return rows

    def saturated_aic(self, family: Family) -> float | None:
        """The family's saturated constant on these rows (see :meth:`Family.saturated_aic`)."""
        return family.saturated_aic(self.y, self.prior_weights)


__all__ = [
    "FILLS",
    "PassResult",
    "Point",
    "RowData",
    "RowsInMemory",
    "SelectedInverse",
    "WorkingRows",
]
