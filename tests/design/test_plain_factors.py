"""Factors on the plain design path (:mod:`mixedmodels.design.plain`) against formulaic.

A part made of an intercept, numeric columns and factors (text or unordered
categorical columns) joined by ``+`` is built without formulaic; the design
must be exactly the one formulaic's path gives: X and each Z (values, column
order), lme4's names, the levels and reference level, the full-rank rule,
rank-deficiency warnings, errors, and the model specs (hence predictions on
new data, unseen levels refused alike).  Random formulas over random data
compare the two paths; ``formulaic_only`` routes every part through formulaic.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.design import evaluation as design_evaluation
from mixedmodels.design.codings import coded_formula
from mixedmodels.design.plain import plain_plan
from mixedmodels.errors import DataError, MixedModelsError
from mixedmodels.formula import factors as formula_factors
from mixedmodels.formula import parse_formula
from mixedmodels.inference.predict import design_fixed_matrix
from tests.design.test_fastpath import formulaic_only, without_formulaic

TEXT_POOL = ["b", "a", "c", "Z", "é", "a b", "10", "9", "x.y"]


def _outcome(formula, data, slow: bool):
    """``("ok", design, warnings)`` or ``("error", (type, message), warnings)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with formulaic_only() if slow else contextlib.nullcontext():
                result = ("ok", build_design(formula, data))
        except MixedModelsError as err:
            result = ("error", (type(err), str(err)))
    return (*result, [(w.category, str(w.message)) for w in caught])


def _assert_same_design(fast, slow) -> None:
    for name in ("x", "y"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.flags.c_contiguous == b.flags.c_contiguous or a.shape[1] <= 1, name
    assert fast.fixed_names == slow.fixed_names
    assert fast.dropped_columns == slow.dropped_columns
    assert fast.n_dropped_missing == slow.n_dropped_missing
    assert fast.row_index.equals(slow.row_index)
    assert len(fast.terms) == len(slow.terms)
    for a, b in zip(fast.terms, slow.terms, strict=True):
        assert a.group_name == b.group_name
        np.testing.assert_array_equal(a.codes, b.codes)
        assert a.levels.equals(b.levels)
        assert a.z.dtype == b.z.dtype and a.z.shape == b.z.shape
        np.testing.assert_array_equal(a.z, b.z)
        assert a.column_names == b.column_names
    assert fast.predictor_levels.keys() == slow.predictor_levels.keys()
    # The specs built on first use from a few rows equal formulaic's own
    # (ModelSpec compares formula, structure and the factors' encoder state).
    assert fast.fixed_spec == slow.fixed_spec
    assert fast.term_specs == slow.term_specs


def _same_on_new_rows(fast, slow, new: pd.DataFrame) -> None:
    """X on new rows, or the error, is the same from both designs."""
    got = []
    for design in (fast, slow):
        try:
            got.append(("ok", design_fixed_matrix(design, new)))
        except MixedModelsError as err:
            got.append(("error", (type(err), str(err))))
    assert got[0][0] == got[1][0], got
    if got[0][0] == "ok":
        np.testing.assert_array_equal(got[0][1], got[1][1])
    else:
        assert got[0][1] == got[1][1]


def assert_same_both_ways(formula, data, new: pd.DataFrame | None = None):
    """The design (or error) from the plain path is formulaic's; returns the fast one."""
    fast = _outcome(formula, data, slow=False)
    slow = _outcome(formula, data, slow=True)
    assert fast[0] == slow[0], (formula, fast, slow)
    assert fast[-1] == slow[-1], formula  # the same warnings, in order
    if slow[0] == "error":
        assert fast[1] == slow[1]
        return None
    _assert_same_design(fast[1], slow[1])
    if new is not None:
        _same_on_new_rows(fast[1], slow[1], new)
    return fast[1]


# ---------------------------------------------------------------------------
# Random data and formulas
# ---------------------------------------------------------------------------


def _random_levels(rng, k: int) -> list:
    return list(rng.choice(TEXT_POOL, size=k, replace=False))


def random_frame(rng, n: int) -> pd.DataFrame:
    """Numbers, text (object and pandas' str), categoricals (text and integer categories,
    reordered, with unused ones), booleans, a one-level factor, groups; missing values."""
    t_levels = _random_levels(rng, int(rng.integers(1, 5)))
    s_levels = _random_levels(rng, int(rng.integers(2, 4)))
    c_levels = _random_levels(rng, int(rng.integers(2, 5)))
    c_categories = [*rng.permutation(c_levels), "unused"]
    if rng.random() < 0.5:
        c_categories = ["first-unused", *c_categories]
    i_levels = [int(v) for v in rng.choice([3, 1, 20, 7, 0, -2], size=3, replace=False)]
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "k": rng.integers(0, 4, size=n),
            "t": pd.Series(rng.choice(t_levels, size=n), dtype=object),
            "s": pd.Series(rng.choice(s_levels, size=n), dtype="str"),
            "c": pd.Categorical(rng.choice(c_levels, size=n), categories=c_categories),
            "ci": pd.Categorical(rng.choice(i_levels, size=n), categories=[*i_levels, 99]),
            "b": rng.random(n) < 0.5,
            "u": pd.Series(["only"] * n, dtype=object),
            "g": pd.Series(rng.choice([f"g{i}" for i in range(6)], size=n), dtype=object),
            "h": rng.integers(0, 4, size=n),
        }
    )
    # Missing values, sometimes taking every row of a level away.
    for name in rng.choice(["y", "x", "t", "s", "c", "ci", "g"], size=int(rng.integers(0, 3))):
        rows = rng.choice(n, size=int(rng.integers(1, 4)), replace=False)
        if name in ("t", "s", "c", "ci") and rng.random() < 0.4:
            value = frame[name].iloc[int(rows[0])]
            rows = np.flatnonzero((frame[name] == value).to_numpy())
            if len(rows) >= n - 10:
                continue
        frame.loc[rows, name] = np.nan if name in ("y", "x") else None
    return frame


