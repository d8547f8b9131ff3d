"""The gradient of the profiled objective with respect to θ, read off the blocked factor.

With Ω(θ) = BᵀGB + diag(I, 0) (G = AᵀA for A = [Z X y], B = diag(Λ, I)) and
L its blocked factor (:class:`~mixedmodels.engine.factor.BlockedCholesky`),
the profiled criteria are

    ML:    d(θ) = log|Ω_Z| + n log r² + const,
    REML:  d(θ) = log|Ω_ZX| + (n − p) log r² + const,

where Ω_S is the leading block of Ω over S (the random effects; the random
and the fixed effects).  For θ_k = λ_t[i, j] (so ∂Λ/∂θ_k = I ⊗ E_ij on the
term's levels):

* ∂ log|Ω_S| / ∂θ_k = 2 tr(Ω_S⁻¹ (BᵀG)_S,Z ∂Λ/∂θ_k)
  = 2 Σ over the term's levels ℓ of Y_ℓ[j, i], with
  Y_ℓ = Σ_s (Ω_S⁻¹)_(t,ℓ),s (BᵀG)_s,(t,ℓ).  Only the entries of Ω_S⁻¹ where
  G is not zero are needed — a subset of the pattern of L, on which the
  entries of the inverse follow from L alone (Takahashi's selected inverse):
  Σ_TT = L_T⁻ᵀL_T⁻¹ on the trailing block (dense, LAPACK ``dpotri``),
  Σ_T0 = −Σ_TT L_T0 L₀₀⁻¹ on the first term's column and
  Σ₀₀ = L₀₀⁻ᵀ(I + L_T0ᵀ Σ_TT L_T0)L₀₀⁻¹ on its diagonal blocks, level by level;
* ∂r²/∂θ_k = −2 eᵀZ ∂Λ/∂θ_k û (the envelope theorem: r² is a minimum over
  u and β), e = y − Xβ̂ − ZΛû the residual, computed from the blocks of G.

Nothing of size n × n or n × q is formed; the cost is about that of two
evaluations of the objective (the inverse of the dense trailing block costs
two of its Cholesky factorisations; the first term's levels one pass like
the factorisation's).  The first term's pass is compiled with numba; where
numba is missing :func:`gradient_available` is False and the optimizer falls
back to a derivative-free method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.linalg

from .blocks import CrossProducts
from .kernels import compiled_on_first_use, worker
from .smallmatrix import batched_matmul

if TYPE_CHECKING:
    # Annotations only: the factor's small path compiles this module's first-term
    # loop (engine.small_trailing), so importing the factor here would be a cycle.
    from .factor import BlockedCholesky


def gradient_available() -> bool:
    """Whether the analytic gradient can be computed here (numba imports)."""
    return _kernel() is not None


def first_term_gradient(
    lo,
    hi,
    lam0,
    diag0,
    l00,
    level_ptr,
    rows,
    raw,
    entry_term,
    entry_comp,
    term_q,
    lams,
    xz0,
    values,
    sigma,
    n_s,
    acc,
    pair_base,
    pair_pos,
    q0_tag,
):  # pragma: no cover - compiled by numba
    """Add Σ_ℓ Y for the first term's levels lo:hi, and their part of the later terms' Y.

    ``sigma`` holds Σ_TT on and below its diagonal for the first ``n_s`` rows
    of T (the rows inside S) — dense, or, when ``pair_pos`` has more than one
    element, one row of values on the sparse factor's pattern, the pairs of a
    level's entries found as the downdate finds them
    (:class:`~mixedmodels.engine.kernels.LevelColumns`); ``acc[t]`` collects
    Σ_ℓ Y_ℓ of term t, indexed
    [row of Σ, column of (BᵀG)].  The entries of a level are those of
    :class:`~mixedmodels.engine.kernels.LevelColumns`, rows ascending;
    ``q0_tag`` is :func:`~mixedmodels.engine.kernels.q0_tag` (q₀ as a type).
    """
    q0 = len(q0_tag)
    max_entries = 0
    for level in range(lo, hi):
        max_entries = max(max_entries, level_ptr[level + 1] - level_ptr[level])
    k_rows = np.empty((max_entries, q0))
    w = np.empty((max_entries, q0))
    st0 = np.empty((max_entries, q0))
    linv = np.empty((q0, q0))
    middle = np.empty((q0, q0))
    s00 = np.empty((q0, q0))
    tmp = np.empty((q0, q0))
    k_diag = np.empty((q0, q0))
    for level in range(lo, hi):
        start = level_ptr[level]
        stop = start
        while stop < level_ptr[level + 1] and rows[stop] < n_s:
            stop += 1
        m = stop - start
        # (BᵀG) rows of the level's entries: Λ_Tᵀ G_Tℓ, or [X y]ᵀZ₀ for X rows.
        for e in range(m):
            ent = start + e
            t = entry_term[ent]
            a = entry_comp[ent]
            for c in range(q0):
                s = 0.0
                if t < 0:
                    s = xz0[a, level, c]
                else:
                    base = ent - a
                    for a2 in range(a, term_q[t]):
                        s += lams[t, a2, a] * raw[base + a2, c]
                k_rows[e, c] = s
        # W = Σ_TT[R, R] V (Σ_TT symmetric, held on and below the diagonal):
        # the pairs below the diagonal add to both rows, the diagonal once.
        for e in range(m):
            for c in range(q0):
                w[e, c] = 0.0
        sparse = len(pair_pos) > 1
        base = pair_base[level]
        for e1 in range(m):
            r1 = rows[start + e1]
            row = sigma[0] if sparse else sigma[r1]
            k = base + e1 * (e1 + 1) // 2
            if q0 == 1:
                v1 = values[start + e1, 0]
                acc1 = 0.0
                for e2 in range(e1):
                    s_val = row[pair_pos[k + e2]] if sparse else row[rows[start + e2]]
                    acc1 += s_val * values[start + e2, 0]
                    w[e2, 0] += s_val * v1
                s_val = row[pair_pos[k + e1]] if sparse else row[r1]
                w[e1, 0] += acc1 + s_val * v1
            elif q0 == 2:
                v1a = values[start + e1, 0]
                v1b = values[start + e1, 1]
                acc1 = 0.0
                acc2 = 0.0
                for e2 in range(e1):
                    s_val = row[pair_pos[k + e2]] if sparse else row[rows[start + e2]]
                    acc1 += s_val * values[start + e2, 0]
                    acc2 += s_val * values[start + e2, 1]
                    w[e2, 0] += s_val * v1a
                    w[e2, 1] += s_val * v1b
                s_val = row[pair_pos[k + e1]] if sparse else row[r1]
                w[e1, 0] += acc1 + s_val * v1a
                w[e1, 1] += acc2 + s_val * v1b
            else:
                for e2 in range(e1 + 1):
                    s_val = row[pair_pos[k + e2]] if sparse else row[rows[start + e2]]
                    for c in range(q0):
                        w[e1, c] += s_val * values[start + e2, c]
                        if e2 != e1:
                            w[e2, c] += s_val * values[start + e1, c]
        # L⁻¹ of the level's diagonal block.
        for i in range(q0):
            for j in range(q0):
                linv[i, j] = 0.0
        for j in range(q0):
            linv[j, j] = 1.0 / l00[level, j, j]
            for i in range(j + 1, q0):
                s = 0.0
                for kk in range(j, i):
                    s += l00[level, i, kk] * linv[kk, j]
                linv[i, j] = -s / l00[level, i, i]
        # Σ_T0 = −W L⁻¹ on the level's rows.
        for e in range(m):
            for c in range(q0):
                s = 0.0
                for c2 in range(c, q0):
                    s += w[e, c2] * linv[c2, c]
                st0[e, c] = -s
        # Σ₀₀ = L⁻ᵀ (I + VᵀW) L⁻¹.
        for a in range(q0):
            for b in range(q0):
                s = 1.0 if a == b else 0.0
                for e in range(m):
                    s += values[start + e, a] * w[e, b]
                middle[a, b] = s
        for a in range(q0):
            for b in range(q0):
                s = 0.0
                for c in range(q0):
                    s += middle[a, c] * linv[c, b]
                tmp[a, b] = s
        for a in range(q0):
            for b in range(q0):
                s = 0.0
                for c in range(q0):
                    s += linv[c, a] * tmp[c, b]
                s00[a, b] = s
        # Y₀ = Σ₀₀ λ₀ᵀD_ℓ + Σ_T0ᵀ K_R.
        for c in range(q0):
            for i in range(q0):
                s = 0.0
                for c2 in range(q0):
                    s += lam0[c2, c] * diag0[level, c2, i]
                k_diag[c, i] = s
        for a in range(q0):
            for i in range(q0):
                s = 0.0
                for c in range(q0):
                    s += s00[a, c] * k_diag[c, i]
                for e in range(m):
                    s += st0[e, a] * k_rows[e, i]
                acc[0, a, i] += s
        # The later terms' Y: Σ_(t,ℓ'),(0,ℓ) (BᵀG)_(0,ℓ),(t,ℓ') = Σ_T0 λ₀ᵀ G_(0,ℓ),(t,ℓ').
        for e in range(m):
            ent = start + e
            t = entry_term[ent]
            if t < 0:
                continue
            a = entry_comp[ent]
            base = ent - a
            for i in range(term_q[t]):
                s = 0.0
                for c in range(q0):
                    kc = 0.0
                    for c2 in range(q0):
                        kc += lam0[c2, c] * raw[base + i, c2]
                    s += st0[e, c] * kc
                acc[t, a, i] += s


#: The compiled :func:`first_term_gradient` (None without numba).
_kernel = compiled_on_first_use(first_term_gradient)


class Residuals(NamedTuple):
    """What the gradient reads off a factor at θ besides Σ: β̂, the spherical modes û
    (per term) and Zᵀe for the conditional residual e (per term, (levels, q)).

    (A named tuple: made at every gradient, and a frozen dataclass's
    construction costs several times more.)
    """

    beta: np.ndarray
    modes: list[np.ndarray]
    z_residual: list[np.ndarray]


def _lower_index(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of (row, col) in an n×n matrix held on and below its diagonal."""
    r = rows.astype(np.int64)
    c = cols.astype(np.int64)
    return np.maximum(r, c) * n + np.minimum(r, c)


