"""Plain model parts: X and Z built straight from numeric columns, without formulaic.

Most models use only an intercept and numeric columns joined by ``+``, as in
``Reaction ~ Days + (Days | Subject)``.  For such a part formulaic's model
matrix is just the columns side by side, yet building it through formulaic
costs about a millisecond per part, more than the rest of a small fit.  This
module recognises those parts and builds their matrices directly; everything
else (factors, interactions, transforms, ``I()``, ``C()``, ``poly()``...) is left
to formulaic.

The rules are deliberately narrow, so that a plain part gives exactly what
formulaic would: the translated text must be an explicit ``1`` or ``0`` followed
by column names joined by ``+``, and every column must be a numpy integer or
float column.  Booleans, pandas' nullable types, categories and text go through
formulaic, which decides how to code them.
"""

from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..formula import ParsedFormula

__all__ = ["PlainPart", "PlainPlan", "is_plain_numeric", "plain_plan"]

# One item of a sum in translated text: a backticked name (formulaic strips the
# backticks), a bare identifier, or the intercept markers 1 and 0.
_ITEM = re.compile(r"\s*(`[^`\\]*`|[A-Za-z_]\w*|[01])\s*", re.ASCII)

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
        self, arrays: Mapping[str, np.ndarray], rows: np.ndarray | None, n: int
    ) -> np.ndarray:
        """The part's model matrix (C order, float64) on the rows selected by ``rows``.

        Parameters
        ----------
        arrays : mapping of str to ndarray
            Every column of the part, on all rows of the data.
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
            values = arrays[name]
            out[:, j] = values if rows is None else values[rows]
        return out


@dataclass(frozen=True)
class PlainPlan:
    """Which parts of a formula can skip formulaic, if their columns are numeric.

    Attributes
    ----------
    response : str or None
        The response's data column when the response is a bare column name.
    fixed : PlainPart or None
        The fixed part, when plain (and the response is a bare column name).
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


def _split_sum(text: str) -> list[str] | None:
    """The items of ``a + `b c` + 1`` (backticks kept), or None for anything else."""
    items: list[str] = []
    pos = 0
    while True:
        match = _ITEM.match(text, pos)
        if match is None:
            return None
        items.append(match.group(1))
        pos = match.end()
        if pos == len(text):
            return items
        if text[pos] != "+":
            return None
        pos += 1


def _column(item: str) -> str | None:
    """The data column an item names, or None for 0, 1 and names formulaic treats specially."""
    if item in ("0", "1"):
        return None
    name = item[1:-1] if item.startswith("`") else item
    if not name or name == _INTERCEPT or keyword.iskeyword(name):
        return None
    return name


def _plain_part(text: str, response: str | None) -> PlainPart | None:
    items = _split_sum(text)
    # The translator always writes the intercept explicitly, first; anything
    # else is unusual enough to leave to formulaic.
    if not items or items[0] not in ("0", "1"):
        return None
    columns: dict[str, None] = {}
    for item in items[1:]:
        name = _column(item)
        if name is None or name == response:
            return None
        columns[name] = None
    return PlainPart(intercept=items[0] == "1", columns=tuple(columns))


@functools.lru_cache(maxsize=256)
def plain_plan(parsed: ParsedFormula) -> PlainPlan:
    """The parts of ``parsed`` that are plain sums of columns (cached per formula)."""
    items = _split_sum(parsed.response)
    response = _column(items[0]) if items is not None and len(items) == 1 else None
    fixed = _plain_part(parsed.fixed, response) if response is not None else None
    terms = tuple(_plain_part(spec.lhs, None) for spec in parsed.random)
    return PlainPlan(response=response, fixed=fixed, terms=terms)


def is_plain_numeric(dtype: object) -> bool:
    """A numpy integer or float dtype (not bool, not a pandas extension type)."""
    return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def column_missing(series: pd.Series, values: np.ndarray | None = None) -> np.ndarray | None:
    """Where a column is missing, or None when it cannot be (integer columns).

    ``values`` is the column as a numpy array when it is already at hand.
    """
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return None
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return np.isnan(series.to_numpy() if values is None else values)
    if isinstance(dtype, pd.CategoricalDtype):
        return series.array.codes < 0  # what isna() tests, without its overhead
    return np.asarray(series.isna(), dtype=bool)
