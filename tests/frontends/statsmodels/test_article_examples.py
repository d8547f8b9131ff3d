"""Every code block of the tutorial article, run as written and compared with lme4.

The article (``seeds/article-mixed-effects-regression-in-python.txt``) writes
statsmodels-style calls that statsmodels never accepted.  Each block below is
the article's code with only the import and the data changed (the synthetic
``students`` data set shipped with the package); the fit is compared with
lme4's fit of the lme4 formula the code means (``students_*`` references).
``docs/statsmodels.md`` explains each meaning.

Every block is fitted in the default run (about four seconds in all).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedmodels as smf  # the article: import statsmodels.formula.api as smf
from mixedmodels.errors import MixedModelsError
from tests.conftest import read_reference as reference

INTERCEPTS = "test_score ~ age + sex + (1|classroom) + (1|school) + (1|province)"
SLOPE = "test_score ~ age + sex + (age|classroom) + (1|school) + (1|province)"
ALL_SLOPES = "test_score ~ age + sex + (age|classroom) + (age|school) + (age|province)"
EXAMPLE_3 = "test_score ~ age + sex + (1|classroom) + (1|school:classroom)"
CROSSED = "test_score ~ age + sex + (1|classroom) + (1|school) + (1|province) + (1|student_id)"


def same_formula(ours: str, theirs: str) -> bool:
    """The same lme4 formula up to spaces (lme4_formula writes ``(1 | g)``)."""
    return ours.replace(" ", "") == theirs.replace(" ", "")


def assert_matches_lme4(model, name: str) -> None:
    """A fitted article model against lme4's fit of the formula it means."""
    ref = reference(name)
    assert same_formula(model.lme4_formula, ref["formula"])
    assert model.lmm.objective <= ref["objective"] + 1e-4
    assert model.nobs == ref["nobs"]
    assert sorted(model.lmm.ngroups.values()) == sorted(ref["ngroups"].values())
    se = np.array(ref["stderr"])
    fixef = [ref["fixef"][name] for name in ref["fixef_names"]]
    np.testing.assert_allclose(model.fe_params.to_numpy(), fixef, atol=0.01 * se.min())
    np.testing.assert_allclose(model.bse_fe.to_numpy(), se, rtol=5e-3)
    assert model.scale == pytest.approx(ref["sigma"] ** 2, rel=1e-2)
    assert model.llf == pytest.approx(ref["logLik"], abs=1e-3)
    variances = np.concatenate([np.diag(model.cov_re.to_numpy()), model.vcomp])
    sds = np.sort([sd for block in ref["varcorr"] for sd in block["sd"]])
    np.testing.assert_allclose(
        np.sort(np.sqrt(variances)), sds, rtol=1e-2, atol=1e-3 * ref["sigma"]
    )
    assert model.is_singular == ref["is_singular"]


@pytest.fixture(scope="module")
def data():
    # Data Preparation.  The article: data = pd.read_csv('your_data_file.csv')
    import pandas as pd  # noqa: F401  (the article's import)

    data = smf.datasets.load("students")
    return data


