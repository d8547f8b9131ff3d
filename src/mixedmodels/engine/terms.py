"""Random-effects terms: one per bar in the formula.

A term holds, for every row, the integer code of its grouping factor's level
and the row of its own model matrix (the columns left of the bar).  Together
with the template of the relative covariance factor λ (a q×q lower-triangular
matrix; ``||`` terms are already split into separate terms) that is all the engine needs:
the term's Z is never formed as a matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class RandomEffectsTerm:
    """A random-effects term ``(lhs | group)``.

    Parameters
    ----------
    group_name : str
        lme4's name of the grouping factor, e.g. ``"Subject"`` or ``"cask:batch"``.
    codes : ndarray of int32, shape (n,)
        Level index of each row, in ``0 .. n_levels - 1``.
    levels : pandas.Index
        Level labels, in the order of the codes.
    z : ndarray of float64, shape (n, q)
        The term's per-row model matrix.
    column_names : list of str
        lme4-style names of the columns of ``z`` (``"(Intercept)"``, ``"Days"``).
    """

    group_name: str
    codes: np.ndarray
    levels: pd.Index
    z: np.ndarray
    column_names: list[str]
    # Indices (row, col) of the free elements of λ, column-major over the lower
    # triangle as lme4 orders θ.
    theta_rows: np.ndarray = field(init=False)
    theta_cols: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        q = self.q
        rows, cols = [], []
        for j in range(q):
            for i in range(j, q):
                rows.append(i)
                cols.append(j)
        self.theta_rows = np.array(rows, dtype=np.intp)
        self.theta_cols = np.array(cols, dtype=np.intp)

    @property
    def q(self) -> int:
        """Number of random effects per level."""
        return self.z.shape[1]

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
