"""The optimizer and its convergence check (engine.optimize) on functions with known minima."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixedmodels.engine.optimize import (
    GRADIENT_TOLERANCE,
    check_convergence,
    finite_difference_derivatives,
    minimize_bobyqa,
    restart_steps,
)

# A positive-definite quadratic with its minimum at CENTRE.
CENTRE = np.array([1.5, -0.5, 2.0])
H = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.4], [0.5, -0.4, 2.0]])


def quadratic(x: np.ndarray) -> float:
    d = np.asarray(x) - CENTRE
    return float(0.5 * d @ H @ d + 3.0)


def rosenbrock(x: np.ndarray) -> float:
    return float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)


def test_interior_minimum_is_found():
    lower = np.array([0.0, -np.inf, 0.0])
    x, value, n_eval, status = minimize_bobyqa(quadratic, np.array([1.0, 0.0, 1.0]), lower)
    # BOBYQA stops on the change in f (ftol_abs 1e-8): x is within about √1e-8.
    np.testing.assert_allclose(x, CENTRE, atol=1e-3)
    assert value == pytest.approx(3.0, abs=1e-8)
    assert value == quadratic(x)  # the value of the point returned
    assert 0 < n_eval < 1000
    assert status in ("ftol reached", "xtol reached", "success", "roundoff limited")


def test_minimum_beyond_a_bound_stops_on_the_bound():
    lower = np.array([0.0, 0.0, 0.0])  # the minimum's second coordinate is -0.5
    x, value, _, _ = minimize_bobyqa(quadratic, np.array([1.0, 1.0, 1.0]), lower)
    assert x[1] == pytest.approx(0.0, abs=1e-7)
    assert np.all(x >= lower)
    # On the bound, the other coordinates minimise the quadratic given x₁ = 0.
    free = [0, 2]
    shift = np.linalg.solve(H[np.ix_(free, free)], -H[free, 1] * (0.0 - CENTRE[1]))
    best = CENTRE[free] + shift
    np.testing.assert_allclose(x[free], best, atol=1e-3)
    assert value == pytest.approx(quadratic(np.array([best[0], 0.0, best[1]])), abs=1e-8)


def test_start_below_its_bound_is_lifted_onto_it():
    seen = []

    def f(x):
        seen.append(x.copy())
        return quadratic(x)

    lower = np.array([0.5, -np.inf, 0.5])
    minimize_bobyqa(f, np.array([-3.0, 0.0, -1.0]), lower)
    assert all(np.all(x[[0, 2]] >= 0.5) for x in seen)


def test_rosenbrock_with_free_coordinates():
    x, value, _, _ = minimize_bobyqa(
        rosenbrock, np.array([-1.2, 1.0]), np.full(2, -np.inf), initial_step=0.5
    )
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-3)
    assert value < 1e-7


def test_undefined_points_are_avoided():
    """An objective that is infinite (or NaN) in part of the box: the best finite point wins."""

    def f(x):
        if x[0] > 2.5:
            return math.inf
        if x[0] > 2.2:
            return math.nan
        return quadratic(np.array([x[0], x[1], CENTRE[2]]))

    x, value, _, _ = minimize_bobyqa(f, np.array([0.5, 0.5]), np.array([0.0, -np.inf]))
    np.testing.assert_allclose(x, CENTRE[:2], atol=1e-3)
    assert math.isfinite(value)


def test_evaluation_budget_is_reported():
    _, _, n_eval, status = minimize_bobyqa(
        rosenbrock, np.array([-1.2, 1.0]), np.full(2, -np.inf), max_evaluations=20
    )
    assert n_eval == 20
    assert status == "maximum number of evaluations reached"


def test_finite_differences_match_the_analytic_derivatives():
    x = np.array([2.0, 0.3, 1.0])
    grad, hess = finite_difference_derivatives(quadratic, x, np.full(3, -np.inf))
    np.testing.assert_allclose(grad, H @ (x - CENTRE), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hess, H, rtol=1e-4, atol=1e-4)
    # At a bound the differences are one-sided, and still right for a quadratic.
    lower = np.array([2.0, -np.inf, 1.0])
    grad, hess = finite_difference_derivatives(quadratic, x, lower)
    np.testing.assert_allclose(grad, H @ (x - CENTRE), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hess, H, rtol=1e-4, atol=1e-4)


def test_finite_differences_evaluate_many_gets_every_point():
    batches = []

    def evaluate_many(points):
        batches.append(len(points))
        return [quadratic(p) for p in points]

    x = np.array([2.0, 0.3, 1.0])
    grad, _ = finite_difference_derivatives(quadratic, x, np.full(3, -np.inf), evaluate_many)
    # f(x), x ± hᵢ, and x + hᵢ + hⱼ for i > j: 1 + 2n + n(n − 1)/2 points in one batch.
    assert batches == [1 + 6 + 3]
    np.testing.assert_allclose(grad, H @ (x - CENTRE), rtol=1e-6, atol=1e-7)


def test_check_passes_at_the_optimum():
    lower = np.array([0.0, -np.inf, 0.0])
    passed, messages, gradient = check_convergence(quadratic, CENTRE.copy(), lower)
    assert passed and messages == []
    np.testing.assert_allclose(gradient, 0.0, atol=1e-6)


def test_check_flags_a_point_that_is_not_the_optimum():
    lower = np.array([0.0, -np.inf, 0.0])
    off = CENTRE + np.array([0.05, 0.0, 0.0])
    passed, messages, gradient = check_convergence(quadratic, off, lower)
    assert not passed
    assert len(messages) == 1 and "may not have converged" in messages[0]
    assert "scaled gradient" in messages[0] and str(GRADIENT_TOLERANCE) in messages[0]
    np.testing.assert_allclose(gradient, H @ (off - CENTRE), rtol=1e-5)


def test_check_flags_a_saddle_point():
    def saddle(x):
        return float(x[0] ** 2 - x[1] ** 2)

    passed, messages, _ = check_convergence(saddle, np.array([0.0, 0.0]), np.full(2, -np.inf))
    assert not passed
    assert messages == ["the Hessian at the optimum is not positive definite"]


def test_check_leaves_out_coordinates_on_their_bound():
    """On its bound a coordinate's derivative need not vanish (lme4's checkConv does the same)."""
    lower = np.array([0.0, 0.0, 0.0])
    x, _, _, _ = minimize_bobyqa(quadratic, np.array([1.0, 1.0, 1.0]), lower)
    x[1] = 0.0
    passed, messages, gradient = check_convergence(quadratic, x, lower)
    assert passed, messages
    assert gradient[1] > 0.5  # the objective still falls beyond the bound


def test_check_is_skipped_when_every_coordinate_is_on_a_bound_or_too_many():
    lower = np.zeros(3)
    assert check_convergence(quadratic, np.zeros(3), lower) == (True, [], None)
    assert check_convergence(quadratic, np.ones(3), lower, max_hessian_dimension=2) == (
        True,
        [],
        None,
    )


def test_restart_steps_keep_the_start_off_its_bound():
    theta = np.array([0.3, -2.0, 0.001, 5.0])
    lower = np.array([0.0, -np.inf, 0.0, 0.0])
    steps = restart_steps(theta, lower)
    finite = np.isfinite(lower)
    # No step reaches more than half-way to a bound.
    assert np.all(steps[finite] <= 0.5 * (theta - lower)[finite] + 1e-15)
    assert np.all(steps > 0) and np.all(steps <= 0.75)
    # Restarting BOBYQA with these steps starts where it was.
    first = []

    def f(x):
        first.append(x.copy())
        return float(np.sum((x - theta) ** 2))

    minimize_bobyqa(f, theta, lower, initial_step=steps, max_evaluations=10)
    np.testing.assert_array_equal(first[0], theta)
