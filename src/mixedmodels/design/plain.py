"""Plain model parts: X and Z built straight from the data's columns, without formulaic.

Most models use only an intercept and columns joined by ``+``, as in
``Reaction ~ Days + (Days | Subject)`` or ``attain ~ verbal + sex + (1 | school)``.
For such a part formulaic's model matrix is the numeric columns as they are
and each factor's treatment-contrast indicators, yet building it through
formulaic costs a millisecond or several per part, more than the rest of a
small fit.  This module recognises those parts (from the parsed formula's
terms) and builds their matrices directly; everything else (interactions,
transforms, ``I()``, ``C()``, ``poly()``, ordered factors and columns given
contrasts, which the formula codes explicitly...) is left to formulaic.

The rules are deliberately narrow, so that a plain part gives exactly what
formulaic gives:

- the part is an intercept (or none) and columns by name joined by ``+``
  (formulaic drops repeated terms; so does :attr:`.ModelPart.plain_columns`),
  a factor written as its bare name (not coded by lme4's ``contrasts=``);
- a numeric column is a numpy integer or float column; a factor is a text
  column (object or pandas' ``str``, which the data's reading leaves holding
  text only), an unordered pandas categorical whose categories are text or
  integers, or a numpy boolean column, R's logical (the formula codes it
  ``logical(flag)``: levels FALSE and TRUE, both kept).  pandas' nullable
  types and anything else go through formulaic;
- a factor's levels are those the rows used take (R's ``drop.unused.levels``,
  as :func:`.evaluation.evaluation_frame` gives formulaic): sorted text, or the
  categories' own order;
- with an intercept every factor drops its first level (columns named
  ``f[T.level]``); without one the first factor of the part keeps every level
  (``f[level]``) and later factors drop their first, formulaic's full-rank
  rule for main effects.

A design whose parts are plain gets formulaic's model specs (for new data)
only when asked, built from a few rows: :meth:`PlainRows.sample` gives rows
holding every level of each factor, so the specs code factors as the fit did.
"""

from __future__ import annotations

import functools
import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..formula import ModelPart, ParsedFormula
from .levels import Levels, TakenCategories, as_list, factor_codes

__all__ = ["FactorCoding", "PlainPart", "PlainPlan", "PlainRows", "PlainSample", "plain_plan"]

# formulaic's name for the intercept column; a data column of that name would
# collide with it, so it is left to formulaic.
_INTERCEPT = "Intercept"
# The rows a model spec is built from, besides those giving a factor's levels.
_SAMPLE_ROWS = 3
# R's levels of a logical column, both kept (as formula.factors.logical codes it).
_LOGICAL_LEVELS = pd.Index(["FALSE", "TRUE"], dtype=object)


@dataclass(frozen=True)
class FactorCoding:
    """A factor column on the rows used, as formulaic codes it.

    Attributes
    ----------
    codes : ndarray of int64
        Each row's level, 0 to ``len(levels) - 1``.
    levels : Index
        The levels the rows used take, in formulaic's order, as the data
        hold them (text, or the categories' values); ``FALSE`` and ``TRUE``
        for a logical column, both kept whichever the rows take (R's coding).
    kind : {"text", "categorical", "logical"}
        What the column is.
    """

    codes: np.ndarray
    levels: pd.Index
    kind: str


