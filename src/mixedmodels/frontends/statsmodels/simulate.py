"""statsmodels' ``MixedLM.get_distribution``: responses simulated from given parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .layout import lower_root
from .params import MixedLMParams

if TYPE_CHECKING:
    from .model import MixedLM

__all__ = ["MixedLMDistribution"]


class MixedLMDistribution:
    """A generator of responses from a mixed model with given parameters.

    Parameters
    ----------
    model : MixedLM
    params : array-like
        Packed: fixed effects, the lower triangle of ``cov_re`` (not its
        root) and the variance components, both divided by ``scale``.
    scale : float
        Residual variance.
    exog : array-like, optional
        Fixed-effects design (default: the model's).
    """

    def __init__(self, model: MixedLM, params: Any, scale: float, exog: Any = None) -> None:
        self.model = model
        self.exog = model.exog if exog is None else np.asarray(exog, dtype=np.float64)
        po = MixedLMParams.from_packed(params, model.k_fe, model.k_re, False, True)
        self.fe_params = po.fe_params
        self.cov_re = scale * np.asarray(po.cov_re)
        self.vcomp = scale * np.asarray(po.vcomp)
        self.scale = float(scale)
        if model.grouped_data.extra:
            raise ValueError("get_distribution needs a model whose random effects are in groups")

    def rvs(self, n: Any = None, rng: Any = None) -> np.ndarray:  # noqa: ARG002 - n: statsmodels'
        """One simulated response vector (``n`` is ignored, as in statsmodels).

        ``rng``: a seed, a numpy ``Generator`` or ``RandomState``.
        """
        if not hasattr(rng, "normal"):
            rng = np.random.default_rng(rng)
        model = self.model
        data = model.grouped_data
        codes = data.group_codes
        y = self.exog @ self.fe_params
        if model.k_re:
            root = lower_root(self.cov_re)
            if root is None:
                raise ValueError("cov_re is not positive semi-definite")
            u = rng.normal(size=(model.n_groups, model.k_re)) @ root.T
            y = y + np.einsum("nq,nq->n", data.exog_re, u[codes])
        for component, variance in zip(data.vc, self.vcomp, strict=True):
            u = rng.normal(size=component.values.shape[1] * model.n_groups).reshape(
                model.n_groups, -1
            )
            y = y + np.sqrt(variance) * np.einsum("nq,nq->n", component.values, u[codes])
        return y + np.sqrt(self.scale) * rng.normal(size=len(y))
