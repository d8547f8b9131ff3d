"""Fits of Dask DataFrames on a real LocalCluster, against the in-memory fit and lme4.

The data → blocks stage runs on two worker processes; the fit must equal the
in-memory one (objective within 1e-8 relative, fixed effects within 1e-7
relative) and, for the models lme4 was run on, lme4's results.  θ itself is
compared more loosely: the blocks summed per partition differ from the
in-memory ones by rounding, and BOBYQA's path (hence where it stops, within its
tolerance on a flat optimum) can follow such differences.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

from mixedmodels.frontends.dask import DaskLinearMixedModel, DaskRows, fit_dask  # noqa: E402
from tests.conftest import read_reference, reference_data  # noqa: E402

FORMULA = "y ~ x + grp + (x | user) + (1 | item)"


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _assert_same_fit(dask_fit, memory_fit) -> None:
    assert _rel(dask_fit.objective, memory_fit.objective) < 1e-8
    assert list(dask_fit.fixef.index) == list(memory_fit.fixef.index)
    assert _rel(dask_fit.fixef, memory_fit.fixef) < 1e-7
    assert dask_fit.nobs == memory_fit.nobs
    assert dask_fit.ngroups == memory_fit.ngroups
    assert dask_fit.theta_names == memory_fit.theta_names
    assert dask_fit.design.dropped_columns == memory_fit.design.dropped_columns
    # Where BOBYQA stops on a flat optimum moves with rounding: the in-memory
    # fit of the same rows shuffled moves θ as much (see the module docstring).
    np.testing.assert_allclose(dask_fit.theta, memory_fit.theta, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(dask_fit.sigma, memory_fit.sigma, rtol=1e-6)
    # Standard errors relatively, correlations absolutely (some are near zero).
    se_dask, se_memory = dask_fit.coefs.std_error, memory_fit.coefs.std_error
    np.testing.assert_allclose(se_dask, se_memory, rtol=2e-3)
    np.testing.assert_allclose(
        dask_fit.vcov / np.outer(se_dask, se_dask),
        memory_fit.vcov / np.outer(se_memory, se_memory),
        atol=2e-3,
    )
    for group, modes in memory_fit.ranef.items():
        assert dask_fit.ranef[group].index.equals(modes.index)
        np.testing.assert_allclose(dask_fit.ranef[group], modes, rtol=2e-3, atol=1e-3)


def synthetic_events(n: int, users: int, items: int, seed: int) -> pd.DataFrame:
    """Crossed users × items with a random slope per user and a 3-level factor."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    item = rng.integers(0, items, n).astype(np.int32)
    x = rng.normal(size=n)
    grp = rng.choice(np.array(["a", "b", "c"]), n)
    b_user = rng.normal(size=(users, 2)) * [1.0, 0.3]
    b_item = rng.normal(size=items) * 0.5
    y = (
        1
        + 0.5 * x
        + 0.2 * (grp == "b")
        - 0.3 * (grp == "c")
        + b_user[user, 0]
        + b_user[user, 1] * x
    )
    y += b_item[item] + rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "y": y,
            "x": x,
            "grp": grp,
            "user": np.char.add("u", user.astype(str)),
            "item": item,
            "w": rng.uniform(0.5, 2.0, n),
        }
    )
    # A few missing values, dropped by both paths.
    frame.loc[rng.choice(n, 50, replace=False), "x"] = np.nan
    return frame


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Two million rows as eight Parquet files, and the same rows in memory."""
    frame = synthetic_events(2_000_000, users=200, items=10, seed=11)
    folder = tmp_path_factory.mktemp("events")
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 8)):
        frame.iloc[rows].to_parquet(folder / f"part-{k}.parquet")
    return frame, str(folder / "*.parquet")


@pytest.fixture(scope="module")
def big_fits(client, events):
    frame, pattern = events
    ddf = dd.read_parquet(pattern)
    with warnings.catch_warnings():
        # Two million rows make a sharp optimum that the convergence check
        # may doubt, in both paths alike.
        warnings.simplefilter("ignore", mm.ConvergenceWarning)
        return mm.lmer(FORMULA, frame), fit_dask(FORMULA, ddf), ddf


def test_parquet_on_cluster_equals_in_memory(big_fits):
    memory_fit, dask_fit, ddf = big_fits
    assert ddf.npartitions == 8
    assert isinstance(dask_fit, mm.LinearMixedModel)
    assert isinstance(dask_fit.rows, DaskRows)
    _assert_same_fit(dask_fit, memory_fit)
    assert dask_fit.n_dropped_missing == memory_fit.n_dropped_missing == 50


def test_blocks_equal_in_memory_blocks(big_fits):
    """The cluster's summed blocks are the in-memory ones up to summation order, and
    give the same objective and estimates at the same θ (the optimizer aside)."""
    memory_fit, dask_fit, _ = big_fits
    a, b = dask_fit.cross_products, memory_fit.cross_products
    assert (a.n_levels, a.q, a.n_obs) == (b.n_levels, b.q, b.n_obs)
    # Both hold y − Xβ₀ with β₀ the least-squares fit (theirs from a QR of X,
    # ours from XᵀX); the y parts are residual sums near zero, so the X and Z
    # parts are compared tightly and β₀ to its own precision.
    np.testing.assert_allclose(a.beta_offset, b.beta_offset, rtol=1e-9)
    np.testing.assert_allclose(a.xx[:-1, :-1], b.xx[:-1, :-1], rtol=1e-10)
    for got, want in zip(a.diag, b.diag, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)
    for got, want in zip(a.xz, b.xz, strict=True):
        np.testing.assert_allclose(got[:-1], want[:-1], rtol=1e-10, atol=1e-9)
    for key, pairs in b.off.items():
        np.testing.assert_array_equal(a.off[key].rows, pairs.rows)
        np.testing.assert_array_equal(a.off[key].cols, pairs.cols)
        np.testing.assert_allclose(a.off[key].data, pairs.data, rtol=1e-10)
    theta = dask_fit.theta
    at_dask_theta = memory_fit.at_theta(theta)
    assert _rel(dask_fit.objective, at_dask_theta.objective) < 1e-12
    assert _rel(dask_fit.fixef, at_dask_theta.fixef) < 1e-9


def test_driver_holds_no_rows(big_fits):
    _, dask_fit, _ = big_fits
    design = dask_fit.design
    assert not hasattr(design, "x") and not hasattr(design, "y")
    assert not any(hasattr(t, "codes") or hasattr(t, "z") for t in design.terms)
    assert dask_fit.cross_products.n_obs == 2_000_000 - 50


def test_fitted_and_residuals_are_lazy(big_fits):
    import dask

    memory_fit, dask_fit, _ = big_fits
    fitted, resid = dask_fit.fitted, dask_fit.residuals
    assert isinstance(fitted, dd.Series) and isinstance(resid, dd.Series)
    fitted, resid = dask.compute(fitted, resid)
    # Xβ + Zb of the in-memory rows with the cluster fit's β and b; Parquet
    # partitions each restart their index, so compare positionally.
    design = memory_fit.design
    expected = design.x @ dask_fit.fixef.to_numpy()
    for term, modes in zip(design.terms, dask_fit.state.modes, strict=True):
        expected += np.einsum("nq,nq->n", term.z, modes[term.codes])
    np.testing.assert_allclose(fitted.to_numpy(), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(resid.to_numpy(), design.y - expected, rtol=1e-9, atol=1e-9)


def test_predict_new_levels(big_fits):
    _, dask_fit, _ = big_fits
    new = pd.DataFrame(
        {
            "x": [0.5, -1.0, 2.0, np.nan],
            "grp": ["a", "c", "b", "a"],
            "user": ["u3", "u3", "newcomer", "u3"],
            "item": np.array([0, 9, 5, 0], dtype=np.int32),
        }
    )
    new_ddf = dd.from_pandas(new, npartitions=2)
    with pytest.raises(mm.DataError, match="newcomer"):
        dask_fit.predict(new_ddf).compute()

    beta = dask_fit.fixef
    fixed = (
        beta["(Intercept)"]
        + beta["x"] * new.x
        + beta["grpb"] * (new.grp == "b")
        + beta["grpc"] * (new.grp == "c")
    )
    marginal = dask_fit.predict(new_ddf, random=False)
    assert isinstance(marginal, dd.Series)
    np.testing.assert_allclose(marginal.compute(), fixed, rtol=1e-12)

    user = dask_fit.ranef["user"]
    item = dask_fit.ranef["item"]
    random = [
        user.loc["u3", "(Intercept)"] + user.loc["u3", "x"] * 0.5 + item.loc["0", "(Intercept)"],
        user.loc["u3", "(Intercept)"] - user.loc["u3", "x"] + item.loc["9", "(Intercept)"],
        item.loc["5", "(Intercept)"],  # the unseen user's effect is zero
        np.nan,  # a missing predictor gives a missing prediction
    ]
    conditional = dask_fit.predict(new_ddf, allow_new_levels=True).compute()
    np.testing.assert_allclose(conditional, fixed + random, rtol=1e-12)


def test_predict_unknown_factor_level_is_an_error(big_fits):
    _, dask_fit, _ = big_fits
    new = dd.from_pandas(
        pd.DataFrame({"x": [0.0], "grp": ["zzz"], "user": ["u1"], "item": [1]}), npartitions=1
    )
    with pytest.raises(mm.DataError, match=r"'grp'.*'zzz'"):
        dask_fit.predict(new).compute()


def _reference(name: str) -> dict:
    return read_reference(name)


@pytest.mark.parametrize(
    "name",
    [
        "lmm/sleepstudy_slope_reml",
        "lmm/penicillin_crossed_reml",
        "lmm/pastes_nested_reml",
        "extra/cake_temp_factor_reml",
        "extra/sleepstudy_rankdef_reml",
        "extra/exam_schgend_rankdef_ml",
    ],
)
def test_matches_lme4_and_in_memory(client, name):
    ref = _reference(name)
    data = reference_data(ref)
    formula = ref.get("formula_python", ref["formula"])
    ddf = dd.from_pandas(data, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.SingularFitWarning)
        warnings.simplefilter("ignore", mm.RankDeficiencyWarning)
        memory_fit = mm.lmer(formula, data, reml=ref["REML"])
        dask_fit = fit_dask(formula, ddf, reml=ref["REML"])
    _assert_same_fit(dask_fit, memory_fit)
    # lme4: the same names, no worse an optimum, estimates within 1 % of a
    # standard error.
    assert list(dask_fit.fixef.index) == ref["fixef_names"]
    assert dask_fit.objective <= ref["objective"] + 1e-4
    assert dask_fit.nobs == ref["nobs"]
    lme4_fixef = pd.Series(ref["fixef"])[ref["fixef_names"]]
    se = np.asarray(ref["stderr"], dtype=float)
    assert np.all(np.abs(dask_fit.fixef.to_numpy() - lme4_fixef.to_numpy()) <= 0.01 * se)
    np.testing.assert_allclose(dask_fit.sigma, ref["sigma"], rtol=5e-3)


def test_rank_deficiency_found_from_gram_matrix(client):
    data = mm.datasets.load("sleepstudy")
    ddf = dd.from_pandas(data, npartitions=4)
    with pytest.warns(mm.RankDeficiencyWarning, match=r"I\(2 \* Days\)"):
        model = DaskLinearMixedModel("Reaction ~ Days + I(2 * Days) + (1 | Subject)", ddf)
    assert model.design.dropped_columns == ["I(2 * Days)"]
    assert model.design.fixed_names == ["(Intercept)", "Days"]


def test_weights_and_categorical_columns(client):
    data = mm.datasets.load("sleepstudy").copy()
    rng = np.random.default_rng(3)
    data["w"] = rng.uniform(0.5, 2.0, len(data))
    data["week"] = pd.Categorical(
        np.where(data.Days < 5, "first", "second"), categories=["second", "first", "unused"]
    )
    formula = "Reaction ~ Days + week + (Days | Subject)"
    memory_fit = mm.lmer(formula, data, weights=data["w"])
    dask_fit = fit_dask(formula, dd.from_pandas(data, npartitions=3), weights="w")
    # Category order (not sorted order) sets the reference level, as in memory.
    assert list(dask_fit.fixef.index) == ["(Intercept)", "Days", "weekfirst"]
    _assert_same_fit(dask_fit, memory_fit)


def test_summary_matches_in_memory(client):
    data = mm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    memory_fit = mm.lmer(formula, data)
    dask_fit = fit_dask(formula, dd.from_pandas(data, npartitions=3))
    assert str(dask_fit.summary()) == str(memory_fit.summary())


def test_missing_raise_names_the_column(client):
    data = mm.datasets.load("sleepstudy").copy()
    data.loc[7, "Days"] = np.nan
    ddf = dd.from_pandas(data, npartitions=3)
    with pytest.raises(mm.DataError, match="'Days'"):
        fit_dask("Reaction ~ Days + (1 | Subject)", ddf, missing="raise")
    model = fit_dask("Reaction ~ Days + (1 | Subject)", ddf)
    assert model.nobs == 179 and model.n_dropped_missing == 1


@pytest.mark.parametrize(
    ("formula", "kwargs", "match"),
    [
        ("Reaction ~ Hours + (1 | Subject)", {}, "'Hours'"),
        ("Reaction ~ Days + (1 | Group)", {}, "'Group'"),
        ("Reaction ~ scale(Days) + (1 | Subject)", {}, "scale"),
        ("Reaction ~ Days", {}, "no random-effects terms"),
        ("Reaction ~ Days + (1 | Subject)", {"weights": np.ones(180)}, "name of a column"),
        ("Reaction ~ Days + (1 | Subject)", {"weights": "w"}, "'w'"),
    ],
)
def test_bad_input_gets_a_clear_error(formula, kwargs, match):
    ddf = dd.from_pandas(mm.datasets.load("sleepstudy"), npartitions=2)
    with pytest.raises(mm.MixedModelsError, match=match):
        DaskLinearMixedModel(formula, ddf, **kwargs)


def test_default_scheduler_without_client():
    import dask

    data = mm.datasets.load("Dyestuff")
    formula = "Yield ~ 1 + (1 | Batch)"
    with dask.config.set(scheduler="synchronous"):
        dask_fit = fit_dask(formula, dd.from_pandas(data, npartitions=2))
    _assert_same_fit(dask_fit, mm.lmer(formula, data))


def test_data_are_not_modified(client):
    data = mm.datasets.load("sleepstudy")
    before = data.copy()
    ddf = dd.from_pandas(data, npartitions=3)
    fit_dask("Reaction ~ Days + (Days | Subject)", ddf).fitted.compute()
    pd.testing.assert_frame_equal(ddf.compute(), before)
    pd.testing.assert_frame_equal(data, before)


def test_infinite_values_and_too_many_levels_are_refused(client):
    data = mm.datasets.load("sleepstudy").copy()
    data["Days"] = data["Days"].astype(float)
    data.loc[5, "Days"] = np.inf
    with pytest.raises(mm.DataError, match="'Days' is infinite"):
        fit_dask("Reaction ~ Days + (1 | Subject)", dd.from_pandas(data, npartitions=3))
    data = mm.datasets.load("sleepstudy").reset_index(names="row")
    with pytest.raises(mm.DataError, match="'row'"):
        fit_dask("Reaction ~ Days + (1 | row)", dd.from_pandas(data, npartitions=3))


@pytest.mark.slow
def test_six_million_rows_in_twenty_files(client, tmp_path):
    frame = synthetic_events(6_000_000, users=2000, items=20, seed=5)
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 20)):
        frame.iloc[rows].to_parquet(tmp_path / f"part-{k:02d}.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.ConvergenceWarning)
        memory_fit = mm.lmer(FORMULA, frame, reml=False)
        dask_fit = fit_dask(FORMULA, dd.read_parquet(str(tmp_path / "*.parquet")), reml=False)
    _assert_same_fit(dask_fit, memory_fit)


def test_wald_profile_satterthwaite_work_and_row_methods_refuse(client):
    data = mm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    memory_fit = mm.lmer(formula, data)
    dask_fit = fit_dask(formula, dd.from_pandas(data, npartitions=3))
    pd.testing.assert_frame_equal(
        dask_fit.confint(method="wald"), memory_fit.confint(method="wald"), rtol=1e-6
    )
    pd.testing.assert_frame_equal(
        dask_fit.coef_table(ddf="satterthwaite"),
        memory_fit.coef_table(ddf="satterthwaite"),
        rtol=1e-5,
    )
    for call in (
        lambda: dask_fit.simulate(2),
        lambda: dask_fit.bootstrap(5),
        lambda: dask_fit.coef_table(ddf="kenward-roger"),
    ):
        with pytest.raises(mm.MixedModelsError, match="rows in memory"):
            call()


def test_every_display_and_result_works_or_says_why(client):
    """A Dask fit is a LinearMixedModel built from the summed blocks (issue 12)."""
    data = mm.datasets.load("sleepstudy")
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", dd.from_pandas(data, npartitions=3))
    memory = mm.lmer("Reaction ~ Days + (Days | Subject)", data)
    html = fit._repr_html_()
    assert "Subject" in html and "Days" in html
    assert "Scaled residuals" in str(fit.summary())
    np.testing.assert_allclose(
        fit.scaled_residual_quantiles(), memory.scaled_residual_quantiles(), rtol=1e-8
    )
    pd.testing.assert_frame_equal(fit.coef_table(), memory.coef_table(), rtol=1e-6)
    pd.testing.assert_frame_equal(fit.varcorr, memory.varcorr, rtol=1e-6)
    np.testing.assert_allclose(fit.ranef_cov["Subject"], memory.ranef_cov["Subject"], rtol=1e-6)
    pd.testing.assert_frame_equal(mm.anova(fit), mm.anova(memory), rtol=1e-6)
    assert fit.deviance == pytest.approx(memory.deviance, rel=1e-10)
    for needs_rows in (
        lambda: fit.simulate(1),
        lambda: fit.bootstrap(2),
        lambda: fit.coef_table(ddf="kenward-roger"),
    ):
        with pytest.raises(mm.MixedModelsError, match="needs the model's rows"):
            needs_rows()