FIXED_TERMS = ["x", "k", "t", "s", "c", "ci", "u", "b", "g"]
LHS = ["1", "x", "0 + t", "c", "1 + x + s", "0 + c + ci", "0 + u", "t + x", "0 + x", "ci"]


def random_formula(rng) -> str:
    terms = list(rng.choice(FIXED_TERMS, size=int(rng.integers(0, 5)), replace=True))
    form = rng.choice(["", "1 + ", "0 + ", "-1", "+0"])
    if not terms:
        body = "1"
    elif form in ("-1", "+0"):
        body = " + ".join(terms) + f" {form[0]} {form[1]}"
    else:
        body = form + " + ".join(terms)
    bars = []
    for _ in range(int(rng.integers(1, 3))):
        lhs = str(rng.choice(LHS))
        group = str(rng.choice(["g", "h", "t", "g:s"], p=[0.5, 0.2, 0.15, 0.15]))
        bars.append(f"({lhs} | {group})")
    response = "k" if rng.random() < 0.1 else "y"
    return f"{response} ~ {body} + " + " + ".join(bars)


def new_rows(rng, data: pd.DataFrame) -> pd.DataFrame:
    """Rows of the data (missing values included), sometimes with a level never seen."""
    picked = data.iloc[rng.choice(len(data), size=8)].reset_index(drop=True)
    picked["x"] = rng.normal(size=len(picked))
    if rng.random() < 0.3:
        column = str(rng.choice(["t", "s", "c"]))
        values = picked[column].astype(object).to_numpy(copy=True)
        values[0] = "never-seen"
        picked[column] = values
    return picked


def _random_block(block: int) -> None:
    plain_factor_parts = 0
    for seed in range(block * 40, block * 40 + 40):
        rng = np.random.default_rng(seed)
        data = random_frame(rng, int(rng.integers(40, 90)))
        formula = random_formula(rng)
        design = assert_same_both_ways(formula, data, new_rows(rng, data))
        if design is not None:
            parsed = design.formula
            plan = plain_plan(parsed, {c: data[c] for c in parsed.columns})
            plain_factor_parts += bool(plan.factors)
    # The comparison is not vacuous: many designs had factors on the plain path.
    assert plain_factor_parts >= 10


@pytest.mark.parametrize("block", range(6))
def test_random_formulas_match_formulaic(block):
    _random_block(block)


@pytest.mark.slow
@pytest.mark.parametrize("block", range(6, 56))
def test_many_more_random_formulas_match_formulaic(block):
    _random_block(block)


# ---------------------------------------------------------------------------
# Chosen cases
# ---------------------------------------------------------------------------

