"""Kernels for stacks of tiny matrices (one q×q block per level, q ≈ 1–3).

numpy's batched ``matmul``, ``cholesky`` and ``inv`` pay a per-matrix cost that
dominates when the matrices are 1×1 or 2×2 and there are thousands of them.
Writing the few scalar formulas out over whole arrays of levels is an order of
magnitude faster; larger blocks fall back to numpy.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Beyond this many scalar products per block, numpy's matmul is the better tool.
_EXPLICIT_LIMIT = 27


@functools.lru_cache(maxsize=64)
def lower_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.tril_indices(n)`` (row-major), read-only and made once per n: numpy's
    builds an n×n mask every call (20 µs, a tenth of a small model's setup)."""
    rows = np.repeat(np.arange(n), np.arange(1, n + 1))
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(np.arange(n)), np.arange(1, n + 1))
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def congruence(lam: np.ndarray, blocks: np.ndarray, right: np.ndarray | None = None) -> np.ndarray:
    """λᵀ Bₗ μ for every block Bₗ of ``blocks`` (n, a, b), with μ = ``right`` (default λ).

    One matrix product: vec(λᵀBμ) = (λ ⊗ μ)ᵀ vec(B) for row-major vec.
    """
    right = lam if right is None else right
    n, a, b = blocks.shape
    if lam.shape == (1, 1) and right.shape == (1, 1):
        # Scalar terms (most GLMMs'): np.kron's own cost is tens of µs.
        return blocks * (lam[0, 0] * right[0, 0])
    kron = np.kron(lam, right)  # (a·b, a'·b')
    out = blocks.reshape(n, a * b) @ kron
    return out.reshape(n, lam.shape[1], right.shape[1])


def batched_matmul(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` for stacks (n, r, k) @ (n, k, c)."""
    n, r, k = left.shape
    c = right.shape[2]
    products = r * k * c
    if products == 1:
        return left * right
    # Measured (µs): numpy's matmul ≈ 0.6 + 0.022 n; the explicit formulas ≈
    # products × (0.35 + 0.0028 n), whose fixed cost loses on few levels.
    if products > _EXPLICIT_LIMIT or products * (0.35 + 0.0028 * n) > 0.6 + 0.022 * n:
        return left @ right
    out = np.empty((n, r, c))
    for i in range(r):
        for j in range(c):
            acc = left[:, i, 0] * right[:, 0, j]
            for kk in range(1, k):
                acc += left[:, i, kk] * right[:, kk, j]
            out[:, i, j] = acc
    return out


def batched_cholesky(s: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of symmetric positive-definite matrices.

    Raises ``numpy.linalg.LinAlgError`` when one is not positive definite.
    """
    q = s.shape[1]
    if q == 1:
        if np.any(s <= 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        return np.sqrt(s)
    if q == 2:
        a2 = s[:, 0, 0]
        if np.any(a2 <= 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        a = np.sqrt(a2)
        b = s[:, 1, 0] / a
        c2 = s[:, 1, 1] - b * b
        if np.any(c2 <= 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        out = np.zeros_like(s)
        out[:, 0, 0] = a
        out[:, 1, 0] = b
        out[:, 1, 1] = np.sqrt(c2)
        return out
    return np.linalg.cholesky(s)


def batched_lower_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverses of a stack of non-singular lower-triangular matrices."""
    q = lower.shape[1]
    if q == 1:
        return 1.0 / lower
    if q == 2:
        a, b, c = lower[:, 0, 0], lower[:, 1, 0], lower[:, 1, 1]
        out = np.zeros_like(lower)
        out[:, 0, 0] = 1.0 / a
        out[:, 1, 1] = 1.0 / c
        out[:, 1, 0] = -b / (a * c)
        return out
    return np.linalg.inv(lower)


def batched_lower_solve_transposed(lower: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve Lₗᵀ xₗ = rₗ for every level: ``lower`` (n, q, q), ``rhs`` (n, q)."""
    q = lower.shape[1]
    if q == 1:
        return rhs / lower[:, 0, :]
    if q == 2:
        out = np.empty_like(rhs)
        np.divide(rhs[:, 1], lower[:, 1, 1], out=out[:, 1])
        np.subtract(rhs[:, 0], lower[:, 1, 0] * out[:, 1], out=out[:, 0])
        out[:, 0] /= lower[:, 0, 0]
        return out
    return np.linalg.solve(lower.transpose(0, 2, 1), rhs[:, :, None])[:, :, 0]


def batched_determinant_inverse(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(determinants, inverses) of a stack of square matrices (n, q, q); an inverse is
    meaningless where its determinant is 0 (numpy's raises for a singular block:
    callers select the regular ones first)."""
    q = blocks.shape[1]
    if q == 1:
        det = blocks[:, 0, 0]
        with np.errstate(divide="ignore"):
            return det, 1.0 / blocks
    if q == 2:
        a, b, c, d = blocks[:, 0, 0], blocks[:, 0, 1], blocks[:, 1, 0], blocks[:, 1, 1]
        det = a * d - b * c
        out = np.empty_like(blocks)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, 0, 0] = d / det
            out[:, 0, 1] = -b / det
            out[:, 1, 0] = -c / det
            out[:, 1, 1] = a / det
        return det, out
    det = np.linalg.det(blocks)
    regular = det != 0
    out = np.full_like(blocks, np.nan)
    out[regular] = np.linalg.inv(blocks[regular])
    return det, out


def all_finite(values: np.ndarray) -> bool:
    """Whether every value of a small array is finite (as Python floats: numpy's
    ``isfinite(...).all()`` costs a microsecond of wrappers on a few values)."""
    return all(map(math.isfinite, values.reshape(-1).tolist()))


def cholesky_in_place(t, n):  # pragma: no cover - called from numba's kernels
    """The leading n×n lower triangle of ``t`` ← its Cholesky factor (the upper
    triangle untouched); False if not positive definite.  One small matrix as a
    loop, for the compiled kernels to call (small_kernels' T, the vector start's λ).
    """
    for j in range(n):
        s = t[j, j]
        for k in range(j):
            s -= t[j, k] * t[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        t[j, j] = d
        for i in range(j + 1, n):
            s = t[i, j]
            for k in range(j):
                s -= t[i, k] * t[j, k]
            t[i, j] = s / d
    return True