def theta_index(theta_rows: list[np.ndarray], theta_cols: list[np.ndarray]) -> np.ndarray:
    """Each θ's term, row and column in λ, shape (n_θ, 3) (the compiled small path's
    layout of θ)."""
    return np.array(
        [
            (t, i, j)
            for t, (rows, cols) in enumerate(zip(theta_rows, theta_cols, strict=True))
            # Python integers: numpy's scalars convert slowly.
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True)
        ],
        dtype=np.int64,
    ).reshape(-1, 3)


class ProfiledGradient:
    """∇θ of the ML deviance or REML criterion, read off a factor updated at θ.

    Parameters
    ----------
    structure : BlockedCholesky
        A factor of the problem (any workspace): its block layout is read,
        once, to find the entries of the inverse the gradient needs.
    theta_rows, theta_cols : list of int arrays
        For each term, the (row, column) in λ of each of its θ.
    index : ndarray (n_θ, 3), optional
        :func:`theta_index` of ``theta_rows`` and ``theta_cols``, when the caller
        holds it (writable: the compiled kernels are typed for writable arrays).
    """

    def __init__(
        self,
        structure: BlockedCholesky,
        theta_rows: list[np.ndarray],
        theta_cols: list[np.ndarray],
        index: np.ndarray | None = None,
    ) -> None:
        self.theta_rows = theta_rows
        self.theta_cols = theta_cols
        # Each θ's term, row and column in λ (the compiled small path's layout;
        # ``index`` when the caller has it: a writable array, as numba compiled for).
        self.theta_index = theta_index(theta_rows, theta_cols) if index is None else index
        cp = structure.cp
        q = cp.q
        self._offsets = list(structure.offsets)
        self._acc_shape = (max(cp.n_terms, 1), max(q, default=1), max(q, default=1))
        # Their flat indices in an n_s-wide Σ_TT, by n_s (REML and ML differ);
        # with a sparse T, their positions on its factor's pattern.
        self._flat: dict[int, tuple[dict, dict]] = {}
        self._sparse_index = None
        self._cp = cp
        # The blocks' coordinates in T, made when first needed: a small T's compiled
        # path reads none of them (they cost a small fit tens of microseconds).
        self._diag_blocks: dict | None = None
        self._off_blocks: dict | None = None
        if structure.sparse is not None:
            self._block_coordinates()
            r = structure.n_re_trailing
            p = cp.n_fixed
            x_index = {}
            for t in range(1, cp.n_terms):
                cols = structure.offsets[t - 1] + np.arange(structure.sizes[t])
                x_index[t] = structure.trailing_index(
                    np.repeat(r + np.arange(p), len(cols)), np.tile(cols, p)
                )
            self._sparse_index = (
                {t: structure.trailing_index(r_, c_) for t, (r_, c_) in self._diag_blocks.items()},
                {
                    key: structure.trailing_index(r_, c_)
                    for key, (r_, c_) in self._off_blocks.items()
                },
                x_index,
            )

    def _block_coordinates(self) -> None:
        """(row, col) in T of the blocks the later terms read off Σ_TT."""
        cp = self._cp
        q = cp.q
        offsets = self._offsets
        self._diag_blocks = {}
        for t in range(1, cp.n_terms):
            base = offsets[t - 1] + np.arange(cp.n_levels[t])[:, None, None] * q[t]
            r = base + np.arange(q[t])[None, :, None]
            c = base + np.arange(q[t])[None, None, :]
            self._diag_blocks[t] = (r, c)
        self._off_blocks = {}
        for (i, j), pairs in cp.off.items():
            if j == 0:
                continue
            r = offsets[i - 1] + pairs.rows[:, None, None].astype(np.int64) * q[i]
            c = offsets[j - 1] + pairs.cols[:, None, None].astype(np.int64) * q[j]
            r = r + np.arange(q[i])[None, :, None]
            c = c + np.arange(q[j])[None, None, :]
            self._off_blocks[(i, j)] = (r, c)

    def _flat_indices(self, n_s: int) -> tuple[dict, dict]:
        if self._diag_blocks is None:
            self._block_coordinates()
        if n_s not in self._flat:
            self._flat[n_s] = (
                {t: _lower_index(r, c, n_s) for t, (r, c) in self._diag_blocks.items()},
                {key: _lower_index(r, c, n_s) for key, (r, c) in self._off_blocks.items()},
            )
        return self._flat[n_s]

    @staticmethod
    def _sigma_tt(f: BlockedCholesky, n_s: int) -> np.ndarray:
        """Σ_TT on the first n_s rows and columns of T, on and below its diagonal (C order)."""
        # A C-order copy of the leading block holds L on and below its diagonal;
        # read as a Fortran array (its transpose) it is the upper factor Lᵀ,
        # which LAPACK inverts in place: the copy then holds Σ below its diagonal.
        lead = np.array(f.T[:n_s, :n_s])
        if n_s:
            _, info = scipy.linalg.lapack.dpotri(lead.T, lower=0, overwrite_c=1)
            if info != 0:
                raise np.linalg.LinAlgError("the trailing block is singular")
        return lead

    def gradient(
        self, factor: BlockedCholesky, lambdas: list[np.ndarray], reml: bool
    ) -> np.ndarray:
        """The gradient with respect to θ (lme4's order) at the θ the factor was updated at.

        Parameters
        ----------
        factor : BlockedCholesky
            A factor of the problem, updated at θ (it is not changed).
        lambdas : list of ndarray
            λ of each term at that θ.
        reml : bool
            REML criterion (True) or ML deviance.
        """
        return self.gradient_and_residuals(factor, lambdas, reml)[0]

    def gradient_and_residuals(
        self, factor: BlockedCholesky, lambdas: list[np.ndarray], reml: bool
    ) -> tuple[np.ndarray, Residuals]:
        """:meth:`gradient`, and the solution and Zᵀe it read off the factor (which the
        average information at the same θ needs again)."""
        small = factor.small_path()
        if small is not None:
            g, beta, modes, ze = small.gradient(lambdas, self.theta_index, reml)
            return g, Residuals(beta, modes, ze)
        f = factor
        cp = f.cp
        k = cp.n_terms
        p = cp.n_fixed
        beta, modes = f.solution()
        n_s = f.n_re_trailing + (p if reml else 0)
        sparse = f.sparse is not None
        if sparse:
            # Σ on the sparse factor's pattern (its order: the random effects
            # first, [X y] last, so the leading n_s rows are the same rows).
            sigma = f.sparse.selected_inverse(n_s).reshape(1, -1)
        else:
            sigma = self._sigma_tt(f, n_s)
        acc = np.zeros(self._acc_shape)
        col0 = f.col0
        lams = col0.lambda_stack(lambdas[1:])
        kernel = _kernel()
        if kernel is None:
            raise RuntimeError("the analytic gradient needs numba")
        arrays = (
            np.ascontiguousarray(lambdas[0]),
            cp.diag[0],
            f.L00,
            col0.level_ptr,
            col0.rows,
            col0.raw,
            col0.entry_term,
            col0.entry_comp,
            col0.term_q,
            lams,
            np.ascontiguousarray(cp.xz[0]),
            col0.values,
            sigma,
            n_s,
        )
        pairs = (col0.pair_base, col0.pair_pos, col0.q0_tag)
        split = col0.thread_split
        if split is None:
            kernel(0, col0.n_levels, *arrays, acc, *pairs)
        else:
            # Two halves of the levels (by work, as the downdate splits them)
            # at once: the kernel releases the GIL; each half has its own sums.
            other_acc = np.zeros_like(acc)
            other = worker().submit(kernel, split, col0.n_levels, *arrays, other_acc, *pairs)
            kernel(0, split, *arrays, acc, *pairs)
            other.result()
            acc += other_acc
        flat = sigma.reshape(-1)
        if sparse:
            diag_index, off_index, x_index = self._sparse_index
        else:
            diag_index, off_index = self._flat_indices(n_s)
        r = f.n_re_trailing
        for t in range(1, k):
            lam = lambdas[t]
            # Diagonal blocks: Σ_(t,ℓ),(t,ℓ) λᵀD_ℓ (Σ's block read symmetric).
            block = flat[diag_index[t]]
            acc[t, : cp.q[t], : cp.q[t]] += np.einsum("lab,cb,lci->ai", block, lam, cp.diag[t])
            if reml and p:
                lo = self._offsets[t - 1]
                hi = self._offsets[t]
                # Σ_(t,ℓ),X (XᵀZ_t)_ℓ: Σ's X rows sit below the terms' rows.
                if sparse:
                    sx = flat[x_index[t]].reshape(p, cp.n_levels[t], cp.q[t])
                else:
                    sx = sigma[r : r + p, lo:hi].reshape(p, cp.n_levels[t], cp.q[t])
                acc[t, : cp.q[t], : cp.q[t]] += np.einsum("xla,xli->ai", sx, cp.xz[t][:p])
        for (i, j), index in off_index.items():
            g = cp.off[(i, j)].data  # (pairs, q_i, q_j): Z_iᵀZ_j
            block = flat[index]  # Σ_(i,r),(j,c)
            # Term j's Y: Σ_(j,c),(i,r) λ_iᵀ G_(i,r),(j,c).
            acc[j, : cp.q[j], : cp.q[j]] += np.einsum("bac,da,bdi->ci", block, lambdas[i], g)
            # Term i's Y: Σ_(i,r),(j,c) λ_jᵀ G_(j,c),(i,r).
            acc[i, : cp.q[i], : cp.q[i]] += np.einsum("bac,dc,bid->ai", block, lambdas[j], g)
        # r²: ∂r²/∂λ_t[i, j] = −2 Σ_ℓ (Z_tᵀe)_ℓ[i] û_ℓ[j].
        ze = z_residual(cp, lambdas, beta, modes)
        r2 = f.pwrss()
        dof = cp.n_obs - p if reml else cp.n_obs
        out = []
        for t in range(k):
            qt = cp.q[t]
            u = modes[t].reshape(cp.n_levels[t], qt)
            d_r2 = -2.0 * ze[t].T @ u  # [i, j]
            rows, cols = self.theta_rows[t], self.theta_cols[t]
            out.append(2.0 * acc[t, cols, rows] + dof * d_r2[rows, cols] / r2)
        return np.concatenate(out), Residuals(beta, modes, ze)


