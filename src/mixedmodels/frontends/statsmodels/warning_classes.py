"""The warnings of the statsmodels front door, catchable by statsmodels' names too.

statsmodels code filters or catches ``statsmodels.tools.sm_exceptions.
ConvergenceWarning`` and ``SingularMatrixWarning``.  The classes here derive
from this package's own warnings; when statsmodels' ``sm_exceptions`` module
is loaded — and a caller can only name statsmodels' classes if it is — the
warning is issued as a subclass of both, so ``except`` clauses, filters and
``pytest.warns`` written for either package match.

statsmodels stays optional and is never imported here: importing its
exceptions module loads much of statsmodels (over 100 ms), which
``import mixedmodels`` must not pay.
"""

from __future__ import annotations

import sys
import warnings

from ...errors import (
    BoundaryWarning,
    MixedLMConvergenceWarning,
    SingularMatrixWarning,
    user_stacklevel,
)

__all__ = [
    "BoundaryWarning",
    "MixedLMConvergenceWarning",
    "SingularMatrixWarning",
    "category",
    "warn",
]

_SM_EXCEPTIONS = "statsmodels.tools.sm_exceptions"


_DUAL: dict[type[Warning], type[Warning]] = {}


def category(ours: type[Warning]) -> type[Warning]:
    """``ours``, or a subclass of it and of statsmodels' namesake when statsmodels is loaded."""
    module = sys.modules.get(_SM_EXCEPTIONS)
    theirs = getattr(module, getattr(ours, "statsmodels_name", ""), None) if module else None
    if not (isinstance(theirs, type) and issubclass(theirs, Warning)):
        return ours
    dual = _DUAL.get(ours)
    if dual is None or not issubclass(dual, theirs):
        dual = type(ours.__name__, (ours, theirs), {"__module__": ours.__module__})
        dual.__doc__ = ours.__doc__
        _DUAL[ours] = dual
    return dual


def warn(message: str, ours: type[Warning]) -> None:
    """Issue ``message`` as :func:`category` (``ours``), pointing at the user's line."""
    warnings.warn(message, category(ours), stacklevel=user_stacklevel())
