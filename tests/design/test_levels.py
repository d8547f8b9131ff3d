"""Levels of factors by canonical text (design/levels.py): one spelling per value, as R's.

R matches new data to a factor's levels by ``as.character``: the integer 308,
the double 308 and the text "308" are one level.  These tests pin the
spelling of each kind of value, the merging of values that share it, and (by
hypothesis) that any encoding of the same values finds the same levels.
"""

from __future__ import annotations

import datetime
import decimal
import fractions

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixedmodels.design.levels import (
    as_list,
    categories_present,
    factor_codes,
    level_label,
    level_labels,
)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (308, "308"),
        (308.0, "308"),
        (np.int32(308), "308"),
        (np.uint64(308), "308"),
        (np.float64(308.0), "308"),
        (decimal.Decimal("308"), "308"),
        (decimal.Decimal("308.000"), "308"),
        (decimal.Decimal("308.50"), "308.5"),
        (fractions.Fraction(3, 2), "1.5"),
        (fractions.Fraction(6, 2), "3"),
        (0.1, "0.1"),
        (np.float32(0.1), "0.1"),  # the float32's own shortest spelling
        (-0.0, "0"),
        (1e20, "100000000000000000000"),
        (2.5e-8, "2.5e-08"),
        (float("inf"), "Inf"),
        (float("-inf"), "-Inf"),
        (True, "TRUE"),
        (np.bool_(False), "FALSE"),
        ("308", "308"),
        ("308.0", "308.0"),  # text is itself, as in R
        (2**70, str(2**70)),
        (decimal.Decimal(2**70), str(2**70)),  # exact, not through a float
        (datetime.date(2020, 1, 2), "2020-01-02"),
        (pd.Interval(0, 1), "(0, 1]"),
    ],
)
def test_each_kind_of_value_has_one_spelling(value, label):
    assert level_label(value) == label


@pytest.mark.parametrize(
    "value", [None, np.nan, float("nan"), pd.NA, pd.NaT, decimal.Decimal("NaN")]
)
def test_missing_values_have_no_level(value):
    assert level_label(value) is None


def test_values_sharing_a_spelling_share_a_level():
    # A column holding 1 and "1" has one level "1", as in R (which cannot hold both).
    codes, levels = factor_codes(pd.Series([1, "1", 2, 1.0, None, "b"], dtype=object))
    assert list(levels.labels) == ["1", "2", "b"]
    np.testing.assert_array_equal(codes, [0, 0, 1, 0, -1, 2])


def test_numbers_sort_by_value_text_by_text():
    _, numbers = factor_codes(pd.Series([10.0, 2.0, 308.0, 2.0]))
    assert list(numbers.labels) == ["2", "10", "308"]
    _, text = factor_codes(pd.Series(["10", "2", "308"]))
    assert list(text.labels) == ["10", "2", "308"]


def test_categorical_keeps_its_order_and_drops_unused_categories():
    values = pd.Series(pd.Categorical(["x", "y", None, "x"], categories=["z", "y", "x"]))
    codes, levels = factor_codes(values)
    assert list(levels.labels) == ["y", "x"]
    np.testing.assert_array_equal(codes, [1, 0, -1, 1])
    assert list(levels.categories) == ["y", "x"]


def test_categorical_of_numbers_is_spelled_as_numbers():
    values = pd.Series(pd.Categorical([308.0, 309.0, 308.0]))
    _, levels = factor_codes(values)
    assert list(levels.labels) == ["308", "309"]


def test_new_values_are_found_by_spelling():
    _, levels = factor_codes(pd.Series([308, 309, 310]))
    found = levels.codes(pd.Series([309.0, "308", None, 311, decimal.Decimal(310)], dtype=object))
    np.testing.assert_array_equal(found, [1, 0, -1, -1, 2])
    categorical = pd.Series(pd.Categorical(["310", "999", None]))
    np.testing.assert_array_equal(levels.codes(categorical), [2, -1, -1])


def test_level_labels_keep_missing_as_none():
    assert list(level_labels([1, None, 2.0, "a"])) == ["1", None, "2", "a"]


# -- property: any encoding of the same values finds the same levels -----------------

_ENCODINGS = {
    "int64": lambda v: pd.Series(v, dtype=np.int64),
    "float64": lambda v: pd.Series(v, dtype=np.float64),
    "Int64": lambda v: pd.Series(v, dtype="Int64"),
    "text": lambda v: pd.Series([str(x) for x in v], dtype=object),
    "str": lambda v: pd.Series([str(x) for x in v]).astype("str"),
    "string": lambda v: pd.Series([str(x) for x in v], dtype="string"),
    "category": lambda v: pd.Series(pd.Categorical(v)),
    "text category": lambda v: pd.Series(pd.Categorical([str(x) for x in v])),
    "decimal": lambda v: pd.Series([decimal.Decimal(x) for x in v], dtype=object),
    "mixed": lambda v: pd.Series([x if i % 2 else str(x) for i, x in enumerate(v)], dtype=object),
    "float text": lambda v: pd.Series([float(x) for x in v], dtype=object),
}


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=30),
    fit=st.sampled_from(sorted(_ENCODINGS)),
    new=st.sampled_from(sorted(_ENCODINGS)),
)
def test_any_encoding_finds_the_fitted_levels(values, fit, new):
    fitted = _ENCODINGS[fit](values)
    codes, levels = factor_codes(fitted)
    # One level per distinct value, whatever the encoding.
    assert len(levels) == len(set(values))
    assert sorted(levels.labels) == sorted({str(v) for v in values})
    found = levels.codes(_ENCODINGS[new](values))
    np.testing.assert_array_equal(found, codes)
    np.testing.assert_array_equal(np.asarray(levels.labels)[codes], [str(v) for v in values])


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.integers(-1000, 1000),
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.text(max_size=4),
            st.booleans(),
            st.none(),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_codes_agree_with_labels_for_any_mixture(values):
    codes, levels = factor_codes(pd.Series(values, dtype=object))
    labels = [level_label(v) for v in values]
    assert levels.labels.is_unique
    for code, label in zip(codes, labels, strict=True):
        if label is None:
            assert code == -1
        else:
            assert levels.labels[code] == label
    np.testing.assert_array_equal(levels.codes(pd.Series(values, dtype=object)), codes)


