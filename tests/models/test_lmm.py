"""The model object: its forms of input, its warnings, weights, `python -m mixedmodels`.

The names, types and shapes of the results are in tests/results/test_accessors.py,
the numbers against lme4 in test_lme4_reference.py.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

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


def test_dict_of_columns_gives_the_same_fit(sleepstudy, slope_fit):
    columns = {name: sleepstudy[name].to_numpy() for name in sleepstudy.columns}
    m = mm.lmer("Reaction ~ Days + (Days | Subject)", columns)
    assert m.objective == pytest.approx(slope_fit.objective, abs=1e-8)
    np.testing.assert_allclose(m.fixef, slope_fit.fixef, rtol=1e-8)


def test_callers_data_are_not_modified(sleepstudy):
    before = sleepstudy.copy(deep=True)
    data = sleepstudy.copy()
    data["Subject"] = data["Subject"].astype("category")
    frozen = data.copy(deep=True)
    mm.lmer("Reaction ~ Days + I(Days^2) + (Days || Subject)", data)
    pd.testing.assert_frame_equal(data, frozen)
    pd.testing.assert_frame_equal(sleepstudy, before)


def test_model_object_fits_like_lmer(sleepstudy, slope_fit):
    model = mm.LinearMixedModel("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with pytest.raises(mm.NotFittedError):
        _ = model.fixef
    model.fit()
    assert model.objective == pytest.approx(slope_fit.objective, abs=1e-8)


def test_rank_deficient_x_warns_with_the_column_name(sleepstudy):
    with pytest.warns(mm.RankDeficiencyWarning, match=r"I\(2 \* Days\)"):
        m = mm.lmer("Reaction ~ Days + I(2 * Days) + (1 | Subject)", sleepstudy)
    reference = mm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy)
    assert list(m.fixef.index) == ["(Intercept)", "Days"]
    assert m.objective == pytest.approx(reference.objective, abs=1e-8)


def test_singular_fit_is_reported():
    data = mm.datasets.load("Dyestuff2")
    with pytest.warns(mm.SingularFitWarning):
        m = mm.lmer("Yield ~ 1 + (1 | Batch)", data)
    assert m.is_singular
    assert "singular" in str(m.summary())


def test_weights_scale_the_residual_variance(sleepstudy):
    """Weights w make Var(εᵢ) = σ²/wᵢ: doubling every weight doubles σ², nothing else moves."""
    m1 = mm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, weights=np.ones(180))
    m2 = mm.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, weights=np.full(180, 2.0))
    assert m2.sigma**2 == pytest.approx(2 * m1.sigma**2, rel=1e-5)
    np.testing.assert_allclose(m1.fixef, m2.fixef, rtol=1e-6)
    np.testing.assert_allclose(m1.varcorr.vcov[:1], m2.varcorr.vcov[:1], rtol=1e-4)
    np.testing.assert_allclose(m1.coefs.std_error, m2.coefs.std_error, rtol=1e-4)


def test_main_prints_the_example_summary():
    with warnings.catch_warnings():
        out = subprocess.run(
            [sys.executable, "-m", "mixedmodels"], capture_output=True, text=True, check=True
        ).stdout
    assert "Linear mixed model fit by REML" in out
    assert "Subject" in out and "Days" in out
