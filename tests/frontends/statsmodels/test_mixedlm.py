"""statsmodels' MixedLM API: each form, its model, and the numbers it reports.

Fits are compared with lme4's fits of the same model where lme4 can write it
(tests/data/lmm, tests/data/extra, tests/data/mixedlm) and with what
statsmodels itself reports (tests/data/mixedlm/statsmodels_reference.json,
which also holds a small simulated data set for the forms lme4 cannot write:
array input, variance components of several columns, ``fit(free=...)``).
The log-likelihood is checked against a direct dense computation written
here. statsmodels' own test file is run by ``dev/statsmodels_suite.py``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import mixedmodels as smf
from mixedmodels.errors import DataError, FormulaError, MixedModelsError
from mixedmodels.frontends.statsmodels import (
    BoundaryWarning,
    MixedLMConvergenceWarning,
    SingularMatrixWarning,
)
from mixedmodels.frontends.statsmodels.warning_classes import category
from tests.conftest import DATA, ROOT
from tests.conftest import read_reference as reference

DOCS = ROOT / "docs" / "statsmodels.md"
STATSMODELS = json.loads((DATA / "mixedlm" / "statsmodels_reference.json").read_text())


def statsmodels_case(case_id: str) -> dict:
    cases = STATSMODELS["models"] + STATSMODELS["simulated"]
    return next(case for case in cases if case["id"] == case_id)


def fit_quietly(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(**kwargs)


def assert_matches_lme4(result, ref: dict) -> None:
    """A fit against lme4's fit of the same model."""
    assert -2 * result.llf <= ref["objective"] + 1e-4
    assert result.llf == pytest.approx(ref["logLik"], abs=1e-3)
    assert result.nobs == ref["nobs"]
    se_ref = np.array(ref["stderr"], dtype=float)
    fixef = [ref["fixef"][name] for name in ref["fixef_names"]]
    np.testing.assert_allclose(np.asarray(result.fe_params), fixef, atol=0.01 * se_ref.min())
    # statsmodels' standard errors invert the full Hessian; lme4's vcov holds the
    # covariance parameters fixed. At the optimum they agree on these data sets.
    np.testing.assert_allclose(np.asarray(result.bse_fe), se_ref, rtol=1e-3)
    assert result.scale == pytest.approx(ref["sigma"] ** 2, rel=1e-2)
    if ref["REML"]:
        assert math.isnan(result.aic) and math.isnan(result.bic)
    else:
        assert result.aic == pytest.approx(ref["AIC"], abs=1e-3)
        assert result.bic == pytest.approx(ref["BIC"], abs=1e-3)
    cov_re = np.atleast_2d(np.asarray(result.cov_re))
    variances = np.concatenate([np.diag(cov_re), result.vcomp])
    theirs = np.sort([sd for block in ref["varcorr"] for sd in block["sd"]])
    np.testing.assert_allclose(
        np.sort(np.sqrt(variances)), theirs, rtol=1e-2, atol=1e-3 * ref["sigma"]
    )
    n_head = len(ref["fitted_head"])
    np.testing.assert_allclose(
        np.asarray(result.fittedvalues)[:n_head], ref["fitted_head"], atol=0.01 * ref["sigma"]
    )


def assert_matches_statsmodels(result, case: dict, rtol: float = 2e-3) -> None:
    """A fit against statsmodels' fit of the same call (which may stop a little short)."""
    params = np.asarray(result.params)
    np.testing.assert_allclose(
        params, np.asarray(list(np.ravel(_values(case["params"])))), rtol=rtol, atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(result.bse), _values(case["bse"]), rtol=rtol, atol=1e-6)
    assert result.llf >= case["llf"] - 1e-6
    assert result.llf == pytest.approx(case["llf"], abs=1e-3)


def _values(entry) -> np.ndarray:
    return np.asarray(list(entry.values()) if isinstance(entry, dict) else entry, dtype=float)


@pytest.fixture(scope="module")
def dietox():
    return smf.datasets.load("dietox")


@pytest.fixture(scope="module")
def sleep():
    return smf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def pastes():
    return smf.datasets.load("Pastes")


@pytest.fixture(scope="module")
def simulated():
    return pd.DataFrame(STATSMODELS["simulated_data"])


