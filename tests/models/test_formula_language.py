"""lme4's formula language against lme4: every model of tests/data/formula.

The references (``dev/make_formula_reference.R``) cover issue 14: offsets in
the formula and as ``offset=``, arithmetic, math, logical operators and
whole-column summaries, factors (``relevel``, ``factor(levels=)``,
``interaction``, ``cut``, ``as.numeric``, logical and ordered columns),
R's splines, contrasts (``contrasts=`` and ``C()``), grouping factors written
as expressions, coefficient names as lme4 prints them, ``coef()`` and
predictions for new rows.  Each is fitted here and compared: names exactly,
estimates within 1 % of their standard error, standard errors, σ and the
objective closely.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from tests.conftest import DATA

FOLDER = DATA / "formula"


def _references() -> list:
    return [pytest.param(path, id=path.stem) for path in sorted(FOLDER.glob("*.json"))]


def reference_frame(ref: dict) -> pd.DataFrame:
    """The data set of a reference as the tests read it (ordered factors restored)."""
    data = pd.read_csv(DATA / ref["dataset_path"])
    for column, levels in (ref.get("ordered") or {}).items():
        data[column] = pd.Categorical(data[column], categories=levels, ordered=True)
    return data


@pytest.fixture(scope="module")
def fitted():
    cache: dict = {}

    def fit(path):
        if path not in cache:
            ref = json.loads(path.read_text())
            data = reference_frame(ref)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = mm.lmer(
                    ref.get("formula_python") or ref["formula"],
                    data,
                    reml=ref["REML"],
                    offset=ref.get("offset"),
                    contrasts=ref.get("contrasts"),
                    check_convergence=False,
                )
            cache[path] = (ref, data, model)
        return cache[path]

    return fit


def _group_name(ref: dict, name: str) -> str:
    return (ref.get("groups_python") or {}).get(name, name)


@pytest.mark.parametrize("path", _references())
def test_matches_lme4(path, fitted) -> None:
    ref, _, m = fitted(path)
    assert list(m.fixef.index) == ref["fixef_names"]
    assert m.nobs == ref["nobs"]
    assert m.ngroups == {_group_name(ref, g): n for g, n in ref["ngroups"].items()}
    theta_names = [
        ".".join([_group_name(ref, name.split(".")[0]), *name.split(".")[1:]])
        for name in ref["theta_names"]
    ]
    assert m.theta_names == theta_names
    assert m.objective <= ref["objective"] + 1e-4
    assert m.objective == pytest.approx(ref["objective"], abs=1e-3)
    se = np.array(ref["stderr"], dtype=float)
    beta = np.array([ref["fixef"][name] for name in ref["fixef_names"]])
    np.testing.assert_array_less(np.abs(m.fixef.to_numpy() - beta), 0.01 * se)
    np.testing.assert_allclose(m.coefs["std_error"], se, rtol=5e-3)
    assert m.sigma == pytest.approx(ref["sigma"], rel=5e-3)
    n_head = len(ref["fitted_head"])
    np.testing.assert_allclose(
        m.fitted.to_numpy()[:n_head], ref["fitted_head"], atol=0.01 * ref["sigma"]
    )
    np.testing.assert_allclose(
        m.residuals.to_numpy()[:n_head], ref["resid_head"], atol=0.01 * ref["sigma"]
    )


@pytest.mark.parametrize(
    "path", [p for p in _references() if "predict" in json.loads(p.values[0].read_text())]
)
def test_predictions_for_new_rows(path, fitted) -> None:
    ref, _, m = fitted(path)
    newdata = pd.DataFrame(ref["newdata"])
    tolerance = 0.01 * ref["sigma"]
    np.testing.assert_allclose(m.predict(newdata), ref["predict"]["all"], atol=tolerance)
    np.testing.assert_allclose(
        m.predict(newdata, re_form="NA"), ref["predict"]["fixed"], atol=tolerance
    )


@pytest.mark.parametrize(
    "path", [p for p in _references() if "coef" in json.loads(p.values[0].read_text())]
)
def test_coef_is_lme4s(path, fitted) -> None:
    ref, _, m = fitted(path)
    coefs = m.coef()
    for block in ref["coef"]:
        table = coefs[_group_name(ref, block["group"])]
        assert list(table.columns) == block["terms"]
        got = table.loc[block["levels"], block["terms"]].to_numpy()
        want = np.array(block["values"], dtype=float)
        np.testing.assert_allclose(got, want, atol=0.01 * np.abs(want).max())


# -- update(), formula, spellings ------------------------------------------------------------

UPDATES = json.loads((FOLDER / "update" / "update_formula.json").read_text())


@pytest.mark.parametrize("case", UPDATES, ids=[f"{c['formula']} | {c['update']}" for c in UPDATES])
def test_update_formula_is_rs(case) -> None:
    assert mm.formula.update_formula(case["formula"], case["update"]) == case["result"]


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


def test_update_refits_with_the_new_formula(sleep) -> None:
    m = mm.lmer("Reaction ~ Days + I(Days^2) + (Days | Subject)", sleep)
    assert m.formula == "Reaction ~ Days + I(Days^2) + (Days | Subject)"
    smaller = m.update(". ~ . - I(Days^2)")
    assert smaller.formula == "Reaction ~ Days + (Days | Subject)"
    direct = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert smaller.objective == pytest.approx(direct.objective, abs=1e-8)
    ml = m.update(reml=False)
    assert not ml.reml and ml.formula == m.formula
    assert ml.objective == pytest.approx(mm.lmer(m.formula, sleep, reml=False).objective, abs=1e-8)
    half = m.update(data=sleep[sleep.Days < 8])
    assert half.nobs == 144
    assert m.nobs == 180  # the model itself is not changed


def test_update_keeps_the_models_arguments(sleep) -> None:
    m = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep, offset="Days", missing="raise")
    assert m.update(". ~ . + I(Days^2)").design.offset is not None
    with pytest.raises(mm.errors.FormulaError):
        m.update(". ~ . +")


def test_numpy_spellings_are_the_math_functions(sleep) -> None:
    a = mm.lmer("np.log(Reaction) ~ np.exp(Days / 10) + (1 | Subject)", sleep)
    b = mm.lmer("log(Reaction) ~ exp(Days / 10) + (1 | Subject)", sleep)
    assert list(a.fixef.index) == ["(Intercept)", "np.exp(Days/10)"]
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy())


def test_whole_column_summaries_are_kept_for_new_rows(sleep) -> None:
    # As scale() keeps its centre, mean(Days) is the fit's for new rows (R would
    # recompute it on the new rows alone, a well-known trap).
    m = mm.lmer("Reaction ~ I(Days - mean(Days)) + (1 | Subject)", sleep)
    new = sleep[sleep.Days == 9].head(3)
    expected = m.fixef.iloc[0] + m.fixef.iloc[1] * (9 - sleep.Days.mean())
    np.testing.assert_allclose(m.predict(new, re_form="NA"), expected)


def test_a_summary_of_a_column_with_missing_values_is_missing_unless_na_rm(sleep) -> None:
    data = sleep.assign(d=np.where(sleep.index == 3, np.nan, sleep.Days))
    with pytest.raises(mm.errors.FormulaError, match=r"I\(d - mean\(d\)\).*na.rm = TRUE"):
        mm.lmer("Reaction ~ I(d - mean(d)) + (1 | Subject)", data)
    m = mm.lmer("Reaction ~ I(d - mean(d, na.rm = TRUE)) + (1 | Subject)", data)
    assert m.nobs == 179


# -- offsets through the model --------------------------------------------------------------


@pytest.fixture(scope="module")
def mmmec() -> pd.DataFrame:
    return pd.read_csv(DATA / "formula" / "datasets" / "Mmmec.csv.gz")


MMMEC = "log(deaths + 0.5) ~ uvb + (1 | nation) + (1 | nation:region)"


def test_offset_argument_as_column_array_or_formula_term_is_the_same_fit(mmmec) -> None:
    by_term = mm.lmer(MMMEC.replace("uvb", "uvb + offset(log(expected))"), mmmec, reml=False)
    by_column = mm.lmer(MMMEC, mmmec, reml=False, offset="log_expected")
    by_array = mm.lmer(MMMEC, mmmec, reml=False, offset=np.log(mmmec.expected.to_numpy()))
    for other in (by_column, by_array):
        np.testing.assert_allclose(other.fixef, by_term.fixef, rtol=1e-8)
        np.testing.assert_allclose(other.fitted, by_term.fitted, rtol=1e-8)
    new = mmmec.head(5)
    np.testing.assert_allclose(by_column.predict(new), by_term.predict(new), rtol=1e-8)
    with pytest.raises(mm.errors.DataError, match="pass offset="):
        by_array.predict(new)
    np.testing.assert_allclose(
        by_array.predict(new, offset=np.log(new.expected.to_numpy())), by_term.predict(new)
    )
    with pytest.raises(mm.errors.DataError, match="without an offset"):
        mm.lmer(MMMEC, mmmec, reml=False).predict(new, offset=np.zeros(5))


def test_simulation_and_bootstrap_include_the_offset(mmmec) -> None:
    m = mm.lmer(MMMEC, mmmec, reml=False, offset="log_expected")
    marginal = m.predict(re_form="NA").to_numpy()
    simulated = m.simulate(400, seed=1).to_numpy().mean(axis=1)
    spread = np.sqrt(m.sigma**2 + sum(m.varcorr.vcov[m.varcorr.var2.isna()][:-1]))
    assert np.abs(simulated - marginal).max() < 5 * spread / np.sqrt(400)
    # Were the offset left out of the bootstrap's blocks, every replicate's
    # intercept would move by the offset's mean (about 4).
    replicates = m.bootstrap(20, seed=2).replicates
    assert abs(replicates["(Intercept)"].mean() - m.fixef["(Intercept)"]) < 0.5


def test_residuals_are_response_minus_fitted_with_the_offset(mmmec) -> None:
    m = mm.lmer(MMMEC, mmmec, reml=False, offset="log_expected")
    y = np.log(mmmec.deaths + 0.5).to_numpy()
    np.testing.assert_allclose(m.residuals + m.fitted, y)


# -- bad input stays clear -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "fragments"),
    [
        ("Reaction ~ foo(Days) + (1 | Subject)", ["`foo`", "allowed functions", "relevel"]),
        ("Reaction ~ ns(Days) + (1 | Subject)", ["`ns(Days)`", "df"]),
        ('Reaction ~ relevel(f, ref = "zz") + (1 | Subject)', ['relevel(f, ref = "zz")', "ref"]),
        ("Reaction ~ relevel(Days, ref = 2) + (1 | Subject)", ["relevel(Days, ref = 2)", "factor"]),
        ("Reaction ~ poly(Days, 10) + (1 | Subject)", ["poly(Days, 10)", "degree"]),
        ("Reaction ~ cut(Days, c(0, 5, 5)) + (1 | Subject)", ["cut(Days", "breaks"]),
        ("Reaction ~ log(Days, base = 2, foo = 1) + (1 | Subject)", ["`foo`", "log()"]),
        ("Reaction ~ ifelse(Days > 2, 'a') + (1 | Subject)", ["ifelse(Days > 2, 'a')"]),
        ("Reaction ~ C(f, contr.foo) + (1 | Subject)", ["contr.foo", "contr.sum"]),
        ("Reaction ~ I(mean(f)) + (1 | Subject)", ["mean(f)", "factor"]),
    ],
)
def test_wrong_arguments_name_the_term_and_argument(sleep, formula, fragments) -> None:
    data = sleep.assign(f=np.where(sleep.Days > 4, "hi", "lo"))
    with pytest.raises(mm.errors.MixedModelsError) as info:
        mm.lmer(formula, data)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_mixedlm_refuses_an_offset_rather_than_leaving_it_out() -> None:
    data = mm.datasets.load("dietox")
    with pytest.raises(mm.errors.FormulaError, match="mixedlm takes no offset"):
        mm.mixedlm("Weight ~ Time + offset(np.log(Time))", data, groups=data["Pig"])


def test_refit_to_a_new_response_keeps_the_offset(mmmec) -> None:
    m = mm.lmer(MMMEC, mmmec, reml=False, offset="log_expected")
    y = np.log(mmmec.deaths + 0.5).to_numpy()
    again = m.refit(y)
    assert again.objective == pytest.approx(m.objective, abs=1e-6)
    np.testing.assert_allclose(again.fixef, m.fixef, rtol=1e-5)
