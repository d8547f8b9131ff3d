"""R's contrasts: the coding of a factor's levels in the columns of a model matrix.

Each class is one of R's ``contr.*`` functions, as a formulaic
:class:`~formulaic.transforms.contrasts.Contrasts` whose column names are the
suffixes R appends to the factor's name: level labels for treatment coding
(``fb``), numbers for sum and Helmert coding (``f1``, ``f2``), ``.L``, ``.Q``,
``.C``, ``^4`` for polynomial coding.  When a factor must span the intercept
(``0 + f``, or ``x:f`` without ``f``) R codes it by indicators whatever its
contrasts, named by level labels; so do these classes.

:func:`contrasts_by_name` reads R's names of them (``"contr.sum"``,
``"sum"``), the values of lme4's ``contrasts=`` argument and of ``C(f, sum)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from formulaic.transforms.contrasts import Contrasts

__all__ = [
    "CONTRAST_NAMES",
    "HelmertContrasts",
    "PolyContrasts",
    "SumContrasts",
    "TreatmentContrasts",
    "contrasts_by_name",
]


class _RContrasts(Contrasts):
    """What every R contrast shares: indicator coding at full rank, names as R's."""

    FACTOR_FORMAT = "{name}[{field}]"
    FACTOR_FORMAT_REDUCED = "{name}[{field}]"

    def _reduced(self, n: int) -> np.ndarray:
        """The coding matrix (n levels × n − 1 columns)."""
        raise NotImplementedError

    def _reduced_names(self, levels: Sequence[Hashable]) -> list[str]:
        raise NotImplementedError

    @Contrasts.override
    def _get_coding_matrix(
        self, levels: Sequence[Hashable], reduced_rank: bool = True, sparse: bool = False
    ) -> Any:
        n = len(levels)
        matrix = self._reduced(n) if reduced_rank else np.eye(n)
        if sparse:
            import scipy.sparse as sp

            return sp.csc_matrix(matrix)
        return matrix

    @Contrasts.override
    def get_coding_column_names(
        self, levels: Sequence[Hashable], reduced_rank: bool = True
    ) -> Sequence[Hashable]:
        if not reduced_rank:
            return [str(level) for level in levels]
        return self._reduced_names(levels)

    @Contrasts.override
    def get_coefficient_row_names(
        self, levels: Sequence[Hashable], reduced_rank: bool = True
    ) -> Sequence[Hashable]:
        if not reduced_rank:
            return [str(level) for level in levels]
        return ["(Intercept)", *self._reduced_names(levels)]


@dataclass
class TreatmentContrasts(_RContrasts):
    """``contr.treatment``: each level against a base level (the first by default).

    Parameters
    ----------
    base : str, int or None
        The base level by label, or by position counted from 1 as R's
        ``base`` argument; ``last=True`` is R's ``contr.SAS``.
    """

    base: Any = None
    last: bool = False

    def base_index(self, levels: Sequence[Hashable]) -> int:
        """Position of the base level among ``levels`` (from 0)."""
        if self.last:
            return len(levels) - 1
        if self.base is None:
            return 0
        labels = [str(level) for level in levels]
        if isinstance(self.base, str):
            if self.base not in labels:
                raise ValueError(
                    f"the base level {self.base!r} is not a level (levels: {', '.join(labels)})"
                )
            return labels.index(self.base)
        position = int(self.base)
        if not 1 <= position <= len(levels):
            raise ValueError(f"base = {position} is not between 1 and {len(levels)} (the levels)")
        return position - 1

    @Contrasts.override
    def _get_coding_matrix(
        self, levels: Sequence[Hashable], reduced_rank: bool = True, sparse: bool = False
    ) -> Any:
        matrix = np.eye(len(levels))
        if reduced_rank:
            matrix = np.delete(matrix, self.base_index(levels), axis=1)
        if sparse:
            import scipy.sparse as sp

            return sp.csc_matrix(matrix)
        return matrix

    @Contrasts.override
    def _reduced_names(self, levels: Sequence[Hashable]) -> list[str]:
        base = self.base_index(levels)
        return [str(level) for i, level in enumerate(levels) if i != base]


class SumContrasts(_RContrasts):
    """``contr.sum``: deviations from the mean of the levels; columns named 1, 2, ...

    The last level is coded −1 in every column.
    """

    @Contrasts.override
    def _reduced(self, n: int) -> np.ndarray:
        return np.vstack([np.eye(n - 1), -np.ones((1, n - 1))])

    @Contrasts.override
    def _reduced_names(self, levels: Sequence[Hashable]) -> list[str]:
        return [str(j) for j in range(1, len(levels))]


class HelmertContrasts(_RContrasts):
    """``contr.helmert``: each level against the mean of those before it; columns 1, 2, ..."""

    @Contrasts.override
    def _reduced(self, n: int) -> np.ndarray:
        matrix = np.zeros((n, n - 1))
        for j in range(n - 1):
            matrix[: j + 1, j] = -1.0
            matrix[j + 1, j] = j + 1.0
        return matrix

    @Contrasts.override
    def _reduced_names(self, levels: Sequence[Hashable]) -> list[str]:
        return [str(j) for j in range(1, len(levels))]


class PolyContrasts(_RContrasts):
    """``contr.poly``: orthonormal polynomials in the level positions 1, 2, ..., n.

    Column j is the degree-j polynomial: ``.L``, ``.Q``, ``.C``, then ``^4``,
    ``^5``, ... as R names them; R's default for ordered factors.
    """

    @Contrasts.override
    def _reduced(self, n: int) -> np.ndarray:
        scores = np.arange(1.0, n + 1.0)
        centred = scores - scores.mean()
        vandermonde = centred[:, None] ** np.arange(n)[None, :]
        q, r = np.linalg.qr(vandermonde)
        # Q times the diagonal of R does not depend on the signs a QR picks.
        raw = q * np.diagonal(r)[None, :]
        raw /= np.sqrt((raw**2).sum(axis=0))[None, :]
        return raw[:, 1:]

    @Contrasts.override
    def _reduced_names(self, levels: Sequence[Hashable]) -> list[str]:
        named = [".L", ".Q", ".C"]
        return [named[j - 1] if j <= 3 else f"^{j}" for j in range(1, len(levels))]


#: R's names of the contrasts (with or without ``contr.``), case as R's.
CONTRAST_NAMES = ("treatment", "SAS", "sum", "helmert", "poly")


def contrasts_by_name(name: str, base: Any = None) -> Contrasts:
    """The contrasts R calls ``name`` (``"contr.sum"`` or ``"sum"``).

    Raises
    ------
    ValueError
        For any other name, listing the names accepted.
    """
    key = name.removeprefix("contr.")
    if base is not None and key != "treatment":
        raise ValueError(f"a base level is only meaningful for contr.treatment, not {name}")
    if key == "treatment":
        return TreatmentContrasts(base=base)
    if key == "SAS":
        return TreatmentContrasts(last=True)
    if key == "sum":
        return SumContrasts()
    if key == "helmert":
        return HelmertContrasts()
    if key == "poly":
        return PolyContrasts()
    raise ValueError(
        f"unknown contrasts {name!r}; use one of " + ", ".join(f"contr.{n}" for n in CONTRAST_NAMES)
    )
