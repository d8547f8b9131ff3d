"""Column types a model reads (design/columns.py, frame.py): converted as R would, or refused.

Each kind of column either gives the fit R would give for the same values
(numbers as numbers, text as a factor, logicals with NA dropped) or is refused
with a :class:`DataError` naming the column.  Issue 15, class 4.
"""

from __future__ import annotations

import datetime
import decimal
import fractions

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixedmodels as mm

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

FORMULA = "Reaction ~ x + (1 | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    data = mm.datasets.load("sleepstudy").copy()
    data["Subject"] = data["Subject"].astype(str)
    return data


def _with(data: pd.DataFrame, **columns) -> pd.DataFrame:
    out = data.copy()
    for name, values in columns.items():
        out[name] = values
    return out


def _same_fit(a, b) -> None:
    assert list(a.fixef.index) == list(b.fixef.index)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-9)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)
    assert a.nobs == b.nobs


@pytest.fixture(scope="module")
def numeric_fit(sleep):
    return mm.lmer(FORMULA, _with(sleep, x=sleep.Days.astype(float)))


# -- the examples ----------------------------------------------------------------


def test_decimals_are_numbers(sleep, numeric_fit):
    # Were a factor with one level per value (x1, x2, ...).
    data = _with(sleep, x=pd.Series([decimal.Decimal(int(v)) for v in sleep.Days], dtype=object))
    _same_fit(mm.lmer(FORMULA, data), numeric_fit)


def test_date_objects_are_refused_naming_the_column(sleep):
    dates = [datetime.date(2020, 1, 1) + datetime.timedelta(days=int(v)) for v in sleep.Days]
    with pytest.raises(mm.DataError, match=r"column 'x' holds dates"):
        mm.lmer(FORMULA, _with(sleep, x=pd.Series(dates, dtype=object)))


def test_dates_are_levels_of_a_grouping_factor(sleep):
    # As R's factor() of a date; in the matrices they are refused.
    day = pd.Series(
        [datetime.date(2020, 1, 1) + datetime.timedelta(days=int(v)) for v in sleep.Days],
        dtype=object,
    )
    m = mm.lmer("Reaction ~ 1 + (1 | day)", _with(sleep, day=day))
    assert list(m.ranef["day"].index[:2]) == ["2020-01-01", "2020-01-02"]


def test_nullable_boolean_with_missing_values(sleep):
    # Was a bare TypeError; R drops the NA rows and fits the logical.
    flag = pd.array(sleep.Days > 4, dtype="boolean")
    flag[[3, 50]] = pd.NA
    m = mm.lmer("Reaction ~ flag + (1 | Subject)", _with(sleep, flag=flag))
    kept = _with(sleep, flag=sleep.Days > 4).drop(index=[3, 50])
    _same_fit(m, mm.lmer("Reaction ~ flag + (1 | Subject)", kept))
    assert m.n_dropped_missing == 2


def test_multiindex_columns_are_refused(sleep):
    data = sleep.copy()
    data.columns = pd.MultiIndex.from_tuples([("a", c) for c in sleep.columns])
    for formula in ("Reaction ~ Days + (1 | Subject)", "a ~ 1 + (1 | Subject)"):
        with pytest.raises(mm.DataError, match="header levels"):
            mm.lmer(formula, data)


def test_polars_date_is_refused_naming_the_column(sleep):
    frame = pl.from_pandas(sleep).with_columns(
        (pl.date(2020, 1, 1) + pl.duration(days=pl.col("Days"))).alias("x")
    )
    with pytest.raises(mm.DataError, match=r"column 'x' holds dates"):
        mm.lmer(FORMULA, frame)


def test_polars_int128_is_read_exactly(sleep, numeric_fit):
    frame = pl.from_pandas(sleep).with_columns(pl.col("Days").cast(pl.Int128).alias("x"))
    _same_fit(mm.lmer(FORMULA, frame), numeric_fit)
    big = frame.with_columns((pl.col("x") + 2**70).alias("g"))
    m = mm.lmer("Reaction ~ Days + (1 | g)", big)
    assert m.ngroups["g"] == 10  # ten distinct integers, none merged by a float
    assert m.ranef["g"].index[0] == str(2**70)


def test_one_and_text_one_are_one_level(sleep):
    group = sleep.Subject.to_numpy(dtype=object).copy()
    group[group == "308"] = 1
    group[group == "309"] = "1"
    m = mm.lmer("Reaction ~ Days + (1 | g)", _with(sleep, g=group))
    assert m.ngroups["g"] == 17
    assert m.ranef["g"].index.is_unique
    assert "1" in m.ranef["g"].index


