"""statsmodels' ``profile_re``: the likelihood with one variance held at a grid of values.

For a variance of the groups' random effects (``vtype="re"``) the columns of
``exog_re`` are reordered so that it comes first: held at ``x``, it is the
square of the first entry of the Cholesky factor, one square-root parameter
the optimizer leaves alone.  A variance component (``vtype="vc"``) is one
square-root parameter already.  Every other parameter is refitted at each
grid point, starting from the estimates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import MixedModelsError
from .params import MixedLMParams

if TYPE_CHECKING:
    from .results import MixedLMResults

__all__ = ["profile_re"]


def profile_re(
    results: MixedLMResults,
    re_ix: Any,
    vtype: str,
    num_low: int,
    dist_low: float,
    num_high: int,
    dist_high: float,
    fit_kwargs: dict[str, Any],
) -> np.ndarray:
    """Profile likelihood of one variance.

    Returns
    -------
    ndarray (num_low + num_high + 1, 2)
        The variance (on the data's scale) and the log-likelihood refitted with
        it held fixed; row ``num_low`` is the estimate itself.
    """
    if vtype not in ("re", "vc"):
        raise ValueError(f"vtype must be 're' or 'vc', got {vtype!r}")
    model = results.model
    if model.grouped_data.extra:
        raise MixedModelsError(
            "profile_re is available for statsmodels' models (random effects nested in the "
            "groups); this model has terms of other groupings"
        )
    k_fe, k_re, k_vc = model.k_fe, model.k_re, model.k_vc
    params = results.params_object.copy()
    scale = results.scale
    pattern = results.freepat
    free = MixedLMParams(k_fe, k_re, k_vc)
    free.fe_params = np.ones(k_fe) if pattern is None else np.asarray(pattern.fe_params)
    mask_vc = np.ones(k_vc) if pattern is None else np.array(pattern.vcomp, dtype=float)
    mask_cov = np.ones((k_re, k_re)) if pattern is None else np.array(pattern.cov_re, dtype=float)
    exog_re = model.exog_re
    if vtype == "re":
        if not isinstance(re_ix, (int, np.integer)) or not 0 <= re_ix < k_re:
            raise ValueError(f"re_ix must be an index of cov_re (0 to {k_re - 1}), got {re_ix!r}")
        order = np.arange(k_re)
        order[0], order[re_ix] = re_ix, 0
        exog_re = exog_re[:, order]
        params.cov_re = np.asarray(params.cov_re)[np.ix_(order, order)]
        mask_cov = mask_cov[np.ix_(order, order)]
        mask_cov[0, 0] = 0
        estimate = float(params.cov_re[0, 0])
    else:
        names = list(model.data.vcomp_names)
        if re_ix not in names:
            raise ValueError(f"re_ix must name a variance component ({names}), got {re_ix!r}")
        index = names.index(re_ix)
        mask_vc[index] = 0
        estimate = float(params.vcomp[index])
    free.cov_re = mask_cov
    free.vcomp = mask_vc
    low = (scale * estimate - dist_low) / scale
    high = (scale * estimate + dist_high) / scale
    if low <= 0:
        raise ValueError(
            "dist_low is too large and would result in a negative variance. Try a smaller value."
        )
    values = np.concatenate(
        [np.linspace(low, estimate, num_low + 1), np.linspace(estimate, high, num_high + 1)[1:]]
    )
    # The model's own class: a refit with the variance held fixed.
    refit = type(model)(
        model.endog,
        model.exog,
        model.groups,
        exog_re=exog_re,
        exog_vc=model.exog_vc if k_vc else None,
        use_sqrt=model.use_sqrt,
    )
    rows = []
    for x in values:
        start = params.copy()
        if vtype == "re":
            root = np.linalg.cholesky(np.asarray(start.cov_re) + 1e-300 * np.eye(k_re))
            root[0, 0] = np.sqrt(x)
            start.cov_re = root @ root.T
        else:
            vcomp = np.array(start.vcomp, dtype=float)
            vcomp[index] = x
            start.vcomp = vcomp
        fitted = refit.fit(
            start_params=start, free=free, reml=results.reml, cov_pen=results.cov_pen, **fit_kwargs
        )
        rows.append([x * fitted.scale, fitted.llf])
    return np.asarray(rows)