@pytest.fixture(scope="module")
def notebook_fit(dietox):
    return fit_quietly(smf.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"]))


# -- the notebook ---------------------------------------------------------------------


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


def test_notebook_summary_is_statsmodels_own(notebook_fit):
    assert str(notebook_fit.summary()) == NOTEBOOK_SUMMARY
    assert str(notebook_fit.summary()) == statsmodels_case("dietox_notebook")["summary"]


def test_notebook_fit_is_lme4s(notebook_fit):
    assert notebook_fit.model.lme4_formula == "Weight ~ Time + (1 | Pig)"
    assert_matches_lme4(notebook_fit, reference("dietox_intercept_reml"))
    assert notebook_fit.converged
    # The same model fitted by lmer, on demand.
    assert notebook_fit.lmm.objective == pytest.approx(-2 * notebook_fit.llf, abs=1e-6)


def test_statsmodels_parametrisation(notebook_fit):
    case = statsmodels_case("dietox_notebook")
    params, bse = notebook_fit.params, notebook_fit.bse
    assert list(params.index) == list(case["params"])
    np.testing.assert_allclose(params.to_numpy(), _values(case["params"]), rtol=1e-4)
    np.testing.assert_allclose(bse.to_numpy(), _values(case["bse"]), rtol=1e-4)
    # "Group Var" in params is relative to the scale; cov_re holds the variance.
    assert params["Group Var"] * notebook_fit.scale == pytest.approx(
        notebook_fit.cov_re.loc["Group", "Group"]
    )
    assert notebook_fit.bse_re["Group Var"] == pytest.approx(
        math.sqrt(notebook_fit.scale) * bse["Group Var"]
    )
    assert notebook_fit.tvalues["Time"] == pytest.approx(params["Time"] / bse["Time"])
    assert notebook_fit.pvalues["Group Var"] == pytest.approx(
        2 * scipy.stats.norm.sf(params["Group Var"] / bse["Group Var"])
    )
    ci = notebook_fit.conf_int()
    assert list(ci.columns) == [0, 1]
    np.testing.assert_allclose(ci.loc["Intercept"], [14.179, 17.268], atol=1e-3)
    cov = notebook_fit.cov_params()
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), bse.to_numpy())
    assert math.isnan(notebook_fit.aic) and math.isnan(notebook_fit.bic)


@pytest.mark.parametrize(
    "case_id",
    ["sleepstudy_slope", "pastes_vc", "pastes_vc_only", "pastes_vc_ml", "sleepstudy_vc_slope"],
)
def test_formula_models_report_statsmodels_numbers(case_id):
    case = statsmodels_case(case_id)
    data = smf.datasets.load(case["dataset"])
    result = fit_quietly(
        smf.mixedlm(
            case["formula"],
            data,
            groups=case["groups"],
            re_formula=case.get("re_formula"),
            vc_formula=case.get("vc_formula"),
        ),
        reml=case.get("reml", True),
    )
    assert list(result.params.index) == list(case["params"])
    assert_matches_statsmodels(result, case)
    if case.get("reml", True):
        assert math.isnan(result.aic)
    else:
        assert result.aic == pytest.approx(case["aic"], abs=1e-3)
    ours, theirs = str(result.summary()).splitlines(), case["summary"].splitlines()
    assert [len(line) for line in ours] == [len(line) for line in theirs]
    label = re.compile(r"^[A-Za-z][^\d-]*?(?=\s{2}|\s-?\d|$)")
    assert [label.findall(line) for line in ours] == [label.findall(line) for line in theirs]


def test_variance_components_without_re_formula_have_no_group_intercept(pastes):
    # statsmodels' model: the batch has no random intercept of its own.
    md = smf.mixedlm("strength ~ 1", pastes, groups="batch", vc_formula={"cask": "0 + C(cask)"})
    assert md.lme4_formula == "strength ~ 1 + (1 | batch:cask)"
    result = fit_quietly(md)
    assert result.k_re == 0 and result.cov_re.shape == (0, 0)
    assert result.llf == pytest.approx(statsmodels_case("pastes_vc_only")["llf"], abs=1e-3)
    # Each batch's effects are its casks', named as statsmodels names them.
    names = ["cask[C(cask)[a]]", "cask[C(cask)[b]]", "cask[C(cask)[c]]"]
    assert list(result.random_effects["A"].index) == names


def test_nested_variance_component_is_lme4s_nested_model(pastes):
    vc = {"cask": "0 + C(cask)"}
    md = smf.mixedlm("strength ~ 1", pastes, groups="batch", re_formula="1", vc_formula=vc)
    assert md.lme4_formula == "strength ~ 1 + (1 | batch) + (1 | batch:cask)"
    assert_matches_lme4(fit_quietly(md), reference("pastes_nested_reml"))


