"""Fit once what several metrics fit: an opt-in memo of deterministic fits, keyed by content.

In a batch every metric reads the same evaluation plan, so identical fits recur: DCI's boosted
trees, the importance matrix of ``unified_scores`` and the boosted-tree downstream task at the
training size of DCI fit the same classifiers on the same rows; MIG, modularity, unified scores,
the unsupervised scores, MIG-sup, JEMMIG, DCIMIG and InfoMEC (the registry's ``shares``)
discretise the same codes into 20-bin histograms and take
their mutual information with the same factors. Inside :func:`shared_fits` a fit
routed through :func:`memoized` is computed once and its result handed to every later caller
that asks for the same fit. The key is the fit's *content*: a digest of the input arrays'
bytes, dtype and shape, the estimator's parameters and its seed. Equal keys therefore mean equal
results, and a metric scored with the memo gives bit for bit what it gives alone.

A fit whose seed is not a plain integer (``None``: numpy's global RNG, or a ``RandomState``
object) is never memoised: it depends on, and advances, an RNG's state, so replaying it from
the memo would change later draws. Outside :func:`shared_fits` nothing is stored.

The memo lives in a context variable, so concurrent threads or tasks each see their own, and is
dropped when the ``with`` block ends: scope it to one task (one checkpoint x representation).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect

import numpy as np

from .._validation import PER_MODEL_SEEDS

__all__ = ["shared_fits", "memoized", "array_digest", "fit_seeds"]

_MEMO: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fastdis_shared_fits",
                                                                    default=None)


@contextlib.contextmanager
def shared_fits():
    """Within the block, memoised fits are computed once per distinct input (re-entrant).

    Yields the memo, ``{key: result}``: its length is the number of fits computed.
    """
    outer = _MEMO.get()
    if outer is not None:  # an outer block already shares
        yield outer
        return
    memo = {}
    token = _MEMO.set(memo)
    try:
        yield memo
    finally:
        _MEMO.reset(token)


def array_digest(array) -> tuple:
    """(dtype, shape, blake2b of the C-ordered bytes): equal digests mean equal arrays."""
    array = np.ascontiguousarray(array)
    return (array.dtype.str, array.shape, hashlib.blake2b(array.data, digest_size=16).digest())


def _is_seed(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _seed_key(random_state):
    """A hashable key for an integer seed or a sequence of them; None for stateful RNGs."""
    if _is_seed(random_state):
        return int(random_state)
    if isinstance(random_state, PER_MODEL_SEEDS) and all(_is_seed(s) for s in random_state):
        return tuple(int(s) for s in random_state)
    return None


def _key_part(value):
    if isinstance(value, np.ndarray):
        return array_digest(value)
    if hasattr(value, "__array__"):  # a DataFrame, a tensor: by content, as the fit sees it
        return array_digest(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return tuple(_key_part(v) for v in value)
    return value


def memoized(*, ignore=(), seeded=True):
    """Decorate a deterministic fit ``f(..., random_state=...)`` to consult :func:`shared_fits`.

    The key holds every bound argument (arrays by :func:`array_digest`) except those named in
    ``ignore`` (arguments that do not change the result, such as a thread count). ``seeded=False``
    marks a function without randomness (a discretisation, an MI matrix), memoised always.
    A shared array comes back as a fresh copy to every caller (some modify theirs in place,
    e.g. zero an MI matrix's diagonal); any other result is the same object for every caller,
    so it must not be modified.
    """
    def decorate(fit):
        signature = inspect.signature(fit)

        @functools.wraps(fit)
        def wrapper(*args, **kwargs):
            memo = _MEMO.get()
            if memo is None:
                return fit(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            if seeded:
                seed = _seed_key(arguments.get("random_state"))
                if seed is None:
                    return fit(*args, **kwargs)
                arguments["random_state"] = seed
            key = (fit.__module__, fit.__qualname__) + tuple(
                (name, _key_part(value)) for name, value in arguments.items()
                if name not in ignore)
            if key not in memo:
                memo[key] = fit(*args, **kwargs)
            result = memo[key]
            return result.copy() if isinstance(result, np.ndarray) else result

        return wrapper

    return decorate


def fit_seeds(seed: int, n_rows: int, n_factors: int, estimator: str) -> list[int]:
    """Per-factor seeds of a fit on the first ``n_rows`` training rows of a plan.

    Factor k's classifier is seeded with the first 32-bit word of
    ``SeedSequence([seed, n_rows, k, crc32(estimator)])``: the seed depends on the plan seed,
    the rows (a plan's training rows are the prefix ``[0, n_rows)``), the factor and the
    estimator, never on the metric that asks, so every metric fitting the same classifier on
    the same rows fits it with the same seed (and :func:`shared_fits` can share it).
    """
    import zlib

    tag = zlib.crc32(estimator.encode())
    return [int(np.random.SeedSequence([seed, n_rows, k, tag]).generate_state(1)[0])
            for k in range(n_factors)]
