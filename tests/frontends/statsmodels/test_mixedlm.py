"""statsmodels' ``mixedlm`` front door: each form, its lme4 formula and lme4's answers.

Fits are compared with lme4's results for the formula the call means
(tests/data/lmm, tests/data/extra, tests/data/mixedlm) and with what
statsmodels itself reports where the meaning is statsmodels' own (variance
parameters relative to the scale and their Hessian standard errors,
tests/data/mixedlm/statsmodels_reference.json).
"""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import mixedmodels as smf
from mixedmodels.errors import DataError, FormulaError, MixedModelsError
from tests.conftest import DATA, ROOT
from tests.conftest import read_reference as reference

DOCS = ROOT / "docs" / "statsmodels.md"


def statsmodels_reference(case_id: str) -> dict:
    payload = json.loads((DATA / "mixedlm" / "statsmodels_reference.json").read_text())
    return next(case for case in payload["models"] if case["id"] == case_id)


def fit_quietly(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(**kwargs)


def assert_matches_lme4(result, ref: dict) -> None:
    """The fit of a mixedlm call against lme4's fit of the formula it means."""
    lmm = result.lmm
    assert lmm.objective <= ref["objective"] + 1e-4
    assert result.nobs == ref["nobs"]
    assert sorted(lmm.ngroups.values()) == sorted(ref["ngroups"].values())
    se_ref = np.array(ref["stderr"], dtype=float)
    fixef = [ref["fixef"][name] for name in ref["fixef_names"]]
    np.testing.assert_allclose(result.fe_params.to_numpy(), fixef, atol=0.01 * se_ref.min())
    np.testing.assert_allclose(result.bse_fe.to_numpy(), se_ref, rtol=5e-3)
    assert result.scale == pytest.approx(ref["sigma"] ** 2, rel=1e-2)
    assert result.llf == pytest.approx(ref["logLik"], abs=1e-3)
    assert result.aic == pytest.approx(ref["AIC"], abs=1e-3)
    assert result.bic == pytest.approx(ref["BIC"], abs=1e-3)
    # Every variance, wherever statsmodels files it (cov_re or vcomp), is one of lme4's.
    # Compared as standard deviations, with the bounds of test_lme4_reference.
    variances = np.concatenate([np.diag(result.cov_re.to_numpy()), result.vcomp])
    theirs = np.sort([sd for block in ref["varcorr"] for sd in block["sd"]])
    np.testing.assert_allclose(
        np.sort(np.sqrt(variances)), theirs, rtol=1e-2, atol=1e-3 * ref["sigma"]
    )
    n_head = len(ref["fitted_head"])
    sigma = ref["sigma"]
    np.testing.assert_allclose(
        result.fittedvalues.to_numpy()[:n_head], ref["fitted_head"], atol=0.01 * sigma
    )
    np.testing.assert_allclose(
        result.resid.to_numpy()[:n_head], ref["resid_head"], atol=0.01 * sigma
    )


@pytest.fixture(scope="module")
def dietox():
    return smf.datasets.load("dietox")


@pytest.fixture(scope="module")
def sleep():
    return smf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def notebook_fit(dietox):
    return fit_quietly(smf.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"]))


# -- the notebook --------------------------------------------------------------------


NOTEBOOK_SUMMARY = """\
         Mixed Linear Model Regression Results
========================================================
Model:            MixedLM Dependent Variable: Weight    
No. Observations: 861     Method:             REML      
No. Groups:       72      Scale:              11.3669   
Min. group size:  11      Log-Likelihood:     -2404.7753
Max. group size:  12      Converged:          Yes       
Mean group size:  12.0                                  
--------------------------------------------------------
             Coef.  Std.Err.    z    P>|z| [0.025 0.975]
--------------------------------------------------------
Intercept    15.724    0.788  19.952 0.000 14.179 17.268
Time          6.943    0.033 207.939 0.000  6.877  7.008
Group Var    40.394    2.149                            
========================================================
"""  # noqa: W291 (statsmodels pads the table's cells with trailing spaces)


def test_notebook_summary_is_statsmodels_layout_with_its_numbers(notebook_fit):
    # The notebook's printout, line for line; the notebook's older statsmodels
    # labelled the log-likelihood "Likelihood:" and its rendering lost the
    # "=" rules, which current statsmodels prints as here.
    assert str(notebook_fit.summary()) == NOTEBOOK_SUMMARY


def test_notebook_summary_equals_statsmodels_own(notebook_fit):
    assert str(notebook_fit.summary()) == statsmodels_reference("dietox_notebook")["summary"]


def test_notebook_fit_is_lme4s(notebook_fit):
    assert notebook_fit.model.lme4_formula == "Weight ~ Time + (1 | Pig)"
    assert_matches_lme4(notebook_fit, reference("dietox_intercept_reml"))
    assert notebook_fit.converged


def test_statsmodels_parametrisation(notebook_fit):
    ref = statsmodels_reference("dietox_notebook")
    params, bse = notebook_fit.params, notebook_fit.bse
    assert list(params.index) == list(ref["params"])
    np.testing.assert_allclose(params.to_numpy(), list(ref["params"].values()), rtol=1e-4)
    np.testing.assert_allclose(bse.to_numpy(), list(ref["bse"].values()), rtol=1e-3)
    # "Group Var" in params is relative to the scale; cov_re holds the variance.
    assert params["Group Var"] * notebook_fit.scale == pytest.approx(
        notebook_fit.cov_re.loc["Group", "Group"]
    )
    assert notebook_fit.tvalues["Time"] == pytest.approx(params["Time"] / bse["Time"])
    assert notebook_fit.pvalues["Group Var"] == pytest.approx(
        2 * scipy.stats.norm.sf(params["Group Var"] / bse["Group Var"])
    )
    ci = notebook_fit.conf_int()
    assert list(ci.columns) == [0, 1]
    np.testing.assert_allclose(ci.loc["Intercept"], [14.179, 17.268], atol=1e-3)
    np.testing.assert_allclose(
        notebook_fit.conf_int(alpha=0.1).loc["Time"],
        params["Time"] + np.array([-1, 1]) * scipy.stats.norm.ppf(0.95) * bse["Time"],
    )


@pytest.mark.parametrize(
    "case_id",
    ["sleepstudy_slope", "pastes_vc", "pastes_vc_only", "sleepstudy_vc_slope"],
    ids=str,
)
def test_variance_parameters_as_statsmodels_reports_them(case_id):
    case = statsmodels_reference(case_id)
    data = smf.datasets.load(case["dataset"])
    # statsmodels' vc_formula without re_formula drops the groups' intercept:
    # re_formula="0" here (see docs/statsmodels.md).
    re_formula = case.get("re_formula", "0" if case.get("vc_formula") else None)
    result = fit_quietly(
        smf.mixedlm(
            case["formula"],
            data,
            groups=case["groups"],
            re_formula=re_formula,
            vc_formula=case.get("vc_formula"),
        )
    )
    assert list(result.params.index) == list(case["params"])
    # statsmodels stops its optimizer a little away from lme4's optimum.
    np.testing.assert_allclose(result.params.to_numpy(), list(case["params"].values()), rtol=2e-3)
    np.testing.assert_allclose(result.bse.to_numpy(), list(case["bse"].values()), rtol=2e-3)
    assert result.llf >= case["llf"] - 1e-6
    # Same layout: every line as long as statsmodels' and with the same labels.
    ours, theirs = str(result.summary()).splitlines(), case["summary"].splitlines()
    assert [len(line) for line in ours] == [len(line) for line in theirs]
    label = re.compile(r"^[A-Za-z][^\d-]*?(?=\s{2}|\s-?\d|$)")
    assert [label.findall(line) for line in ours] == [label.findall(line) for line in theirs]


# -- each form, its lme4 formula ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"groups": "Pig"}, "Weight ~ Time + (1 | Pig)"),
        ({"groups": "Pig", "re_formula": "~Time"}, "Weight ~ Time + (Time | Pig)"),
        ({"groups": "Pig", "re_formula": "1 + Time"}, "Weight ~ Time + (1 + Time | Pig)"),
        ({"groups": "Pig", "re_formula": "~0 + Time"}, "Weight ~ Time + (0 + Time | Pig)"),
        (
            {"groups": "Pig", "re_formula": "~Time", "vc_formula": {"Pig": "diag"}},
            "Weight ~ Time + (Time || Pig)",
        ),
        (
            {"groups": "Pig", "vc_formula": {"Evit": "0 + C(Evit)"}},
            "Weight ~ Time + (1 | Pig) + (1 | Pig:Evit)",
        ),
        (
            {"groups": "Pig", "vc_formula": {"T": "0 + Time"}},
            "Weight ~ Time + (1 | Pig) + (0 + Time | Pig)",
        ),
        (
            {"groups": "Pig", "re_formula": "0", "vc_formula": {"cu": "0 + C(Cu)"}},
            "Weight ~ Time + (1 | Pig:Cu)",
        ),
        (
            {"re_formula": {"Pig": "~Time", "Litter": "~1"}},
            "Weight ~ Time + (Time | Pig) + (1 | Litter)",
        ),
    ],
)
def test_translation(dietox, kwargs, expected):
    assert smf.mixedlm("Weight ~ Time", dietox, **kwargs).lme4_formula == expected


