"""Type III hypotheses of the fixed-effect terms, as lmerTest's ``anova(m, type = 3)``.

The hypothesis of a term is built in an over-parameterised coding of the
model: the intercept, then for every term one column per cell of its factors
(indicator of each level combination, times its numeric variables) — SAS's
"complete" design.  Each coefficient βⱼ of the model is an estimable function
of those parameters, γ ↦ (X⁺ X̃ γ)ⱼ, where X̃ is the complete design.  A term's
functions are made orthogonal (in γ) to those of every term that contains it,
higher-order terms first (Goodnight's type III estimable functions, the
construction of lmerTest's ``extract_contrasts_type3``); the span of what is
left is the term's hypothesis, expressed back in β.  The span does not depend
on how the factors are coded, so every term of ``x * group`` or ``A * B`` gets
the hypothesis SAS and lmerTest test, not "the coefficients at the reference
level".

Containment (SAS's "The Four Types of Estimable Functions", as lmerTest reads
it): term T is contained in U when U has every variable of T and at least one
more, and both have the same numeric variables.  (lmerTest counts only R's
data class ``"numeric"`` as numeric, so ``poly(x, 2)`` and ``scale(x)``
count as factors there; that cannot change a hypothesis: the coefficients of
terms with different numeric variables are functions of disjoint sets of
parameters, already orthogonal.)

The coefficients of X⁺X̃ are identities between functions of the variables
(``x·[f = a] = x − x·[f = b] − x·[f = c]``), not properties of the data, as
long as X has full column rank.  A fitted model keeps its formulaic model
spec but not its data, so both matrices are evaluated on a small synthetic
grid — every combination of the factor levels, with random values for the
numeric variables — through the model's own spec (same levels, same
contrasts, same ``scale()`` centres).  When aliased columns were dropped
because cells of an interaction have no data, the grid leaves those cells
out too, so that it aliases the columns the data alias.
"""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import RankDeficiencyWarning, Type3Error, user_stacklevel
from ..formula import TRANSFORMS, ParsedFormula

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel

# Entries below this (relative to the largest) are rounding noise of the
# least-squares steps; lmerTest applies zapsmall at the same places.
_ZAP = 1e-10

# The grid crosses every factor with every other, so a factor with many
# levels next to an unrelated interaction multiplies its size; beyond this
# many entries of X̃ (about 400 MB) the construction is refused.
_MAX_GRID_ENTRIES = 50_000_000


def _zap(a: np.ndarray) -> np.ndarray:
    scale = np.max(np.abs(a)) if a.size else 0.0
    if scale > 0:
        a = np.where(np.abs(a) < _ZAP * scale, 0.0, a)
    return a


def _residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residuals of the least-squares fit of the columns of ``y`` on ``x``."""
    if x.shape[1] == 0:
        return y
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    return y - x @ coef


class _Terms:
    """The fixed-effect terms of a model spec, with what the construction needs."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.categorical: dict[str, list] = {}
        for name, (kind, state) in spec.encoder_state.items():
            if str(kind).endswith("CATEGORICAL"):
                self.categorical[str(name)] = list(state["categories"])
        self.labels: list[str] = []
        self.factors: list[list[str]] = []
        self.columns: list[list[int]] = []
        self.intercept = False
        self.intercept_columns: list[int] = []
        offset = 0
        for structure in spec.structure:
            n = len(structure.columns)
            if str(structure.term) == "1":
                self.intercept = True
                self.intercept_columns = list(range(offset, offset + n))
            else:
                self.labels.append(str(structure.term))
                self.factors.append([str(f) for f in structure.term.factors])
                self.columns.append(list(range(offset, offset + n)))
            offset += n

    def data_variables(self) -> dict[str, set[str]]:
        """Factor expression → the data columns it reads."""
        data = set(self.spec.variables_by_source.get("data", set()))
        return {
            str(factor): {str(v) for v in variables} & data
            for factor, variables in self.spec.factor_variables.items()
        }


