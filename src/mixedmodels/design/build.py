"""Stage 1b: formula and data → :class:`Design` (response, X, the random-effects terms).

:func:`build_design` passes once through the stage: read the frame
(:mod:`.frame`: the columns used, the weights, the rows with missing values),
decide which parts skip formulaic (:mod:`.plain`), evaluate the others
(:mod:`.matrices`), select the rows used, build y and X (aliased columns
dropped) and each term's Z, then the grouping factors and the terms
(:mod:`.grouping`).  The data are checked at each step (:mod:`.checks`).
Names follow lme4 (``(Intercept)``, ``SexMale``, ``recipeB:temp``) so that
results line up with lme4's output.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from ..engine.terms import RandomEffectsTerm
from ..formula import ParsedFormula, RandomTermSpec, parse_formula, random_term_to_lme4
from . import plain
from .checks import MISSING_OPTIONS, check_missing_option, check_weights
from .codings import coded_formula
from .computed import ComputedSpec, computed_columns
from .evaluation import evaluate, evaluation_frame, formulaic_parts
from .frame import UsedRows, read_frame
from .grouping import random_effects_terms
from .levels import Levels
from .matrices import fixed_effects, term_matrices

__all__ = ["Design", "SpecBuilder", "build_design"]

# Held while a design's missing specs are built (once per design, on first use).
_SPECS_LOCK = threading.Lock()


class _LazySpec:
    """A :class:`Design` field holding formulaic model specs, some built on first use.

    Parts of a formula built without formulaic (see :mod:`.plain`) have no
    model spec until something asks for one (prediction on new data, anova,
    the statsmodels-style summary); the design's ``spec_builder`` then fills in
    every missing spec at once.  Used as a dataclass field default, it keeps
    ``Design(fixed_spec=..., term_specs=...)`` working as a plain field.
    """

    def __init__(self, default_factory: Callable[[], Any] | None = None) -> None:
        self._default_factory = default_factory

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = f"_{name}"

    def __get__(self, design: Design | None, owner: type | None = None) -> Any:
        if design is None:
            return None  # the dataclass field's default
        if design.__dict__.get("spec_builder") is not None:
            # Threads asking at once wait for the first to fill the specs in;
            # the builder is detached only once they are there.
            with _SPECS_LOCK:
                builder = design.__dict__.get("spec_builder")
                if builder is not None:
                    builder.fill(design)
                    design.spec_builder = None
        value = design.__dict__.get(self._attr)
        if value is None and self._default_factory is not None:
            value = design.__dict__[self._attr] = self._default_factory()
        return value

    def __set__(self, design: Design, value: Any) -> None:
        design.__dict__[self._attr] = value


@dataclass
class Design:
    """Everything stage 2 needs, plus what results need to name things.

    ``fixed_spec`` and ``term_specs`` (in the order of ``terms``) are formulaic's
    ``ModelSpec`` objects of X and of each term's Z, for evaluating the same
    model matrices on new data; those of parts built without formulaic are
    built by ``spec_builder`` from a few of the rows used when first accessed.
    ``predictor_levels`` has each column the fixed part and the terms'
    left-hand sides read: the levels the fit saw (:class:`.levels.Levels`)
    when the model reads it as a factor, None when as a number; new rows are
    checked against it (:mod:`mixedmodels.inference.predict`).
    """

    formula: ParsedFormula
    y: np.ndarray
    x: np.ndarray
    fixed_names: list[str]
    terms: list[RandomEffectsTerm]
    weights: np.ndarray | None = None
    response_name: str = "y"
    dropped_columns: list[str] = field(default_factory=list)
    n_dropped_missing: int = 0
    row_index: pd.Index | None = None
    #: The offset on each row used (None without one), and how it and the
    #: grouping expressions are computed for new rows.
    offset: np.ndarray | None = None
    computed: ComputedSpec | None = None
    # Descriptors as defaults: dataclasses treat them as fields with default None.
    fixed_spec: Any = _LazySpec()
    term_specs: list[Any] = _LazySpec(list)
    spec_builder: SpecBuilder | None = field(default=None, compare=False)
    predictor_levels: dict[str, Levels | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Without the specs, so that showing a design does not build them.
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("fixed_spec", "term_specs", "spec_builder")
        )
        return f"Design({shown})"


@dataclass
class SpecBuilder:
    """The model specs a design lacks, and the few data rows to build them from.

    Attributes
    ----------
    parsed : ParsedFormula
        The model's formula.
    sample : PlainSample
        A few rows used of every column of the parts to build, holding every
        level of each factor (:meth:`.plain.PlainRows.sample`): the specs
        depend on a factor's levels, not on the values of numbers.
    fixed : bool
        Whether the spec of X is to be built.
    terms : list of (RandomTermSpec or None)
        In the order of the design's terms, the formula term whose spec is to
        be built, or None where the spec is there.
    """

    parsed: ParsedFormula
    sample: plain.PlainSample
    fixed: bool
    terms: list[RandomTermSpec | None]

    def fill(self, design: Design) -> None:
        """Set the missing specs of ``design`` (reading its fields, not its descriptors)."""
        # Read as the fit read its columns (integers as floats).
        sample = pd.DataFrame(self.sample.columns(), index=pd.RangeIndex(self.sample.n_rows))
        frame = evaluation_frame(sample, None)
        if self.fixed:
            formula = f"{self.parsed.response} ~ {self.parsed.fixed}"
            design.fixed_spec = evaluate(formula, frame, "formula").rhs.model_spec
        specs = list(design.__dict__.get("_term_specs") or [None] * len(self.terms))
        for k, spec in enumerate(self.terms):
            if spec is not None:
                what = f"random-effects term {random_term_to_lme4(spec)}"
                specs[k] = evaluate(spec.lhs, frame, what).model_spec
        design.term_specs = specs


# Memoised on the formula (parsing is memoised too): a refit asks again.
@functools.lru_cache(maxsize=128)
def _predictors(parsed: ParsedFormula) -> tuple[str, ...]:
    """The columns the fixed part and the terms' left-hand sides read, each once."""
    names = [*parsed.fixed_part.columns, *(c for spec in parsed.random for c in spec.part.columns)]
    return tuple(dict.fromkeys(names))