class PlainRows:
    """The columns of the plain parts on the rows used, each read (and coded) once.

    Parameters
    ----------
    columns : mapping of str to Series
        The columns as the model reads them, on every row of the data.
    values : callable
        Column name → the column's values on every row (a numpy array).
    keep : ndarray of bool
        The rows used.
    selection : ndarray of bool or None
        ``keep``, or None when every row is used.
    n : int
        The number of rows used.
    dtypes : mapping of str to dtype, optional
        The columns' dtypes, as far as the caller has read them.
    taken : mapping of str to TakenCategories, optional
        Categorical columns' codes and categories taken on every row
        (:func:`~.levels.taken_categories`), as far as the caller has them.
    """

    def __init__(
        self,
        columns: Mapping[str, pd.Series],
        values: Callable[[str], np.ndarray],
        keep: np.ndarray,
        selection: np.ndarray | None,
        n: int,
        dtypes: Mapping[str, Any] | None = None,
        taken: Mapping[str, TakenCategories] | None = None,
    ) -> None:
        self.columns = columns
        self.values = values
        self._dtypes = dict(dtypes or {})
        # On every row: of use only while every row is.
        self._taken = (taken or {}) if selection is None else {}
        self.keep = keep
        self.selection = selection
        self.n = n
        self._factors: dict[str, FactorCoding] = {}
        self._levels: dict[str, tuple[np.ndarray, Levels]] = {}

    def dtype(self, name: str) -> Any:
        """A column's dtype (read once)."""
        dtype = self._dtypes.get(name)
        if dtype is None:
            dtype = self._dtypes[name] = self.columns[name].dtype
        return dtype

    def numbers(self, name: str) -> np.ndarray:
        """A numeric column on the rows used."""
        column = self.values(name)
        return column if self.selection is None else column[self.selection]

    def factor(self, name: str) -> FactorCoding:
        """A factor column's levels and codes on the rows used (computed once)."""
        coding = self._factors.get(name)
        if coding is None:
            if _logical(self.dtype(name)):
                codes = self.numbers(name).astype(np.int64)  # FALSE 0, TRUE 1
                coding = FactorCoding(codes, _LOGICAL_LEVELS, "logical")
            else:
                # A plain part's text or categorical column: its levels as a factor's
                # (text sorted, the categories that occur in their order) are those
                # formulaic codes, each known by its value.
                codes, levels = self.levels(name)
                kind = "categorical" if levels.categorical else "text"
                coding = FactorCoding(codes, levels.values, kind)
            self._factors[name] = coding
        return coding

    def levels(self, name: str) -> tuple[np.ndarray, Levels]:
        """A column's level codes and :class:`~.levels.Levels` as a factor on the rows used
        (:func:`~.levels.factor_codes`, computed once: the matrices and the design's
        record of the levels read the same)."""
        found = self._levels.get(name)
        if found is None:
            column = self.columns[name]
            used = column if self.selection is None else column[self.selection]
            found = self._levels[name] = factor_codes(used, self.dtype(name), self._taken.get(name))
        return found

    def sample(self, names: tuple[str, ...]) -> PlainSample:
        """A few rows used of ``names``, every level of each factor among them.

        The first rows used of the numeric columns (repeated as needed) and
        each factor's levels in turn, the levels of a categorical kept as its
        (only) categories: formulaic builds the same model spec from these as
        from the rows used.  Only what they are made of is taken here; the
        columns themselves are built when a spec is asked for
        (:meth:`PlainSample.columns`), which most fits never do.
        """
        first: slice | np.ndarray
        if self.selection is None:  # every row used (flatnonzero's answer, without its pass)
            first = slice(min(self.n, _SAMPLE_ROWS))
            n_rows = first.stop
        else:
            first = np.flatnonzero(self.keep)[:_SAMPLE_ROWS]
            n_rows = len(first)
        parts: dict[str, np.ndarray | tuple[pd.Index, str]] = {}
        for name in names:
            # A factor of a plain part was coded with its matrix: its coding tells
            # without reading the column's dtype again.
            coding = self._factors.get(name)
            if coding is None and _numeric(self.dtype(name)):
                parts[name] = self.values(name)[first].copy()  # not a view of the column
            else:
                if coding is None:
                    coding = self.factor(name)
                parts[name] = (coding.levels, coding.kind)
                n_rows = max(n_rows, len(coding.levels))
        return PlainSample(parts, n_rows)


@dataclass(frozen=True)
class PlainSample:
    """The makings of :meth:`PlainRows.sample`'s rows.

    Attributes
    ----------
    parts : dict of str to (ndarray or (Index, str))
        Per column, the first rows used of a numeric column, or a factor's
        levels and kind (as :class:`FactorCoding`'s).
    n_rows : int
        The number of rows of the sample.
    """

    parts: Mapping[str, np.ndarray | tuple[pd.Index, str]]
    n_rows: int

    def columns(self) -> dict[str, Any]:
        """The sample's columns: numbers repeated to ``n_rows``, each factor's levels in turn."""
        sample: dict[str, Any] = {}
        for name, part in self.parts.items():
            if isinstance(part, np.ndarray):
                sample[name] = np.resize(part, self.n_rows)
                continue
            levels, kind = part
            codes = np.resize(np.arange(len(levels)), self.n_rows)
            if kind == "categorical":
                sample[name] = pd.Categorical.from_codes(codes, categories=levels)
            elif kind == "logical":
                sample[name] = codes.astype(bool)
            else:
                sample[name] = np.asarray(levels, dtype=object)[codes]
        return sample


def _numeric(dtype: Any) -> bool:
    """A column's dtype a numpy number's."""
    return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def _logical(dtype: Any) -> bool:
    """A column's dtype numpy's boolean (the data's reading makes nullable booleans numpy's)."""
    return isinstance(dtype, np.dtype) and dtype.kind == "b"


