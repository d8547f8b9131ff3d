"""Model matrices from the formula language: numbers as R computes them (issue 15, class 3),
factors as R codes them, offsets and grouping expressions on the rows used."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import aliased_columns, build_design
from mixedmodels.design.evaluation import evaluation_frame
from mixedmodels.errors import (
    ArgumentError,
    DataError,
    FormulaError,
    MissingValuesWarning,
    PredictorScaleWarning,
    RankDeficiencyWarning,
)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(15)
    n = 120
    g = np.repeat(np.arange(12), 10)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": 1 + 0.5 * x + rng.normal(size=12)[g] + rng.normal(size=n),
            "x": x,
            "k": rng.integers(1, 6, n),
            "big": rng.integers(4_000_000_000, 4_100_000_000, n),
            "flag": rng.uniform(size=n) < 0.5,
            "f": rng.choice(["a", "b", "c"], n),
            "g": [f"g{v:02d}" for v in g],
            "n": rng.integers(5, 50, n),
        }
    )


def design(formula: str, frame: pd.DataFrame, **options) -> mm.design.Design:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        warnings.simplefilter("ignore", PredictorScaleWarning)
        return build_design(formula, frame, **options)


def column(d, name: str) -> np.ndarray:
    return d.x[:, d.fixed_names.index(name)]


# -- class 3: formula arithmetic in floating point -------------------------------------------


@pytest.mark.parametrize("term", ["I(big^2)", "I(big * big)", "I((big - 1) * (big + 1) + 1)"])
def test_squaring_a_large_integer_does_not_wrap(data, term) -> None:
    # The example: x ≈ 4e9 as int64; x^2 ≈ 1.6e19 overflows int64.
    d = design(f"y ~ {term} + (1 | g)", data)
    exact = data["big"].to_numpy(dtype=np.float64) ** 2
    np.testing.assert_allclose(column(d, term), exact, rtol=1e-15)
    assert (column(d, term) > 1.6e19).all()


@pytest.mark.parametrize(
    ("dtype", "values", "term", "expected"),
    [
        ("int32", [50_000, 60_000, 70_000], "I(v * v)", [2.5e9, 3.6e9, 4.9e9]),  # int32 wraps
        ("uint8", [200, 100, 50], "I(v * 100)", [20_000.0, 10_000.0, 5_000.0]),  # uint8 wraps
        ("uint64", [2, 1, 3], "I(-v)", [-2.0, -1.0, -3.0]),  # unsigned negation wraps
        ("int64", [-(2**63), 0, 5], "I(abs(v))", [2.0**63, 0.0, 5.0]),  # abs(INT_MIN) < 0
        ("bool", [True, True, False], "I(v + v)", [2.0, 2.0, 0.0]),  # not a logical "or"
        ("bool", [True, False, True], "I(-v)", [-1.0, 0.0, -1.0]),  # not a logical "not"
        ("boolean", [True, None, False], "I(v * 3)", [3.0, np.nan, 0.0]),
        ("Int64", [3, None, 4], "I(v^2)", [9.0, np.nan, 16.0]),  # nullable: NA is missing
    ],
)
def test_integer_and_logical_arithmetic_is_rs(dtype, values, term, expected) -> None:
    frame = pd.DataFrame({"v": pd.array(values, dtype=dtype)})
    from mixedmodels.formula import TRANSFORMS
    from mixedmodels.formula import parse_formula as parse

    logical = {"v": "logical({})"} if dtype in ("bool", "boolean") else {}
    text = parse(f"y ~ {term}", logical).fixed
    matrix = mm.design.evaluation.evaluate(text, evaluation_frame(frame, None), "x")
    np.testing.assert_array_equal(np.asarray(matrix, dtype=float)[:, 1], expected)
    assert TRANSFORMS  # the context formulaic evaluates with


@pytest.mark.parametrize(
    ("term", "culprit"),
    [
        ("I(exp(1000 * x))", "I(exp(1000 * x))"),
        ("I(exp(800 + x) / exp(800 + x))", "I(exp(800 + x)/exp(800 + x))"),  # inf/inf
        ("I((100 * x)^200)", "I((100 * x)^200)"),
        ("scale(x * 1e200)", "scale(x * 1e+200)"),  # its sum of squares overflows
        ("sinh(1000 * x)", "sinh(1000 * x)"),
    ],
)
def test_overflow_while_evaluating_is_refused_naming_the_term(data, term, culprit) -> None:
    with pytest.raises((FormulaError, DataError)) as info:
        mm.lmer(f"y ~ {term} + (1 | g)", data)
    assert culprit in str(info.value)
    assert "overflow" in str(info.value)


def test_an_overflowing_offset_is_refused_naming_it(data) -> None:
    with pytest.raises(FormulaError, match=r"offset\(exp\(1000 \* x\)\).*overflow"):
        mm.lmer("y ~ x + offset(exp(1000 * x)) + (1 | g)", data)


# -- class 3: scales the cross-products cannot represent ---------------------------------------


@pytest.mark.parametrize(
    ("formula", "scale", "what"),
    [
        ("y ~ x + (1 | g)", {"x": 1e-300}, "column 'x' has values too small"),
        ("y ~ x + (1 | g)", {"x": 1e300}, "column 'x' has values too large"),
        ("y ~ x + (1 | g)", {"y": 1e300}, "response 'y' has values too large"),
        ("y ~ 1 + (x | g)", {"x": 1e200}, "(1 + x | g), the column 'x'"),
        # A term's numeric column the fixed part lacks is checked with the term's ...
        ("y ~ f + (f + x | g)", {"x": 1e200}, "(1 + f + x | g), the column 'x'"),
        # ... one it has, with the fixed part's.
        ("y ~ x + f + (x | g)", {"x": 1e200}, "fixed-effects column 'x'"),
        ("y ~ x + (0 + f | g) + (x | k)", {"x": 1e-300}, "fixed-effects column 'x'"),
        ("y ~ I(x * 1e160) + (1 | g)", {}, "column 'I(x * 1e+160)'"),
    ],
)
def test_extreme_scales_are_refused_by_name(data, formula, scale, what) -> None:
    frame = data.assign(**{name: data[name] * factor for name, factor in scale.items()})
    with pytest.raises(DataError) as info:
        mm.lmer(formula, frame)
    assert what in str(info.value) and "rescale" in str(info.value)


def test_a_small_but_representable_scale_gives_the_rescaled_fit(data) -> None:
    # (By ML: the REML criterion changes with the scale of X, the deviance does not.)
    base = mm.lmer("y ~ x + (1 | g)", data, reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = mm.lmer("y ~ x + (1 | g)", data.assign(x=data.x * 1e-100), reml=False)
    assert tiny.fixef["x"] * 1e-100 == pytest.approx(base.fixef["x"], rel=1e-6)
    assert tiny.objective == pytest.approx(base.objective, abs=1e-6)


def test_rank_test_does_not_depend_on_a_columns_scale() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(50), rng.normal(size=50) * 1e-300, rng.normal(size=50) * 1e300])
    assert aliased_columns(x) == []
    assert aliased_columns(np.column_stack([x, 3 * x[:, 1]])) == [3]
    assert aliased_columns(np.column_stack([x, np.zeros(50)])) == [3]


# -- factors as R codes them --------------------------------------------------------------


def test_unused_levels_of_a_computed_factor_are_dropped(data) -> None:
    # k == 5 only where the response is missing: R's drop.unused.levels leaves no
    # column for it (formulaic alone would make an all-zero, aliased one).
    frame = data.assign(y=np.where(data.k == 5, np.nan, data.y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficiencyWarning)
        d = build_design("y ~ factor(k) + (1 | g)", frame)
    assert d.fixed_names == ["(Intercept)", "factor(k)2", "factor(k)3", "factor(k)4"]


def test_values_outside_the_levels_are_missing(data) -> None:
    with pytest.warns(MissingValuesWarning, match=r"factor\(f, levels = c\(\"a\", \"b\"\)\)"):
        d = build_design('y ~ factor(f, levels = c("a", "b")) + (1 | g)', data)
    assert d.n_dropped_missing == int((data.f == "c").sum())
    assert d.fixed_names == ["(Intercept)", 'factor(f, levels = c("a", "b"))b']


def test_a_logical_keeps_both_levels_as_in_r(data) -> None:
    # R codes I(x > 100) by levels FALSE and TRUE even if no row is TRUE; the
    # all-zero column is then aliased and dropped, as lme4 drops it.
    with pytest.warns(RankDeficiencyWarning, match=r"I\(x > 100\)TRUE"):
        build_design("y ~ I(x > 100) + (1 | g)", data)
    d = design("y ~ flag * x + (1 | g)", data)
    assert d.fixed_names == ["(Intercept)", "flagTRUE", "x", "flagTRUE:x"]
    np.testing.assert_array_equal(column(d, "flagTRUE"), data.flag.astype(float))


def test_a_comparison_with_a_missing_value_is_missing_not_false(data) -> None:
    # log(x) of a negative x is NaN; R's NaN > 0 is NA, so the row is dropped.
    with pytest.warns(MissingValuesWarning):
        d = build_design("y ~ I(log(x) > 0) + (1 | g)", data)
    assert d.n_dropped_missing == int((data.x < 0).sum())


def test_logical_or_is_the_negation_of_and_of_negations(data) -> None:
    # lme4 cannot take | inside I() (it reads it as a bar); here it is R's "or".
    a = design("y ~ I(x > 0 | flag) + (1 | g)", data)
    b = design("y ~ I(!(!(x > 0) & !flag)) + (1 | g)", data)
    np.testing.assert_array_equal(a.x, b.x)


def test_an_ordered_factor_gets_polynomial_contrasts(data) -> None:
    frame = data.assign(
        o=pd.Categorical(data.f.map({"a": "lo", "b": "mid", "c": "hi"}), ["lo", "mid", "hi"], True)
    )
    d = design("y ~ o + (1 | g)", frame)
    assert d.fixed_names == ["(Intercept)", "o.L", "o.Q"]
    np.testing.assert_allclose(
        np.unique(column(d, "o.L")), [-1 / np.sqrt(2), 0.0, 1 / np.sqrt(2)], atol=1e-15
    )


@pytest.mark.parametrize(
    ("contrasts", "names"),
    [
        ({"f": "contr.sum"}, ["f1", "f2"]),
        ({"f": "contr.helmert"}, ["f1", "f2"]),
        ({"f": "contr.poly"}, ["f.L", "f.Q"]),
        ({"f": "contr.SAS"}, ["fa", "fb"]),
        ({"f": "contr.treatment(base = 2)"}, ["fa", "fc"]),
        ({"f": 'contr.treatment(base = "c")'}, ["fa", "fb"]),
        ({"f": "sum"}, ["f1", "f2"]),
        ({"f": "Sum"}, ["f1", "f2"]),
    ],
)
def test_contrasts_argument_names_columns_as_r(data, contrasts, names) -> None:
    d = design("y ~ f + x + (f | g)", data, contrasts=contrasts)
    assert d.fixed_names == ["(Intercept)", *names, "x"]
    # lme4's contrasts= applies to the fixed part only.
    assert d.terms[0].column_names == ["(Intercept)", "fb", "fc"]


@pytest.mark.parametrize(
    ("contrasts", "error", "fragment"),
    [
        ({"z": "contr.sum"}, DataError, "'z', which is not a column of the fixed part"),
        ({"x": "contr.sum"}, DataError, "'x', which holds numbers"),
        ({"f": "contr.foo"}, FormulaError, "contr.foo"),
        ({"f": "contr.treatment(base = x)"}, FormulaError, "base"),
        ({"f": 3}, ArgumentError, "strings"),
        (["f", "contr.sum"], ArgumentError, "dict"),
    ],
)
def test_bad_contrasts_are_named(data, contrasts, error, fragment) -> None:
    with pytest.raises(error, match=fragment):
        build_design("y ~ f + x + (1 | g)", data, contrasts=contrasts)


def test_a_base_level_that_does_not_exist_is_named(data) -> None:
    with pytest.raises(FormulaError, match="'zz' is not a level"):
        build_design("y ~ f + (1 | g)", data, contrasts={"f": 'contr.treatment(base = "zz")'})


# -- offsets ---------------------------------------------------------------------------------


def test_offsets_add_up_and_appear_once_each(data) -> None:
    d = design("y ~ x + offset(log(n)) + offset(x / 2) + (1 | g)", data, offset="k")
    np.testing.assert_allclose(d.offset, np.log(data.n) + data.x / 2 + data.k)
    # R counts a repeated offset term once.
    twice = design("y ~ x + offset(log(n)) + offset(log(n)) + (1 | g)", data)
    np.testing.assert_allclose(twice.offset, np.log(data.n))


def test_offset_rows_missing_are_dropped_infinite_refused(data) -> None:
    frame = data.assign(o=np.where(np.arange(len(data)) < 3, np.nan, 1.0))
    d = design("y ~ x + (1 | g)", frame, offset="o")
    assert d.n_dropped_missing == 3 and len(d.offset) == len(data) - 3
    with pytest.raises(DataError, match=r"3 rows have missing values.*'offset'"):
        build_design("y ~ x + (1 | g)", frame, offset="o", missing="raise")
    with pytest.raises(DataError, match=r"offset\(log\(n - 5\)\).*infinite"):
        build_design("y ~ x + offset(log(n - 5)) + (1 | g)", data.assign(n=data.n.clip(5)))


@pytest.mark.parametrize(
    ("offset", "fragment"),
    [
        ("nope", "offset column 'nope' is not in the data"),
        (np.ones(5), "one value per row of the data"),
        (np.ones((120, 2)), "one value per row"),
        (["a"] * 120, "must be numbers"),
    ],
)
def test_bad_offset_arguments_are_named(data, offset, fragment) -> None:
    with pytest.raises(DataError, match=fragment):
        build_design("y ~ x + (1 | g)", data, offset=offset)


def test_an_offset_cannot_be_in_a_random_term_or_removed(data) -> None:
    with pytest.raises(FormulaError, match="belongs in the fixed part"):
        build_design("y ~ x + (offset(x) | g)", data)
    with pytest.raises(FormulaError, match="cannot be removed"):
        build_design("y ~ x - offset(x) + (1 | g)", data)
    with pytest.raises(FormulaError, match="one expression"):
        build_design("y ~ x + offset(x, n) + (1 | g)", data)


# -- grouping factors written as expressions -------------------------------------------------


def test_grouping_expressions_are_named_as_lme4_names_them(data) -> None:
    d = design("y ~ x + (1 | factor(k)) + (1 | interaction(f, flag))", data)
    assert {t.group_name for t in d.terms} == {"factor(k)", "interaction(f, flag)"}
    groups = {t.group_name: t for t in d.terms}
    assert list(groups["factor(k)"].levels) == ["1", "2", "3", "4", "5"]
    assert list(groups["interaction(f, flag)"].levels)[:2] == ["a.FALSE", "b.FALSE"]


def test_a_missing_value_of_a_grouping_expression_drops_its_row(data) -> None:
    d = design('y ~ x + (1 | factor(f, levels = c("a", "b")))', data)
    assert d.n_dropped_missing == int((data.f == "c").sum())


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_the_checks_of_y_and_x_are_the_same_with_and_without_numba(data, compiled, monkeypatch):
    # One compiled pass over y and X, or (without numba) a summary of each.
    if compiled:
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(mm.design.summary, "_fixed_kernel", lambda: None)
    d = build_design("y ~ x + f + (1 | g)", data)
    assert d.fixed_names == ["(Intercept)", "x", "fb", "fc"]
    scaled = data.assign(x=data.x * 1e5)
    with pytest.warns(PredictorScaleWarning, match="x"):
        build_design("y ~ x + f + (1 | g)", scaled)
    with pytest.warns(RankDeficiencyWarning, match="x2"), pytest.warns(PredictorScaleWarning):
        build_design("y ~ x + x2 + (1 | g)", scaled.assign(x2=scaled.x * 2))
    with pytest.raises(DataError, match="the response 'y' is infinite"):
        build_design("y ~ x + (1 | g)", data.assign(y=data.y.where(data.index != 7, np.inf)))
    with pytest.raises(DataError, match="the response 'y' is constant"):
        build_design("y ~ x + (1 | g)", data.assign(y=2.0))
    with pytest.raises(DataError, match="fixed-effects column 'x' has values too large"):
        build_design("y ~ x + (1 | g)", data.assign(x=data.x * 1e200))