def test_bar_terms_work_alongside_groups(dietox):
    md = smf.mixedlm("Weight ~ Time + (1 | Litter) + (0 + Time | Litter)", dietox, groups="Pig")
    assert md.lme4_formula == "Weight ~ Time + (1 | Litter) + (0 + Time | Litter) + (1 | Pig)"


def test_identical_terms_are_merged(dietox):
    md = smf.mixedlm(
        "Weight ~ Time + (Time | Pig) + (1 | Litter)",
        dietox,
        groups="Pig",
        re_formula={"Pig": "~Time", "Litter": "~1"},
    )
    assert md.lme4_formula == "Weight ~ Time + (Time | Pig) + (1 | Litter)"
    # The same grouping written the other way round is the same grouping.
    md = smf.mixedlm("Weight ~ Time + (1 | Litter:Evit)", dietox, re_formula={"Evit:Litter": "1"})
    assert md.lme4_formula == "Weight ~ Time + (1 | Litter:Evit)"


def test_groups_without_re_formula_adopts_the_formulas_terms(dietox):
    md = smf.mixedlm("Weight ~ Time + (Time | Pig)", dietox, groups="Pig")
    assert md.lme4_formula == "Weight ~ Time + (Time | Pig)"


def test_conflicting_terms_raise_naming_both(dietox):
    with pytest.raises(MixedModelsError, match=r"Pig.*\(1 \| Pig\).*\(Time \| Pig\)"):
        smf.mixedlm("Weight ~ Time + (Time | Pig)", dietox, re_formula={"Pig": "~1"})
    with pytest.raises(MixedModelsError, match=r"groups gives \(0 \+ Time \| Pig\)"):
        smf.mixedlm("Weight ~ Time + (1 | Pig)", dietox, groups="Pig", re_formula="~0 + Time")


