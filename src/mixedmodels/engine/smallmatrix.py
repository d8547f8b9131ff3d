"""Kernels for stacks of tiny matrices (one q×q block per level, q ≈ 1–3).

numpy's batched ``matmul``, ``cholesky`` and ``inv`` pay a per-matrix cost that
dominates when the matrices are 1×1 or 2×2 and there are thousands of them.
Writing the few scalar formulas out over whole arrays of levels is an order of
magnitude faster; larger blocks fall back to numpy.
"""

from __future__ import annotations

import numpy as np

# Beyond this many scalar products per block, numpy's matmul is the better tool.
_EXPLICIT_LIMIT = 27


def congruence(lam: np.ndarray, blocks: np.ndarray, right: np.ndarray | None = None) -> np.ndarray:
    """λᵀ Bₗ μ for every block Bₗ of ``blocks`` (n, a, b), with μ = ``right`` (default λ).

    One matrix product: vec(λᵀBμ) = (λ ⊗ μ)ᵀ vec(B) for row-major vec.
    """
    right = lam if right is None else right
    n, a, b = blocks.shape
    kron = np.kron(lam, right)  # (a·b, a'·b')
    out = blocks.reshape(n, a * b) @ kron
    return out.reshape(n, lam.shape[1], right.shape[1])


def batched_matmul(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right`` for stacks (n, r, k) @ (n, k, c)."""
    n, r, k = left.shape
    c = right.shape[2]
    if r * k * c > _EXPLICIT_LIMIT:
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
