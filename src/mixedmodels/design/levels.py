"""Levels of a factor: one canonical text per value, the same at fit time and for new rows.

A level is known by its text, spelled as R's ``as.character`` spells the
value, because that is how R matches new data to a factor's levels: the
integer 308, the float 308.0, the decimal ``Decimal("308")`` and the text
``"308"`` are one level, ``"308"``.  A float that is not integral keeps its
shortest round-trip spelling (``0.1``; a float32 its own shortest, so
``float32(0.1)`` is ``"0.1"`` too), a boolean is ``TRUE``/``FALSE``, an
infinity ``Inf``/``-Inf``, text is itself and anything else (a date in a
grouping factor, an interval) is its ``str()``.  Missing values (None, NaN,
``pd.NA``, NaT) have no level.

Values whose texts coincide are one level (a column holding both ``1`` and
``"1"`` has one level ``"1"``, as it would in R, where a column cannot hold
both).  Levels are sorted as R sorts a factor's: by value for numbers, by
text otherwise, a categorical column keeping its categories' order (and only
those that occur).
"""

from __future__ import annotations

import decimal
import fractions
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..engine.jit import compiled_on_first_use

__all__ = [
    "Levels",
    "TakenCategories",
    "as_list",
    "categories_present",
    "factor_codes",
    "level_label",
    "level_labels",
    "taken_categories",
]


def level_label(value: Any) -> str | None:
    """The canonical text of one value as a level (None for a missing value)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return None
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))  # exact, however many digits
        return _float_label(float(value))
    if isinstance(value, fractions.Fraction):
        return str(value.numerator) if value.denominator == 1 else _float_label(float(value))
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        # A float32's shortest spelling is the number its writer meant (0.1, not
        # 0.10000000149011612), which is what a float64 column of it holds.
        return _float_label(float(str(value)))
    if isinstance(value, numbers.Real):
        return _float_label(float(value))
    return str(value)


def _float_label(value: float) -> str | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value.is_integer():
        return str(int(value))
    return repr(value)


def level_labels(values: Any) -> pd.Index:
    """:func:`level_label` of each of ``values`` (an object Index, None where missing)."""
    codes, uniques = _distinct(values)
    labels = np.array([*_labels_of(pd.Index(uniques)), None], dtype=object)
    return pd.Index(labels[codes], dtype=object)


def _distinct(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Codes into the distinct values (missing: the position after the last)."""
    codes, uniques, _ = _factorize(pd.Series(values, copy=False), sort=False)
    uniques = np.asarray(uniques, dtype=object)
    return np.where(codes < 0, len(uniques), codes), uniques


def _factorize(values: pd.Series, sort: bool) -> tuple[np.ndarray, Any, bool]:
    """pandas' factorize, or by canonical text where values of several kinds are mixed.

    Python takes ``True`` for ``1`` and ``False`` for ``0`` (they hash alike),
    and so does pandas' factorize; in a column mixing kinds the values are told
    apart by their text instead.  The third item says whether the uniques are
    sorted.
    """
    mixed = isinstance(values.dtype, np.dtype) and values.dtype.kind == "O"
    if mixed and pd.api.types.infer_dtype(values, skipna=True) in ("mixed", "mixed-integer"):
        labels = pd.Series([level_label(v) for v in values], index=values.index, dtype=object)
        codes, _ = pd.factorize(labels, sort=False)
        first = np.unique(codes[codes >= 0], return_index=True)[1]
        positions = np.flatnonzero(codes >= 0)[first]
        order = np.argsort(codes[positions])
        return codes, pd.Index(values.to_numpy()[positions[order]], dtype=object), False
    if sort:
        dense = _dense_integer_codes(values)
        if dense is not None:
            return dense[0], dense[1], True
        text = _arrow_text_codes(values)
        if text is not None:
            return text[0], text[1], True
        try:
            codes, uniques = pd.factorize(values, sort=True)
            return codes, uniques, True
        except TypeError:
            pass  # values that do not compare: sorted by text in _merged
    codes, uniques = pd.factorize(values, sort=False)
    return codes, uniques, False


