"""The benchmark's models: the issue's six, similar extras, and the scaling sweep.

A model is named by its id; ``sweep:<rows>`` names the sweep's
``y ~ x + (x | g)`` at that many rows. :func:`get_model` and :func:`load_data`
are all a worker subprocess needs to rebuild a model from its id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from bench import synthetic


@dataclass(frozen=True)
class StatsmodelsSpec:
    """How statsmodels' ``MixedLM`` writes a model (one grouping factor).

    Attributes
    ----------
    fixed : str
        Patsy formula of the fixed part, with the response.
    groups : str
        Column of the single top-level grouping factor.
    re_formula : str
        Random effects that vary by ``groups`` (``"1"``, ``"~x"``).
    vc_formula : dict
        Variance components nested in ``groups`` (e.g. ``{"cask": "0 + C(cask)"}``).
    """

    fixed: str
    groups: str
    re_formula: str = "1"
    vc_formula: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The issue's target for a model: fit time and, optionally, peak memory."""

    seconds: float
    text: str
    peak_gb: float | None = None


@dataclass(frozen=True)
class BenchModel:
    """One benchmark model.

    Attributes
    ----------
    id : str
        Short name used on the command line and in the tables.
    formula : str
        lme4 formula, read by mixedmodels, ``glmm``, ``mixedlm`` and lme4.
    make_data : callable
        Builds the data frame (a bundled data set or a seeded generator).
    reml : bool
        REML (True) or ML fit.
    factors : tuple of str
        Columns lme4 must hold as factors (integer labels read from CSV
        would otherwise be numbers; ``a:b`` of numbers is not a factor).
    statsmodels : StatsmodelsSpec or None
        The model in statsmodels' terms, or None where it cannot be written.
    target : Target or None
        The issue's target for mixedmodels.
    kind : str
        ``"issue"`` (the issue's table), ``"extra"`` (similar shapes), ``"sweep"``
        or ``"glmm"`` (issue 13's generalized linear mixed models).
    rows : int
        Number of rows (for ordering and for the sweep's x axis).
    family : str or None
        A GLMM's family (R's name: ``binomial``, ``poisson``); None for a
        linear mixed model.
    weights : str or None
        Column of prior weights (a GLMM's binomial trials).
    """

    id: str
    formula: str
    make_data: Callable[[], pd.DataFrame]
    rows: int
    reml: bool = True
    factors: tuple[str, ...] = ()
    statsmodels: StatsmodelsSpec | None = None
    target: Target | None = None
    kind: str = "issue"
    family: str | None = None
    weights: str | None = None


