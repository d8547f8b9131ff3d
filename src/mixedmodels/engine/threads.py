"""BLAS thread counts: one thread for small dense algebra.

OpenBLAS splits even a 4 000 × 8 QR over its threads; on a machine whose
other cores are busy the threads wait for each other, and the call takes
tens of milliseconds instead of a tenth of one (measured: an Exam model's
fit 17 ms on one thread, 64–120 ms on two with the other core loaded).
The θ loop and the design stage's small factorisations therefore run on one
thread; large ones keep BLAS's own count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

#: Below this many floating-point operations a factorisation runs on one thread.
SMALL_FLOPS = 1e8

# Inspecting the loaded BLAS libraries takes milliseconds: do it once.
_BLAS_CONTROLLER: list | None = None
# The limit blas_threads set last (None: BLAS's own default).
_ACTIVE_LIMIT: int | None = None


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Context manager limiting the BLAS threads (the θ loop runs on one).

    The loaded BLAS libraries are found once and their thread counts set
    directly (threadpoolctl's ``limit`` inspects them on every call: about
    ten microseconds, a hundredth of a small fit); nested inside a limit to
    the same number it does nothing.
    """
    global _BLAS_CONTROLLER, _ACTIVE_LIMIT
    if threads is None or threads == _ACTIVE_LIMIT:
        yield
        return
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController().select(user_api="blas").lib_controllers
    libraries = _BLAS_CONTROLLER
    before = [library.get_num_threads() for library in libraries]
    # Libraries already at the limit are left alone (a refit loop enters here per fit).
    change = [
        (library, count)
        for library, count in zip(libraries, before, strict=True)
        if count != threads
    ]
    outer = _ACTIVE_LIMIT
    for library, _ in change:
        library.set_num_threads(threads)
    _ACTIVE_LIMIT = threads
    try:
        yield
    finally:
        _ACTIVE_LIMIT = outer
        for library, count in change:
            library.set_num_threads(count)


# OpenBLAS runs these on one thread whatever its setting (the thresholds of its
# interface, with its default GEMM_MULTITHREAD_THRESHOLD of 4): a matrix–vector
# product or rank-one update of fewer entries, a matrix product of at most
# this many multiplications, a dot product of at most this length.  Setting the
# limit around them (four calls into the libraries: 5 µs, three times per small
# fit) costs more than the products.
_ONE_THREAD_MATVEC = 8192
_ONE_THREAD_MATMUL = 262144
_ONE_THREAD_DOT = 10000


def threads_for(rows: int, columns: int) -> int | None:
    """One thread for a QR or least-squares problem of ``rows × columns`` below
    :data:`SMALL_FLOPS` (about 2·rows·columns² operations), else BLAS's own count;
    None (BLAS left as it is) where the matrix is so small that BLAS uses one
    thread anyway (an unblocked QR: matrix–vector products and rank-one updates)."""
    if rows * columns < _ONE_THREAD_MATVEC:
        return None
    return 1 if 2.0 * rows * columns * columns < SMALL_FLOPS else None


def products_threads(rows: int, columns: int) -> int | None:
    """:func:`threads_for` for the products XᵀX, Xᵀy and yᵀy of a ``rows × columns``
    X: None where BLAS computes all three on one thread anyway."""
    if (
        rows * columns < _ONE_THREAD_MATVEC
        and rows * columns * columns <= _ONE_THREAD_MATMUL
        and rows <= _ONE_THREAD_DOT
    ):
        return None
    return threads_for(rows, columns + 1)
