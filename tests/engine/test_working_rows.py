"""Working rows held in parts add up to the whole: what lets a Dask fit share PIRLS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixedmodels.design import build_design
from mixedmodels.engine.glm_kernels import compiled
from mixedmodels.engine.laplace_gradient import LaplaceGradient
from mixedmodels.engine.pirls import Pirls
from mixedmodels.engine.working_rows import Point, RowData, RowsInMemory
from mixedmodels.families import Poisson

pytestmark = pytest.mark.skipif(compiled() is None, reason="the row passes need numba")
RNG = np.random.default_rng(11)


def _design(n=300):
    g = RNG.integers(0, 40, n)
    h = RNG.integers(0, 7, n)
    x = RNG.normal(size=n)
    eta = 0.2 + 0.5 * x + RNG.normal(0, 0.6, 40)[g] + RNG.normal(0, 0.3, 7)[h]
    data = pd.DataFrame(
        {"y": RNG.poisson(np.exp(eta)).astype(float), "x": x, "g": g, "h": h.astype(str)}
    )
    data["g"] = data["g"].astype(str)
    return build_design("y ~ x + (x | g) + (1 | h)", data)


def _parts(design, family, fixed_inside, cuts):
    """The whole rows and the same rows in parts, the parts laid out as the whole."""
    n = len(design.y)
    w, o = RNG.uniform(0.5, 2.0, n), RNG.normal(0, 0.1, n)
    whole = RowData(design.y, w, o, design.x, design.terms).working(fixed_inside, family)
    structure = whole.blocks.cp
    parts = []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        parts.append(
            RowsInMemory(
                design.y[a:b],
                w[a:b],
                o[a:b],
                design.x[a:b],
                [t.codes[a:b] for t in design.terms],
                [t.z[a:b] for t in design.terms],
                [t.n_levels for t in design.terms],
                family,
                fixed_inside=fixed_inside,
                structure=structure,
            )
        )
    return whole, parts


@pytest.mark.parametrize("fill", ["fisher", "newton", "observed"])
@pytest.mark.parametrize("fixed_inside", [False, True])
def test_parts_add_up_to_the_whole(fill, fixed_inside):
    design = _design()
    family = Poisson("sqrt") if fill != "fisher" else Poisson()
    whole, parts = _parts(design, family, fixed_inside, [130, 260, 400])
    n_b = sum(t.n_levels * t.q for t in design.terms)
    previous = Point(np.array([1.0, 0.2]), RNG.normal(0, 0.1, n_b))
    at = Point(np.array([1.1, 0.25]), RNG.normal(0, 0.1, n_b))
    found = whole.evaluate(at, previous, fill=fill)
    pieces = [part.evaluate(at, previous, fill=fill) for part in parts]
    assert sum(p.deviance for p in pieces) == pytest.approx(found.deviance, rel=1e-12)
    assert max(p.eta_change for p in pieces) == pytest.approx(found.eta_change, rel=1e-12)
    summed = sum(part.blocks.buffer for part in parts)
    if fill != "fisher":  # the caller's pivot of the response, set once on the sum
        summed[-1] = whole.blocks.buffer[-1]
    np.testing.assert_allclose(summed, whole.blocks.buffer, rtol=1e-11, atol=1e-9)
    assert sum(part.pearson_chi2(at) for part in parts) == pytest.approx(
        whole.pearson_chi2(at), rel=1e-12
    )
    assert sum(part.aic(at, found.deviance) for part in parts) == pytest.approx(
        whole.aic(at, found.deviance), rel=1e-12
    )


@pytest.mark.parametrize("fixed_inside", [False, True])
def test_gradient_row_sums_add_up(fixed_inside):
    design = _design()
    whole, parts = _parts(design, Poisson(), fixed_inside, [200, 350])
    pirls = Pirls(whole, [(t.n_levels, t.q) for t in design.terms])
    lambdas = [np.array([[0.6, 0.0], [0.1, 0.3]]), np.array([[0.5]])]
    solution = pirls.solve(lambdas, np.array([0.2, 0.4]), from_start_means=fixed_inside)
    gradient = LaplaceGradient(pirls, design.terms)
    inverse = gradient.selected_inverse()
    lams = gradient.packed(lambdas)
    at = solution.point
    traces, rhs = whole.gradient_rhs(at, lams, inverse, solution.deviance)
    pieces = [part.gradient_rhs(at, lams, inverse, solution.deviance) for part in parts]
    np.testing.assert_allclose(sum(p[0] for p in pieces), traces, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sum(p[1] for p in pieces), rhs, rtol=1e-10, atol=1e-12)
    solved = RNG.normal(size=len(rhs))
    first, second, grad_beta = whole.gradient_sums(
        at, lams, inverse, solution.u, solved, solution.deviance
    )
    sums = [
        part.gradient_sums(at, lams, inverse, solution.u, solved, solution.deviance)
        for part in parts
    ]
    np.testing.assert_allclose(sum(s[0] for s in sums), first, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sum(s[1] for s in sums), second, rtol=1e-10, atol=1e-12)
    if fixed_inside:
        assert grad_beta is None
    else:
        np.testing.assert_allclose(sum(s[2] for s in sums), grad_beta, rtol=1e-10)


def test_a_part_with_a_pair_the_structure_lacks_is_refused():
    design = _design()
    whole, _ = _parts(design, Poisson(), False, [250])
    structure = whole.blocks.cp
    pairs = structure.off[(1, 0)]
    present = set(zip(pairs.rows.tolist(), pairs.cols.tolist(), strict=True))
    absent = next(
        (h, g)
        for h in range(design.terms[1].n_levels)
        for g in range(design.terms[0].n_levels)
        if (h, g) not in present
    )
    codes = [t.codes[:5].copy() for t in design.terms]
    codes[1][0], codes[0][0] = absent
    with pytest.raises(ValueError, match="pair levels"):
        RowsInMemory(
            design.y[:5],
            np.ones(5),
            np.zeros(5),
            design.x[:5],
            codes,
            [t.z[:5] for t in design.terms],
            [t.n_levels for t in design.terms],
            Poisson(),
            fixed_inside=False,
            structure=structure,
        )


def test_working_rows_survive_pickling():
    """A Dask partition's rows move between worker processes: their blocks must stay
    views of the buffer that the partition's results are read from."""
    import pickle

    design = _design()
    whole, _ = _parts(design, Poisson(), True, [150])
    moved = pickle.loads(pickle.dumps(whole))
    n_b = sum(t.n_levels * t.q for t in design.terms)
    at = Point(np.array([0.9, 0.3]), RNG.normal(0, 0.1, n_b))
    whole.evaluate(at, fill="fisher")
    moved.evaluate(at, fill="fisher")
    np.testing.assert_array_equal(moved.blocks.buffer, whole.blocks.buffer)
    assert moved.blocks.cp.xx.base is not None
    np.testing.assert_array_equal(moved.blocks.cp.xx, whole.blocks.cp.xx)
    assert np.all(moved.blocks.cp.xx.diagonal()[:-1] > 0)
