"""Stage 4 as a whole (engine.fit): the optimisation of θ with its convergence check."""

from __future__ import annotations

import numpy as np

import mixedmodels as mm


def test_convergence_check_on_two_threads_matches_one(monkeypatch):
    """The check's points evaluated on two threads give the same derivatives."""
    from concurrent.futures import ThreadPoolExecutor

    from mixedmodels.engine import fit as fit_module

    data = mm.datasets.load("Penicillin")
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    pools = []

    class CountingPool(ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(fit_module, "ThreadPoolExecutor", CountingPool)
    # BOBYQA's finite-difference check (the quasi-Newton fit checks with the
    # exact gradient and evaluates nothing more).
    serial = mm.LinearMixedModel(formula, data).fit(optimizer="bobyqa")
    assert not pools  # fast evaluations: one thread
    monkeypatch.setattr(fit_module, "_PARALLEL_MIN_SECONDS", 0.0)
    monkeypatch.setattr(fit_module, "available_cpus", lambda: 2)
    parallel = mm.LinearMixedModel(formula, data).fit(optimizer="bobyqa")
    assert pools
    np.testing.assert_allclose(parallel.optsum.gradient, serial.optsum.gradient, rtol=1e-10)
    assert parallel.objective == serial.objective
