"""The Dask front end: a linear mixed model fitted to a Dask DataFrame, out of core."""

from .detect import is_dask_dataframe
from .model import DaskDesign, dask_model, fit_dask
from .rows import DaskRows

# The name of earlier releases: a function now, returning a LinearMixedModel.
DaskLinearMixedModel = dask_model

__all__ = [
    "DaskDesign",
    "DaskLinearMixedModel",
    "DaskRows",
    "dask_model",
    "fit_dask",
    "is_dask_dataframe",
]
