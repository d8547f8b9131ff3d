"""The criterion as a function of θ (engine.problem.LinearProblem) and its workspaces.

The profiled REML criterion and ML deviance are checked against their dense
formulas, with V₀ = ZΛΛᵀZᵀ + W⁻¹ the marginal covariance of y over σ²:

    ML:   n (1 + log 2πσ̂²) + log|V₀|,                  σ̂² = r'V₀⁻¹r / n
    REML: (n − p)(1 + log 2πσ̂²) + log|V₀| + log|X'V₀⁻¹X|, σ̂² = r'V₀⁻¹r / (n − p)

with r = y − Xβ̂ and β̂ the generalised least-squares estimate.  Then the
workspaces: an evaluation on one never changes another, and nothing evaluated
on a fitted model's problem (profiles, df, bootstrap, from several threads)
changes the model's results.
"""

from __future__ import annotations

import math
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.engine.problem import LinearProblem
from tests.engine.dense import (
    RandomProblem,
    dense_lambda,
    random_lambdas,
    random_problem,
    theta_of,
)

PROBLEMS = {
    "one vector term": dict(levels=[15], qs=[2], weighted=False),
    "crossed, vector and scalar, weighted": dict(levels=[18, 5], qs=[2, 1], weighted=True),
    "three terms, weighted": dict(levels=[12, 6, 3], qs=[1, 2, 1], weighted=True),
}


def _setup(name: str) -> tuple[RandomProblem, LinearProblem]:
    problem = random_problem(seed=len(name), n=160, p=3, **PROBLEMS[name])
    return problem, LinearProblem(problem.cross_products(), problem.terms(), reml=True)


def _dense_fit(problem: RandomProblem, lambdas: list[np.ndarray]) -> dict:
    """β̂, σ̂² (ML and REML), the modes and both criteria from V₀, dense."""
    z = problem.dense_z()
    lam = dense_lambda(problem.n_levels, lambdas)
    n, p = problem.x.shape
    w = np.ones(n) if problem.weights is None else problem.weights
    v0 = z @ lam @ lam.T @ z.T + np.diag(1.0 / w)
    v0_inv_x = np.linalg.solve(v0, problem.x)
    xtvx = problem.x.T @ v0_inv_x
    beta = np.linalg.solve(xtvx, v0_inv_x.T @ problem.y)
    r = problem.y - problem.x @ beta
    v0_inv_r = np.linalg.solve(v0, r)
    r2 = float(r @ v0_inv_r)
    logdet_v0 = np.linalg.slogdet(v0)[1]
    ml = n * (1 + math.log(2 * math.pi * r2 / n)) + logdet_v0
    reml = (n - p) * (1 + math.log(2 * math.pi * r2 / (n - p))) + logdet_v0
    reml += np.linalg.slogdet(xtvx)[1]
    # The conditional modes: b = ΛΛᵀZᵀV₀⁻¹r (the BLUP).
    b = lam @ lam.T @ z.T @ v0_inv_r
    modes, start = [], 0
    for m, zi in zip(problem.n_levels, problem.z, strict=True):
        q = zi.shape[1]
        modes.append(b[start : start + m * q].reshape(m, q))
        start += m * q
    return dict(beta=beta, r2=r2, ml=ml, reml=reml, modes=modes, vcov=np.linalg.inv(xtvx), n=n, p=p)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_criteria_equal_their_dense_formulas(name):
    problem, linear = _setup(name)
    qs = [zi.shape[1] for zi in problem.z]
    for seed in (1, 2):
        lambdas = random_lambdas(seed, qs)
        theta = theta_of(linear.terms, lambdas)
        dense = _dense_fit(problem, lambdas)
        assert linear.objective(theta) == pytest.approx(dense["reml"], rel=1e-10)
        assert linear.objective(theta, reml=False) == pytest.approx(dense["ml"], rel=1e-10)
        ml = LinearProblem(linear.cross_products, linear.terms, reml=False)
        assert ml.objective(theta) == pytest.approx(dense["ml"], rel=1e-10)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_solution_is_the_dense_estimate(name, reml):
    problem, linear = _setup(name)
    linear = LinearProblem(linear.cross_products, linear.terms, reml=reml)
    lambdas = random_lambdas(3, [zi.shape[1] for zi in problem.z])
    theta = theta_of(linear.terms, lambdas)
    dense = _dense_fit(problem, lambdas)
    solution = linear.solve(theta)
    np.testing.assert_allclose(solution.theta, theta)
    assert solution.objective == pytest.approx(dense["reml" if reml else "ml"], rel=1e-10)
    np.testing.assert_allclose(solution.beta, dense["beta"], rtol=1e-8)
    assert solution.pwrss == pytest.approx(dense["r2"], rel=1e-10)
    dof = dense["n"] - dense["p"] if reml else dense["n"]
    assert solution.sigma == pytest.approx(math.sqrt(dense["r2"] / dof), rel=1e-10)
    np.testing.assert_allclose(solution.unscaled_vcov, dense["vcov"], rtol=1e-8)
    for ours, theirs in zip(solution.modes, dense["modes"], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-10)