def test_unstructured_correlates_what_was_separate(sleep):
    md = smf.mixedlm(
        "Reaction ~ Days + (Days || Subject)", sleep, vc_formula={"Subject": "unstructured"}
    )
    assert md.lme4_formula == "Reaction ~ Days + (Days | Subject)"
    md = smf.mixedlm(
        "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
        sleep,
        vc_formula={"Subject": "unstructured"},
    )
    assert md.lme4_formula == "Reaction ~ Days + (1 + Days | Subject)"


def test_diag_leaves_single_effects_alone(sleep):
    md = smf.mixedlm("Reaction ~ Days + (1 | Subject)", sleep, vc_formula={"Subject": "diag"})
    assert md.lme4_formula == "Reaction ~ Days + (1 | Subject)"


def test_groups_as_array_goes_to_a_copy_under_a_fresh_name(sleep):
    before = sleep.copy()
    ids = sleep["Subject"].astype(str).to_numpy()
    md = smf.mixedlm("Reaction ~ Days", sleep, groups=ids)
    assert md.lme4_formula == "Reaction ~ Days + (1 | groups)"
    assert "groups" in md.data.columns
    pd.testing.assert_frame_equal(sleep, before)
    # A name already taken is not reused; a named Series keeps its name.
    taken = sleep.assign(groups=0)
    assert smf.mixedlm("Reaction ~ Days", taken, groups=ids).lme4_formula.endswith("(1 | groups_2)")
    named = pd.Series(ids, name="subj")
    assert smf.mixedlm("Reaction ~ Days", sleep, groups=named).lme4_formula.endswith("(1 | subj)")


