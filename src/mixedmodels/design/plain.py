"""Plain model parts: X and Z built straight from numeric columns, without formulaic.

Most models use only an intercept and numeric columns joined by ``+``, as in
``Reaction ~ Days + (Days | Subject)``.  For such a part formulaic's model
matrix is just the columns side by side, yet building it through formulaic
costs about a millisecond per part, more than the rest of a small fit.  This
module recognises those parts (from the parsed formula's terms) and builds
their matrices directly; everything else (factors, interactions, transforms,
``I()``, ``C()``, ``poly()``...) is left to formulaic.

The rules are deliberately narrow, so that a plain part gives exactly what
formulaic would: the part must be an intercept (or none) and columns by name
joined by ``+``, and every column must be a numpy integer or float column.
Booleans, pandas' nullable types, categories and text go through formulaic,
which decides how to code them.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..formula import ModelPart, ParsedFormula

__all__ = ["PlainPart", "PlainPlan", "plain_plan"]

# formulaic's name for the intercept column; a data column of that name would
# collide with it, so it is left to formulaic.
_INTERCEPT = "Intercept"


@dataclass(frozen=True)
class PlainPart:
    """A model part made of an optional intercept and numeric columns.

    Attributes
    ----------
    intercept : bool
        Whether the part has an intercept column (first, as formulaic puts it).
    columns : tuple of str
        Data columns in formula order, each once (formulaic drops repeats).
    """

    intercept: bool
    columns: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """formulaic's names of the part's columns (``Intercept``, then the columns)."""
        return [_INTERCEPT, *self.columns] if self.intercept else list(self.columns)

    def matrix(
        self, values: Callable[[str], np.ndarray], rows: np.ndarray | None, n: int
    ) -> np.ndarray:
        """The part's model matrix (C order, float64) on the rows selected by ``rows``.

        Parameters
        ----------
        values : callable
            Column name → the column's values on all rows of the data.
        rows : ndarray of bool, optional
            Rows to keep; all when None.
        n : int
            The number of rows selected.
        """
        out = np.empty((n, len(self.names)), dtype=np.float64)
        start = 0
        if self.intercept:
            out[:, 0] = 1.0
            start = 1
        for j, name in enumerate(self.columns, start=start):
            column = values(name)
            out[:, j] = column if rows is None else column[rows]
        return out


@dataclass(frozen=True)
class PlainPlan:
    """Which parts of a formula skip formulaic.

    Attributes
    ----------
    response : str or None
        The response's data column, when the fixed part is plain.
    fixed : PlainPart or None
        The fixed part, when plain (the response then is a numeric column too).
    terms : tuple of (PlainPart or None)
        Each random term's left-hand side, in formula order, when plain.
    """

    response: str | None
    fixed: PlainPart | None
    terms: tuple[PlainPart | None, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column a plain part uses (the response included), each once."""
        names: dict[str, None] = {}
        if self.fixed is not None and self.response is not None:
            names[self.response] = None
            names.update(dict.fromkeys(self.fixed.columns))
        for part in self.terms:
            if part is not None:
                names.update(dict.fromkeys(part.columns))
        return tuple(names)

    @property
    def everything(self) -> bool:
        """Whether every part is plain (formulaic is not needed at all)."""
        return self.fixed is not None and None not in self.terms


def plain_plan(parsed: ParsedFormula, columns: Mapping[str, pd.Series]) -> PlainPlan:
    """The parts of ``parsed`` that are plain, given the columns the formula uses."""
    numeric: dict[str, bool] = {}

    def plain_column(name: str) -> bool:
        # Names formulaic treats specially (its intercept, Python keywords) are
        # left to it; only numpy integer and float columns (not bool, not a
        # pandas extension type) are plain.
        if name not in numeric:
            dtype = columns[name].dtype
            numeric[name] = (
                name != _INTERCEPT
                and not keyword.iskeyword(name)
                and isinstance(dtype, np.dtype)
                and dtype.kind in "iuf"
            )
        return numeric[name]

    def plain_part(part: ModelPart, response: str | None = None) -> PlainPart | None:
        names = part.plain_columns
        if names is None or response in names or not all(map(plain_column, names)):
            return None
        return PlainPart(intercept=part.intercept, columns=names)

    response = parsed.response_column
    fixed = None
    if response is not None and plain_column(response):
        fixed = plain_part(parsed.fixed_part, response)
    terms = tuple(plain_part(spec.part) for spec in parsed.random)
    return PlainPlan(response=response if fixed is not None else None, fixed=fixed, terms=terms)
