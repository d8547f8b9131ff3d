"""Warnings and errors point at the user's code, not at the library's."""

from __future__ import annotations

import traceback
import warnings

import pytest

import mixedmodels as mm


def _caught(call) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


@pytest.mark.parametrize(
    ("call", "category"),
    [
        (
            lambda: mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff2")),
            mm.SingularFitWarning,
        ),
        (
            lambda: mm.LinearMixedModel(
                "Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff2")
            ).fit(),
            mm.SingularFitWarning,
        ),
        (
            lambda: mm.lmer(
                "Reaction ~ Days + I(2 * Days) + (1 | Subject)", mm.datasets.load("sleepstudy")
            ),
            mm.RankDeficiencyWarning,
        ),
        (
            lambda: mm.lmer(
                "Reaction ~ sqrt(Days - 3) + (1 | Subject)", mm.datasets.load("sleepstudy")
            ),
            mm.MissingValuesWarning,
        ),
    ],
    ids=["singular-lmer", "singular-fit", "rank", "missing"],
)
def test_warnings_name_the_users_line(call, category):
    caught = [w for w in _caught(call) if issubclass(w.category, category)]
    assert caught
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]


def test_formula_error_has_a_short_traceback():
    data = mm.datasets.load("sleepstudy")
    with pytest.raises(mm.FormulaError) as info:
        mm.lmer("Reaction ~ Days + (Days | Subject", data)
    err = info.value
    assert err.__cause__ is None and err.__suppress_context__
    frames = traceback.extract_tb(err.__traceback__)
    # This test, lmer and the model's constructor: no parser frames.
    assert len(frames) <= 3, [f.name for f in frames]
    assert all("formula" not in f.filename.replace("\\\\", "/").split("/")[-2] for f in frames[1:])
    lines = str(err).splitlines()
    assert lines[-1].strip() == "^" and lines[-2].strip() == "Reaction ~ Days + (Days | Subject"
    assert lines[-2][lines[-1].index("^")] == "("


def test_statsmodels_front_door_formula_error_has_a_short_traceback():
    data = mm.datasets.load("dietox")
    with pytest.raises(mm.FormulaError) as info:
        mm.mixedlm("Weight ~ Time + foo(Time)", data, groups="Pig")
    frames = traceback.extract_tb(info.value.__traceback__)
    # This test, mixedlm and from_formula: no translation or parser frames.
    assert len(frames) <= 3, [f.name for f in frames]
    assert "foo" in str(info.value)
