"""A formula from an untrusted source cannot hang the parser or exhaust memory (issue 15, class 1).

Each kind of attack is bounded before any of its work is done: constants and
powers are folded in floating point (overflow refused at once), crossings are
expanded here with at most MAX_TERMS terms, strings never enter arithmetic,
arguments that size a result (degree, df, breaks) are bounded, and the formula
text itself is bounded.  Every test here would hang or allocate gigabytes
without its bound; none measures time.
"""

from __future__ import annotations

import formulaic
import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.errors import DataError, FormulaError
from mixedmodels.formula import parse_formula
from mixedmodels.formula.limits import MAX_BASIS_COLUMNS, MAX_FORMULA_LENGTH, MAX_TERMS


def refused(formula: str, *fragments: str) -> str:
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- constants and powers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "culprit"),
    [
        ("I(9^9^9)", "9^9^9"),  # the issue's example: a Python integer power never ends
        ("I(2^2^2^2^2 * x)", "2^2^2^2^2"),  # 2^65536
        ("I(x + 10^400)", "10^400"),
        ("I(x * 1e999)", "1e999"),  # a literal beyond floating point: "too large"
        ("I(x + 1e308 * 10)", "1e308 * 10"),
        ("I(exp(exp(exp(10))) + x)", "exp(exp(10))"),
        ("I(x - (-8)^(1/3))", "(-8)^(1/3)"),  # R's NaN, not a complex number
        ("I(x %% 0 + 1 %/% 0)", "1 %/% 0"),
        ("log(0 * x + 1e-400 * 0)", None),
    ],
)
def test_constant_arithmetic_is_folded_and_bounded(term: str, culprit: str | None) -> None:
    if culprit is None:
        parse_formula(f"y ~ {term} + (1 | g)")  # 1e-400 underflows to 0: harmless
    else:
        message = refused(f"y ~ {term} + (1 | g)", culprit)
        assert "finite" in message or "too large" in message


def test_a_huge_power_of_a_column_is_refused_when_evaluated_not_computed_forever() -> None:
    data = pd.DataFrame({"y": np.arange(20.0) % 7, "x": np.linspace(2, 3, 20), "g": [0, 1] * 10})
    with pytest.raises(DataError, match=r"I\(x\^\(10\^10\)\).*overflows"):
        mm.lmer("y ~ I(x^(10^10)) + (1 | g)", data)


# -- term expansion --------------------------------------------------------------------


def test_the_issue_crossing_expands_at_once() -> None:
    logs = " + ".join(f"log(x + {k})" for k in range(1, 8))
    parsed = parse_formula(f"y ~ ({logs})^7 + (1 | g)")
    # formulaic reads the expansion as written: 127 terms and the intercept.
    assert len(formulaic.Formula(parsed.fixed)) == 2**7


@pytest.mark.parametrize(
    "rhs",
    [
        "(a+b+c+d+e+f+g+h+i+j+k+l+m+n)^14",  # 16 383 terms
        "a*b*c*d*e*f*g*h*i*j*k*l*m*n",
        "(a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p+q+r+s+t)^5",  # 21 699 terms
        "(a+b+c+d+e+f+g)*(h+i+j+k+l+m+n)*(o+p+q+r+s+t+u)*(v+w+z+aa+bb+cc+dd)*(ee+ff+gg+hh)",
    ],
)
def test_expansions_beyond_the_bound_are_refused(rhs: str) -> None:
    refused(f"y ~ {rhs} + (1 | g)", "expands to more than", str(MAX_TERMS))


def test_a_crossing_power_beyond_the_variables_is_a_no_op() -> None:
    assert parse_formula("y ~ (a + b)^99999999999999999999 + (1|g)").fixed == ("1 + (a + b + a:b)")


def test_uncorrelated_random_terms_are_bounded_too() -> None:
    refused("y ~ (a*b*c*d*e*f*g*h*i*j*k*l*m*n || g)", "expands to more than")


