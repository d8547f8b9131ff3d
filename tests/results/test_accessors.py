"""The results of a fitted model: names, types and shapes of what it reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def slope_fit(sleepstudy_slope_fit):
    return sleepstudy_slope_fit


def test_results_types_and_shapes(slope_fit):
    m = slope_fit
    assert isinstance(m.fixef, pd.Series) and list(m.fixef.index) == ["(Intercept)", "Days"]
    assert list(m.coefs.columns) == ["estimate", "std_error", "t_value"]
    assert list(m.coefs.index) == list(m.fixef.index)
    assert m.vcov.shape == (2, 2) and list(m.vcov.index) == list(m.fixef.index)
    np.testing.assert_allclose(np.sqrt(np.diag(m.vcov)), m.coefs["std_error"])
    assert m.theta.shape == (3,)
    assert list(m.varcorr.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert list(m.varcorr.var1[:3]) == ["(Intercept)", "Days", "(Intercept)"]
    assert m.varcorr.var2[2] == "Days" and pd.isna(m.varcorr.var2[0])
    assert m.varcorr.group.iloc[-1] == "Residual"
    assert m.varcorr.sdcor.iloc[-1] == pytest.approx(m.sigma)
    assert set(m.ranef) == {"Subject"}
    assert m.ranef["Subject"].shape == (18, 2)
    assert len(m.fitted) == len(m.residuals) == m.nobs == 180
    np.testing.assert_allclose(m.fitted + m.residuals, mm.datasets.load("sleepstudy").Reaction)
    assert m.converged and not m.is_singular
    assert m.ngroups == {"Subject": 18}


def test_ml_summary_shows_information_criteria(sleepstudy):
    m = mm.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=False)
    text = str(m.summary())
    assert "fit by maximum likelihood" in text
    for word in ("AIC", "BIC", "logLik", "deviance", "df.resid"):
        assert word in text
    assert f"{m.aic:.1f}" in text


def test_uncorrelated_terms_share_one_ranef_table(sleepstudy):
    m = mm.lmer("Reaction ~ Days + (Days || Subject)", sleepstudy)
    assert list(m.ranef["Subject"].columns) == ["(Intercept)", "Days"]
    assert list(m.varcorr.group[:2]) == ["Subject", "Subject.1"]
