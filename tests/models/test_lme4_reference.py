"""Every model in tests/data/lmm (lme4's results) fitted by mixedmodels and compared.

Bounds (issue 2): objective ≤ lme4's + 1e-4; fixed effects within 0.01 of
their lme4 standard error; standard errors within 0.5 %; σ within 0.5 %;
random-effect standard deviations within 1 % (or 0.001·σ near zero);
conditional modes, fitted values and residuals at the same precision; logLik,
AIC and BIC consistent with the objective.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import DATA, NUMERIC_IN_CSV, reference_paths


def _params():
    for path in reference_paths("lmm", "extra"):
        ref = json.loads(path.read_text())
        yield pytest.param(path, id=ref["id"])


def _num(value) -> float:
    return math.nan if value in ("NA", None) else float(value)


@pytest.fixture(scope="module")
def fits(reference_fit):
    return reference_fit


@pytest.mark.parametrize("path", list(_params()))
def test_matches_lme4(path, fits):
    ref, m = fits(path)
    sigma_ref = ref["sigma"]

    # The optimum is at least as good as lme4's.
    assert m.objective <= ref["objective"] + 1e-4
    assert m.nobs == ref["nobs"]
    assert m.ngroups == ref["ngroups"]
    assert m.theta_names == ref["theta_names"]

    # Fixed effects, standard errors, vcov.
    assert list(m.fixef.index) == [NUMERIC_IN_CSV.get(n, n) for n in ref["fixef_names"]]
    se_ref = np.array(ref["stderr"], dtype=float)
    beta_ref = np.array([ref["fixef"][n] for n in ref["fixef_names"]])
    np.testing.assert_array_less(np.abs(m.fixef.to_numpy() - beta_ref), 0.01 * se_ref)
    np.testing.assert_allclose(m.coefs["std_error"], se_ref, rtol=5e-3)
    np.testing.assert_allclose(m.coefs["t_value"], ref["tvalue"], rtol=5e-3, atol=0.01)
    np.testing.assert_allclose(
        m.vcov.to_numpy(),
        np.array(ref["vcov"], dtype=float),
        rtol=1e-2,
        atol=1e-2 * se_ref.min() ** 2,
    )

    # σ and the random-effect standard deviations and correlations.
    assert m.sigma == pytest.approx(sigma_ref, rel=5e-3)
    vc = m.varcorr
    for label_ref in ref["varcorr"]:
        rows = vc[(vc.group == label_ref["group"]) & vc.var2.isna()]
        assert list(rows.var1) == label_ref["terms"]
        np.testing.assert_allclose(
            rows.sdcor.to_numpy(), label_ref["sd"], rtol=1e-2, atol=1e-3 * sigma_ref
        )
        corr_ref = np.array(label_ref["corr"], dtype=float) if label_ref.get("corr") else None
        if corr_ref is not None and corr_ref.ndim == 2:
            for _, row in vc[(vc.group == label_ref["group"]) & vc.var2.notna()].iterrows():
                i = label_ref["terms"].index(row.var1)
                j = label_ref["terms"].index(row.var2)
                if np.isfinite(corr_ref[i, j]) and min(label_ref["sd"]) > 1e-3 * sigma_ref:
                    assert row.sdcor == pytest.approx(corr_ref[i, j], abs=0.01)
    assert vc.group.iloc[-1] == "Residual"

    # Conditional modes, fitted values, residuals: within 1 % of the spread of
    # what is compared (the "same precision" as the standard deviations).
    ranef = m.ranef
    for block in ref["ranef"]:
        ours = ranef[block["group"]]
        assert len(ours) == block["n_levels"]
        got = ours.loc[block["levels"], block["terms"]].to_numpy()
        want = np.array(block["values"], dtype=float)
        scale = max(np.abs(want).max(), 1e-3 * sigma_ref)
        np.testing.assert_allclose(got, want, atol=1e-2 * scale)
    fitted_ref = np.array(ref["fitted_head"], dtype=float)
    resid_ref = np.array(ref["resid_head"], dtype=float)
    n_head = len(fitted_ref)
    np.testing.assert_allclose(m.fitted.to_numpy()[:n_head], fitted_ref, atol=0.01 * sigma_ref)
    np.testing.assert_allclose(m.residuals.to_numpy()[:n_head], resid_ref, atol=0.01 * sigma_ref)

    # logLik, AIC and BIC consistent with the objective (and with lme4's).
    assert m.loglik == pytest.approx(-m.objective / 2)
    assert m.n_params == ref["df_logLik"]
    assert m.aic == pytest.approx(m.objective + 2 * ref["df_logLik"])
    assert m.bic == pytest.approx(m.objective + ref["df_logLik"] * math.log(ref["nobs"]))
    assert m.loglik >= ref["logLik"] - 0.5e-4
    if not ref["REML"]:
        assert m.deviance == pytest.approx(m.objective)
    elif _num(ref.get("deviance_ml")) == _num(ref.get("deviance_ml")):
        assert m.deviance == pytest.approx(_num(ref["deviance_ml"]), rel=1e-5)

    assert m.is_singular == ref["is_singular"]


def test_summary_prints_lme4_layout(fits):
    _, m = fits(DATA / "lmm" / "sleepstudy_slope_reml.json")
    text = str(m.summary())
    assert "REML criterion at convergence: 1743.6" in text
    assert "Random effects:" in text and "Fixed effects:" in text
    assert "Number of obs: 180, groups:  Subject, 18" in text
    assert "Correlation of Fixed Effects:" in text
    assert " 251.405 " in text  # estimates and standard errors rounded together, as R
