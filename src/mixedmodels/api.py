"""The functions most users call: fit a model from a formula and a data frame.

They choose the front end from the data: a pandas or polars DataFrame (or a
dict of columns) is fitted in memory, a Dask DataFrame out of core.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .frontends.dask import fit_dask, is_dask_dataframe
from .models.lmm import LinearMixedModel


def lmer(
    formula: str,
    data: Any,
    reml: bool = True,
    *,
    weights: Any = None,
    missing: str = "drop",
    start: np.ndarray | str | None = None,
    check_convergence: bool = True,
) -> LinearMixedModel:
    """Fit a linear mixed model, as lme4's ``lmer``.

    Parameters
    ----------
    formula : str
        lme4 model formula with random-effects terms in parentheses.
    data : pandas.DataFrame, dict of columns or dask.dataframe.DataFrame
        The data; never modified.  A Dask DataFrame is fitted out of core
        (:func:`mixedmodels.frontends.dask.fit_dask`).
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    weights, missing
        See :class:`LinearMixedModel`.
    start : array or "lme4", optional
        Initial θ (default: moment estimates; see :meth:`LinearMixedModel.fit`).
    check_convergence : bool, default True
        Check the optimum by finite differences (see :meth:`LinearMixedModel.fit`).

    Returns
    -------
    LinearMixedModel
        The fitted model.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> m = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> m.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    """
    if is_dask_dataframe(data):
        return fit_dask(
            formula,
            data,
            reml=reml,
            weights=weights,
            missing=missing,
            start=start,
            check_convergence=check_convergence,
        )
    model = LinearMixedModel(formula, data, reml=reml, weights=weights, missing=missing)
    return model.fit(start=start, check_convergence=check_convergence)