def test_solution_read_off_a_workspace_as_left_or_refactored():
    """refresh=False reads a workspace left at θ as it is and refactors one left
    elsewhere; β̂ and û given (as the optimizer's last gradient read them) stand in
    for the solve.  The same numbers every way, in read-only arrays."""
    problem, linear = _setup("crossed, vector and scalar, weighted")
    qs = [zi.shape[1] for zi in problem.z]
    theta = theta_of(linear.terms, random_lambdas(1, qs))
    elsewhere = theta_of(linear.terms, random_lambdas(2, qs))
    fresh = linear.solve(theta, linear.workspace())
    workspace = linear.workspace()
    linear.objective(theta, workspace=workspace)
    as_left = linear.solve(theta, workspace, refresh=False)
    linear.objective(elsewhere, workspace=workspace)
    refactored = linear.solve(theta, workspace, refresh=False)
    beta, modes = workspace.solution()
    given = linear.solve(theta, workspace, refresh=False, solved=(beta, modes))
    assert given.beta is not beta
    for solution in (as_left, refactored, given):
        assert solution.objective == fresh.objective
        assert solution.sigma == fresh.sigma
        for ours, theirs in [
            (solution.theta, fresh.theta),
            (solution.beta, fresh.beta),
            (solution.unscaled_vcov, fresh.unscaled_vcov),
            *zip(solution.modes, fresh.modes, strict=True),
        ]:
            np.testing.assert_array_equal(ours, theirs)
            assert not ours.flags.writeable


