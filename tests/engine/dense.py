"""Dense references for the engine's tests: explicit Z, Λ and A built row by row.

The engine never forms Z: it works from per-level blocks.  These helpers build
the matrices of the textbook formulas on small random problems, so that the
blocks, the factor and the criterion can be checked against plain numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg

from mixedmodels.engine.blocks import CrossProducts, cross_products
from mixedmodels.engine.terms import TermStructure


@dataclass
class RandomProblem:
    """Rows of a small mixed model: per term its level codes and Z columns, then X, y, w."""

    codes: list[np.ndarray]
    n_levels: list[int]
    z: list[np.ndarray]
    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.y)

    def cross_products(self, rows: slice = slice(None), **kwargs) -> CrossProducts:
        """The engine's blocks of these rows (all levels counted, so chunks add up)."""
        w = None if self.weights is None else self.weights[rows]
        return cross_products(
            [c[rows] for c in self.codes],
            [zi[rows] for zi in self.z],
            self.n_levels,
            self.x[rows],
            self.y[rows],
            w,
            **kwargs,
        )

    def terms(self) -> list[TermStructure]:
        """Term structures with made-up names (g0, g1, …; columns c0, c1, …)."""
        return [
            TermStructure(f"g{i}", pd.Index(range(m)), [f"c{a}" for a in range(zi.shape[1])])
            for i, (m, zi) in enumerate(zip(self.n_levels, self.z, strict=True))
        ]

    def dense_z(self) -> np.ndarray:
        """[Z₁ … Z_k]: one column per (level, column of the term), level-major as the engine."""
        blocks = []
        for c, m, zi in zip(self.codes, self.n_levels, self.z, strict=True):
            q = zi.shape[1]
            zd = np.zeros((self.n, m * q))
            for a in range(q):
                zd[np.arange(self.n), c * q + a] = zi[:, a]
            blocks.append(zd)
        return np.hstack(blocks)

    def dense_a(self) -> np.ndarray:
        """A = [Z X y], each row scaled by √w."""
        a = np.hstack([self.dense_z(), self.x, self.y[:, None]])
        return a if self.weights is None else a * np.sqrt(self.weights)[:, None]

    def term_columns(self) -> list[slice]:
        """Where each term's columns sit in Z."""
        sizes = [m * zi.shape[1] for m, zi in zip(self.n_levels, self.z, strict=True)]
        bounds = np.cumsum([0, *sizes])
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def random_problem(
    seed: int,
    n: int,
    levels: list[int],
    qs: list[int],
    p: int = 3,
    weighted: bool = False,
) -> RandomProblem:
    """Crossed random codes, Z with an intercept column then normal columns, X likewise."""
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, m, n).astype(np.int32) for m in levels]
    z = [np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(q - 1)]) for q in qs]
    x = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(p - 1)])
    # A response with real group effects, so that θ near 1 is a sensible point.
    y = x @ rng.normal(size=p) + rng.normal(size=n)
    for c, m in zip(codes, levels, strict=True):
        y += rng.normal(size=m)[c]
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    return RandomProblem(codes, list(levels), z, x, y, weights)


def random_lambdas(seed: int, qs: list[int]) -> list[np.ndarray]:
    """Lower-triangular λ per term with positive diagonals."""
    rng = np.random.default_rng(seed)
    out = []
    for q in qs:
        lam = np.tril(rng.normal(scale=0.7, size=(q, q)))
        lam[np.diag_indices(q)] = np.abs(lam[np.diag_indices(q)]) + 0.2
        out.append(lam)
    return out


def dense_lambda(n_levels: list[int], lambdas: list[np.ndarray]) -> np.ndarray:
    """Λ: block-diagonal, each term's λ repeated once per level."""
    return scipy.linalg.block_diag(
        *[np.kron(np.eye(m), lam) for m, lam in zip(n_levels, lambdas, strict=True)]
    )


def theta_of(terms: list[TermStructure], lambdas: list[np.ndarray]) -> np.ndarray:
    """θ in lme4's order for these λ."""
    return np.concatenate(
        [lam[t.theta_rows, t.theta_cols] for t, lam in zip(terms, lambdas, strict=True)]
    )