def test_groups_array_fit_equals_column_fit(sleep):
    by_column = fit_quietly(smf.mixedlm("Reaction ~ Days", sleep, groups="Subject"))
    by_array = fit_quietly(smf.mixedlm("Reaction ~ Days", sleep, groups=list(sleep["Subject"])))
    assert by_array.llf == pytest.approx(by_column.llf, abs=1e-8)
    # statsmodels names the variance after the column, or "Group" for an array.
    assert list(by_column.params.index)[-1] == "Subject Var"
    assert list(by_array.params.index)[-1] == "Group Var"


def test_dict_of_columns_and_numpy_spellings(sleep):
    columns = {name: sleep[name].to_numpy() for name in sleep.columns}
    md = smf.mixedlm("Reaction ~ np.log(Days + 1)", columns, groups="Subject")
    assert md.lme4_formula == "Reaction ~ log(Days + 1) + (1 | Subject)"
    assert_matches_lme4(fit_quietly(md, reml=False), reference("sleepstudy_log_ml"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"groups": "Piglet"}, DataError, "'Piglet'"),
        ({"groups": [1, 2, 3]}, DataError, "one value per row"),
        ({"re_formula": "~Time"}, MixedModelsError, "give groups"),
        ({"vc_formula": {"e": "0 + C(Evit)"}}, MixedModelsError, "give groups"),
        ({"groups": "Pig", "vc_formula": {"e": "C(Evit)"}}, MixedModelsError, "without intercept"),
        (
            {"groups": "Pig", "vc_formula": {"e": "0 + C(Evit) + C(Cu)"}},
            MixedModelsError,
            "own entry",
        ),
        ({"groups": "Pig", "vc_formula": {"Litter": "diag"}}, MixedModelsError, "'Litter'"),
        ({"groups": "Pig", "vc_formula": "0 + C(Evit)"}, MixedModelsError, "must be a dict"),
        ({"re_formula": {"Sow": "~1"}}, DataError, "'Sow'"),
        ({"re_formula": {"Pig": "~ Time | Pig"}}, FormulaError, "one-sided"),
        ({}, MixedModelsError, "no random effects"),
    ],
)
def test_bad_calls_get_clear_errors(dietox, kwargs, error, message):
    with pytest.raises(error, match=message):
        smf.mixedlm("Weight ~ Time", dietox, **kwargs)


def test_bad_formula_is_reported_against_what_was_written(dietox):
    with pytest.raises(FormulaError, match=r"\^"):
        smf.mixedlm("Weight ~ Time +", dietox, groups="Pig")


# -- fits of the forms against lme4 ---------------------------------------------------


def test_random_slope(dietox):
    result = fit_quietly(smf.mixedlm("Weight ~ Time", dietox, groups="Pig", re_formula="~Time"))
    assert_matches_lme4(result, reference("dietox_slope_reml"))
    cov = result.cov_re
    assert list(cov.index) == ["Pig", "Time"]
    assert np.allclose(cov.to_numpy(), cov.to_numpy().T)
    assert list(result.params.index) == [
        "Intercept",
        "Time",
        "Pig Var",
        "Pig x Time Cov",
        "Time Var",
    ]
    assert result.k_re2 == 3 and result.k_vc == 0


def test_diag_with_slopes_ml(dietox):
    md = smf.mixedlm(
        "Weight ~ Time", dietox, groups="Pig", re_formula="~Time", vc_formula={"Pig": "diag"}
    )
    result = fit_quietly(md, reml=False)
    assert result.method == "ML"
    assert_matches_lme4(result, reference("dietox_slope_diag_ml"))
    assert result.cov_re.loc["Pig", "Time"] == 0.0
    assert "Pig x Time Cov" not in result.params.index


def test_vc_formula_is_nested_in_groups():
    pastes = smf.datasets.load("Pastes")
    result = fit_quietly(
        smf.mixedlm("strength ~ 1", pastes, groups="batch", vc_formula={"cask": "0 + C(cask)"})
    )
    assert_matches_lme4(result, reference("pastes_nested_reml"))
    assert list(result.params.index) == ["Intercept", "batch Var", "cask Var"]
    assert result.vcomp.shape == (1,)


def test_vc_formula_slope(sleep):
    md = smf.mixedlm("Reaction ~ Days", sleep, groups="Subject", vc_formula={"Days": "0 + Days"})
    assert_matches_lme4(fit_quietly(md), reference("sleepstudy_int_plus_slope_reml"))


