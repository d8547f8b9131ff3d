"""Inputs people have, missing values, aliased columns and awkward scales (issue 6).

Where lme4 is the yardstick the numbers come from the JSON files in
``tests/data/validation`` (made by ``make_validation_reference.R`` there); the
rest are equivalences: the same model given in another form must give the same
fit.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import (
    DataError,
    MissingValuesWarning,
    PredictorScaleWarning,
    RankDeficiencyWarning,
)
from tests.conftest import read_reference

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy_slope_fit) -> mm.LinearMixedModel:
    return sleepstudy_slope_fit


def fit_quietly(formula: str, data, **kwargs) -> mm.LinearMixedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, **kwargs)


def assert_same_fit(a: mm.LinearMixedModel, b: mm.LinearMixedModel, rtol: float = 1e-6) -> None:
    """Two fits of the same model: same estimates, criterion and conditional modes."""
    assert a.nobs == b.nobs
    assert list(a.fixef.index) == list(b.fixef.index)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9)
    np.testing.assert_allclose(a.theta, b.theta, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=rtol)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=rtol)
    np.testing.assert_allclose(np.sqrt(np.diag(a.vcov)), np.sqrt(np.diag(b.vcov)), rtol=rtol)


def assert_matches_lme4(model: mm.LinearMixedModel, case: str) -> None:
    ref = read_reference(f"validation/{case}")
    assert model.nobs == ref["nobs"]
    assert list(model.fixef.index) == ref["fixef_names"]
    # lme4 stops at a tolerance: our criterion may be lower, never higher.
    assert model.objective <= ref["objective"] + 1e-6
    np.testing.assert_allclose(model.objective, ref["objective"], rtol=1e-6)
    np.testing.assert_allclose(model.fixef, ref["fixef"], rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(model.vcov)), ref["stderr"], rtol=1e-3)
    np.testing.assert_allclose(model.theta, np.atleast_1d(ref["theta"]), rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(model.sigma, ref["sigma"], rtol=1e-4)


# -- missing values, as lme4's na.omit ---------------------------------------------------------


def with_missing(data: pd.DataFrame) -> pd.DataFrame:
    """The modification make_validation_reference.R makes (0-based rows here)."""
    out = data.copy()
    out["Reaction"] = out["Reaction"].astype(float)
    out.loc[[1, 39, 40, 99], "Reaction"] = np.nan
    out["Days2"] = out["Days"].astype(float)
    out.loc[[4, 76], "Days2"] = np.nan
    return out


def test_missing_rows_are_dropped_as_lme4_does(sleep: pd.DataFrame) -> None:
    data = with_missing(sleep)
    model = mm.lmer("Reaction ~ Days2 + (Days2 | Subject)", data)
    complete = mm.lmer("Reaction ~ Days2 + (Days2 | Subject)", data.dropna())
    assert model.n_dropped_missing == 6
    assert_same_fit(model, complete)
    assert "(6 observations deleted due to missingness)" in str(model.summary())
    assert list(model.residuals.index) == list(data.dropna().index)


def test_scale_sees_every_row_with_a_value(sleep: pd.DataFrame) -> None:
    # R evaluates scale(Days2) on the model frame before na.omit, so the rows
    # dropped for a missing response still count in its mean and sd.
    model = mm.lmer("Reaction ~ scale(Days2) + (1 | Subject)", with_missing(sleep))
    assert_matches_lme4(model, "na_scale")


def test_level_only_in_dropped_rows_is_dropped(sleep: pd.DataFrame) -> None:
    data = with_missing(sleep)
    data["phase"] = np.where(data.Days < 5, "early", "late")
    data.loc[[1, 39], "phase"] = "rest"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficiencyWarning)
        model = mm.lmer("Reaction ~ Days2 + phase + (Days2 | Subject)", data)
    assert_matches_lme4(model, "na_unused_level")


def test_nan_from_a_transform_drops_the_row_with_a_warning(sleep: pd.DataFrame) -> None:
    with pytest.warns(MissingValuesWarning, match=r"'sqrt\(Days - 2.5\)' is NaN in 54 rows"):
        model = mm.lmer("Reaction ~ sqrt(Days - 2.5) + (1 | Subject)", sleep, reml=False)
    assert model.n_dropped_missing == 54
    assert_matches_lme4(model, "nan_transform")


def test_nan_from_a_transform_is_refused_with_missing_raise(sleep: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"sqrt\(Days - 2.5\).*missing='drop'"):
        mm.lmer("Reaction ~ sqrt(Days - 2.5) + (1 | Subject)", sleep, missing="raise")


def test_missing_raise_refuses(sleep: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="6 rows have missing values"):
        mm.lmer("Reaction ~ Days2 + (1 | Subject)", with_missing(sleep), missing="raise")


def test_missing_in_unused_column_is_ignored(sleep: pd.DataFrame, sleep_fit) -> None:
    data = sleep.assign(other=np.where(sleep.Days == 3, np.nan, 1.0))
    assert_same_fit(mm.lmer(FORMULA, data, missing="raise"), sleep_fit)


def test_missing_grouping_factor_drops_the_row(sleep: pd.DataFrame) -> None:
    data = sleep.assign(Subject=sleep.Subject.astype(object))
    data.loc[[0, 17], "Subject"] = None
    assert_same_fit(mm.lmer(FORMULA, data), mm.lmer(FORMULA, data.drop(index=[0, 17])))


# -- weights (lme4's prior weights) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "formula", "reml"),
    [("weights", FORMULA, True), ("weights_ml", "Reaction ~ Days + (1 | Subject)", False)],
)
def test_weights_match_lme4(sleep: pd.DataFrame, case: str, formula: str, reml: bool) -> None:
    data = sleep.assign(w=1 + (sleep.Days % 3) / 2)
    by_name = mm.lmer(formula, data, reml=reml, weights="w")
    assert_matches_lme4(by_name, case)
    by_value = mm.lmer(formula, data, reml=reml, weights=data.w.to_numpy())
    assert_same_fit(by_name, by_value)


# -- rank-deficient X --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "reduced", "dropped"),
    [
        (
            "Reaction ~ Days + I(2 * Days) + (Days | Subject)",
            "Reaction ~ Days + (Days | Subject)",
            ["I(2 * Days)"],
        ),
        (
            "Reaction ~ Days + late + early + (1 | Subject)",
            "Reaction ~ Days + late + (1 | Subject)",
            ["early"],
        ),
        (
            "Reaction ~ 0 + Days + zero + twice + (1 | Subject)",
            "Reaction ~ 0 + Days + (1 | Subject)",
            ["zero", "twice"],
        ),
    ],
)
def test_aliased_columns_are_dropped_and_fit_equals_fit_without_them(
    sleep: pd.DataFrame, formula: str, reduced: str, dropped: list[str]
) -> None:
    data = sleep.assign(
        late=(sleep.Days >= 5).astype(float),
        early=(sleep.Days < 5).astype(float),
        zero=0.0,
        twice=2.0 * sleep.Days,
    )
    with pytest.warns(RankDeficiencyWarning) as record:
        model = mm.lmer(formula, data)
    message = str(record[0].message)
    assert all(name in message for name in dropped)
    assert model.design.dropped_columns == dropped
    assert_same_fit(model, mm.lmer(reduced, data))
    summary = model.summary()
    assert all(name in str(summary) for name in dropped)


def test_empty_interaction_cell_is_aliased(sleep: pd.DataFrame) -> None:
    # A level combination that never occurs gives a column of zeros, as in R.
    data = sleep.assign(
        a=np.where(sleep.Days < 5, "a1", "a2"), b=np.where(sleep.Days < 5, "b1", "b2")
    )
    data.loc[data.Days == 9, "b"] = "b1"
    with pytest.warns(RankDeficiencyWarning, match="aa2:bb2|aa2"):
        model = mm.lmer("Reaction ~ a * b + (1 | Subject)", data)
    assert len(model.fixef) == 3


# -- inputs people have ------------------------------------------------------------------------


def test_dict_of_columns(sleep: pd.DataFrame, sleep_fit) -> None:
    data = {name: sleep[name].to_list() for name in sleep.columns}
    assert_same_fit(mm.lmer(FORMULA, data), sleep_fit)


def test_polars_frame(sleep: pd.DataFrame, sleep_fit) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({name: sleep[name].to_list() for name in sleep.columns})
    assert_same_fit(mm.lmer(FORMULA, frame), sleep_fit)
    assert_same_fit(mm.lmer(FORMULA, frame.lazy()), sleep_fit)


def test_polars_nulls_enum_and_categorical(sleep: pd.DataFrame) -> None:
    pl = pytest.importorskip("polars")
    data = with_missing(sleep)
    data["phase"] = np.where(data.Days < 5, "early", "late")
    frame = pl.DataFrame(
        {
            "Reaction": data.Reaction.to_list(),  # NaN stays NaN
            "Days2": [None if np.isnan(v) else v for v in data.Days2],  # real nulls
            "Subject": pl.Series(data.Subject.astype(str).to_list(), dtype=pl.Categorical),
            # An Enum keeps its declared order, as an R factor with levels = ...
            "phase": pl.Series(data.phase.to_list(), dtype=pl.Enum(["late", "early"])),
        }
    )
    expected = data.assign(
        Subject=data.Subject.astype(str),
        phase=pd.Categorical(data.phase, categories=["late", "early"]),
    )
    formula = "Reaction ~ Days2 + phase + (1 | Subject)"
    model = mm.lmer(formula, frame)
    assert list(model.fixef.index) == ["(Intercept)", "Days2", "phaseearly"]
    assert model.n_dropped_missing == 6
    assert_same_fit(model, mm.lmer(formula, expected))


def test_pandas_nullable_dtypes(sleep: pd.DataFrame) -> None:
    data = with_missing(sleep)
    nullable = data.assign(
        Days2=data.Days2.astype("Float64"),
        Subject=data.Subject.astype(str).astype("string"),
        Days=data.Days.astype("Int64"),
    )
    formula = "Reaction ~ Days2 + (1 | Subject)"
    assert_same_fit(mm.lmer(formula, nullable), mm.lmer(formula, data))


@pytest.mark.parametrize(
    "formula",
    [
        'Reaction ~ Q("days on study") + (Q("days on study") | `subject id`)',
        "Reaction ~ `days on study` + (`days on study` | `subject id`)",
    ],
)
def test_column_names_with_spaces(sleep: pd.DataFrame, sleep_fit, formula: str) -> None:
    data = sleep.rename(columns={"Days": "days on study", "Subject": "subject id"})
    model = mm.lmer(formula, data)
    assert list(model.fixef.index) == ["(Intercept)", "days on study"]
    np.testing.assert_allclose(model.fixef.to_numpy(), sleep_fit.fixef.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.theta, sleep_fit.theta, rtol=1e-5, atol=1e-6)
    assert list(model.ngroups) == ["subject id"]


def test_dotted_column_names(sleep: pd.DataFrame, sleep_fit) -> None:
    data = sleep.rename(columns={"Days": "Days.on.study"})
    model = mm.lmer("Reaction ~ Days.on.study + (Days.on.study | Subject)", data)
    np.testing.assert_allclose(model.fixef.to_numpy(), sleep_fit.fixef.to_numpy(), rtol=1e-6)


def test_unused_categories_are_ignored(sleep: pd.DataFrame, sleep_fit) -> None:
    labels = sleep.Subject.astype(str)
    data = sleep.assign(
        Subject=pd.Categorical(labels, categories=[*sorted(labels.unique()), "999"]),
        phase=pd.Categorical(
            np.where(sleep.Days < 5, "early", "late"), categories=["early", "never", "late"]
        ),
    )
    assert_same_fit(mm.lmer(FORMULA, data), sleep_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficiencyWarning)
        model = mm.lmer("Reaction ~ Days + phase + (1 | Subject)", data)
    assert list(model.fixef.index) == ["(Intercept)", "Days", "phaselate"]
    assert model.ngroups["Subject"] == 18


def test_callers_data_is_never_modified(sleep: pd.DataFrame) -> None:
    data = with_missing(sleep)
    data["Subject"] = pd.Categorical(
        data.Subject.astype(str), categories=[*"xyz", *sorted(data.Subject.astype(str).unique())]
    )
    data["w"] = 1.0 + data.Days % 2
    weights = data["w"].to_numpy().copy()
    before = data.copy(deep=True)
    dtypes = data.dtypes.copy()
    as_dict = {name: data[name].copy() for name in data.columns}
    dict_before = copy.deepcopy(as_dict)
    fit_quietly("Reaction ~ scale(Days2) + log(Days + 1) + (Days2 | Subject)", data, weights="w")
    fit_quietly("Reaction ~ Days2 + (1 | Subject)", as_dict, weights=weights)
    pd.testing.assert_frame_equal(data, before)
    assert (data.dtypes == dtypes).all()
    for name, column in as_dict.items():
        pd.testing.assert_series_equal(column, dict_before[name])
    np.testing.assert_array_equal(weights, before["w"].to_numpy())


# -- numerical robustness ----------------------------------------------------------------------


def test_response_scaled_by_1e7(sleep: pd.DataFrame, sleep_fit) -> None:
    # β and σ scale with y; θ (relative to σ) does not change.
    scale = 1e7
    model = mm.lmer(FORMULA, sleep.assign(Reaction=sleep.Reaction * scale))
    np.testing.assert_allclose(model.theta, sleep_fit.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.fixef / scale, sleep_fit.fixef, rtol=1e-6)
    np.testing.assert_allclose(model.sigma / scale, sleep_fit.sigma, rtol=1e-6)


def test_response_around_1e9(sleep: pd.DataFrame, sleep_fit) -> None:
    # lme4 gives the same θ and σ for Reaction + 1e9, and the intercept + 1e9.
    shift = 1e9
    model = mm.lmer(FORMULA, sleep.assign(Reaction=sleep.Reaction + shift))
    np.testing.assert_allclose(model.theta, sleep_fit.theta, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.sigma, sleep_fit.sigma, rtol=1e-4)
    np.testing.assert_allclose(model.fixef["Days"], sleep_fit.fixef["Days"], rtol=1e-4)
    np.testing.assert_allclose(
        model.fixef["(Intercept)"] - shift, sleep_fit.fixef["(Intercept)"], rtol=1e-4
    )


def test_fixed_predictors_on_very_different_scales(sleep: pd.DataFrame) -> None:
    # Columns in the millions and in the millionths: lme4 warns and so do we,
    # and the fit is the rescaled one with β rescaled.
    rng = np.random.default_rng(6)
    data = sleep.assign(x=rng.normal(size=len(sleep)))
    formula = "Reaction ~ Days + x + (1 | Subject)"
    plain = mm.lmer(formula, data)
    scaled = data.assign(Days=data.Days * 1e6, x=data.x * 1e-6)
    with pytest.warns(PredictorScaleWarning, match="Days.*x"):
        model = mm.lmer(formula, scaled)
    np.testing.assert_allclose(model.theta, plain.theta, rtol=1e-5)
    np.testing.assert_allclose(model.sigma, plain.sigma, rtol=1e-6)
    np.testing.assert_allclose(
        model.fixef.to_numpy() * [1, 1e6, 1e-6], plain.fixef.to_numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(model.objective, plain.objective, rtol=1e-9)


@pytest.mark.parametrize("factor", [1e-6, 1e6])
def test_random_slope_on_an_extreme_scale(sleep: pd.DataFrame, sleep_fit, factor) -> None:
    # Days in millionths (or millions): the same model, θ for the slope scaled
    # by 1/factor; the REML criterion moves by log|R_X|², i.e. 2·log(factor).
    data = sleep.assign(Days=sleep.Days * factor)
    model = fit_quietly(FORMULA, data)
    assert model.converged
    np.testing.assert_allclose(model.sigma, sleep_fit.sigma, rtol=1e-4)
    np.testing.assert_allclose(model.objective, sleep_fit.objective + 2 * np.log(factor), rtol=1e-8)
    np.testing.assert_allclose(
        model.theta * [1, factor, factor], sleep_fit.theta, rtol=1e-3, atol=1e-4
    )
    np.testing.assert_allclose(model.fixef["Days"] * factor, sleep_fit.fixef["Days"], rtol=1e-5)


def test_doubtful_convergence_is_reported_not_silent(sleep: pd.DataFrame, monkeypatch) -> None:
    # An optimizer cut off after a few iterations: the fit must say so.
    import mixedmodels.engine.gradient_fit as model_module

    real = model_module.minimize_quasi_newton

    def cut_short(value, gradient, start, lower, **options):
        return real(value, gradient, start, lower, **{**options, "max_iterations": 2})

    monkeypatch.setattr(model_module, "minimize_quasi_newton", cut_short)
    # (The Python loop, not the compiled search of small models it stands in for.)
    monkeypatch.setattr("mixedmodels.engine.evaluator.compiled_search", lambda: None)
    with pytest.warns(mm.ConvergenceWarning):
        model = mm.lmer(FORMULA, sleep)
    assert not model.converged
    assert model.convergence_messages
    assert "convergence warning" in str(model.summary())


def test_degenerate_tiny_data_fits_or_raises_ours() -> None:
    # Found by test_errors.py's fuzzing: zero within-group variation in one group.
    data = pd.DataFrame({"y": [0.5, 0.5, 3.5], "s": ["p", "p", "p"], "g": ["b", "b", "c"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mm.lmer("y ~ s + (1 | g)", data)
        except mm.MixedModelsError:
            pass


@pytest.mark.parametrize(
    ("formula", "rows"),
    [
        # Found by test_errors.py's fuzzing: x is a function of the factor s, and x of x.
        ("x ~ s + (1 | g)", [3, 6, 3, 3, 3, 2, 7, 2]),
        ("x ~ x + (1 | g)", [6, 6, 6, 6, 2, 6, 1, 4]),
    ],
)
def test_response_fitted_exactly_by_fixed_effects_is_refused(formula: str, rows: list) -> None:
    # The least-squares residuals are rounding error: the criterion would be noise
    # (row 7, whose g is missing, is dropped).
    data = pd.DataFrame(
        {
            "x": [0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 2.0, 1.0],
            "s": ["p", "q", "p", "q", "p", "q", "p", "q"],
            "g": ["a", "a", "b", "b", "c", "c", "a", None],
        }
    ).iloc[rows]
    with pytest.raises(mm.DataError, match="fit the response 'x' exactly"):
        mm.lmer(formula, data)


def test_response_a_linear_function_of_a_predictor_is_refused(sleep: pd.DataFrame) -> None:
    data = sleep.assign(y=3.0 + 2.5 * sleep.Days)
    with pytest.raises(mm.DataError, match="fit the response 'y' exactly"):
        mm.lmer("y ~ Days + (1 | Subject)", data)
    # Variation far below the response's size but far above rounding is kept.
    noisy = data.assign(y=data.y + 1e-9 * np.random.default_rng(3).normal(size=len(data)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mm.lmer("y ~ Days + (1 | Subject)", noisy)
    assert model.sigma == pytest.approx(1e-9, rel=0.3)


def test_degenerate_curvature_fits_or_raises_ours() -> None:
    # Found by test_errors.py's fuzzing: five rows, two groups, a response with a
    # zero; the quasi-Newton update met a step along which B had no curvature
    # and divided by zero (a ZeroDivisionError from the compiled update).
    data = pd.DataFrame(
        {
            "x": [3.0, 1.0, 3.0, 2.0, 3.0],
            "s": ["q", "q", "q", "p", "q"],
            "g": ["b", "a", "b", "b", "b"],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mm.lmer("sqrt(x - 1) ~ s + (1 | g)", data)
        except mm.MixedModelsError:
            pass