def _arrow_text_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index] | None:
    """Sorted codes and uniques of pandas' arrow-backed text, or None for other columns.

    pyarrow's own dictionary encoding, with its few distinct values sorted
    afterwards, gives pandas' ``factorize(sort=True)`` (text in code-point
    order, which UTF-8's byte order is; −1 for missing) at about half the cost
    (pandas sorts through its generic safe_sort): ~45 against ~80 µs for
    2 000 rows, in every fit naming a text factor.
    """
    dtype = values.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow" and len(values)):
        return None
    import pyarrow.compute as pc  # present: pandas' arrow text is built on it

    chunked = values.array.__arrow_array__()
    # One chunk (the usual column) is encoded as it is; several are joined first,
    # so that one dictionary numbers them all.
    array = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    encoded = array.dictionary_encode()
    dictionary = encoded.dictionary
    order = pc.array_sort_indices(dictionary).to_numpy()
    # rank[i]: the sorted position of dictionary entry i; a missing value's index
    # (filled with the entry past the last) ranks −1.
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    rank[-1] = -1
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(order))
    codes = rank[indices.to_numpy()]
    return codes, pd.Index(dictionary.take(order), dtype=dtype)


# Integer columns whose values span at most this many times the rows are coded by
# counting (see _dense_integer_codes).
_DENSE_MAX_SPAN = 4


def _dense_integer_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index] | None:
    """Sorted codes and uniques of an integer column whose values lie in a short range,
    or None for any other column.

    Grouping factors are mostly integer ids 0 … m or 1 … m: counting each
    value's occurrences finds the levels present, in order, in two passes
    over the rows, at every size less than pandas' hashing factorize with its
    sort (10⁶ rows, 5·10⁴ levels: 7 ms against 21 ms; 3 160 rows, 158
    levels: 16 µs against 52 µs).
    """
    dtype = values.dtype
    if not (isinstance(dtype, np.dtype) and dtype.kind in "iu") or not len(values):
        return None
    array = values.to_numpy()
    low, high = int(array.min()), int(array.max())
    if high - low >= _DENSE_MAX_SPAN * len(array):
        return None
    # Offsets from the smallest value, exact in int64 (the span is below 4n): an
    # unsigned column subtracts in its own type, where no value is below low.
    base = dtype.type(low)
    if dtype.kind == "u":
        shifted = (array - base).astype(np.int64)
    else:
        shifted = array.astype(np.int64, copy=False) - low  # a new array either way
    present = np.bincount(shifted, minlength=high - low + 1) > 0
    if present.all():
        # Every value of the range occurs (ids 1 … m): the offsets are the codes.
        codes = shifted
        offsets = np.arange(high - low + 1, dtype=np.int64)
    else:
        codes = (np.cumsum(present, dtype=np.int64) - 1)[shifted]
        offsets = np.flatnonzero(present)
    uniques = offsets.astype(dtype) + base
    if len(uniques) > _MEMO_MAX_LEVELS:
        return codes, pd.Index(uniques)
    return codes, _integer_levels(uniques.dtype.str, uniques.tobytes())[0].view()


@dataclass(frozen=True)
class Levels:
    """The levels of a factor as a fit saw them.

    Attributes
    ----------
    labels : Index
        The canonical text of each level, in the fit's order.
    values : Index
        One value of each level as the fit's data held it (a categorical
        column's categories), to hand new rows to formulaic in the fit's own
        representation.
    categorical : bool
        Whether the fit's column was a pandas categorical.
    ordered : bool
        Whether that categorical was ordered.
    """

    labels: pd.Index
    values: pd.Index
    categorical: bool = False
    ordered: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def categories(self) -> pd.Index:
        """``values``, as the categories of a pandas categorical."""
        return self.values

    def as_fitted(self, codes: np.ndarray) -> Any:
        """The fit's own value of each level in ``codes`` (all valid), as its column held it."""
        if self.categorical:
            return pd.Categorical.from_codes(codes, categories=self.values, ordered=self.ordered)
        return self.values.take(codes)

    def codes(self, values: Any) -> np.ndarray:
        """The level of each of ``values`` by its canonical text (−1: unknown or missing)."""
        if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
            # The few categories looked up once, not every row.
            series = pd.Series(values, copy=False)
            per_category = self.labels.get_indexer(_labels_of(series.cat.categories))
            codes = series.cat.codes.to_numpy()
            return np.where(codes >= 0, per_category[codes], -1)
        codes, uniques = _distinct(values)
        found = self.labels.get_indexer(_labels_of(pd.Index(uniques)))
        return np.append(found, -1)[codes]

    def shown(self, limit: int = 10) -> str:
        """The labels for a message: ``a, b, c`` (and ``...`` beyond ``limit``)."""
        listed = ", ".join(map(str, self.labels[:limit]))
        return listed + (", ..." if len(self.labels) > limit else "")


