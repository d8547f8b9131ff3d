"""The bundled data sets: names, dtypes, factor levels as lme4 saw them, fresh copies."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels import datasets
from tests.conftest import read_reference, reference_paths

# What issue 8 promises to ship.
PROMISED = {
    "sleepstudy",
    "dietox",
    "Dyestuff",
    "Dyestuff2",
    "Penicillin",
    "Pastes",
    "cake",
    "InstEval",
    "Exam",
    "ScotsSec",
    "Orthodont",
    "Machines",
    "egsingle",
    "students",
    # and issue 13, for generalized linear mixed models
    "cbpp",
    "Contraception",
    "grouseticks",
    "VerbAgg",
}


def _references() -> list[dict]:
    refs = []
    for path in reference_paths("lmm", "extra"):
        ref = json.loads(path.read_text())
        if "dataset_path" not in ref and ref.get("dataset") in PROMISED:
            refs.append(ref)
    return refs


REFERENCES = _references()


def test_names_are_the_promised_data_sets():
    assert set(datasets.names()) == PROMISED
    assert datasets.names() == sorted(PROMISED, key=str.lower)


@pytest.mark.parametrize("name", sorted(PROMISED))
def test_factor_columns_are_categoricals(name):
    frame = datasets.load(name)
    assert set(datasets.FACTORS[name]) <= set(frame.columns)
    for column in frame.columns:
        is_factor = isinstance(frame[column].dtype, pd.CategoricalDtype)
        assert is_factor == (column in datasets.FACTORS[name]), column
        if is_factor:
            categories = list(frame[column].cat.categories)
            assert categories == sorted(categories)
            assert not frame[column].cat.ordered
        else:
            assert pd.api.types.is_numeric_dtype(frame[column]), column


@pytest.mark.parametrize("ref", REFERENCES, ids=[r["id"] for r in REFERENCES])
def test_levels_and_sizes_match_lme4(ref):
    frame = datasets.load(ref["dataset"])
    assert len(frame) >= ref["nobs"]
    for block in ref["ranef"]:
        group = block["group"]
        if group not in frame.columns:  # interactions such as cask:batch
            continue
        categories = frame[group].cat.categories
        assert len(categories) == block["n_levels"] == ref["ngroups"][group]
        labels = [str(c) for c in categories]
        if pd.api.types.is_string_dtype(categories.dtype) or categories.dtype == object:
            # Text labels: the same levels in the same (byte) order as lme4's.
            assert labels[: len(block["levels"])] == block["levels"]
        else:
            # Integer identifiers sort numerically here, as text in R.
            assert set(block["levels"]) <= set(labels)


def test_treatment_contrasts_use_lme4s_reference_level():
    frame = datasets.load("Orthodont")
    model = mm.LinearMixedModel("distance ~ age * Sex + (age | Subject)", frame)
    ref = read_reference("lmm/orthodont_slope_reml")
    assert model.design.fixed_names == ref["fixef_names"]


def test_integer_labelled_grouping_factor_is_not_a_number():
    # With Subject an integer column, `~ Subject` would fit one slope; as a
    # factor it fits one coefficient per subject but the first, as lme4 does.
    frame = datasets.load("sleepstudy")
    model = mm.LinearMixedModel("Reaction ~ Days + Subject + (0 + Days | Subject)", frame)
    assert len(model.design.fixed_names) == 2 + frame["Subject"].nunique() - 1


def test_load_returns_a_fresh_copy():
    first = datasets.load("Dyestuff")
    first.loc[0, "Yield"] = -1
    first["extra"] = 1
    second = datasets.load("Dyestuff")
    assert "extra" not in second.columns
    assert second.loc[0, "Yield"] != -1


def test_load_is_case_insensitive():
    pd.testing.assert_frame_equal(datasets.load("DYESTUFF"), datasets.load("Dyestuff"))


def test_unknown_name_is_a_clear_error():
    with pytest.raises(mm.DataError, match=r"no data set named 'sleepstudies'.*sleepstudy"):
        datasets.load("sleepstudies")
    with pytest.raises(mm.DataError, match="must be a string"):
        datasets.load(3)


def test_describe_lists_every_data_set():
    table = datasets.describe()
    assert list(table.index) == datasets.names()
    for name in table.index:
        frame = datasets.load(name)
        assert table.loc[name, "rows"] == len(frame)
        assert table.loc[name, "columns"] == frame.shape[1]
