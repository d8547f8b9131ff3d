"""The functions a formula may call: their R names, arguments and implementations.

:data:`FUNCTIONS` is the table the translator checks every call against: a
function is callable from a formula only if it is listed here, with the
keyword arguments listed for it.  :data:`TRANSFORMS` holds the
implementations formulaic needs besides its own (pass it as the evaluation
context of every model matrix built from a translated formula, and of every
model spec evaluated again on new data).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic.transforms import stateful_transform

__all__ = [
    "ALLOWED_FUNCTIONS",
    "CONTRASTS",
    "CONTRAST_FUNCTIONS",
    "FUNCTIONS",
    "TRANSFORMS",
    "TRANSLATED_KEYWORDS",
    "FormulaFunction",
    "allowed_names",
]


# ---------------------------------------------------------------------------
# Implementations of R's meaning where formulaic's differs or is missing
# ---------------------------------------------------------------------------


def _log(x: Any, base: float | None = None) -> Any:
    """Natural logarithm, or the logarithm to ``base`` like R's ``log(x, base)``."""
    if base is None:
        return np.log(x)
    return np.log(x) / np.log(base)


def _as_numeric(x: Any) -> pd.Series:
    """R's ``as.numeric``: numbers stay, logicals become 0/1, a factor its level codes."""
    series = x if isinstance(x, pd.Series) else pd.Series(x)
    if isinstance(series.dtype, pd.CategoricalDtype):
        # R numbers a factor's levels from 1, and as.numeric(f) returns those codes.
        codes = (series.cat.codes + 1).astype(float)
        return codes.where(series.notna())
    return pd.to_numeric(series, errors="raise").astype(float)


@stateful_transform
def _scale(
    data: Any,
    center: bool | float = True,
    scale: bool | float = True,
    ddof: float = 1,
    _state: dict | None = None,
) -> np.ndarray:
    """R's ``scale()``: like formulaic's, but the mean and sd skip missing values.

    Model matrices are evaluated on every row before missing rows are dropped
    (as R's model.frame does), so a NaN in one row must not turn the whole
    column into NaN.  The state keys are formulaic's own, so a saved model spec
    re-applies the same centre and scale to new data.
    """
    state = {} if _state is None else _state
    values = np.array(data, dtype=np.float64)
    state.setdefault("ddof", ddof)
    if "center" not in state:
        if isinstance(center, bool):
            state["center"] = np.nanmean(values, axis=0) if center else None
        else:
            state["center"] = np.array(center)
    if state["center"] is not None:
        values = values - state["center"]
    if "scale" not in state:
        if isinstance(scale, bool):
            count = np.sum(~np.isnan(values), axis=0)
            state["scale"] = (
                np.sqrt(np.nansum(values**2, axis=0) / np.maximum(count - state["ddof"], 1))
                if scale
                else None
            )
        else:
            state["scale"] = np.array(scale)
    if state["scale"] is not None:
        values = values / state["scale"]
    return values


@stateful_transform
def _center(data: Any, _state: dict | None = None) -> np.ndarray:
    """R's ``scale(x, scale = FALSE)``, skipping missing values."""
    return _scale(data, scale=False, _state=_state)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FormulaFunction:
    """A function a formula may call.

    Attributes
    ----------
    name : str
        The name the translated formula calls (formulaic's, or one in
        :data:`TRANSFORMS`), e.g. ``"C"`` for R's ``factor``.
    keywords : mapping of str to str
        Keyword arguments accepted: R spelling → formulaic spelling.
    max_args : int or None
        Most positional arguments accepted (None: no limit checked here).
    needs_argument : bool
        Whether a call without arguments is refused (``Sum()`` takes none).
    implementation : callable or None
        What formulaic calls, when formulaic does not provide ``name`` itself.
    """

    name: str
    keywords: Mapping[str, str] = field(default_factory=dict)
    max_args: int | None = None
    needs_argument: bool = True
    implementation: Callable[..., Any] | None = None


_FACTOR = FormulaFunction("C", keywords={"levels": "levels"}, max_args=1)
_AS_NUMERIC = FormulaFunction("as_numeric", implementation=_as_numeric)

#: Every function a formula may call, by the name written in the formula.
FUNCTIONS: dict[str, FormulaFunction] = {
    "log": FormulaFunction("log", keywords={"base": "base"}, implementation=_log),
    "exp": FormulaFunction("exp", implementation=np.exp),
    "sqrt": FormulaFunction("sqrt", implementation=np.sqrt),
    "abs": FormulaFunction("abs", implementation=np.abs),
    "log1p": FormulaFunction("log1p", implementation=np.log1p),
    "expm1": FormulaFunction("expm1", implementation=np.expm1),
    "log2": FormulaFunction("log2", implementation=np.log2),
    "log10": FormulaFunction("log10", implementation=np.log10),
    "as.numeric": _AS_NUMERIC,
    "as.double": _AS_NUMERIC,
    "as_numeric": _AS_NUMERIC,
    "scale": FormulaFunction(
        "scale", keywords={"center": "center", "scale": "scale"}, implementation=_scale
    ),
    "center": FormulaFunction("center", implementation=_center),
    "factor": _FACTOR,
    "as.factor": _FACTOR,
    "C": FormulaFunction(
        "C",
        keywords={"levels": "levels", "contr": "contrasts", "contrasts": "contrasts"},
        max_args=2,
    ),
    "I": FormulaFunction("I"),
    "Q": FormulaFunction("Q"),
    "poly": FormulaFunction("poly", keywords={"degree": "degree", "raw": "raw"}),
    "Treatment": FormulaFunction(
        "Treatment", keywords={"reference": "reference"}, needs_argument=False
    ),
    "Sum": FormulaFunction("Sum", needs_argument=False),
    "Helmert": FormulaFunction("Helmert", needs_argument=False),
    "Poly": FormulaFunction("Poly", needs_argument=False),
    "Diff": FormulaFunction("Diff", needs_argument=False),
}

#: The contrast functions (the second argument of ``C()``).
CONTRAST_FUNCTIONS = frozenset({"Treatment", "Sum", "Helmert", "Poly", "Diff"})

#: Contrast names accepted by R's ``C(f, contr)`` (bare or as strings, with or
#: without ``contr.``), as formulaic code.
CONTRASTS: dict[str, str] = {
    "treatment": "Treatment()",
    "sum": "Sum()",
    "helmert": "Helmert()",
    "poly": "Poly()",
}

#: Evaluation context for formulaic: the implementations it does not have (or
#: whose R meaning differs from formulaic's, as ``scale`` with missing values).
TRANSFORMS: dict[str, Callable[..., Any]] = {
    spec.name: spec.implementation for spec in FUNCTIONS.values() if spec.implementation is not None
}

#: Every function name a translated formula may call.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(spec.name for spec in FUNCTIONS.values())

#: Keyword arguments each translated function accepts (formulaic spelling).
TRANSLATED_KEYWORDS: dict[str, frozenset[str]] = {
    name: frozenset(
        keyword
        for spec in FUNCTIONS.values()
        if spec.name == name
        for keyword in spec.keywords.values()
    )
    for name in ALLOWED_FUNCTIONS
}


def allowed_names() -> str:
    """The functions a formula may call, as R users write them, for messages."""
    return ", ".join(sorted(set(FUNCTIONS) - {"as.double"}))
