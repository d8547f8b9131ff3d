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


def compiled_on_first_use(function, **helpers):
    """A function of no arguments returning ``function`` compiled (:func:`compiled`;
    None without numba), compiling it at its first call only: nothing compiles at
    import, and later calls return the same object.

    ``helpers`` are the loops ``function`` calls, by the global names it calls them
    by: each is compiled and set as that global of ``function``'s module first
    (numba reads a global's value when it compiles the function that calls it).
    """

    @functools.cache
    def get():
        namespace = function.__globals__
        for name, helper in helpers.items():
            namespace[name] = compiled(helper)
            if namespace[name] is None:
                return None
        return compiled(function)

    return get
