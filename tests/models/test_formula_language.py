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
