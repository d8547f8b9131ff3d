"""What the design's checks need of a matrix's columns, in one pass over its values.

The checks on y, X and each Z (:func:`.matrices.checked_peaks`), the test for
aliased columns (:func:`.matrices.aliased_columns`) and lme4's scale warning
(:func:`.checks.warn_predictor_scales`) all read the same few numbers of each
column: its largest magnitude (NaN when it holds a NaN or an infinity),
whether it is a 0/1 indicator, and its standard deviation.  Computed with
numpy these take a dozen passes over a model matrix, each allocating a copy
(slow on the tall, narrow, row-major matrices of a design); compiled, one pass
for the first two and one more, centred, for the third.

The compiled pass can also settle the test for aliased columns in the common
case where there are none: from the columns' cross-products it tells a
matrix whose columns are, beyond any rounding error, linearly independent
(:func:`surely_full_rank`); only the others need the QR factorisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine.jit import compiled_on_first_use

__all__ = [
    "ColumnSummary",
    "FixedSummary",
    "summarize_columns",
    "summarize_fixed",
    "surely_full_rank",
]


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
    full_rank : bool
        True when the columns were found linearly independent beyond doubt
        (:func:`surely_full_rank`, when asked for and compiled); False says
        nothing: whether columns are aliased is then the QR's to tell.
    """

    peak: np.ndarray
    indicator: np.ndarray
    sd: np.ndarray | None
    full_rank: bool = False


def column_summary(matrix, spread, peak, indicator, sd):  # pragma: no cover - numba
    """Fill ``peak`` and ``indicator`` (and ``sd`` when ``spread``) for each column.

    Column by column, the sums in registers (a design has few columns, and
    its rows fit in cache).  Two rows a step, each with its own running
    maximum and without branches: the loop is bound by the latency of those
    maxima, not by the work (a third faster than one row a step).  The sums
    still add the rows in order, so the standard deviations are those of one
    row a step, to the last bit.
    """
    n, p = matrix.shape
    for j in range(p):
        top = 0.0
        top_odd = 0.0  # the maximum over the odd rows of the steps
        nan = False
        zero_one = True
        total = 0.0
        i = 0
        while i + 2 <= n:
            v = matrix[i, j]
            w = matrix[i + 1, j]
            a = abs(v)
            b = abs(w)
            top = a if a > top else top
            top_odd = b if b > top_odd else top_odd
            nan |= (a != a) | (b != b)
            zero_one &= ((v == 0.0) | (v == 1.0)) & ((w == 0.0) | (w == 1.0))
            total += v
            total += w
            i += 2
        if i < n:  # the last row of an odd number
            v = matrix[i, j]
            a = abs(v)
            top = a if a > top else top
            nan |= a != a
            zero_one &= (v == 0.0) | (v == 1.0)
            total += v
        top = top_odd if top_odd > top else top
        bad = nan or top == math.inf
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


#: The compiled :func:`column_summary` (None without numba).
_kernel = compiled_on_first_use(column_summary)

# The largest magnitudes of columns the screen takes: their products stay far
# from overflow and from subnormal numbers.
_SCREEN_MAGNITUDES = (1e-100, 1e100)
# Columns up to which the compiled pass screens for full rank (beyond, the
# cross-products cost about as much as the QR).
_SCREEN_COLUMNS = 16
# A column is independent beyond doubt when the part of it orthogonal to the
# columns before it is at least this fraction of its norm (the QR's tolerance,
# :data:`.matrices.RANK_TOLERANCE`, is 1e-7) ...
_SCREEN_RESIDUAL = 0.03
# ... and the columns scaled to unit norm have an inverse triangular factor of
# at most this Frobenius norm (so that rounding cannot move those fractions).
_SCREEN_INVERSE = 100.0