def test_a_column_named_intercept_is_refused(sleep):
    # formulaic's intercept has that name: the two were merged into one column.
    data = _with(sleep, Intercept=np.arange(len(sleep)) % 7)
    for formula in (
        "Reaction ~ Days + Intercept + (1 | Subject)",
        "Reaction ~ Days + (Intercept | Subject)",
    ):
        with pytest.raises(mm.DataError, match="'Intercept'"):
            mm.lmer(formula, data)
    # As a grouping factor it is not in the matrices.
    assert mm.lmer("Reaction ~ Days + (1 | Intercept)", data).ngroups["Intercept"] == 7


# -- more of the kind ------------------------------------------------------------------------


def test_pandas_string_dtype_is_a_factor(sleep):
    # A "string" column of digits was read by formulaic as numbers.
    text = sleep.Days.astype(str)
    by_string = mm.lmer(FORMULA, _with(sleep, x=text.astype("string")))
    by_object = mm.lmer(FORMULA, _with(sleep, x=text.astype(object)))
    _same_fit(by_string, by_object)
    assert "x1" in by_string.fixef.index


def test_object_columns_of_numbers_are_numbers(sleep, numeric_fit):
    # Python ints or Fractions in an object column were a factor.
    for values in (
        pd.Series([int(v) for v in sleep.Days], dtype=object),
        pd.Series([fractions.Fraction(int(v)) for v in sleep.Days], dtype=object),
        pd.Series([float(v) for v in sleep.Days], dtype=object),
    ):
        _same_fit(mm.lmer(FORMULA, _with(sleep, x=values)), numeric_fit)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (lambda d: pd.Series([str(v).encode() for v in d.Days], dtype=object), "bytes"),
        (lambda d: pd.Series([(v,) for v in d.Days], dtype=object), "tuple"),
        (lambda d: pd.Series([[v] for v in d.Days], dtype=object), "list"),
        (lambda d: pd.to_timedelta(d.Days, unit="D"), "dates or times"),
        (lambda d: d.Days + 1j, "complex"),
        (
            lambda d: pd.Series(d.Days.map(lambda v: datetime.time(int(v))), dtype=object),
            "dates or times",
        ),
        (
            lambda d: pd.array(
                [datetime.date(2020, 1, 1 + int(v)) for v in d.Days],
                dtype=pd.ArrowDtype(pa.date32()),
            ),
            "dates or times",
        ),
    ],
)
def test_unusable_values_are_refused_naming_the_column(sleep, values, fragment):
    with pytest.raises(mm.DataError, match=rf"column 'x' holds .*{fragment}"):
        mm.lmer(FORMULA, _with(sleep, x=values(sleep)))


@pytest.mark.parametrize(
    "values",
    [
        lambda d: pd.Series([str(v).encode() for v in d.Subject], dtype=object),
        lambda d: pd.Series([(v,) for v in d.Subject], dtype=object),
        lambda d: pd.Series([{v} for v in d.Subject], dtype=object),
    ],
)
def test_grouping_factor_of_containers_or_bytes_is_refused(sleep, values):
    with pytest.raises(mm.DataError, match="column 'g' holds"):
        mm.lmer("Reaction ~ Days + (1 | g)", _with(sleep, g=values(sleep)))


def test_pyarrow_and_nullable_numbers_are_numbers(sleep, numeric_fit):
    for dtype in (
        "Int64",
        "Float64",
        "int64[pyarrow]",
        "double[pyarrow]",
        pd.ArrowDtype(pa.decimal128(10, 2)),
    ):
        values = pd.array(sleep.Days.astype(float).tolist(), dtype=dtype)
        _same_fit(mm.lmer(FORMULA, _with(sleep, x=values)), numeric_fit)


def test_sparse_and_interval_columns(sleep, numeric_fit):
    sparse = pd.arrays.SparseArray(sleep.Days.astype(float).to_numpy())
    _same_fit(mm.lmer(FORMULA, _with(sleep, x=sparse)), numeric_fit)
    # An IntervalArray is a factor, as R's cut() gives one.
    bins = pd.arrays.IntervalArray(pd.cut(sleep.Days, [-1, 3, 6, 9]).to_numpy())
    m = mm.lmer(FORMULA, _with(sleep, x=bins))
    assert len(m.fixef) == 3


def test_float_group_labels_are_spelled_as_integers(sleep):
    # R's factor(308) is "308", not "308.0".
    m = mm.lmer("Reaction ~ Days + (1 | g)", _with(sleep, g=sleep.Subject.astype(float)))
    assert m.ranef["g"].index[0] == "308"


