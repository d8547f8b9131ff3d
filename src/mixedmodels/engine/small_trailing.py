"""The factor's update, the gradient and the average information in one compiled
call each, for a small dense T.

On small models (sleepstudy: 18 levels and a 3×3 trailing block; Penicillin:
24 plates, 6 samples) the arithmetic of an evaluation is a few thousand
operations, and the forty-odd numpy and LAPACK calls of
:meth:`BlockedCholesky.update <mixedmodels.engine.factor.BlockedCholesky.update>`
and :meth:`ProfiledGradient.gradient
<mixedmodels.engine.gradient.ProfiledGradient.gradient>` (each a microsecond
or more) are what it costs.  Here the same computations run as loops compiled
by numba (:mod:`~mixedmodels.engine.small_kernels`), on the same arrays, so
that a factor updated here is read by the rest of the engine as any other:

* the update: T ← the later terms' blocks and [X y] (Λ applied), the first
  term's levels and their downdate, then T's Cholesky factor in place;
* the gradient: β̂ and û from one back-substitution, Σ_TT from the factor,
  the first term's part of the gradient, the later terms' parts, Zᵀe and ∂r²;
* the average information (:mod:`~mixedmodels.engine.information`).

The blocks of every term are laid out flat (:class:`SmallTrailing` prepares
them once per factor; the y parts are read from the cross-products at each
update, since a refit rewrites them).  Used when T has at most
:data:`MAX_ROWS` rows: beyond, LAPACK's blocked routines are faster than
these loops.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .blocks import CrossProducts
from .small_kernels import compiled_kernels

# T's rows up to which the compiled loops beat numpy and LAPACK (a Cholesky and
# an inverse of n³/3 operations each, against a few microseconds per call).
MAX_ROWS = 24
# The pairs of a model with one term: their blocks, terms, ranges and levels, empty
# (writeable: numba compiles a read-only array's type anew; the kernels only read them).
_NO_PAIRS = np.zeros(0)
_NO_PAIR_TERMS = np.zeros((0, 2), dtype=np.int64)
_NO_PAIR_RANGES = np.zeros((0, 3), dtype=np.int64)
_NO_PAIR_LEVELS = np.zeros((0, 2), dtype=np.int64)
# The structure a one-term factor's kernels read (see _plan), by (levels, q, rows of
# [X y]): a function of those sizes only, the same at every fit of such a model.
# (Shared and only read; writeable, as numba compiles a read-only array's type anew.)
_ONE_TERM_PLANS: dict[tuple[int, int, int], tuple] = {}
_MAX_PLANS = 32


class SmallTrailing:
    """A factor's compiled update and gradient when its trailing block is small and dense.

    Built by :meth:`for_factor`; it writes into the factor's own arrays (T and
    the first term's column; L₀₀ is returned), so that the factor reads as after
    any update.  It holds those arrays, not the factor that holds it: without a
    reference cycle a fit's factor is freed as soon as it is dropped, not by the
    cyclic garbage collector.
    """

    def __init__(self, factor, update, gradient_kernel, information_kernel) -> None:
        cp: CrossProducts = factor.cp
        self.cp = cp
        self.column = factor.col0
        self.T = factor.T
        self.n_t = factor.n_t
        self.n_re_trailing = factor.n_re_trailing
        # L₀₀ of the last update (what the factor holds after it).
        self.l00: np.ndarray | None = None
        self._update, self._gradient = update, gradient_kernel
        self._information = information_kernel
        k = cp.n_terms
        n = factor.n_t
        self.sigma = np.zeros((n, n))
        m, q, n_xy = cp.n_levels, cp.q, cp.xx.shape[0]
        self.lam_stack = np.zeros((k, max(q), max(q)))
        if k == 1:
            # One term: its column's layout is a function of the sizes only
            # (column_layout's, made once per shape), and so is all that follows.
            key = (m[0], q[0], n_xy)
            plan = _ONE_TERM_PLANS.get(key)
            if plan is None:
                if len(_ONE_TERM_PLANS) >= _MAX_PLANS:
                    _ONE_TERM_PLANS.clear()
                plan = _ONE_TERM_PLANS[key] = _plan(factor)
        else:
            plan = _plan(factor)
        self.layout, self.offsets, self.integers, self._term_slices, self.n_re = plan
        # The blocks as the last update read them (flat, contiguous): the gradient
        # and the information at that θ read the same.
        self._read: tuple[np.ndarray, ...] | None = None
        # The list of λ last put into lam_stack (compared by identity).
        self._stacked: list[np.ndarray] | None = None

    @classmethod
    def for_factor(cls, factor) -> SmallTrailing | None:
        """The compiled path for ``factor``, or None when it does not apply (a sparse
        or large T, the first term's loop on two threads, numba missing)."""
        if factor.sparse is not None or not factor.k or factor.n_t > MAX_ROWS:
            return None
        column = factor.col0
        if not column.compiled or column.thread_split is not None:
            return None
        kernels_ = compiled_kernels()
        if kernels_ is None:
            return None
        return cls(factor, *kernels_)

    def _fill(self, lambdas: list[np.ndarray]) -> None:
        """λ of every term into the kernels' stack (remembered: the gradient and the
        information at the same θ, given the same list, need not fill it again)."""
        stack = self.lam_stack
        for t, lam in enumerate(lambdas):
            q = lam.shape[0]
            stack[t, :q, :q] = lam
        self._stacked = lambdas

    def _blocks(self) -> tuple[np.ndarray, ...]:
        """The blocks flat, read from the cross-products now (a refit or the GLMM's
        working weights rewrite them between updates): the later terms' diagonal
        blocks, [X y]ᵀZ and the off-diagonal pairs of all terms, the first term's
        [X y]ᵀZ and [X y]ᵀ[X y] (contiguous)."""
        cp = self.cp
        if cp.n_terms == 1:
            diag, xz = cp.diag[0].reshape(-1), cp.xz[0].reshape(-1)
        else:
            diag = np.concatenate([d.reshape(-1) for d in cp.diag])
            xz = np.concatenate([x.reshape(-1) for x in cp.xz])
        data = (
            np.concatenate([pairs.data.reshape(-1) for pairs in cp.off.values()])
            if cp.off
            else _NO_PAIRS
        )
        return diag, xz, data, np.ascontiguousarray(cp.xz[0]), np.ascontiguousarray(cp.xx)

    def _blocks_read(self) -> tuple[np.ndarray, ...]:
        """The blocks as the last update read them (read now before any update)."""
        return self._blocks() if self._read is None else self._read

    def update(self, lambdas: list[np.ndarray]) -> tuple[np.ndarray, float] | None:
        """Refactor at these λ: (L₀₀, Σ log diag L₀₀), or None if not positive definite."""
        self._fill(lambdas)
        arguments = self._update_arguments()
        logdet = self._update(*arguments)
        if math.isnan(logdet):
            return None
        self.l00 = l00 = arguments[5]
        return l00, logdet

    def _update_arguments(self) -> tuple:
        """update_kernel's arguments, with a new L₀₀ and the blocks read now (kept as
        the blocks the last update read)."""
        cp = self.cp
        column = self.column
        self._read = blocks = self._blocks()
        diag, xz, data, xz0, xx = blocks
        return (
            self.lam_stack,
            cp.diag[0],
            self.integers,
            column.raw,
            xz0,
            np.empty(cp.diag[0].shape),
            column.values,
            self.T,
            diag,
            xz,
            xx,
            data,
            column.q0_tag,
        )

    def gradient(
        self, lambdas: list[np.ndarray], theta_index: np.ndarray, reml: bool
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(∇θ, β̂, û per term, Zᵀe per term) at the θ of the factor's last update.

        ``lambdas`` are λ at that θ; ``theta_index`` (n_θ, 3) gives each θ's
        term and its (row, column) in λ.
        """
        if lambdas is not self._stacked:
            self._fill(lambdas)
        cp = self.cp
        p = cp.n_fixed
        n = self.n_t
        column = self.column
        diag, xz, data, xz0, _ = self._blocks_read()
        w = np.zeros(n)
        u_flat = np.empty(self.n_re)
        ze_flat = np.empty(self.n_re)
        out = np.empty(len(theta_index))
        self._gradient(
            self.lam_stack,
            cp.diag[0],
            self.l00,
            self.integers,
            column.raw,
            xz0,
            column.values,
            self.T,
            diag,
            xz,
            data,
            self.n_re_trailing + (p if reml else 0),
            float(cp.n_obs - p if reml else cp.n_obs),
            theta_index,
            self.sigma,
            w,
            u_flat,
            ze_flat,
            out,
            column.q0_tag,
        )
        return (out, *self.residuals(w, u_flat, ze_flat))

    def residuals(
        self, w: np.ndarray, u_flat: np.ndarray, ze_flat: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(β̂, û per term, Zᵀe per term) from the gradient kernel's w, û and Zᵀe (flat)."""
        r = self.n_re_trailing
        p = self.cp.n_fixed
        # β̂ = offset − w (one array operation; IEEE's a − b is a + (−b) exactly).
        offset = self.cp.beta_offset
        beta = -w[r : r + p] if offset is None else np.subtract(offset, w[r : r + p])
        slices = self._term_slices
        modes = [u_flat[a:b] for a, b, _, _ in slices]
        ze = [ze_flat[a:b].reshape(m, q) for a, b, m, q in slices]
        return beta, modes, ze

    def search_arguments(self, theta_index: np.ndarray) -> tuple:
        """The arrays :func:`~mixedmodels.engine.small_search.search_kernel` evaluates on
        (the update's, then θ's index, Σ and the gradient's outputs), with a new L₀₀
        and new outputs; the blocks read now (see :meth:`record_search`)."""
        return (
            *self._update_arguments(),
            theta_index,
            self.sigma,
            np.zeros(self.n_t),
            np.empty(self.n_re),
            np.empty(self.n_re),
        )

    def record_search(self, l00: np.ndarray | None, lambdas: list[np.ndarray] | None) -> None:
        """After a compiled search on :meth:`search_arguments`: its last update was at
        ``lambdas`` (now in the stack) with this L₀₀, or failed (None)."""
        if l00 is not None:
            self.l00 = l00
        self._stacked = lambdas

    def information(
        self,
        lambdas: list[np.ndarray],
        theta_index: np.ndarray,
        reml: bool,
        z_residual: list[np.ndarray],
    ) -> np.ndarray:
        """The average-information Hessian in θ at the factor's θ (Zᵀe per term given)."""
        if lambdas is not self._stacked:
            self._fill(lambdas)
        cp = self.cp
        column = self.column
        diag, xz, data, _, _ = self._blocks_read()
        dof = cp.n_obs - cp.n_fixed if reml else cp.n_obs
        out = np.empty((len(theta_index), len(theta_index)))
        self._information(
            self.lam_stack,
            self.l00,
            self.integers,
            column.values,
            self.T,
            diag,
            xz,
            data,
            # (One term's Zᵀe is a view of the gradient's flat array: no copy.)
            z_residual[0].reshape(-1)
            if len(z_residual) == 1
            else np.concatenate([z.reshape(-1) for z in z_residual]),
            theta_index,
            cp.n_fixed,
            float(self.T[-1, -1] ** 2) / dof,  # r², as the factor reads it
            float(dof),
            out,
            column.q0_tag,
        )
        return out


def _plan(factor) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, ...]], int]:
    """What the kernels read of a factor's structure: (each term's (levels, q) and the
    start of its values in the flat layouts, the terms' first rows in T, every integer
    array the kernels read in one, each term's (start, stop, levels, q) in the flat
    modes and Zᵀe, their length)."""
    cp: CrossProducts = factor.cp
    k = cp.n_terms
    m, q, n_xy = cp.n_levels, cp.q, cp.xx.shape[0]
    # (Python integers: numpy's cumsum on short lists costs more than the arithmetic.)
    rows = []
    term_slices = []
    re_at = diag_at = xz_at = 0
    for levels, qt in zip(m, q, strict=True):
        rows.append((levels, qt, diag_at, xz_at, re_at))
        size = levels * qt
        term_slices.append((re_at, re_at + size, levels, qt))
        re_at += size
        diag_at += size * qt
        xz_at += n_xy * size
    layout = np.array(rows, dtype=np.int64)
    offsets = np.array([0, *factor.offsets[: k - 1]], dtype=np.int64)
    if not cp.off:
        # One term: no pairs (empty arrays of the kernels' shapes, shared).
        off_terms, off_pairs, pair_levels = _NO_PAIR_TERMS, _NO_PAIR_RANGES, _NO_PAIR_LEVELS
    else:
        keys = list(cp.off)
        pair_at = [0, *itertools.accumulate(cp.off[key].n_pairs for key in keys)]
        data_at = [0, *itertools.accumulate(cp.off[key].data.size for key in keys)]
        off_terms = np.array(keys, dtype=np.int64).reshape(-1, 2)
        off_pairs = np.array(
            [[pair_at[o], pair_at[o + 1], data_at[o]] for o in range(len(keys))],
            dtype=np.int64,
        ).reshape(-1, 3)
        # (rows, cols) of the pairs of all terms, in one (pairs, 2) array.
        pair_levels = np.empty((pair_at[-1], 2), dtype=np.int64)
        for key, a, b in zip(keys, pair_at[:-1], pair_at[1:], strict=True):
            pair_levels[a:b, 0] = cp.off[key].rows
            pair_levels[a:b, 1] = cp.off[key].cols
    # Every integer array the kernels read, in one array (numba's dispatch costs
    # about 0.14 µs per array argument, three kernel calls per evaluation): the
    # bounds of its 12 segments first (small_kernels.unpack_integers).
    column = factor.col0
    segments = [
        column.level_ptr,
        column.rows,
        column.entry_term,
        column.entry_comp,
        column.term_q,
        column.pair_base,
        column.pair_pos,
        layout.reshape(-1),
        offsets,
        off_terms.reshape(-1),
        off_pairs.reshape(-1),
        pair_levels.reshape(-1),
    ]
    bounds = itertools.accumulate(map(len, segments), initial=len(segments) + 1)
    integers = np.concatenate(
        [np.fromiter(bounds, np.int64, len(segments) + 1), *segments], dtype=np.int64
    )
    return layout, offsets, integers, term_slices, re_at