def test_a_factor_with_many_levels_per_group_is_a_nested_term():
    # Students within schools: about 90 columns per school; the component gets a
    # term of its own (a level per school and student), as lme4's nested term.
    students = smf.datasets.load("students")
    vc = {"student": "0 + C(student_id)"}
    md = smf.mixedlm(
        "test_score ~ age + sex", students, groups="school", re_formula="1", vc_formula=vc
    )
    assert sorted(t.n_levels for t in md.layout.terms) == [48, students["student_id"].nunique()]
    result = fit_quietly(md)
    assert result.llf == pytest.approx(result.lmm.loglik, abs=1e-6)
    school = students["school"].iloc[0]
    effects = result.random_effects[school]
    first = students.loc[students["school"] == school, "student_id"].iloc[0]
    assert effects[f"student[C(student_id)[{first}]]"] == pytest.approx(
        result.lmm.ranef["school:student_id"].loc[f"{school}:{first}"].iloc[0], abs=1e-6
    )


# -- arrays, several columns per component, free ---------------------------------------


def simulated_arrays(simulated):
    exog = np.column_stack([np.ones(len(simulated)), simulated["x"]])
    exog_re = np.column_stack([np.ones(len(simulated)), simulated["z"]])
    return simulated["y"].to_numpy(), exog, simulated["g"].to_numpy(), exog_re


def test_array_interface_names_and_numpy_results(simulated):
    y, exog, groups, exog_re = simulated_arrays(simulated)
    model = smf.MixedLM(y, exog, groups, exog_re)
    assert model.exog_names == ["const", "x1"] and model.endog_names == "y"
    assert model.data.exog_re_names == ["x_re1", "x_re2"]
    assert model.data.exog_re_names_full == ["x_re1 Var", "x_re1 x x_re2 Cov", "x_re2 Var"]
    assert (model.k_fe, model.k_re, model.k_re2, model.k_vc) == (2, 2, 3, 0)
    assert model.nobs == 240 and model.group_labels == list(range(40))
    assert model.row_indices[3] == list(range(18, 24))
    result = fit_quietly(model)
    # numpy in, numpy out (statsmodels' wrappers); random effects are Series.
    for value in (result.params, result.bse, result.fe_params, result.cov_re, result.fittedvalues):
        assert isinstance(value, np.ndarray)
    assert isinstance(result.cov_params(), np.ndarray) and result.cov_params().shape == (5, 5)
    assert list(result.random_effects[0].index) == ["x_re1", "x_re2"]
    # The same model written as a formula: the same fit, with pandas results.
    formula = fit_quietly(smf.mixedlm("y ~ x", simulated, groups="g", re_formula="~z"))
    np.testing.assert_allclose(formula.params.to_numpy(), result.params, rtol=1e-6)
    np.testing.assert_allclose(formula.bse.to_numpy(), result.bse, rtol=1e-5)


def test_default_random_intercept_and_one_dimensional_inputs(simulated):
    y, exog, groups, _ = simulated_arrays(simulated)
    default = fit_quietly(smf.MixedLM(y, exog, groups))
    explicit = fit_quietly(smf.MixedLM(y, exog, groups, np.ones(len(y))))
    np.testing.assert_allclose(default.params, explicit.params, rtol=1e-8)
    assert default.model.data.param_names == ["const", "x1", "Group Var"]
    only_intercept = smf.MixedLM(y, np.ones(len(y)), groups)
    assert only_intercept.k_fe == 1 and only_intercept.exog_names == ["const"]


@pytest.mark.parametrize(
    "case_id",
    ["simulated_formula_multi_vc", "simulated_arrays_vc_dict", "simulated_arrays_free_diag"],
)
def test_forms_lme4_cannot_write_match_statsmodels(simulated, case_id):
    case = statsmodels_case(case_id)
    y, exog, groups, exog_re = simulated_arrays(simulated)
    if case_id == "simulated_formula_multi_vc":
        md = smf.mixedlm(
            "y ~ x", simulated, groups="g", re_formula="~z", vc_formula={"ab": "0 + a + b"}
        )
        assert md.lme4_formula is None  # two slopes sharing one variance
        result = fit_quietly(md, reml=False)
        assert list(result.random_effects[0].index) == ["g", "z", "ab[a]", "ab[b]"]
    elif case_id == "simulated_arrays_vc_dict":
        vc = {"ab": {k: rows[["a", "b"]].to_numpy() for k, rows in simulated.groupby("g")}}
        with pytest.warns(FutureWarning, match="deprecated variance components format"):
            md = smf.MixedLM(y, exog, groups, exog_re, exog_vc=vc)
        result = fit_quietly(md)
        # The same components as a VCSpec: no warning, the same fit.
        spec = smf.VCSpec(["ab"], md.exog_vc.colnames, md.exog_vc.mats)
        again = fit_quietly(smf.MixedLM(y, exog, groups, exog_re, exog_vc=spec))
        np.testing.assert_allclose(again.params, result.params, rtol=1e-8)
    else:
        free = smf.MixedLMParams.from_components(np.ones(2), cov_re=np.eye(2))
        result = fit_quietly(smf.MixedLM(y, exog, groups, exog_re), free=free, reml=False)
        assert result.params[3] == 0.0 and result.bse[3] == 0.0  # the covariance held at 0
        assert result.aic == pytest.approx(case["aic"], abs=1e-4)  # 4 estimated + scale
    assert list(result.model.data.param_names) == case["param_names"]
    assert_matches_statsmodels(result, case, rtol=5e-4)
    np.testing.assert_allclose(
        np.asarray(result.random_effects[0]), case["random_effects_0"], atol=1e-4
    )


