"""Inference (issue 4) against lme4 / lmerTest / pbkrtest reference numbers.

* Satterthwaite and Kenward–Roger df, p values and (KR) adjusted standard
  errors: the ``satterthwaite`` and ``kenward_roger`` fields of every model in
  tests/data/lmm and tests/data/extra, within 0.1 %.  They are evaluated at
  lme4's θ (``_set_solution``): what is under test is the df computation; where
  our optimizer stops is tested in test_lme4_reference.py and can move a df by
  more than 0.1 % when lme4's and our optima differ in the fifth digit of θ.
  One more test runs the same comparison end to end at our own optimum.
* Likelihood-ratio tests, profile and Wald intervals, conditional variances
  and predictions: every file in tests/data/inference (and the extra ones in
  tests/data/inference_extra, made by make_inference_extra.R there).
* The bootstrap: each replicate equals a fresh fit to the simulated response.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels import anova
from mixedmodels.inference import InferenceMixin
from tests.conftest import DATA, NUMERIC_IN_CSV, fitted_reference, reference_paths
from tests.conftest import reference_data as load

# Models whose df take more than a few seconds (InstEval's 73 421 rows).
SLOW_ROWS = 50_000


if issubclass(mm.LinearMixedModel, InferenceMixin):
    Model = mm.LinearMixedModel
else:  # until the mixin is among LinearMixedModel's bases

    class Model(InferenceMixin, mm.LinearMixedModel):
        pass


def fit(formula: str, data, reml: bool = True, **kwargs) -> Model:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Model(formula, data, reml=reml, **kwargs).fit(check_convergence=False, warn=False)


def num(values) -> np.ndarray:
    return np.array([math.nan if v in ("NA", None) else float(v) for v in values])


def _model_files():
    for path in reference_paths("lmm", "extra"):
        ref = json.loads(path.read_text())
        marks = [pytest.mark.slow] if ref["nobs"] > SLOW_ROWS else []
        yield pytest.param(path, id=ref["id"], marks=marks)


def _inference_files(prefix: str):
    for path in reference_paths("inference", "inference_extra", pattern=f"{prefix}_*.json"):
        yield pytest.param(path, id=path.stem)


_CACHE: dict[Path, tuple[dict, Model]] = {}


def model_for(path: Path) -> tuple[dict, Model]:
    """The reference's model, fitted once per test session and set to lme4's θ."""
    if path not in _CACHE:
        ref, m = fitted_reference(path)
        _CACHE[path] = (ref, m.at_theta(np.array(ref["theta"], dtype=float)))
    return _CACHE[path]


def assert_p_close(p, p_ref, rtol=1e-3):
    """p values within 0.1 %; p values that underflow to 0 in R are tiny here too."""
    p, p_ref = np.asarray(p, float), np.asarray(p_ref, float)
    zero = p_ref == 0
    np.testing.assert_array_less(p[zero], 1e-300)
    np.testing.assert_allclose(p[~zero], p_ref[~zero], rtol=rtol)


# -- Satterthwaite and Kenward–Roger --------------------------------------------------


@pytest.mark.parametrize("path", list(_model_files()))
def test_satterthwaite_matches_lmertest(path):
    ref, m = model_for(path)
    table = m.coef_table(ddf="satterthwaite")
    assert list(table.index) == [NUMERIC_IN_CSV.get(n, n) for n in ref["fixef_names"]]
    np.testing.assert_allclose(table["df"], num(ref["satterthwaite"]["df"]), rtol=1e-3)
    assert_p_close(table["p_value"], num(ref["satterthwaite"]["p"]))


@pytest.mark.parametrize(
    "path", [p for p in _model_files() if json.loads(p.values[0].read_text())["kenward_roger"]]
)
def test_kenward_roger_matches_pbkrtest(path):
    ref, m = model_for(path)
    table = m.coef_table(ddf="kenward-roger")
    kr = ref["kenward_roger"]
    np.testing.assert_allclose(table["std_error"], num(kr["se"]), rtol=1e-3)
    np.testing.assert_allclose(table["df"], num(kr["df"]), rtol=1e-3)
    assert_p_close(table["p_value"], num(kr["p"]))
    assert np.allclose(table["t_value"], table["estimate"] / table["std_error"])


@pytest.mark.parametrize(
    "name", ["sleepstudy_slope_reml", "penicillin_crossed_reml", "orthodont_slope_reml"]
)
def test_satterthwaite_end_to_end_at_our_optimum(name):
    ref = json.loads((DATA / "lmm" / f"{name}.json").read_text())
    m = fit(ref["formula"], load(ref), reml=ref["REML"])
    table = m.coef_table()
    np.testing.assert_allclose(table["df"], num(ref["satterthwaite"]["df"]), rtol=1e-2)
    np.testing.assert_allclose(table["p_value"], num(ref["satterthwaite"]["p"]), rtol=5e-2)


def test_asymptotic_table_uses_the_normal_distribution():
    _, m = model_for(DATA / "lmm" / "sleepstudy_slope_reml.json")
    table = m.coef_table(ddf="asymptotic")
    assert np.all(np.isinf(table["df"]))
    z = np.abs(table["t_value"].to_numpy())
    from scipy import stats

    np.testing.assert_allclose(table["p_value"], 2 * stats.norm.sf(z))
    np.testing.assert_allclose(table["std_error"], m.coefs["std_error"])


def test_ddf_errors():
    _, m = model_for(DATA / "lmm" / "sleepstudy_slope_ml.json")
    with pytest.raises(mm.MixedModelsError, match="REML"):
        m.coef_table(ddf="kenward-roger")
    with pytest.raises(mm.MixedModelsError, match="unknown ddf"):
        m.coef_table(ddf="containment")


def test_summary_of_reml_fit_shows_satterthwaite_df():
    ref, m = model_for(DATA / "lmm" / "sleepstudy_slope_reml.json")
    text = str(m.summary())
    assert "Satterthwaite" in text
    assert "Pr(>|t|)" in text and " df " in text
    df = num(ref["satterthwaite"]["df"])
    assert f"{df[0]:.3f}" in text
    assert " 251.405 " in text and "Correlation of Fixed Effects:" in text


# -- anova ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(_inference_files("lrt")))
def test_likelihood_ratio_test_matches_lme4(path):
    ref = json.loads(path.read_text())
    data = load(ref)
    m0 = fit(ref["formula0"], data)
    m1 = fit(ref["formula1"], data)
    table = anova(m1, m0, names=["m1", "m0"])  # ordered by number of parameters, as lme4
    assert list(table.index) == ["m0", "m1"]
    assert list(table["npar"]) == ref["npar"]
    for ours, theirs in [
        ("aic", "AIC"),
        ("bic", "BIC"),
        ("loglik", "logLik"),
        ("deviance", "deviance"),
    ]:
        np.testing.assert_allclose(table[ours], ref[theirs], rtol=0, atol=1e-4)
    assert table["chisq"].iloc[1] == pytest.approx(ref["chisq"], abs=1e-4)
    assert table["df"].iloc[1] == ref["df"]
    assert table["p_value"].iloc[1] == pytest.approx(ref["p"], rel=1e-3)
    # The REML fits themselves are untouched.
    assert m0.reml and m1.reml


def test_anova_without_refit_compares_reml_criteria():
    ref = json.loads((DATA / "inference" / "lrt_sleepstudy_slope_vs_intercept.json").read_text())
    data = load(ref)
    m0, m1 = fit(ref["formula0"], data), fit(ref["formula1"], data)
    table = anova(m0, m1, refit=False)
    np.testing.assert_allclose(table["deviance"], [m0.objective, m1.objective])
    assert table["chisq"].iloc[1] == pytest.approx(m0.objective - m1.objective)


def test_anova_refuses_models_of_different_data():
    d = mm.datasets.load("sleepstudy")
    m0 = fit("Reaction ~ Days + (1 | Subject)", d)
    m1 = fit("Reaction ~ Days + (1 | Subject)", d.iloc[:100])
    with pytest.raises(mm.MixedModelsError, match="numbers of rows"):
        anova(m0, m1)


@pytest.mark.parametrize("path", list(_inference_files("anova")))
def test_f_tests_match_lmertest(path):
    ref = json.loads(path.read_text())
    m = fit(ref["formula"], load(ref), reml=ref["REML"])
    table = anova(m)
    assert list(table.index) == ref["terms"]
    assert list(table["num_df"]) == ref["num_df"]
    # Every row is lmerTest's type III test, at our own optimum (these refs
    # are not at lme4's θ): 0.1 % on df and F.
    assert (table["hypothesis"] == "type III").all()
    np.testing.assert_allclose(table["den_df"], ref["den_df"], rtol=1e-3)
    np.testing.assert_allclose(table["f_value"], ref["f_value"], rtol=1e-3)
    assert_p_close(table["p_value"], ref["p"], rtol=1e-2)


# -- intervals and conditional variances ------------------------------------------------


@pytest.fixture(scope="module")
def ci_models(reference_fit):
    return reference_fit


@pytest.mark.parametrize("path", list(_inference_files("ci")))
def test_profile_intervals_match_lme4(path, ci_models):
    ref, m = ci_models(path)
    ci = m.confint(method="profile")
    prof = ref["profile"]
    assert list(ci.index) == prof["names"]
    lower, upper = num(prof["lower"]), num(prof["upper"])
    width = upper - lower
    np.testing.assert_array_less(np.abs(ci["lower"].to_numpy() - lower), 2e-3 * width)
    np.testing.assert_array_less(np.abs(ci["upper"].to_numpy() - upper), 2e-3 * width)
    # Profiling leaves the fit as it was.
    assert m.objective_at(m.theta) == pytest.approx(m.objective, abs=1e-8)


@pytest.mark.parametrize("path", list(_inference_files("ci")))
def test_wald_intervals_match_lme4(path, ci_models):
    ref, m = ci_models(path)
    ci = m.confint(method="wald")
    wald = ref["wald"]
    assert list(ci.index) == wald["names"]
    lower, upper = num(wald["lower"]), num(wald["upper"])
    assert np.array_equal(np.isnan(ci["lower"]), np.isnan(lower))
    se = m.coefs["std_error"].to_numpy()
    fixed = ~np.isnan(lower)
    np.testing.assert_allclose(ci["lower"].to_numpy()[fixed], lower[fixed], atol=1e-2 * se.min())
    np.testing.assert_allclose(ci["upper"].to_numpy()[fixed], upper[fixed], atol=1e-2 * se.min())


@pytest.mark.parametrize("path", list(_inference_files("ci")))
def test_conditional_variances_match_lme4(path, ci_models):
    ref, m = ci_models(path)
    cv = ref["condvar"]
    ours = m.ranef_cov[cv["group"]]
    levels = m.ranef[cv["group"]].index
    idx = levels.get_indexer([str(level) for level in cv["levels"]])
    assert np.all(idx >= 0)
    expected = np.array(cv["postvar"], dtype=float).reshape(len(idx), *ours.shape[1:])
    np.testing.assert_allclose(ours[idx], expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())


def test_conditional_variances_of_terms_sharing_a_factor():
    """(1|S) + (0+Days|S) and (Days||S) are the same model: the same blocks."""
    d = mm.datasets.load("sleepstudy")
    a = fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d)
    b = fit("Reaction ~ Days + (Days || Subject)", d)
    ca, cb = a.ranef_cov["Subject"], b.ranef_cov["Subject"]
    assert ca.shape == (18, 2, 2)
    np.testing.assert_allclose(ca, cb, rtol=1e-4, atol=1e-8)


# -- predictions ----------------------------------------------------------------------


@pytest.mark.parametrize("path", list(_inference_files("predict")))
def test_predictions_match_lme4(path):
    ref = json.loads(path.read_text())
    m = fit(ref["formula"], load(ref))
    newdata = pd.DataFrame(ref["newdata"])
    before = newdata.copy()
    scale = m.sigma
    cond = m.predict(newdata, allow_new_levels=True)
    np.testing.assert_allclose(cond, ref["conditional"], atol=1e-4 * scale)
    marg = m.predict(newdata, random=False)
    np.testing.assert_allclose(marg, ref["marginal"], atol=1e-4 * scale)
    pd.testing.assert_frame_equal(newdata, before)
    with pytest.raises(mm.DataError, match="allow_new_levels"):
        m.predict(newdata)


def test_predict_error_names_level_and_factor():
    d = mm.datasets.load("sleepstudy")
    m = fit("Reaction ~ Days + (Days | Subject)", d)
    with pytest.raises(mm.DataError, match=r"'999'.*'Subject'"):
        m.predict({"Days": [1.0], "Subject": [999]})
    with pytest.raises(mm.DataError, match="Subject"):
        m.predict({"Days": [1.0]})
    np.testing.assert_allclose(m.predict(), m.fitted)
    np.testing.assert_allclose(m.predict(d), m.fitted)


def test_predict_nested_grouping_factor():
    d = mm.datasets.load("Pastes")
    m = fit("strength ~ 1 + (1 | batch/cask)", d)
    np.testing.assert_allclose(m.predict(d.iloc[:7]), m.fitted.iloc[:7])


# -- simulation and bootstrap ----------------------------------------------------------


@pytest.fixture(scope="module")
def sleep(sleepstudy_slope_fit):
    return sleepstudy_slope_fit


def test_simulate_is_reproducible_and_has_the_fitted_moments(sleep):
    a = sleep.simulate(400, seed=3)
    b = sleep.simulate(400, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a.shape == (180, 400)
    assert not a.equals(sleep.simulate(400, seed=4))
    # Day-0 rows: variance σ² + σ²λλᵀ[0, 0] (intercept variance plus residual).
    day0 = (mm.datasets.load("sleepstudy")["Days"] == 0).to_numpy()
    cov = sleep.covariance_matrices()[0]
    expected = cov[0, 0] + sleep.sigma**2
    observed = a.to_numpy()[day0].var(axis=1, ddof=1).mean()
    assert observed == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize(
    "dataset, formula, reml, weighted",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True, False),
        ("sleepstudy", "Reaction ~ Days + (1 | Subject)", False, True),
        ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", False, False),
    ],
)
def test_bootstrap_replicate_equals_a_fresh_fit(dataset, formula, reml, weighted):
    data = mm.datasets.load(dataset)
    weights = np.linspace(0.5, 2.0, len(data)) if weighted else None
    m = fit(formula, data, reml=reml, weights=weights)
    boot = m.bootstrap(3, seed=11)
    again = m.bootstrap(3, seed=11)
    pd.testing.assert_frame_equal(boot.replicates, again.replicates)
    ys = m.simulate(3, seed=11)
    response = m.design.response_name
    for r in range(3):
        simulated = data.assign(**{response: ys.iloc[:, r].to_numpy()})
        fresh = fit(formula, simulated, reml=reml, weights=weights)
        row = boot.replicates.iloc[r]
        assert row["objective"] == pytest.approx(fresh.objective, abs=1e-5)
        assert row["sigma"] == pytest.approx(fresh.sigma, rel=1e-4)
        np.testing.assert_allclose(row[m.design.fixed_names], fresh.fixef, rtol=1e-5)
    # The model itself is unchanged.
    assert m.objective_at(m.theta) == pytest.approx(m.objective, abs=1e-8)


def test_bootstrap_intervals_agree_with_wald_for_fixed_effects(sleep):
    boot = sleep.bootstrap(300, seed=2024)
    assert len(boot) == 300
    assert list(boot.replicates.columns) == [
        "objective",
        "sigma",
        "(Intercept)",
        "Days",
        *sleep.theta_names,
    ]
    ci = boot.confint()
    assert list(ci.index) == list(sleep.confint(method="wald").index)
    wald = sleep.confint(method="wald").loc[["(Intercept)", "Days"]]
    width = (wald["upper"] - wald["lower"]).to_numpy()
    for end in ["lower", "upper"]:
        np.testing.assert_array_less(
            np.abs(ci.loc[wald.index, end].to_numpy() - wald[end].to_numpy()), 0.15 * width
        )
    # sd rows: positive and around the estimates.
    assert 0 < ci.loc["sd_Days|Subject", "lower"] < 5.92 < ci.loc["sd_Days|Subject", "upper"]


def test_bootstrap_rejects_bad_counts(sleep):
    for bad in [0, -3, 2.5, "10", True]:
        with pytest.raises(mm.MixedModelsError, match="positive integer"):
            sleep.bootstrap(bad)


def test_confint_errors(sleep):
    with pytest.raises(mm.MixedModelsError, match="unknown method"):
        sleep.confint(method="boot-t")
    with pytest.raises(mm.MixedModelsError, match="level"):
        sleep.confint(method="wald", level=95)


def test_progress_bars_go_to_stderr(capsys):
    pytest.importorskip("tqdm")
    m = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))
    m.confint(method="profile", progress=True)
    profile_err = capsys.readouterr().err
    assert "profile:" in profile_err and "100%" in profile_err  # ticks per point walked
    m.bootstrap(20, seed=1, progress=True)
    captured = capsys.readouterr()
    assert "bootstrap:" in captured.err and "/20 " in captured.err
    assert captured.out == ""
    m.bootstrap(5, seed=1)
    assert capsys.readouterr().err == ""


def test_profile_table_is_the_walk_behind_the_intervals():
    m = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))
    table = m.profile()
    assert list(table.columns) == ["parameter", "value", "zeta"]
    assert list(dict.fromkeys(table.parameter)) == ["sd_(Intercept)|Batch", "sigma", "(Intercept)"]
    intervals = m.confint(method="profile")
    z = 1.959963984540054
    for name, part in table.groupby("parameter", sort=False):
        part = part.sort_values("value")
        # ζ rises through 0 at the estimate and past ±z at the interval's ends.
        assert part.zeta.min() < -z and part.zeta.max() > z
        assert np.all(np.diff(part.zeta.to_numpy()) > 0)
        lower = np.interp(-z, part.zeta, part.value)
        upper = np.interp(z, part.zeta, part.value)
        width = intervals.loc[name, "upper"] - intervals.loc[name, "lower"]
        assert abs(lower - intervals.loc[name, "lower"]) < 0.02 * width
        assert abs(upper - intervals.loc[name, "upper"]) < 0.02 * width
