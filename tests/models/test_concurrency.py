"""Public methods of a fitted model called from several threads at once (issue 15, class 6).

A model is immutable once fitted; what it builds on first use (the formulaic
specs of a design built without formulaic, Satterthwaite's Hessian,
Kenward–Roger's adjustment) is built once, under a lock, whoever asks first.
Every thread gets what a single thread gets.
"""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels.inference import kenward_roger, satterthwaite

THREADS = 8
FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep():
    return mm.datasets.load("sleepstudy")


def _fresh(data) -> mm.LinearMixedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.lmer(FORMULA, data)


def _all_at_once(call, n: int = THREADS) -> list:
    """``call()`` from ``n`` threads released together; results or exceptions."""
    barrier = threading.Barrier(n)

    def run(_):
        barrier.wait()
        try:
            return call()
        except Exception as err:  # collected: every thread must succeed
            return err

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_predict_from_eight_threads_on_a_fresh_model(sleep):
    # The specs of a design built without formulaic are built on first use;
    # unlocked, most threads found them missing ('NoneType' ... get_model_matrix).
    serial = _fresh(sleep).predict(sleep.head(7)).to_numpy()
    for _ in range(3):
        model = _fresh(sleep)
        assert model.design.spec_builder is not None
        results = _all_at_once(lambda model=model: model.predict(sleep.head(7)).to_numpy())
        for result in results:
            assert not isinstance(result, Exception), result
            np.testing.assert_array_equal(result, serial)
        assert model.design.spec_builder is None


def test_design_specs_are_built_once(sleep, monkeypatch):
    from mixedmodels.design import build

    calls = []
    fill = build.SpecBuilder.fill

    def counted(self, design):
        calls.append(1)
        time.sleep(0.05)  # widen the window in which other threads ask
        fill(self, design)

    monkeypatch.setattr(build.SpecBuilder, "fill", counted)
    model = _fresh(sleep)
    results = _all_at_once(lambda: list(model.design.fixed_spec.column_names))
    assert results == [["Intercept", "Days"]] * THREADS
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("module", "name", "call"),
    [
        (satterthwaite, "_variance_parameter_info", lambda m: m.coef_table("satterthwaite")),
        (kenward_roger, "_kenward_roger_info", lambda m: m.coef_table("kenward-roger")),
    ],
)
def test_inference_caches_compute_once_per_state(sleep, monkeypatch, module, name, call):
    serial = call(_fresh(sleep))
    compute = getattr(module, name)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.05)
        return compute(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    model = _fresh(sleep)
    for table in _all_at_once(lambda: call(model)):
        assert not isinstance(table, Exception), table
        np.testing.assert_array_equal(table.to_numpy(), serial.to_numpy())
    assert len(calls) == 1
    # Another fit of the same data is another state: computed again.
    call(_fresh(sleep))
    assert len(calls) == 2


RESULTS = {
    "predict": lambda m, d: m.predict(d.head(9)).to_numpy(),
    "satterthwaite": lambda m, d: m.coef_table().to_numpy(),
    "kenward-roger": lambda m, d: m.coef_table("kenward-roger").to_numpy(),
    "summary": lambda m, d: str(m.summary()),
    "wald": lambda m, d: m.confint(method="wald").to_numpy(),
    "ranef_cov": lambda m, d: np.concatenate([np.ravel(v) for v in m.ranef_cov.values()]),
    "tidy": lambda m, d: m.tidy().to_string(),
    "anova": lambda m, d: mm.anova(m).to_string(),
    "simulate": lambda m, d: m.simulate(2, seed=3).to_numpy(),
    "objective_at": lambda m, d: m.objective_at(m.theta * 1.1),
    "fitted": lambda m, d: m.fitted.to_numpy(),
}


def test_public_methods_at_once_give_what_one_thread_gets(sleep):
    reference = _fresh(sleep)
    serial = {name: call(reference, sleep) for name, call in RESULTS.items()}
    model = _fresh(sleep)
    jobs = list(RESULTS.items()) * 2
    barrier = threading.Barrier(len(jobs))

    def run(job):
        name, call = job
        barrier.wait()
        try:
            return name, call(model, sleep)
        except Exception as err:
            return name, err

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    for name, value in results:
        assert not isinstance(value, Exception), (name, value)
        if isinstance(value, str):
            assert value == serial[name], name
        else:
            np.testing.assert_array_equal(value, serial[name], err_msg=name)