def test_independent_random_effects_are_lme4s_double_bar(sleep):
    y = sleep["Reaction"].to_numpy()
    exog = np.column_stack([np.ones(len(y)), sleep["Days"]])
    free = smf.MixedLMParams.from_components(np.ones(2), cov_re=np.eye(2))
    result = fit_quietly(smf.MixedLM(y, exog, sleep["Subject"].to_numpy(), exog), free=free)
    ref = reference("sleepstudy_uncorr_reml")
    assert result.llf == pytest.approx(ref["logLik"], abs=1e-3)
    assert result.cov_re[0, 1] == 0.0


# -- the likelihood functions -----------------------------------------------------------


def dense_loglike(y, x, z, groups, cov, beta, reml):
    """statsmodels' profiled log-likelihood by dense algebra, group by group."""
    n, p = x.shape
    f = n - p if reml else n
    logdet = quad = 0.0
    xvx = np.zeros((p, p))
    for g in np.unique(groups):
        rows = groups == g
        v = np.eye(rows.sum()) + z[rows] @ cov @ z[rows].T
        r = y[rows] - x[rows] @ beta
        logdet += np.linalg.slogdet(v)[1]
        quad += r @ np.linalg.solve(v, r)
        xvx += x[rows].T @ np.linalg.solve(v, x[rows])
    value = -0.5 * logdet - 0.5 * f * (np.log(quad / f) + 1 + np.log(2 * np.pi))
    return value - 0.5 * np.linalg.slogdet(xvx)[1] if reml else value


@pytest.mark.parametrize("reml", [True, False])
def test_loglike_score_and_hessian_against_dense_algebra(simulated, reml):
    y, exog, groups, exog_re = simulated_arrays(simulated)
    vc = {"ab": {k: rows[["a", "b"]].to_numpy() for k, rows in simulated.groupby("g")}}
    with pytest.warns(FutureWarning):
        model = smf.MixedLM(y, exog, groups, exog_re, exog_vc=vc, use_sqrt=False)
    fit_quietly(model, reml=reml)  # loglike follows the last fit's method
    z = np.column_stack([exog_re, simulated[["a", "b"]].to_numpy()])
    rng = np.random.default_rng(5)
    for _ in range(3):
        root = rng.normal(size=(2, 2))
        cov_re = root @ root.T + 0.1 * np.eye(2)
        vcomp = rng.uniform(0.2, 1.0, size=1)
        beta = rng.normal(size=2)
        params = smf.MixedLMParams.from_components(beta, cov_re=cov_re, vcomp=vcomp)
        cov = np.zeros((4, 4))
        cov[:2, :2] = cov_re
        cov[2:, 2:] = vcomp[0] * np.eye(2)

        def dense(vector):
            b, lower = vector[:2], np.zeros((2, 2))
            lower[np.tril_indices(2)] = vector[2:5]
            c = np.zeros((4, 4))
            c[:2, :2] = lower + np.tril(lower, -1).T
            c[2:, 2:] = vector[5] * np.eye(2)
            return dense_loglike(y, exog, z, groups, c, b, reml)

        expected = dense_loglike(y, exog, z, groups, cov, beta, reml)
        assert model.loglike(params, profile_fe=False) == pytest.approx(expected, abs=1e-8)
        vector = params.get_packed(use_sqrt=False, has_fe=True)
        grad = model.score(params, profile_fe=False)
        steps = 1e-5 * np.maximum(np.abs(vector), 0.1)
        numeric = np.array(
            [
                (dense(vector + np.eye(6)[i] * steps[i]) - dense(vector - np.eye(6)[i] * steps[i]))
                / (2 * steps[i])
                for i in range(6)
            ]
        )
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
        hess, singular = model.hessian(params)
        assert not singular
        i, j = 2, 4  # cov_re[0, 0] against cov_re[1, 1]
        ei, ej = np.eye(6)[i] * 1e-4, np.eye(6)[j] * 1e-4
        cross = (
            dense(vector + ei + ej)
            - dense(vector + ei - ej)
            - dense(vector - ei + ej)
            + dense(vector - ei - ej)
        ) / (4e-8)
        assert hess[i, j] == pytest.approx(cross, rel=1e-4)
    # With the fixed effects profiled out, loglike is the fit's criterion.
    result = fit_quietly(model, reml=reml)
    assert model.loglike(result.params_object) == pytest.approx(result.llf, abs=1e-8)
    fe, singular = model.get_fe_params(result.params_object.cov_re, result.params_object.vcomp)
    np.testing.assert_allclose(fe, result.fe_params, rtol=1e-8)
    assert model.get_scale(fe, result.params_object.cov_re, result.params_object.vcomp) == (
        pytest.approx(result.scale)
    )


