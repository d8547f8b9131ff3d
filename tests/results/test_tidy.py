"""glance, tidy and coefficient tables with intervals, against lme4's and lmerTest's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import mixedmodels as mm

DATA = Path(__file__).parent.parent / "data"


def _ref(kind: str, name: str) -> dict:
    return json.loads((DATA / kind / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def sleep():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


def test_coef_table_conf_int_uses_satterthwaite_t(sleep):
    ref = _ref("lmm", "sleepstudy_slope_reml")
    table = sleep.coef_table(conf_int=True, level=0.9)
    q = stats.t.ppf(0.95, ref["satterthwaite"]["df"])
    est = np.array([ref["fixef"][n] for n in ref["fixef_names"]])
    se = np.array(ref["stderr"])
    np.testing.assert_allclose(table["conf_low"], est - q * se, rtol=1e-3)
    np.testing.assert_allclose(table["conf_high"], est + q * se, rtol=1e-3)
    assert list(sleep.coef_table().columns) == ["estimate", "std_error", "df", "t_value", "p_value"]


def test_asymptotic_conf_int_is_lme4s_wald(sleep):
    wald = _ref("inference", "ci_sleepstudy_slope")["wald"]
    table = sleep.coef_table(ddf="asymptotic", conf_int=True)
    lower = dict(zip(wald["names"], wald["lower"], strict=True))
    np.testing.assert_allclose(table["conf_low"], [lower[n] for n in table.index], rtol=1e-3)


def test_glance_is_lme4s_fit_statistics(sleep):
    ref = _ref("lmm", "sleepstudy_slope_reml")
    row = sleep.glance().iloc[0]
    assert row.nobs == ref["nobs"]
    assert row.df_residual == ref["nobs"] - ref["df_logLik"]
    assert row.aic == pytest.approx(ref["AIC"], abs=1e-3)
    assert row.bic == pytest.approx(ref["BIC"], abs=1e-3)
    assert row.loglik == pytest.approx(ref["logLik"], abs=1e-3)
    assert row.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    assert row.reml_criterion == pytest.approx(ref["objective"], abs=1e-3)
    ml = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"), reml=False)
    ml_ref = _ref("lmm", "sleepstudy_slope_ml")
    assert ml.glance().deviance.iloc[0] == pytest.approx(ml_ref["objective"], abs=1e-3)
    assert np.isnan(ml.glance().reml_criterion.iloc[0])


def test_tidy_is_one_long_table(sleep):
    ref = _ref("lmm", "sleepstudy_slope_reml")
    table = sleep.tidy()
    assert list(table.effect) == ["fixed"] * 2 + ["ran_pars"] * 4
    assert list(table.term) == [
        "(Intercept)",
        "Days",
        "sd__(Intercept)",
        "cor__(Intercept).Days",
        "sd__Days",
        "sd__Observation",
    ]
    assert list(table.group[2:]) == ["Subject"] * 3 + ["Residual"]
    block = ref["varcorr"][0]
    np.testing.assert_allclose(
        table.estimate[2:],
        [block["sd"][0], block["corr"][0][1], block["sd"][1], ref["sigma"]],
        rtol=2e-3,
    )
    np.testing.assert_allclose(table.p_value[:2], ref["satterthwaite"]["p"], rtol=1e-2)
    assert table.p_value[2:].isna().all()
    assert list(sleep.tidy(effects="fixed").term) == ["(Intercept)", "Days"]
    with pytest.raises(mm.MixedModelsError, match="effects"):
        sleep.tidy(effects="random")


def test_tidy_profile_intervals_are_lme4s(sleep):
    profile = _ref("inference", "ci_sleepstudy_slope")["profile"]
    table = sleep.tidy(conf_int=True, conf_method="profile")
    limits = dict(
        zip(profile["names"], zip(profile["lower"], profile["upper"], strict=True), strict=True)
    )
    names = [
        "(Intercept)",
        "Days",
        "sd_(Intercept)|Subject",
        "cor_Days.(Intercept)|Subject",
        "sd_Days|Subject",
        "sigma",
    ]
    want = np.array([limits[n] for n in names])
    np.testing.assert_allclose(table[["conf_low", "conf_high"]], want, rtol=5e-3, atol=2e-3)


def test_level_is_checked(sleep):
    with pytest.raises(mm.MixedModelsError, match="level"):
        sleep.coef_table(conf_int=True, level=95)
