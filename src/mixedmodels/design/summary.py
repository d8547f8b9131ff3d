"""What the design's checks need of a matrix's columns, in one pass over its values.

The checks on y, X and each Z (:func:`.matrices.checked_peaks`), the test for
aliased columns (:func:`.matrices.aliased_columns`) and lme4's scale warning
(:func:`.checks.warn_predictor_scales`) all read the same few numbers of each
column: its largest magnitude (NaN when it holds a NaN or an infinity),
whether it is a 0/1 indicator, and its standard deviation.  Computed with
numpy these take a dozen passes over a model matrix, each allocating a copy
(slow on the tall, narrow, row-major matrices of a design); compiled, one pass
for the first two and one more, centred, for the third.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine.kernels import compiled

__all__ = ["ColumnSummary", "summarize_columns"]

_KERNEL = None
_TRIED = False


@dataclass(frozen=True)
class ColumnSummary:
    """Per column of a matrix.

    Attributes
    ----------
    peak : ndarray
        The largest magnitude; NaN for a column holding a NaN or an infinity
        (zeros without rows).
    indicator : ndarray of bool
        Whether every value is 0 or 1.
    sd : ndarray
        The standard deviation (ddof 1), or None when not asked for; zero
        with fewer than two rows.
    """

    peak: np.ndarray
    indicator: np.ndarray
    sd: np.ndarray | None


def _kernel():
    """The compiled :func:`column_summary`, or None without numba (compiled on first use)."""
    global _KERNEL, _TRIED
    if not _TRIED:
        _TRIED = True
        _KERNEL = compiled(column_summary)
    return _KERNEL


def column_summary(matrix, spread, peak, indicator, sd):  # pragma: no cover - numba
    """Fill ``peak`` and ``indicator`` (and ``sd`` when ``spread``) for each column.

    Column by column, the sums in registers (a design has few columns, and
    its rows fit in cache).
    """
    n, p = matrix.shape
    for j in range(p):
        top = 0.0
        total = 0.0
        bad = False
        zero_one = True
        for i in range(n):
            v = matrix[i, j]
            a = abs(v)
            if a > top:
                top = a
            elif not a <= top:  # NaN
                bad = True
            if v != 0.0 and v != 1.0:
                zero_one = False
            total += v
        bad = bad or top == math.inf
        peak[j] = math.nan if bad else top
        indicator[j] = zero_one
        sd[j] = 0.0
        if spread and n >= 2:
            if bad:
                sd[j] = math.nan
                continue
            mean = total / n
            squares = 0.0
            for i in range(n):
                d = matrix[i, j] - mean
                squares += d * d
            sd[j] = math.sqrt(squares / (n - 1))


def summarize_columns(
    values: np.ndarray, spread: bool = True, *, use_numba: bool | None = None
) -> ColumnSummary:
    """The :class:`ColumnSummary` of ``values`` (shape (n,) or (n, k)).

    ``spread=False`` skips the standard deviations (a second pass).
    ``use_numba`` forces (True) or refuses (False) the compiled pass; by
    default it runs when numba is installed.
    """
    matrix = values if values.ndim == 2 else values.reshape(len(values), -1)
    p = matrix.shape[1]
    kernel = _kernel() if use_numba is not False else None
    if use_numba and kernel is None:
        raise ImportError("numba is not installed")
    if kernel is not None:
        peak = np.empty(p)
        indicator = np.empty(p, dtype=bool)
        sd = np.empty(p)
        kernel(np.ascontiguousarray(matrix, dtype=np.float64), spread, peak, indicator, sd)
        return ColumnSummary(peak, indicator, sd if spread else None)
    return _summary_numpy(matrix, spread)


def _summary_numpy(matrix: np.ndarray, spread: bool) -> ColumnSummary:
    """:func:`summarize_columns` by numpy's reductions."""
    n, p = matrix.shape
    if n == 0:
        return ColumnSummary(np.zeros(p), np.ones(p, dtype=bool), np.zeros(p) if spread else None)
    peak = np.max(np.abs(matrix), axis=0)
    peak[~np.isfinite(peak)] = np.nan
    indicator = ((matrix == 0.0) | (matrix == 1.0)).all(axis=0)
    sd = None
    if spread:
        sd = np.zeros(p)
        if n >= 2:
            # A column holding an infinity has no spread (NaN), as in the compiled pass.
            with np.errstate(invalid="ignore", over="ignore"):
                centred = matrix - matrix.sum(axis=0) / n
                sd = np.sqrt(np.einsum("ij,ij->j", centred, centred) / (n - 1))
    return ColumnSummary(peak, indicator, sd)
