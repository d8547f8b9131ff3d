"""``mm.anova(m)`` against lmerTest's type III table, ``anova(m, type = 3)``.

References: tests/data/anova/*.json, made by dev/make_anova_reference.R
(lmerTest 3.1-3, lme4 1.1-31).  Each model is set to lme4's θ before the
comparison, so what is under test is the hypotheses and the F test, not where
our optimizer stops (one more test runs end to end at our own optimum).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.inference.satterthwaite import f_test
from mixedmodels.inference.type3 import Type3Error, type3_contrasts
from tests.conftest import DATA as TEST_DATA
from tests.conftest import fitted_reference, reference_paths
from tests.conftest import reference_data as load

DATA = TEST_DATA / "anova"
FILES = reference_paths("anova")


def _params() -> list:
    """One parameter per reference; the big ones (InstEval) marked slow."""
    out = []
    for path in FILES:
        slow = json.loads(path.read_text()).get("slow", False)
        out.append(pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else []))
    return out


def fit(formula: str, data: pd.DataFrame, reml: bool = True) -> mm.LinearMixedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(formula, data, reml=reml)


_MODELS: dict[Path, tuple[dict, mm.LinearMixedModel]] = {}


def reference_model(path: Path) -> tuple[dict, mm.LinearMixedModel]:
    """The reference's model, fitted once and set to lme4's θ."""
    if path not in _MODELS:
        ref, m = fitted_reference(path)
        _MODELS[path] = (ref, m.at_theta(np.array(ref["theta"], dtype=float)))
    return _MODELS[path]


def values(ref: dict, key: str) -> np.ndarray:
    """A reference column as floats, R's NA (a term with nothing to test) as NaN."""
    return np.array([math.nan if v == "NA" else v for v in ref[key]], dtype=float)


def assert_p_close(p, p_ref, rtol):
    """p values within rtol; those that underflow to 0 in R are tiny here too."""
    p, p_ref = np.asarray(p, float), np.asarray(p_ref, float)
    zero = p_ref == 0
    np.testing.assert_array_less(p[zero], 1e-300)
    np.testing.assert_allclose(p[~zero], p_ref[~zero], rtol=rtol)