def z_residual(
    cp: CrossProducts, lambdas: list[np.ndarray], beta: np.ndarray, modes: list[np.ndarray]
) -> list[np.ndarray]:
    """Z_tᵀe for every term, (levels, q): from the blocks of G, e = y − Xβ − ZΛu."""
    p = cp.n_fixed
    shift = beta if cp.beta_offset is None else beta - cp.beta_offset
    b = [modes[t].reshape(cp.n_levels[t], cp.q[t]) @ lambdas[t].T for t in range(cp.n_terms)]
    out = []
    for t in range(cp.n_terms):
        xz = cp.xz[t]
        # tensordot, not a reshape to (p, −1): without fixed effects p = 0.
        ze = xz[p] - np.tensordot(shift, xz[:p], axes=(0, 0))
        ze -= batched_matmul(cp.diag[t], b[t][:, :, None])[:, :, 0]
        out.append(ze)
    for (i, j), pairs in cp.off.items():
        g = pairs.data  # rows: levels of i, cols: levels of j
        below = batched_matmul(g, b[j][pairs.cols][:, :, None])[:, :, 0]
        above = batched_matmul(g.transpose(0, 2, 1), b[i][pairs.rows][:, :, None])[:, :, 0]
        # Sums over the pairs of each level (bincount: np.subtract.at is slow).
        for a in range(cp.q[i]):
            out[i][:, a] -= np.bincount(pairs.rows, weights=below[:, a], minlength=cp.n_levels[i])
        for a in range(cp.q[j]):
            out[j][:, a] -= np.bincount(pairs.cols, weights=above[:, a], minlength=cp.n_levels[j])
    return out
