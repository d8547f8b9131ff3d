"""Direct tests of the formula stage's pieces: tokens, tree, translation, names, safety.

tests/formula/test_formula.py checks what parsing a whole formula gives; these check
each module of :mod:`mixedmodels.formula` on its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

from mixedmodels.errors import FormulaError
from mixedmodels.formula import (
    ALLOWED_FUNCTIONS,
    FUNCTIONS,
    TRANSFORMS,
    check_translated,
    is_bare_name,
    parse_formula,
    r_name,
    rename_calls,
    split_terms,
)
from mixedmodels.formula.parser import (
    BinOp,
    Call,
    Name,
    Node,
    Num,
    Paren,
    Str,
    Unary,
    is_bar,
    parse_side,
    signed_terms,
    unwrap,
)
from mixedmodels.formula.tokens import tokenize
from mixedmodels.formula.translate import Translator

# ---------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------


def test_tokens_kinds_texts_and_positions() -> None:
    tokens = tokenize("log(Sepal.Length) ~ x**2L + `my col`:'a' %in% .5")
    assert [(t.kind, t.text) for t in tokens] == [
        ("name", "log"),
        ("op", "("),
        ("name", "Sepal.Length"),
        ("op", ")"),
        ("op", "~"),
        ("name", "x"),
        ("op", "^"),  # R reads ** as ^
        ("number", "2L"),
        ("op", "+"),
        ("quoted", "my col"),
        ("op", ":"),
        ("string", "a"),
        ("op", "%in%"),
        ("number", ".5"),
    ]
    assert (tokens[2].start, tokens[2].end) == (4, 16)
    assert tokens[9].start == 28  # the backtick


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("x # c", "unexpected character '#'"), ("`a", "unclosed quote `"), ("'a\\n'", "escape")],
)
def test_tokens_refused(text: str, fragment: str) -> None:
    with pytest.raises(FormulaError, match=fragment):
        tokenize(text)


@pytest.mark.parametrize(
    ("name", "bare"),
    [
        ("Days", True),
        ("Sepal.Length", True),
        (".hidden", True),
        ("a b", False),
        ("_x", False),  # R names cannot start with _
        ("2x", False),
        (".2x", False),
        ("a-b", False),
        ("", False),
    ],
)
def test_bare_names_and_quoting(name: str, bare: bool) -> None:
    assert is_bare_name(name) is bare
    assert r_name(name) == (name if bare else f"`{name}`")


def test_rename_calls_renames_calls_only() -> None:
    names = {"np.log": "log", "numpy.exp": "exp"}
    assert rename_calls("y ~ np.log(x) + numpy.exp (z)", names) == "y ~ log(x) + exp (z)"
    # A column that happens to be called np.log is not a call.
    assert rename_calls("y ~ np.log + np.logx(x)", names) == "y ~ np.log + np.logx(x)"
    # Text the tokenizer refuses is left for the parser to report.
    assert rename_calls("y ~ np.log(x) # c", names) == "y ~ np.log(x) # c"


# ---------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------


def tree(text: str) -> Node:
    return parse_side(text, tokenize(text), len(text))


def shape(node: Node) -> object:
    """A node as nested tuples, without positions."""
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Num):
        return float(node.text.rstrip("L"))
    if isinstance(node, Str):
        return repr(node.value)
    if isinstance(node, Paren):
        return ("()", shape(node.inner))
    if isinstance(node, Unary):
        return (node.op, shape(node.operand))
    if isinstance(node, Call):
        return (node.func, *map(shape, node.args), *((k, shape(v)) for k, v in node.kwargs))
    assert isinstance(node, BinOp)
    return (node.op, shape(node.left), shape(node.right))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * c", ("+", "a", ("*", "b", "c"))),
        ("a - b - c", ("-", ("-", "a", "b"), "c")),
        ("a * b %in% c", ("*", "a", ("%in%", "b", "c"))),  # %in% binds tighter than *
        ("a:b^2", (":", "a", ("^", "b", 2.0))),
        ("-x^2", ("-", ("^", "x", 2.0))),  # ^ binds tighter than unary minus
        ("a^b^c", ("^", "a", ("^", "b", "c"))),  # right-associative
        ("2^-1", ("^", 2.0, ("-", 1.0))),
        ("x | a/b", ("|", "x", ("/", "a", "b"))),  # the bar is loosest
        ("(a < b) == c", ("==", ("()", ("<", "a", "b")), "c")),
        ("!a > 1 & b | c", ("|", ("&", ("!", (">", "a", 1.0)), "b"), "c")),  # R's ! is loose
        ("a * !b", ("*", "a", ("!", "b"))),
        ("f(x, 2, k = 'v')", ("f", "x", 2.0, ("k", "'v'"))),
        ("((x))", ("()", ("()", "x"))),
    ],
)
def test_parser_precedence(text: str, expected: object) -> None:
    assert shape(tree(text)) == expected


def test_node_positions() -> None:
    node = tree("log(x) + b")
    assert isinstance(node, BinOp)
    assert (node.start, node.end, node.op_pos) == (0, 10, 7)
    assert (node.left.start, node.left.end) == (0, 6)


def test_signed_terms_open_sums_but_keep_bars() -> None:
    terms = signed_terms(tree("a - (b + c) + (d + (1 | g)) - -e"))
    assert [(sign, shape(node)) for sign, node in terms] == [
        (1, "a"),
        (-1, ("()", ("+", "b", "c"))),  # a removed sum keeps its parentheses
        (1, "d"),
        (1, ("()", ("|", 1.0, "g"))),
        (1, "e"),
    ]
    bar = terms[3][1]
    assert is_bar(unwrap(bar)) and not is_bar(bar)


# ---------------------------------------------------------------------------
# Translation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "formulaic", "r_text"),
    [
        ("I(x^2)", "I(x ** 2)", "I(x^2)"),
        ("factor(g)", "C(g)", "factor(g)"),
        ("as.factor(g)", "C(g)", "as.factor(g)"),
        ("as.numeric(f)", "as_numeric(f)", "as.numeric(f)"),
        ("(a + b)^2", "(a + b + a:b)", "(a + b)^2"),
        # R's text is R's deparse: %% and / without spaces, keywords with them.
        ("I(a %% 2) + I(a %/% 2)", "I(a % 2) + I(a // 2)", "I(a%%2) + I(a%/%2)"),
        (
            "log(Sepal.Length, base = 2)",
            "log(`Sepal.Length`, base=2)",
            "log(Sepal.Length, base = 2)",
        ),
        (
            "I(days / 100) + I(1e5 * x)",
            "I(days / 100) + I(100000 * x)",
            "I(days/100) + I(1e+05 * x)",
        ),
        ("relevel(f, ref = 'b')", "relevel(f, ref='b')", 'relevel(f, ref = "b")'),
    ],
)
def test_translator_spellings(text: str, formulaic: str, r_text: str | None) -> None:
    node = tree(text)
    assert Translator(text).formula(node) == formulaic
    assert Translator(text, r_spelling=True).formula(node) == (r_text or formulaic)


def test_translator_records_columns_factors_and_factor_columns() -> None:
    text = "x * factor(g) + log(`a b`, base = b) + Q('q col') + C(h, sum) + I(x > 2)"
    translator = Translator(text)
    translator.formula(tree(text))
    assert list(translator.columns) == ["x", "g", "a b", "b", "q col", "h"]
    assert list(translator.factor_columns) == ["g", "h"]
    assert list(translator.factors) == [
        "x",
        "C(g)",
        "log(`a b`, base=b)",
        "q col",
        "C(h, Sum())",
        "I(r_gt(x, 2))",
    ]


# ---------------------------------------------------------------------------
# What parsing gives: parts, columns, names
# ---------------------------------------------------------------------------


def test_parts_terms_and_plain_columns() -> None:
    parsed = parse_formula("y ~ x + `a b` + Q('c') + x + (0 + x + z | g) + (x - z | g)")
    fixed = parsed.fixed_part
    assert fixed.intercept and fixed.text == "1 + x + `a b` + c + x"
    assert [term.column for term in fixed.terms] == ["x", "a b", "c", "x"]
    assert fixed.plain_columns == ("x", "a b", "c")  # each once, as formulaic keeps them
    slopes, removed = (spec.part for spec in parsed.random)
    assert not slopes.intercept and slopes.plain_columns == ("x", "z")
    assert removed.plain_columns is None  # a removed term is not plain
    assert parse_formula("y ~ factor(g) + x").fixed_part.plain_columns is None
    assert parse_formula("y ~ x:z").fixed_part.plain_columns is None


def test_columns_in_order_and_factor_columns() -> None:
    parsed = parse_formula("log(y) ~ x + factor(f) + (z | g/h) + (1 | `k l`)")
    assert parsed.columns == ("y", "x", "f", "z", "g", "h", "k l")
    assert parsed.response_columns == ("y",)
    assert parsed.response_column is None and parsed.response_label == "log(y)"
    assert parsed.factor_columns == ("f",)
    assert parse_formula("y1 + y2^2 ~ x").response_label == "y1 + y2^2"


@pytest.mark.parametrize(
    ("formula", "columns", "names"),
    [
        (
            "y ~ factor(g) * x + I(x^2) + poly(x, 2)",
            ["Intercept", "C(g)[b]", "x", "C(g)[b]:x", "I(x ** 2)", "poly(x, 2)[1]"],
            ["(Intercept)", "factor(g)b", "x", "factor(g)b:x", "I(x^2)", "poly(x, 2)1"],
        ),
        (
            "y ~ as.factor(h) + as.numeric(f) + C(g, sum) + Sepal.Length",
            ["C(h)[v]", "as_numeric(f)", "C(g, Sum())[1]", "Sepal.Length"],
            ["as.factor(h)v", "as.numeric(f)", "C(g, sum)1", "Sepal.Length"],
        ),
        (
            # Levels may hold brackets and colons: a bracket closes a level only
            # where another factor (or the end) follows.
            "y ~ g:h",
            ["g[a]:b]:h[u:v]", "g[x]", "other[1]"],
            ["ga]:b:hu:v", "gx", "other[1]"],
        ),
    ],
)
def test_column_names_from_factor_labels(formula: str, columns: list, names: list) -> None:
    assert parse_formula(formula).column_names(columns) == names


def test_column_names_kept_per_formula_are_the_same_fresh_lists() -> None:
    parsed = parse_formula("y ~ x + h + (1 | g)")
    first = parsed.column_names(["Intercept", "x", "h[T.v]"])
    first.append("changed by the caller")
    assert parsed.column_names(("Intercept", "x", "h[T.v]")) == ["(Intercept)", "x", "hv"]
    # Other columns (a level changes with the data) are named anew.
    assert parsed.column_names(["Intercept", "x", "h[T.w]"]) == ["(Intercept)", "x", "hw"]
    assert parse_formula("y ~ x + (1 | g)").column_names(["h[T.v]"]) == ["h[T.v]"]


def test_term_labels_in_order_of_first_appearance_in_the_fixed_part() -> None:
    parsed = parse_formula("y ~ (Days | grp) + grp + Days + I(Days^2):grp + factor(f):x")
    assert parsed.term_label(["I(Days ** 2)", "grp"]) == "grp:I(Days^2)"
    assert parsed.term_label(["x", "C(f)"]) == "factor(f):x"
    assert parsed.term_label([]) == ""
    # The random terms do not count: R labels the fixed-effects formula.
    assert parse_formula("y ~ (h | g) + x * h").term_label(["h", "x"]) == "x:h"


def test_column_names_match_formulaic_columns() -> None:
    rng = np.random.default_rng(3)
    data = pd.DataFrame(
        {
            "y": rng.normal(size=12),
            "x": rng.uniform(1, 2, 12),
            "g": list("abc") * 4,
            "h": list("uv") * 6,
        }
    )
    parsed = parse_formula("y ~ x * h + factor(g) + I(x^2):h + log(x, base = 2)")
    columns = model_matrix(parsed.fixed, data, context=TRANSFORMS).columns
    assert parsed.column_names(columns) == [
        "(Intercept)",
        "x",
        "hv",
        "factor(g)b",
        "factor(g)c",
        "log(x, base = 2)",
        "x:hv",
        "I(x^2):hu",
        "I(x^2):hv",
    ]


def test_split_terms_keeps_the_users_text() -> None:
    written = split_terms("log( y ) ~ x -1 + (x||g) + (1 | a / b) + I(x ^ 2)")
    assert written.response == "log( y )"
    assert written.fixed == ("x", "-1", "I(x ^ 2)")
    assert [(b.lhs, b.op, b.group) for b in written.bars] == [("x", "||", "g"), ("1", "|", "a / b")]
    with pytest.raises(FormulaError, match="at character"):
        split_terms("y ~ x +")


# ---------------------------------------------------------------------------
# Function table and safety check
# ---------------------------------------------------------------------------


def test_function_table() -> None:
    # Every function of the table is callable; the rest of what translated
    # formulas may call are R's operators and contrasts.
    called = {spec.name for spec in FUNCTIONS.values() if spec.name != "Q"}
    assert called <= ALLOWED_FUNCTIONS
    assert ALLOWED_FUNCTIONS - called == {
        "r_eq", "r_ne", "r_lt", "r_le", "r_gt", "r_ge", "r_and", "r_or", "r_not", "is_in",
        "Treatment", "SAS", "Sum", "Helmert", "Poly", "Diff", "logical",
    }  # fmt: skip
    assert FUNCTIONS["factor"].name == FUNCTIONS["as.factor"].name == "C"
    assert FUNCTIONS["as.numeric"].name == "as_numeric"
    assert {"scale", "center", "log", "as_numeric"} <= set(TRANSFORMS)
    # scale() skips missing values, as R's model.frame leaves them in place.
    data = pd.DataFrame({"x": [1.0, 2.0, np.nan, 3.0]})
    scaled = model_matrix("0 + scale(x)", data, context=TRANSFORMS, na_action="ignore")
    np.testing.assert_allclose(scaled.to_numpy()[[0, 1, 3], 0], [-1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "text",
    [
        "1 + x + `a.b` + C(g, levels=['b', 'a']) + I(x ** 2 > -1)",
        "log(`a b`, base=2) + x:h - poly(x, degree=2, raw=True)",
        "I(g == 'text with spaces') + 0",
    ],
)
def test_check_translated_accepts(text: str) -> None:
    check_translated(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x + open('f')", "open"),
        ("x + `__x__`", "__x__"),
        ("x + __class__", "__class__"),
        ("{x.real}", "attribute access"),
        ("I(g == ')') + os.system('x')", "valid expression"),  # a quote does not protect )
        ("log(x", "unbalanced"),
        ("x + `y", "unclosed"),
        ("x.y", "attribute access"),
    ],
)
def test_check_translated_refuses(text: str, fragment: str) -> None:
    with pytest.raises(FormulaError, match=fragment):
        check_translated(text)
