"""scipy's L-BFGS-B routine, driven the way ``optimize.minimize(method="L-BFGS-B")`` drives it.

minimize() spends ~70 us per iteration in Python wrappers (ScalarFunction, bounds handling,
result objects) around a ~15 us routine: most of the time of the many small fits of a
LogisticRegressionCV path. :func:`_direct_lbfgsb` is scipy 1.17's ``_minimize_lbfgsb`` loop
without the wrappers (same routine, arguments and stopping rules, so the same iterates). The
routine is private, so it is used only after a probe fit has reproduced minimize() exactly;
otherwise :func:`_minimize_lbfgsb` calls minimize() itself.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

_LBFGSB_MEMORY = 10  # scipy's default maxcor, as scikit-learn leaves it
# the routine's task codes: evaluate f and g, a new iterate, converged, stop requested
_TASK_FG, _TASK_NEW_X, _TASK_CONVERGED, _TASK_STOP = 3, 1, 4, 5
_TASK_ITERATION_LIMIT = 504  # the message code minimize() sets when maxiter is reached


def _scipy_lbfgsb(func, x0, *, max_iter, max_line_search, gtol, ftol):
    """``optimize.minimize(method="L-BFGS-B", jac=True)`` with these options; the fallback.

    func(x) -> (value, gradient). Returns (x, number of iterations, converged).
    """
    opt = optimize.minimize(
        func, x0, method="L-BFGS-B", jac=True,
        options={"maxiter": max_iter, "maxls": max_line_search, "gtol": gtol, "ftol": ftol},
    )
    return opt.x, int(opt.nit), opt.status == 0


def _direct_lbfgsb(func, x0, *, max_iter, max_line_search, gtol, ftol):
    """minimize()'s loop around scipy's ``setulb`` routine, without its wrappers.

    The routine asks through ``task`` for the value and gradient at ``x`` (``func`` is called,
    at x cast to x0's dtype) or reports a new iterate (counted; at ``max_iter`` the loop asks
    it to stop, as minimize() does). Returns (x, number of iterations, converged).
    """
    from scipy.optimize import _lbfgsb

    n, m = x0.size, _LBFGSB_MEMORY
    # minimize() evaluates func at the iterate cast to x0's floating dtype (float32 fits see
    # float32 coefficients, as in scikit-learn), while L-BFGS-B itself iterates in float64.
    x_dtype = x0.dtype if np.issubdtype(x0.dtype, np.floating) else np.float64
    x = np.array(x0, dtype=np.float64)
    f, g = np.array(0.0), np.zeros(n)
    no_bounds = np.zeros(n)
    bound_kinds = np.zeros(n, np.int32)
    work = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwork = np.zeros(3 * n, np.int32)
    task, line_task = np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    factr = ftol / np.finfo(float).eps
    n_iter = 0
    while True:
        _lbfgsb.setulb(m, x, no_bounds, no_bounds, bound_kinds, f, g, factr, gtol, work,
                       iwork, task, lsave, isave, dsave, max_line_search, line_task)
        if task[0] == _TASK_FG:
            value, grad = func(x.astype(x_dtype))
            f, g = float(value), np.asarray(grad, dtype=np.float64)
        elif task[0] == _TASK_NEW_X:
            n_iter += 1
            if n_iter >= max_iter:
                task[0], task[1] = _TASK_STOP, _TASK_ITERATION_LIMIT
        else:
            break
    return x, n_iter, task[0] == _TASK_CONVERGED


def _direct_lbfgsb_reproduces_scipy() -> bool:
    """Probe: a small least-squares fit, direct loop against minimize(), must agree exactly."""
    matrix = np.vander(np.linspace(-1.0, 1.0, 7), 4)
    target = np.cos(np.arange(7.0))

    def func(w):
        residual = matrix @ w - target
        return 0.5 * residual @ residual, matrix.T @ residual

    options = {"max_iter": 3, "max_line_search": 20, "gtol": 1e-12, "ftol": 1e-15}
    try:
        got = _direct_lbfgsb(func, np.zeros(4), **options)
    except Exception:  # another scipy's private routine: a different signature
        return False
    want = _scipy_lbfgsb(func, np.zeros(4), **options)
    return bool(np.array_equal(got[0], want[0]) and got[1:] == want[1:])


_use_direct_lbfgsb = None  # decided by the probe on first use


def _minimize_lbfgsb(func, x0, *, max_iter, max_line_search, gtol, ftol):
    """Minimise ``func(x) -> (value, gradient)`` from ``x0`` without bounds, as scipy does.

    Returns (x, number of iterations, converged). ``converged`` is scipy's status 0 (projected
    gradient <= gtol or relative reduction <= ftol).
    """
    global _use_direct_lbfgsb
    if _use_direct_lbfgsb is None:
        _use_direct_lbfgsb = _direct_lbfgsb_reproduces_scipy()
    minimize = _direct_lbfgsb if _use_direct_lbfgsb else _scipy_lbfgsb
    return minimize(func, x0, max_iter=max_iter, max_line_search=max_line_search, gtol=gtol,
                    ftol=ftol)