def fit(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


# -- Model Specification --------------------------------------------------------------


def test_model_specification(data):
    formula = "test_score ~ age + sex + (1|classroom) + (1|school) + (1|province)"

    model = fit(lambda: smf.mixedlm(formula, data, groups=data["student_id"]).fit())

    # groups is one more random intercept, per student.
    assert_matches_lme4(model, "students_seed_crossed_reml")


# -- Adding Random Slopes ---------------------------------------------------------------


def test_adding_random_slopes_translation(data):
    formula = "test_score ~ age + sex + (age|classroom) + (1|school) + (1|province)"

    md = smf.mixedlm(formula, data, groups=data["student_id"])
    assert same_formula(md.lme4_formula, reference("students_article_slope_groups_reml")["formula"])


def test_adding_random_slopes_fit(data):
    formula = "test_score ~ age + sex + (age|classroom) + (1|school) + (1|province)"

    model = fit(lambda: smf.mixedlm(formula, data, groups=data["student_id"]).fit())
    assert_matches_lme4(model, "students_article_slope_groups_reml")


# -- Specifying Covariance Structures -------------------------------------------------


def test_vc_formula_translation(data):
    formula = SLOPE  # the formula in force at this point of the article
    vc_formula = {"classroom": "diag", "school": "diag", "province": "diag"}

    md = smf.mixedlm(formula, data, groups=data["student_id"], vc_formula=vc_formula)
    assert same_formula(md.lme4_formula, reference("students_article_diag_groups_reml")["formula"])


def test_vc_formula_fit(data):
    formula = SLOPE
    vc_formula = {"classroom": "diag", "school": "diag", "province": "diag"}

    model = fit(
        lambda: smf.mixedlm(formula, data, groups=data["student_id"], vc_formula=vc_formula).fit()
    )
    assert_matches_lme4(model, "students_article_diag_groups_reml")


def test_vc_formula_with_the_intercepts_formula(data):
    # Read with the first call's formula instead: intercepts have no correlation
    # to remove, so "diag" changes nothing and the model is the first call's.
    formula = INTERCEPTS
    vc_formula = {"classroom": "diag", "school": "diag", "province": "diag"}

    model = fit(
        lambda: smf.mixedlm(formula, data, groups=data["student_id"], vc_formula=vc_formula).fit()
    )
    assert_matches_lme4(model, "students_seed_crossed_reml")


def test_re_formula(data):
    formula = INTERCEPTS  # random intercepts for all grouping variables, as the prose says
    re_formula = {"classroom": "~1", "school": "~1", "province": "~1"}

    model = fit(
        lambda: smf.mixedlm(formula, data, groups=data["student_id"], re_formula=re_formula).fit()
    )
    # The dict's terms are the formula's own: merged, the first call's model.
    assert_matches_lme4(model, "students_seed_crossed_reml")


def test_re_formula_after_the_slope_formula_is_a_reported_conflict(data):
    formula = SLOPE  # the formula literally in force at this point of the article
    re_formula = {"classroom": "~1", "school": "~1", "province": "~1"}

    with pytest.raises(
        MixedModelsError, match=r"classroom.*\(1 \| classroom\).*\(age \| classroom\)"
    ):
        smf.mixedlm(formula, data, groups=data["student_id"], re_formula=re_formula)


# -- Formula Syntax and Examples --------------------------------------------------------


def test_formula_syntax_placeholder_is_refused(data):
    formula = "test_score ~ age + sex + ..."

    with pytest.raises(MixedModelsError, match=r"\.\.\."):
        smf.mixedlm(formula, data, groups=data["student_id"])


@pytest.mark.parametrize(
    ("formula", "name"),
    [
        # Formula Syntax, Example 1 and "1) Random intercepts only".
        pytest.param(INTERCEPTS, "students_intercepts_reml", id="intercepts"),
        # Example 3.
        pytest.param(EXAMPLE_3, "students_article_example3_reml", id="example3"),
        # "3) Crossed random effects".
        pytest.param(CROSSED, "students_seed_crossed_reml", id="crossed"),
        # Formula Syntax (slopes), Example 2 and "2) Random intercepts and slopes".
        pytest.param(ALL_SLOPES, "students_seed_all_slopes_reml", id="all_slopes"),
    ],
)
def test_example_formulas(data, formula, name):
    # The examples are formulas for mixedlm(); fitted as they stand, without groups.
    model = fit(lambda: smf.mixedlm(formula, data).fit())
    assert_matches_lme4(model, name)


def test_all_slopes_translation(data):
    md = smf.mixedlm(ALL_SLOPES, data)
    assert same_formula(md.lme4_formula, reference("students_seed_all_slopes_reml")["formula"])