def surely_full_rank(matrix, peak):  # pragma: no cover - numba
    """Whether the columns of ``matrix`` (``peak``: their nonzero largest magnitudes) are
    linearly independent with a margin no rounding error can cross.

    The QR of :func:`.matrices.aliased_columns` keeps column j when the norm of
    its part orthogonal to the columns before it, |R_jj|, exceeds 1e-7 of
    its norm.  Here the same fractions come from the Cholesky factor of the
    columns' cross-products (scaled to unit diagonal): when each is above
    0.03 and that factor's inverse is small (its Frobenius norm below 100,
    which bounds how far rounding in the cross-products, about n·ε, and in
    the QR, can move them), the QR would keep every column: no column is
    aliased.  Anything else returns False, and the QR decides.
    """
    n, p = matrix.shape
    if p == 0 or p > _SCREEN_COLUMNS or n < p:
        return False
    scale = np.empty(p)
    for j in range(p):
        # Zero columns, NaN, and magnitudes whose products could be subnormal (and
        # lose precision) are the QR's to judge.
        if not (_SCREEN_MAGNITUDES[0] <= peak[j] <= _SCREEN_MAGNITUDES[1]):
            return False
        scale[j] = 1.0 / peak[j]
    # Cross-products of the columns scaled by their peaks (no overflow or underflow).
    gram = np.zeros((p, p))
    for j in range(p):
        for k in range(j + 1):
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            i = 0
            while i + 4 <= n:
                s0 += matrix[i, j] * matrix[i, k]
                s1 += matrix[i + 1, j] * matrix[i + 1, k]
                s2 += matrix[i + 2, j] * matrix[i + 2, k]
                s3 += matrix[i + 3, j] * matrix[i + 3, k]
                i += 4
            while i < n:
                s0 += matrix[i, j] * matrix[i, k]
                i += 1
            gram[j, k] = (s0 + s1 + s2 + s3) * scale[j] * scale[k]
    # Unit diagonal: the cross-products of the columns scaled to norm 1.
    for j in range(p):
        if not (gram[j, j] > 0.0):
            return False
        scale[j] = 1.0 / math.sqrt(gram[j, j])
    # Cholesky, lower factor L (R = Lᵀ): L_jj² is column j's orthogonal fraction squared.
    low = np.zeros((p, p))
    for j in range(p):
        for k in range(j + 1):
            s = gram[j, k] * scale[j] * scale[k]
            for m in range(k):
                s -= low[j, m] * low[k, m]
            if k == j:
                if not (s >= _SCREEN_RESIDUAL * _SCREEN_RESIDUAL):
                    return False
                low[j, j] = math.sqrt(s)
            else:
                low[j, k] = s / low[k, k]
    # The inverse of L, column by column; its Frobenius norm bounds the rounding's effect.
    total = 0.0
    inverse = np.zeros((p, p))
    for k in range(p):
        for j in range(k, p):
            s = 1.0 if j == k else 0.0
            for m in range(k, j):
                s -= low[j, m] * inverse[m, k]
            inverse[j, k] = s / low[j, j]
            total += inverse[j, k] * inverse[j, k]
    return total <= _SCREEN_INVERSE * _SCREEN_INVERSE


#: The compiled :func:`surely_full_rank` (None without numba).
_screen = compiled_on_first_use(surely_full_rank)

# Standard deviations lme4's scale check (:func:`.checks.warn_predictor_scales`,
# a factor of 1000) surely passes within: a margin far beyond the error of the
# estimate below and the rounding of the check's logarithms.
_SCALES_HIGH = 999.0
_SCALES_LOW = 1.0 / 999.0
# The relative error of the estimated variances the scale screen accepts.
_SCALES_ERROR = 1e-4
_EPSILON = 2.0**-52


def fixed_summary(matrix, response, scan, peak, indicator):  # pragma: no cover - numba
    """X's largest magnitudes and 0/1 indicators (``peak``, ``indicator``, as
    :func:`column_summary` fills them), whether X's columns are surely of full rank
    (:func:`surely_full_rank`), whether lme4's scale check surely passes on them, and the
    response's largest magnitude and whether it is constant: one compiled call for the
    checks of y and X.  Only the columns ``scan`` marks are read: the others are
    known to be 0/1 indicators each holding a 1 (the intercept, a factor's levels).

    Four rows a step, each with its own running maximum and sums: the loop is
    bound by its work, not by the latency of one chain.  The scale check wants
    the columns' standard deviations only to tell the usual case, all within a
    factor of 999 of 1 and of each other, from the rest: they are estimated
    here in the same pass, from the sums of the values less the first and of
    their squares, and a column whose estimate could be off by more than
    ``_SCALES_ERROR`` (its variance tiny against its spread from the first
    value, a constant column, values whose squares leave the floating-point
    range) leaves the check to :func:`.checks.warn_predictor_scales` on the
    exact (two-pass) standard deviations.

    Returns the response's largest magnitude (NaN when it holds a NaN or an
    infinity, zero without rows), whether it is constant (it has rows, all
    equal), whether X is surely of full rank, and whether the scale check
    surely passes.
    """
    n, p = matrix.shape
    low = math.inf
    high = 0.0
    sure = True
    for j in range(p):
        if not scan[j]:
            peak[j] = 1.0 if n else 0.0
            indicator[j] = True
            continue
        shift = matrix[0, j] if n else 0.0
        t0 = t1 = t2 = t3 = 0.0
        s0 = s1 = s2 = s3 = 0.0
        q0 = q1 = q2 = q3 = 0.0
        nan = False
        zero_one = True
        i = 0
        while i + 4 <= n:
            v0 = matrix[i, j]
            v1 = matrix[i + 1, j]
            v2 = matrix[i + 2, j]
            v3 = matrix[i + 3, j]
            a0 = abs(v0)
            a1 = abs(v1)
            a2 = abs(v2)
            a3 = abs(v3)
            t0 = a0 if a0 > t0 else t0
            t1 = a1 if a1 > t1 else t1
            t2 = a2 if a2 > t2 else t2
            t3 = a3 if a3 > t3 else t3
            nan |= (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3)
            zero_one &= (
                ((v0 == 0.0) | (v0 == 1.0))
                & ((v1 == 0.0) | (v1 == 1.0))
                & ((v2 == 0.0) | (v2 == 1.0))
                & ((v3 == 0.0) | (v3 == 1.0))
            )
            d0 = v0 - shift
            d1 = v1 - shift
            d2 = v2 - shift
            d3 = v3 - shift
            s0 += d0
            s1 += d1
            s2 += d2
            s3 += d3
            q0 += d0 * d0
            q1 += d1 * d1
            q2 += d2 * d2
            q3 += d3 * d3
            i += 4
        while i < n:
            v0 = matrix[i, j]
            a0 = abs(v0)
            t0 = a0 if a0 > t0 else t0
            nan |= a0 != a0
            zero_one &= (v0 == 0.0) | (v0 == 1.0)
            d0 = v0 - shift
            s0 += d0
            q0 += d0 * d0
            i += 1
        top = max(max(t0, t1), max(t2, t3))
        bad = nan or top == math.inf
        peak[j] = math.nan if bad else top
        indicator[j] = zero_one
        if zero_one or n < 2:
            continue  # an indicator does not count in the check
        total = (s0 + s1) + (s2 + s3)
        squares = (q0 + q1) + (q2 + q3)
        centred = squares - total * total / n
        # The sums' rounding is within 4·n·ε of the squares' sum (doubled for safety).
        if (
            bad
            or not (1e-290 < squares < 1e290)
            or not (centred * _SCALES_ERROR >= 8.0 * n * _EPSILON * squares)
        ):
            sure = False
            continue
        s = math.sqrt(centred / (n - 1))
        low = s if s < low else low
        high = s if s > high else high
    usual = sure and (
        high == 0.0 or (_SCALES_LOW <= low and high <= _SCALES_HIGH and high <= _SCALES_HIGH * low)
    )
    m = len(response)
    r0 = r1 = 0.0
    nan = False
    constant = m > 0
    first = response[0] if m else 0.0
    i = 0
    while i + 2 <= m:
        v0 = response[i]
        v1 = response[i + 1]
        a0 = abs(v0)
        a1 = abs(v1)
        r0 = a0 if a0 > r0 else r0
        r1 = a1 if a1 > r1 else r1
        nan |= (a0 != a0) | (a1 != a1)
        constant &= (v0 == first) & (v1 == first)
        i += 2
    if i < m:
        v0 = response[i]
        a0 = abs(v0)
        r0 = a0 if a0 > r0 else r0
        nan |= a0 != a0
        constant &= v0 == first
    top = max(r0, r1)
    response_peak = math.nan if nan or top == math.inf else top
    return response_peak, constant, _surely_full_rank(matrix, peak), usual


