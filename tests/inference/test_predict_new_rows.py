"""New rows that do not match the fit (inference/predict.py): refused, NaN, or matched by value.

lme4 refuses a level of a fixed-effect factor it has no estimate for, refuses a
missing or new grouping level unless ``allow.new.levels``, predicts NA for a
missing predictor (``na.pass``) and matches levels by their text (308 and
308.0 are one level).  Issue 15, class 2.
"""

from __future__ import annotations

import decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixedmodels as mm

pl = pytest.importorskip("polars")


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    sleep = mm.datasets.load("sleepstudy").copy()
    sleep["g"] = sleep.Subject.astype(str).astype(int)
    sleep["f"] = np.where(sleep.Days % 2 == 0, "even", "odd")
    sleep["week"] = pd.Categorical(
        np.where(sleep.Days < 5, "first", "second"), categories=["second", "first"]
    )
    return sleep


@pytest.fixture(scope="module")
def model(data):
    return mm.lmer("Reaction ~ Days + f + week + (Days | g)", data)


def _expected(model, rows: pd.DataFrame, random: bool = True) -> np.ndarray:
    """Xβ (+ Zb) by hand from the fit's estimates, for rows with known levels."""
    beta = model.fixef
    value = (
        beta["(Intercept)"]
        + beta["Days"] * rows.Days.to_numpy(dtype=float)
        + beta["fodd"] * (rows.f.astype(str).to_numpy() == "odd")
        + beta["weekfirst"] * (rows.week.astype(str).to_numpy() == "first")
    )
    if random:
        modes = model.ranef["g"]
        labels = [str(int(float(v))) for v in rows.g]
        value = value + modes.loc[labels, "(Intercept)"].to_numpy()
        value = value + modes.loc[labels, "Days"].to_numpy() * rows.Days.to_numpy(dtype=float)
    return np.asarray(value, dtype=float)


# -- the examples ----------------------------------------------------------------


def test_unseen_fixed_effect_level_is_refused_naming_column_and_level(model, data):
    # Was the reference level's prediction.
    new = data.head(3).copy()
    new["f"] = ["even", "weekend", "odd"]
    with pytest.raises(mm.DataError, match=r"column 'f' has level 'weekend'.*levels: even, odd"):
        model.predict(new)
    with pytest.raises(mm.DataError, match="'weekend'"):
        model.predict(new, random=False)


def test_missing_fixed_effect_value_predicts_nan(model, data):
    # Was the reference level's prediction; lme4's na.pass gives NA.
    new = data.head(4).copy()
    new["f"] = pd.Series(["even", None, "even", "odd"], dtype=object)
    new.loc[new.index[2], "Days"] = np.nan
    values = model.predict(new).to_numpy()
    assert np.isnan(values[1]) and np.isnan(values[2])
    complete = new.iloc[[0, 3]]
    np.testing.assert_allclose(values[[0, 3]], _expected(model, complete), rtol=1e-10)


def test_integer_group_predicted_as_float_or_text(model, data):
    new = data.head(5)
    expected = model.predict(new).to_numpy()
    np.testing.assert_allclose(expected, _expected(model, new), rtol=1e-10)
    for encoded in (
        new.g.astype(float),
        new.g.astype(str),
        pd.Series([decimal.Decimal(int(v)) for v in new.g], index=new.index, dtype=object),
        new.g.astype("Int64"),
        pd.Series(pd.Categorical(new.g.astype(float))),
    ):
        np.testing.assert_allclose(
            model.predict(new.assign(g=encoded.to_numpy())).to_numpy(), expected, rtol=1e-12
        )


def test_polars_integer_group_with_a_null(data):
    frame = pl.from_pandas(data[["Reaction", "Days", "g"]]).with_columns(
        pl.when(pl.col("Days") == 0).then(None).otherwise(pl.col("g")).alias("g")
    )
    m = mm.lmer("Reaction ~ Days + (1 | g)", frame)
    assert m.ranef["g"].index[0] == "308"  # was '308.0'
    # The pandas integer column (no nulls) finds the same levels.
    predicted = m.predict(data.head(3))
    assert np.isfinite(predicted).all()
    np.testing.assert_allclose(predicted, m.predict(frame.head(3).fill_null(308)), rtol=1e-12)


# -- more of the kind ------------------------------------------------------------------------


def test_text_where_the_fit_had_numbers_is_refused(model, data):
    new = data.head(2).assign(Days=["1", "2"])
    with pytest.raises(mm.DataError, match=r"column 'Days' holds numbers .* new data"):
        model.predict(new)


def test_categorical_factor_predicted_from_plain_text(model, data):
    new = data.head(6)
    plain = new.assign(week=new.week.astype(str).to_numpy(dtype=object))
    np.testing.assert_allclose(model.predict(plain), model.predict(new), rtol=1e-12)
    unseen = new.assign(week=["third"] * 6)
    with pytest.raises(mm.DataError, match="column 'week' has level 'third'"):
        model.predict(unseen)


