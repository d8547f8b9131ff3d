"""The GLMM's results API: summary, variance components, intervals, predictions, anova."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import ArgumentError, NotFittedError

DATA = Path(__file__).parent.parent / "data" / "glmm"


def _reference(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((DATA / f"{name}.json").read_text())
    data = pd.read_csv(DATA / "datasets" / f"{ref['dataset']}.csv.gz")
    for column, dtype in (ref.get("python_dtypes") or {}).items():
        data[column] = data[column].astype(dtype)
    return ref, data


@pytest.fixture(scope="module")
def cbpp():
    ref, data = _reference("cbpp_trials_logit")
    return ref, data, mm.glmer(ref["formula"], data, family="binomial")


def test_summary_is_glmer_s(cbpp):
    ref, _, m = cbpp
    summary = m.summary()
    text = str(summary)
    assert text.startswith(
        "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)"
    )
    assert " Family: binomial  ( logit )" in text
    assert f"Formula: {ref['formula']}" in text
    assert "z value" in text and "Pr(>|z|)" in text
    assert "Residual" not in text  # no residual variance for the binomial
    assert "Number of obs: 56, groups:  herd, 15" in text
    assert repr(m) == text
    assert summary.criteria["deviance"] == pytest.approx(m.objective)  # −2 log L, as lme4
    assert "<table" in m._repr_html_()
    tidy = m.tidy()
    assert list(tidy["term"]) == [*ref["fixef_names"], "sd__(Intercept)"]
    np.testing.assert_allclose(tidy["statistic"].iloc[:4], m.coefs["z_value"])


def test_variance_components(cbpp):
    ref, _, m = cbpp
    vc = m.varcorr
    assert list(vc["group"]) == ["herd"]
    assert vc["sdcor"].iloc[0] == pytest.approx(ref["varcorr"][0]["sd"][0], rel=2e-3)
    assert m.theta_names == ref["theta_names"]


@pytest.fixture(scope="module")
def mmmec():
    ref, data = _reference("mmmec_offset_poisson")  # offset(log(expected)) in the formula
    return ref, mm.glmer(ref["formula"], data, family="poisson")


def test_z_tests_and_wald_intervals_are_lme4_s(mmmec):
    ref, m = mmmec
    coefs = m.coefs
    np.testing.assert_allclose(coefs["z_value"], ref["zvalue"], rtol=2e-3)
    np.testing.assert_allclose(coefs["p_value"], ref["pvalue"], rtol=0.02)
    wald = ref["confint"]["wald"]
    table = m.confint("wald")
    assert list(table.index) == wald["names"]
    assert np.isnan(table["lower"].iloc[0])
    np.testing.assert_allclose(table["lower"].iloc[1:], wald["lower"][1:], rtol=2e-3)
    np.testing.assert_allclose(table["upper"].iloc[1:], wald["upper"][1:], rtol=2e-3)
    with pytest.raises(mm.MixedModelsError, match="unknown method 'likelihood'"):
        m.confint("likelihood")


def test_predictions_on_both_scales(cbpp):
    _, data, m = cbpp
    np.testing.assert_allclose(m.predict(), m.linear_predictor)
    np.testing.assert_allclose(m.predict(type="response"), m.fitted)
    np.testing.assert_allclose(m.predict(data), m.linear_predictor, rtol=1e-10)
    np.testing.assert_allclose(m.predict(data, type="response"), m.fitted, rtol=1e-10)
    marginal = m.predict(data, random=False)
    x_beta = m.design.x @ m.fixef.to_numpy()
    np.testing.assert_allclose(marginal, x_beta)
    new = data.iloc[:3].assign(herd=pd.Categorical(["99", "1", "99"]))
    with pytest.raises(mm.DataError, match="not in the data"):
        m.predict(new)
    allowed = m.predict(new, allow_new_levels=True)
    assert allowed.iloc[0] == pytest.approx(x_beta[0])
    with pytest.raises(ArgumentError, match="'link' or 'response'"):
        m.predict(type="probability")


def test_offset_follows_predictions():
    ref, data = _reference("mmmec_offset_arg_poisson")
    m = mm.glmer(ref["formula"], data, family="poisson", offset="log(expected)")
    np.testing.assert_allclose(m.predict(data), m.linear_predictor, rtol=1e-10)
    by_array = mm.glmer(
        ref["formula"], data, family="poisson", offset=np.log(data["expected"].to_numpy())
    )
    with pytest.raises(mm.DataError, match="pass offset="):
        by_array.predict(data)
    np.testing.assert_allclose(
        by_array.predict(data, offset=np.log(data["expected"].to_numpy())),
        m.linear_predictor,
        rtol=1e-8,
    )


def test_anova_of_nested_glmms_is_lme4_s():
    ref, data = _reference("contraception_urban_slope_logit")
    lrt = ref["lrt"]
    data = data.assign(use=data["use"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = mm.glmer(lrt["formula0"], data, family="binomial")
        m1 = mm.glmer(lrt["formula1"], data, family="binomial")
    table = mm.anova(m0, m1)
    assert list(table["npar"]) == lrt["npar"]
    assert table["chisq"].iloc[1] == pytest.approx(lrt["chisq"], abs=2e-3)
    assert table["p_value"].iloc[1] == pytest.approx(lrt["p"], rel=0.01)
    with pytest.raises(ArgumentError, match="single GLMM"):
        mm.anova(m1)


def test_state_is_frozen_and_evaluations_leave_it(cbpp):
    _, data, m = cbpp
    with pytest.raises(ValueError, match="read-only"):
        m.state.beta[0] = 1.0
    before = m.objective
    m.objective_at(m.theta * 1.5, m.fixef.to_numpy() + 0.1)
    assert m.objective == before
    unfitted = mm.GeneralizedLinearMixedModel(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", data
    )
    with pytest.raises(NotFittedError):
        unfitted.fixef  # noqa: B018
    assert "not fitted" in repr(unfitted)
