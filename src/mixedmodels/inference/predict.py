"""Predictions for new rows: the fixed part from the stored model specs, plus the modes.

New rows are read as the fit read its data (:mod:`mixedmodels.design.columns`:
the same conversions, the same refusals) and their factors matched to the
fit's levels by canonical text (:mod:`mixedmodels.design.levels`: a group
fitted as the integer 308 is found as 308.0 or ``"308"``, as in R).  Then:

- a level of a fixed-effect factor the fit never saw is refused, naming the
  column and the level (lme4 refuses it too; formulaic would code it as the
  reference level);
- a row with a missing value in a column the prediction needs predicts NaN
  (lme4's ``na.action = na.pass``);
- a level of a grouping factor not seen in the fit, or a missing one, gets a
  zero random effect when allowed (lme4's ``allow.new.levels=TRUE``),
  otherwise a :class:`~mixedmodels.errors.DataError` naming the level and
  the factor.

The fixed-effects matrix and each term's model matrix are rebuilt from the
formulaic specs kept by the design, so factor codings, ``poly()`` bases and
other data-dependent transforms are those of the fit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..design import as_data_frame
from ..design.columns import grouping_column, is_numeric_column, predictor_column
from ..design.evaluation import evaluation_frame
from ..design.frame import column_missing
from ..design.levels import level_labels
from ..errors import DataError
from ..formula import TRANSFORMS, RandomTermSpec

if TYPE_CHECKING:
    from ..design import Design
    from ..models.lmm import LinearMixedModel

# formulaic's warning when it codes a value that is not among a factor's levels.
_UNSEEN_CATEGORIES = "Data has categories outside of the nominated levels"


@dataclass(frozen=True)
class NewRows:
    """New rows as the fit read its data.

    Attributes
    ----------
    frame : DataFrame
        The rows, the columns the model reads converted as in the fit and each
        factor's values replaced by the fit's own value of the same level (a
        placeholder level where missing).
    missing : dict of str to ndarray of bool
        Per column read, the rows where it is missing.
    """

    frame: pd.DataFrame
    missing: dict[str, np.ndarray]

    @classmethod
    def of(cls, model: LinearMixedModel, data: Any) -> NewRows:
        """Read ``data`` (a DataFrame, polars frame or dict of columns) for ``model``."""
        return cls.read(model.design, data)

    @classmethod
    def read(cls, design: Design, data: Any) -> NewRows:
        """Read ``data`` as the fit of ``design`` read its own."""
        if isinstance(data, NewRows):
            return data
        frame = as_data_frame(data)
        levels = getattr(design, "predictor_levels", {})
        groups = {name for spec in design.formula.random for name in spec.group}
        columns: dict[str, pd.Series] = {}
        missing: dict[str, np.ndarray] = {}
        for name in [*levels, *(g for g in groups if g not in levels)]:
            if name not in frame.columns:
                continue  # refused by the part that needs it, if one does
            given = frame[name]
            if isinstance(given, pd.DataFrame):
                raise DataError(f"column {name!r} appears more than once in the new data")
            column = (
                predictor_column(name, given) if name in levels else grouping_column(name, given)
            )
            absent = _missing(given, column)
            if name in levels:
                column = _as_fitted(name, column, levels[name], absent)
            if column is not given:
                columns[name] = column
            missing[name] = absent
        if columns:
            frame = frame.copy(deep=False)
            for name, column in columns.items():
                frame[name] = column
        return cls(frame, missing)

    def require(self, names: Any, what: str) -> np.ndarray:
        """Rows where any of ``names`` is missing; a DataError if one is not in the data."""
        rows = np.zeros(len(self.frame), dtype=bool)
        for name in names:
            if name not in self.missing:
                raise DataError(f"column {name!r} used by the {what} is not in the new data")
            rows |= self.missing[name]
        return rows


def _missing(given: pd.Series, read: pd.Series) -> np.ndarray:
    """Rows missing in a column as given or as read (see :func:`.frame.column_missing`)."""
    rows = np.zeros(len(given), dtype=bool)
    for column in (given,) if read is given else (given, read):
        bad = column_missing(column)
        if bad is not None:
            rows |= bad
    return rows


def _as_fitted(name: str, column: pd.Series, levels: Any, missing: np.ndarray) -> pd.Series:
    """A column as the fit held it: numbers stay numbers; a factor's values are matched to
    the fit's levels by canonical text and replaced by the fit's value of each."""
    if levels is None:
        if not is_numeric_column(column):
            shown = ", ".join(repr(v) for v in pd.unique(column[~missing])[:3])
            raise DataError(
                f"column {name!r} holds numbers in the data the model was fitted to, but "
                f"{column.dtype} values such as {shown} in the new data"
            )
        return column
    codes = levels.codes(column)
    unseen = (codes < 0) & ~missing
    if unseen.any():
        first = column.iloc[int(np.flatnonzero(unseen)[0])]
        n_unseen = int(unseen.sum())
        raise DataError(
            f"column {name!r} has level {level_labels([first])[0]!r} in "
            f"{n_unseen} row{'s' if n_unseen > 1 else ''} of the new data, which the model "
            f"was not fitted with (its levels: {levels.shown()}); a fixed effect cannot be "
            "predicted for a level it has no estimate for"
        )
    # Missing rows get a placeholder level: their predictions are NaN anyway.
    return pd.Series(levels.as_fitted(np.maximum(codes, 0)), index=column.index, name=column.name)


def _model_matrix(spec: Any, frame: pd.DataFrame, what: str) -> np.ndarray:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with np.errstate(divide="ignore", invalid="ignore"):
                # Read as the fit read its columns (integers as floats, logicals kept).
                matrix = spec.get_model_matrix(
                    evaluation_frame(frame, None), context=TRANSFORMS, na_action="ignore"
                )
    except Exception as err:  # formulaic's errors: missing column, unusable values
        raise DataError(f"cannot build the {what} for the new data: {err}") from err
    for warning in caught:
        text = str(warning.message)
        if text.startswith(_UNSEEN_CATEGORIES):
            # A factor made by an expression (factor(a + b)) met a value the fit
            # did not: formulaic would code it as the reference level.
            unseen = text[text.find("{") : text.find("}") + 1]
            raise DataError(
                f"cannot build the {what} for the new data: a factor of the formula takes "
                f"values the model was not fitted with ({unseen})"
            )
    return matrix


def _on_rows(
    spec: Any, rows: NewRows, needed: np.ndarray, what: str
) -> tuple[np.ndarray, list[str]]:
    """A spec's model matrix on the rows not ``needed``-missing; NaN rows for the others."""
    keep = ~needed
    frame = rows.frame if keep.all() else rows.frame.loc[keep]
    matrix = _model_matrix(spec, frame, what)
    names = [str(c) for c in matrix.columns]
    values = np.asarray(matrix, dtype=np.float64)
    if keep.all():
        return values, names
    out = np.full((len(keep), values.shape[1]), np.nan)
    out[keep] = values
    return out, names


