"""The Dask front end: linear and generalized linear mixed models fitted to a Dask
DataFrame, out of core.

Its modules are imported on first use (PEP 562): the in-memory API asks only
whether its data is a Dask DataFrame (:func:`is_dask_dataframe`, which
imports nothing heavy).
"""

from typing import TYPE_CHECKING

from .detect import is_dask_dataframe

if TYPE_CHECKING:
    from .glmm import dask_glmm, fit_dask_glmm
    from .model import DaskDesign, dask_model, fit_dask
    from .rows import DaskRows

    DaskLinearMixedModel = dask_model

_LAZY = {
    "DaskDesign": (".model", "DaskDesign"),
    "dask_model": (".model", "dask_model"),
    "fit_dask": (".model", "fit_dask"),
    "DaskRows": (".rows", "DaskRows"),
    "dask_glmm": (".glmm", "dask_glmm"),
    "fit_dask_glmm": (".glmm", "fit_dask_glmm"),
    # The name of earlier releases: a function now, returning a LinearMixedModel.
    "DaskLinearMixedModel": (".model", "dask_model"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module_name, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DaskDesign",
    "DaskLinearMixedModel",
    "DaskRows",
    "dask_glmm",
    "dask_model",
    "fit_dask",
    "fit_dask_glmm",
    "is_dask_dataframe",
]
