"""``mm.anova`` prints as lme4 and lmerTest print ``anova()``; labels, heading, notes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import mixedmodels as mm

DATA = Path(__file__).parent.parent / "data" / "summaries"


def _r_text(name: str) -> list[str]:
    return [line.rstrip() for line in json.loads((DATA / f"{name}.json").read_text())["text"]]


@pytest.fixture(scope="module")
def sleep_models():
    d = mm.datasets.load("sleepstudy")
    m0 = mm.lmer("Reaction ~ Days + (1 | Subject)", d)
    m1 = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    m0.data_name = m1.data_name = "sleepstudy"
    return m0, m1


def test_likelihood_ratio_table_prints_as_lme4(sleep_models):
    m0, m1 = sleep_models
    table = mm.anova(m0=m0, m1=m1)
    assert str(table).splitlines() == _r_text("anova_lrt_sleepstudy")
    assert list(table.index) == ["m0", "m1"]


def test_models_are_labelled_by_their_formulas(sleep_models):
    m0, m1 = sleep_models
    table = mm.anova(m1, m0)
    assert list(table.index) == [m0.design.formula.source, m1.design.formula.source]
    text = str(table)
    assert text.startswith("refitting model(s) with ML (instead of REML)\nData: sleepstudy\n")
    assert "Models:" not in text  # the labels are the formulas already
    assert "***" in text and "Signif. codes" in text
    assert "refitting" not in str(mm.anova(m0, m1, refit=False))


def test_type3_table_prints_as_lmertest():
    cake = mm.datasets.load("cake")
    m = mm.lmer("angle ~ recipe * temp + (1 | recipe:replicate)", cake)
    assert str(mm.anova(m)).splitlines() == _r_text("anova_type3_cake")


def test_the_table_is_still_a_dataframe_and_prints_in_full(sleep_models):
    m0, m1 = sleep_models
    table = mm.anova(m0, m1)
    assert isinstance(table, pd.DataFrame)
    assert type(table[["chisq"]]) is pd.DataFrame  # derived tables are plain
    with pd.option_context("display.width", 20, "display.max_columns", 2):
        assert "..." not in repr(table)
    page = table._repr_html_()
    assert "Pr(&gt;Chisq)" in page and "refitting" in page


def test_names_by_keyword_and_list_are_exclusive(sleep_models):
    m0, m1 = sleep_models
    with pytest.raises(mm.MixedModelsError, match="either"):
        mm.anova(a=m0, b=m1, names=["x", "y"])