# -- strings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    [
        "I('a' * 10^9)",  # the issue's example: 2 GB of 'a'
        "I(x + 'a' * 3)",
        "I('a' + 'b')",
        "I(-'a')",
        "I('a'^2)",
        "log('a')",
        "I(g == 'a' * 1000)",
    ],
)
def test_strings_never_enter_arithmetic(term: str) -> None:
    message = refused(f"y ~ {term} + (1 | g)")
    assert "string" in message or "expression of columns" in message


def test_a_string_may_be_compared() -> None:
    assert "r_eq(g, 'a')" in parse_formula("y ~ I(g == 'a') + (1 | h)").fixed


# -- arguments that size the result -------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "argument"),
    [
        ("poly(x, 1e6)", "degree"),
        ("poly(x, degree = 100000)", "degree"),
        ("ns(x, df = 1e9)", "df"),
        ("bs(x, degree = 1e5)", "degree"),
        ("bs(x, df = 2^40)", "df"),
        ("cut(x, 1e9)", "breaks"),
        ("cut(x, breaks = 10^6)", "breaks"),
    ],
)
def test_sizes_are_bounded(term: str, argument: str) -> None:
    refused(f"y ~ {term} + (1 | g)", f"`{argument}`", str(MAX_BASIS_COLUMNS))


def test_too_many_cut_points_are_refused() -> None:
    points = ", ".join(str(k) for k in range(MAX_BASIS_COLUMNS + 2))
    refused(f"y ~ cut(x, c({points})) + (1 | g)", "breaks")


@pytest.mark.filterwarnings("ignore::mixedmodels.errors.RankDeficiencyWarning")  # all zeros
@pytest.mark.parametrize("term", ["round(x, 1e300)", "signif(x, 1e9)", "round(x, -1e300)"])
def test_rounding_to_absurd_digits_is_cheap_and_harmless(term: str) -> None:
    data = pd.DataFrame(
        {"y": np.arange(30.0) % 7, "x": np.linspace(1, 3, 30), "g": np.arange(30) % 3}
    )
    m = mm.LinearMixedModel(f"y ~ {term} + (1 | g)", data)
    assert np.isfinite(m.design.x).all()


# -- the formula text ----------------------------------------------------------------------


def test_formula_text_is_bounded_before_it_is_read() -> None:
    long = "y ~ " + " + ".join(["x"] * (MAX_FORMULA_LENGTH // 4)) + " + (1 | g)"
    refused(long, "characters long")


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ " + "(" * 500 + "x" + ")" * 500,
        "y ~ I(" + "-" * 2000 + "x)",
        "y ~ I(" + "log(" * 300 + "x" + ")" * 300 + ")",
        "y ~ I(x" + "^x" * 3000 + ")",
    ],
)
def test_deep_nesting_is_refused(formula: str) -> None:
    refused(formula, "nested too deeply")


# -- a factor of a level per row as a fixed effect -------------------------------------------


@pytest.mark.parametrize(
    ("formula", "culprit"),
    [
        ("y ~ id + (1 | g)", "column 'id'"),
        ("y ~ factor(num) + (1 | g)", "a factor"),
        ("y ~ relevel(id, ref = 'i1') + (1 | g)", "column 'id'"),
        ("y ~ interaction(num, g) + (1 | g)", "a factor"),
    ],
)
def test_a_factor_too_wide_to_code_is_refused_before_its_columns_are_built(formula, culprit):
    n = 40_000  # 40 000 levels × 40 000 rows × 8 bytes: 12 GiB
    data = pd.DataFrame(
        {
            "y": np.arange(n, dtype=float) % 11,
            "id": [f"i{k}" for k in range(n)],
            "num": np.arange(n),
            "g": np.arange(n) % 40,
        }
    )
    with pytest.raises((DataError, FormulaError)) as info:
        mm.lmer(formula, data)
    assert culprit in str(info.value) and "random-effects term" in str(info.value)
