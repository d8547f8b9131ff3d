"""Random-effects terms: one per bar in the formula.

A term is described by its grouping factor's levels, the names of its columns
(left of the bar) and the template of its relative covariance factor λ (a q×q
lower-triangular matrix; ``||`` terms are already split into separate terms):
:class:`TermStructure`, all that the θ loop and the results need.  A term
built from rows in memory (:class:`RandomEffectsTerm`) also holds, for every
row, the integer code of its level and the row of its model matrix, from which
the cross-products are computed: the term's Z is never formed as a matrix.
A front end that computes the cross-products elsewhere (Dask) keeps only the
structure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .smallmatrix import lower_indices


@functools.lru_cache(maxsize=32)
def _theta_positions(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) in λ of each θ, lme4's order: the lower triangle column-major
    (read-only, made once per q)."""
    rows, cols = lower_indices(q)
    order = np.lexsort((rows, cols))
    out = rows[order].astype(np.intp), cols[order].astype(np.intp)
    for a in out:
        a.flags.writeable = False
    return out


@dataclass(eq=False)
class TermStructure:
    """What a random-effects term ``(lhs | group)`` is, without its rows.

    Parameters
    ----------
    group_name : str
        lme4's name of the grouping factor, e.g. ``"Subject"`` or ``"cask:batch"``.
    levels : pandas.Index
        Level labels, in the order of the level codes.
    column_names : list of str
        lme4-style names of the term's columns (``"(Intercept)"``, ``"Days"``).
    """

    group_name: str
    levels: pd.Index
    column_names: list[str]
    # Indices (row, col) of the free elements of λ, column-major over the lower
    # triangle as lme4 orders θ.
    theta_rows: np.ndarray = field(init=False, repr=False)
    theta_cols: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.theta_rows, self.theta_cols = _theta_positions(len(self.column_names))

    @property
    def q(self) -> int:
        """Number of random effects per level."""
        return len(self.column_names)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_columns(self) -> int:
        """Columns of this term's Z: ``q * n_levels``."""
        return self.q * self.n_levels

    @property
    def n_theta(self) -> int:
        return len(self.theta_rows)

    def theta_lower_bounds(self) -> np.ndarray:
        """Diagonal elements of λ are non-negative; off-diagonal ones are free."""
        return np.where(self.theta_rows == self.theta_cols, 0.0, -np.inf)

    def theta_start(self) -> np.ndarray:
        """lme4's starting value: λ = I."""
        return np.where(self.theta_rows == self.theta_cols, 1.0, 0.0)

    def lambda_matrix(self, theta: np.ndarray) -> np.ndarray:
        """The q×q lower-triangular relative covariance factor λ(θ)."""
        lam = np.zeros((self.q, self.q))
        lam[self.theta_rows, self.theta_cols] = theta
        return lam

    def theta_names(self) -> list[str]:
        """lme4's ``theta_names``: ``group.col`` on the diagonal, ``group.row.col`` below."""
        names = []
        for i, j in zip(self.theta_rows, self.theta_cols, strict=True):
            if i == j:
                names.append(f"{self.group_name}.{self.column_names[i]}")
            else:
                names.append(f"{self.group_name}.{self.column_names[i]}.{self.column_names[j]}")
        return names

    def structure(self) -> TermStructure:
        """The term without its rows."""
        return TermStructure(self.group_name, self.levels, list(self.column_names))


@dataclass(eq=False)
class RandomEffectsTerm(TermStructure):
    """A random-effects term with its rows in memory.

    Parameters
    ----------
    group_name, levels, column_names
        See :class:`TermStructure`.
    codes : ndarray of int32, shape (n,)
        Level index of each row, in ``0 .. n_levels - 1``.
    z : ndarray of float64, shape (n, q)
        The term's per-row model matrix.
    """

    codes: np.ndarray = field(repr=False)
    z: np.ndarray = field(repr=False)
