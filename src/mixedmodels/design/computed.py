"""Columns a formula computes outside the model matrices: offsets and grouping expressions.

An offset (``offset(log(expected))`` in the formula, or lme4's ``offset=``
argument: an array or a column name) is a known part of the linear
predictor: the fit models ``y − offset``, and fitted values and predictions
add it back.  Several offsets are added up, as in R.  A grouping factor
may be an expression of columns, ``(1 | factor(Subject))`` or
``(1 | interaction(a, b))``, named by its R text as lme4 names it.

Both are evaluated on every row before the rows with missing values are
dropped, as R's ``model.frame`` evaluates them; a missing value of either
makes its row missing.  The stateful transforms they use keep their state
(a mean, the breaks of ``cut``), so new rows are computed alike by
:class:`ComputedSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic.utils.stateful_transforms import stateful_eval

from ..errors import DataError, FormulaError
from ..formula import TRANSFORMS, GroupExpression, Offset, ParsedFormula
from ..formula.factors import ROWS_USED, as_labels
from .checks import check_finite, check_rows_left
from .evaluation import evaluation_frame

__all__ = ["ComputedSpec", "computed_columns", "evaluate_code", "offset_argument"]


def evaluate_code(
    code: str,
    frame: pd.DataFrame,
    state: dict[str, Any],
    what: str,
    rows_used: np.ndarray | None = None,
) -> Any:
    """The value of a formula expression's Python code on the rows of ``frame``.

    ``code`` has passed the translator's checks and the allow-list
    (:func:`~mixedmodels.formula.check_python`); its names are the frame's
    columns and the formula functions.  ``state`` holds the stateful
    transforms' state (filled on the fit's rows, reused on new rows).
    """
    env: dict[str, Any] = {**TRANSFORMS, **{str(c): frame[c] for c in frame.columns}}
    if rows_used is not None:
        env[ROWS_USED] = rows_used
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="raise", under="ignore"):
            return stateful_eval(code, env, None, state, None)
    except (FormulaError, DataError):
        raise
    except FloatingPointError as err:
        raise FormulaError(f"{what} overflows in floating point: {err}") from err
    except Exception as err:
        raise FormulaError(f"cannot evaluate {what}: {err}") from err


def _numbers(value: Any, n: int, what: str) -> np.ndarray:
    """An offset's value as floats, one per row."""
    raw = value.__wrapped__ if hasattr(value, "__wrapped__") else value
    try:
        numbers = np.asarray(
            pd.Series(np.broadcast_to(np.asarray(raw), (n,))).to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        )
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers, one per row") from None
    return numbers


