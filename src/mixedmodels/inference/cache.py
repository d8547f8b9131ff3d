"""What an inference method computed at a fitted state, kept once per state.

Satterthwaite's Hessian and Kenward–Roger's adjustment cost many evaluations
of the model; they depend only on the fitted state, which is immutable, so
they are kept per state (weakly: they go with the model).  Threads asking for
the same state at once wait for the first to finish instead of each computing
it again; different states are computed in parallel.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["StateCache"]

K = TypeVar("K")
V = TypeVar("V")


class StateCache(Generic[K, V]):
    """Values computed once per key (a fitted state), safe to ask from several threads."""

    def __init__(self) -> None:
        self._values: weakref.WeakKeyDictionary[K, V] = weakref.WeakKeyDictionary()
        self._locks: weakref.WeakKeyDictionary[K, threading.Lock] = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        """The value of ``key``, computed by ``compute()`` the first time it is asked for.

        An exception from ``compute`` is raised to the caller and nothing is kept.
        """
        with self._guard:
            if key in self._values:
                return self._values[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._values:
                    return self._values[key]
            value = compute()
            with self._guard:
                self._values[key] = value
                self._locks.pop(key, None)
        return value