def test_mixedlmparams_packing_round_trips():
    cov = np.array([[2.0, 0.3], [0.3, 1.0]])
    params = smf.MixedLMParams.from_components(np.array([1.0, -2.0]), cov_re=cov, vcomp=[0.5, 4])
    for use_sqrt in (True, False):
        for has_fe in (True, False):
            packed = params.get_packed(use_sqrt=use_sqrt, has_fe=has_fe)
            assert len(packed) == (2 if has_fe else 0) + 3 + 2
            back = smf.MixedLMParams.from_packed(packed, 2, 2, use_sqrt, has_fe)
            np.testing.assert_allclose(back.cov_re, cov)
            np.testing.assert_allclose(back.vcomp, [0.5, 4])
    sqrt = params.get_packed(use_sqrt=True)
    np.testing.assert_allclose(sqrt[:3], np.linalg.cholesky(cov)[np.tril_indices(2)])
    root = smf.MixedLMParams.from_components(cov_re_sqrt=np.linalg.cholesky(cov))
    np.testing.assert_allclose(root.cov_re, cov)
    copy = params.copy()
    copy.cov_re[0, 0] = 99.0
    assert params.cov_re[0, 0] == 2.0


# -- fit arguments, warnings, missing values ----------------------------------------------


def test_fit_arguments_as_statsmodels_takes_them(sleep):
    md = smf.mixedlm("Reaction ~ Days", sleep, groups="Subject")
    with pytest.warns(FutureWarning, match="Argument cov_type not used"):
        fit_quietly_kwargs = md.fit(cov_type="hc1")
    assert fit_quietly_kwargs.converged
    with pytest.raises(ValueError, match="method newton not available"):
        md.fit(method="newton")
    result = md.fit(method=["bfgs", "lbfgs"], maxiter=50, gtol=1e-6, full_output=True)
    assert len(result.hist) == result.n_evaluations
    start = result.params.to_numpy()
    again = md.fit(start_params=start)
    assert again.llf == pytest.approx(result.llf, abs=1e-8)
    at_start = md.fit(start_params=result.params_object, do_cg=False)
    assert at_start.llf == pytest.approx(result.llf, abs=1e-8)
    with pytest.raises(ValueError, match="invalid start_params"):
        md.fit(start_params=[1.0, 2.0, 3.0, 4.0])


