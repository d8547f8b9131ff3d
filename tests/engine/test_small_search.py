"""The compiled quasi-Newton search of small models (engine/small_search.py).

It must be the Python loop of gradient_fit/quasi_newton run faster, not another
method: on models of the compiled small path (on a bound, with probes and a
restart; on the log scale; a column on an extreme scale; a refit's given Hessian)
the fit with the compiled search and the fit forced onto the Python loop
evaluate as often and end on the same θ̂, objective, gradient and Hessian, to
the bit, and the workspace is left where the evaluator says it is.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

import mixedmodels as mm
from mixedmodels.engine.fit import solution_at, starting_point, theta_scale
from mixedmodels.engine.gradient import gradient_available
from mixedmodels.engine.gradient_fit import Evaluator, fit_quasi_newton
from mixedmodels.engine.optimize import check_stationarity, stationarity_messages
from tests.conftest import DATA

pytestmark = pytest.mark.skipif(not gradient_available(), reason="needs numba")

# Reference models on the compiled small path: interior optima, optima on a bound
# (probes, the escape restart), scalar terms on the log scale (Penicillin; one
# leaving it on the way to its bound: tiny_variance_slope), ML and REML.
MODELS = (
    "lmm/sleepstudy_slope_reml",
    "lmm/penicillin_crossed_reml",
    "lmm/exam_slope_ml",
    "lmm/dyestuff2_singular_reml",
    "extra/sleepstudy_no_intercept_reml",
    "boundary/issue18_reproducer_reml",
    "boundary/three_rank2_reml",
    "boundary/tiny_variance_slope_reml",
    "boundary/corr_plus_few_reml",
)


def _problem(formula: str, data: pd.DataFrame, reml: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.LinearMixedModel(formula, data, reml=reml).problem


def _reference_problem(name: str):
    ref = json.loads((DATA / f"{name}.json").read_text())
    if "dataset_path" in ref:
        data = pd.read_csv(DATA / ref["dataset_path"])
    else:
        data = mm.datasets.load(ref["dataset"])
    return _problem(ref.get("formula_python", ref["formula"]), data, ref["REML"])


def _fit(problem, compiled: bool, hessian: np.ndarray | None = None, start=None):
    """The quasi-Newton fit on a new workspace; (summary, solution, evaluator, searches)."""
    scale = theta_scale(problem)
    if start is None:
        start, _ = starting_point(problem, None, scale)
    evaluator = Evaluator(problem, scale, problem.workspace(), compiled_search=compiled)
    searches = []
    search = evaluator.search

    def counted(*args):
        result = search(*args)
        searches.append(result is not None)
        return result

    evaluator.search = counted
    summary = fit_quasi_newton(evaluator, start, hessian=hessian)
    return summary, solution_at(summary, evaluator), evaluator, searches


def _assert_same_fit(problem, hessian=None, start=None):
    compiled, solution, evaluator, searches = _fit(problem, True, hessian, start)
    python, python_solution, _, python_searches = _fit(problem, False, hessian, start)
    # The compiled search ran (and the forced fit never did).
    assert any(searches) and not any(python_searches)
    assert compiled.n_evaluations == python.n_evaluations
    assert compiled.n_gradients == python.n_gradients
    for name in ("final", "gradient", "hessian"):
        np.testing.assert_array_equal(getattr(compiled, name), getattr(python, name), err_msg=name)
    assert compiled.objective == python.objective
    assert compiled.converged == python.converged and compiled.messages == python.messages
    assert compiled.return_code == python.return_code
    # The solution read off the workspace the search left is the Python fit's...
    np.testing.assert_array_equal(solution.beta, python_solution.beta)
    for a, b in zip(solution.modes, python_solution.modes, strict=True):
        np.testing.assert_array_equal(a, b)
    assert solution.objective == python_solution.objective
    # ... and the workspace's factor, read as it is, is the factor at θ̂ made afresh.
    fresh = problem.solve(compiled.final, problem.workspace())
    kept = problem.solve(compiled.final, evaluator.workspace, refresh=False)
    assert kept.objective == fresh.objective
    np.testing.assert_array_equal(kept.beta, fresh.beta)
    np.testing.assert_array_equal(kept.unscaled_vcov, fresh.unscaled_vcov)
    return compiled


@pytest.mark.parametrize("name", MODELS)
def test_compiled_search_is_the_python_loop(name):
    _assert_same_fit(_reference_problem(name))


def test_compiled_search_on_an_extreme_scale():
    data = mm.datasets.load("sleepstudy").assign(Days=lambda d: d["Days"] * 1e4)
    problem = _problem("Reaction ~ Days + (Days | Subject)", data, True)
    assert not np.all(theta_scale(problem) == 1.0)
    _assert_same_fit(problem)


def test_compiled_search_from_a_given_hessian():
    # A refit starts with the curvature of an earlier fit (no information start).
    problem = _reference_problem("lmm/sleepstudy_slope_reml")
    first = _assert_same_fit(problem)
    _assert_same_fit(problem, hessian=first.hessian * 1.5)


@pytest.mark.parametrize("factor", [1e-6, 1e-2, 1.0, 1e3, 1e8])
@pytest.mark.parametrize(
    "name", ["lmm/penicillin_crossed_reml", "boundary/tiny_variance_slope_reml", MODELS[0]]
)
def test_compiled_search_from_poor_hessians(name, factor):
    # A poor first Hessian (far too flat or too steep): capped steps, long
    # backtracking, extensions, the log scale left early.
    problem = _reference_problem(name)
    _assert_same_fit(problem, hessian=factor * np.eye(problem.n_theta))


@pytest.mark.parametrize("name", ["lmm/penicillin_crossed_reml", MODELS[0], MODELS[-1]])
def test_compiled_search_at_the_optimum_with_a_flat_hessian(name):
    # From the optimum with B far too flat the predicted decrease is large, every
    # step capped and backtracked far (a decrease is left only within 1e-7 or so).
    problem = _reference_problem(name)
    optimum = _assert_same_fit(problem)
    start = optimum.final / theta_scale(problem)
    _assert_same_fit(problem, hessian=1e-9 * np.eye(problem.n_theta), start=start)


def _last_point(problem, compiled: bool):
    scale = theta_scale(problem)
    start, _ = starting_point(problem, None, scale)
    evaluator = Evaluator(problem, scale, problem.workspace(), compiled_search=compiled)
    summary = fit_quasi_newton(evaluator, start)
    return summary, evaluator


@pytest.mark.parametrize("name", MODELS[-4:])
def test_the_workspace_is_where_the_evaluator_says(name):
    # Whatever point the search evaluated last (a rejected trial point, a probe),
    # the evaluator says which, its workspace holds the factor there, and β̂ and û
    # are offered for θ̂ only when its last gradient was at θ̂.
    problem = _reference_problem(name)
    summary, evaluator = _last_point(problem, True)
    assert evaluator.workspace.is_current(problem.lambdas(evaluator.theta))
    value = problem.criterion(evaluator.workspace, problem.reml)
    assert value == problem.objective(evaluator.theta, workspace=problem.workspace())
    _, python = _last_point(problem, False)
    assert python.theta.tolist() == evaluator.theta.tolist()
    assert (evaluator.solved_at(summary.final) is None) == (python.solved_at(summary.final) is None)


@pytest.mark.parametrize("name", MODELS)
def test_the_search_checks_an_interior_optimum_as_check_stationarity(name):
    # Where every coordinate ends inside its bounds the compiled search returns
    # check_stationarity's max |R⁻ᵀg| (the same LAPACK calls), and the verdict made
    # of it is check_stationarity's; elsewhere it returns none (NaN).
    problem = _reference_problem(name)
    scale = theta_scale(problem)
    start, _ = starting_point(problem, None, scale)
    lower = problem.lower_bounds
    evaluator = Evaluator(problem, scale, problem.workspace())
    result = evaluator.search(start, lower, None, None, problem.layout.scalar)
    interior = bool((result.x - lower >= 1e-10).all())
    assert interior == (result.scaled_gradient == result.scaled_gradient)
    if not interior:
        return
    chol, info = scipy.linalg.lapack.dpotrf(result.hessian, lower=1)
    step, info = scipy.linalg.lapack.dtrtrs(chol, result.gradient, lower=1, trans=1)
    assert info == 0
    assert result.scaled_gradient == float(np.abs(step).max())
    found = check_stationarity(result.gradient, result.hessian, result.x, lower)[1]
    assert stationarity_messages(result.scaled_gradient) == found
    # A large gradient is reported as check_stationarity reports it.
    steep = result.gradient + 1.0
    assert check_stationarity(steep, result.hessian, result.x, lower)[1] != []
    largest = float(np.abs(scipy.linalg.lapack.dtrtrs(chol, steep, lower=1, trans=1)[0]).max())
    assert (
        stationarity_messages(largest)
        == check_stationarity(steep, result.hessian, result.x, lower)[1]
    )


def test_the_compiled_lapack_calls_leave_their_arguments():
    # LAPACK writes into its matrix: a 1×1 (C and Fortran at once) must be copied too.
    from mixedmodels.engine.small_evaluation import compiled_scaled_gradient

    for n in (1, 2, 3):
        h = np.eye(n) * 4.0 + 0.5
        g = np.arange(1.0, n + 1)
        kept_h, kept_g = h.copy(), g.copy()
        step, info = compiled_scaled_gradient()(h, g)
        chol, _ = scipy.linalg.lapack.dpotrf(h, lower=1)
        expected, _ = scipy.linalg.lapack.dtrtrs(chol, g, lower=1, trans=1)
        assert info == 0
        np.testing.assert_array_equal(step, expected)
        np.testing.assert_array_equal(h, kept_h)
        np.testing.assert_array_equal(g, kept_g)
