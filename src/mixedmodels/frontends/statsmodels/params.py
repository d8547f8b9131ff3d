"""statsmodels' ``MixedLMParams``: one parameter state of a linear mixed model.

The state is the one statsmodels optimises, with the residual variance
profiled out: the fixed effects ``fe_params``, the covariance matrix of the
groups' random effects ``cov_re`` and the variance components ``vcomp``, the
last two *relative to the scale* (divided by σ²).  Packed vectors hold the
fixed effects (optionally), then the lower triangle of ``cov_re`` row by row
(``numpy.tril_indices`` order), then ``vcomp``; with ``use_sqrt`` the lower
triangle is that of the Cholesky factor of ``cov_re`` and the variance
components are square roots — which is exactly the engine's θ for these
terms (λ is the Cholesky factor of the relative covariance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MixedLMParams"]


class MixedLMParams:
    """Parameters of a linear mixed model in statsmodels' profiled form.

    Parameters
    ----------
    k_fe : int
        Number of fixed effects.
    k_re : int
        Number of random effects per group (the dimension of ``cov_re``).
    k_vc : int
        Number of variance components.

    Attributes
    ----------
    fe_params : ndarray, shape (k_fe,)
    cov_re : ndarray, shape (k_re, k_re)
        Covariance of the groups' random effects divided by the scale.
    vcomp : ndarray, shape (k_vc,)
        Variance components divided by the scale.
    k_re2 : int
        ``k_re * (k_re + 1) // 2``, the number of free entries of ``cov_re``.
    k_tot : int
        ``k_fe + k_re2 + k_vc``.
    """

    def __init__(self, k_fe: int, k_re: int, k_vc: int) -> None:
        self.k_fe = int(k_fe)
        self.k_re = int(k_re)
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.k_vc = int(k_vc)
        self.k_tot = self.k_fe + self.k_re2 + self.k_vc
        self._ix = np.tril_indices(self.k_re)
        self.fe_params = np.zeros(self.k_fe)
        self.cov_re = np.zeros((self.k_re, self.k_re))
        self.vcomp = np.zeros(self.k_vc)

    @staticmethod
    def from_packed(
        params: Any, k_fe: int, k_re: int, use_sqrt: bool, has_fe: bool
    ) -> MixedLMParams:
        """Unpack a vector: [fixed effects,] lower triangle of ``cov_re`` (or its root), vcomp.

        Parameters
        ----------
        params : array-like
            The packed vector.
        k_fe, k_re : int
            Numbers of fixed effects and of random effects per group.
        use_sqrt : bool
            The vector holds the Cholesky factor of ``cov_re`` and the square
            roots of the variance components.
        has_fe : bool
            The vector starts with the fixed effects (else they are set to zero).
        """
        params = np.asarray(params, dtype=np.float64).ravel()
        k_re2 = k_re * (k_re + 1) // 2
        offset = k_fe if has_fe else 0
        k_vc = len(params) - offset - k_re2
        if k_vc < 0:
            raise ValueError(
                f"a packed parameter vector for k_fe={k_fe}, k_re={k_re} "
                f"{'with' if has_fe else 'without'} fixed effects needs at least "
                f"{offset + k_re2} values, got {len(params)}"
            )
        out = MixedLMParams(k_fe, k_re, k_vc)
        out.fe_params = params[:k_fe].copy() if has_fe else np.zeros(k_fe)
        lower = np.zeros((k_re, k_re))
        lower[out._ix] = params[offset : offset + k_re2]
        if use_sqrt:
            out.cov_re = lower @ lower.T
        else:
            out.cov_re = lower + lower.T - np.diag(np.diag(lower))
        tail = params[offset + k_re2 :]
        out.vcomp = tail**2 if use_sqrt else tail.copy()
        return out

    @staticmethod
    def from_components(
        fe_params: Any = None, cov_re: Any = None, cov_re_sqrt: Any = None, vcomp: Any = None
    ) -> MixedLMParams:
        """A state from its parts (``cov_re_sqrt``: a lower Cholesky factor of ``cov_re``)."""
        fe = np.zeros(0) if fe_params is None else np.asarray(fe_params, dtype=np.float64)
        vc = np.zeros(0) if vcomp is None else np.asarray(vcomp, dtype=np.float64).ravel()
        if cov_re_sqrt is not None:
            root = np.atleast_2d(np.asarray(cov_re_sqrt, dtype=np.float64))
            cov = root @ root.T
        elif cov_re is not None:
            cov = np.atleast_2d(np.asarray(cov_re, dtype=np.float64))
        else:
            cov = np.zeros((0, 0))
        if cov.shape[0] != cov.shape[1]:
            raise ValueError(f"cov_re must be a square matrix, got shape {cov.shape}")
        out = MixedLMParams(len(fe), cov.shape[0], len(vc))
        out.fe_params = fe
        out.cov_re = cov
        out.vcomp = vc
        return out

    def copy(self) -> MixedLMParams:
        """An independent copy."""
        out = MixedLMParams(self.k_fe, self.k_re, self.k_vc)
        out.fe_params = np.array(self.fe_params, dtype=np.float64, copy=True)
        out.cov_re = np.array(self.cov_re, dtype=np.float64, copy=True)
        out.vcomp = np.array(self.vcomp, dtype=np.float64, copy=True)
        return out

    def get_packed(self, use_sqrt: bool, has_fe: bool = False) -> np.ndarray:
        """The state as one vector (see :meth:`from_packed`).

        With ``use_sqrt`` a ``cov_re`` that has no Cholesky factor (not
        positive definite) is packed as the root of its diagonal, as
        statsmodels does.
        """
        cov = np.asarray(self.cov_re, dtype=np.float64)
        if self.k_re:
            if use_sqrt:
                try:
                    root = np.linalg.cholesky(cov)
                except np.linalg.LinAlgError:
                    root = np.diag(np.sqrt(np.maximum(np.diag(cov), 0.0)))
                tri = root[self._ix]
            else:
                tri = cov[self._ix]
        else:
            tri = np.zeros(0)
        vcomp = np.asarray(self.vcomp, dtype=np.float64)
        vc = np.sqrt(vcomp) if use_sqrt else vcomp
        parts = [np.asarray(self.fe_params, dtype=np.float64)] if has_fe else []
        return np.concatenate([*parts, tri, vc])

    def __repr__(self) -> str:
        return (
            f"MixedLMParams(k_fe={self.k_fe}, k_re={self.k_re}, k_vc={self.k_vc}, "
            f"fe_params={np.asarray(self.fe_params).tolist()}, "
            f"cov_re={np.asarray(self.cov_re).tolist()}, vcomp={np.asarray(self.vcomp).tolist()})"
        )
