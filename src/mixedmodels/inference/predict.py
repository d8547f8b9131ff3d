"""Predictions for new rows: the fixed part from the stored model specs, plus the modes.

The fixed-effects matrix and each term's model matrix are rebuilt from the
formulaic specs kept by the design, so factor codings, ``poly()`` bases and
other data-dependent transforms are those of the fit.  Levels of a grouping
factor not seen in the fit get a zero random effect when allowed (lme4's
``allow.new.levels=TRUE``), otherwise a :class:`~mixedmodels.errors.DataError`
naming the level and the factor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..design import as_data_frame
from ..errors import DataError
from ..formula import TRANSFORMS, RandomTermSpec

if TYPE_CHECKING:
    from ..models.lmm import LinearMixedModel


def _model_matrix(spec: Any, frame: pd.DataFrame, what: str) -> pd.DataFrame:
    try:
        return spec.get_model_matrix(frame, context=TRANSFORMS, na_action="ignore")
    except Exception as err:  # formulaic's errors: missing column, unknown factor level
        raise DataError(f"cannot build the {what} for the new data: {err}") from err


def fixed_matrix(model: LinearMixedModel, frame: pd.DataFrame) -> np.ndarray:
    """X for new rows, with the columns the fit kept (aliased ones dropped)."""
    mm = _model_matrix(model.design.fixed_spec, frame, "fixed-effects matrix")
    names = model.design.formula.column_names(mm.columns)
    position = {name: i for i, name in enumerate(names)}
    keep = [position[name] for name in model.design.fixed_names]
    return np.asarray(mm, dtype=np.float64)[:, keep]


def term_specs_in_engine_order(model: LinearMixedModel) -> list[RandomTermSpec]:
    """The parsed bars, put in the order of ``design.terms`` (more levels first, stable)."""
    parsed = list(model.design.formula.random)
    n_levels = {t.group_name: t.n_levels for t in model.design.terms}
    order = sorted(range(len(parsed)), key=lambda i: -n_levels[parsed[i].name])
    return [parsed[i] for i in order]


def group_labels(frame: pd.DataFrame, group: tuple[str, ...]) -> pd.Index:
    """Level labels of a (possibly interacted) grouping factor, spelled as in the fit."""
    for name in group:
        if name not in frame.columns:
            raise DataError(f"grouping factor column {name!r} is not in the new data")
    parts = [
        frame[name].astype(object).map(lambda v: None if pd.isna(v) else str(v)) for name in group
    ]
    labels = []
    for values in zip(*parts, strict=True):
        labels.append(None if any(v is None for v in values) else ":".join(values))
    return pd.Index(labels, dtype=object)


def random_part(model: LinearMixedModel, frame: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
    """Σ over terms of zᵢ·b for each new row; zero for unseen levels when allowed."""
    total = np.zeros(len(frame))
    specs = term_specs_in_engine_order(model)
    for term, spec, modes, zspec in zip(
        model.design.terms, specs, model.state.modes, model.design.term_specs, strict=True
    ):
        labels = group_labels(frame, spec.group)
        codes = term.levels.get_indexer(labels)
        unseen = codes < 0
        if unseen.any() and not allow_new_levels:
            first = labels[np.flatnonzero(unseen)[0]]
            raise DataError(
                f"level {first!r} of grouping factor {term.group_name!r} was not in the "
                "data the model was fitted to; pass allow_new_levels=True to predict "
                "it with a zero random effect"
            )
        z = np.asarray(
            _model_matrix(zspec, frame, f"model matrix of term ({spec.lhs} | {spec.name})"),
            dtype=np.float64,
        )
        contribution = np.einsum("nq,nq->n", z, modes[np.where(unseen, 0, codes)])
        total += np.where(unseen, 0.0, contribution)
    return total


def predict_new_rows(
    model: LinearMixedModel,
    newdata: Any,
    *,
    random: bool = True,
    allow_new_levels: bool = False,
) -> pd.Series:
    """Conditional (``random=True``) or marginal predictions for new rows."""
    frame = as_data_frame(newdata)
    values = fixed_matrix(model, frame) @ model.state.beta
    if random:
        values = values + random_part(model, frame, allow_new_levels)
    return pd.Series(values, index=frame.index, name="prediction")