def _factor(column: pd.Series, dtype: Any) -> bool:
    """Whether formulaic codes ``column`` (of ``dtype``) as a factor in a way this module
    matches."""
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        return not dtype.ordered and (
            categories.inferred_type == "string"
            or (isinstance(categories.dtype, np.dtype) and categories.dtype.kind in "iu")
        )
    if isinstance(dtype, pd.StringDtype):
        return dtype.na_value is np.nan  # pandas' "str", which formulaic takes for text
    # The data's reading leaves an object column holding text only (or nothing).
    return (
        isinstance(dtype, np.dtype)
        and dtype.kind == "O"
        and pd.api.types.infer_dtype(column, skipna=True) == "string"
    )


@dataclass(frozen=True)
class PlainPart:
    """A model part made of an optional intercept, numeric columns and factors.

    Attributes
    ----------
    intercept : bool
        Whether the part has an intercept column (first, as formulaic puts it).
    columns : tuple of str
        Data columns in formula order, each once (formulaic drops repeats).
    factors : dict of str to str
        Those of ``columns`` that are factors, each with formulaic's name of
        the factor: the column's name, or ``logical(flag)`` for a logical
        column (the formula codes it so).
    """

    intercept: bool
    columns: tuple[str, ...]
    factors: Mapping[str, str] = field(default_factory=dict)

    @functools.cached_property
    def numbers(self) -> tuple[str, ...]:
        """The numeric columns (those of ``columns`` not ``factors``; found once, as a
        plan is kept for its formula)."""
        return tuple(name for name in self.columns if name not in self.factors)

    def matrix(self, rows: PlainRows) -> tuple[np.ndarray, list[str], np.ndarray]:
        """The part's model matrix (C order, float64) on the rows used, formulaic's names
        of its columns (``Intercept``, ``x``, ``f[T.b]``, ``logical(flag)[TRUE]``...), and
        which columns are to be read to know them (the checks' ``scan``).

        The intercept and the indicators of a text or categorical factor's levels
        are 0/1 columns each holding a 1 (a factor's levels are those the rows
        used take): only the numeric columns, and a logical's (whose levels are
        both kept, taken or not), are to be read.
        """
        names = [_INTERCEPT] if self.intercept else []
        blocks: list[tuple[int, str, FactorCoding | None, int]] = []
        full_rank = not self.intercept  # the first factor without an intercept
        for name in self.columns:
            if name not in self.factors:
                blocks.append((len(names), name, None, 0))
                names.append(name)
                continue
            coding = rows.factor(name)
            dropped = 0 if full_rank else 1
            full_rank = False
            blocks.append((len(names), name, coding, dropped))
            # formulaic marks a level of treatment contrasts "T."; the formula's
            # own coding of a logical does not.
            mark = "T." if dropped and coding.kind != "logical" else ""
            factor = self.factors[name]
            # The levels as a list first: slicing an Index of arrow text builds the
            # whole Index's hash table (tens of microseconds, every fit).
            names += [f"{factor}[{mark}{level}]" for level in as_list(coding.levels)[dropped:]]
        # Every column is written below: no zeroing of the whole matrix (a few
        # microseconds), only of the indicator blocks set one column per row.
        out = np.empty((rows.n, len(names)), dtype=np.float64)
        scan = np.zeros(len(names), dtype=bool)
        if self.intercept:
            out[:, 0] = 1.0
        for start, name, coding, dropped in blocks:
            if coding is None:
                out[:, start] = rows.numbers(name)
                scan[start] = True
                continue
            if coding.kind == "logical":
                scan[start : start + len(coding.levels) - dropped] = True
            if dropped and len(coding.levels) == 2:
                out[:, start] = coding.codes  # one indicator: the codes themselves (0/1)
                continue
            out[:, start : start + len(coding.levels) - dropped] = 0.0
            hit = np.flatnonzero(coding.codes >= dropped) if dropped else np.arange(rows.n)
            out[hit, start + coding.codes[hit] - dropped] = 1.0
        return out, names, scan


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

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        """Every column a plain part uses (the response included), each once (found once,
        as a plan is kept for its formula)."""
        names: dict[str, None] = {}
        if self.fixed is not None and self.response is not None:
            names[self.response] = None
            names.update(dict.fromkeys(self.fixed.columns))
        for part in self.terms:
            if part is not None:
                names.update(dict.fromkeys(part.columns))
        return tuple(names)

    @functools.cached_property
    def factors(self) -> tuple[str, ...]:
        """Every column a plain part codes as a factor, each once."""
        names: dict[str, None] = {}
        for part in (self.fixed, *self.terms):
            if part is not None:
                names.update(dict.fromkeys(c for c in part.columns if c in part.factors))
        return tuple(names)

    @functools.cached_property
    def unchecked(self) -> tuple[bool, ...]:
        """Per random term, whether it is plain and reads a numeric column the fixed part
        does not (whose values the checks of X have not seen)."""
        done = () if self.fixed is None else self.fixed.numbers
        return tuple(
            part is not None and any(name not in done for name in part.numbers)
            for part in self.terms
        )

    @functools.cached_property
    def everything(self) -> bool:
        """Whether every part is plain (formulaic is not needed at all)."""
        return self.fixed is not None and None not in self.terms


