"""Tests for mixedmodels.formula: lme4 formula parsing, translation and safety."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix
from hypothesis import given, settings
from hypothesis import strategies as st

from mixedmodels.errors import FormulaError
from mixedmodels.formula import (
    ALLOWED_FUNCTIONS,
    FUNCTIONS,
    TRANSFORMS,
    ParsedFormula,
    check_python,
    parse_formula,
    random_term_to_lme4,
    translate_expression,
)


def terms(formula: str) -> list[tuple[str, tuple[str, ...]]]:
    """The random terms of ``formula`` as (lhs, group) pairs."""
    return [(spec.lhs, spec.group) for spec in parse_formula(formula).random]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 12
    return pd.DataFrame(
        {
            "y": rng.uniform(1, 5, n),
            "x": rng.uniform(1, 5, n),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "g": list("abc") * 4,
            "f": pd.Categorical(list("pqrs") * 3),
            "h": [True, False] * 6,
            "Sepal.Length": rng.normal(size=n),
            "my col": rng.normal(size=n),
        }
    )


# ---------------------------------------------------------------------------
# Splitting response, fixed part and random terms
# ---------------------------------------------------------------------------


def test_sleepstudy() -> None:
    parsed = parse_formula("Reaction ~ Days + (Days | Subject)")
    assert isinstance(parsed, ParsedFormula)
    assert parsed.source == "Reaction ~ Days + (Days | Subject)"
    assert (parsed.response, parsed.response_label, parsed.response_column) == ("Reaction",) * 3
    assert parsed.fixed == "1 + Days"
    assert [(spec.lhs, spec.group, spec.name) for spec in parsed.random] == [
        ("1 + Days", ("Subject",), "Subject")
    ]
    assert parsed.columns == ("Reaction", "Days", "Subject")


@pytest.mark.parametrize(
    ("formula", "fixed"),
    [
        ("y ~ (1|g)", "1"),
        ("y ~ 0 + (1|g)", "0"),
        ("y ~ -1 + x + (1|g)", "0 + x"),
        ("y ~ x - 1 + (1|g)", "0 + x"),
        ("y ~ x + 0", "0 + x"),
        ("y ~ 1", "1"),
        ("y ~ 0", "0"),
        ("y ~ -1", "0"),
        ("y ~ 0 + x + 1", "1 + x"),
        ("y ~ (1|g) + x + (0 + x|h) + z", "1 + x + z"),
        ("y ~ x*z - x:z", "1 + x * z - x:z"),
        ("y ~ (x + (1|g))", "1 + x"),
        ("y~x+(1|g)", "1 + x"),
        ("  y\n~\tx  +  ( 1 |\ng )  ", "1 + x"),
    ],
)
def test_fixed_part(formula: str, fixed: str) -> None:
    assert parse_formula(formula).fixed == fixed


def test_source_and_response_kept() -> None:
    parsed = parse_formula("log(y) ~ x")
    assert parsed.source == "log(y) ~ x"
    assert parsed.response == "log(y)"
    assert parsed.random == ()


@pytest.mark.parametrize(
    ("rhs", "lhs"),
    [
        ("(1|g)", "1"),
        ("(x|g)", "1 + x"),
        ("(1 + x|g)", "1 + x"),
        ("(x + 1|g)", "1 + x"),
        ("(0 + x|g)", "0 + x"),
        ("(-1 + x|g)", "0 + x"),
        ("(x - 1|g)", "0 + x"),
        ("(x + z|g)", "1 + x + z"),
        ("(1 + x + z|g)", "1 + x + z"),
        ("(0 + f|g)", "0 + f"),
        ("(factor(f)|g)", "1 + C(f)"),
        ("(x*z|g)", "1 + x * z"),
        ("(I(x^2)|g)", "1 + I(x ** 2)"),
    ],
)
def test_bar_lhs(rhs: str, lhs: str) -> None:
    assert terms(f"y ~ {rhs}") == [(lhs, ("g",))]


def test_terms_keep_formula_order_and_duplicates() -> None:
    assert terms("y ~ (1|a) + x + (x|b) + (1|a)") == [
        ("1", ("a",)),
        ("1 + x", ("b",)),
        ("1", ("a",)),
    ]


def test_redundant_parentheses_around_bar_term() -> None:
    assert terms("y ~ ((x | g))") == [("1 + x", ("g",))]


# ---------------------------------------------------------------------------
# || and / expansion
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rhs", "expected"),
    [
        ("(x || g)", ["1", "0 + x"]),
        ("(1 + x || g)", ["1", "0 + x"]),
        ("(x + z || g)", ["1", "0 + x", "0 + z"]),
        ("(0 + x + z || g)", ["0 + x", "0 + z"]),
        ("(0 + x || g)", ["0 + x"]),
        ("(1 || g)", ["1"]),
        ("(x*z || g)", ["1", "0 + x", "0 + z", "0 + x:z"]),
        ("(x*z - x:z || g)", ["1", "0 + x", "0 + z"]),
        ("(z:x + x || g)", ["1", "0 + x", "0 + z:x"]),
        ("(0 + f || g)", ["0 + f"]),
        ("(factor(f) + x || g)", ["1", "0 + C(f)", "0 + x"]),
        ("((a + b + c)^2 || g)", ["1", "0 + a", "0 + b", "0 + c", "0 + a:b", "0 + a:c", "0 + b:c"]),
    ],
)
def test_double_bar(rhs: str, expected: list[str]) -> None:
    assert terms(f"y ~ {rhs}") == [(lhs, ("g",)) for lhs in expected]


def test_double_bar_equals_single_bar_terms() -> None:
    assert (
        parse_formula("y ~ x + (x || g)").random
        == parse_formula("y ~ x + (1 | g) + (0 + x | g)").random
    )


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("g", [("g",)]),
        ("a:b", [("a", "b")]),
        ("batch/cask", [("batch",), ("cask", "batch")]),
        ("a/b/c", [("a",), ("b", "a"), ("c", "b", "a")]),
        ("a:b/c", [("a", "b"), ("c", "a", "b")]),
        ("a/b:c", [("a",), ("b", "c", "a")]),
    ],
)
def test_grouping(group: str, expected: list[tuple[str, ...]]) -> None:
    assert terms(f"y ~ (1 | {group})") == [("1", g) for g in expected]


def test_nesting_equals_explicit_interaction() -> None:
    assert parse_formula("y ~ (1|a/b)").random == parse_formula("y ~ (1|a) + (1|b:a)").random


def test_nesting_repeats_lhs() -> None:
    assert terms("y ~ (x | a/b)") == [("1 + x", ("a",)), ("1 + x", ("b", "a"))]


def test_double_bar_with_nesting() -> None:
    # reformulas: (x || id/id2) is (1 | id/id2) + (0 + x | id/id2)
    assert terms("y ~ (x || id/id2)") == [
        ("1", ("id",)),
        ("1", ("id2", "id")),
        ("0 + x", ("id",)),
        ("0 + x", ("id2", "id")),
    ]


def test_group_name_property() -> None:
    specs = parse_formula("y ~ (1 | batch/cask)").random
    assert [spec.name for spec in specs] == ["batch", "cask:batch"]


@pytest.mark.parametrize(
    ("group", "name"),
    [
        ("`my col`", "my col"),
        ('Q("my col")', "my col"),
        ("Q('a b')", "a b"),
        ("plot.id", "plot.id"),
    ],
)
def test_quoted_group_names(group: str, name: str) -> None:
    assert terms(f"y ~ (1 | {group})") == [("1", (name,))]


def test_quoted_names_in_interaction_group() -> None:
    assert terms("y ~ (1 | `site id`:Q('plot no'))") == [("1", ("site id", "plot no"))]


# ---------------------------------------------------------------------------
# Translation R -> formulaic
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x + I(x^2)", "x + I(x ** 2)"),
        ("I(x**2)", "I(x ** 2)"),
        # Crossings are expanded here, in R's order (formulaic's ** takes time
        # exponential in the power); crossing beyond the variable count is a no-op.
        ("(a + b)^2", "(a + b + a:b)"),
        ("(a + b)^50", "(a + b + a:b)"),
        ("factor(g) + as.factor(h)", "C(g) + C(h)"),
        ("as.numeric(h)", "as_numeric(h)"),
        ("log(x) + exp(x) + sqrt(x) + abs(x)", "log(x) + exp(x) + sqrt(x) + abs(x)"),
        ("log1p(x) + expm1(x) + log2(x) + log10(x)", "log1p(x) + expm1(x) + log2(x) + log10(x)"),
        ("scale(x) + center(x) + poly(x, 2)", "scale(x) + center(x) + poly(x, 2)"),
        ("poly(x, degree = 2, raw = TRUE)", "poly(x, degree=2, raw=True)"),
        ("poly(x, 2, raw = T)", "poly(x, 2, raw=True)"),
        ("log(x, base = 2)", "log(x, base=2)"),
        ("C(g, contr.sum)", "C(g, Sum())"),
        ('C(g, "contr.helmert")', "C(g, Helmert())"),
        ("C(g, treatment)", "C(g, Treatment())"),
        ('factor(g, levels = c("b", "a"))', "C(g, levels=['b', 'a'])"),
        ("Sepal.Length", "`Sepal.Length`"),
        ("`my col` + Q('other col')", "`my col` + `other col`"),
        ("Q('x')", "x"),
        ("log(Sepal.Length)", "log(`Sepal.Length`)"),
        ("a*b + a:b - a", "a * b + a:b - a"),
        ("a / b", "a / b"),
        ("x %in% g", "(x:g)"),
        ("a %in% (b + c)", "(a:b:c)"),
        ("I(a %% 2) + I(a %/% 2)", "I(a % 2) + I(a // 2)"),
        ("I(-x^2)", "I(-x ** 2)"),
        ("I((a + b)^2)", "I((a + b) ** 2)"),
        # Comparisons are R's three-valued ones; a logical in arithmetic counts 0/1.
        ("I((a < b) == TRUE)", "I(r_eq(r_lt(a, b), True))"),
        ("I(x > 2) + I(g == 'b')", "I(r_gt(x, 2)) + I(r_eq(g, 'b'))"),
        ("I((x > 2) + 1)", "I(as_numeric(r_gt(x, 2)) + 1)"),
        ("I(!x & y | z)", "I(r_or(r_and(r_not(x), y), z))"),
        ("I(2 * pi * x)", "I(6.283185307179586 * x)"),  # constants folded
        ("I(x^-1) + I(x/100)", "I(x ** (-1)) + I(x / 100)"),
        ("np.log(x) + numpy.exp(x)", "log(x) + exp(x)"),
        ("x + 2L*0 + 1", None),
    ],
)
def test_translate_expression(expr: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(FormulaError):
            translate_expression(expr)
    else:
        assert translate_expression(expr) == expected


def test_translate_keeps_intercept_as_written() -> None:
    assert translate_expression("-1 + x") == "-1 + x"


def test_response_expression_is_wrapped_in_I() -> None:
    assert parse_formula("y1 + y2 ~ x").response == "I(y1 + y2)"
    assert parse_formula("y^2 ~ x").response == "I(y ** 2)"
    assert parse_formula("`my y` ~ x").response == "`my y`"
    assert parse_formula("(y) ~ x").response == "y"


def test_r_precedence_is_kept() -> None:
    # %in% binds tighter than * in R; a:b^2 is a:(b^2) which is a:b.
    assert translate_expression("a * b %in% c") == "a * (b:c)"
    assert translate_expression("a:b^2") == "a:(b)"


# ---------------------------------------------------------------------------
# Evaluation through formulaic
# ---------------------------------------------------------------------------


def test_typical_fixed_part_evaluates(data: pd.DataFrame) -> None:
    parsed = parse_formula(
        "log(y) ~ 1 + x + I(x^2) + log(x) + factor(g) + a*b + a:b + poly(x, 2) + scale(x)"
    )
    X = model_matrix(parsed.fixed, data, context=TRANSFORMS)
    assert set(X.columns) == {
        "Intercept", "x", "I(x ** 2)", "log(x)", "C(g)[b]", "C(g)[c]",
        "a", "b", "a:b", "poly(x, 2)[1]", "poly(x, 2)[2]", "scale(x)",
    }  # fmt: skip
    np.testing.assert_allclose(X["I(x ** 2)"], data["x"] ** 2)
    np.testing.assert_allclose(X["log(x)"], np.log(data["x"]))
    np.testing.assert_allclose(
        X["scale(x)"], (data["x"] - data["x"].mean()) / data["x"].std(ddof=1)
    )
    y = model_matrix(parsed.response, data, context=TRANSFORMS)
    np.testing.assert_allclose(y["log(y)"], np.log(data["y"]))


_ONE_COLUMN = sorted(
    name
    for name, spec in FUNCTIONS.items()
    if spec.result in ("number", "same") and not spec.variadic and spec.required == 1
)


@pytest.mark.parametrize("name", _ONE_COLUMN)
def test_each_numeric_function_evaluates(data: pd.DataFrame, name: str) -> None:
    argument = "x / 10" if name.endswith(("asin", "acos", "atanh", "arcsin", "arccos")) else "x"
    text = translate_expression(f"{name}({argument})")
    X = model_matrix(f"0 + {text}", data, context=TRANSFORMS)
    assert X.shape == (len(data), 1)
    assert np.all(np.isfinite(X.to_numpy()))


def test_r_specific_transforms(data: pd.DataFrame) -> None:
    text = translate_expression("log(x, base = 2) + as.numeric(f) + as.numeric(h)")
    X = model_matrix(f"0 + {text}", data, context=TRANSFORMS)
    np.testing.assert_allclose(X["log(x, base=2)"], np.log2(data["x"]))
    # as.numeric of a factor gives R's 1-based level codes
    np.testing.assert_array_equal(X["as_numeric(f)"], data["f"].cat.codes + 1)
    np.testing.assert_array_equal(X["as_numeric(h)"], data["h"].astype(float))


def test_names_contrasts_and_levels_evaluate(data: pd.DataFrame) -> None:
    parsed = parse_formula(
        "y ~ Sepal.Length + `my col` + I(Q('my col') * 2) + C(g, contr.sum)"
        " + factor(g, levels = c('c', 'b', 'a'))"
    )
    X = model_matrix(parsed.fixed, data, context=TRANSFORMS)
    np.testing.assert_allclose(X["Sepal.Length"], data["Sepal.Length"])
    np.testing.assert_allclose(X["my col"], data["my col"])
    assert "C(g, Sum())[1]" in X.columns  # R's names: C(g, contr.sum)1
    assert "C(g, levels=['c', 'b', 'a'])[b]" in X.columns


def test_random_lhs_evaluate(data: pd.DataFrame) -> None:
    parsed = parse_formula("y ~ (0 + f | g) + (x * a || g) + (factor(g) | f)")
    columns = [
        list(model_matrix(spec.lhs, data, context=TRANSFORMS).columns) for spec in parsed.random
    ]
    assert columns == [
        ["f[p]", "f[q]", "f[r]", "f[s]"],
        ["Intercept"],
        ["x"],
        ["a"],
        ["x:a"],
        ["Intercept", "C(g)[b]", "C(g)[c]"],
    ]


def test_allowed_functions_cover_transforms() -> None:
    assert set(TRANSFORMS) <= ALLOWED_FUNCTIONS
    assert {"I", "C", "center", "scale", "poly", "ns", "r_gt"} <= ALLOWED_FUNCTIONS
    assert all(callable(func) for func in TRANSFORMS.values())


# ---------------------------------------------------------------------------
# Refused constructs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rhs", "culprit"),
    [
        ("x.__class__", "__class__"),
        ("__import__('os')", "__import__"),
        ("open('f')", "open"),
        ("eval('1')", "eval"),
        ("exec('1')", "exec"),
        ("getattr(x, 'y')", "getattr"),
        ("log(offset(x))", "offset"),
        ("log(np.power(x))", "np.power"),
        ("I(x)$y", "$"),
        ("x[0]", "["),
        ("I([v for v in x])", "["),
        ("{x + 1}", "{"),
        ("lambda x: x", "lambda"),
        ("I(x if y else z)", "if"),
        ("I(x) .real", ".real"),
        ("x @ y", "@"),
        ("!x", "!"),
        ("x & y", "&"),
        ("I(x && y)", "&&"),
        ("I(x || y)", "||"),
        ("I(x <- 2)", "<-"),
        ("I('a' * 10^9)", "'a'"),
        ("I(9^9^9)", "9^9^9"),
        ("I(x + 1e999)", "1e999"),
        ("I(x * exp(1000))", "exp(1000)"),
        ("I(log(0) + x)", "log(0)"),
        ("I(x %% 0 + 1 %/% 0)", "1 %/% 0"),
        ("I(factor(g) + 1)", "factor(g)"),
        ("I(poly(x, 2) * 2)", "poly(x, 2)"),
        ("log(poly(x, 2))", "poly(x, 2)"),
        ("I(x %o% y)", "%o%"),
        ("poly(x, 0)", "degree"),
        ("poly(x, 1e6)", "degree"),
        ("poly(x, k)", "degree"),
        ("ns(x, df = 2.5)", "df"),
        ("bs(x, degree = -1)", "degree"),
        ("cut(x, 1)", "breaks"),
        ("cut(x, 1e9)", "breaks"),
        ("relevel(f)", "relevel(f)"),
        ("relevel(f, ref = x)", "ref"),
        ("round(x, digits = y)", "digits"),
        ("scale(x, center = 'a')", "center"),
        ("log(x, base = 2, base = 3)", "twice"),
        ("interaction(a, b, sep = 1)", "sep"),
        ("ifelse(x > 1, 1)", "ifelse(x > 1, 1)"),
        ("mean()", "mean()"),
        ("I(mean(x, na.rm = yes))", "na.rm"),
        ("C(g, Treatment(reference = 'a', base = 2))", "base level"),
        ("I(x > 'a' > 1)", "chained"),
        ("`__dict__`", "__dict__"),
        ("Q('__class__')", "__class__"),
        ("poly(x, foo = 2)", "foo"),
        ("log(x, out = y)", "out"),
        ("factor(g, exclude = c('a'))", "exclude"),
        ("C(g, contr.foo)", "contr.foo"),
        ("factor(g, levels = x)", "levels"),
        ("c(1, 2)", "c()"),
        ("`f`(x)", "f"),
        ("I(g == 'a)b')", "'a)b'"),
        ("x > 2", ">"),
        ("x + 2", "2"),
        ("x + 'a'", "'a'"),
        ("a:-b", "-"),
        ("(a + b)^x", "x"),
        (".", "."),
        ("I(a:b)", ":"),
    ],
)
def test_refused(rhs: str, culprit: str) -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula(f"y ~ {rhs}")
    assert culprit in str(info.value)


def test_refused_function_lists_allowed_ones() -> None:
    with pytest.raises(FormulaError, match=r"allowed functions: .*log.*poly"):
        parse_formula("y ~ system(x)")


@pytest.mark.parametrize(
    ("code", "culprit"),
    [
        ("x.real", "attribute access"),
        ("x[0]", "subscripts"),
        ("(lambda: 1)()", "lambda"),
        ("[v for v in x]", "comprehensions"),
        ("open('f')", "open"),
        ("log(x, **k)", "keyword"),
        ("log(*x)", "unpacking"),
        ("__builtins__", "__builtins__"),
        ("`__x__` + 1", "__x__"),
        ("x | y", "x | y"),
        ("not x", "not x"),
        ("x in y", "x in y"),
        ("1j", "1j"),
        ("a and b", "and/or"),
    ],
)
def test_python_check_refuses(code: str, culprit: str) -> None:
    # Defense in depth: the final check on everything formulaic will evaluate.
    with pytest.raises(FormulaError) as info:
        check_python(code)
    assert culprit in str(info.value)


@pytest.mark.parametrize(
    "code", ["log(x) + 1", "I(x ** 2 > -1)", "C(g, levels=['a', 'b'])", "`a.b` * 2"]
)
def test_python_check_accepts(code: str) -> None:
    check_python(code)


@pytest.mark.parametrize(
    ("group", "culprit"),
    [
        ("a + b", "a + b"),
        ("2", "2"),
        ("g > 1", "g > 1"),
        ("a*b", "a*b"),
        ("(a)", "(a)"),
        ("'g'", "'g'"),
    ],
)
def test_invalid_grouping_factor(group: str, culprit: str) -> None:
    with pytest.raises(FormulaError, match="grouping factor") as info:
        parse_formula(f"y ~ (1 | {group})")
    assert culprit in str(info.value)


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        ("y ~ (0 | g)", "no columns"),
        ("y ~ (0 + x - x || g)", "no columns"),
        ("y ~ (0 - x | g)", "no columns"),
        ("y ~ x - (1 | g)", "cannot be removed"),
        ("y ~ x:(1 | g)", "stray `|`"),
        ("y ~ log((1 | g))", "stray `|`"),
        ("y ~ ((1 | g) | h)", "stray `|`"),
        ("1 ~ x", "response"),
        ("cbind(a, b) ~ x", "cbind"),
        ("y ~ .", "all other columns"),
    ],
)
def test_other_refusals(formula: str, fragment: str) -> None:
    with pytest.raises(FormulaError, match=re.escape(fragment)):
        parse_formula(formula)


def test_formula_must_be_a_string() -> None:
    with pytest.raises(FormulaError, match="string"):
        parse_formula(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Syntax errors and their positions
# ---------------------------------------------------------------------------


def caret_position(message: str) -> int:
    """Column of the caret in an error message, relative to the formula line."""
    lines = message.splitlines()
    return lines[-1].index("^") - 2


@pytest.mark.parametrize(
    ("formula", "position", "fragment"),
    [
        ("", 0, "empty formula"),
        ("   ", 0, "empty formula"),
        ("y x", 0, "missing `~`"),
        ("~ x", 0, "missing response"),
        ("y ~", 3, "nothing on the right of `~`"),
        ("y ~ x ~ z", 6, "more than one `~`"),
        ("y ~ (1|g", 4, "`(` is never closed"),
        ("y ~ log(x + (1|g)", 7, "`(` is never closed"),
        ("y ~ x)", 5, "`)` without `(`"),
        ("y ~ x + (1| )", 10, "nothing on the right of `|`"),
        ("y ~ x + ( |g)", 10, "nothing on the left of `|`"),
        ("y ~ x + (1 || )", 11, "nothing on the right of `||`"),
        ("y ~ x + ( || g)", 10, "nothing on the left of `||`"),
        ("y ~ x | g", 6, "stray `|`"),
        ("y ~ x || g", 6, "stray `||`"),
        ("y ~ x + (1 | g) | h", 16, "stray `|`"),
        ("y ~ x y", 6, "missing operator"),
        ("y ~ x +", 7, "where a term was expected"),
        ("y ~ x + * z", 8, "unexpected `*`"),
        ("y ~ ()", 4, "empty parentheses"),
        ("y ~ x + `a", 8, "unclosed quote"),
        ("y ~ I(x == 'a)", 11, "unclosed quote"),
        ("y ~ x # comment", 6, "unexpected character '#'"),
        ("(y ~ x)", 3, "inside parentheses"),
        ("y ~ log(x,)", 10, "where a term was expected"),
    ],
)
def test_syntax_error_position(formula: str, position: int, fragment: str) -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    message = str(info.value)
    assert fragment in message
    assert f"at character {position}" in message
    assert caret_position(message) == position


def test_error_shows_formula_line() -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula("y ~ x +\n (1| )")
    lines = str(info.value).splitlines()
    assert lines[1] == "  y ~ x +  (1| )"
    assert lines[2] == "  " + " " * 11 + "^"


def test_deep_nesting_is_a_formula_error() -> None:
    with pytest.raises(FormulaError, match="nested too deeply"):
        parse_formula("y ~ " + "(" * 500 + "x" + ")" * 500)
    with pytest.raises(FormulaError, match="nested too deeply"):
        parse_formula("y ~ " + "-" * 500 + "x")


def test_long_formula_parses() -> None:
    rhs = " + ".join(f"x{i}" for i in range(3000))
    assert parse_formula(f"y ~ {rhs} + (1|g)").fixed == "1 + " + rhs


# ---------------------------------------------------------------------------
# Back to lme4 text
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("(Days | Subject)", "(1 + Days | Subject)"),
        ("(1 | cask:batch)", "(1 | cask:batch)"),
        ("(0 + factor(f) | g)", "(0 + factor(f) | g)"),
        ("(0 + C(f) | g)", "(0 + C(f) | g)"),
        ("(1 + as.numeric(h) | g)", "(1 + as.numeric(h) | g)"),
        ("(I(x**2) | `my group`)", "(1 + I(x^2) | `my group`)"),
        ("(x - z | Q('plot.id'))", "(1 + x - z | plot.id)"),
        ("(x * z || g)", "(0 + x:z | g)"),
    ],
)
def test_random_term_to_lme4(term: str, text: str) -> None:
    spec = parse_formula(f"y ~ {term}").random[-1]
    assert random_term_to_lme4(spec) == text


def test_round_trip_through_lme4_text() -> None:
    for spec in parse_formula("y ~ (x | a/b) + (0 + f || g) + (1 | `my g`)").random:
        again = parse_formula(f"y ~ {random_term_to_lme4(spec)}").random
        assert again == (spec,)


def test_results_are_frozen() -> None:
    parsed = parse_formula("y ~ x + (1 | g)")
    with pytest.raises(AttributeError):
        parsed.random[0].group = ("h",)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        parsed.fixed_part.terms[0].text = "z"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Fuzzing: nothing but FormulaError may escape
# ---------------------------------------------------------------------------

_ALPHABET = "yxgab01 ~+-*/:^|()`'\",=.%_![]{}$@<>2eLIQCf\n"
_PIECES = [
    "y", "x", "g", "a", "b", "1", "0", "2", " ~ ", "~", "+", "-", "*", "/", ":", "^", "|",
    "||", "(", ")", ",", "=", "%in%", "%%", "log(", "I(", "factor(", "Q('a')", "`a b`",
    "poly(", "degree=", "c(", "C(", "contr.sum", "np.", "__class__", "'s'", "<", "==",
]  # fmt: skip


def _check_parse(text: str) -> None:
    try:
        result = parse_formula(text)
    except FormulaError:
        return
    assert isinstance(result, ParsedFormula)
    for piece in (result.response, result.fixed, *(spec.lhs for spec in result.random)):
        assert not re.search(r"(?<!\w)__\w+__(?!\w)", piece)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_fuzz_random_text(text: str) -> None:
    _check_parse(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=20))
def test_fuzz_formula_pieces(pieces: list[str]) -> None:
    _check_parse("y ~ " + "".join(pieces))
    _check_parse("".join(pieces))


def test_three_level_nesting_names_as_lme4():
    parsed = parse_formula("y ~ 1 + (1 | a/b/c)")
    assert [t.name for t in parsed.random] == ["a", "b:a", "c:(b:a)"]
    assert [t.group for t in parsed.random] == [("a",), ("b", "a"), ("c", "b", "a")]
