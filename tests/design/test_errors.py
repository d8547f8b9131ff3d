"""Every bad input gets a clear error naming what is at fault (issue 6).

Each case is a fresh mistake a user can make; the test checks the exception
class (our own, never a numpy or formulaic traceback) and that the message
names the column, level or term and, where there is one, the fix.  The checks
that lme4 applies by default (``check.nlev.gtr.1``, ``check.nobs.vs.nlev``,
``check.nobs.vs.nRE``) are errors here too.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.errors import DataError, FormulaError, MixedModelsError

FORMULA = "Reaction ~ Days + (1 | Subject)"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


def raises(cls: type[Exception], *fragments: str):
    """``pytest.raises`` that also requires every fragment in the message."""
    pattern = "".join(f"(?=[\\s\\S]*{re.escape(f)})" for f in fragments)
    return pytest.raises(cls, match=pattern)


# -- the formula -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "fragments"),
    [
        ("Reaction ~ Days + (1 | Subject", ["never closed", "at character 18"]),
        ("Reaction ~ Days + (1 | )", ["grouping factor", "at character"]),
        ("Reaction ~ Days | Subject", ["stray `|`", "at character 16"]),
        ("Reaction ~ foo(Days) + (1 | Subject)", ["`foo`", "allowed functions"]),
        ("Reaction ~ __import__('os') + (1 | Subject)", ["__import__"]),
        ("Reaction ~ Days.real + (1 | Subject)", ["Days.real", "not in the data"]),
        ("Reaction ~ open('x') + (1 | Subject)", ["`open`", "not allowed"]),
        ("Reaction ~ Days", ["no random-effects terms", "(1 | group)"]),
        ("~ Days + (1 | Subject)", ["missing response"]),
        ("Reaction Days + (1 | Subject)", ["`~`"]),
    ],
)
def test_formula_mistakes(sleep: pd.DataFrame, formula: str, fragments: list[str]) -> None:
    # Dotted names are R column names, so Days.real is looked up as a column;
    # the error for it comes from the data, still our own class.
    with raises(MixedModelsError, *fragments):
        mm.lmer(formula, sleep)


def test_formula_must_be_text(sleep: pd.DataFrame) -> None:
    with raises(FormulaError, "must be a string", "int"):
        build_design(5, sleep)


def test_unknown_function_runs_nothing(sleep: pd.DataFrame, tmp_path) -> None:
    target = tmp_path / "touched"
    formula = f"Reaction ~ open('{target}', 'w') + (1 | Subject)"
    with pytest.raises(FormulaError):
        mm.lmer(formula, sleep)
    assert not target.exists()


# -- columns and data --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "column", "suggestion"),
    [
        ("Reaction ~ Dayz + (1 | Subject)", "Dayz", "Days"),
        ("Reaction ~ Days + (1 | Subjects)", "Subjects", "Subject"),
        ("Reactions ~ Days + (1 | Subject)", "Reactions", "Reaction"),
        ("Reaction ~ Days + (Dayz | Subject)", "Dayz", "Days"),
    ],
)
def test_missing_column_is_named_with_a_suggestion(
    sleep: pd.DataFrame, formula: str, column: str, suggestion: str
) -> None:
    with raises(DataError, f"column {column!r}", "not in the data", f"did you mean {suggestion!r}"):
        mm.lmer(formula, sleep)


@pytest.mark.parametrize("data", [[1, 2, 3], "sleepstudy", np.zeros((3, 3))])
def test_data_of_the_wrong_type(data: object) -> None:
    with raises(DataError, "data must be a pandas or polars DataFrame", type(data).__name__):
        mm.lmer(FORMULA, data)


def test_no_data() -> None:
    with raises(DataError, "data is required"):
        mm.lmer(FORMULA, None)


def test_ragged_dict_of_columns(sleep: pd.DataFrame) -> None:
    data = {"Reaction": [1.0, 2.0, 3.0], "Days": [1, 2], "Subject": ["a", "b", "c"]}
    with raises(DataError, "dict of columns", "'Days': 2"):
        mm.lmer(FORMULA, data)


def test_empty_data(sleep: pd.DataFrame) -> None:
    with raises(DataError, "no rows"):
        mm.lmer(FORMULA, sleep.iloc[:0])


def test_duplicated_column(sleep: pd.DataFrame) -> None:
    data = pd.concat([sleep, sleep[["Days"]]], axis=1)
    with raises(DataError, "'Days'", "more than once"):
        mm.lmer(FORMULA, data)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(180) % 10, unit="D"), "dates"),
        (pd.to_timedelta(np.arange(180) % 10, unit="D"), "dates"),
        (np.arange(180) + 1j, "complex"),
    ],
)
def test_unusable_column_types(sleep: pd.DataFrame, values: object, fragment: str) -> None:
    data = sleep.assign(t=values)
    with raises(DataError, "column 't'", fragment):
        mm.lmer("Reaction ~ t + (1 | Subject)", data)


# -- the response ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        lambda d: "r" + d.Days.astype(str),
        lambda d: pd.Categorical(d.Days > 4),
        lambda d: d.Reaction.round().astype(str),
    ],
)
def test_non_numeric_response(sleep: pd.DataFrame, values) -> None:
    data = sleep.assign(r=values(sleep))
    with raises(DataError, "response 'r' must be numeric", "to_numeric"):
        mm.lmer("r ~ Days + (1 | Subject)", data)


def test_constant_response(sleep: pd.DataFrame) -> None:
    with raises(DataError, "response 'c' is constant", "every value is 5"):
        mm.lmer("c ~ Days + (1 | Subject)", sleep.assign(c=5.0))


def test_all_missing_response(sleep: pd.DataFrame) -> None:
    with raises(DataError, "no rows left", "'Reaction' is entirely missing"):
        mm.lmer(FORMULA, sleep.assign(Reaction=np.nan))


def test_missing_values_covering_every_row(sleep: pd.DataFrame) -> None:
    data = sleep.assign(Reaction=np.where(sleep.Days < 5, np.nan, sleep.Reaction))
    data["Days"] = np.where(sleep.Days >= 5, np.nan, sleep.Days)
    with raises(DataError, "no rows left", "'Reaction'", "'Days'", "cover every row"):
        mm.lmer(FORMULA, data)


# -- infinite values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "column", "value", "culprit"),
    [
        (FORMULA, "Reaction", np.inf, "response 'Reaction'"),
        (FORMULA, "Days", -np.inf, "column 'Days'"),
        ("Reaction ~ x + (x | Subject)", "x", np.inf, "column 'x'"),
        ("log(Reaction) ~ Days + (1 | Subject)", "Reaction", 0.0, "response 'log(Reaction)'"),
    ],
)
def test_infinite_values_are_named(
    sleep: pd.DataFrame, formula: str, column: str, value: float, culprit: str
) -> None:
    data = sleep.assign(x=sleep.Days.astype(float) ** 0.5)
    data[column] = data[column].astype(float)
    data.loc[7, column] = value
    with raises(DataError, culprit, "infinite or NaN", "1 row", "row 7"):
        mm.lmer(formula, data)


def test_transform_outside_its_domain(sleep: pd.DataFrame) -> None:
    # log(0) at Days == 0: lme4 refuses it too ("NA/NaN/Inf").
    with raises(DataError, "'log(Days)'", "18 rows", "inside their domain"):
        mm.lmer("Reaction ~ log(Days) + (1 | Subject)", sleep)


def test_infinite_value_in_random_term(sleep: pd.DataFrame) -> None:
    data = sleep.assign(x=sleep.Days.astype(float))
    data.loc[3, "x"] = np.inf
    with raises(DataError, "(0 + x | Subject)", "'x'", "row 3"):
        mm.lmer("Reaction ~ Days + (0 + x | Subject)", data)


# -- grouping factors and random effects (lme4's checks) ---------------------------------------


def test_grouping_factor_with_one_level(sleep: pd.DataFrame) -> None:
    with raises(DataError, "grouping factor 'g'", "only 1 level ('a')", "at least 2 levels"):
        mm.lmer("Reaction ~ Days + (1 | g)", sleep.assign(g="a"))


def test_grouping_factor_left_with_one_level_after_missing_values(sleep: pd.DataFrame) -> None:
    data = sleep.assign(g=np.where(sleep.index < 10, "a", None))
    with raises(DataError, "grouping factor 'g'", "only 1 level"):
        mm.lmer("Reaction ~ Days + (1 | g)", data)


def test_as_many_levels_as_observations(sleep: pd.DataFrame) -> None:
    data = sleep.assign(id=np.arange(len(sleep)))
    with raises(DataError, "grouping factor 'id'", "as many levels as there are observations"):
        mm.lmer("Reaction ~ Days + (1 | id)", data)


def test_more_random_effects_than_observations(sleep: pd.DataFrame) -> None:
    data = sleep[sleep.Days < 2]  # 36 rows, 18 subjects × 2 effects
    with raises(DataError, "(1 + Days | Subject)", "36 random effects", "36 observations"):
        mm.lmer("Reaction ~ Days + (Days | Subject)", data)


def test_fewer_random_effects_than_observations_is_fine(sleep: pd.DataFrame) -> None:
    data = sleep[sleep.Days < 3]  # 54 rows > 36 random effects
    model = mm.lmer("Reaction ~ Days + (Days | Subject)", data)
    assert model.nobs == 54


# -- weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda w: w * -1, ["negative", "first at row 0"]),
        (lambda w: np.where(np.arange(180) == 4, 0.0, w), ["zero", "row 4", "drop those rows"]),
        (lambda w: np.where(np.arange(180) == 2, np.inf, w), ["infinite", "row 2"]),
        (lambda w: w[:10], ["one value per row", "180"]),
        (lambda w: np.array(["a"] * 180), ["must be numbers"]),
        (lambda w: np.ones((180, 2)), ["one value per row"]),
    ],
)
def test_bad_weights(sleep: pd.DataFrame, change, fragments: list[str]) -> None:
    with raises(DataError, "weights", *fragments):
        mm.lmer(FORMULA, sleep, weights=change(np.ones(len(sleep))))


def test_missing_weights_column(sleep: pd.DataFrame) -> None:
    with raises(DataError, "weights column 'wt'", "did you mean 'w'"):
        mm.lmer(FORMULA, sleep.assign(w=1.0), weights="wt")


def test_missing_weight_drops_its_row(sleep: pd.DataFrame) -> None:
    w = np.ones(len(sleep))
    w[3] = np.nan
    model = mm.lmer(FORMULA, sleep, weights=w)
    assert model.nobs == len(sleep) - 1
    assert model.n_dropped_missing == 1
    with raises(DataError, "1 row has missing values", "'weights'"):
        mm.lmer(FORMULA, sleep, weights=w, missing="raise")


# -- missing values ----------------------------------------------------------------------------


def test_missing_option_is_checked(sleep: pd.DataFrame) -> None:
    with raises(MixedModelsError, "'drop'", "'raise'", "'omit'"):
        mm.lmer(FORMULA, sleep, missing="omit")


def test_missing_raise_names_the_columns(sleep: pd.DataFrame) -> None:
    data = sleep.copy()
    data.loc[[2, 5], "Reaction"] = np.nan
    data["Subject"] = data["Subject"].astype(object)
    data.loc[9, "Subject"] = None
    with raises(DataError, "3 rows have missing values", "'Reaction', 'Subject'", "row 2"):
        mm.lmer(FORMULA, data, missing="raise")


def test_missing_values_found_in_numbers_and_categories(sleep: pd.DataFrame) -> None:
    data = sleep.copy()
    data["Days"] = data["Days"].astype(float)
    data.loc[7, "Days"] = np.nan
    data.loc[3, "Reaction"] = np.inf  # with -inf, a sum is NaN without a missing value
    data.loc[4, "Reaction"] = -np.inf
    data["Subject"] = pd.Categorical(data["Subject"].where(data.index != 11))
    with raises(DataError, "2 rows have missing values", "'Days', 'Subject'", "row 7"):
        mm.lmer(FORMULA, data, missing="raise")
    with raises(DataError, "'Reaction' is infinite or NaN in 2 rows"):
        mm.lmer(FORMULA, data)


def test_missing_values_found_in_text(sleep: pd.DataFrame) -> None:
    # pandas' text ("str"; arrow-backed when pyarrow is there): a missing value is
    # found, named and its row dropped; none, and every row is used.
    data = sleep.copy()
    data["Subject"] = data["Subject"].astype(str).astype("str")
    assert build_design(FORMULA, data).row_index.equals(data.index)
    data.loc[[5, 12], "Subject"] = None
    with raises(DataError, "2 rows have missing values", "'Subject'", "row 5"):
        mm.lmer(FORMULA, data, missing="raise")
    design = build_design(FORMULA, data)
    assert design.n_dropped_missing == 2
    assert 5 not in design.row_index and 12 not in design.row_index


def test_all_our_errors_are_value_errors() -> None:
    for cls in (MixedModelsError, FormulaError, DataError):
        assert issubclass(cls, ValueError)


# -- fuzzing: formula and data together --------------------------------------------------------

_FUZZ_DATA = pd.DataFrame(
    {
        "y": [1.0, 2.5, 0.5, 4.0, 3.5, 2.0, np.nan, 5.0],
        "x": [0.0, 1.0, 2.0, 3.0, -1.0, np.inf, 2.0, 1.0],
        "g": ["a", "a", "b", "b", "c", "c", "a", None],
        "h": pd.Categorical(["u", "v", "u", "v", "u", "v", "u", "v"], categories=["u", "v", "w"]),
        "s": ["p", "q", "p", "q", "p", "q", "p", "q"],
        "k": [1, 1, 1, 1, 1, 1, 1, 1],
    }
)
_FUZZ_PIECES = [
    "y", "x", "g", "h", "s", "k", "z", "~", "+", "-", "*", "/", ":", "^", "|", "||", "(", ")",
    "1", "0", "2", "log(", "sqrt(", "exp(", "scale(", "poly(", "factor(", "I(", "Q(", '"x"',
    ",", "=", "`g`", "%in%", "abs(", "center(", "as.numeric(", "C(", "-1",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FUZZ_PIECES), min_size=1, max_size=14))
def test_fuzz_formula_on_data_raises_only_our_errors(pieces: list[str]) -> None:
    formula = " ".join(pieces)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            build_design(formula, _FUZZ_DATA)
        except MixedModelsError:
            pass


@settings(max_examples=150, deadline=None)
@given(
    rhs=st.sampled_from(
        ["x + (1 | g)", "s + (1 | g)", "h + (x | s)", "log(x) + (1 | g:s)", "(1 | h)"]
    ),
    rows=st.lists(st.integers(0, 7), max_size=10),
    response=st.sampled_from(["y", "x", "k", "g", "h", "log(y)", "sqrt(x - 1)"]),
)
def test_fuzz_subsets_of_rows_raise_only_our_errors(
    rhs: str, rows: list[int], response: str
) -> None:
    # Small, repeated, empty or degenerate subsets: a fit or one of our errors.
    data = _FUZZ_DATA.iloc[rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mm.lmer(f"{response} ~ {rhs}", data)
        except MixedModelsError:
            pass


def test_transform_nan_in_every_row(sleep: pd.DataFrame) -> None:
    with raises(DataError, "no rows left", "log(Days - 20)"):
        mm.lmer("Reaction ~ log(Days - 20) + (1 | Subject)", sleep)