@pytest.mark.parametrize("n_rows", [30_000, 200, 1])
@pytest.mark.parametrize("every_id", [False, True])
@pytest.mark.parametrize(
    ("dtype", "low"),
    [(np.int64, 0), (np.int64, -1000), (np.int8, -128), (np.uint16, 7), (np.uint64, 2**64 - 300)],
)
def test_integer_columns_in_a_short_range_are_coded_as_pandas_sorts_them(
    dtype, low, every_id, n_rows
):
    # Integer columns in a short range are coded by counting, with or without
    # gaps among the values: the codes, the order and the values' type must be
    # those of a sorted factorize.
    rng = np.random.default_rng(3)
    span = min(250, n_rows)
    offsets = (
        rng.permutation(np.resize(np.arange(span), n_rows))
        if every_id
        else (rng.integers(0, span, n_rows))
    )
    values = pd.Series((offsets.astype(object) + low).astype(dtype))
    codes, levels = factor_codes(values)
    expected_codes, expected_uniques = pd.factorize(values, sort=True)
    np.testing.assert_array_equal(codes, expected_codes)
    assert codes.dtype == np.int64
    assert levels.values.dtype == expected_uniques.dtype
    assert list(levels.values) == list(expected_uniques)
    assert list(levels.labels) == [str(v) for v in expected_uniques]
    # The levels are shared with later fits of the same values: a caller's copy
    # cannot change them.
    again = factor_codes(values)[1]
    levels.values.name = "renamed"
    assert again.values.name is None
    assert not np.asarray(levels.values).flags.writeable


def test_long_integer_columns_with_a_wide_range_keep_their_levels():
    values = pd.Series(np.tile(np.array([10**12, -5, 3, 10**12]), 5_000))
    codes, levels = factor_codes(values)
    assert list(levels.labels) == ["-5", "3", "1000000000000"]
    np.testing.assert_array_equal(codes[:4], [2, 0, 1, 2])


@pytest.mark.parametrize("dtype", ["str", "string[pyarrow]", "string[python]", object, "category"])
def test_levels_as_a_list_are_the_index_values_whichever_the_text_type(dtype):
    pytest.importorskip("pyarrow")
    levels = pd.Index(["b", "a b", "é", "10"], dtype=dtype)
    assert as_list(levels) == ["b", "a b", "é", "10"]
    assert all(type(level) is str for level in as_list(levels))
    assert as_list(pd.Index([3, 1])) == [3, 1]


@pytest.mark.parametrize("use_numba", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_categories_present_and_missing_codes(use_numba, dtype):
    if use_numba:
        pytest.importorskip("numba")

    def present(codes, n):
        found, missing = categories_present(np.array(codes, dtype=dtype), n, use_numba=use_numba)
        return (None if found is None else found.tolist()), missing

    assert present([1, 0, 2, 1], 3) == (None, False)
    assert present([1, -1, 0], 2) == (None, True)
    assert present([2, 0, 2], 4) == ([True, False, True, False], False)
    assert present([-1, 1, 1], 2) == ([False, True], True)
    assert present([0, 0], 2) == ([True, False], False)
    assert present([-1, -1], 2) == ([False, False], True)
    assert present([], 2) == ([False, False], False)


def test_a_categorical_factor_keeps_the_categories_present_in_order():
    values = pd.Series(pd.Categorical(["z", None, "x", "z"], categories=["z", "y", "x", "w"]))
    codes, levels = factor_codes(values)
    assert codes.tolist() == [0, -1, 1, 0]
    assert levels.labels.tolist() == ["z", "x"]
    assert levels.categorical


def test_factor_codes_of_arrow_text_sorted_as_pandas_sorts() -> None:
    # pandas' text ("str", arrow-backed when pyarrow is there): levels sorted by code
    # point (upper case first, accents after), missing values coded -1.
    values = pd.Series(["b", "a", None, "c", "a", "é", "Z", "ä", "aa"], dtype="str")
    codes, levels = factor_codes(values)
    expected_codes, expected_levels = pd.factorize(values, sort=True)
    assert list(levels.labels) == ["Z", "a", "aa", "b", "c", "ä", "é"]
    assert list(levels.labels) == list(expected_levels)
    np.testing.assert_array_equal(codes, expected_codes)
    assert codes[2] == -1
