"""Invariances every fit must respect, as hypothesis property tests (issue 6).

A linear mixed model does not depend on the order of the rows or the names of
the levels; scaling the response scales β and σ and leaves θ (relative to σ)
alone; adding a constant moves only the intercept.  Each property is checked
against a fit of the unchanged data, with tolerances for an optimizer that
stops at a tolerance (the criterion itself must agree closely).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixedmodels as mm

SETTINGS = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

MODELS = {
    "slope": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request) -> tuple[str, pd.DataFrame, mm.LinearMixedModel]:
    dataset, formula = MODELS[request.param]
    data = mm.datasets.load(dataset)
    return formula, data, mm.lmer(formula, data)


def assert_close_fit(model: mm.LinearMixedModel, base: mm.LinearMixedModel) -> None:
    np.testing.assert_allclose(model.objective, base.objective, rtol=1e-7)
    np.testing.assert_allclose(model.theta, base.theta, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(model.sigma, base.sigma, rtol=1e-4)


def ranef_by_label(model: mm.LinearMixedModel) -> dict[str, pd.DataFrame]:
    return {name: frame.sort_index() for name, frame in model.ranef.items()}


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_matter(case, seed: int) -> None:
    formula, data, base = case
    order = np.random.default_rng(seed).permutation(len(data))
    model = mm.lmer(formula, data.iloc[order])
    assert_close_fit(model, base)
    np.testing.assert_allclose(model.fixef, base.fixef, rtol=1e-5)
    # Fitted values follow their rows.
    np.testing.assert_allclose(
        model.fitted.sort_index(), base.fitted.sort_index(), rtol=1e-5, atol=1e-6
    )
    for name, frame in ranef_by_label(model).items():
        np.testing.assert_allclose(frame, ranef_by_label(base)[name], rtol=1e-3, atol=1e-3)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), prefix=st.sampled_from(["g", "level ", "Z_", "0"]))
def test_relabelled_groups(case, seed: int, prefix: str) -> None:
    formula, data, base = case
    relabelled = data.copy()
    mapping: dict[str, dict[object, str]] = {}
    for term in base.design.terms:
        (column,) = term.group_name.split(":")
        levels = pd.unique(data[column])
        codes = np.random.default_rng(seed).permutation(len(levels))
        mapping[column] = {
            level: f"{prefix}{code:03d}" for level, code in zip(levels, codes, strict=True)
        }
        relabelled[column] = data[column].map(mapping[column])
    model = mm.lmer(formula, relabelled)
    assert_close_fit(model, base)
    np.testing.assert_allclose(model.fixef, base.fixef, rtol=1e-5)
    for name, frame in base.ranef.items():
        renamed = frame.rename(index=lambda level, n=name: mapping[n][_original(data, n, level)])
        np.testing.assert_allclose(
            model.ranef[name].loc[renamed.index], renamed, rtol=1e-3, atol=1e-3
        )


def _original(data: pd.DataFrame, column: str, label: str) -> object:
    """The data's level whose string form is ``label`` (ranef labels are strings)."""
    for level in pd.unique(data[column]):
        if str(level) == label:
            return level
    raise KeyError(label)


@SETTINGS
@given(
    factor=st.floats(1e-3, 1e3).flatmap(lambda f: st.sampled_from([f, -f])),
)
def test_response_scaling(case, factor: float) -> None:
    formula, data, base = case
    response = base.design.response_name
    model = mm.lmer(formula, data.assign(**{response: data[response] * factor}))
    np.testing.assert_allclose(model.theta, base.theta, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(model.sigma, base.sigma * abs(factor), rtol=1e-4)
    np.testing.assert_allclose(model.fixef, base.fixef * factor, rtol=1e-4)
    # The criterion moves by the log-Jacobian of the change of scale.
    shift = 2 * (model.nobs - (len(base.fixef) if base.reml else 0)) * np.log(abs(factor))
    np.testing.assert_allclose(model.objective, base.objective + shift, rtol=1e-7)


# Offsets far beyond the data's own scale: the engine's y blocks hold y − Xβ₀
# (CrossProducts.beta_offset), so no digits are lost to cancellation.
@SETTINGS
@given(constant=st.floats(-1e9, 1e9, allow_subnormal=False))
def test_adding_a_constant_moves_only_the_intercept(case, constant: float) -> None:
    formula, data, base = case
    response = base.design.response_name
    model = mm.lmer(formula, data.assign(**{response: data[response] + constant}))
    assert_close_fit(model, base)
    expected = base.fixef.copy()
    expected["(Intercept)"] += constant
    np.testing.assert_allclose(model.fixef, expected, rtol=1e-5, atol=1e-6 * (1 + abs(constant)))
    np.testing.assert_allclose(model.residuals, base.residuals, rtol=1e-4, atol=1e-4)
