"""The evaluations of the compiled quasi-Newton search (:mod:`~mixedmodels.engine.small_search`).

On the compiled small path (:mod:`~mixedmodels.engine.small_trailing`), the
criterion, its gradient, the average information and the positive definite
Hessian made of it, each as loops numba compiles around the kernels of
:mod:`~mixedmodels.engine.small_kernels`, with the numbers of the Python path:

* the criterion at φ: θ = φ·scale, λ filled from θ as
  :meth:`LinearProblem.lambdas <mixedmodels.engine.problem.LinearProblem.lambdas>`
  fills it, the update kernel, the criterion read off T's diagonal as
  :meth:`BlockedCholesky.profiled_parts
  <mixedmodels.engine.factor.BlockedCholesky.profiled_parts>` and
  :meth:`LinearProblem.criterion <mixedmodels.engine.problem.LinearProblem.criterion>`
  read it (the same sums in the same order, the C library's log as Python's);
* the gradient and the average information in φ, as
  :class:`~mixedmodels.engine.evaluator.Evaluator` scales them;
* :func:`~mixedmodels.engine.quasi_newton.positive_definite`: LAPACK's dsyev (the
  routine scipy calls there, bound by its address) and the product by BLAS
  (numba's dot calls the same dgemm numpy's matmul does).

``k`` is :meth:`SmallTrailing.search_arguments
<mixedmodels.engine.small_trailing.SmallTrailing.search_arguments>`'s tuple of
arrays; ``c`` the criterion's numbers (rows of T's terms, p, n, Σ log weights, REML).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .jit import compiled
from .small_kernels import compiled_kernels

_LOG_2PI = math.log(2 * math.pi)

# The compiled loops called here: set by compiled_evaluations() before it compiles
# the loops that call them (numba reads a global's value when it compiles a caller).
_update = _gradient = _information = _criterion = _dsyev = _dpotrf = _dtrtrs = _dtrtri = None


def criterion_loop(t, logdet0, r, n_fixed, n_obs, sum_log_weights, reml):  # pragma: no cover
    """The profiled criterion read off T's factor and Σ log diag L₀₀, as
    :meth:`BlockedCholesky.profiled_parts` and :meth:`LinearProblem.criterion` read
    it (the same sums in the same order)."""
    n = t.shape[0]
    p = n - r - 1
    s = 0.0
    for i in range(r):
        s += math.log(t[i, i])
    theta_part = 2.0 * (logdet0 + s)
    sx = 0.0
    for i in range(r, r + p):
        sx += math.log(t[i, i])
    logdet_x = 2.0 * sx
    r2 = t[n - 1, n - 1] * t[n - 1, n - 1]
    if not r2 > 0.0:
        return math.inf
    value = theta_part - sum_log_weights
    if reml:
        dof = float(n_obs - n_fixed)
        value += logdet_x + dof * (1.0 + _LOG_2PI + math.log(r2 / dof))
    else:
        value += float(n_obs) * (1.0 + _LOG_2PI + math.log(r2 / float(n_obs)))
    return value


def evaluate_loop(phi, scale, theta, k, c):  # pragma: no cover - numba
    """f at φ (inf where not finite or not positive definite) and Σ log diag L₀₀: θ = φ·scale,
    λ filled as LinearProblem.lambdas fills it, the update kernel, the criterion.
    ``k``: the kernels' arrays (SmallTrailing.search_arguments); ``c``: the criterion's
    (r, n_fixed, n_obs, Σ log weights, REML)."""
    lam_stack, theta_index = k[0], k[13]
    for i in range(phi.shape[0]):
        theta[i] = phi[i] * scale[i]
    lam_stack[:] = 0.0
    for i in range(theta.shape[0]):
        lam_stack[theta_index[i, 0], theta_index[i, 1], theta_index[i, 2]] = theta[i]
    logdet = _update(
        k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10], k[11], k[12]
    )  # fmt: skip
    if math.isnan(logdet):
        return math.inf, logdet
    f = _criterion(k[7], logdet, c[0], c[1], c[2], c[3], c[4])
    if not math.isfinite(f):
        return math.inf, logdet
    return f, logdet


def gradient_loop(scale, k, n_s, dof):  # pragma: no cover - numba
    """∇φ at the last evaluated point (the gradient kernel's ∇θ times the scale)."""
    out = np.empty(k[13].shape[0])
    w = k[15]
    w[:] = 0.0
    _gradient(
        k[0], k[1], k[5], k[2], k[3], k[4], k[6], k[7], k[8], k[9], k[11],
        n_s, dof, k[13], k[14], w, k[16], k[17], out, k[12],
    )  # fmt: skip
    for i in range(out.shape[0]):
        out[i] = out[i] * scale[i]
    return out


def information_loop(scale, k, c):  # pragma: no cover - numba
    """The average information in φ at the last point evaluated (after its gradient),
    as SmallTrailing.information and Evaluator.information compute it."""
    t = k[7]
    n = t.shape[0]
    n_dof = c[2] - c[1] if c[4] else c[2]
    n_theta = k[13].shape[0]
    out = np.empty((n_theta, n_theta))
    _information(
        k[0], k[5], k[2], k[6], t, k[8], k[9], k[11], k[17], k[13], c[1],
        (t[n - 1, n - 1] * t[n - 1, n - 1]) / float(n_dof), float(n_dof), out, k[12],
    )  # fmt: skip
    for i in range(n_theta):
        for j in range(n_theta):
            out[i, j] = out[i, j] * (scale[i] * scale[j])
    return out


def positive_definite_loop(h):  # pragma: no cover - numba
    """quasi_newton.positive_definite's numbers: (B, True), or (h, False) where h is not
    finite or LAPACK's dsyev fails (the caller then runs positive_definite itself)."""
    n = h.shape[0]
    for i in range(n):
        for j in range(n):
            if not math.isfinite(h[i, j]):
                return h, False
    b = h + h.T
    b *= 0.5
    # dsyev on b as it is: symmetric, its C order is its Fortran order.
    a = b.copy()
    w = np.empty(n)
    lwork = max(3 * n - 1, 1)
    work = np.empty(lwork)
    ints = np.array([n, n, lwork, 0], dtype=np.int32)
    chars = np.array([86, 85], dtype=np.int8)  # jobz "V", uplo "U"
    _dsyev(
        chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, a.ctypes, ints[1:].ctypes,
        w.ctypes, work.ctypes, ints[2:].ctypes, ints[3:].ctypes,
    )  # fmt: skip
    if ints[3] != 0:
        return h, False
    # The eigenvectors are a's columns in Fortran order: the rows of a in C order.
    v = a.T
    w = np.abs(w)
    # Python's max over the list, then against 1e-8 (the first unless the next is larger).
    top = 1e-8
    if n:
        top = w[0]
        for i in range(1, n):
            if w[i] > top:
                top = w[i]
        if 1e-8 > top:
            top = 1e-8
    least = 1e-6 * top
    for i in range(n):
        if least > w[i]:
            w[i] = least
    return np.dot(v * w, v.T), True


def all_finite_loop(a):  # pragma: no cover - numba
    """Whether every element of ``a`` is finite."""
    for v in a:
        if not math.isfinite(v):
            return False
    return True


def scaled_gradient_loop(h, g):  # pragma: no cover - numba
    """(R⁻ᵀg, LAPACK's info) with H = RᵀR: optimize.check_stationarity's dpotrf (lower)
    and dtrtrs (transposed), the routines scipy's wrappers call, on copies."""
    n = h.shape[0]
    # (A Fortran-order copy: np.asfortranarray would return h itself where it is also
    # Fortran-contiguous, 1×1, and LAPACK writes into it.)
    a = np.empty((n, n)).T
    a[:, :] = h
    b = g.copy()
    ints = np.array([n, n, 1, n, 0], dtype=np.int32)
    chars = np.array([76, 84, 78], dtype=np.int8)  # uplo "L", trans "T", diag "N"
    _dpotrf(chars[0:].ctypes, ints[0:].ctypes, a.ctypes, ints[1:].ctypes, ints[4:].ctypes)
    if ints[4] != 0:
        return b, ints[4]
    _dtrtrs(
        chars[0:].ctypes, chars[1:].ctypes, chars[2:].ctypes, ints[0:].ctypes, ints[2:].ctypes,
        a.ctypes, ints[1:].ctypes, b.ctypes, ints[3:].ctypes, ints[4:].ctypes,
    )  # fmt: skip
    return b, ints[4]


def factor_parts_loop(t, logdet0, r, counts):  # pragma: no cover - numba
    """What the solution reads off T's factor after its last update, as
    BlockedCholesky.profiled_parts and inverse_rx read it: (log|ΛᵀZᵀZΛ + I|,
    log|R_XᵀR_X|, r²) into ``counts[5:8]`` (the same sums in the same order), and
    R_X⁻¹ returned (Fortran order, LAPACK's dtrtri as scipy's wrapper calls it,
    cleared above its diagonal; empty where p = 0 or dtrtri fails)."""
    n = t.shape[0]
    p = n - r - 1
    s = 0.0
    for i in range(r):
        s += math.log(t[i, i])
    sx = 0.0
    for i in range(r, r + p):
        sx += math.log(t[i, i])
    counts[5] = 2.0 * (logdet0 + s)
    counts[6] = 2.0 * sx
    counts[7] = t[n - 1, n - 1] * t[n - 1, n - 1]
    none = np.empty((0, 0)).T
    if p == 0:
        return none
    # (A Fortran-order copy, never a view of T: see scaled_gradient_loop.)
    a = np.empty((p, p)).T
    a[:, :] = t[r : r + p, r : r + p]
    ints = np.array([p, p, 0], dtype=np.int32)
    chars = np.array([76, 78], dtype=np.int8)  # uplo "L", diag "N"
    _dtrtri(
        chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, a.ctypes, ints[1:].ctypes,
        ints[2:].ctypes,
    )  # fmt: skip
    if ints[2] != 0:
        return none
    for i in range(p):
        for j in range(i + 1, p):
            a[i, j] = 0.0
    return a


def _lapack(name: str, *pointers: str):
    """A LAPACK routine of scipy's (the one its wrappers call) as a function numba can
    call and cache: an external symbol bound to its address in this process;
    ``pointers`` the kinds of its arguments ("c" char, "i" int, "d" double)."""
    import llvmlite.binding
    from numba import types
    from numba.extending import get_cython_function_address

    symbol = f"mixedmodels_{name}"
    llvmlite.binding.add_symbol(
        symbol, get_cython_function_address("scipy.linalg.cython_lapack", name)
    )
    kinds = {"c": types.int8, "i": types.int32, "d": types.float64}
    return types.ExternalFunction(
        symbol, types.void(*(types.CPointer(kinds[kind]) for kind in pointers))
    )


@functools.cache
def compiled_scaled_gradient():
    """:func:`scaled_gradient_loop` compiled, or None without numba."""
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - exercised where numba is absent
        return None
    names = globals()
    names["_dpotrf"] = _lapack("dpotrf", *"cidii")
    names["_dtrtrs"] = _lapack("dtrtrs", *"ccciididii")
    return compiled(scaled_gradient_loop)


@functools.cache
def compiled_factor_parts():
    """:func:`factor_parts_loop` compiled, or None without numba."""
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - exercised where numba is absent
        return None
    globals()["_dtrtri"] = _lapack("dtrtri", *"ccidii")
    return compiled(factor_parts_loop)


@functools.cache
def compiled_evaluations():
    """(evaluate, gradient, information, positive_definite, all_finite) compiled (the
    small kernels linked in), or None without numba."""
    kernels = compiled_kernels()
    if kernels is None:
        return None
    names = globals()
    names["_update"], names["_gradient"], names["_information"] = kernels
    names["_dsyev"] = _lapack("dsyev", *"ccididdii")
    names["_criterion"] = compiled(criterion_loop)
    return tuple(
        compiled(loop)
        for loop in (
            evaluate_loop,
            gradient_loop,
            information_loop,
            positive_definite_loop,
            all_finite_loop,
        )
    )