def test_numeric_column_inside_factor_matched_by_value(data):
    m = mm.lmer("Reaction ~ factor(Days) + (1 | Subject)", data)
    new = data.head(4)
    expected = m.predict(new).to_numpy()
    np.testing.assert_allclose(expected, m.fitted.to_numpy()[:4], rtol=1e-10)
    for days in (new.Days.astype(float), new.Days.astype(str)):
        np.testing.assert_allclose(m.predict(new.assign(Days=days)), expected, rtol=1e-12)
    with pytest.raises(mm.DataError, match=r"column 'Days' has level '2\.5'"):
        m.predict(new.assign(Days=[0.0, 2.5, 1.0, 3.0]))


def test_unseen_value_of_a_factor_expression_is_refused(data):
    # factor(Days + 0) is not a column: formulaic's warning is turned into an error.
    m = mm.lmer("Reaction ~ factor(Days + 0) + (1 | Subject)", data)
    with pytest.raises(mm.DataError, match="not fitted with"):
        m.predict(data.head(2).assign(Days=[0, 12]))


def test_missing_group_is_refused_unless_new_levels_are_allowed(model, data):
    new = data.head(3).copy()
    new["g"] = [np.nan, 308.0, 308.0]
    with pytest.raises(mm.DataError, match=r"grouping factor 'g' is missing in 1 row"):
        model.predict(new)
    allowed = model.predict(new, allow_new_levels=True).to_numpy()
    marginal = model.predict(new, random=False).to_numpy()
    assert allowed[0] == pytest.approx(marginal[0])
    np.testing.assert_allclose(allowed[1:], _expected(model, data.iloc[1:3]), rtol=1e-10)
    # Without the random part the grouping column is not needed at all.
    np.testing.assert_allclose(
        model.predict(new.drop(columns="g"), random=False), marginal, rtol=1e-12
    )


def test_interaction_levels_that_collide_are_refused(data):
    a = np.where(data.Days < 5, "x:y", "x")
    b = np.where(data.Days < 5, "z", "y:z")
    with pytest.raises(mm.DataError, match=r"both labelled 'x:y:z'"):
        mm.lmer("Reaction ~ Days + (1 | a:b)", data.assign(a=a, b=b))


def test_statsmodels_front_door_refuses_an_unseen_level(data):
    result = mm.mixedlm("Reaction ~ Days + f", data, groups="Subject").fit()
    new = data.head(2).assign(f=["even", "weekend"])
    with pytest.raises(mm.DataError, match="'weekend'"):
        result.predict(new)
    new = data.head(2).assign(f=["even", None])
    values = result.predict(new).to_numpy()
    assert np.isfinite(values[0]) and np.isnan(values[1])


def test_new_data_are_not_modified(model, data):
    new = data.head(4).copy()
    new["g"] = new.g.astype(float)
    new["f"] = new.f.astype("string")
    before = new.copy()
    model.predict(new)
    pd.testing.assert_frame_equal(new, before)


# -- property: predictions do not depend on how the levels are encoded ------------------------

_GROUP_ENCODINGS = {
    "int": lambda v: v.astype(np.int64),
    "float": lambda v: v.astype(float),
    "text": lambda v: v.astype(str).astype(object),
    "string": lambda v: pd.array(v.astype(str), dtype="string"),
    "category": lambda v: pd.Categorical(v.astype(str)),
    "decimal": lambda v: pd.Series([decimal.Decimal(int(x)) for x in v], dtype=object).to_numpy(),
    "Int64": lambda v: pd.array(v.tolist(), dtype="Int64"),
}
_FACTOR_ENCODINGS = {
    "text": lambda v: np.asarray(v, dtype=object),
    "str": lambda v: pd.Series(v).astype("str").to_numpy(),
    "string": lambda v: pd.array(list(v), dtype="string"),
    "category": lambda v: pd.Categorical(v),
    "reordered category": lambda v: pd.Categorical(v, categories=["odd", "even", "never"]),
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    group=st.sampled_from(sorted(_GROUP_ENCODINGS)),
    factor=st.sampled_from(sorted(_FACTOR_ENCODINGS)),
    rows=st.lists(st.integers(0, 179), min_size=1, max_size=12),
)
def test_predictions_do_not_depend_on_the_encoding(model, data, group, factor, rows):
    new = data.iloc[rows]
    expected = _expected(model, new)
    encoded = new.assign(
        g=_GROUP_ENCODINGS[group](new.g.to_numpy()),
        f=_FACTOR_ENCODINGS[factor](new.f.to_numpy()),
    )
    np.testing.assert_allclose(model.predict(encoded).to_numpy(), expected, rtol=1e-10)