def test_lambda_templates_and_bounds():
    _, linear = _setup("crossed, vector and scalar, weighted")
    # A 2×2 λ has θ = (λ₁₁, λ₂₁, λ₂₂), lme4's column-major order; a scalar term one θ.
    assert linear.n_theta == 4
    np.testing.assert_array_equal(linear.lower_bounds, [0.0, -np.inf, 0.0, 0.0])
    lambdas = linear.lambdas(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(lambdas[0], [[1.0, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(lambdas[1], [[4.0]])
    assert linear.theta_names() == ["g0.c0", "g0.c1.c0", "g0.c1", "g1.c0"]


def test_undefined_points_are_infinite_not_errors():
    """A zero column of X leaves no positive-definite factor: inf, None, or a clear error."""
    problem = random_problem(seed=13, n=80, levels=[8], qs=[1])
    problem.x[:, 2] = 0.0
    linear = LinearProblem(problem.cross_products(), problem.terms(), reml=True)
    theta = np.array([1.0])
    assert linear.objective(theta) == math.inf
    assert linear.factor_at(theta) is None
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        linear.solve(theta)


def test_evaluating_on_one_workspace_leaves_another_unchanged():
    problem, linear = _setup("three terms, weighted")
    qs = [zi.shape[1] for zi in problem.z]
    theta1 = theta_of(linear.terms, random_lambdas(1, qs))
    theta2 = theta_of(linear.terms, random_lambdas(2, qs))
    first, second = linear.workspace(), linear.workspace()
    value = linear.objective(theta1, workspace=first)
    held = (
        first.random_effects_factor().toarray(),
        first.L_xx.copy(),
        first.fixed_effects(),
        [u.copy() for u in first.spherical_modes(first.fixed_effects())],
    )
    other = linear.objective(theta2, workspace=second)
    linear.objective(theta2)  # the problem's own default workspace
    linear.solve(theta2)  # a fresh one
    assert other != value
    np.testing.assert_array_equal(first.random_effects_factor().toarray(), held[0])
    np.testing.assert_array_equal(first.L_xx, held[1])
    np.testing.assert_array_equal(first.fixed_effects(), held[2])
    for u, before in zip(first.spherical_modes(held[2]), held[3], strict=True):
        np.testing.assert_array_equal(u, before)
    assert linear.criterion(first, reml=True) == value
    # Workspaces hold everything an evaluation needs: the criterion is the same again.
    assert linear.objective(theta1, workspace=second) == pytest.approx(value, rel=1e-13)


def test_threads_evaluate_on_their_own_workspaces():
    problem, linear = _setup("crossed, vector and scalar, weighted")
    qs = [zi.shape[1] for zi in problem.z]
    thetas = [theta_of(linear.terms, random_lambdas(seed, qs)) for seed in range(12)]
    expected = [linear.objective(t, workspace=linear.workspace()) for t in thetas]

    def run(offset: int) -> list[float]:
        # Each thread walks the points in another order, many times over.
        order = np.roll(np.arange(len(thetas)), offset)
        values = [0.0] * len(thetas)
        for _ in range(5):
            for k in order:
                values[k] = linear.objective(thetas[k])
        return values

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(4)))
    for values in results:
        np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_pickled_problem_evaluates_the_same():
    _, linear = _setup("one vector term")
    theta = theta_of(linear.terms, random_lambdas(7, [2]))
    value = linear.objective(theta)
    again = pickle.loads(pickle.dumps(linear))
    assert again.objective(theta) == pytest.approx(value, rel=1e-13)


# -- a fitted model's results do not move ---------------------------------------------


def _results(m: mm.LinearMixedModel) -> dict:
    return {
        "theta": m.theta.copy(),
        "fixef": m.fixef.copy(),
        "sigma": m.sigma,
        "objective": m.objective,
        "vcov": m.vcov.copy(),
        "ranef": {name: frame.copy() for name, frame in m.ranef.items()},
        "coefs": m.coefs.copy(),
        "xx": m.cross_products.xx.copy(),
        "xz": [a.copy() for a in m.cross_products.xz],
    }


def _assert_same_results(m: mm.LinearMixedModel, before: dict) -> None:
    after = _results(m)
    np.testing.assert_array_equal(after["theta"], before["theta"])
    pd.testing.assert_series_equal(after["fixef"], before["fixef"])
    assert after["sigma"] == before["sigma"]
    assert after["objective"] == before["objective"]
    pd.testing.assert_frame_equal(after["vcov"], before["vcov"])
    for name, frame in before["ranef"].items():
        pd.testing.assert_frame_equal(after["ranef"][name], frame)
    pd.testing.assert_frame_equal(after["coefs"], before["coefs"])
    np.testing.assert_array_equal(after["xx"], before["xx"])
    for a, b in zip(after["xz"], before["xz"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_concurrent_evaluations_leave_the_fit_and_its_blocks_unchanged(sleepstudy_slope_fit):
    """What evaluates a fitted model's problem, run on four threads at once.

    (models/test_state.py checks the same one call at a time.)  Besides the
    results, the cross-products must be untouched: the bootstrap writes its
    responses into a private copy of the y blocks.
    """
    m = sleepstudy_slope_fit
    before = _results(m)
    table = m.coef_table()
    rng = np.random.default_rng(0)
    thetas = [m.theta * rng.uniform(0.5, 1.5, m.theta.shape) for _ in range(20)]
    expected = [m.objective_at(t) for t in thetas]
    ml = m.refit_ml()

    def work(k: int):
        kind = ("table", "objectives", "at_theta", "bootstrap", "refit_ml", "profile")[k % 6]
        if kind == "table":
            return kind, m.coef_table()
        if kind == "objectives":
            return kind, [m.problem.objective(t) for t in thetas]
        if kind == "at_theta":
            return kind, (k, m.at_theta(thetas[k]).objective)
        if kind == "bootstrap":
            return kind, m.bootstrap(2, seed=k).replicates
        if kind == "refit_ml":
            return kind, m.refit_ml().objective
        return kind, m.profile()

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(work, range(12)))
    for kind, value in done:
        if kind == "table":
            pd.testing.assert_frame_equal(value, table, rtol=1e-10)
        elif kind == "objectives":
            np.testing.assert_allclose(value, expected, rtol=1e-12)
        elif kind == "at_theta":
            k, objective = value
            assert objective == pytest.approx(expected[k], rel=1e-10)
        elif kind == "refit_ml":
            assert value == pytest.approx(ml.objective, rel=1e-10)
    _assert_same_results(m, before)
    pd.testing.assert_frame_equal(m.coef_table(), table)
    assert m.objective_at(m.theta) == pytest.approx(m.objective, rel=1e-12)