def _dataset(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import mixedmodels as mm

        return mm.datasets.load(name)

    return load


_ISSUE_MODELS = [
    BenchModel(
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
        _dataset("sleepstudy"),
        rows=180,
        factors=("Subject",),
        statsmodels=StatsmodelsSpec("Reaction ~ Days", "Subject", "~Days"),
        target=Target(0.005, "≤ 5 ms"),
    ),
    BenchModel(
        "egsingle",
        "math ~ year * size + female + (year | childid) + (year | schoolid)",
        _dataset("egsingle"),
        rows=7_230,
        factors=("childid", "schoolid"),
        target=Target(0.1, "< 0.1 s"),
    ),
    BenchModel(
        "insteval",
        "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)",
        _dataset("InstEval"),
        rows=73_421,
        factors=("s", "d", "dept", "service"),
        target=Target(0.5, "≤ 0.5 s"),
    ),
    BenchModel(
        "users_items",
        "y ~ x + (x | user) + (1 | item)",
        synthetic.users_items,
        rows=200_000,
        factors=("user", "item"),
        target=Target(1.0, "< 1 s"),
    ),
    BenchModel(
        "students",
        "test_score ~ age + sex + (1 | classroom) + (1 | school) + (1 | province)"
        " + (1 | student_id)",
        _dataset("students"),
        rows=13_341,
        factors=("classroom", "school", "province", "student_id"),
        target=Target(0.2, "< 0.2 s"),
    ),
    BenchModel(
        "issue635",
        "y ~ time + (1 | area/subject)",
        synthetic.nested_areas,
        rows=10_000_000,
        factors=("area", "subject"),
        statsmodels=StatsmodelsSpec("y ~ time", "area", "1", {"subject": "0 + C(subject)"}),
        target=Target(60.0, "< 60 s, < 8 GB", peak_gb=8.0),
    ),
]

_EXTRA_MODELS = [
    BenchModel(
        "pastes_nested",
        "strength ~ 1 + (1 | batch/cask)",
        _dataset("Pastes"),
        rows=60,
        factors=("batch", "cask"),
        statsmodels=StatsmodelsSpec("strength ~ 1", "batch", "1", {"cask": "0 + C(cask)"}),
        kind="extra",
    ),
    BenchModel(
        "penicillin_crossed",
        "diameter ~ 1 + (1 | plate) + (1 | sample)",
        _dataset("Penicillin"),
        rows=144,
        factors=("plate", "sample"),
        kind="extra",
    ),
    BenchModel(
        "dietox_slope",
        "Weight ~ Time + (Time | Pig)",
        _dataset("dietox"),
        rows=861,
        factors=("Pig",),
        statsmodels=StatsmodelsSpec("Weight ~ Time", "Pig", "~Time"),
        kind="extra",
    ),
    BenchModel(
        "scotssec_crossed",
        "attain ~ verbal + sex + (1 | primary) + (1 | second)",
        _dataset("ScotsSec"),
        rows=3_435,
        factors=("primary", "second"),
        kind="extra",
    ),
    BenchModel(
        "exam_slope_ml",
        "normexam ~ standLRT + sex + (standLRT | school)",
        _dataset("Exam"),
        rows=4_059,
        reml=False,
        factors=("school",),
        statsmodels=StatsmodelsSpec("normexam ~ standLRT + sex", "school", "~standLRT"),
        kind="extra",
    ),
    BenchModel(
        "students_slopes",
        "test_score ~ age + sex + (age | school:classroom) + (1 | school) + (1 | province)"
        " + (1 | student_id)",
        _dataset("students"),
        rows=13_341,
        factors=("classroom", "school", "province", "student_id"),
        kind="extra",
    ),
]

_EXTRA_MODELS.append(
    BenchModel(
        "students_teachers",
        "score ~ grade + (1 | student) + (1 | teacher) + (1 | school)",
        synthetic.students_teachers,
        rows=24_908,
        factors=("student", "teacher", "school"),
        kind="extra",
    )
)


def _glmm_dataset(name: str, **columns: Callable[[pd.DataFrame], pd.Series]):
    """A bundled GLMM data set with the columns every engine reads alike: 0/1
    responses as numbers, factors as text (the Rust peers take no categoricals)."""

    def load() -> pd.DataFrame:
        import mixedmodels as mm

        data = mm.datasets.load(name)
        data = data.assign(**{k: f(data) for k, f in columns.items()})
        factors = [c for c in data.columns if isinstance(data[c].dtype, pd.CategoricalDtype)]
        return data.astype({c: str for c in factors})

    return load


# Issue 13's models: lme4's GLMM examples and a synthetic one over 5 000 rows.  The
# same model for every engine: cbpp as proportions with the trials as weights (what
# cbind(incidence, size - incidence) means), Contraception's age² as a column.
_GLMM_MODELS = [
    BenchModel(
        "cbpp",
        "prop ~ period + (1 | herd)",
        _glmm_dataset("cbpp", prop=lambda d: d["incidence"] / d["size"]),
        rows=56,
        factors=("herd", "period"),
        kind="glmm",
        family="binomial",
        weights="size",
    ),
    BenchModel(
        "grouseticks",
        "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        _glmm_dataset("grouseticks"),
        rows=403,
        factors=("YEAR", "BROOD", "INDEX", "LOCATION"),
        kind="glmm",
        family="poisson",
    ),
    BenchModel(
        "contraception",
        "use ~ age + age2 + urban + livch + (1 | district)",
        _glmm_dataset(
            "Contraception",
            use=lambda d: (d["use"] == "Y").astype(float),
            age2=lambda d: d["age"] ** 2,
        ),
        rows=1_934,
        factors=("district", "urban", "livch"),
        kind="glmm",
        family="binomial",
    ),
    BenchModel(
        "verbagg",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        _glmm_dataset("VerbAgg", r2=lambda d: (d["r2"] == "Y").astype(float)),
        rows=7_584,
        factors=("id", "item", "Gender", "btype", "situ"),
        kind="glmm",
        family="binomial",
    ),
    BenchModel(
        "binary_crossed",
        "y ~ x + (1 | subject) + (1 | item)",
        synthetic.binary_crossed,
        rows=50_000,
        factors=("subject", "item"),
        kind="glmm",
        family="binomial",
    ),
]

MODELS: dict[str, BenchModel] = {m.id: m for m in _ISSUE_MODELS + _EXTRA_MODELS + _GLMM_MODELS}
"""The named models, the issue's first, in table order."""

QUICK_MODELS = (
    "sleepstudy",
    "egsingle",
    "students",
    "pastes_nested",
    "penicillin_crossed",
    "students_teachers",
)
"""Models of ``--quick`` runs: the ones that take lme4 under a second."""

SWEEP_FORMULA = "y ~ x + (x | g)"


def sweep_sizes(lo: float = 3.0, hi: float = 7.0, steps_per_decade: int = 2) -> list[int]:
    """Row counts of the scaling sweep: ``10**lo … 10**hi`` in log steps.

    Each size is a whole number of 20-row groups, as the generator makes it.
    """
    count = round((hi - lo) * steps_per_decade) + 1
    exponents = [lo + k / steps_per_decade for k in range(count)]
    return [20 * max(5, round(10**e / 20)) for e in exponents]


def sweep_model(rows: int) -> BenchModel:
    """The sweep's random intercept-and-slope model at ``rows`` rows."""
    return BenchModel(
        f"sweep:{rows}",
        SWEEP_FORMULA,
        lambda: synthetic.intercept_slope(rows),
        rows=rows,
        factors=("g",),
        statsmodels=StatsmodelsSpec("y ~ x", "g", "~x"),
        kind="sweep",
    )


def get_model(model_id: str) -> BenchModel:
    """Look a model up by id (``sweep:<rows>`` for the sweep).

    Raises
    ------
    KeyError
        If no model has that id.
    """
    if model_id.startswith("sweep:"):
        rows = int(model_id.split(":", 1)[1])
        if rows < 1:
            raise KeyError(model_id)
        return sweep_model(rows)
    if model_id not in MODELS:
        raise KeyError(f"no benchmark model {model_id!r}; known: {', '.join(MODELS)}")
    return MODELS[model_id]


def load_data(model: BenchModel) -> pd.DataFrame:
    """The model's data frame (built afresh: generators are seeded)."""
    return model.make_data()


def human_rows(rows: int) -> str:
    """``180``, ``7 230``, ``10^7``: row counts as the tables print them."""
    exponent = math.log10(rows) if rows > 0 else 0
    if rows >= 1_000_000 and abs(exponent - round(exponent)) < 1e-9:
        return f"10^{round(exponent)}"
    return f"{rows:,}".replace(",", " ")
