"""Engines the benchmark times, one module each.

A Python engine module has ``NAME``, ``unavailable()`` (None, or why it cannot
run and how to install it), ``unsupported(model)`` (None, or why the model
cannot be written for it) and ``fit(model, data)``, which fits from formula
and data frame and returns the fitted criterion (REML criterion or deviance)
so the harness can check that every engine fitted the same model. lme4 runs
in R: :mod:`bench.peers.lme4` has the same first three and the R command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ENGINE_NAMES = ("mixedmodels", "lme4", "glmm", "mixedlm", "statsmodels")
"""All engines, in table order; mixedmodels is the baseline of the ratios."""

_MODULES = {
    "mixedmodels": "bench.peers.mixedmodels_engine",
    "lme4": "bench.peers.lme4",
    "glmm": "bench.peers.glmm_engine",
    "mixedlm": "bench.peers.mixedlm_engine",
    "statsmodels": "bench.peers.statsmodels_engine",
}


def engine(name: str) -> ModuleType:
    """The module of engine ``name`` (one of :data:`ENGINE_NAMES`)."""
    if name not in _MODULES:
        raise KeyError(f"no engine {name!r}; known: {', '.join(ENGINE_NAMES)}")
    return importlib.import_module(_MODULES[name])


def python_package_missing(package: str, hint: str) -> str | None:
    """None if ``package`` imports here, else how to install it."""
    if importlib.util.find_spec(package) is None:
        return f"{package} is not installed ({hint})"
    return None
