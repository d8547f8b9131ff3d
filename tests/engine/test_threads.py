"""BLAS thread limits: set only where BLAS would otherwise split the work."""

from mixedmodels.engine.threads import SMALL_FLOPS, products_threads, threads_for


def test_a_small_qr_leaves_blas_alone():
    # sleepstudy's X: BLAS runs its QR on one thread anyway.
    assert threads_for(180, 2) is None


def test_a_mid_sized_qr_runs_on_one_thread():
    assert threads_for(100_000, 2) == 1


def test_a_large_qr_keeps_the_blas_threads():
    rows = int(SMALL_FLOPS)
    assert threads_for(rows, 10) is None


def test_small_products_leave_blas_alone():
    assert products_threads(180, 2) is None
    assert products_threads(144, 1) is None


def test_products_blas_would_split_run_on_one_thread():
    # Xᵀy of Exam's 4 059 × 3 X is above OpenBLAS's matrix–vector threshold,
    # yᵀy of 20 000 rows above its dot-product one.
    assert products_threads(4059, 3) == 1
    assert products_threads(20_000, 1) == 1
