"""What PIRLS and the Laplace gradient ask of a GLMM's rows, and the values they pass.

A :class:`Point` of the linear predictor is where the rows are asked for sums
(:class:`WorkingRows`, the protocol); :class:`PassResult` is what one
evaluation at a point found, and :class:`SelectedInverse` the part of M⁻¹
the gradient's row sums read.  The rows in memory are
:class:`~mixedmodels.engine.working_rows.RowsInMemory`; a Dask front end's
partitions each hold one of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..families import Family
from .weighted import WeightedCrossProducts

#: What the blocks are filled with at a point: the working weights and response
#: (Fisher scoring), the observed information and the Newton right-hand side, or
#: the observed information alone (for the gradient's solve).
FILLS = ("fisher", "newton", "observed")


@dataclass(frozen=True, eq=False)
class Point:
    """A linear predictor η = o + Xβ + Σₜ Zₜbₜ, given by its parameters.

    Attributes
    ----------
    beta : ndarray or None
        β of Xβ (all columns of X); None for the family's starting means.
    modes : ndarray or None
        b, the terms' modes (levels, q) flattened and concatenated; None for
        the starting means.
    """

    beta: np.ndarray | None
    modes: np.ndarray | None

    @classmethod
    def start(cls) -> Point:
        """η = g(the family's starting means), lme4's first PIRLS iterate."""
        return cls(None, None)

    @property
    def is_start(self) -> bool:
        return self.beta is None

    def same_as(self, other: Point) -> bool:
        """Whether ``other`` is the same linear predictor (equal β and modes)."""
        if self.is_start or other.is_start:
            return self.is_start and other.is_start
        return bool(
            np.array_equal(self.beta, other.beta) and np.array_equal(self.modes, other.modes)
        )


@dataclass(frozen=True)
class PassResult:
    """What one evaluation at a point found.

    Attributes
    ----------
    deviance : float
        Σ aᵢdᵢ at the point: inf when some mean is outside the family's range,
        nan when some working weight or response is not finite.
    eta_change : float
        max |η − η_previous| over the rows (0 without a previous point).
    """

    deviance: float
    eta_change: float


@dataclass(frozen=True, eq=False)
class SelectedInverse:
    """M⁻¹ where the Laplace gradient's row sums need it (from the PIRLS factor).

    Attributes
    ----------
    s00 : ndarray, shape (levels₀, q₀, q₀)
        The first term's diagonal blocks.
    s0t : ndarray
        The entries of the first term's column (the factor's level layout).
    s_tt : ndarray
        The trailing random-effects block, dense.
    t_offset : ndarray of int
        First row of each term in the trailing block.
    dest : list of ndarray
        Per later term, where its level pairs' entries land in the first
        term's column (the factor's ``col0.dest``).
    """

    s00: np.ndarray
    s0t: np.ndarray
    s_tt: np.ndarray
    t_offset: np.ndarray
    dest: list[np.ndarray]


class WorkingRows(Protocol):
    """What PIRLS and the gradient ask of the rows (see the module docstring).

    Attributes
    ----------
    fixed_inside : bool
        Whether X is among the blocks (β estimated with the modes, nAGQ = 0).
    n_fixed : int
        Columns of X.
    blocks : WeightedCrossProducts
        The weighted blocks the factor reads, refilled by :meth:`evaluate`.
    family : Family
        Response distribution and link (settable: glmer_nb changes θ).
    has_newton : bool
        Whether the observed information is available (compiled kernels).
    """

    fixed_inside: bool
    n_fixed: int
    blocks: WeightedCrossProducts
    family: Family
    has_newton: bool

    def evaluate(
        self, at: Point, previous: Point | None = None, fill: str | None = None
    ) -> PassResult:
        """The deviance at ``at``, η's change from ``previous``; the blocks refilled
        there with one of :data:`FILLS` (when the deviance is finite)."""

    def aic(self, at: Point, deviance: float) -> float:
        """The family's −2 Σ log p(y | μ) at ``at`` (``deviance`` its deviance)."""

    def pearson_chi2(self, at: Point) -> float:
        """Σ aᵢ(yᵢ − μᵢ)²/V(μᵢ) at ``at``."""

    def gradient_rhs(
        self, at: Point, lams: np.ndarray, inverse: SelectedInverse, deviance: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The gradient's first row sums: traces (terms, q, q) and ΛᵀZᵀc (with Xᵀc
        appended when X is among the blocks)."""

    def gradient_sums(
        self,
        at: Point,
        lams: np.ndarray,
        inverse: SelectedInverse,
        u: np.ndarray,
        solved: np.ndarray,
        deviance: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The gradient's last row sums given H⁻¹ΛᵀZᵀc: (first, second, ∂/∂β or None)."""

    def level_deviances(self, beta: np.ndarray, lam: np.ndarray, shifted: np.ndarray) -> np.ndarray:
        """One scalar term: per node k and level ℓ, Σ deviance residuals of ℓ's rows at
        η = o + Xβ + z·λ·shifted[k, ℓ] (adaptive quadrature)."""

    def means(self, at: Point) -> tuple[np.ndarray, np.ndarray] | None:
        """(η, μ) of every row at ``at``, or None when the rows are not in memory."""
