"""The fast design path (plain numeric parts built without formulaic) against formulaic.

With :func:`mixedmodels.design.plain.plain_plan` replaced by a plan that finds
no plain part, ``build_design`` sends every part of a formula through
formulaic, as before the fast path existed; every design built here both ways
must be identical: X, y, names, terms, weights, dropped rows, the formulaic
model specs, the warnings and the errors.
"""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
import warnings
from collections.abc import Iterator

import formulaic
import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
import mixedmodels.design.plain
from mixedmodels.design import Design, build_design, group_codes
from mixedmodels.design.plain import PlainPlan
from mixedmodels.errors import MixedModelsError, PredictorScaleWarning
from tests.conftest import load_dataset as _load
from tests.conftest import reference_paths


def _reference_cases() -> list[tuple[str, str]]:
    cases = []
    for path in reference_paths("lmm", "extra"):
        ref = json.loads(path.read_text())
        source = ref.get("dataset_path", ref["dataset"])
        cases.append((source, ref["formula"]))
    return sorted(set(cases))


# Simple formulas on the bundled data sets: every part plain, so the fast path
# builds the whole design.
SIMPLE = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("sleepstudy", "Reaction ~ 0 + Days + (1 | Subject)"),
    ("sleepstudy", "Reaction ~ 1 + (0 + Days | Subject)"),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    ("sleepstudy", "Reaction ~ Days - 1 + (-1 + Days | Subject)"),
    ("sleepstudy", "Reaction ~ Days + Days + (1 + Days + Days | Subject)"),
    ("dietox", "Weight ~ Time + Feed + Start + (Time | Pig)"),  # Feed has missing values
    ("dietox", "Feed ~ Time + (1 | Pig) + (1 | Litter)"),
    ("dietox", "Weight ~ Time + (Time | Litter/Pig)"),
    ("egsingle", "math ~ year + size + lowinc + mobility + (year | childid) + (1 | schoolid)"),
    ("Exam", "normexam ~ standLRT + schavg + (standLRT | school)"),
    ("InstEval", "y ~ studage + lectage + service + (1 | s) + (1 | d)"),
    ("students", "test_score ~ age + (age | school) + (1 | school:classroom)"),
    ("ScotsSec", "attain ~ verbal + social + (1 | primary) + (1 | second)"),
    ("cake", "angle ~ temp + (1 | recipe:replicate)"),
    ("Orthodont", "distance ~ age + (age | Subject)"),
    ("Dyestuff", "Yield ~ 1 + (1 | Batch)"),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
]


@contextlib.contextmanager
def formulaic_only() -> Iterator[None]:
    """Inside: no part of a formula is plain, every part goes through formulaic."""

    def no_plain_part(parsed, columns, dtypes=None):
        return PlainPlan(response=None, fixed=None, terms=(None,) * len(parsed.random))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mixedmodels.design.plain, "plain_plan", no_plain_part)
        yield


@contextlib.contextmanager
def without_formulaic() -> Iterator[None]:
    """Inside: formulaic's model_matrix fails, so a design built comes from the fast path."""

    def refuse(*args, **kwargs):
        raise AssertionError("formulaic was called")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formulaic, "model_matrix", refuse)
        yield


