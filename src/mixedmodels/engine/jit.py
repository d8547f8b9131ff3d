"""A loop compiled by numba, on first use.

numba is imported only when a kernel is first needed (the import alone costs
a quarter of a second), and the compiled code is cached on disk.  (The GLMM's
row passes and the small-model kernels link several loops into one and
compile them together: :mod:`~mixedmodels.engine.glm_kernels`,
:mod:`~mixedmodels.engine.small_kernels`.)
"""

from __future__ import annotations

import functools


def compiled(function):
    """``function`` compiled by numba (cached on disk, GIL released), or None without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover - exercised where numba is absent
        return None
    return numba.njit(cache=True, nogil=True)(function)


def compiled_on_first_use(function):
    """A function of no arguments returning ``function`` compiled (:func:`compiled`;
    None without numba), compiling it at its first call only: nothing compiles at
    import, and later calls return the same object."""

    @functools.cache
    def get():
        return compiled(function)

    return get