def test_polars_integer_group_with_nulls_keeps_integer_labels(sleep):
    frame = pl.from_pandas(sleep).with_columns(
        pl.when(pl.col("Days") == 0)
        .then(None)
        .otherwise(pl.col("Subject").cast(pl.Int64))
        .alias("g")
    )
    m = mm.lmer("Reaction ~ Days + (1 | g)", frame)
    assert list(m.ranef["g"].index[:2]) == ["308", "309"]  # were '308.0', '309.0'
    assert m.n_dropped_missing == 18


def test_polars_boolean_with_nulls_and_list_columns(sleep):
    frame = pl.from_pandas(sleep).with_columns(
        pl.when(pl.col("Days") == 3).then(None).otherwise(pl.col("Days") > 4).alias("flag"),
        pl.concat_list(pl.col("Days")).alias("listed"),
    )
    m = mm.lmer("Reaction ~ flag + (1 | Subject)", frame)
    # A logical column is R's logical: a factor named flagTRUE (issue 14).
    assert m.nobs == 162 and list(m.fixef.index) == ["(Intercept)", "flagTRUE"]
    with pytest.raises(mm.DataError, match="column 'listed' holds list"):
        mm.lmer("Reaction ~ listed + (1 | Subject)", frame)


def test_the_callers_data_are_not_modified(sleep):
    flag = pd.array(sleep.Days > 4, dtype="boolean")
    flag[3] = pd.NA
    data = _with(
        sleep,
        flag=flag,
        x=pd.Series([decimal.Decimal(int(v)) for v in sleep.Days], dtype=object),
    )
    before = data.copy()
    mm.lmer("Reaction ~ x + flag + (1 | Subject)", data).predict(data)
    pd.testing.assert_frame_equal(data, before)
    assert isinstance(data["x"].iloc[0], decimal.Decimal)


# -- property: every encoding of the same values gives the same fit --------------------------

_NUMBER_ENCODINGS = {
    "int64": lambda v: v.astype(np.int64),
    "float32": lambda v: v.astype(np.float32),
    "uint16": lambda v: v.astype(np.uint16),
    "Int64": lambda v: pd.array(v.tolist(), dtype="Int64"),
    "Float64": lambda v: pd.array(v.astype(float).tolist(), dtype="Float64"),
    "int32[pyarrow]": lambda v: pd.array(v.tolist(), dtype="int32[pyarrow]"),
    "object ints": lambda v: pd.Series([int(x) for x in v], dtype=object),
    "object decimals": lambda v: pd.Series([decimal.Decimal(int(x)) for x in v], dtype=object),
    "sparse": lambda v: pd.arrays.SparseArray(v.astype(float)),
}

_TEXT_ENCODINGS = {
    "object": lambda v: pd.Series(v, dtype=object),
    "str": lambda v: pd.Series(v).astype("str"),
    "string": lambda v: pd.Series(v, dtype="string"),
    "string[pyarrow]": lambda v: pd.Series(v, dtype="string[pyarrow]"),
    "category": lambda v: pd.Series(pd.Categorical(v)),
}


@pytest.fixture(scope="module")
def reference_fits(sleep):
    """The fit with float64 Days and object text, with and without some rows missing."""
    week = np.where(sleep.Days < 3, "early", np.where(sleep.Days < 7, "mid", "late"))
    data = _with(sleep, x=sleep.Days.astype(float), w=pd.Series(week, dtype=object))
    return data, mm.lmer("Reaction ~ x + w + (1 | Subject)", data)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    number=st.sampled_from(sorted(_NUMBER_ENCODINGS)),
    text=st.sampled_from(sorted(_TEXT_ENCODINGS)),
    polars=st.booleans(),
)
def test_any_encoding_gives_the_same_fit(reference_fits, number, text, polars):
    data, reference = reference_fits
    encoded = _with(
        data,
        x=_NUMBER_ENCODINGS[number](data.Days.to_numpy()),
        w=_TEXT_ENCODINGS[text](data.w.to_numpy(dtype=object)),
    )
    if polars:
        if number == "sparse" or number == "object decimals":
            return  # polars has no such column
        encoded = pl.from_pandas(encoded)
    fit = mm.lmer("Reaction ~ x + w + (1 | Subject)", encoded)
    _same_fit(fit, reference)
    # And the new rows in any encoding predict as the fit's own.
    np.testing.assert_allclose(fit.predict(encoded), reference.fitted, rtol=1e-9)
