"""R's spline bases ``ns()`` and ``bs()`` (package splines), with R's knots and columns.

formulaic's ``cr()`` is mgcv's natural cubic regression spline, not R's
``ns()``, and its ``bs()`` chooses its knots differently; these are R's:
interior knots at the quantiles of ``x`` (R's default quantile rule),
boundary knots at its range, the B-spline basis of ``splineDesign`` and, for
``ns()``, the basis of the natural splines obtained by projecting out the
second derivatives at the boundary knots with the QR decomposition R uses.
Outside the boundary knots ``ns()`` continues linearly and ``bs()`` by its
Taylor polynomial at a point just inside, as R does for new data.

Both are stateful transforms: the knots found on the fit's data are kept
for new data (R's ``makepredictcall``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from formulaic.materializers.types import FactorValues
from formulaic.utils.stateful_transforms import stateful_transform

from .limits import MAX_BASIS_COLUMNS

__all__ = ["bs", "ns"]


def _values(x: Any) -> np.ndarray:
    raw = x.__wrapped__ if isinstance(x, FactorValues) else x
    return np.asarray(raw, dtype=np.float64).ravel()


def _design(knots: np.ndarray, x: np.ndarray, order: int, derivative: int = 0) -> np.ndarray:
    """R's ``splineDesign(knots, x, ord, derivs)``: each B-spline (or a derivative) at ``x``.

    ``x`` must lie within the boundary knots; the right boundary belongs to
    the last interval, as in R.
    """
    n_basis = len(knots) - order
    # scipy.interpolate is imported on first use (a tenth of a second at import).
    from scipy.interpolate import BSpline

    spline = BSpline(knots, np.eye(n_basis), order - 1, extrapolate=False)
    values = spline(x, nu=derivative) if derivative else spline(x)
    return np.nan_to_num(np.asarray(values).reshape(len(x), n_basis))


def _interior_knots(x: np.ndarray, count: int, boundary: np.ndarray) -> np.ndarray:
    """``count`` interior knots at equally spaced quantiles of the ``x`` inside the boundary."""
    if count <= 0:
        return np.empty(0)
    inside = x[(x >= boundary[0]) & (x <= boundary[1])]
    probabilities = np.linspace(0.0, 1.0, count + 2)[1:-1]
    return np.quantile(inside, probabilities)


def _knots_state(
    x: np.ndarray,
    state: dict,
    df: Any,
    knots: Any,
    boundary_knots: Any,
    extra: int,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The interior and boundary knots: from the state, else found on ``x`` and stored."""
    if "knots" not in state:
        finite = x[np.isfinite(x)]
        if boundary_knots is not None:
            boundary = np.sort(np.asarray(boundary_knots, dtype=np.float64))
        else:
            if finite.size == 0:
                raise ValueError(f"{what} needs finite values of x")
            boundary = np.array([finite.min(), finite.max()])
        if knots is not None:
            interior = np.sort(np.atleast_1d(np.asarray(knots, dtype=np.float64)))
        elif df is not None:
            count = int(df) - extra
            if count < 0:
                raise ValueError(f"df = {int(df)} is too small for {what}: at least {extra}")
            interior = _interior_knots(finite, count, boundary)
        else:
            raise ValueError(f"{what} needs df (the number of columns) or knots")
        if len(interior) + extra > MAX_BASIS_COLUMNS:
            raise ValueError(f"{what} would have more than {MAX_BASIS_COLUMNS} columns")
        state["knots"] = [float(k) for k in interior]
        state["boundary_knots"] = [float(b) for b in boundary]
    return np.asarray(state["knots"], dtype=np.float64), np.asarray(
        state["boundary_knots"], dtype=np.float64
    )


def _basis(
    x: np.ndarray, all_knots: np.ndarray, order: int, boundary: np.ndarray, outside_rule: str
) -> np.ndarray:
    """The B-spline basis at ``x``, continued outside the boundary knots by ``outside_rule``.

    ``"linear"`` (``ns``): value and slope at the boundary knot; ``"taylor"``
    (``bs``): the Taylor polynomial of the basis at a point a quarter of the
    way to the nearest interior knot, as R.
    """
    n_basis = len(all_knots) - order
    out = np.full((len(x), n_basis), np.nan)
    present = ~np.isnan(x)
    below = present & (x < boundary[0])
    above = present & (x > boundary[1])
    inside = present & ~below & ~above
    if inside.any():
        out[inside] = _design(all_knots, x[inside], order)
    for side, pivot_rule in ((below, 0), (above, 1)):
        if not side.any():
            continue
        if outside_rule == "linear":
            pivot = boundary[pivot_rule]
            derivatives = (0, 1)
        else:
            neighbour = (
                all_knots[order] if pivot_rule == 0 else all_knots[len(all_knots) - order - 1]
            )
            pivot = 0.75 * boundary[pivot_rule] + 0.25 * neighbour
            derivatives = tuple(range(order))
        at = np.array([pivot])
        taylor = np.vstack(
            [_design(all_knots, at, order, d) / math.factorial(d) for d in derivatives]
        )
        powers = (x[side] - pivot)[:, None] ** np.arange(len(derivatives))[None, :]
        out[side] = powers @ taylor
    return out


@stateful_transform
def ns(
    x: Any,
    df: Any = None,
    knots: Any = None,
    intercept: bool = False,
    boundary_knots: Any = None,
    _state: dict | None = None,
) -> FactorValues:
    """R's ``ns(x, df)``: a natural cubic spline basis with ``df`` columns (1 to df)."""
    state = {} if _state is None else _state
    values = _values(x)
    extra = 1 + int(bool(intercept))
    interior, boundary = _knots_state(values, state, df, knots, boundary_knots, extra, "ns()")
    all_knots = np.sort(np.concatenate([np.repeat(boundary, 4), interior]))
    basis = _basis(values, all_knots, 4, boundary, "linear")
    constraint = np.vstack([_design(all_knots, boundary[i : i + 1], 4, 2) for i in (0, 1)])
    if not intercept:
        basis, constraint = basis[:, 1:], constraint[:, 1:]
    # R: t(qr.qty(qr(t(const)), t(basis)))[, -(1:2)]: the basis in the complement
    # of the boundary second derivatives.
    q, _ = np.linalg.qr(constraint.T, mode="complete")
    basis = (basis @ q)[:, 2:]
    names = tuple(str(i) for i in range(1, basis.shape[1] + 1))
    return FactorValues(basis, column_names=names)


@stateful_transform
def bs(
    x: Any,
    df: Any = None,
    knots: Any = None,
    degree: Any = 3,
    intercept: bool = False,
    boundary_knots: Any = None,
    _state: dict | None = None,
) -> FactorValues:
    """R's ``bs(x, df, degree)``: a B-spline basis of ``degree`` with ``df`` columns."""
    state = {} if _state is None else _state
    values = _values(x)
    degree = int(degree)
    if degree < 1:
        raise ValueError("degree must be at least 1")
    order = degree + 1
    extra = order - 1 + int(bool(intercept))
    interior, boundary = _knots_state(values, state, df, knots, boundary_knots, extra, "bs()")
    all_knots = np.sort(np.concatenate([np.repeat(boundary, order), interior]))
    basis = _basis(values, all_knots, order, boundary, "taylor")
    if not intercept:
        basis = basis[:, 1:]
    names = tuple(str(i) for i in range(1, basis.shape[1] + 1))
    return FactorValues(basis, column_names=names)