def _outcome(formula, data, formulaic_only_: bool, **kwargs):
    """``("ok", design, warnings)`` or ``("error", type, message, warnings)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with formulaic_only() if formulaic_only_ else contextlib.nullcontext():
                design = build_design(formula, data, **kwargs)
        except MixedModelsError as err:
            result = ("error", type(err), str(err))
        else:
            result = ("ok", design)
    return (*result, [(w.category, str(w.message)) for w in caught])


def _assert_same_design(fast: Design, slow: Design) -> None:
    for name in ("x", "y"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert fast.fixed_names == slow.fixed_names
    assert fast.response_name == slow.response_name
    assert fast.dropped_columns == slow.dropped_columns
    assert fast.n_dropped_missing == slow.n_dropped_missing
    assert fast.formula == slow.formula
    assert fast.row_index.equals(slow.row_index)
    if slow.weights is None:
        assert fast.weights is None
    else:
        np.testing.assert_array_equal(fast.weights, slow.weights)
    assert len(fast.terms) == len(slow.terms)
    for a, b in zip(fast.terms, slow.terms, strict=True):
        assert a.group_name == b.group_name
        assert a.codes.dtype == b.codes.dtype
        np.testing.assert_array_equal(a.codes, b.codes)
        assert a.levels.equals(b.levels) and a.levels.dtype == b.levels.dtype
        assert a.z.dtype == b.z.dtype and a.z.shape == b.z.shape
        np.testing.assert_array_equal(a.z, b.z)
        assert a.column_names == b.column_names
    # The specs built on first use equal formulaic's own (ModelSpec compares
    # formula, structure, encoder and transform state).
    assert fast.fixed_spec == slow.fixed_spec
    assert fast.term_specs == slow.term_specs
    assert fast.spec_builder is None


def _assert_same_outcome(formula, data, **kwargs) -> Design | None:
    fast = _outcome(formula, data, False, **kwargs)
    slow = _outcome(formula, data, True, **kwargs)
    assert fast[0] == slow[0], (fast, slow)
    assert fast[-1] == slow[-1]  # the same warnings, in the same order
    if slow[0] == "error":
        assert fast[1:3] == slow[1:3]
        return None
    _assert_same_design(fast[1], slow[1])
    return fast[1]


@pytest.mark.parametrize(("source", "formula"), _reference_cases())
def test_reference_formulas(source, formula):
    _assert_same_outcome(formula, _load(source))


@pytest.mark.parametrize(("source", "formula"), SIMPLE)
def test_simple_formulas_take_the_fast_path(source, formula):
    data = _load(source)
    with without_formulaic():
        fast = build_design(formula, data)
    # Every spec waits to be built.
    assert fast.spec_builder is not None and fast.spec_builder.fixed
    assert all(spec is not None for spec in fast.spec_builder.terms)
    _assert_same_outcome(formula, data)


def test_mixed_formula_builds_plain_terms_only():
    # egsingle's benchmark model: X needs formulaic (a factor and an interaction),
    # the terms' (1 + year) do not.
    formula = "math ~ year * size + female + (year | childid) + (year | schoolid)"
    data = mm.datasets.load("egsingle")
    with pytest.warns(PredictorScaleWarning):
        design = build_design(formula, data)
    assert design.spec_builder is not None and not design.spec_builder.fixed
    assert all(spec is not None for spec in design.spec_builder.terms)
    _assert_same_outcome(formula, data)


def _frame(n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{i}" for i in range(6)], n // 6)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, size=n),
            "g": g,
            "h": np.tile(np.arange(5), n // 5),
        }
    )


def _with(frame: pd.DataFrame, **columns) -> pd.DataFrame:
    out = frame.copy()
    for name, values in columns.items():
        out[name] = values
    return out


def _set(frame: pd.DataFrame, column: str, rows: list[int], value) -> pd.DataFrame:
    out = frame.copy()
    if pd.api.types.is_integer_dtype(out[column].dtype) and isinstance(value, float):
        out[column] = out[column].astype(float)
    out.loc[rows, column] = value
    return out


BASE = _frame()
N = len(BASE)
RNG = np.random.default_rng(7)
CATEGORY_G = pd.Categorical(BASE["g"], categories=["zz", *sorted(set(BASE["g"])), "unused"])

# (id, formula, data, keyword arguments): fast-path candidates and their edge
# cases; each must come out exactly as formulaic's path, errors included.
FRAME_CASES = [
    ("plain", "y ~ x + k + (x | g)", BASE, {}),
    ("two-groupings", "y ~ x + (1 + x | g) + (0 + k | h)", BASE, {}),
    ("interacted-group", "y ~ x + (1 | g:h)", BASE, {}),
    (
        "int32-uint8-float32",
        "y ~ a + b + c + (a | g)",
        _with(
            BASE,
            a=BASE["k"].astype(np.int32),
            b=BASE["k"].astype(np.uint8),
            c=BASE["x"].astype(np.float32),
        ),
        {},
    ),
    ("int-response", "k ~ x + (1 | g)", BASE, {}),
    ("bool-predictor", "y ~ b + (1 | g)", _with(BASE, b=BASE["x"] > 0), {}),
    (
        "nullable-int",
        "y ~ n + (1 | g)",
        _with(BASE, n=pd.array([*range(N - 1), None], "Int64")),
        {},
    ),
    (
        "nullable-float",
        "y ~ n + (1 | g)",
        _with(BASE, n=pd.array([0.5] * (N - 1) + [None], "Float64")),
        {},
    ),
    ("object-numbers", "y ~ o + (1 | g)", _with(BASE, o=BASE["x"].astype(object)), {}),
    ("text-predictor", "y ~ g + (1 | h)", BASE, {}),
    ("dotted-name", "y ~ a.b + (a.b | g)", _with(BASE, **{"a.b": BASE["x"]}), {}),
    ("spaced-name", "y ~ `a b` + (`a b` | g)", _with(BASE, **{"a b": BASE["x"]}), {}),
    ("non-ascii-name", "y ~ dosé + (dosé | g)", _with(BASE, **{"dosé": BASE["x"]}), {}),
    ("keyword-name", "y ~ `if` + (1 | g)", _with(BASE, **{"if": BASE["x"]}), {}),
    ("Q-names", "Q('y') ~ Q('x') + (Q('k') | g)", BASE, {}),
    (
        "function-named-columns",
        "y ~ log + C + I + (1 | g)",
        _with(BASE, log=BASE["x"], C=BASE["k"], I=RNG.normal(size=N)),
        {},
    ),
    ("column-named-Intercept", "y ~ Intercept + (1 | g)", _with(BASE, Intercept=BASE["x"]), {}),
    ("response-as-predictor", "y ~ y + x + (1 | g)", BASE, {}),
    ("int-group", "y ~ x + (1 | h)", BASE, {}),
    ("float-group", "y ~ x + (1 | f)", _with(BASE, f=BASE["h"] / 2), {}),
    ("object-group", "y ~ x + (1 | o)", _with(BASE, o=BASE["g"].astype(object)), {}),
    (
        "mixed-object-group",
        "y ~ x + (1 | o)",
        _with(BASE, o=np.array([1, "a", 2.5] * (N // 3), dtype=object)),
        {},
    ),
    ("category-group-unused-levels", "y ~ x + (1 | c)", _with(BASE, c=CATEGORY_G), {}),
    (
        "int-category-group",
        "y ~ x + (1 | c)",
        _with(BASE, c=pd.Categorical(BASE["h"] * 10, categories=[40, 30, 20, 10, 0, 99])),
        {},
    ),
    ("bool-group", "y ~ x + (1 | b) + (1 | g)", _with(BASE, b=BASE["h"] > 2), {}),
    # Missing values: dropped (or refused) alike, whichever column holds them.
    ("nan-response", "y ~ x + (x | g)", _set(BASE, "y", [0, 7], np.nan), {}),
    ("nan-predictor", "y ~ x + k + (1 | g)", _set(BASE, "k", [3], np.nan), {}),
    ("nan-z-only", "y ~ x + (0 + k | g)", _set(BASE, "k", [3, 4], np.nan), {}),
    ("nan-text-group", "y ~ x + (1 | g)", _set(BASE, "g", [2], None), {}),
    (
        "nan-category-group",
        "y ~ x + (1 | c)",
        _set(_with(BASE, c=CATEGORY_G), "c", [5, 6], np.nan),
        {},
    ),
    (
        "drop-whole-level",
        "y ~ x + (1 | c)",
        _set(_with(BASE, c=CATEGORY_G), "y", list(range(10)), np.nan),
        {},
    ),
    ("nan-raise", "y ~ x + (1 | g)", _set(BASE, "x", [4], np.nan), {"missing": "raise"}),
    ("nan-everywhere", "y ~ x + (1 | g)", _set(BASE, "x", list(range(N)), np.nan), {}),
    (
        "nan-covers-all",
        "y ~ x + (1 | g)",
        _set(_set(BASE, "x", list(range(0, N, 2)), np.nan), "y", list(range(1, N, 2)), np.nan),
        {},
    ),
    ("nan-weights", "y ~ x + (1 | g)", BASE, {"weights": np.r_[np.nan, np.ones(N - 1)]}),
    ("weights-column", "y ~ x + (1 | g)", _with(BASE, w=np.linspace(0.5, 2, N)), {"weights": "w"}),
    ("zero-weight", "y ~ x + (1 | g)", BASE, {"weights": np.r_[0.0, np.ones(N - 1)]}),
    # Values and data that are refused or warned about.
    ("inf-predictor", "y ~ x + (1 | g)", _set(BASE, "x", [9], np.inf), {}),
    ("inf-response", "y ~ x + (1 | g)", _set(BASE, "y", [9], -np.inf), {}),
    ("inf-z-only", "y ~ x + (0 + k | g)", _set(BASE, "k", [9], np.inf), {}),
    ("constant-response", "y ~ x + (1 | g)", _with(BASE, y=1.0), {}),
    ("text-response", "g ~ x + (1 | h)", BASE, {}),
    ("missing-column", "y ~ xx + (1 | g)", BASE, {}),
    ("missing-group", "y ~ x + (1 | gg)", BASE, {}),
    ("aliased-columns", "y ~ x + x2 + k + (1 | g)", _with(BASE, x2=2 * BASE["x"]), {}),
    ("constant-predictor", "y ~ x + one + (1 | g)", _with(BASE, one=1), {}),
    ("scale-warning", "y ~ x + big + (1 | g)", _with(BASE, big=BASE["x"] * 1e6), {}),
    ("one-level", "y ~ x + (1 | one)", _with(BASE, one="a"), {}),
    ("level-per-row", "y ~ x + (1 | row)", _with(BASE, row=np.arange(N)), {}),
    ("too-many-effects", "y ~ x + (1 + x + k | h)", BASE.iloc[:12], {}),
    ("no-rows", "y ~ x + (1 | g)", BASE.iloc[:0], {}),
    ("dict-data", "y ~ x + (x | g)", {c: BASE[c].to_numpy() for c in BASE.columns}, {}),
    (
        "string-index",
        "y ~ x + (1 | g)",
        _set(BASE, "y", [1], np.nan).set_index(pd.Index([f"r{i}" for i in range(N)])),
        {},
    ),
    (
        "duplicate-index",
        "y ~ x + (1 | g)",
        _set(BASE, "x", [2], np.nan).set_index(pd.Index(np.arange(N) // 2)),
        {},
    ),
    ("transform-nan", "y ~ log(k - 1) + (k | g)", BASE, {}),
]


@pytest.mark.parametrize(
    ("formula", "data", "kwargs"),
    [pytest.param(*case[1:], id=case[0]) for case in FRAME_CASES],
)
def test_edge_cases_match_formulaic(formula, data, kwargs):
    _assert_same_outcome(formula, data, **kwargs)


def test_polars_data_match_formulaic():
    pl = pytest.importorskip("polars")
    data = pl.DataFrame(
        {
            "y": BASE["y"].to_numpy(),
            "x": np.r_[np.nan, BASE["x"].to_numpy()[1:]],
            "k": BASE["k"].to_numpy(),
            "g": BASE["g"].tolist(),
        }
    )
    design = _assert_same_outcome("y ~ x + k + (k | g)", data)
    assert design.n_dropped_missing == 1


def test_caller_data_unchanged_and_not_shared():
    data = _set(_with(BASE, c=CATEGORY_G), "x", [3], np.nan)
    before = data.copy(deep=True)
    design = build_design("y ~ x + k + (x | c)", data)
    pd.testing.assert_frame_equal(data, before)
    # The design owns its arrays: writing to them leaves the data alone.
    design.y[:] = 0.0
    design.x[:] = 0.0
    design.terms[0].z[:] = 0.0
    pd.testing.assert_frame_equal(data, before)
    full = build_design("y ~ x + k + (x | g)", BASE)
    full.y[:] = 0.0
    assert BASE["y"].ne(0).all()


def test_lazy_specs_survive_copy_and_pickle():
    design = build_design("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    assert design.spec_builder is not None
    assert "spec" not in repr(design)  # showing a design builds nothing
    assert design.spec_builder is not None
    for other in (copy.deepcopy(design), pickle.loads(pickle.dumps(design))):
        assert other.spec_builder is not None
        assert list(other.fixed_spec.column_names) == ["Intercept", "Days"]
        assert list(other.term_specs[0].column_names) == ["Intercept", "Days"]
    assert design.spec_builder is not None  # the copies built their own


def test_design_built_elsewhere_keeps_plain_fields():
    design = build_design("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    copy_ = Design(
        formula=design.formula,
        y=design.y,
        x=design.x,
        fixed_names=design.fixed_names,
        terms=design.terms,
    )
    assert copy_.fixed_spec is None
    assert copy_.term_specs == []
    copy_.term_specs.append("spec")
    assert copy_.term_specs == ["spec"]


@pytest.mark.parametrize(
    "categories",
    [
        ["b", "a", "c", "unused"],
        [3, 1, 2, 99],
        [2.5, 0.5, 1.5, 9.0],
    ],
)
def test_group_codes_of_categoricals_match_factorize(categories):
    values = [categories[i] for i in (0, 1, 1, 2, 0, 2)] + [None]
    frame = pd.DataFrame({"f": pd.Categorical(values, categories=categories)})
    codes, labels = group_codes(frame, ("f",))
    ref_codes, uniques = pd.factorize(frame["f"], sort=True)
    ref_labels = pd.Index(uniques).astype(str)
    np.testing.assert_array_equal(codes, ref_codes)
    assert labels.equals(ref_labels) and labels.dtype == ref_labels.dtype
    assert list(labels) == [str(c) for c in categories[:3]]  # category order, unused dropped


def _fit_both(formula, data, **kwargs):
    fast = mm.lmer(formula, data, **kwargs)
    with formulaic_only():
        slow = mm.lmer(formula, data, **kwargs)
    assert fast.design.spec_builder is not None and fast.design.spec_builder.fixed
    assert slow.design.spec_builder is None
    return fast, slow


def test_predict_on_new_data_with_fast_path_model():
    data = mm.datasets.load("sleepstudy")
    fast, slow = _fit_both("Reaction ~ Days + (Days | Subject)", data)
    np.testing.assert_array_equal(fast.fixef, slow.fixef)
    subjects = data["Subject"].iloc[[0, 100, 10]].reset_index(drop=True)
    new = pd.DataFrame({"Days": [0.5, 3.0, 12.0], "Subject": subjects})
    for random in (True, False):
        got = fast.predict(new, random=random)
        pd.testing.assert_series_equal(got, slow.predict(new, random=random))
    # The marginal prediction is Xβ on the new rows, computed independently.
    beta = fast.fixef.to_numpy()
    np.testing.assert_allclose(
        fast.predict(new, random=False).to_numpy(), beta[0] + beta[1] * new["Days"].to_numpy()
    )


def test_anova_and_statsmodels_summary_with_fast_path_model():
    data = mm.datasets.load("dietox")
    fast, slow = _fit_both("Weight ~ Time + Start + (Time | Pig)", data)
    pd.testing.assert_frame_equal(mm.anova(fast), mm.anova(slow))
    fast_sm = mm.mixedlm("Weight ~ Time + Start", data, groups="Pig", re_formula="~Time").fit()
    assert "Time" in str(fast_sm.summary())
    assert list(fast_sm.fe_params.index) == ["Intercept", "Time", "Start"]


@pytest.mark.parametrize("group", ["c", "g"])
def test_rows_with_missing_values_are_dropped(group):
    data = _with(BASE, c=CATEGORY_G)
    for column, rows in (("y", [0]), ("x", [9]), ("k", [3, 9]), (group, [5, 6]), ("h", [7])):
        data = _set(data, column, rows, np.nan)
    design = build_design(f"y ~ x + (0 + k | {group})", data)
    used = data[["y", "x", "k", group]].notna().all(axis=1).to_numpy()
    assert design.n_dropped_missing == 5  # rows 0, 3, 5, 6, 9; h is not used
    assert design.row_index.equals(data.index[used])
    np.testing.assert_array_equal(design.y, data.loc[used, "y"])
    np.testing.assert_array_equal(design.x[:, 1], data.loc[used, "x"])
    np.testing.assert_array_equal(design.terms[0].z[:, 0], data.loc[used, "k"])
    assert list(design.terms[0].levels) == sorted(set(BASE["g"]))  # unused categories gone
    with pytest.raises(MixedModelsError, match=r"5 rows have missing values .*first at row 0"):
        build_design(f"y ~ x + (0 + k | {group})", data, missing="raise")