def test_re_formula_dict_without_groups():
    penicillin = smf.datasets.load("Penicillin")
    md = smf.mixedlm("diameter ~ 1", penicillin, re_formula={"plate": "~1", "sample": "~1"})
    result = fit_quietly(md)
    assert_matches_lme4(result, reference("penicillin_crossed_reml"))
    # Without groups the formula's first grouping is statsmodels' "group".
    assert list(result.cov_re.index) == ["plate"]
    assert result.n_groups == 24
    assert set(result.random_effects) == set(result.lmm.ranef["plate"].index)


def test_ml_fit_of_crossed_terms():
    penicillin = smf.datasets.load("Penicillin")
    md = smf.mixedlm("diameter ~ (1 | plate)", penicillin, groups="sample")
    assert_matches_lme4(fit_quietly(md, reml=False), reference("penicillin_crossed_ml"))


# -- results --------------------------------------------------------------------------


def test_random_effects_fitted_and_predictions(sleep):
    result = fit_quietly(
        smf.mixedlm("Reaction ~ Days", sleep, groups="Subject", re_formula="~Days")
    )
    ref = reference("sleepstudy_slope_reml")
    block = ref["ranef"][0]
    effects = result.random_effects
    # Keyed by the values of the data (Subject is 308, 309, ...), as in statsmodels.
    assert 308 in effects
    effects = {str(level): series for level, series in effects.items()}
    assert len(effects) == block["n_levels"]
    for level, values in zip(block["levels"], block["values"], strict=False):
        np.testing.assert_allclose(effects[level].to_numpy(), values, atol=0.05)
    assert list(effects[block["levels"][0]].index) == ["Subject", "Days"]
    # fittedvalues include the random effects; predict() is the fixed part only.
    np.testing.assert_allclose(result.fittedvalues + result.resid, sleep["Reaction"])
    marginal = result.fe_params["Intercept"] + result.fe_params["Days"] * sleep["Days"]
    np.testing.assert_allclose(result.predict(), marginal)
    new = pd.DataFrame({"Days": [0.0, 10.0, np.nan]})
    predicted = result.predict(new)
    np.testing.assert_allclose(
        predicted[:2], result.fe_params["Intercept"] + result.fe_params["Days"] * new["Days"][:2]
    )
    assert math.isnan(predicted.iloc[2])


def test_predict_with_factors_uses_the_training_levels():
    students = smf.datasets.load("students").head(600)
    result = fit_quietly(smf.mixedlm("test_score ~ age + sex", students, groups="school"))
    assert list(result.fe_params.index) == ["Intercept", "age", "sex[T.M]"]
    new = pd.DataFrame({"age": [12.0, 12.0], "sex": ["M", "F"]})
    got = result.predict(new)
    fe = result.fe_params
    np.testing.assert_allclose(
        got, [fe["Intercept"] + 12 * fe["age"] + fe["sex[T.M]"], fe["Intercept"] + 12 * fe["age"]]
    )


def test_singular_fit_says_so_in_the_summary():
    dyestuff2 = smf.datasets.load("Dyestuff2")
    result = fit_quietly(smf.mixedlm("Yield ~ 1", dyestuff2, groups="Batch"))
    assert_matches_lme4(result, reference("dyestuff2_singular_reml"))
    text = str(result.summary())
    assert result.is_singular
    assert "The fit is singular" in text
    assert math.isnan(result.bse["Batch Var"])
    var_line = next(line for line in text.splitlines() if line.startswith("Batch Var"))
    assert var_line.split() == ["Batch", "Var", "0.000"]


def test_fitting_twice_keeps_both_results(sleep):
    md = smf.mixedlm("Reaction ~ Days", sleep, groups="Subject", re_formula="~Days")
    reml, ml = fit_quietly(md), fit_quietly(md, reml=False)
    again = fit_quietly(md)
    assert reml.method == "REML" and ml.method == "ML"
    assert reml.llf == pytest.approx(reference("sleepstudy_slope_reml")["logLik"], abs=1e-3)
    assert ml.llf == pytest.approx(reference("sleepstudy_slope_ml")["logLik"], abs=1e-3)
    assert again.llf == pytest.approx(reml.llf, abs=1e-8)
    assert reml.scale != ml.scale


# -- the docs page --------------------------------------------------------------------


def docs_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def test_docs_code_blocks_run():
    blocks = docs_blocks()
    assert len(blocks) >= 8
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, str(DOCS), "exec"), namespace)