def _grid(terms: _Terms, rng: np.random.Generator) -> pd.DataFrame:
    """Synthetic data on which every cell of the factors appears, several times.

    A data column read by a categorical factor takes that factor's levels
    (``temp`` of ``C(temp)`` takes 175, 185, …); any other data column gets
    distinct random values, which make the numeric columns generic within
    every cell.
    """
    reads = terms.data_variables()
    levels: dict[str, list] = {}
    for factor, categories in terms.categorical.items():
        for variable in sorted(reads.get(factor, set())):
            levels.setdefault(variable, list(categories))
    numeric = sorted(set().union(*reads.values(), set()) - set(levels)) if reads else []
    n_cells = int(np.prod([len(v) for v in levels.values()])) if levels else 1
    # Enough rows per cell for the numeric columns of X to be independent there.
    n_numeric_columns = sum(
        len(cols)
        for cols, factors in zip(terms.columns, terms.factors, strict=True)
        if any(f not in terms.categorical for f in factors)
    )
    per_cell = 1 + n_numeric_columns if numeric or n_numeric_columns else 1
    n_rows = n_cells * per_cell
    # X̃ has about one column per cell of each term (times its numeric columns).
    width = 1 + sum(
        max(1, sum(f not in terms.categorical for f in factors))
        * int(np.prod([len(terms.categorical[f]) for f in factors if f in terms.categorical]))
        for factors in terms.factors
    )
    if n_rows * width > _MAX_GRID_ENTRIES:
        raise Type3Error(
            f"type III hypotheses: the factors of the fixed effects cross in {n_cells} "
            "cells, too many to build the hypotheses from; compare nested models with "
            "anova(m0, m1) instead"
        )
    names = list(levels)
    combos = list(itertools.product(*(levels[v] for v in names))) if names else [()]
    frame = pd.DataFrame(
        {v: [c[i] for c in combos for _ in range(per_cell)] for i, v in enumerate(names)}
    )
    if not names:
        frame = pd.DataFrame(index=range(n_rows))
    for v in names:
        if v in terms.categorical:
            # A factor read straight from a column (a pandas categorical of
            # integers, say): the column must be categorical on the grid too,
            # or integer levels would be read as a number.
            frame[v] = pd.Categorical(frame[v], categories=terms.categorical[v])
    for v in numeric:
        # Positive and away from 0 and 1 so that log, sqrt and powers stay
        # finite and distinct.
        frame[v] = rng.uniform(1.5, 3.5, size=n_rows)
    return frame


def _evaluate(spec: Any, frame: pd.DataFrame, what: str) -> pd.DataFrame:
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            return spec.get_model_matrix(frame, context=TRANSFORMS)
    except Exception as err:
        raise Type3Error(f"type III hypotheses: cannot evaluate {what}: {err}") from err


def _complete_design(terms: _Terms, frame: pd.DataFrame) -> np.ndarray:
    """SAS's complete design X̃ on ``frame``: per term, one column per cell.

    ``0 + term`` codes every factor of the term by all its levels; the spec's
    saved states keep the levels and transforms those of the fit.
    """
    blocks = [np.ones((len(frame), 1))] if terms.intercept else []
    for label in terms.labels:
        spec = terms.spec.update(formula=f"0 + {label}", structure=None)
        blocks.append(np.asarray(_evaluate(spec, frame, f"term {label!r}"), dtype=np.float64))
    return np.hstack(blocks)


def _containment(terms: _Terms) -> list[list[int]]:
    """For each term, the terms that contain it (indices into ``terms.labels``)."""
    numeric = [{f for f in factors if f not in terms.categorical} for factors in terms.factors]
    return [
        [
            j
            for j, other in enumerate(terms.factors)
            if set(own) < set(other) and numeric[i] == numeric[j]
        ]
        for i, own in enumerate(terms.factors)
    ]


def _kept_positions(terms: _Terms, design: Any) -> dict[int, int]:
    """Column of the spec → column of X, for the columns not dropped as aliased."""
    names = design.formula.column_names(terms.spec.column_names)
    dropped = set(design.dropped_columns)
    kept = [j for j, name in enumerate(names) if name not in dropped]
    if [names[j] for j in kept] != list(design.fixed_names):
        raise Type3Error(
            "type III hypotheses: the model spec's columns do not match the fixed effects "
            f"({', '.join(design.fixed_names)})"
        )
    return {j: i for i, j in enumerate(kept)}


def _observed_cells(
    terms: _Terms, grid: pd.DataFrame, x_grid: np.ndarray, x_data: np.ndarray, kept: list[int]
) -> np.ndarray:
    """Rows of the grid in a cell of the factors that the data have.

    A cell is recognised by the row of X restricted to the intercept and the
    purely categorical terms, which is the same for every row of the cell.
    Empty cells are why columns were dropped; leaving them out of the grid
    gives it the data's aliasing, so that X̃ has the same empty columns as
    lmerTest's (which it builds from the data).
    """
    categorical = list(terms.intercept_columns)
    for cols, factors in zip(terms.columns, terms.factors, strict=True):
        if all(f in terms.categorical for f in factors):
            categorical += cols
    on_grid = [j for j, spec_col in enumerate(kept) if spec_col in set(categorical)]
    if not on_grid:
        return np.ones(len(grid), dtype=bool)
    spec_cols = [kept[j] for j in on_grid]
    scale = max(1.0, float(np.max(np.abs(x_data[:, on_grid]))))

    def keys(values: np.ndarray) -> list[bytes]:
        return [row.tobytes() for row in np.round(values / scale, 8) + 0.0]

    seen = set(keys(x_data[:, on_grid]))
    grid_keys = keys(x_grid[:, spec_cols])
    if not seen <= set(grid_keys):
        raise Type3Error(
            "type III hypotheses: the data have cells of the factors the synthetic grid "
            "does not (transformed factors?)"
        )
    return np.array([k in seen for k in grid_keys])