# The compiled surely_full_rank, set by _fixed_kernel's first call, before
# fixed_summary (which calls it by this name) is compiled.
_surely_full_rank = None
#: The compiled :func:`fixed_summary` (None without numba).
_fixed_kernel = compiled_on_first_use(fixed_summary, _surely_full_rank=surely_full_rank)


@dataclass(frozen=True)
class FixedSummary:
    """What the checks of y and X read, from :func:`summarize_fixed`'s one compiled call.

    Attributes
    ----------
    response_peak : float
        The response's largest magnitude (NaN when it holds a NaN or an infinity).
    response_constant : bool
        Whether every value of the response is the same.
    columns : ColumnSummary
        X's, with ``full_rank`` and without standard deviations (``sd`` None).
    usual_scales : bool
        True when lme4's scale check surely passes on every column of X;
        False says nothing (the check decides).
    """

    response_peak: float
    response_constant: bool
    columns: ColumnSummary
    usual_scales: bool


def summarize_fixed(
    response: np.ndarray, x: np.ndarray, scan: np.ndarray | None = None
) -> FixedSummary | None:
    """The :class:`FixedSummary` of the response and X (float64), or None without numba
    (the caller then summarises each with :func:`summarize_columns`).

    ``scan`` marks the columns of X to read (bool, all by default); the others
    must be 0/1 indicators each holding a 1 (as :meth:`.plain.PlainPart.matrix`
    says of its intercept and factor levels), whose summary is known.
    """
    kernel = _fixed_kernel()
    if kernel is None:
        return None
    p = x.shape[1]
    if scan is None:
        scan = np.ones(p, dtype=bool)
    peak = np.empty(p)
    indicator = np.empty(p, dtype=bool)
    matrix = np.ascontiguousarray(x, dtype=np.float64)
    y_peak, constant, full_rank, usual = kernel(matrix, response, scan, peak, indicator)
    return FixedSummary(y_peak, constant, ColumnSummary(peak, indicator, None, full_rank), usual)


def summarize_columns(
    values: np.ndarray,
    spread: bool = True,
    *,
    rank: bool = False,
    use_numba: bool | None = None,
) -> ColumnSummary:
    """The :class:`ColumnSummary` of ``values`` (shape (n,) or (n, k)).

    ``spread=False`` skips the standard deviations (a second pass); ``rank``
    asks for :attr:`ColumnSummary.full_rank` (compiled only).
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
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        kernel(matrix, spread, peak, indicator, sd)
        screen = _screen() if rank else None
        full_rank = screen is not None and bool(screen(matrix, peak))
        return ColumnSummary(peak, indicator, sd if spread else None, full_rank)
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