def _labels_of(values: pd.Index) -> pd.Index:
    """:func:`level_label` of each value; None where missing."""
    return _spelled(values)[0]


def _spelled(values: pd.Index) -> tuple[pd.Index, bool]:
    """:func:`level_label` of each value, and whether the spelling is one-to-one (integers
    and text, spelled at once); other values are spelled one by one."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and not values.hasnans:
        return values, True
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        if len(values) > _MEMO_MAX_LEVELS:
            return values.astype(str), True
        array = values.to_numpy()
        # A view: the caller may name its Index without touching the memo's.
        return _integer_levels(array.dtype.str, array.tobytes())[1].view(), True
    if isinstance(dtype, np.dtype) and dtype.kind == "O" and values.inferred_type == "string":
        return values, True
    return pd.Index([level_label(v) for v in values], dtype=object), False


# Integer levels are spelled through pandas' text type, tens of microseconds a
# call (a good part of a small model's design), and their Index built, a few
# more; the same levels come back in every refit of a data set (bootstraps,
# simulations, benchmarks), so both are kept, keyed by the values themselves
# (up to this many levels).
_MEMO_MAX_LEVELS = 10_000


@functools.lru_cache(maxsize=64)
def _integer_levels(dtype: str, data: bytes) -> tuple[pd.Index, pd.Index]:
    """The integers in ``data`` (numpy ``dtype``) as an Index, and their texts as an
    Index of text.

    Both are shared by every caller (who gets views): the integers are held
    read-only, so that no caller can change the memo's.
    """
    values = pd.Index(np.frombuffer(data, dtype=dtype), copy=False)  # read-only, as the bytes
    return values, values.astype(str)


def as_list(levels: pd.Index) -> list[Any]:
    """A factor's levels (no missing value among them) as a Python list.

    pandas' arrow-backed text goes through numpy objects on its way to a list,
    several microseconds even for two levels (in every fit naming a factor's
    columns); pyarrow's own conversion gives the same texts at a tenth of the cost.
    """
    array = levels.array
    if isinstance(array, pd.arrays.ArrowStringArray):
        import pyarrow as pa  # present: pandas' arrow text is built on it

        return pa.array(array).to_pylist()
    return levels.tolist()


def categories_taken(codes, present):  # pragma: no cover - numba
    """Mark in ``present`` the categories ``codes`` take; whether a code is −1 (missing),
    and whether every category is taken."""
    missing = False
    for code in codes:
        if code >= 0:
            present[code] = True
        else:
            missing = True
    every = True
    for taken in present:
        every = every and taken
    return missing, every


#: The compiled :func:`categories_taken` (None without numba).
_taken = compiled_on_first_use(categories_taken)


def categories_present(
    codes: np.ndarray, n_categories: int, *, use_numba: bool | None = None
) -> tuple[np.ndarray | None, bool]:
    """Which of ``n_categories`` categories ``codes`` (−1 for missing) take, or None when
    they take every one (the usual case); and whether a code is missing.

    Compiled, one pass over the codes (numpy's count takes a pass for their
    range and one more converting them to its own integers); with numpy, the
    smallest and largest code tell for at most two categories.  ``use_numba``
    forces (True) or refuses (False) the compiled pass; by default it runs
    when numba is installed.
    """
    kernel = _taken() if use_numba is not False else None
    if use_numba and kernel is None:
        raise ImportError("numba is not installed")
    if kernel is not None:
        present = np.zeros(n_categories, dtype=bool)
        missing, every = kernel(codes, present)
        return (None if every else present), missing
    missing = bool(len(codes)) and int(codes.min()) < 0
    valid = codes[codes >= 0] if missing else codes
    if n_categories <= 2 and len(valid):
        if int(valid.min()) == 0 and int(valid.max()) == n_categories - 1:
            return None, missing
    present = np.bincount(valid, minlength=n_categories) > 0
    return (None if present.all() else present), missing


@dataclass(frozen=True)
class TakenCategories:
    """What :func:`factor_codes` reads of a categorical column: its codes and categories,
    which categories its rows take and whether a code is missing.

    The data's reading finds them once (the missing codes are its concern too),
    and the factor's coding reuses them when every row is used.

    Attributes
    ----------
    codes : ndarray
        The Categorical's codes (−1 for missing).
    categories : Index
        Its categories.
    present : ndarray of bool or None
        Which categories the codes take, None when they take every one.
    missing : bool
        Whether a code is −1.
    """

    codes: np.ndarray
    categories: pd.Index
    present: np.ndarray | None
    missing: bool


def taken_categories(column: pd.Series, dtype: Any = None) -> TakenCategories:
    """The :class:`TakenCategories` of a categorical column (one pass over its codes);
    ``dtype`` is the column's dtype when the caller has read it."""
    # The Categorical itself: pandas' .cat accessor costs more than the work here.
    array = column.array
    codes = array.codes
    categories = array.categories if dtype is None else dtype.categories
    present, missing = categories_present(codes, len(categories))
    return TakenCategories(codes, categories, present, missing)