def _cell_names(terms: _Terms, grid: pd.DataFrame, parsed: ParsedFormula) -> list[str]:
    """Column names of X̃, in lme4's spelling (for the message about empty cells)."""
    names = ["(Intercept)"] if terms.intercept else []
    for label in terms.labels:
        spec = terms.spec.update(formula=f"0 + {label}", structure=None)
        columns = _evaluate(spec, grid.iloc[:1], label).columns
        names += parsed.column_names(columns)
    return names


def type3_contrasts(model: LinearMixedModel, seed: int = 20_231_121) -> dict[str, np.ndarray]:
    """Type III hypothesis matrix of every fixed-effect term.

    Parameters
    ----------
    model : LinearMixedModel
        A model (fitted or not): only its fixed-effects design is used.
    seed : int
        Seed of the random numeric values of the synthetic grid; the result
        does not depend on it beyond rounding.

    Returns
    -------
    dict of str to numpy.ndarray
        Term label (formulaic's spelling, e.g. ``recipe:temp``) → L with one
        row per hypothesis and one column per fixed effect; the term's
        hypothesis is Lβ = 0.  A term with nothing left to test (all its
        columns dropped as aliased) has an L with no rows.

    Raises
    ------
    Type3Error
        When the design cannot be rebuilt from the model's spec (a factor
        made by a transform the grid cannot reproduce, aliasing that does not
        come from empty cells).

    Warns
    -----
    RankDeficiencyWarning
        When some cells of an interaction have no data: the hypotheses are
        then lmerTest's "type III-like" ones, which SAS calls neither type III
        nor type IV; interpret them with care.
    """
    design = model.design
    terms = _Terms(design.fixed_spec)
    kept_at = _kept_positions(terms, design)
    kept = sorted(kept_at)
    if not terms.labels:
        return {}
    grid = _grid(terms, np.random.default_rng(seed))
    x_all = np.asarray(_evaluate(terms.spec, grid, "the fixed effects"), dtype=np.float64)
    complete = _complete_design(terms, grid)
    if design.dropped_columns:
        x = model.rows.in_memory("type III tests of a model with aliased columns").x
        rows = _observed_cells(terms, grid, x_all, x, kept)
        grid, x_all, complete = grid[rows], x_all[rows], complete[rows]
        if np.linalg.matrix_rank(x_all) > len(kept):
            raise Type3Error(
                "type III hypotheses: the columns dropped as aliased "
                f"({', '.join(design.dropped_columns)}) are not explained by empty cells "
                "of the factors (collinear covariates?); drop them from the formula, or "
                "compare nested models with anova(m0, m1)"
            )
        empty = np.all(complete == 0, axis=0)
        if empty.any():
            cells = [
                n for n, e in zip(_cell_names(terms, grid, design.formula), empty, strict=True) if e
            ]
            warnings.warn(
                f"no data in the cells {', '.join(cells)}: interpret the type III "
                "hypotheses with care (lmerTest's construction for empty cells)",
                RankDeficiencyWarning,
                stacklevel=user_stacklevel(),
            )
    x = x_all[:, kept]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(complete))):
        raise Type3Error("type III hypotheses: the fixed effects are not finite on the grid")
    singular = np.linalg.svd(x, compute_uv=False)
    if singular[-1] <= 1e-9 * singular[0]:
        raise Type3Error(
            "type III hypotheses: cannot rebuild the fixed-effects design from the "
            "model's formula (transformed factors, or aliased columns not due to empty cells)"
        )
    # β = Mγ: the coefficients of the model as functions of the complete
    # design's parameters; column r of X̃ is exactly X M[:, r].
    coef = np.linalg.lstsq(x, complete, rcond=None)[0]
    if np.max(np.abs(x @ coef - complete)) > 1e-8 * max(1.0, float(np.max(np.abs(complete)))):
        raise Type3Error(
            "type III hypotheses: the cells of the terms are not spanned by the model's "
            "columns (a term without its marginal terms?)"
        )
    ell = _zap(coef.T)  # rows: γ, columns: β — column j is βⱼ as a function of γ
    columns = [[kept_at[c] for c in cols if c in kept_at] for cols in terms.columns]
    contained_in = _containment(terms)
    order = sorted(range(len(terms.labels)), key=lambda i: -len(terms.factors[i]))
    for i in order:
        if contained_in[i] and columns[i]:
            wider = [c for j in contained_in[i] for c in columns[j]]
            ell[:, columns[i]] = _zap(_residuals(ell[:, wider], ell[:, columns[i]]))
    # Back to β: any K with X̃K = X turns an estimable function c of γ into
    # the same function c'K of β.
    back = np.linalg.lstsq(complete, x, rcond=None)[0]
    out: dict[str, np.ndarray] = {}
    for label, cols in zip(terms.labels, columns, strict=True):
        hyp = _zap(ell[:, cols].T @ back)
        if hyp.size == 0:
            out[label] = hyp.reshape(0, x.shape[1])
            continue
        keep = np.sum(np.abs(hyp), axis=1) > 1e-8 * max(1.0, float(np.max(np.abs(hyp))))
        out[label] = hyp[keep]
    return out