@pytest.mark.parametrize("path", _params())
def test_type3_table_matches_lmertest(path):
    ref, m = reference_model(path)

    # Same aliased columns dropped as lme4, so the same coefficients to test
    # (the parts of an interaction's name may come in another order, and R
    # sorts integer levels as text).
    def parts(names):
        return sorted(tuple(sorted(n.split(":"))) for n in names)

    assert parts(m.design.fixed_names) == parts(ref["fixef_names"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mm.RankDeficiencyWarning)
        table = mm.anova(m)
    assert list(table.index) == ref["terms"]
    assert (table["hypothesis"] == "type III").all()
    # lmerTest's NumDF is NA for a term with nothing left to test; ours is 0.
    np.testing.assert_array_equal(table["num_df"], np.nan_to_num(values(ref, "num_df")))
    for ours, theirs in [
        ("f_value", "f_value"),
        ("den_df", "den_df"),
        ("mean_sq", "mean_sq"),
        ("sum_sq", "sum_sq"),
    ]:
        np.testing.assert_allclose(table[ours], values(ref, theirs), rtol=1e-4)
    assert_p_close(table["p_value"], values(ref, "p"), rtol=1e-3)


@pytest.mark.parametrize(
    "name", ["sleepstudy_quadratic_x_group", "exam_vr_sex_intake", "dietox_time_evit_cu_slope"]
)
def test_type3_table_at_our_optimum(name):
    ref = json.loads((DATA / f"{name}.json").read_text())
    table = mm.anova(fit(ref["formula"], load(ref), reml=ref["REML"]))
    np.testing.assert_allclose(table["f_value"], ref["f_value"], rtol=1e-3)
    np.testing.assert_allclose(table["den_df"], ref["den_df"], rtol=1e-3)


def test_contained_terms_are_not_tested_at_the_reference_level():
    """``Days`` in ``(Days + I(Days^2)) * grp``: type III tests the slope
    averaged over the groups, not the coefficient (the slope in group a),
    and the two F values differ."""
    ref, m = reference_model(DATA / "sleepstudy_quadratic_x_group.json")
    coded = np.zeros((1, len(m.fixef)))
    coded[0, m.design.fixed_names.index("Days")] = 1.0
    _, _, f_coded, _ = f_test(m, coded)
    f_type3 = mm.anova(m).loc["Days", "f_value"]
    assert f_type3 == pytest.approx(ref["f_value"][0], rel=1e-4)
    assert not f_coded == pytest.approx(f_type3, rel=1e-2)
    # The hypothesis puts weight on the Days:grp coefficients too.
    days = type3_contrasts(m)["Days"]
    assert np.count_nonzero(days) > 1


def test_type3_hypothesis_of_a_slope_is_the_average_slope():
    """In ``Days * grp`` (treatment coding, groups a, b, c) the type III
    hypothesis of ``Days`` is that the unweighted mean of the three group
    slopes is zero: β_Days + (β_Days:grpb + β_Days:grpc) / 3 = 0."""
    ref = json.loads((DATA / "sleepstudy_quadratic_x_group.json").read_text())
    m = fit("Reaction ~ Days * grp + (Days | Subject)", load(ref))
    (ell,) = type3_contrasts(m)["Days"]
    names = m.design.fixed_names
    expected = np.zeros(len(names))
    expected[names.index("Days")] = 1.0
    expected[names.index("Days:grpb")] = expected[names.index("Days:grpc")] = 1 / 3
    np.testing.assert_allclose(ell / ell[names.index("Days")], expected, atol=1e-12)


def test_hypotheses_do_not_depend_on_the_grid_seed():
    _, m = reference_model(DATA / "dietox_time_evit_cu_slope.json")
    a, b = type3_contrasts(m, seed=1), type3_contrasts(m, seed=2)
    assert list(a) == list(b)
    for label in a:
        # Same row space: stacking the two adds no rank.
        rank = np.linalg.matrix_rank(a[label])
        assert np.linalg.matrix_rank(np.vstack([a[label], b[label]]), tol=1e-8) == rank


def test_type3_does_not_depend_on_the_coding_of_factors():
    ref, _ = reference_model(DATA / "cake_recipe_x_factor_temp.json")
    data = load(ref)
    m = fit("angle ~ C(recipe, contr.sum) * C(temp, contr.helmert) + (1 | recipe:replicate)", data)
    m = m.at_theta(np.array(ref["theta"], dtype=float))
    table = mm.anova(m)
    np.testing.assert_allclose(table["f_value"], ref["f_value"], rtol=1e-4)
    np.testing.assert_allclose(table["den_df"], ref["den_df"], rtol=1e-4)


def test_type3_does_not_depend_on_the_order_of_terms():
    ref, _ = reference_model(DATA / "exam_vr_sex_intake.json")
    m = fit("normexam ~ intake * vr * sex + (1 | school)", load(ref))
    m = m.at_theta(np.array(ref["theta"], dtype=float))
    table = mm.anova(m)
    expected = dict(zip(ref["terms"], ref["f_value"], strict=True))
    # R's labels put the variables in the order of the formula.
    relabel = {
        "intake:vr": "vr:intake",
        "intake:sex": "sex:intake",
        "intake:vr:sex": "vr:sex:intake",
    }
    for label, f_value in table["f_value"].items():
        assert f_value == pytest.approx(expected[relabel.get(label, label)], rel=1e-4)


def test_every_hypothesis_is_estimable_and_of_full_row_rank():
    _, m = reference_model(DATA / "dietox_time_evit_cu_slope.json")
    contrasts = type3_contrasts(m)
    ref = json.loads((DATA / "dietox_time_evit_cu_slope.json").read_text())
    assert [ell.shape[0] for ell in contrasts.values()] == ref["num_df"]
    for ell in contrasts.values():
        assert np.linalg.matrix_rank(ell) == ell.shape[0]


def test_empty_cells_warn_and_name_the_cells():
    _, m = reference_model(DATA / "exam_sex_x_schgend_empty_cells.json")
    assert m.design.dropped_columns
    with pytest.warns(mm.RankDeficiencyWarning, match="with care") as record:
        table = mm.anova(m)
    message = str(record[0].message)
    # No girls in boys' schools and no boys in girls' schools.
    assert "sexF:schgendboys" in message and "sexM:schgendgirls" in message
    # Both interaction columns are aliased: nothing left to test there.
    assert table.loc["sex:schgend", "num_df"] == 0
    assert np.isnan(table.loc["sex:schgend", "f_value"])


def test_aliasing_without_empty_cells_is_refused():
    # A covariate that is a linear function of another is aliased in every
    # cell; the grid cannot reproduce that, so no hypotheses are guessed.
    d = mm.datasets.load("sleepstudy").assign(Hours=lambda f: 24 * f["Days"])
    m = fit("Reaction ~ Days * Hours + (1 | Subject)", d)
    assert m.design.dropped_columns
    with pytest.raises(Type3Error, match=r"aliased \(Hours\) are not explained"):
        mm.anova(m)
    assert issubclass(Type3Error, mm.MixedModelsError)


def test_single_term_tests_all_its_coefficients():
    d = mm.datasets.load("Machines")
    m = fit("score ~ Machine + (1 | Worker)", d)
    (ell,) = type3_contrasts(m).values()
    # Same row space as "both Machine coefficients are zero".
    coded = np.eye(3)[1:]
    assert np.linalg.matrix_rank(np.vstack([ell, coded])) == 2


def test_intercept_only_model_has_an_empty_table():
    m = fit("Reaction ~ 1 + (1 | Subject)", mm.datasets.load("sleepstudy"))
    table = mm.anova(m)
    assert table.empty and "f_value" in table.columns
