"""One summary content, rendered as text, HTML, LaTeX and JSON.

The text's layout against lme4's own output is tests/results/test_summary_lme4.py;
here: every renderer shows the same content, and the content is right.
"""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.results.summary import ModelSummary, VarianceComponent

_TOKEN = re.compile(r"-?\d[\d.e+-]*|<\s?2e-16")


@pytest.fixture(scope="module")
def sleep():
    m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    m.data_name = "sleepstudy"
    return m


@pytest.fixture(scope="module")
def cake():
    data = mm.datasets.load("cake")
    return mm.lmer("angle ~ recipe * factor(temp) + (1 | recipe:replicate)", data)


def _numbers(text: str) -> list[str]:
    return _TOKEN.findall(text)


@pytest.mark.parametrize("which", ["sleep", "cake"])
def test_html_shows_every_number_of_the_text(which, request):
    m = request.getfixturevalue(which)
    s = m.summary()
    text, page = s.as_text(), s.as_html()
    body = html.unescape(re.sub(r"<style>.*?</style>", "", page))
    cells = set(re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", body))
    missing = [n for n in _numbers(text) if n not in body and n not in cells]
    assert not missing, missing
    assert "Pr(&gt;|t|)" in page and "<th>df</th>" in page
    assert "Signif. codes" in page


def test_repr_html_is_the_summary(sleep):
    assert sleep._repr_html_() == sleep.summary().as_html()
    assert str(sleep.summary()) == sleep.summary().as_text()


def test_html_escapes_and_shows_the_notes():
    data = mm.datasets.load("Dyestuff2")
    with pytest.warns(mm.SingularFitWarning):
        model = mm.lmer("Yield ~ 1 + (1 | Batch)", data)
    model.data_name = "<script>"
    page = model.summary().as_html()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<li>boundary (singular) fit: see is_singular</li>" in page


def test_ml_fit_has_satterthwaite_df():
    m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"), reml=False)
    s = m.summary()
    assert s.ddf == "Satterthwaite"
    np.testing.assert_allclose(s.fixed_effects["df"], m.coef_table()["df"])
    assert list(s.criteria) == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    assert s.criteria["df.resid"] == 174
    assert "df.resid" in s.as_text() and " 174" in s.as_text()


def test_kenward_roger_replaces_satterthwaite(sleep):
    s = sleep.summary(ddf="kenward-roger")
    assert s.title.endswith("t-tests use Kenward-Roger's method")
    kr = sleep.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(s.fixed_effects["df"], kr["df"])
    np.testing.assert_allclose(s.fixed_effects["std_error"], kr["std_error"])
    assert s.as_text().count("Fixed effects:") == 1


def test_no_df_is_lme4s_table(sleep):
    s = sleep.summary(ddf=None)
    assert "df" not in s.fixed_effects.columns and not s.has_p_values
    assert s.title == "Linear mixed model fit by REML"
    assert "Pr(>|t|)" not in s.as_text() and "Signif. codes" not in s.as_text()
    with pytest.raises(mm.MixedModelsError, match="unknown ddf"):
        sleep.summary(ddf="containment")


def test_correlation_block_left_out_with_a_note(cake):
    text = str(cake.summary())
    assert "Correlation matrix not shown by default, as p = 18 > 12." in text
    assert "Correlation of Fixed Effects" not in text
    shown = str(cake.summary(correlation=True))
    assert "Correlation of Fixed Effects:" in shown and "not shown" not in shown


def test_content_is_the_models_numbers(sleep):
    s = sleep.summary()
    assert s.criteria == {"REML criterion at convergence": sleep.objective}
    np.testing.assert_allclose(s.fixed_effects["estimate"], sleep.fixef)
    np.testing.assert_allclose(s.fixed_effects["p_value"], sleep.coef_table()["p_value"])
    vc = sleep.varcorr
    assert [c.name for c in s.random_effects] == ["(Intercept)", "Days"]
    assert s.random_effects[1].correlations == pytest.approx((vc.sdcor.iloc[2],))
    assert s.residual.std_dev == pytest.approx(sleep.sigma)
    resid = sleep.residuals / sleep.sigma
    np.testing.assert_allclose(s.scaled_residuals, np.quantile(resid, [0, 0.25, 0.5, 0.75, 1]))
    np.testing.assert_allclose(
        s.correlation, sleep.vcov / np.outer(*[np.sqrt(np.diag(sleep.vcov))] * 2)
    )


def test_as_dict_is_json_with_p_values(sleep):
    doc = json.loads(json.dumps(sleep.summary().as_dict(), allow_nan=False))
    assert all(f["p_value"] is not None and f["df"] is not None for f in doc["fixed_effects"])
    assert doc["ngroups"] == {"Subject": 18}
    assert doc["random_effects"][-1]["group"] == "Residual"


def test_latex_tables(sleep):
    latex = sleep.summary().as_latex()
    assert latex.count("\\begin{tabular}") == 3
    assert "251.405" in latex and "Pr(\\textgreater{}\\textbar{}t\\textbar{})" in latex
    assert "\\_" not in latex or "\\\\" in latex


def test_a_generalized_model_fills_the_same_content():
    """A GLMM's summary: family line, z tests, no residual row (what glmer prints)."""
    fixed = pd.DataFrame(
        {
            "estimate": [-1.3985, -0.9923],
            "std_error": [0.2279, 0.3032],
            "statistic": [-6.137, -3.273],
            "p_value": [8.42e-10, 0.00106],
        },
        index=["(Intercept)", "period2"],
    )
    s = ModelSummary(
        model_type="Generalized linear mixed model",
        method="maximum likelihood (Laplace Approximation)",
        formula="cbind(incidence, size - incidence) ~ period + (1 | herd)",
        data="cbpp",
        family="binomial",
        link="logit",
        criteria={"AIC": 194.1, "BIC": 204.2, "logLik": -92.0, "deviance": 184.1, "df.resid": 51},
        scaled_residuals=pd.Series(
            [-2.38, -0.79, -0.2, 0.53, 2.86], index=["Min", "1Q", "Median", "3Q", "Max"]
        ),
        random_effects=(VarianceComponent("herd", "(Intercept)", 0.4123, 0.6421),),
        residual=None,
        nobs=56,
        ngroups={"herd": 15},
        fixed_effects=fixed,
        statistic="z",
    )
    text = s.as_text()
    assert text.splitlines()[:2] == [
        "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)",
        " Family: binomial  ( logit )",
    ]
    assert "z value Pr(>|z|)" in text and "Residual" not in text
    assert " herd   (Intercept) 0.4123   0.6421" in text
    assert "Pr(&gt;|z|)" in s.as_html()