def factor_codes(
    values: pd.Series, dtype: Any = None, taken: TakenCategories | None = None
) -> tuple[np.ndarray, Levels]:
    """Level codes (int64, −1 for missing) and the levels of one factor column.

    Levels are sorted as R sorts a factor's (see the module's docstring) and
    values with the same canonical text share a level.  ``dtype`` is the
    column's dtype when the caller has read it, ``taken`` a categorical
    column's :func:`taken_categories` when the caller has them.
    """
    if dtype is None:
        dtype = values.dtype  # read once: pandas' dtype property costs a few calls
    categorical = isinstance(dtype, pd.CategoricalDtype)
    if categorical:
        if taken is None:
            taken = taken_categories(values, dtype)
        codes, categories = taken.codes, taken.categories
        # Only the categories that occur (R's drop.unused.levels).
        present, missing = taken.present, taken.missing
        if present is None:
            # Every category occurs (the usual case): nothing to renumber, and
            # no selection from the categories (a pyarrow filter for text).
            codes = codes.astype(np.int64)  # −1 stays −1 for a missing value
            uniques = categories
        else:
            renumber = np.cumsum(present, dtype=np.int64) - 1
            codes = np.where(codes >= 0, renumber[codes], -1) if missing else renumber[codes]
            uniques = categories[present]
        in_order = True
    else:
        codes, uniques, in_order = _factorize(values, sort=True)
        codes = codes.astype(np.int64, copy=False)  # the factorizers' own new array
        if not isinstance(uniques, pd.Index):  # pandas' factorize of a Series gives one
            uniques = pd.Index(uniques)
    labels, one_to_one = _spelled(uniques)
    if not in_order or (not one_to_one and (labels.hasnans or not labels.is_unique)):
        codes, uniques, labels = _merged(codes, uniques, list(labels), categorical)
    if not isinstance(labels.dtype, pd.StringDtype):
        labels = labels.astype(str)
    ordered = bool(categorical and dtype.ordered)
    return codes, Levels(labels, uniques, categorical, ordered)


def _merged(
    codes: np.ndarray, values: pd.Index, labels: list[str | None], categorical: bool
) -> tuple[np.ndarray, pd.Index, pd.Index]:
    """One level per distinct label (the first value of each), missing labels dropped.

    Numbers keep their numeric order, categories theirs; values that do not
    compare are sorted by label, as R sorts the text of a factor.
    """
    first: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label is not None and label not in first:
            first[label] = i
    keep = list(first.values())
    if not categorical:
        try:
            keep.sort(key=lambda i: values[i])
        except TypeError:
            keep.sort(key=lambda i: labels[i])
    position = {labels[i]: k for k, i in enumerate(keep)}
    renumber = np.array([-1 if lab is None else position[lab] for lab in labels] + [-1])
    new_codes = renumber[np.where(codes < 0, len(labels), codes)]
    kept = pd.Index([labels[i] for i in keep], dtype=object)
    return new_codes.astype(np.int64), values[keep], kept