def offset_argument(offset: Any, data: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """lme4's ``offset=``: values per row of ``data`` (NaN where missing) and the column named.

    Raises
    ------
    DataError
        For a column that is not in the data, or an array of the wrong length
        or not numeric.
    """
    if offset is None:
        return None, None
    if isinstance(offset, str):
        if offset not in data.columns:
            raise DataError(f"offset column {offset!r} is not in the data")
        return _numbers(data[offset], len(data), f"offset column {offset!r}"), offset
    if np.ndim(offset) != 1 or np.shape(offset)[0] != len(data):
        raise DataError(
            f"offset must have one value per row of the data ({len(data)}), "
            f"got shape {np.shape(offset)}"
        )
    return _numbers(offset, len(data), "offset"), None


@dataclass
class ComputedSpec:
    """How a formula's offsets and grouping expressions are computed, for new rows too.

    Attributes
    ----------
    offsets : tuple of Offset
        The formula's ``offset(expr)`` terms.
    offset_states : list of dict
        Their stateful transforms' state, as on the fit's rows.
    offset_column : str or None
        The column lme4's ``offset=`` named.
    offset_array : bool
        Whether ``offset=`` was an array (new rows must be given theirs).
    groups : tuple of GroupExpression
        The grouping factors written as expressions.
    group_states : list of dict
        Their stateful transforms' state.
    """

    offsets: tuple[Offset, ...] = ()
    offset_states: list[dict[str, Any]] = field(default_factory=list)
    offset_column: str | None = None
    offset_array: bool = False
    groups: tuple[GroupExpression, ...] = ()
    group_states: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_offset(self) -> bool:
        """Whether the model has an offset."""
        return bool(self.offsets) or self.offset_column is not None or self.offset_array

    @classmethod
    def of(
        cls, parsed: ParsedFormula, offset_column: str | None, offset_array: bool
    ) -> ComputedSpec:
        return cls(
            offsets=parsed.offsets,
            offset_states=[{} for _ in parsed.offsets],
            offset_column=offset_column,
            offset_array=offset_array,
            groups=parsed.group_expressions,
            group_states=[{} for _ in parsed.group_expressions],
        )

    # -- offsets -------------------------------------------------------------------

    def offset(
        self, data: pd.DataFrame, given: np.ndarray | None = None, *, new_rows: bool = False
    ) -> np.ndarray | None:
        """The offset on every row of ``data`` (NaN where missing), or None without one.

        ``given`` is ``offset=`` as values per row (the fit's, or new rows'
        when the fit was given an array).
        """
        if not self.has_offset:
            return None
        total = np.zeros(len(data))
        if self.offsets:
            frame = evaluation_frame(
                _columns(data, {c for o in self.offsets for c in o.columns}), None
            )
            for term, state in zip(self.offsets, self.offset_states, strict=True):
                value = evaluate_code(term.code, frame, state, f"the offset {term.label}")
                total = total + _numbers(value, len(data), f"the offset {term.label}")
        if self.offset_column is not None and given is None:
            if self.offset_column not in data.columns:
                raise DataError(f"offset column {self.offset_column!r} is not in the new data")
            given, _ = offset_argument(self.offset_column, data)
        if self.offset_array and given is None:
            raise DataError(
                "the model was fitted with offset= given as an array: pass offset= with one "
                "value per new row"
                if new_rows
                else "offset= is missing"
            )
        if given is not None:
            total = total + np.asarray(given, dtype=np.float64)
        return total

    def check_offset(self, values: np.ndarray, index: pd.Index) -> None:
        """Refuse an infinite offset on the rows used (missing ones were dropped)."""
        labels = [*(o.label for o in self.offsets)]
        if self.offset_column is not None:
            labels.append(f"offset column {self.offset_column!r}")
        elif self.offset_array:
            labels.append("offset=")
        check_finite(values, [" + ".join(labels)], "the offset", index)

    # -- grouping expressions ------------------------------------------------------------

    def groups_on(
        self, data: pd.DataFrame, rows_used: np.ndarray | None = None
    ) -> dict[str, pd.Series]:
        """Each grouping expression's factor on every row of ``data``, by its label."""
        out: dict[str, pd.Series] = {}
        if not self.groups:
            return out
        frame = evaluation_frame(_columns(data, {c for g in self.groups for c in g.columns}), None)
        for group, state in zip(self.groups, self.group_states, strict=True):
            value = evaluate_code(
                group.code, frame, state, f"the grouping factor {group.label}", rows_used
            )
            labels = as_labels(value)
            if len(labels) != len(data):
                raise FormulaError(f"the grouping factor {group.label} must have one value per row")
            out[group.label] = pd.Series(labels, index=data.index, name=group.label)
        return out

    def with_groups(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` with the grouping expressions' factors as columns (new rows to predict)."""
        columns = self.groups_on(data)
        if not columns:
            return data
        return data.assign(**columns)


def _columns(data: pd.DataFrame, names: set[str]) -> pd.DataFrame:
    missing = [name for name in names if name not in data.columns]
    if missing:
        raise DataError(f"column {missing[0]!r} is not in the data")
    return data[[c for c in data.columns if c in names]]


def computed_columns(
    parsed: ParsedFormula, frame: Any, offset: Any, missing: str
) -> tuple[ComputedSpec, np.ndarray | None]:
    """Evaluate the offsets and grouping expressions on every row of the model frame.

    The grouping expressions' factors join ``frame.columns`` under their
    labels; rows where the offset or such a factor is missing join the
    frame's missing rows (refused with ``missing="raise"``).

    Returns
    -------
    spec : ComputedSpec
        How to compute them again for new rows.
    offset : ndarray or None
        The offset on every row of the data.
    """
    if offset is None and not parsed.offsets and not parsed.group_expressions:
        # Nothing to compute (most formulas): the general path's arrays are skipped,
        # and the spec is the empty one (ComputedSpec.of's, without its lists).
        return ComputedSpec(), None
    given, column = offset_argument(offset, frame.data)
    spec = ComputedSpec.of(parsed, column, offset is not None and column is None)
    values = spec.offset(frame.data, given)
    extra = np.zeros(len(frame.data), dtype=bool)
    culprits: list[str] = []
    if values is not None and np.isnan(values).any():
        extra |= np.isnan(values)
        culprits.append("offset")
    for label, series in spec.groups_on(frame.data, ~frame.missing).items():
        frame.columns[label] = series
        absent = series.isna().to_numpy()
        if absent.any():
            extra |= absent
            culprits.append(label)
    if extra.any():
        frame.missing |= extra
        frame.culprits.extend(culprits)
        check_rows_left(frame.data.index, frame.columns, frame.missing, frame.culprits, missing)
    return spec, values