def fixed_matrix(model: LinearMixedModel, frame: pd.DataFrame | NewRows) -> np.ndarray:
    """X for new rows, with the columns the fit kept (aliased ones dropped).

    A row with a missing value in a column of the fixed part is a row of NaN.
    """
    return design_fixed_matrix(model.design, frame)


def design_fixed_matrix(design: Design, frame: Any) -> np.ndarray:
    """:func:`fixed_matrix` of a design (for front ends holding a design, not a model)."""
    rows = NewRows.read(design, frame)
    needed = rows.require(design.formula.fixed_part.columns, "fixed effects")
    if not len(rows.frame) or needed.all():
        return np.full((len(rows.frame), len(design.fixed_names)), np.nan)
    x, raw_names = _on_rows(design.fixed_spec, rows, needed, "fixed-effects matrix")
    position = {name: i for i, name in enumerate(design.formula.column_names(raw_names))}
    return x[:, [position[name] for name in design.fixed_names]]


def term_specs_in_engine_order(model: LinearMixedModel) -> list[RandomTermSpec]:
    """The parsed bars, put in the order of ``design.terms`` (more levels first, stable)."""
    parsed = list(model.design.formula.random)
    n_levels = {t.group_name: t.n_levels for t in model.design.terms}
    order = sorted(range(len(parsed)), key=lambda i: -n_levels[parsed[i].name])
    return [parsed[i] for i in order]


