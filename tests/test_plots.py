"""Plots and the progress helper.

The plots are checked for what they draw (the numbers behind the marks, with
lme4's conditional variances and profile intervals as references) and saved
as PNGs that must not be blank.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import mixedmodels as mm
from mixedmodels import plots

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from tests.conftest import read_reference, reference_data, reference_paths  # noqa: E402

CONDVAR_REFS = reference_paths("plots", pattern="ci_*.json")


def _load(name: str) -> dict:
    return read_reference(f"plots/{name}")


def _fit(ref: dict) -> mm.LinearMixedModel:
    reml = ref["REML"] in (True, "True", "TRUE")
    return mm.lmer(ref["formula"], reference_data(ref), reml=reml)


@pytest.fixture(scope="module")
def sleep(sleepstudy_slope_fit) -> mm.LinearMixedModel:
    # The model of plots/ci_sleepstudy_slope.json, fitted once for the session.
    return sleepstudy_slope_fit


def _assert_png_drawn(fig, path: Path) -> None:
    fig.savefig(path, dpi=60)
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    # Something besides the white background was drawn.
    assert (pixels[..., :3] < 0.5).mean() > 0.002


# -- conditional variances ------------------------------------------------------------


@pytest.mark.parametrize("path", CONDVAR_REFS, ids=[p.stem for p in CONDVAR_REFS])
def test_conditional_covariances_match_lme4(path):
    ref = json.loads(path.read_text())
    model = _fit(ref)
    condvar = ref["condvar"]
    ours = plots.conditional_covariances(model)[condvar["group"]]
    levels = list(model.ranef[condvar["group"]].index)
    got = ours[[levels.index(level) for level in condvar["levels"]]]
    want = np.array(condvar["postvar"], dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6 * np.abs(want).max())


# -- caterpillar ----------------------------------------------------------------------


def test_caterpillar_draws_modes_and_lme4_intervals(sleep, tmp_path):
    ref = _load("ci_sleepstudy_slope")["condvar"]
    fig = plots.caterpillar(sleep, level=0.95)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Subject: (Intercept)", "Subject: Days"]
    modes = sleep.ranef["Subject"]
    postvar = np.array(ref["postvar"], dtype=float)
    labels = [str(level) for level in modes.index]
    for j, ax in enumerate(axes):
        points = ax.lines[0].get_xdata()
        np.testing.assert_allclose(np.sort(points), np.sort(modes.iloc[:, j]))
        tick_labels = [t.get_text() for t in ax.get_yticklabels()]
        assert sorted(tick_labels) == sorted(labels)
        (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        half_widths = {
            label: (seg[1, 0] - seg[0, 0]) / 2
            for label, seg in zip(tick_labels, bars.get_segments(), strict=True)
        }
        for level, var in zip(ref["levels"], postvar, strict=True):
            assert half_widths[level] == pytest.approx(1.959964 * math.sqrt(var[j, j]), rel=1e-3)
    _assert_png_drawn(fig, tmp_path / "caterpillar.png")


def test_caterpillar_keeps_one_level_order_across_panels(sleep):
    fig = plots.caterpillar(sleep)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    orders = [[t.get_text() for t in ax.get_yticklabels()] for ax in axes]
    assert orders[0] == orders[1]
    intercepts = sleep.ranef["Subject"]["(Intercept)"]
    assert orders[0] == [str(level) for level in intercepts.sort_values(kind="stable").index]
    # Each panel's points follow that order: row k is the same level in both.
    days = sleep.ranef["Subject"]["Days"]
    np.testing.assert_allclose(
        axes[1].lines[0].get_xdata(), [days[days.index.astype(str) == k].iloc[0] for k in orders[0]]
    )


def test_figures_display_themselves_in_jupyter(sleep):
    fig = plots.caterpillar(sleep)
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG")


def test_forest_plot_draws_estimates_and_intervals(sleep, tmp_path):
    fig = plots.forest(sleep, level=0.9)
    ax = fig.axes[0]
    table = sleep.coef_table(conf_int=True, level=0.9)
    points = np.asarray(ax.lines[0].get_xdata(), dtype=float)
    np.testing.assert_allclose(np.sort(points), np.sort(table["estimate"]))
    (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    ends = np.sort(np.array([seg[:, 0] for seg in bars.get_segments()]), axis=0)
    np.testing.assert_allclose(ends, np.sort(table[["conf_low", "conf_high"]].to_numpy(), axis=0))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["(Intercept)", "Days"]
    assert [
        t.get_text() for t in plots.forest(sleep, intercept=False).axes[0].get_yticklabels()
    ] == ["Days"]
    _assert_png_drawn(fig, tmp_path / "forest.png")


def test_caterpillar_without_intervals_and_bad_input(sleep):
    fig = plots.caterpillar(sleep, level=None)
    assert not any(isinstance(c, LineCollection) for ax in fig.axes for c in ax.collections)
    with pytest.raises(mm.MixedModelsError, match="'Patient'"):
        plots.caterpillar(sleep, groups=["Patient"])
    with pytest.raises(mm.MixedModelsError, match="level"):
        plots.caterpillar(sleep, level=95)
    with pytest.raises(mm.MixedModelsError, match="fitted"):
        plots.caterpillar("not a model")


def test_caterpillar_crossed_factors(tmp_path):
    model = _fit(_load("ci_penicillin"))
    fig = plots.caterpillar(model)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["plate: (Intercept)", "sample: (Intercept)"]
    _assert_png_drawn(fig, tmp_path / "caterpillar_crossed.png")


# -- residuals and qq -----------------------------------------------------------------


def test_residuals_plot_shows_residuals_against_fitted(sleep, tmp_path):
    fig = plots.residuals(sleep)
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], sleep.fitted)
    np.testing.assert_allclose(offsets[:, 1], sleep.residuals)
    scaled = plots.residuals(sleep, scaled=True).axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(scaled[:, 1], sleep.residuals / sleep.sigma)
    _assert_png_drawn(fig, tmp_path / "residuals.png")


def test_qq_has_residuals_and_every_mode_column(sleep, tmp_path):
    fig = plots.qq(sleep)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [
        "residuals",
        "Subject: (Intercept)",
        "Subject: Days",
    ]
    x, y = axes[0].lines[0].get_xdata(), axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(y, np.sort(sleep.residuals))
    assert np.all(np.diff(x) > 0)
    assert x[0] == pytest.approx(-x[-1])  # symmetric plotting positions
    np.testing.assert_allclose(
        axes[2].lines[0].get_ydata(), np.sort(sleep.ranef["Subject"]["Days"])
    )
    _assert_png_drawn(fig, tmp_path / "qq.png")


# -- profile ζ ------------------------------------------------------------------------


def _profile_sd_and_sigma(model: mm.LinearMixedModel) -> pd.DataFrame:
    """ζ for the batch standard deviation and σ of a one-term model fitted by ML.

    The deviance with σ not profiled out is
    d(θ, σ) = log|L|² + n log(2πσ²) + r²(θ)/σ²;
    each parameter is fixed on a grid and d minimised over the other one,
    which is what profiling means.
    """
    n = model.nobs

    def deviance(theta: float, sigma: float) -> float:
        factor = model.problem.factor_at(np.array([theta]))
        return (
            factor.logdet_theta() + n * math.log(2 * math.pi * sigma**2) + factor.pwrss() / sigma**2
        )

    best = model.objective
    sd_hat = model.theta[0] * model.sigma
    sigma_hat = model.sigma
    rows = []
    for sd in np.linspace(0.05 * sd_hat, 3.0 * sd_hat, 80):
        found = optimize.minimize_scalar(
            lambda log_s, sd=sd: deviance(sd / math.exp(log_s), math.exp(log_s)),
            bounds=(math.log(sigma_hat / 4), math.log(sigma_hat * 4)),
            method="bounded",
            options={"xatol": 1e-9},
        )
        zeta = math.copysign(math.sqrt(max(found.fun - best, 0.0)), sd - sd_hat)
        rows.append(("sd_(Intercept)|Batch", sd, zeta))
    for sigma in np.linspace(0.6 * sigma_hat, 1.8 * sigma_hat, 60):
        found = optimize.minimize_scalar(
            lambda theta, sigma=sigma: deviance(theta, sigma),
            bounds=(0.0, 20.0),
            method="bounded",
            options={"xatol": 1e-10},
        )
        zeta = math.copysign(math.sqrt(max(found.fun - best, 0.0)), sigma - sigma_hat)
        rows.append(("sigma", sigma, zeta))
    model.objective_at(model.theta)
    return pd.DataFrame(rows, columns=["parameter", "value", "zeta"])


def test_profile_plot_and_intervals_match_lme4(tmp_path):
    ref = _load("ci_dyestuff")
    # The reference is a REML fit, but lme4 profiles the likelihood (its
    # limits are those of the ML fit), so the profile is of the ML deviance.
    model = mm.lmer(ref["formula"], mm.datasets.load(ref["dataset"]), reml=False)
    table = _profile_sd_and_sigma(model)
    limits = plots.profile_intervals(table, 0.95)
    for name in ("sd_(Intercept)|Batch", "sigma"):
        k = ref["profile"]["names"].index(name)
        assert limits.loc[name, "lower"] == pytest.approx(ref["profile"]["lower"][k], rel=1e-2)
        assert limits.loc[name, "upper"] == pytest.approx(ref["profile"]["upper"][k], rel=1e-2)
    fig = plots.profile(table)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["sd_(Intercept)|Batch", "sigma"]
    # No dashed ζ levels: the ±z lines of the interval and its dotted limits only.
    assert not [line for ax in axes for line in ax.lines if line.get_linestyle() == "--"]
    # The dotted lines are the 95 % limits.
    edges = [line.get_xdata()[0] for line in axes[1].lines if line.get_linestyle() == ":"]
    np.testing.assert_allclose(edges, limits.loc["sigma"].to_numpy())
    _assert_png_drawn(fig, tmp_path / "profile.png")


def test_profile_rejects_a_table_without_zeta():
    table = pd.DataFrame({"parameter": ["a"], "value": [1.0]})
    with pytest.raises(mm.MixedModelsError, match="'zeta'"):
        plots.profile(table)
    with pytest.raises(mm.MixedModelsError, match="DataFrame"):
        plots.profile([1, 2, 3])


def test_profile_plot_of_a_model(tmp_path):
    m = mm.lmer("Yield ~ 1 + (1 | Batch)", mm.datasets.load("Dyestuff"))
    fig = plots.profile(m, progress=False)
    _assert_png_drawn(fig, tmp_path / "profile.png")
    sleep = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    titles = [ax.get_title() for ax in plots.profile(sleep, progress=False).axes]
    assert "cor_Days.(Intercept)\n| Subject" in titles


# -- generalized linear mixed models ------------------------------------------------


@pytest.fixture(scope="module")
def cbpp_glmm() -> mm.GeneralizedLinearMixedModel:
    data = mm.datasets.load("cbpp")
    return mm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", data)


def test_glmm_plots_draw(cbpp_glmm, tmp_path):
    m = cbpp_glmm
    caterpillar = plots.caterpillar(m)
    # The intervals are the PIRLS factor's conditional variances (ranef_cov).
    sd = np.sqrt(m.ranef_cov["herd"][:, 0, 0])
    segments = caterpillar.axes[0].collections[0].get_segments()
    half_widths = sorted(round((s[1, 0] - s[0, 0]) / 2, 10) for s in segments)
    np.testing.assert_allclose(half_widths, np.sort(1.959963984540054 * sd), rtol=1e-8)
    _assert_png_drawn(caterpillar, tmp_path / "caterpillar.png")
    resid = plots.residuals(m)
    ax = resid.axes[0]
    assert ax.get_ylabel() == "Pearson residuals"
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 1], m.residuals(type="pearson").to_numpy())
    np.testing.assert_allclose(points[:, 0], m.fitted.to_numpy())
    assert ax.get_title() == m.formula
    _assert_png_drawn(resid, tmp_path / "residuals.png")
    # Normal quantiles of the modes only: the residuals are not normal under the model.
    quantiles = plots.qq(m)
    assert [a.get_title() for a in quantiles.axes if a.get_visible()] == ["herd: (Intercept)"]
    forest = plots.forest(m)
    wald = m.confint("wald").loc[m.design.fixed_names]
    bars = forest.axes[0].collections[0].get_segments()
    np.testing.assert_allclose(sorted(b[0, 0] for b in bars), sorted(wald["lower"]), rtol=1e-10)
    _assert_png_drawn(forest, tmp_path / "forest.png")


def test_glmm_profile_plot(cbpp_glmm, tmp_path):
    fig = plots.profile(cbpp_glmm, progress=False)
    titles = [a.get_title() for a in fig.axes if a.get_visible()]
    assert titles == ["sd_(Intercept)|herd", *cbpp_glmm.design.fixed_names]
    _assert_png_drawn(fig, tmp_path / "profile.png")
