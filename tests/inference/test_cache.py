"""inference/cache.py: a value per fitted state, computed once however many threads ask."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest

from mixedmodels.inference.cache import StateCache


class _State:
    """A stand-in for a fitted state: hashable by identity, weakly referable."""


class _Value:
    """A cached value that can be watched with a weak reference."""


def test_computed_once_per_key_and_kept_while_the_key_lives():
    cache: StateCache[_State, _Value] = StateCache()
    states = [_State(), _State()]
    calls = []
    barrier = threading.Barrier(8)

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return _Value()

    def ask(_):
        barrier.wait()
        return cache.get(states[0], compute)

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(ask, range(8)))
    assert len(calls) == 1
    assert all(v is values[0] for v in values)
    other = cache.get(states[1], _Value)
    assert other is not values[0] and cache.get(states[1], compute) is other
    assert len(calls) == 1
    watched = weakref.ref(values[0])
    del values, other
    gc.collect()
    assert watched() is not None  # kept while its state lives
    states.clear()
    gc.collect()
    assert watched() is None  # and gone with it


def test_an_exception_keeps_nothing():
    cache: StateCache[_State, int] = StateCache()
    key = _State()

    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.get(key, fail)
    assert cache.get(key, lambda: 3) == 3
    assert cache.get(key, fail) == 3