def _predictor_levels(parsed: ParsedFormula, rows: plain.PlainRows) -> dict[str, Levels | None]:
    """The levels of the rows used of each factor the model's matrices read (None for a
    number): text, categories, and columns inside ``factor()``/``C()``."""
    out: dict[str, Levels | None] = {}
    for name in _predictors(parsed):
        dtype = rows.dtype(name)
        numeric = isinstance(dtype, np.dtype) and dtype.kind in "biuf"  # is_numeric_column
        if numeric and name not in parsed.factor_columns:
            out[name] = None
        else:
            out[name] = rows.levels(name)[1]  # as a plain part coded it, if one did
    return out


def build_design(
    formula: str | ParsedFormula,
    data: Any,
    weights: Any = None,
    missing: str = "drop",
    offset: Any = None,
    contrasts: Any = None,
    *,
    allow_n: bool = False,
) -> Design:
    """Evaluate a parsed lme4 formula on data, checking the data on the way.

    Parts of the formula that are only an intercept, numeric columns and
    factors joined by ``+`` are built straight from the columns (:mod:`.plain`);
    the rest goes through formulaic.

    Parameters
    ----------
    formula : str or ParsedFormula
        An lme4 model formula.
    data : DataFrame, polars DataFrame or dict of columns
        Never modified.
    weights : array-like or str, optional
        Prior weights, or the name of a column holding them.
    missing : {"drop", "raise"}
        Rows with a missing value in any column the model uses (or in the
        weights) are dropped, as lme4's ``na.omit`` does, or refused.
    offset : array-like or str, optional
        lme4's ``offset=``: values per row, or the name of their column;
        added to the formula's ``offset()`` terms.
    contrasts : mapping of str to str, optional
        lme4's ``contrasts=``: the coding of factors of the fixed part, by
        column (``{"f": "contr.sum"}``, see :func:`.codings.coded_formula`).
    allow_n : bool, default False
        Allow a grouping factor with as many levels (and a term with as many
        random effects) as observations, as ``glmer`` does (lme4's ``allow.n``):
        without a residual variance, observation-level effects are identified.

    Raises
    ------
    FormulaError
        For a formula that cannot be parsed or evaluated.
    DataError
        For data the model cannot use: a missing column, a non-numeric, constant
        or entirely missing response, infinite values, bad weights, a grouping
        factor with one level or with as many levels as observations, or more
        random effects than observations (lme4's checks, see :mod:`.checks`).

    Warns
    -----
    RankDeficiencyWarning
        When aliased columns of X are dropped (named in the message).
    PredictorScaleWarning
        When predictors differ in scale by more than a factor of 1000.
    MissingValuesWarning
        When a transform gives NaN in some rows, which are then dropped.
    """
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    if missing not in MISSING_OPTIONS:
        check_missing_option(missing)  # its error
    frame = read_frame(parsed, data, weights, missing)
    parsed = coded_formula(parsed, frame.columns, contrasts, dtypes=frame.dtypes)
    computed, offset_all = computed_columns(parsed, frame, offset, missing)
    plan = plain.plain_plan(parsed, frame.columns, frame.dtypes)
    evaluated = formulaic_parts(parsed, plan, frame, missing)
    # Without missing values (no culprits) and without formulaic (no NaN from a
    # transform), every row is used: nothing to count.
    every = plan.everything and not frame.culprits
    rows = UsedRows.of(evaluated.keep, frame.data.index, every=every)
    w = frame.weights
    if w is not None:
        w = w[rows.keep]
        check_weights(w, rows.index)
    offset_used = None
    if offset_all is not None:
        offset_used = offset_all if rows.selection is None else offset_all[rows.selection]
        computed.check_offset(offset_used, rows.index)
    plain_rows = plain.PlainRows(
        frame.columns, frame.values, rows.keep, rows.selection, rows.n, frame.dtypes, frame.taken
    )
    fixed = fixed_effects(parsed, plan, plain_rows, evaluated, rows)
    matrices = term_matrices(parsed, plan, plain_rows, evaluated, rows, checked=plan.fixed)
    terms, order = random_effects_terms(parsed, frame, rows, matrices, allow_n=allow_n)
    term_specs = [matrices[i].spec for i in order]

    builder = None
    if fixed.spec is None or None in term_specs:
        # A few rows used are enough, with every level of the factors among them.
        builder = SpecBuilder(
            parsed=parsed,
            sample=plain_rows.sample(plan.columns),
            fixed=fixed.spec is None,
            terms=[
                parsed.random[i] if term_specs[k] is None else None for k, i in enumerate(order)
            ],
        )
    return Design(
        predictor_levels=_predictor_levels(parsed, plain_rows),
        formula=parsed,
        y=fixed.y,
        x=fixed.x,
        fixed_names=fixed.names,
        terms=terms,
        weights=w,
        response_name=parsed.response,
        dropped_columns=fixed.dropped,
        n_dropped_missing=rows.n_dropped,
        row_index=rows.index,
        offset=offset_used,
        computed=computed,
        fixed_spec=fixed.spec,
        term_specs=term_specs,
        spec_builder=builder,
    )
