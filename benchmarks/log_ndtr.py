"""Optuna's TPE, bit for bit, in less of the benchmark's time.

Optuna 5's TPE computes log Phi (``optuna.samplers._tpe._truncnorm._log_ndtr``) by calling a
Python function per array element (optuna issue #5478); with integer parameters and 1024
candidates that is most of our searcher's CPU in a simulated study (more than half of a
50-FTE study's here). ``log_ndtr`` computes the same function over the whole array: the
same libm calls (``math.erf``, ``erfc``, ``log``, ``pow``, applied per element through
``np.frompyfunc``) and the same IEEE operations in the same order, so every result has the
same bits (the asymptotic series runs in lockstep, each element stopping where Optuna's
loop stops).

``install()`` swaps it in for the benchmark's worker processes only, never for ``tuner``,
and only after checking it against Optuna's own on values from every branch; if they
differ by one bit (another Optuna version) it leaves Optuna as it is and says so.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)
_erfc = np.frompyfunc(math.erfc, 1, 1)
_log = np.frompyfunc(math.log, 1, 1)
_pow = np.frompyfunc(math.pow, 2, 1)  # a**2 on a Python float is C pow, not a * a
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _floats(ufunc_result: np.ndarray) -> np.ndarray:
    return np.asarray(ufunc_result, dtype=object).astype(float)


def _ndtr(a: np.ndarray) -> np.ndarray:
    """Optuna's ``_ndtr_single`` over an array."""
    x = a / 2**0.5
    out = np.empty_like(x)
    left = x < -1 / 2**0.5
    central = ~left & (x < 1 / 2**0.5)
    right = ~(left | central)
    out[left] = 0.5 * _floats(_erfc(-x[left]))
    out[central] = 0.5 + 0.5 * _floats(_erf(x[central]))
    out[right] = 1.0 - 0.5 * _floats(_erfc(x[right]))
    return out


def _left_tail(a: np.ndarray) -> np.ndarray:
    """Optuna's asymptotic series for a <= -20, every element iterated until its own
    terms stop changing its sum."""
    squared = _floats(_pow(a, 2.0))
    log_lhs = -0.5 * squared - _floats(_log(-a)) - _HALF_LOG_2PI
    last, total, factor = np.zeros_like(a), np.ones_like(a), np.ones_like(a)
    per_step = 1 / squared
    numerator, sign, i = 1.0, 1, 0
    going = np.abs(last - total) > sys.float_info.epsilon
    while going.any():
        i += 1
        sign = -sign
        numerator *= 2 * i - 1
        last = np.where(going, total, last)
        factor = np.where(going, factor * per_step, factor)
        total = np.where(going, total + sign * numerator * factor, total)
        going &= np.abs(last - total) > sys.float_info.epsilon
    return log_lhs + _floats(_log(total))


def log_ndtr(a: np.ndarray) -> np.ndarray:
    """Optuna's ``_truncnorm._log_ndtr``: the same bits, computed over the array."""
    a = np.asarray(a, dtype=float)
    flat = a.ravel()
    out = np.empty_like(flat)
    upper = flat > 6
    middle = ~upper & (flat > -20)
    lower = ~(upper | middle)
    out[upper] = -_ndtr(-flat[upper])
    out[middle] = _floats(_log(_ndtr(flat[middle])))
    out[lower] = _left_tail(flat[lower])
    return out.reshape(a.shape)


def probe() -> np.ndarray:
    """Values from every branch of Optuna's function, its edges and special values."""
    rng = np.random.default_rng(0)
    edges = [-np.inf, -1e6, -20.000001, -20.0, -19.99999, -6, -2**0.5, -1.0, -0.0, 0.0, 1.0,
             2**0.5, 5.99999, 6.0, 6.000001, 40.0, np.inf]
    return np.concatenate([edges, rng.uniform(-1e4, -20, 2000), rng.uniform(-40, 40, 4000)])


def same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    return x.shape == y.shape and bool(np.all(x.view(np.int64) == y.view(np.int64)))


def install() -> bool:
    """Use ``log_ndtr`` in this process's Optuna TPE if it gives Optuna's bits."""
    from optuna.samplers._tpe import _truncnorm

    original = getattr(_truncnorm, "_log_ndtr", None)
    if original is log_ndtr:
        return True
    values = probe()
    with np.errstate(all="ignore"):
        ok = original is not None and same_bits(log_ndtr(values), original(values))
    if not ok:
        warnings.warn("benchmarks.log_ndtr: this Optuna's _truncnorm._log_ndtr differs; "
                      "its own (slower) one stays", RuntimeWarning, stacklevel=2)
        return False
    _truncnorm._log_ndtr = log_ndtr
    return True