def group_labels(frame: pd.DataFrame | NewRows, group: tuple[str, ...]) -> pd.Index:
    """Level labels of a (possibly interacted) grouping factor, spelled as in the fit.

    Each value's canonical text (:func:`mixedmodels.design.levels.level_label`),
    joined by ``:`` for an interaction; None where a value is missing.
    """
    data = frame.frame if isinstance(frame, NewRows) else frame
    parts = []
    for name in group:
        if name not in data.columns:
            raise DataError(f"grouping factor column {name!r} is not in the new data")
        parts.append(level_labels(data[name]))
    labels = [
        None if any(v is None for v in values) else ":".join(values)
        for values in zip(*parts, strict=True)
    ]
    return pd.Index(labels, dtype=object)


def random_part(
    model: LinearMixedModel, frame: pd.DataFrame | NewRows, allow_new_levels: bool
) -> np.ndarray:
    """Σ over terms of zᵢ·b for each new row; zero for unseen or missing levels when allowed.

    A row with a missing value in a term's left-hand side is NaN.
    """
    rows = NewRows.of(model, frame)
    total = np.zeros(len(rows.frame))
    specs = term_specs_in_engine_order(model)
    for term, spec, modes, zspec in zip(
        model.design.terms, specs, model.state.modes, model.design.term_specs, strict=True
    ):
        labels = group_labels(rows, spec.group)
        codes = term.levels.get_indexer(labels)
        unseen = codes < 0
        if unseen.any() and not allow_new_levels:
            first = int(np.flatnonzero(unseen)[0])
            if labels[first] is None:
                n_missing = int(sum(label is None for label in labels))
                raise DataError(
                    f"grouping factor {term.group_name!r} is missing in {n_missing} "
                    f"row{'s' if n_missing > 1 else ''} of the new data (first at row "
                    f"{rows.frame.index[first]!r}); pass allow_new_levels=True to predict "
                    "them with a zero random effect (lme4 refuses them too)"
                )
            raise DataError(
                f"level {labels[first]!r} of grouping factor {term.group_name!r} was not in "
                "the data the model was fitted to; pass allow_new_levels=True to predict "
                "it with a zero random effect"
            )
        what = f"model matrix of term ({spec.lhs} | {spec.name})"
        needed = rows.require(spec.part.columns, f"random-effects term ({spec.lhs} | {spec.name})")
        if needed.all():
            total[:] = np.nan
            continue
        z, _ = _on_rows(zspec, rows, needed, what)
        contribution = np.einsum("nq,nq->n", np.nan_to_num(z), modes[np.where(unseen, 0, codes)])
        total += np.where(needed, np.nan, np.where(unseen, 0.0, contribution))
    return total


def predict_new_rows(
    model: LinearMixedModel,
    newdata: Any,
    *,
    random: bool = True,
    allow_new_levels: bool = False,
    offset: Any = None,
) -> pd.Series:
    """Conditional (``random=True``) or marginal predictions for new rows, offsets included.

    Grouping factors written as expressions are computed on the new rows
    first; the offset (the formula's ``offset()`` terms, the column named by
    ``offset=``, or ``offset`` given here for a model fitted with an array)
    is added.
    """
    frame = as_data_frame(newdata)
    computed = getattr(model.design, "computed", None)
    if computed is not None and computed.groups:
        frame = computed.with_groups(frame)
    rows = NewRows.of(model, frame)
    values = fixed_matrix(model, rows) @ model.state.beta
    if computed is not None and computed.has_offset:
        given = None if offset is None else np.asarray(offset, dtype=np.float64).reshape(-1)
        if given is not None and len(given) != len(frame):
            raise DataError(f"offset must have one value per new row ({len(frame)})")
        values = values + computed.offset(frame, given, new_rows=True)
    elif offset is not None:
        raise DataError("the model was fitted without an offset; offset= is not used")
    if random:
        values = values + random_part(model, rows, allow_new_levels)
    return pd.Series(values, index=rows.frame.index, name="prediction")
