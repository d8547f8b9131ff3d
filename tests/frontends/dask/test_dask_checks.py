"""The Dask path checks its input as the in-memory path does (issue 15, class 7).

Every case here is refused (or warned about, or predicted) with the same
message on a pandas DataFrame and on a Dask DataFrame of the same rows: the
checks are shared (design/checks.py, columns.py, levels.py), run on the
driver from what the passes sum up or on each partition.  Dask's synchronous
scheduler keeps these small cases fast; test_dask.py runs the cluster.
"""

from __future__ import annotations

import decimal
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

FORMULA = "Reaction ~ Days + (1 | Subject)"


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    data = mm.datasets.load("sleepstudy").copy()
    data["Subject"] = data["Subject"].astype(str)
    data["w"] = 1.0
    return data


def _both(formula: str, data: pd.DataFrame, **kwargs):
    """The in-memory and the Dask fit (three partitions) of the same rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            mm.lmer(formula, data, **kwargs),
            mm.lmer(formula, dd.from_pandas(data, npartitions=3), **kwargs),
        )


def _refused_alike(formula: str, data: pd.DataFrame, fragment: str, **kwargs) -> None:
    messages = []
    for frame in (data, dd.from_pandas(data, npartitions=3)):
        with pytest.raises(mm.MixedModelsError, match=fragment) as caught:
            mm.lmer(formula, frame, **kwargs)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


def _set(data: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    out = data.copy()
    for column, value in values.items():
        out.loc[row, column] = value
    return out


# -- the examples ----------------------------------------------------------------


def test_zero_weight_is_refused(sleep):
    # Was an infinite objective on Dask.
    _refused_alike(FORMULA, _set(sleep, 5, w=0.0), "1 is zero", weights="w")


def test_infinite_weight_is_refused(sleep):
    # Was a silently dropped row on Dask.
    _refused_alike(FORMULA, _set(sleep, 5, w=np.inf), "1 is infinite", weights="w")


def test_constant_response_is_refused(sleep):
    # Was a fit with σ = 4e-17 on Dask.
    _refused_alike(FORMULA, sleep.assign(Reaction=5.0), "'Reaction' is constant")


# -- more of the kind ------------------------------------------------------------------------


def test_negative_and_text_weights_are_refused(sleep):
    _refused_alike(FORMULA, _set(sleep, 7, w=-2.0), "1 is negative", weights="w")
    text = sleep.assign(w=sleep.w.astype(str).astype(object))
    with pytest.raises(mm.DataError, match="must be numbers"):
        mm.lmer(FORMULA, text, weights="w")
    with dask.config.set({"dataframe.convert-string": False}):
        with pytest.raises(mm.DataError, match="must be numbers"):
            mm.lmer(FORMULA, dd.from_pandas(text, npartitions=3), weights="w")


def test_missing_weight_drops_the_row_on_both_paths(sleep):
    memory, on_dask = _both(FORMULA, _set(sleep, 5, w=np.nan), weights="w")
    assert memory.nobs == on_dask.nobs == 179
    assert on_dask.objective == pytest.approx(memory.objective, rel=1e-9)


def test_response_constant_after_a_transform_is_refused(sleep):
    data = sleep.assign(Reaction=np.where(sleep.Days < 5, 2.0, -2.0))
    _refused_alike("abs(Reaction) ~ Days + (1 | Subject)", data, "is constant")


def test_bad_missing_option_and_intercept_column_are_refused_alike(sleep):
    _refused_alike(FORMULA, sleep, "missing must be", missing="omit")
    _refused_alike(
        "Reaction ~ Intercept + (1 | Subject)", sleep.assign(Intercept=sleep.Days), "'Intercept'"
    )


def test_dates_in_the_matrices_are_refused_alike(sleep):
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(sleep.Days, unit="D")
    _refused_alike("Reaction ~ x + (1 | Subject)", sleep.assign(x=dates), "holds dates")


def test_numbers_in_an_object_column_are_refused_on_dask(sleep):
    # In memory they are numbers; a partition cannot know what the others hold.
    x = pd.Series([decimal.Decimal(int(v)) for v in sleep.Days], dtype=object)
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_pandas(sleep.assign(x=x), npartitions=3)
        with pytest.raises(mm.DataError, match=r"column 'x' has dtype object but holds numbers"):
            mm.lmer("Reaction ~ x + (1 | Subject)", ddf)


def test_predictor_scale_warning_on_both_paths(sleep):
    data = sleep.assign(big=sleep.Days * 1e6)
    messages = []
    for frame in (data, dd.from_pandas(data, npartitions=3)):
        with pytest.warns(mm.PredictorScaleWarning) as caught:
            mm.lmer("Reaction ~ big + Days + (1 | Subject)", frame)
        messages.append(str(caught[0].message))
    # The sd from the summed squares may differ in its last digits.
    assert [re.sub(r"sd [^)]*", "sd", m) for m in messages] == [
        re.sub(r"sd [^)]*", "sd", messages[0])
    ] * 2


def test_levels_matched_by_value_as_in_memory(sleep):
    group = sleep.Subject.to_numpy(dtype=object).copy()
    group[group == "308"] = 1
    group[group == "309"] = "1"
    with dask.config.set({"dataframe.convert-string": False}):
        memory, on_dask = _both("Reaction ~ Days + (1 | g)", sleep.assign(g=group))
    assert list(on_dask.ranef["g"].index) == list(memory.ranef["g"].index)
    assert on_dask.ngroups == memory.ngroups == {"g": 17}


def test_predictions_for_new_rows_as_in_memory(sleep):
    data = sleep.assign(g=sleep.Subject.astype(int), f=np.where(sleep.Days % 2 == 0, "even", "odd"))
    memory, on_dask = _both("Reaction ~ Days + f + (1 | g)", data)
    new = data.head(4).assign(g=[308.0, np.nan, 308.0, 309.0])

    def dask_predict(frame, **kwargs):
        return on_dask.predict(dd.from_pandas(frame, npartitions=2), **kwargs).compute()

    # 308.0 is the level 308; a missing level is refused unless allowed.
    with pytest.raises(mm.DataError, match="grouping factor 'g' is missing"):
        memory.predict(new)
    with pytest.raises(mm.DataError, match="grouping factor 'g' is missing"):
        dask_predict(new)
    np.testing.assert_allclose(
        dask_predict(new, allow_new_levels=True),
        memory.predict(new, allow_new_levels=True),
        rtol=1e-6,
    )
    unseen = new.assign(g=308, f=["even", "weekend", "odd", "odd"])
    for predict in (memory.predict, dask_predict):
        with pytest.raises(mm.DataError, match="column 'f' has level 'weekend'"):
            predict(unseen)
    missing = new.assign(g=308, f=["even", None, "odd", "odd"])
    np.testing.assert_allclose(dask_predict(missing), memory.predict(missing), rtol=1e-6)
    assert np.isnan(dask_predict(missing).iloc[1])
    text = new.assign(g=308, Days=["1", "2", "3", "4"])
    for predict in (memory.predict, dask_predict):
        with pytest.raises(mm.DataError, match="column 'Days' holds numbers"):
            predict(text)