def _spellings(name: str, *, logical: bool) -> tuple[str, ...]:
    """How the translated formula spells a factor's bare column (``f``, ```my f```),
    or a logical column as it codes it (``logical(flag)``)."""
    bare = (name, f"`{name}`")
    return tuple(f"logical({b})" for b in bare) if logical else bare


def plain_plan(
    parsed: ParsedFormula,
    columns: Mapping[str, pd.Series],
    dtypes: Mapping[str, Any] | None = None,
) -> PlainPlan:
    """The parts of ``parsed`` that are plain, given the columns the formula uses (and
    their dtypes, when the caller has read them)."""
    kinds = []
    for name in _candidates(parsed):
        dtype = None if dtypes is None else dtypes.get(name)
        if dtype is None:
            dtype = columns[name].dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iuf" and not _special(name):
            kinds.append((name, "number"))  # _kind's answer, without its calls
        else:
            kinds.append((name, _kind(name, columns[name], dtype)))
    return _plan(parsed, tuple(kinds))


def _special(name: str) -> bool:
    """Names formulaic treats specially (its intercept, Python keywords)."""
    return name == _INTERCEPT or keyword.iskeyword(name)


# Memoised on the formula (parsing is memoised too): a refit asks again.
@functools.lru_cache(maxsize=128)
def _candidates(parsed: ParsedFormula) -> tuple[str, ...]:
    """The columns a plain part could read, each once: the response's and those of every
    part made of columns joined by "+"."""
    names = dict.fromkeys(() if parsed.response_column is None else (parsed.response_column,))
    for part in (parsed.fixed_part, *(spec.part for spec in parsed.random)):
        if part.plain_columns is not None:
            names.update(dict.fromkeys(part.plain_columns))
    return tuple(names)


def _kind(name: str, column: pd.Series, dtype: Any) -> str | None:
    """What a plain part reads ``column`` as: "number", "logical", "factor", or None."""
    # Names formulaic treats specially are left to it, as are columns that are
    # neither numbers nor factors as defined in the module's docstring.
    if _special(name):
        return None
    if _numeric(dtype):
        return "number"
    if _logical(dtype):
        return "logical"
    if _factor(column, dtype):
        return "factor"
    return None


# A plan depends on the formula and on the kind of each column a plain part
# could read, nothing else: refits (the same formula, parsing being memoised,
# and columns of the same kinds) find it here.
@functools.lru_cache(maxsize=128)
def _plan(parsed: ParsedFormula, kinds: tuple[tuple[str, str | None], ...]) -> PlainPlan:
    """:func:`plain_plan` given ``kinds``, each column's :func:`_kind`."""
    kind = dict(kinds)

    def plain_part(part: ModelPart, response: str | None = None) -> PlainPart | None:
        names = part.plain_columns
        if names is None or response in names or not all(kind[name] for name in names):
            return None
        # A factor coded otherwise by the formula (lme4's contrasts=, as
        # C(f, Sum()) in its text) is formulaic's to build: only a bare name,
        # or logical(name) for a logical column, is plain.
        factors: dict[str, str] = {}
        for term in part.terms:
            name = term.column
            assert name is not None  # a plain part's terms are columns
            found = kind[name]
            if found == "number":
                continue
            if term.text not in _spellings(name, logical=found == "logical"):
                return None
            factors[name] = term.text if found == "logical" else name
        return PlainPart(intercept=part.intercept, columns=names, factors=factors)

    response = parsed.response_column
    fixed = None
    if response is not None and kind[response] == "number":
        fixed = plain_part(parsed.fixed_part, response)
    terms = tuple(plain_part(spec.part) for spec in parsed.random)
    return PlainPlan(response=response if fixed is not None else None, fixed=fixed, terms=terms)
