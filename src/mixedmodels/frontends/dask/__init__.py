"""The Dask front end: linear and generalized linear mixed models fitted to a Dask
DataFrame, out of core."""

from .detect import is_dask_dataframe
from .glmm import dask_glmm, fit_dask_glmm
from .model import DaskDesign, dask_model, fit_dask
from .rows import DaskRows

# The name of earlier releases: a function now, returning a LinearMixedModel.
DaskLinearMixedModel = dask_model

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