RNG = np.random.default_rng(20261207)
N = 60
BASE = pd.DataFrame(
    {
        "y": RNG.normal(size=N),
        "x": RNG.normal(size=N),
        "f": pd.Series(RNG.choice(["lo", "mid", "hi"], size=N), dtype=object),
        "s": pd.Series(RNG.choice(["M", "F"], size=N), dtype="str"),
        "c": pd.Categorical(RNG.choice(["q", "p", "r"], size=N), categories=["r", "q", "p", "z"]),
        "g": np.repeat([f"g{i}" for i in range(6)], N // 6),
    }
)


def _with(**columns) -> pd.DataFrame:
    out = BASE.copy()
    for name, values in columns.items():
        out[name] = values
    return out


CASES = [
    ("text", "y ~ x + f + (1 | g)", BASE),
    ("str-dtype", "y ~ s + x + (1 | g)", BASE),
    ("categorical-reordered-unused", "y ~ c + (1 | g)", BASE),
    ("no-intercept", "y ~ 0 + f + c + s + (1 | g)", BASE),
    ("no-intercept-numeric-first", "y ~ 0 + x + c + f + (1 | g)", BASE),
    ("minus-one", "y ~ f + x - 1 + (1 | g)", BASE),
    ("repeated-terms", "y ~ f + x + f + c + x + (1 | g)", BASE),
    ("factor-is-group", "y ~ x + g + (1 | g)", BASE),
    ("factor-in-slope", "y ~ x + (s | g)", BASE),
    ("factor-slope-no-intercept", "y ~ x + (0 + c | g) + (1 | f)", BASE),
    ("one-level", "y ~ x + one + (1 | g)", _with(one="a")),
    ("one-level-no-intercept", "y ~ 0 + one + f + (1 | g)", _with(one="a")),
    ("aliased-factors", "y ~ f + f2 + (1 | g)", _with(f2=BASE["f"].map({"lo": "A"}).fillna("B"))),
    ("aliased-with-number", "y ~ x + s + sx + (1 | g)", _with(sx=(BASE["s"] == "M") * 1.0)),
    ("level-gone-with-missing", "y ~ f + (1 | g)", _with(y=BASE["y"].where(BASE["f"] != "lo"))),
    ("missing-factor", "y ~ x + c + (1 | g)", _with(c=BASE["c"].where(BASE.index % 7 != 0))),
    ("int-categories", "y ~ ci + (1 | g)", _with(ci=pd.Categorical(BASE.index % 3 * 10 + 5))),
    (
        "float-categories",  # left to formulaic
        "y ~ cf + (1 | g)",
        _with(cf=pd.Categorical(BASE.index % 3 * 0.5)),
    ),
    ("mixed-text-numbers", "y ~ m + (1 | g)", _with(m=np.array(["a", 1, 2.5] * 20, dtype=object))),
    ("boolean", "y ~ b + (1 | g)", _with(b=BASE["x"] > 0)),
    ("ordered", "y ~ o + (1 | g)", _with(o=pd.Categorical(BASE["f"], ordered=True))),
    ("nullable-string", "y ~ ns + (1 | g)", _with(ns=pd.array(BASE["f"], dtype="string"))),
    ("level-per-row", "y ~ row + (1 | g)", _with(row=[f"r{i}" for i in range(N)])),
    ("text-response", "f ~ x + (1 | g)", BASE),
    ("spaced-name", "y ~ `my f` + (1 | g)", _with(**{"my f": BASE["f"]})),
    ("non-ascii", "y ~ sexé + (1 | g)", _with(**{"sexé": BASE["s"]})),
    ("level-with-brackets", "y ~ br + (1 | g)", _with(br=BASE["f"].map(lambda v: f"[{v}]"))),
    ("empty-text-level", "y ~ e + (1 | g)", _with(e=BASE["f"].replace("mid", ""))),
    (
        "function-named-factors",
        "y ~ C + log + T + (1 | g)",
        _with(C=BASE["f"], log=BASE["s"], T=BASE["c"]),
    ),
    ("keyword-named-factor", "y ~ `if` + (1 | g)", _with(**{"if": BASE["f"]})),
    ("dotted-factor", "y ~ a.b + (a.b | g)", _with(**{"a.b": BASE["s"]})),
    ("Q-factor", "y ~ Q('my f') + (1 | g)", _with(**{"my f": BASE["f"]})),
    ("factor-grouped-by-itself", "y ~ x + (f | f)", BASE),
    (
        "object-categories",
        "y ~ oc + (1 | g)",
        _with(oc=BASE["c"].cat.set_categories(pd.Index(["r", "q", "p", "z"], dtype=object))),
    ),
    (
        "mixed-categories",
        "y ~ mc + (1 | g)",
        _with(
            mc=pd.Categorical(
                np.array(["a", 1, "b"] * 20, dtype=object),
                categories=pd.Index(["b", 1, "a"], dtype=object),
            )
        ),
    ),
    # Rows dropped by a formulaic part (log of a negative number) take level
    # "lo" away from the plain term's factor.
    (
        "transform-nan-drops-level",
        "y ~ log(v) + (f | g)",
        _with(v=np.where(BASE["f"] == "lo", -1.0, 1.0 + BASE.index)),
    ),
    ("too-many-effects", "y ~ x + (0 + row | g)", _with(row=[f"r{i % 15}" for i in range(N)])),
]


@pytest.mark.parametrize(("formula", "data"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_chosen_cases_match_formulaic(formula, data):
    new = data.iloc[[0, 5, 11, 30]].reset_index(drop=True)
    assert_same_both_ways(formula, data, new)


@pytest.mark.parametrize(
    ("source", "formula"),
    [
        ("ScotsSec", "attain ~ verbal + sex + (1 | primary) + (1 | second)"),
        ("Exam", "normexam ~ standLRT + sex + (standLRT | school)"),
        ("Exam", "normexam ~ 0 + vr + sex + schgend + (1 | school)"),
        ("Exam", "normexam ~ standLRT + (sex | school)"),
        ("Orthodont", "distance ~ age + Sex + (age | Subject)"),
    ],
)
def test_factor_models_skip_formulaic(source, formula):
    data = mm.datasets.load(source)
    with without_formulaic():
        fast = build_design(formula, data)
    assert fast.spec_builder is not None
    assert_same_both_ways(formula, data, data.iloc[::97])


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + b + (1 | g)",
        "y ~ 0 + b + f + (b | g)",
        "y ~ x + allTRUE + b + (0 + b | g)",  # a constant logical: aliased, dropped
        "y ~ 0 + x + `my b` + (1 | g)",
    ],
)
def test_logical_columns_skip_formulaic(formula):
    data = _with(b=BASE["x"] > 0, allTRUE=True, **{"my b": BASE.index % 3 == 0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with without_formulaic():
            build_design(formula, data)
    design = assert_same_both_ways(formula, data, data.iloc[[2, 9, 4]])
    assert any(name.endswith("TRUE") for name in design.fixed_names)


def test_names_levels_and_reference_are_r_s():
    data = _with(ci=pd.Categorical(BASE.index % 3 * 10 + 5, categories=[25, 15, 5, 0]))
    with without_formulaic():
        design = build_design("y ~ x + f + c + s + ci + (1 | g)", data)
    # R's names (column and level pasted): text sorted ("hi" the reference),
    # categories in their order ("r" first, "z" unused, 25 first).
    assert design.fixed_names == [
        "(Intercept)",
        *("x", "flo", "fmid", "cq", "cp", "sM", "ci15", "ci5"),
    ]
    f = BASE["f"].to_numpy()
    np.testing.assert_array_equal(design.x[:, 2], f == "lo")
    np.testing.assert_array_equal(design.x[:, 3], f == "mid")
    with without_formulaic():
        design = build_design("y ~ 0 + c + f + (1 | g)", data)
    assert design.fixed_names == ["cr", "cq", "cp", "flo", "fmid"]


def test_fitted_models_predict_alike():
    data = _with(c=BASE["c"].where(BASE.index % 11 != 0))
    formula = "y ~ x + f + c + (s | g)"
    fast = mm.lmer(formula, data)
    with formulaic_only():
        slow = mm.lmer(formula, data)
    assert fast.design.spec_builder is not None and slow.design.spec_builder is None
    np.testing.assert_array_equal(fast.fixef, slow.fixef)
    assert list(fast.fixef.index) == ["(Intercept)", "x", "flo", "fmid", "cq", "cp"]
    new = data.iloc[[3, 0, 14, 22]].reset_index(drop=True)  # row 0: c missing
    for random in (True, False):
        pd.testing.assert_series_equal(
            fast.predict(new, random=random), slow.predict(new, random=random)
        )
    # Marginal predictions are Xβ with the fit's coding, computed independently.
    beta = fast.fixef
    expected = (
        beta["(Intercept)"]
        + beta["x"] * new["x"]
        + beta["flo"] * (new["f"] == "lo")
        + beta["fmid"] * (new["f"] == "mid")
        + beta["cq"] * (new["c"] == "q")
        + beta["cp"] * (new["c"] == "p")
    ).where(new["c"].notna())
    np.testing.assert_allclose(fast.predict(new, random=False), expected)
    # A level the fit never saw is refused alike, naming the column and level.
    unseen = new.assign(f=["lo", "top", "mid", "hi"])
    messages = []
    for model in (fast, slow):
        with pytest.raises(DataError, match=r"column 'f' has level 'top'") as err:
            model.predict(unseen)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    pd.testing.assert_frame_equal(mm.anova(fast), mm.anova(slow))


@pytest.mark.parametrize("contrasts", [{"f": "contr.sum"}, {"c": "contr.helmert"}, {"s": "sum"}])
def test_contrasts_argument_matches_formulaic(contrasts):
    formula = "y ~ f + x + c + s + (f + c | g)"
    fast = build_design(formula, BASE, contrasts=contrasts)
    # contrasts= codes the fixed part only (formulaic's): the term's left-hand
    # side stays plain.
    assert fast.spec_builder is not None and not fast.spec_builder.fixed
    assert fast.spec_builder.terms[0] is not None
    with formulaic_only():
        slow = build_design(formula, BASE, contrasts=contrasts)
    _assert_same_design(fast, slow)
    assert fast.terms[0].column_names == ["(Intercept)", "flo", "fmid", "cq", "cp"]


def test_missing_weights_drop_a_level_alike():
    weights = np.where(BASE["c"] == "q", np.nan, 1.0)
    for formula in ("y ~ x + c + (1 | g)", "y ~ 0 + c + f + (0 + c | g)"):
        fast = build_design(formula, BASE, weights=weights)
        with formulaic_only():
            slow = build_design(formula, BASE, weights=weights)
        _assert_same_design(fast, slow)
        assert not any(name.endswith("q") for name in fast.fixed_names)


def test_arrow_text_matches_formulaic():
    pytest.importorskip("pyarrow")
    arrow = pd.Series(BASE["f"].to_numpy(), dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    data = _with(a=arrow.where(BASE.index % 9 != 0))
    with without_formulaic():
        build_design("y ~ a + (1 | g)", data)
    assert_same_both_ways("y ~ x + a + (a | g)", data, data.iloc[[1, 0, 7]])


def test_polars_factors_match_formulaic():
    pl = pytest.importorskip("polars")
    data = pl.DataFrame(
        {
            "y": BASE["y"].to_numpy(),
            "x": BASE["x"].to_numpy(),
            "f": BASE["f"].tolist(),
            "e": pl.Series(BASE["c"].astype(str).tolist(), dtype=pl.Enum(["r", "q", "p", "z"])),
            "b": BASE["x"].to_numpy() > 0,
            "g": BASE["g"].tolist(),
        }
    )
    with without_formulaic():
        build_design("y ~ x + f + e + b + (1 | g)", data)
    assert_same_both_ways("y ~ x + f + e + b + (1 | g)", data)


def test_lazy_specs_of_factors_survive_copy_and_pickle():
    formula = "y ~ x + f + c + b + (s | g)"
    data = _with(b=BASE["x"] > 0)
    fast = build_design(formula, data)
    with formulaic_only():
        slow = build_design(formula, data)
    assert fast.spec_builder is not None
    for other in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert other.spec_builder is not None
        assert other.fixed_spec == slow.fixed_spec
        assert other.term_specs == slow.term_specs


def test_factor_too_large_for_dense_columns_is_refused(monkeypatch):
    # The limit lowered, so that an ordinary factor trips it on both paths.
    monkeypatch.setattr(design_evaluation, "MAX_DENSE_BYTES", 8 * N * 2)
    monkeypatch.setattr(formula_factors, "MAX_DENSE_BYTES", 8 * N * 2)
    data = _with(many=[f"v{i % 20}" for i in range(N)])
    fast = _outcome("y ~ many + (1 | g)", data, slow=False)
    slow = _outcome("y ~ many + (1 | g)", data, slow=True)
    assert fast[0] == slow[0] == "error"
    assert fast[1] == slow[1]
    assert "column 'many' has 20 levels" in fast[1][1]


def test_plain_plan_kinds():
    data = _with(
        b=BASE["x"] > 0,
        o=pd.Categorical(BASE["f"], ordered=True),
        cf=pd.Categorical(BASE.index % 3 * 0.5),
    )
    parsed = coded_formula(parse_formula("y ~ x + f + s + c + b + (1 | g)"), data)
    plan = plain_plan(parsed, {c: data[c] for c in parsed.columns})
    assert plan.fixed is not None
    assert plan.fixed.factors == {"f": "f", "s": "s", "c": "c", "b": "logical(b)"}
    assert plan.factors == ("f", "s", "c", "b")
    for formula in ("y ~ x + cf + (1 | g)", "y ~ f:x + (1 | g)", "y ~ C(f) + (1 | g)"):
        parsed = parse_formula(formula)
        assert plain_plan(parsed, {c: data[c] for c in parsed.columns}).fixed is None