def test_warnings_carry_statsmodels_names():
    dyestuff2 = smf.datasets.load("Dyestuff2")
    md = smf.mixedlm("Yield ~ 1", dyestuff2, groups="Batch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = md.fit()
    kinds = {type(w.message) for w in caught}
    assert any(issubclass(k, BoundaryWarning) for k in kinds)
    assert any(issubclass(k, SingularMatrixWarning) for k in kinds)
    assert all(issubclass(k, smf.SingularFitWarning) for k in kinds)
    assert result.is_singular and math.isnan(result.bse["Batch Var"])
    text = str(result.summary())
    assert "The fit is singular" in text
    var_line = next(line for line in text.splitlines() if line.startswith("Batch Var"))
    assert var_line.split() == ["Batch", "Var", "0.000"]


def test_warning_classes_are_statsmodels_when_it_is_loaded():
    sm_exceptions = pytest.importorskip("statsmodels.tools.sm_exceptions")
    assert issubclass(category(MixedLMConvergenceWarning), sm_exceptions.ConvergenceWarning)
    assert issubclass(category(MixedLMConvergenceWarning), smf.ConvergenceWarning)
    assert issubclass(category(BoundaryWarning), sm_exceptions.ConvergenceWarning)
    assert issubclass(category(SingularMatrixWarning), sm_exceptions.SingularMatrixWarning)


def test_package_neither_needs_nor_imports_statsmodels():
    # statsmodels blocked: the front door works, its warnings are the package's own.
    code = """
import sys, warnings
sys.modules["statsmodels"] = None
import mixedmodels as smf
d = smf.datasets.load("Dyestuff2")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    r = smf.mixedlm("Yield ~ 1", d, groups="Batch").fit()
assert r.is_singular and caught
bases = {b.__module__.split(".")[0] for w in caught for b in type(w.message).__mro__}
assert "statsmodels" not in bases
s = r.summary(); assert "Batch Var" in str(s)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, mixedmodels; print('statsmodels' in sys.modules)"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert loaded.stdout.strip() == "False"


@pytest.mark.parametrize("missing", ["none", "raise"])
def test_missing_values_are_refused_naming_column_and_row(sleep, missing):
    data = sleep.copy()
    data.loc[5, "Days"] = np.nan
    with pytest.raises(DataError, match=r"'Days'.*row 5"):
        smf.mixedlm("Reaction ~ Days", data, groups="Subject", missing=missing)
    with pytest.raises(DataError, match=r"exog \(row 5\)"):
        smf.MixedLM(data["Reaction"], data[["Days"]], data["Subject"], missing=missing)


def test_missing_drop_equals_dropping_first(sleep):
    data = sleep.copy()
    data.loc[[3, 40], "Days"] = np.nan
    data.loc[7, "Reaction"] = np.nan
    dropped = fit_quietly(smf.mixedlm("Reaction ~ Days", data, groups="Subject", missing="drop"))
    first = fit_quietly(smf.mixedlm("Reaction ~ Days", data.dropna(), groups="Subject"))
    np.testing.assert_allclose(dropped.params.to_numpy(), first.params.to_numpy(), rtol=1e-10)
    assert dropped.nobs == len(sleep) - 3
    assert list(dropped.fittedvalues.index) == list(data.dropna().index)
    arrays = fit_quietly(
        smf.MixedLM(data["Reaction"], data[["Days"]], data["Subject"], missing="drop")
    )
    assert arrays.nobs == len(sleep) - 3


# -- results ------------------------------------------------------------------------------


def test_random_effects_fitted_and_predictions(sleep):
    result = fit_quietly(
        smf.mixedlm("Reaction ~ Days", sleep, groups="Subject", re_formula="~Days")
    )
    ref = reference("sleepstudy_slope_reml")
    block = ref["ranef"][0]
    effects = result.random_effects
    assert 308 in effects  # keyed by the data's values, as statsmodels keys them
    effects = {str(level): series for level, series in effects.items()}
    for level, values in zip(block["levels"], block["values"], strict=False):
        np.testing.assert_allclose(effects[level].to_numpy(), values, atol=0.05)
    assert list(effects[block["levels"][0]].index) == ["Subject", "Days"]
    np.testing.assert_allclose(result.fittedvalues + result.resid, sleep["Reaction"])
    marginal = result.fe_params["Intercept"] + result.fe_params["Days"] * sleep["Days"]
    np.testing.assert_allclose(result.predict(), marginal)
    predicted = result.predict(pd.DataFrame({"Days": [0.0, 10.0, np.nan]}))
    np.testing.assert_allclose(
        predicted[:2], result.fe_params["Intercept"] + result.fe_params["Days"] * np.array([0, 10])
    )
    assert math.isnan(predicted.iloc[2])
    # Conditional covariances: lme4's condVar of the same model.
    cov = result.random_effects_cov[308]
    assert list(cov.index) == ["Subject", "Days"]
    lme4 = result.lmm.ranef_cov["Subject"][0]
    np.testing.assert_allclose(cov.to_numpy(), lme4, rtol=1e-4)


def test_tests_and_summary_formats(notebook_fit):
    t = notebook_fit.t_test(np.array([[0.0, 1.0]]))
    assert t.effect[0] == pytest.approx(notebook_fit.fe_params["Time"])
    assert t.sd[0] == pytest.approx(notebook_fit.bse_fe["Time"])
    with pytest.raises(ValueError, match="should have 2 columns"):
        notebook_fit.t_test(np.eye(3))
    wald = notebook_fit.wald_test(np.eye(2))
    assert wald.statistic == pytest.approx(
        notebook_fit.fe_params.to_numpy()
        @ np.linalg.solve(notebook_fit.cov_params().to_numpy()[:2, :2], notebook_fit.fe_params)
    )
    f = notebook_fit.f_test(np.array([[0.0, 1.0]]))
    assert f.fvalue == pytest.approx(t.tvalue[0] ** 2)
    summary = notebook_fit.summary(xname_fe=["const", "slope"], title="Pigs")
    assert list(summary.tables[1].index) == ["const", "slope", "Group Var"]
    assert summary.title == "Pigs"
    assert "<table" in summary.as_html() and "slope" in summary.as_html()
    assert r"\begin{tabular}" in summary.as_latex()


def test_remove_data_keeps_the_summary(dietox):
    result = fit_quietly(smf.mixedlm("Weight ~ Time", dietox, groups="Pig"))
    before = str(result.summary())
    result.remove_data()
    assert result.model.endog is None
    assert str(result.summary()) == before


def test_profile_re_peaks_at_the_estimate(dietox):
    result = fit_quietly(smf.mixedlm("Weight ~ Time", dietox, groups="Pig"), reml=False)
    profile = result.profile_re(0, "re", num_low=2, dist_low=5.0, num_high=2, dist_high=5.0)
    assert profile.shape == (5, 2)
    assert profile[2, 0] == pytest.approx(result.cov_re.iloc[0, 0], rel=1e-6)
    assert profile[2, 1] == pytest.approx(result.llf, abs=1e-6)
    assert np.all(profile[:, 1] <= result.llf + 1e-6)
    assert np.all(np.diff(profile[:, 0]) > 0)
    with pytest.raises(ValueError, match="vtype"):
        result.profile_re(0, "variance")


def test_fit_regularized_lasso(simulated):
    y, exog, groups, _ = simulated_arrays(simulated)
    model = smf.MixedLM(y, exog, groups)
    plain = fit_quietly(model)
    unpenalised = model.fit_regularized(alpha=0.0)
    np.testing.assert_allclose(unpenalised.fe_params, plain.fe_params, atol=1e-6)
    heavy = model.fit_regularized(alpha=np.array([0.0, 1e4]))
    assert heavy.fe_params[1] == 0.0 and math.isnan(heavy.bse[1])
    with pytest.raises(ValueError, match="Invalid regularization method"):
        model.fit_regularized(method="l2")


def test_get_distribution_simulates_the_model(simulated):
    y, exog, groups, exog_re = simulated_arrays(simulated)
    model = smf.MixedLM(y, exog, groups, exog_re)
    params = np.array([1.0, 0.5, 2.0, 0.0, 1.0])  # β, then cov_re / scale
    dist = model.get_distribution(params, 0.5, None)
    draws = np.array([dist.rvs(0, rng=np.random.default_rng(k)) for k in range(200)])
    resid = draws - exog @ params[:2]
    expected = 0.5 * (1 + 2.0 * exog_re[:, 0] ** 2 + exog_re[:, 1] ** 2)
    np.testing.assert_allclose(resid.var(axis=0).mean(), expected.mean(), rtol=0.1)


# -- the formula front door's extensions: lme4 terms -----------------------------------


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
            "Weight ~ Time + (1 | Pig:Evit)",
        ),
        (
            {"groups": "Pig", "re_formula": "1", "vc_formula": {"Evit": "0 + C(Evit)"}},
            "Weight ~ Time + (1 | Pig) + (1 | Pig:Evit)",
        ),
        ({"groups": "Pig", "vc_formula": {"T": "0 + Time"}}, "Weight ~ Time + (0 + Time | Pig)"),
        ({"groups": "Pig", "vc_formula": {"e": "0 + C(Evit) + C(Cu)"}}, None),
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
    md = smf.mixedlm("Weight ~ Time + (1 | Litter:Evit)", dietox, re_formula={"Evit:Litter": "1"})
    assert md.lme4_formula == "Weight ~ Time + (1 | Litter:Evit)"


def test_groups_without_re_formula_adopts_the_formulas_terms(dietox):
    md = smf.mixedlm("Weight ~ Time + (Time | Pig)", dietox, groups="Pig")
    assert md.lme4_formula == "Weight ~ Time + (Time | Pig)"
    assert md.k_re == 2 and md.data.exog_re_names == ["Pig", "Time"]


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


def test_groups_as_array_goes_to_a_copy_under_a_fresh_name(sleep):
    before = sleep.copy()
    ids = sleep["Subject"].astype(str).to_numpy()
    md = smf.mixedlm("Reaction ~ Days", sleep, groups=ids)
    assert md.lme4_formula == "Reaction ~ Days + (1 | groups)"
    assert "groups" in md.data.frame.columns
    pd.testing.assert_frame_equal(sleep, before)
    taken = sleep.assign(groups=0)
    assert smf.mixedlm("Reaction ~ Days", taken, groups=ids).lme4_formula.endswith("(1 | groups_2)")
    named = pd.Series(ids, name="subj")
    assert smf.mixedlm("Reaction ~ Days", sleep, groups=named).lme4_formula.endswith("(1 | subj)")


def test_groups_array_fit_equals_column_fit(sleep):
    by_column = fit_quietly(smf.mixedlm("Reaction ~ Days", sleep, groups="Subject"))
    by_array = fit_quietly(smf.mixedlm("Reaction ~ Days", sleep, groups=list(sleep["Subject"])))
    assert by_array.llf == pytest.approx(by_column.llf, abs=1e-8)
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
        ({"groups": "Pig", "vc_formula": {"Litter": "diag"}}, MixedModelsError, "'Litter'"),
        ({"groups": "Pig", "vc_formula": "0 + C(Evit)"}, MixedModelsError, "must be a dict"),
        ({"groups": "Pig", "vc_formula": {"e": "0 + C(Nope)"}}, FormulaError, "Nope"),
        ({"re_formula": {"Sow": "~1"}}, DataError, "'Sow'"),
        ({"re_formula": {"Pig": "~ Time | Pig"}}, FormulaError, "one-sided"),
        ({}, MixedModelsError, "no random effects"),
        ({"groups": "Pig", "missing": "maybe"}, MixedModelsError, "missing must be one of"),
    ],
)
def test_bad_calls_get_clear_errors(dietox, kwargs, error, message):
    with pytest.raises(error, match=message):
        smf.mixedlm("Weight ~ Time", dietox, **kwargs)


def test_bad_arrays_get_clear_errors(sleep):
    y = sleep["Reaction"].to_numpy()
    with pytest.raises(DataError, match="exog has 3 rows"):
        smf.MixedLM(y, np.ones((3, 1)), sleep["Subject"])
    with pytest.raises(DataError, match="no matrix for group"), pytest.warns(FutureWarning):
        smf.MixedLM(y, np.ones(len(y)), sleep["Subject"].to_numpy(), exog_vc={"a": {308: 1}})
    with pytest.raises(ValueError, match="not permitted"):
        smf.MixedLM(y, np.ones(len(y)), sleep["Subject"], weights=1)


def test_bad_formula_is_reported_against_what_was_written(dietox):
    with pytest.raises(FormulaError, match=r"\^"):
        smf.mixedlm("Weight ~ Time +", dietox, groups="Pig")


def test_random_slope_is_lme4s(dietox):
    result = fit_quietly(smf.mixedlm("Weight ~ Time", dietox, groups="Pig", re_formula="~Time"))
    assert_matches_lme4(result, reference("dietox_slope_reml"))
    assert list(result.cov_re.index) == ["Pig", "Time"]
    assert list(result.params.index) == [
        "Intercept",
        "Time",
        "Pig Var",
        "Pig x Time Cov",
        "Time Var",
    ]


def test_diag_with_slopes_ml(dietox):
    md = smf.mixedlm(
        "Weight ~ Time", dietox, groups="Pig", re_formula="~Time", vc_formula={"Pig": "diag"}
    )
    result = fit_quietly(md, reml=False)
    assert result.method == "ML"
    assert_matches_lme4(result, reference("dietox_slope_diag_ml"))
    assert result.cov_re.loc["Pig", "Time"] == 0.0 and result.bse["Pig x Time Cov"] == 0.0


def test_vc_formula_slope_with_intercept(sleep):
    md = smf.mixedlm(
        "Reaction ~ Days", sleep, groups="Subject", re_formula="1", vc_formula={"Days": "0 + Days"}
    )
    assert_matches_lme4(fit_quietly(md), reference("sleepstudy_int_plus_slope_reml"))


def test_re_formula_dict_without_groups():
    penicillin = smf.datasets.load("Penicillin")
    md = smf.mixedlm("diameter ~ 1", penicillin, re_formula={"plate": "~1", "sample": "~1"})
    result = fit_quietly(md)
    assert_matches_lme4(result, reference("penicillin_crossed_reml"))
    assert list(result.cov_re.index) == ["plate"] and result.model.n_groups == 24
    assert set(result.random_effects) == set(result.lmm.ranef["plate"].index)
    assert list(result.params.index) == ["Intercept", "plate Var", "sample Var"]
    with pytest.raises(MixedModelsError, match="random_effects_cov"):
        _ = result.random_effects_cov


def test_ml_fit_of_crossed_terms():
    penicillin = smf.datasets.load("Penicillin")
    md = smf.mixedlm("diameter ~ (1 | plate)", penicillin, groups="sample")
    assert_matches_lme4(fit_quietly(md, reml=False), reference("penicillin_crossed_ml"))


def test_fitting_twice_keeps_both_results(sleep):
    md = smf.mixedlm("Reaction ~ Days", sleep, groups="Subject", re_formula="~Days")
    reml, ml = fit_quietly(md), fit_quietly(md, reml=False)
    again = fit_quietly(md)
    assert reml.method == "REML" and ml.method == "ML"
    assert reml.llf == pytest.approx(reference("sleepstudy_slope_reml")["logLik"], abs=1e-3)
    assert ml.llf == pytest.approx(reference("sleepstudy_slope_ml")["logLik"], abs=1e-3)
    assert again.llf == pytest.approx(reml.llf, abs=1e-8)
    # Each result's standard errors are its own fit's, whatever was fitted since.
    assert reml.bse["Days"] != pytest.approx(ml.bse["Days"], rel=1e-6)


# -- the docs page ------------------------------------------------------------------------


def test_docs_code_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 8
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, str(DOCS), "exec"), namespace)
